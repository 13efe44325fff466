#!/usr/bin/env python3
"""
test/schema_registry.py: a small Confluent Schema Registry for the tests.

Implements what streamflink calls, GET /schemas/ids/{id} (answer
{"schema": "..."}; 404 with error_code 40403 for an unknown id), plus
POST /subjects/{subject}/versions ({"schema": "..."} -> {"id": N}, the same
id for the same schema text) so tests and benchmarks can register schemas.
Ids that stand for the registry failures the decoder must survive:
  9000  HTTP 500                  9003  schemaType PROTOBUF
  9001  an answer over 1 MiB      9004  a redirect (to file:///etc/passwd)
  9002  not JSON                  9005  slower than any sane timeout (10 s)

Usage: schema_registry.py --addr-file FILE [--watch-pid PID]
                          [--schema ID=PATH.avsc]...
Listens on 127.0.0.1 on a free port and writes http://127.0.0.1:PORT to
FILE once it accepts connections.  Exits when PID is gone (if given).
"""
import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

schemas = {}        # id -> schema text
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("registry: " + (fmt % args) + "\n")

    def answer(self, status, body, content_type="application/vnd.schemaregistry.v1+json",
               headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        m = re.fullmatch(r"/schemas/ids/(-?\d+)", self.path)
        if not m:
            return self.answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
        sid = int(m.group(1))
        if sid == 9000:
            return self.answer(500, {"error_code": 50001, "message": "Error in the backend data store"})
        if sid == 9001:
            return self.answer(200, b'{"schema": "' + b"x" * (2 * 1024 * 1024) + b'"}')
        if sid == 9002:
            return self.answer(200, b"<html>not a registry</html>", "text/html")
        if sid == 9003:
            return self.answer(200, {"schemaType": "PROTOBUF", "schema": "syntax = \"proto3\";"})
        if sid == 9004:
            return self.answer(302, b"", headers=[("Location", "file:///etc/passwd")])
        if sid == 9005:
            time.sleep(10)
            return self.answer(500, {"error_code": 50001, "message": "too late"})
        with lock:
            schema = schemas.get(sid)
        if schema is None:
            return self.answer(404, {"error_code": 40403, "message": "Schema not found"})
        return self.answer(200, {"schema": schema})

    def do_POST(self):
        m = re.fullmatch(r"/subjects/([^/]+)/versions", self.path)
        if not m:
            return self.answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        schema = body["schema"]
        with lock:
            for sid, s in schemas.items():
                if s == schema:
                    return self.answer(200, {"id": sid})
            sid = max([i for i in schemas if i < 9000] + [0]) + 1
            schemas[sid] = schema
        return self.answer(200, {"id": sid})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr-file", required=True)
    ap.add_argument("--watch-pid", type=int)
    ap.add_argument("--schema", action="append", default=[])
    args = ap.parse_args()
    for s in args.schema:
        sid, path = s.split("=", 1)
        with open(path) as f:
            schemas[int(sid)] = f.read()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = args.addr_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("http://127.0.0.1:%d\n" % server.server_address[1])
    os.rename(tmp, args.addr_file)
    if args.watch_pid:
        def watch():
            while True:
                try:
                    os.kill(args.watch_pid, 0)
                except ProcessLookupError:
                    os._exit(0)
                time.sleep(1)
        threading.Thread(target=watch, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
