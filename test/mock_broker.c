/*
 * mock_broker: a standalone Kafka "broker" for tests, built on librdkafka's
 * mock cluster (rdkafka_mock.h).  Other processes (kcat, produce,
 * consume_bench, the streamflink workers) talk to it over loopback TCP as if
 * it were a real Kafka cluster.
 *
 * Usage:
 *   mock_broker [--brokers N] [--topic NAME:PARTITIONS[:MAX]]...
 *               [--missing-topic NAME]... [--addr-file PATH]
 *               [--watch-pid PID] [--proxy]
 *
 *   --brokers N          number of mock brokers (default 1)
 *   --topic NAME:P       create topic NAME with P partitions (replication 1;
 *                        the mock caps replication at the broker count)
 *   --topic NAME:P:MAX   (implies --proxy) a topic of P partitions to which
 *                        partitions can be added, up to MAX (see the proxy
 *                        below: "create_partitions NAME N" to _mock_admin)
 *   --proxy              clients talk to a Kafka protocol proxy in front of
 *                        the mock, which adds what the mock lacks: offsets
 *                        by timestamp and partitions added to a topic (see
 *                        "The Kafka protocol proxy" below)
 *   --missing-topic NAME make metadata requests for NAME fail with
 *                        UNKNOWN_TOPIC_OR_PART (the mock auto-creates every
 *                        topic a metadata request names, and that cannot be
 *                        switched off: this is the only way to get a
 *                        "missing topic")
 *   --addr-file PATH     also write the bootstrap address to PATH, atomically
 *                        (PATH.tmp.<pid> + rename), and unlink it on a clean
 *                        exit
 *   --watch-pid PID      exit by itself once process PID is gone (so a test
 *                        script killed with SIGKILL does not leak a broker)
 *
 * The bootstrap address ("127.0.0.1:PORT[,127.0.0.1:PORT...]", random ports)
 * is printed as one line on stdout.  The program then sleeps until SIGTERM,
 * SIGINT or SIGHUP, destroys the mock cluster and then the client handle
 * (that order matters: the cluster uses the handle).  Exit status 0 on a
 * signal-driven shutdown, 1 on a startup error, 2 on a usage error.
 *
 * Data retention (checked in librdkafka 2.0.2, rdkafka_mock.c,
 * rd_kafka_mock_partition_init): every mock partition keeps at most
 * max_size = 5 MiB of (possibly compressed) record batches or max_cnt =
 * 100,000 batches; beyond that the oldest batches are silently deleted and
 * the log start offset moves forward.  Neither limit is settable through the
 * public API, so there is nothing to configure here: producers of big test
 * topics must batch and compress (test/produce uses zstd, linger.ms=20), or
 * spread the data over more partitions.  All data lives in this process's
 * memory: keep the broker running for the whole test, across Postgres
 * restarts.
 *
 * Build: cc -O2 -Wall -o test/mock_broker test/mock_broker.c -lrdkafka -lpthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_TOPICS 256

struct topic_spec {
    char *name;
    int   partitions;   /* created on the mock */
    int   visible;      /* shown by the proxy (--proxy): NAME:VISIBLE:PARTITIONS */
};

static const char *progname = "mock_broker";

static void usage(FILE *out)
{
    fprintf(out,
            "usage: %s [--brokers N] [--topic NAME:PARTITIONS[:MAX]]... "
            "[--missing-topic NAME]... [--addr-file PATH] [--watch-pid PID] [--proxy]\n",
            progname);
}

static int parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    long  v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Write "addr\n" to path atomically: a reader sees no file or the whole line. */
static int write_addr_file(const char *path, const char *addr)
{
    char  tmp[PATH_MAX];
    FILE *f;
    int   n;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long) getpid());
    if (n < 0 || (size_t) n >= sizeof(tmp)) {
        fprintf(stderr, "%s: --addr-file path too long\n", progname);
        return -1;
    }
    if (!(f = fopen(tmp, "w"))) {
        fprintf(stderr, "%s: cannot create %s: %s\n", progname, tmp,
                strerror(errno));
        return -1;
    }
    if (fprintf(f, "%s\n", addr) < 0 || fflush(f) != 0) {
        fprintf(stderr, "%s: cannot write %s: %s\n", progname, tmp,
                strerror(errno));
        fclose(f);
        unlink(tmp);
        return -1;
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "%s: cannot write %s: %s\n", progname, tmp,
                strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        fprintf(stderr, "%s: cannot rename %s to %s: %s\n", progname, tmp,
                path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/*
 * librdkafka log lines go to stderr, except the "No bootstrap.servers
 * configured" CONFWARN, which is expected here (the handle only hosts the
 * mock cluster).  Called on librdkafka threads: stdio only.
 */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
    if (!strcmp(fac, "CONFWARN") && strstr(buf, "bootstrap.servers"))
        return;
    fprintf(stderr, "%s: rdkafka %d %s %s: %s\n", progname, level, fac,
            rk ? rd_kafka_name(rk) : "-", buf);
}

/*
 * ---- The Kafka protocol proxy (--proxy) ----
 *
 * librdkafka 2.0.2's mock cluster lacks two things a real broker has, and
 * no public API adds them:
 *   - ListOffsets by timestamp (rd_kafka_offsets_for_times): the mock
 *     answers offset -1 for every timestamp ("FIXME: by timestamp" in
 *     rdkafka_mock_handlers.c);
 *   - adding partitions to a topic (Kafka's CreatePartitions).
 * With --proxy, clients talk to a proxy in front of each mock broker, which
 * relays every request and response unchanged except:
 *   - Metadata responses (v0-4, what librdkafka 2.0.2 asks for): broker
 *     ports are the proxy's, and a topic created with NAME:P:MAX shows its
 *     first P partitions only, as a topic with P partitions would;
 *   - FindCoordinator responses (v0-2): the coordinator's port is the
 *     proxy's;
 *   - ListOffsets responses (v1-2) for a partition asked by timestamp: the
 *     earliest offset whose message timestamp is >= it, with that
 *     timestamp, or -1 and -1 when there is none, as Kafka answers; found
 *     by reading the partition with a consumer of our own.
 * A message "create_partitions NAME N" produced to topic _mock_admin makes
 * NAME show N partitions (at most MAX; never fewer), as kafka-topics.sh
 * --alter --partitions N would: the new ones are empty and appear in the
 * next metadata response.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/socket.h>

#define PROXY_MAX_BROKERS 64

static int            proxy_nbrokers;
static int            proxy_mock_port[PROXY_MAX_BROKERS];
static int            proxy_port[PROXY_MAX_BROKERS];
static int            proxy_listen_fd[PROXY_MAX_BROKERS];
static char           proxy_mock_bootstraps[1024];
static pthread_mutex_t proxy_lock = PTHREAD_MUTEX_INITIALIZER;
static struct topic_spec *proxy_topics;    /* visible partitions */
static int            proxy_ntopics;

static int proxy_map_port(int mock_port)
{
    for (int i = 0; i < proxy_nbrokers; i++)
        if (proxy_mock_port[i] == mock_port)
            return proxy_port[i];
    return mock_port;
}

/* Visible partitions of a topic, or -1 when all are. */
static int proxy_visible(const char *name, int len)
{
    int v = -1;

    pthread_mutex_lock(&proxy_lock);
    for (int i = 0; i < proxy_ntopics; i++)
        if ((int) strlen(proxy_topics[i].name) == len &&
            !memcmp(proxy_topics[i].name, name, len) &&
            proxy_topics[i].visible < proxy_topics[i].partitions)
            v = proxy_topics[i].visible;
    pthread_mutex_unlock(&proxy_lock);
    return v;
}

/* ---- big-endian buffers ---- */
typedef struct {
    const unsigned char *p, *end;
    int ok;
} rbuf;

static int32_t rd_i32(rbuf *b)
{
    if (b->end - b->p < 4) { b->ok = 0; return 0; }
    int32_t v = (int32_t) ((uint32_t) b->p[0] << 24 | (uint32_t) b->p[1] << 16 |
                           (uint32_t) b->p[2] << 8 | b->p[3]);
    b->p += 4;
    return v;
}
static int16_t rd_i16(rbuf *b)
{
    if (b->end - b->p < 2) { b->ok = 0; return 0; }
    int16_t v = (int16_t) (b->p[0] << 8 | b->p[1]);
    b->p += 2;
    return v;
}
static int64_t rd_i64(rbuf *b)
{
    uint64_t hi = (uint32_t) rd_i32(b), lo = (uint32_t) rd_i32(b);
    return (int64_t) (hi << 32 | lo);
}
/* A (nullable) string: its bytes and length (-1: null). */
static const unsigned char *rd_str(rbuf *b, int *len)
{
    const unsigned char *s;

    *len = rd_i16(b);
    if (*len < 0)
        return NULL;
    if (b->end - b->p < *len) { b->ok = 0; *len = 0; return NULL; }
    s = b->p;
    b->p += *len;
    return s;
}

typedef struct {
    unsigned char *data;
    size_t len, cap;
} wbuf;

static void wr_raw(wbuf *w, const void *d, size_t n)
{
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2 + 64;
        w->data = realloc(w->data, w->cap);
        if (!w->data) { perror("realloc"); exit(1); }
    }
    memcpy(w->data + w->len, d, n);
    w->len += n;
}
static void wr_i32(wbuf *w, int32_t v)
{
    unsigned char b[4] = {(unsigned char) (v >> 24), (unsigned char) (v >> 16),
                          (unsigned char) (v >> 8), (unsigned char) v};
    wr_raw(w, b, 4);
}
static void wr_i16(wbuf *w, int16_t v)
{
    unsigned char b[2] = {(unsigned char) (v >> 8), (unsigned char) v};
    wr_raw(w, b, 2);
}
static void put_i64(unsigned char *p, int64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char) v;
}
static void wr_str(wbuf *w, const unsigned char *s, int len)
{
    wr_i16(w, (int16_t) len);
    if (len > 0)
        wr_raw(w, s, len);
}

static int read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, (char *) buf + got, n - got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        got += r;
    }
    return 0;
}
static int write_full(int fd, const void *buf, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t r = write(fd, (const char *) buf + done, n - done);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        done += r;
    }
    return 0;
}
/* One frame: its body (malloc'd) and length; -1 at end of stream. */
static int read_frame(int fd, unsigned char **body, int32_t *len)
{
    unsigned char h[4];

    if (read_full(fd, h, 4) != 0)
        return -1;
    *len = (int32_t) ((uint32_t) h[0] << 24 | (uint32_t) h[1] << 16 | (uint32_t) h[2] << 8 | h[3]);
    if (*len < 0 || *len > 256 * 1024 * 1024)
        return -1;
    *body = malloc(*len > 0 ? *len : 1);
    if (!*body || read_full(fd, *body, *len) != 0) {
        free(*body);
        return -1;
    }
    return 0;
}
static int write_frame(int fd, const unsigned char *body, int32_t len)
{
    unsigned char h[4] = {(unsigned char) (len >> 24), (unsigned char) (len >> 16),
                          (unsigned char) (len >> 8), (unsigned char) len};
    return write_full(fd, h, 4) == 0 && write_full(fd, body, len) == 0 ? 0 : -1;
}

/* ---- offsets by timestamp, read from the mock with a consumer of ours ---- */
static rd_kafka_t *times_rk;

static void proxy_offset_for_time(const char *topic, int32_t partition, int64_t ts,
                                  int64_t *offset, int64_t *found_ts)
{
    int64_t low, high;
    rd_kafka_topic_partition_list_t *parts;

    *offset = -1;
    *found_ts = -1;
    pthread_mutex_lock(&proxy_lock);
    if (!times_rk) {
        char errstr[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();

        rd_kafka_conf_set(conf, "bootstrap.servers", proxy_mock_bootstraps, errstr, sizeof(errstr));
        rd_kafka_conf_set(conf, "group.id", "mock_broker_times", errstr, sizeof(errstr));
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", errstr, sizeof(errstr));
        rd_kafka_conf_set_log_cb(conf, log_cb);
        times_rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        if (!times_rk) {
            fprintf(stderr, "%s: proxy consumer: %s\n", progname, errstr);
            pthread_mutex_unlock(&proxy_lock);
            return;
        }
    }
    if (rd_kafka_query_watermark_offsets(times_rk, topic, partition, &low, &high, 5000) ||
        high <= low) {
        pthread_mutex_unlock(&proxy_lock);
        return;
    }
    parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic, partition)->offset = low;
    rd_kafka_assign(times_rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    for (int64_t next = low; next < high;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(times_rk, 5000);
        rd_kafka_timestamp_type_t tstype;
        int64_t mts;

        if (!m)
            break;  /* the mock did not answer: no offset */
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        mts = rd_kafka_message_timestamp(m, &tstype);
        next = m->offset + 1;
        if (mts >= ts) {
            *offset = m->offset;
            *found_ts = mts;
            rd_kafka_message_destroy(m);
            break;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(times_rk, NULL);
    pthread_mutex_unlock(&proxy_lock);
}

/* ---- one client connection ---- */
typedef struct pending {
    int32_t corrid;
    int16_t apikey, version;
    int ntimes;          /* ListOffsets partitions asked by timestamp */
    char **topics;
    int32_t *parts;
    int64_t *times;
    struct pending *next;
} pending;

typedef struct conn {
    int client, upstream;
    pthread_mutex_t lock;
    pending *head, *tail;
} conn;

static void pending_free(pending *p)
{
    for (int i = 0; i < p->ntimes; i++)
        free(p->topics[i]);
    free(p->topics);
    free(p->parts);
    free(p->times);
    free(p);
}

/* Requests: note what the response needs, forward unchanged. */
static void *proxy_c2u(void *arg)
{
    conn *c = arg;
    unsigned char *body;
    int32_t len;

    while (read_frame(c->client, &body, &len) == 0) {
        rbuf b = {body, body + len, 1};
        pending *p = calloc(1, sizeof(*p));
        int n;

        p->apikey = rd_i16(&b);
        p->version = rd_i16(&b);
        p->corrid = rd_i32(&b);
        if (p->apikey == 2 && (p->version == 1 || p->version == 2) && b.ok) {
            int ntopics, cap = 0;

            rd_str(&b, &n);                     /* client id */
            rd_i32(&b);                         /* replica id */
            if (p->version >= 2)
                b.p++;                          /* isolation level */
            ntopics = rd_i32(&b);
            for (int t = 0; b.ok && t < ntopics; t++) {
                int tlen, nparts;
                const unsigned char *tname = rd_str(&b, &tlen);

                nparts = rd_i32(&b);
                for (int i = 0; b.ok && i < nparts; i++) {
                    int32_t part = rd_i32(&b);
                    int64_t ts = rd_i64(&b);

                    if (!b.ok || ts < 0 || !tname)
                        continue;
                    if (p->ntimes == cap) {
                        cap = cap * 2 + 4;
                        p->topics = realloc(p->topics, cap * sizeof(char *));
                        p->parts = realloc(p->parts, cap * sizeof(int32_t));
                        p->times = realloc(p->times, cap * sizeof(int64_t));
                    }
                    p->topics[p->ntimes] = strndup((const char *) tname, tlen);
                    p->parts[p->ntimes] = part;
                    p->times[p->ntimes++] = ts;
                }
            }
        }
        pthread_mutex_lock(&c->lock);
        if (c->tail)
            c->tail->next = p;
        else
            c->head = p;
        c->tail = p;
        pthread_mutex_unlock(&c->lock);
        if (write_frame(c->upstream, body, len) != 0) {
            free(body);
            break;
        }
        free(body);
    }
    shutdown(c->upstream, SHUT_RDWR);
    shutdown(c->client, SHUT_RDWR);
    return NULL;
}

/* Metadata v0-4, rebuilt: our ports, hidden partitions left out. */
static int proxy_metadata(const unsigned char *body, int32_t len, int16_t v, wbuf *out)
{
    rbuf b = {body, body + len, 1};
    int n, slen;
    const unsigned char *s;

    wr_i32(out, rd_i32(&b));                    /* correlation id */
    if (v >= 3)
        wr_i32(out, rd_i32(&b));                /* throttle time */
    n = rd_i32(&b);
    wr_i32(out, n);
    for (int i = 0; b.ok && i < n; i++) {
        wr_i32(out, rd_i32(&b));                /* node id */
        s = rd_str(&b, &slen);
        wr_str(out, s, slen);                   /* host */
        wr_i32(out, proxy_map_port(rd_i32(&b)));
        if (v >= 1) {
            s = rd_str(&b, &slen);
            wr_str(out, s, slen);               /* rack */
        }
    }
    if (v >= 2) {
        s = rd_str(&b, &slen);
        wr_str(out, s, slen);                   /* cluster id */
    }
    if (v >= 1)
        wr_i32(out, rd_i32(&b));                /* controller id */
    n = rd_i32(&b);
    wr_i32(out, n);
    for (int t = 0; b.ok && t < n; t++) {
        int nparts, visible, tlen;
        size_t count_at;
        int kept = 0;
        const unsigned char *tname;

        wr_i16(out, rd_i16(&b));                /* error code */
        tname = rd_str(&b, &tlen);
        wr_str(out, tname, tlen);
        if (v >= 1) {
            unsigned char internal = b.p < b.end ? *b.p++ : 0;
            wr_raw(out, &internal, 1);
        }
        visible = tname ? proxy_visible((const char *) tname, tlen) : -1;
        nparts = rd_i32(&b);
        count_at = out->len;
        wr_i32(out, 0);                         /* patched below */
        for (int p = 0; b.ok && p < nparts; p++) {
            const unsigned char *start = b.p;
            int32_t id, nr;

            rd_i16(&b);                         /* error code */
            id = rd_i32(&b);
            rd_i32(&b);                         /* leader */
            for (int k = 0; k < 2 && b.ok; k++) {   /* replicas, isr */
                nr = rd_i32(&b);
                if (nr < 0 || b.end - b.p < (long) nr * 4) { b.ok = 0; break; }
                b.p += nr * 4;
            }
            if (b.ok && (visible < 0 || id < visible)) {
                wr_raw(out, start, b.p - start);
                kept++;
            }
        }
        out->data[count_at] = (unsigned char) (kept >> 24);
        out->data[count_at + 1] = (unsigned char) (kept >> 16);
        out->data[count_at + 2] = (unsigned char) (kept >> 8);
        out->data[count_at + 3] = (unsigned char) kept;
    }
    if (b.p != b.end)
        b.ok = 0;
    return b.ok ? 0 : -1;
}

/* ListOffsets v1-2: offsets by timestamp patched in place. */
static void proxy_list_offsets(unsigned char *body, int32_t len, pending *p)
{
    rbuf b = {body, body + len, 1};
    int ntopics;

    rd_i32(&b);                                 /* correlation id */
    if (p->version >= 2)
        rd_i32(&b);                             /* throttle time */
    ntopics = rd_i32(&b);
    for (int t = 0; b.ok && t < ntopics; t++) {
        int tlen, nparts;
        const unsigned char *tname = rd_str(&b, &tlen);

        nparts = rd_i32(&b);
        for (int i = 0; b.ok && i < nparts; i++) {
            int32_t part = rd_i32(&b);
            int16_t err = rd_i16(&b);
            unsigned char *tsp = (unsigned char *) b.p;

            rd_i64(&b);
            rd_i64(&b);
            if (!b.ok || err != 0 || !tname)
                continue;
            for (int k = 0; k < p->ntimes; k++)
                if (p->parts[k] == part && (int) strlen(p->topics[k]) == tlen &&
                    !memcmp(p->topics[k], tname, tlen)) {
                    int64_t off, ts;

                    proxy_offset_for_time(p->topics[k], part, p->times[k], &off, &ts);
                    put_i64(tsp, ts);
                    put_i64(tsp + 8, off);
                }
        }
    }
}

/* Responses: rewritten where needed, in the order of their requests. */
static void *proxy_u2c(void *arg)
{
    conn *c = arg;
    unsigned char *body;
    int32_t len;

    while (read_frame(c->upstream, &body, &len) == 0) {
        pending *p;
        int32_t corrid = len >= 4 ? (int32_t) ((uint32_t) body[0] << 24 | (uint32_t) body[1] << 16 |
                                              (uint32_t) body[2] << 8 | body[3]) : -1;
        int rc;

        pthread_mutex_lock(&c->lock);
        p = c->head;
        if (p && p->corrid == corrid) {
            c->head = p->next;
            if (!c->head)
                c->tail = NULL;
        } else
            p = NULL;
        pthread_mutex_unlock(&c->lock);

        if (p && p->apikey == 3 && p->version <= 4) {
            wbuf out = {0};

            if (proxy_metadata(body, len, p->version, &out) == 0)
                rc = write_frame(c->client, out.data, (int32_t) out.len);
            else {
                fprintf(stderr, "%s: proxy: cannot parse Metadata v%d response, passed on\n",
                        progname, p->version);
                rc = write_frame(c->client, body, len);
            }
            free(out.data);
        } else {
            if (p && p->apikey == 10 && p->version <= 2 && len >= 8) {
                unsigned char *pp = body + len - 4;
                int port = (int) ((uint32_t) pp[0] << 24 | (uint32_t) pp[1] << 16 |
                                  (uint32_t) pp[2] << 8 | pp[3]);

                port = proxy_map_port(port);
                pp[0] = (unsigned char) (port >> 24);
                pp[1] = (unsigned char) (port >> 16);
                pp[2] = (unsigned char) (port >> 8);
                pp[3] = (unsigned char) port;
            }
            if (p && p->apikey == 2 && p->ntimes > 0)
                proxy_list_offsets(body, len, p);
            rc = write_frame(c->client, body, len);
        }
        free(body);
        if (p)
            pending_free(p);
        if (rc != 0)
            break;
    }
    shutdown(c->client, SHUT_RDWR);
    shutdown(c->upstream, SHUT_RDWR);
    return NULL;
}

static void *proxy_conn_main(void *arg)
{
    conn *c = arg;
    pthread_t t;

    pthread_create(&t, NULL, proxy_u2c, c);
    proxy_c2u(c);
    pthread_join(t, NULL);
    close(c->client);
    close(c->upstream);
    while (c->head) {
        pending *p = c->head;
        c->head = p->next;
        pending_free(p);
    }
    free(c);
    return NULL;
}

static void *proxy_accept_main(void *arg)
{
    int i = (int) (intptr_t) arg;

    for (;;) {
        int fd = accept(proxy_listen_fd[i], NULL, NULL);
        struct sockaddr_in up = {0};
        conn *c;
        pthread_t t;
        int one = 1;

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL;
        }
        c = calloc(1, sizeof(*c));
        c->client = fd;
        c->upstream = socket(AF_INET, SOCK_STREAM, 0);
        up.sin_family = AF_INET;
        up.sin_port = htons((uint16_t) proxy_mock_port[i]);
        up.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(c->upstream, (struct sockaddr *) &up, sizeof(up)) != 0) {
            close(c->upstream);
            close(fd);
            free(c);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(c->upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        pthread_mutex_init(&c->lock, NULL);
        if (pthread_create(&t, NULL, proxy_conn_main, c) == 0)
            pthread_detach(t);
    }
    return NULL;
}

/* Listen in front of every mock broker; the proxy's bootstrap list in 'out'. */
static int proxy_start(const char *mock_bootstraps, char *out, size_t outlen)
{
    char *list = strdup(mock_bootstraps), *save = NULL, *tok;
    size_t used = 0;

    snprintf(proxy_mock_bootstraps, sizeof(proxy_mock_bootstraps), "%s", mock_bootstraps);
    out[0] = '\0';
    for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(tok, ':');
        struct sockaddr_in a = {0};
        socklen_t alen = sizeof(a);
        pthread_t t;
        int fd, one = 1;

        if (!colon || proxy_nbrokers == PROXY_MAX_BROKERS)
            return -1;
        proxy_mock_port[proxy_nbrokers] = atoi(colon + 1);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *) &a, sizeof(a)) != 0 || listen(fd, 128) != 0 ||
            getsockname(fd, (struct sockaddr *) &a, &alen) != 0) {
            perror("proxy listen");
            return -1;
        }
        proxy_listen_fd[proxy_nbrokers] = fd;
        proxy_port[proxy_nbrokers] = ntohs(a.sin_port);
        used += snprintf(out + used, outlen - used, "%s127.0.0.1:%d", used ? "," : "",
                         proxy_port[proxy_nbrokers]);
        if (pthread_create(&t, NULL, proxy_accept_main, (void *) (intptr_t) proxy_nbrokers) != 0)
            return -1;
        pthread_detach(t);
        proxy_nbrokers++;
    }
    free(list);
    return proxy_nbrokers > 0 ? 0 : -1;
}

/* "create_partitions NAME N": NAME shows N partitions from now on. */
static void proxy_admin(const char *msg, size_t len)
{
    char cmd[64], name[256];
    int n;
    char *line = strndup(msg, len);

    if (sscanf(line, "%63s %255s %d", cmd, name, &n) == 3 && !strcmp(cmd, "create_partitions")) {
        int done = 0;

        pthread_mutex_lock(&proxy_lock);
        for (int i = 0; i < proxy_ntopics; i++)
            if (!strcmp(proxy_topics[i].name, name)) {
                if (n > proxy_topics[i].visible && n <= proxy_topics[i].partitions) {
                    proxy_topics[i].visible = n;
                    done = 1;
                }
            }
        pthread_mutex_unlock(&proxy_lock);
        fprintf(stderr, "%s: %s %s %d: %s\n", progname, cmd, name, n,
                done ? "done" : "refused (unknown topic, fewer partitions, or more than created)");
    } else
        fprintf(stderr, "%s: unknown admin message \"%s\"\n", progname, line);
    free(line);
}

int main(int argc, char **argv)
{
    long                     brokers = 1;
    struct topic_spec        topics[MAX_TOPICS];
    int                      ntopics = 0;
    const char              *missing[MAX_TOPICS];
    int                      nmissing = 0;
    const char              *addr_file = NULL;
    long                     watch_pid = 0;
    char                     errstr[512];
    rd_kafka_conf_t         *conf;
    rd_kafka_t              *rk;
    rd_kafka_mock_cluster_t *mc;
    const char              *addr;
    char                     proxy_addr[2048];
    int                      proxy = 0;
    rd_kafka_t              *admin = NULL;
    sigset_t                 sigs;
    int                      i, sig = 0;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;

        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--brokers") && v) {
            if (parse_int(v, 1, 64, &brokers) != 0) {
                fprintf(stderr, "%s: --brokers: expected 1..64, got \"%s\"\n",
                        progname, v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--proxy")) {
            proxy = 1;
        } else if (!strcmp(a, "--topic") && v) {
            /* NAME:PARTITIONS, or NAME:VISIBLE:PARTITIONS (with --proxy) */
            const char *colon = strchr(v, ':');
            const char *colon2 = colon ? strchr(colon + 1, ':') : NULL;
            long        parts, visible;
            char       *num;

            num = colon ? strndup(colon + 1, colon2 ? (size_t) (colon2 - colon - 1)
                                                    : strlen(colon + 1)) : NULL;
            if (!colon || colon == v ||
                parse_int(num, 1, 100000, &visible) != 0 ||
                (colon2 ? parse_int(colon2 + 1, 1, 100000, &parts) != 0 || parts < visible
                        : (parts = visible, 0))) {
                fprintf(stderr,
                        "%s: --topic: expected NAME:PARTITIONS or NAME:VISIBLE:PARTITIONS, got \"%s\"\n",
                        progname, v);
                return 2;
            }
            free(num);
            if (ntopics == MAX_TOPICS) {
                fprintf(stderr, "%s: too many --topic options\n", progname);
                return 2;
            }
            topics[ntopics].name = strndup(v, (size_t) (colon - v));
            topics[ntopics].partitions = (int) parts;
            topics[ntopics].visible = (int) visible;
            ntopics++;
            i++;
        } else if (!strcmp(a, "--missing-topic") && v) {
            if (!*v || nmissing == MAX_TOPICS) {
                fprintf(stderr, "%s: bad or too many --missing-topic\n",
                        progname);
                return 2;
            }
            missing[nmissing++] = v;
            i++;
        } else if (!strcmp(a, "--addr-file") && v) {
            addr_file = v;
            i++;
        } else if (!strcmp(a, "--watch-pid") && v) {
            if (parse_int(v, 1, INT_MAX, &watch_pid) != 0) {
                fprintf(stderr, "%s: --watch-pid: bad pid \"%s\"\n", progname,
                        v);
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "%s: unknown or incomplete option \"%s\"\n",
                    progname, a);
            usage(stderr);
            return 2;
        }
    }

    /*
     * Shutdown signals are taken synchronously with sigtimedwait().  Reset
     * their disposition first: a non-interactive shell starts background
     * jobs with SIGINT ignored, and an ignored signal is discarded instead of
     * becoming pending.  Block them before librdkafka starts any thread so
     * that no thread can take them asynchronously (librdkafka's own threads
     * block all signals anyway).
     */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) != 0) {
        perror("sigprocmask");
        return 1;
    }

    /* A plain producer handle: it only hosts the mock cluster (and its log). */
    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "client.id", "mock_broker", errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s: %s\n", progname, errstr);
        return 1;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "%s: rd_kafka_new: %s\n", progname, errstr);
        return 1;
    }

    mc = rd_kafka_mock_cluster_new(rk, (int) brokers);
    if (!mc) {
        fprintf(stderr, "%s: rd_kafka_mock_cluster_new failed\n", progname);
        rd_kafka_destroy(rk);
        return 1;
    }

    for (i = 0; i < ntopics; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
            mc, topics[i].name, topics[i].partitions, 1);
        if (err) {
            fprintf(stderr, "%s: cannot create topic %s: %s\n", progname,
                    topics[i].name, rd_kafka_err2str(err));
            rd_kafka_mock_cluster_destroy(mc);
            rd_kafka_destroy(rk);
            return 1;
        }
    }
    for (i = 0; i < nmissing; i++)
        rd_kafka_mock_topic_set_error(mc, missing[i],
                                      RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);

    addr = rd_kafka_mock_cluster_bootstraps(mc);
    for (i = 0; i < ntopics; i++)
        if (topics[i].visible < topics[i].partitions)
            proxy = 1;
    if (proxy) {
        char errstr2[512];
        rd_kafka_conf_t *aconf;
        rd_kafka_topic_partition_list_t *ap;

        proxy_topics = topics;
        proxy_ntopics = ntopics;
        rd_kafka_mock_topic_create(mc, "_mock_admin", 1, 1);
        if (proxy_start(addr, proxy_addr, sizeof(proxy_addr)) != 0) {
            fprintf(stderr, "%s: cannot start the proxy\n", progname);
            rd_kafka_mock_cluster_destroy(mc);
            rd_kafka_destroy(rk);
            return 1;
        }
        /* admin messages, read from the mock itself */
        aconf = rd_kafka_conf_new();
        rd_kafka_conf_set(aconf, "bootstrap.servers", addr, errstr2, sizeof(errstr2));
        rd_kafka_conf_set(aconf, "group.id", "mock_broker_admin", errstr2, sizeof(errstr2));
        rd_kafka_conf_set(aconf, "fetch.wait.max.ms", "10", errstr2, sizeof(errstr2));
        rd_kafka_conf_set_log_cb(aconf, log_cb);
        admin = rd_kafka_new(RD_KAFKA_CONSUMER, aconf, errstr2, sizeof(errstr2));
        if (!admin) {
            fprintf(stderr, "%s: admin consumer: %s\n", progname, errstr2);
            return 1;
        }
        ap = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(ap, "_mock_admin", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(admin, ap);
        rd_kafka_topic_partition_list_destroy(ap);
        addr = proxy_addr;
    }
    if (addr_file && write_addr_file(addr_file, addr) != 0) {
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(rk);
        return 1;
    }
    printf("%s\n", addr);
    fflush(stdout);

    fprintf(stderr, "%s: pid %ld, %ld broker(s) at %s", progname,
            (long) getpid(), brokers, addr);
    for (i = 0; i < ntopics; i++)
        fprintf(stderr, "%s%s:%d", i ? ", " : "; topics ", topics[i].name,
                topics[i].partitions);
    for (i = 0; i < nmissing; i++)
        fprintf(stderr, "%s%s", i ? ", " : "; missing ", missing[i]);
    fprintf(stderr, "\n");

    for (;;) {
        struct timespec timeout = {proxy ? 0 : 1, proxy ? 200000000 : 0};

        if (admin) {
            rd_kafka_message_t *m;

            while ((m = rd_kafka_consumer_poll(admin, 0)) != NULL) {
                if (!m->err && m->payload)
                    proxy_admin((const char *) m->payload, m->len);
                rd_kafka_message_destroy(m);
            }
        }

        sig = sigtimedwait(&sigs, NULL, &timeout);
        if (sig > 0)
            break;
        if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            perror("sigtimedwait");
            sig = 0;
            break;
        }
        if (watch_pid > 0 && kill((pid_t) watch_pid, 0) != 0 &&
            errno == ESRCH) {
            fprintf(stderr, "%s: watched pid %ld is gone, exiting\n",
                    progname, watch_pid);
            break;
        }
    }

    if (sig > 0)
        fprintf(stderr, "%s: got signal %d, shutting down\n", progname, sig);
    if (addr_file)
        unlink(addr_file);

    if (admin)
        rd_kafka_destroy(admin);
    if (times_rk)
        rd_kafka_destroy(times_rk);
    /* The cluster runs on the handle: destroy it first. */
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    for (i = 0; i < ntopics; i++)
        free(topics[i].name);
    return 0;
}
