# shellcheck shell=bash
#
# test/lib.sh: helpers shared by streamflink's test, benchmark and demo
# scripts.  Source it from bash (works under `set -euo pipefail`):
#
#     . "$(dirname "$0")/lib.sh"
#     sf_cleanup_trap                 # stop servers/brokers on any exit
#     sf_install_deps; sf_build
#     addr=$(sf_broker_start "$work" events:4 --missing-topic nope)
#     sf_pg_start "$work/pg" 55432 "streamflink.some_guc = 1"
#     sf_psql "$work/pg" 55432 -c 'CREATE EXTENSION streamflink'
#
# Functions (details above each definition):
#   sf_install_deps                 apt-get the build/test dependencies (root)
#   sf_build                        make, make install, make test-programs
#   sf_user                         echo the OS user that runs Postgres
#   sf_as_user CMD...               run CMD as that user
#   sf_pg_start DIR PORT [LINE...]  initdb if needed, configure, start
#   sf_pg_stop DIR [MODE]           pg_ctl stop (fast|smart|immediate)
#   sf_pg_restart DIR [MODE]        stop with MODE, start again
#   sf_pg_running DIR               status 0 if the server of DIR is up
#   sf_psql DIR PORT [PSQL ARGS...] psql -X -v ON_ERROR_STOP=1 to DIR's server
#   sf_broker_start WORKDIR SPEC... start test/mock_broker, echo its address
#   sf_broker_stop WORKDIR          stop it
#   sf_registry_start WORKDIR [ID=FILE.avsc...]  start test/schema_registry.py, echo its URL
#   sf_registry_stop WORKDIR        stop it
#   sf_cleanup_trap                 on EXIT/INT/TERM/HUP: stop what was started
#   sf_cleanup_add_path PATH        also rm -rf PATH at exit (unless SF_KEEP=1)
#   sf_free_port                    echo a free TCP port
#   sf_test_setup NAME              the start of a test script (see below)
# Crash tests (test/fault_*.sh):
#   sf_psql_retry DIR PORT [ARGS...]  sf_psql, retried while the server restarts
#   sf_wait_sql DIR PORT WHAT COND [TRIES [INTERVAL]]  until SELECT (COND) is true
#   sf_wait_offsets DIR PORT PIPELINE TOTAL [TRIES [INTERVAL]]  until TOTAL offsets are checkpointed
#   sf_wait_worker DIR CMD...       until CMD echoes a worker's pid
#   sf_fault_order SEED KILLS RESTARTS  kill/restart lines in a seeded order
#   sf_fault_pause                  sleep 0 to 1.5 s (RANDOM)
#   sf_failpoint_set DIR POINT [rows]; sf_failpoint_wait DIR [SECONDS]
#   sf_rides_expected_sql CSV       SQL: ride_events and the hop window's answer
#   sf_show_window_diff DIR PORT TABLE  windows missing or wrong in TABLE
#   sf_rides_setup NAME TOPIC PARTS EVENTS CHUNKS [SPEC...] [-- LINE...]
#                                   events, broker, server of a rides crash test
#   sf_rides_start PIPE SINK TOPIC FORMAT [PIPELINE_ARGS [SOURCE_ARGS]]
#                                   its source 'rides' and hop window pipeline
#   sf_rides_verdict PIPE TABLE     its windows, dead letters and late events
#                                   against SQL's answer
#   (test/rides_fault.sh: more of the crash tests that read gen_events.py's
#   chunks into one hop window pipeline)
# Benchmarks (test/bench/*.sh):
#   sf_now; sf_rate N T0 T1         time stamps and rates
#   sf_bench_events N PARTS [FINAL] the JSON events, as test/produce reads them
#   sf_bench_pg_start DIR PORT [LINE...]  sf_pg_start with the bench settings
#   sf_bench_source DIR PORT ADDR   the extension and the source 'bench'
#   sf_bench_db DIR PORT [LINE...]  sf_pg_start, the database bench, the extension
#   sf_bench_perf DIR PORT PIPELINE SECONDS FILE  perf profile of a worker
#   sf_topic_intact ADDR TOPIC N    fail if the broker dropped the start of a partition
#   sf_cpu_seconds PID              user + system CPU seconds of a process
#
# Environment knobs:
#   SF_PG_CONFIG   pg_config to build and run with
#                  (default /usr/lib/postgresql/15/bin/pg_config)
#   SF_INSTALL     when set: a private installation (like Postgres' own
#                  tmp_install): sf_build copies the Postgres installation
#                  there and installs streamflink into it, and servers run
#                  from it, so tests never touch the system's Postgres and
#                  several work trees can be tested at once.  Empty or
#                  unset: build into and run the system's Postgres.
#   SF_PRELOAD     shared_preload_libraries value written by sf_pg_start
#                  (default 'streamflink'; set it to '' for a server without
#                  the extension)
#   SF_USER_NAME   unprivileged user created when running as root
#                  (default streamflink)
#   SF_KEEP=1      sf_cleanup_trap leaves servers, brokers and paths alone
#                  (for debugging a failed run)
#   SF_BROKER_WATCH=0  do not tie the broker's life to this script's PID
#
# Postgres refuses to run as root: as root, the server, initdb and pg_ctl run
# as SF_USER_NAME through runuser; as any other user they run directly.  The
# data directory is also the Unix socket directory, so keep its path short
# (the socket path must fit in 107 bytes).

SF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SF_PG_CONFIG=${SF_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
SF_USER_NAME=${SF_USER_NAME:-streamflink}

_sf_die() {
    echo "streamflink test: $*" >&2
    return 1
}

_sf_is_root() {
    [ "$(id -u)" -eq 0 ]
}

# Absolute form of a path that may not exist yet (no symlink resolution
# beyond what realpath -m does).
_sf_abspath() {
    realpath -m -- "$1"
}

_sf_pgbin() {
    local bindir
    if [ -x "$SF_PG_CONFIG" ]; then
        bindir=$("$SF_PG_CONFIG" --bindir)
    else
        bindir=/usr/lib/postgresql/15/bin
    fi
    echo "${SF_INSTALL:+$SF_INSTALL}$bindir"
}

# Copy the system's Postgres (binaries, libraries, share files) under
# SF_INSTALL, keeping its layout: Postgres finds its lib and share
# directories relative to its own binary, so the copy loads the extension
# installed into it (make install DESTDIR=SF_INSTALL), not the system's.
_sf_private_pg() {
    local d
    for d in "$("$SF_PG_CONFIG" --bindir)/.." "$("$SF_PG_CONFIG" --sharedir)"; do
        d=$(realpath -m "$d")
        if [ ! -d "$SF_INSTALL$d" ] || [ "$d/bin/postgres" -nt "$SF_INSTALL$d/bin/postgres" ]; then
            mkdir -p "$SF_INSTALL$d" && cp -a "$d/." "$SF_INSTALL$d/" || return 1
        fi
    done
    # The user running the servers must reach the binaries.
    chmod -R a+rX "$SF_INSTALL"
    local p=$SF_INSTALL
    while [ "$p" != / ]; do
        chmod a+x "$p" 2>/dev/null || true
        p=$(dirname "$p")
    done
}

# ---------------------------------------------------------------------------
# sf_install_deps
#   Installs whatever is missing of: postgresql-15 postgresql-server-dev-15
#   librdkafka-dev librocksdb-dev kcat make gcc python3 (apt-get update +
#   install --no-install-recommends).  postgresql-15 and
#   postgresql-server-dev-15 are installed/upgraded together when the server
#   is older than the headers, so the module is never built against newer
#   headers than the server that loads it.  Silent when all is present.
#   Needs root when something is missing.
# ---------------------------------------------------------------------------
sf_install_deps() {
    local pkgs=(postgresql-15 postgresql-server-dev-15 librdkafka-dev
                librocksdb-dev kcat make gcc python3
                libavro-dev libcurl4-openssl-dev python3-avro)
    local missing=() p status srv dev

    for p in "${pkgs[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        if [ "$status" != "install ok installed" ]; then
            missing+=("$p")
        fi
    done

    srv=$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null || true)
    dev=$(dpkg-query -W -f='${Version}' postgresql-server-dev-15 2>/dev/null || true)
    if [ -n "$srv" ] && [ -n "$dev" ] &&
       dpkg --compare-versions "$srv" lt "$dev"; then
        echo "streamflink test: postgresql-15 $srv is older than" \
             "postgresql-server-dev-15 $dev: upgrading both" >&2
        missing+=(postgresql-15 postgresql-server-dev-15)
    fi

    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    # The server and its headers always go together.
    case " ${missing[*]} " in
        *" postgresql-15 "* | *" postgresql-server-dev-15 "*)
            missing+=(postgresql-15 postgresql-server-dev-15) ;;
    esac
    # De-duplicate.
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

    if ! _sf_is_root; then
        _sf_die "missing packages: ${missing[*]}; run as root or:" \
                "apt-get install ${missing[*]}"
        return 1
    fi
    echo "streamflink test: installing ${missing[*]}" >&2
    _sf_quiet apt-get update -qq || return 1
    _sf_quiet env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" || return 1
}

# Run CMD with its output kept aside: shown (on stderr) only if it fails.
_sf_quiet() {
    local log rc=0
    log=$(mktemp "${TMPDIR:-/tmp}/streamflink-quiet.XXXXXX") || return 1
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "streamflink test: '$*' failed (exit $rc):" >&2
        cat "$log" >&2
    fi
    rm -f "$log"
    return "$rc"
}

# ---------------------------------------------------------------------------
# sf_build
#   From the repository root: make, make install, make test-programs, all
#   against SF_PG_CONFIG.  make install writes into SF_INSTALL when that is
#   set, else into the Postgres installation (root, or a writable
#   installation, is needed).
# ---------------------------------------------------------------------------
sf_build() {
    local jobs
    jobs=$(nproc 2>/dev/null || echo 2)
    (
        cd "$SF_ROOT" &&
        make -s -j"$jobs" PG_CONFIG="$SF_PG_CONFIG" &&
        if [ -n "${SF_INSTALL:-}" ]; then
            _sf_private_pg &&
            make -s install PG_CONFIG="$SF_PG_CONFIG" DESTDIR="$SF_INSTALL"
        else
            make -s install PG_CONFIG="$SF_PG_CONFIG"
        fi &&
        make -s -j"$jobs" test-programs PG_CONFIG="$SF_PG_CONFIG"
    )
}

# ---------------------------------------------------------------------------
# sf_user
#   Echoes the OS user that runs Postgres.  As root: SF_USER_NAME
#   (streamflink), created if needed as a system user with a home directory.
#   Otherwise: the current user.  The database superuser initdb creates is
#   always "postgres", whoever runs the server.
# ---------------------------------------------------------------------------
sf_user() {
    if ! _sf_is_root; then
        id -un
        return 0
    fi
    if ! id -u "$SF_USER_NAME" >/dev/null 2>&1; then
        useradd --system --create-home --shell /bin/bash "$SF_USER_NAME" ||
            { _sf_die "cannot create user $SF_USER_NAME"; return 1; }
    fi
    echo "$SF_USER_NAME"
}

# ---------------------------------------------------------------------------
# sf_as_user CMD [ARGS...]
#   Runs CMD as sf_user: through `runuser -u USER --` as root (environment
#   kept, stdin/stdout/stderr passed through), directly otherwise.  When the
#   current directory is not accessible to that user (e.g. /root), the
#   command runs in / instead, so give it absolute paths.
# ---------------------------------------------------------------------------
sf_as_user() {
    if ! _sf_is_root; then
        "$@"
        return
    fi
    local u
    u=$(sf_user) || return 1
    # Cache whether the user can use the current directory (one check per
    # directory, not per command).  The check names the directory by its
    # absolute path, as Postgres' programs do when they chdir back to it:
    # "." would be judged on the directory alone, which a user may read
    # although a parent (/root) is closed to it.
    if [ "${_SF_CWD_CHECKED:-}" != "$PWD" ]; then
        if runuser -u "$u" -- test -r "$PWD" -a -x "$PWD" 2>/dev/null; then
            _SF_CWD_OK=1
        else
            _SF_CWD_OK=0
        fi
        _SF_CWD_CHECKED=$PWD
    fi
    if [ "$_SF_CWD_OK" = 1 ]; then
        runuser -u "$u" -- "$@"
    else
        (cd / && runuser -u "$u" -- "$@")
    fi
}

# ---------------------------------------------------------------------------
# sf_pg_start DIR PORT [EXTRA_CONF_LINE...]
#   Starts a throwaway Postgres 15 server with data directory DIR (made
#   absolute), listening on 127.0.0.1:PORT and on a Unix socket in DIR.
#   If DIR holds no PG_VERSION it is created (owned by sf_user, mode 0700;
#   its parent too, if that did not exist) and initdb'ed: -A trust, -E UTF8, --locale=C, --no-sync; the database
#   superuser is sf_user.  The settings below go to DIR/streamflink_test.conf
#   (rewritten on every call, included last from postgresql.conf):
#     port, listen_addresses='127.0.0.1', unix_socket_directories=DIR,
#     shared_preload_libraries=$SF_PRELOAD (default 'streamflink'),
#     max_prepared_transactions=64, max_worker_processes=32,
#     fsync=off (the faults tested are process crashes and immediate
#     shutdowns, which fsync does not matter for; never an OS crash),
#     logging_collector=off, log_line_prefix with time and pid,
#   then each EXTRA_CONF_LINE verbatim (later lines win).  The server log is
#   DIR/server.log (appended).  Fails, showing the log's tail, if the server
#   does not come up within 60 s.  Registered with sf_cleanup_trap.
# ---------------------------------------------------------------------------
sf_pg_start() {
    [ $# -ge 2 ] || { _sf_die "usage: sf_pg_start DIR PORT [CONF_LINE...]"; return 1; }
    local dir port u bin out line preload parent
    dir=$(_sf_abspath "$1")
    port=$2
    shift 2
    [[ "$port" =~ ^[0-9]+$ ]] || { _sf_die "sf_pg_start: bad port '$port'"; return 1; }
    # sun_path holds 108 bytes: DIR/.s.PGSQL.PORT plus the terminating NUL.
    if [ $(( ${#dir} + 11 + ${#port} )) -gt 107 ]; then
        _sf_die "sf_pg_start: data directory path too long for a Unix socket: $dir"
        return 1
    fi
    u=$(sf_user) || return 1
    bin=$(_sf_pgbin)
    preload=${SF_PRELOAD-streamflink}

    if sf_pg_running "$dir"; then
        _sf_die "sf_pg_start: a server is already running in $dir"
        return 1
    fi

    if [ ! -f "$dir/PG_VERSION" ]; then
        parent=$(dirname "$dir")
        if [ ! -d "$parent" ]; then
            # A parent we create belongs to the user too (room for sibling
            # files such as dumps or state directories).
            mkdir -p "$parent" || return 1
            if _sf_is_root; then
                chown "$u:" "$parent" || return 1
            fi
        fi
        mkdir -p "$dir" || return 1
        if _sf_is_root; then
            chown "$u:" "$dir" || return 1
        fi
        chmod 700 "$dir" || return 1
        if ! sf_as_user test -w "$dir" -a -x "$dir"; then
            _sf_die "sf_pg_start: user $u cannot write $dir (is a parent" \
                    "directory closed to it, e.g. /root?)"
            return 1
        fi
        if ! out=$(sf_as_user "$bin/initdb" -D "$dir" -A trust -E UTF8 \
                       --locale=C --no-sync -U postgres 2>&1); then
            echo "$out" >&2
            _sf_die "sf_pg_start: initdb failed in $dir"
            return 1
        fi
    fi

    # Our settings live in their own file, rewritten on each start and
    # included at the end of postgresql.conf (only ALTER SYSTEM overrides it).
    {
        echo "# written by test/lib.sh sf_pg_start; rewritten on every start"
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir'"
        echo "shared_preload_libraries = '$preload'"
        echo "max_prepared_transactions = 64"
        echo "max_worker_processes = 32"
        echo "fsync = off"
        echo "logging_collector = off"
        echo "log_line_prefix = '%m [%p] %q%a '"
        for line in "$@"; do
            echo "$line"
        done
    } | sf_as_user tee "$dir/streamflink_test.conf" >/dev/null || return 1
    if ! grep -qx "include = 'streamflink_test.conf'" "$dir/postgresql.conf"; then
        echo "include = 'streamflink_test.conf'" |
            sf_as_user tee -a "$dir/postgresql.conf" >/dev/null || return 1
    fi

    _sf_register pg "$dir"
    _sf_pg_ctl_start "$dir"
}

# pg_ctl start for an already configured DIR; shows the log tail on failure.
_sf_pg_ctl_start() {
    local dir=$1 bin
    bin=$(_sf_pgbin)
    if ! sf_as_user "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
             start >/dev/null; then
        echo "--- tail of $dir/server.log ---" >&2
        tail -n 30 "$dir/server.log" >&2 || true
        _sf_die "cannot start Postgres in $dir"
        return 1
    fi
}

# ---------------------------------------------------------------------------
# sf_pg_running DIR
#   Status 0 when a postmaster serves DIR (pg_ctl status).
# ---------------------------------------------------------------------------
sf_pg_running() {
    local dir bin
    dir=$(_sf_abspath "$1")
    [ -f "$dir/postmaster.pid" ] || return 1
    bin=$(_sf_pgbin)
    sf_as_user "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1
}

# ---------------------------------------------------------------------------
# sf_pg_stop DIR [MODE]
#   Stops the server of DIR with pg_ctl -m MODE (fast by default; smart,
#   fast or immediate), waiting up to 60 s.  No-op when it is not running.
# ---------------------------------------------------------------------------
sf_pg_stop() {
    [ $# -ge 1 ] || { _sf_die "usage: sf_pg_stop DIR [MODE]"; return 1; }
    local dir mode=${2:-fast} bin
    dir=$(_sf_abspath "$1")
    case $mode in
        smart | fast | immediate) ;;
        *) _sf_die "sf_pg_stop: bad mode '$mode'"; return 1 ;;
    esac
    sf_pg_running "$dir" || return 0
    bin=$(_sf_pgbin)
    sf_as_user "$bin/pg_ctl" -D "$dir" -m "$mode" -w -t 60 stop >/dev/null
}

# ---------------------------------------------------------------------------
# sf_pg_restart DIR [MODE]
#   sf_pg_stop DIR MODE, then start the server again with the configuration
#   already in DIR (after an immediate stop, Postgres runs crash recovery).
# ---------------------------------------------------------------------------
sf_pg_restart() {
    [ $# -ge 1 ] || { _sf_die "usage: sf_pg_restart DIR [MODE]"; return 1; }
    local dir
    dir=$(_sf_abspath "$1")
    [ -f "$dir/PG_VERSION" ] || { _sf_die "sf_pg_restart: no cluster in $dir"; return 1; }
    sf_pg_stop "$dir" "${2:-fast}" || return 1
    _sf_pg_ctl_start "$dir"
}

# ---------------------------------------------------------------------------
# sf_psql DIR PORT [PSQL ARGS...]
#   psql -X -v ON_ERROR_STOP=1 -h DIR -p PORT -U postgres -d postgres ARGS.
#   Pick another database with -d DB (a later -d wins; a bare positional
#   database name would be taken as the user name).  Runs as the calling OS
#   user: authentication is trust.
# ---------------------------------------------------------------------------
sf_psql() {
    [ $# -ge 2 ] || { _sf_die "usage: sf_psql DIR PORT [PSQL ARGS...]"; return 1; }
    local dir port u bin
    dir=$(_sf_abspath "$1")
    port=$2
    shift 2
    u=$(sf_user) || return 1
    bin=$(_sf_pgbin)
    "$bin/psql" -X -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres \
        -d postgres "$@"
}

# ---------------------------------------------------------------------------
# sf_broker_start WORKDIR SPEC...
#   Starts test/mock_broker in the background and echoes its bootstrap
#   address.  Each SPEC is a topic "NAME:PARTITIONS" (or, through the
#   proxy, "NAME:VISIBLE:PARTITIONS": see test/mock_broker.c), --proxy, or
#   one of the broker's options with its value: --brokers N, --missing-topic
#   NAME, --topic NAME:PARTITIONS.  Files (WORKDIR made absolute and created):
#   WORKDIR/broker.addr (address), WORKDIR/broker.pid, WORKDIR/broker.log.
#   The broker exits by itself when this script's shell ($$) is gone, unless
#   SF_BROKER_WATCH=0.  Safe inside $(...): the broker's output goes to the
#   log, not to the substitution's pipe.  Registered with sf_cleanup_trap.
#   Its data lives in memory only: keep it up across Postgres restarts.
# ---------------------------------------------------------------------------
sf_broker_start() {
    [ $# -ge 1 ] || { _sf_die "usage: sf_broker_start WORKDIR SPEC..."; return 1; }
    local work args=() pid i
    work=$(_sf_abspath "$1")
    shift
    mkdir -p "$work" || return 1
    [ -x "$SF_ROOT/test/mock_broker" ] ||
        { _sf_die "$SF_ROOT/test/mock_broker not built (make test-programs)"; return 1; }
    if [ -f "$work/broker.pid" ] && _sf_broker_alive "$(cat "$work/broker.pid")"; then
        _sf_die "sf_broker_start: a broker is already running for $work"
        return 1
    fi

    while [ $# -gt 0 ]; do
        case $1 in
            --proxy)
                args+=("$1")
                shift ;;
            --brokers | --missing-topic | --topic)
                [ $# -ge 2 ] || { _sf_die "sf_broker_start: $1 needs a value"; return 1; }
                args+=("$1" "$2")
                shift 2 ;;
            -*)
                _sf_die "sf_broker_start: unknown option $1"
                return 1 ;;
            *)
                args+=(--topic "$1")
                shift ;;
        esac
    done
    if [ "${SF_BROKER_WATCH:-1}" != 0 ]; then
        args+=(--watch-pid "$$")
    fi

    rm -f "$work/broker.addr"
    "$SF_ROOT/test/mock_broker" "${args[@]}" --addr-file "$work/broker.addr" \
        </dev/null >>"$work/broker.log" 2>&1 &
    pid=$!
    echo "$pid" >"$work/broker.pid"
    _sf_register broker "$work"

    for ((i = 0; i < 200; i++)); do
        if [ -s "$work/broker.addr" ]; then
            cat "$work/broker.addr"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.05
    done
    echo "--- $work/broker.log ---" >&2
    tail -n 20 "$work/broker.log" >&2 || true
    sf_broker_stop "$work" || true
    _sf_die "mock broker did not start"
    return 1
}

# Status 0 if PID is alive and is a mock_broker (guards against PID reuse).
_sf_broker_alive() {
    local pid=$1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'mock_broker'
}

# ---------------------------------------------------------------------------
# sf_broker_stop WORKDIR
#   SIGTERM to the broker recorded in WORKDIR/broker.pid, SIGKILL after 10 s;
#   removes broker.pid and broker.addr.  No-op when it is not running.
# ---------------------------------------------------------------------------
sf_broker_stop() {
    [ $# -ge 1 ] || { _sf_die "usage: sf_broker_stop WORKDIR"; return 1; }
    local work pid i
    work=$(_sf_abspath "$1")
    [ -f "$work/broker.pid" ] || return 0
    pid=$(cat "$work/broker.pid")
    if _sf_broker_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 200; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "streamflink test: broker $pid ignored SIGTERM, killing" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # Reap it if it is our child (harmless otherwise).
    wait "$pid" 2>/dev/null || true
    rm -f "$work/broker.pid" "$work/broker.addr"
}

# ---------------------------------------------------------------------------
# sf_registry_start WORKDIR [ID=FILE.avsc...]
#   Starts the test schema registry (test/schema_registry.py: the Confluent
#   API's GET /schemas/ids/{id} and POST /subjects/{s}/versions, and ids
#   9000-9005 that fail in the ways a registry can) on 127.0.0.1 with the
#   given schemas registered, and echoes its URL.  Its log is
#   WORKDIR/registry.log.  Registered with sf_cleanup_trap; it also exits
#   with this script (unless SF_BROKER_WATCH=0).
# ---------------------------------------------------------------------------
sf_registry_start() {
    [ $# -ge 1 ] || { _sf_die "usage: sf_registry_start WORKDIR [ID=FILE...]"; return 1; }
    local work args=() pid i s
    work=$(_sf_abspath "$1")
    shift
    mkdir -p "$work" || return 1
    for s in "$@"; do
        args+=(--schema "$s")
    done
    if [ "${SF_BROKER_WATCH:-1}" != 0 ]; then
        args+=(--watch-pid "$$")
    fi
    rm -f "$work/registry.addr"
    python3 "$SF_ROOT/test/schema_registry.py" "${args[@]}" --addr-file "$work/registry.addr" \
        </dev/null >>"$work/registry.log" 2>&1 &
    pid=$!
    echo "$pid" >"$work/registry.pid"
    _sf_register registry "$work"
    for ((i = 0; i < 200; i++)); do
        if [ -s "$work/registry.addr" ]; then
            cat "$work/registry.addr"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    tail -n 20 "$work/registry.log" >&2 || true
    sf_registry_stop "$work" || true
    _sf_die "schema registry did not start"
    return 1
}

# sf_registry_stop WORKDIR: stop the registry sf_registry_start started there.
sf_registry_stop() {
    [ $# -ge 1 ] || { _sf_die "usage: sf_registry_stop WORKDIR"; return 1; }
    local work pid
    work=$(_sf_abspath "$1")
    [ -f "$work/registry.pid" ] || return 0
    pid=$(cat "$work/registry.pid")
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$work/registry.pid" "$work/registry.addr"
}

# ---------------------------------------------------------------------------
# Cleanup.
#   sf_cleanup_trap installs an EXIT trap (INT, TERM and HUP exit through
#   it) that stops every server started by sf_pg_start (fast, falling back to
#   immediate) and every broker started by sf_broker_start in this script,
#   then removes the paths given to sf_cleanup_add_path; the script's exit
#   status is kept.  The record is a file, so starts done inside $(...)
#   subshells are seen too.  SF_KEEP=1 keeps everything running, for
#   debugging.  Call it once, before starting anything; it replaces an
#   existing EXIT trap.
# ---------------------------------------------------------------------------
sf_cleanup_trap() {
    _SF_REGISTRY=$(mktemp "${TMPDIR:-/tmp}/streamflink-cleanup.XXXXXX") || return 1
    export _SF_REGISTRY
    trap _sf_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

sf_cleanup_add_path() {
    _sf_register path "$(_sf_abspath "$1")"
}

_sf_register() {
    if [ -n "${_SF_REGISTRY:-}" ] && [ -f "$_SF_REGISTRY" ]; then
        printf '%s %s\n' "$1" "$2" >>"$_SF_REGISTRY"
    fi
}

_sf_cleanup() {
    local rc=$? kind path
    set +e
    trap - EXIT INT TERM HUP
    if [ -z "${_SF_REGISTRY:-}" ] || [ ! -f "$_SF_REGISTRY" ]; then
        return "$rc"
    fi
    if [ "${SF_KEEP:-0}" = 1 ]; then
        echo "streamflink test: SF_KEEP=1, leaving running:" >&2
        sed 's/^/  /' "$_SF_REGISTRY" >&2
        rm -f "$_SF_REGISTRY"
        return "$rc"
    fi
    # Servers first (they may be connected to the broker), then brokers,
    # then paths; each registered item once, newest first.
    for kind in pg broker registry path; do
        while read -r path; do
            case $kind in
                pg)
                    if ! sf_pg_stop "$path" fast 2>/dev/null; then
                        sf_pg_stop "$path" immediate
                    fi ;;
                broker)
                    sf_broker_stop "$path" ;;
                registry)
                    sf_registry_stop "$path" ;;
                path)
                    rm -rf -- "$path" ;;
            esac
        done < <(awk -v k="$kind" '$1 == k { sub(/^[^ ]+ /, ""); print }' \
                     "$_SF_REGISTRY" | tac | awk '!seen[$0]++')
    done
    rm -f "$_SF_REGISTRY"
    return "$rc"
}

# ---------------------------------------------------------------------------
# sf_free_port
#   Echoes a TCP port on 127.0.0.1 that nothing listens on right now (the
#   kernel's choice for a bind to port 0).
# ---------------------------------------------------------------------------
sf_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------------------
# sf_test_setup NAME
#   The start of a test or benchmark script that runs alone or under
#   test/run_tests.sh: installs what is missing, installs the cleanup trap,
#   and sets SF_TEST_DIR to a fresh directory NAME under SF_WORK.  Alone (no
#   SF_WORK), SF_WORK is a new temporary directory and SF_INSTALL a private
#   installation in it, so the system's Postgres is never touched.  Builds
#   unless the caller already did (SF_BUILT=1).  Everything goes at exit
#   unless SF_KEEP=1.
# ---------------------------------------------------------------------------
sf_test_setup() {
    [ $# -eq 1 ] || { _sf_die "usage: sf_test_setup NAME"; return 1; }
    sf_install_deps || return 1
    sf_cleanup_trap || return 1
    if [ -z "${SF_WORK:-}" ]; then
        SF_WORK=$(mktemp -d /tmp/sftest.XXXXXX) || return 1
        chmod 755 "$SF_WORK"
        export SF_WORK
        export SF_INSTALL=${SF_INSTALL:-$SF_WORK/install}
        [ "${SF_KEEP:-0}" = 1 ] || sf_cleanup_add_path "$SF_WORK"
    fi
    SF_TEST_DIR=$SF_WORK/$1
    rm -rf "$SF_TEST_DIR"
    mkdir -p "$SF_TEST_DIR" || return 1
    [ "${SF_KEEP:-0}" = 1 ] || sf_cleanup_add_path "$SF_TEST_DIR"
    if [ "${SF_BUILT:-0}" != 1 ]; then
        sf_build || return 1
    fi
}

# ---------------------------------------------------------------------------
# Crash tests (test/fault_*.sh): what they share.
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# sf_psql_retry DIR PORT [PSQL ARGS...]
#   sf_psql, retried every 0.1 s for 30 s while it fails (a server in crash
#   recovery or restarting refuses connections); the last try's errors are
#   shown.  Echoes the output of the try that succeeded.
# ---------------------------------------------------------------------------
sf_psql_retry() {
    local i out
    for ((i = 0; i < 300; i++)); do
        if out=$(sf_psql "$@" 2>/dev/null); then
            echo "$out"
            return 0
        fi
        sleep 0.1
    done
    sf_psql "$@"
}

# ---------------------------------------------------------------------------
# sf_wait_sql DIR PORT WHAT COND [TRIES [INTERVAL]]
#   Until SELECT (COND) returns true on the server of DIR (through
#   sf_psql_retry), trying TRIES times (1200) every INTERVAL seconds (0.2).
#   On time-out, or when the query keeps failing, says it was waiting for
#   WHAT and shows the pipelines' status and the server log's tail, and
#   fails.
# ---------------------------------------------------------------------------
sf_wait_sql() {
    [ $# -ge 4 ] || { _sf_die "usage: sf_wait_sql DIR PORT WHAT COND [TRIES [INTERVAL]]"; return 1; }
    local dir=$1 port=$2 what=$3 cond=$4 tries=${5:-1200} interval=${6:-0.2} i out
    for ((i = 0; i < tries; i++)); do
        # a query that fails for 30 s (sf_psql_retry) fails the wait
        out=$(sf_psql_retry "$dir" "$port" -qAt -c "SELECT ($cond)") || break
        [ "$out" = t ] && return 0
        sleep "$interval"
    done
    echo "streamflink test: timed out waiting for $what" >&2
    sf_psql_retry "$dir" "$port" -qAt \
        -c "SELECT status, error, events, watermark FROM streamflink.pipelines" >&2
    tail -n 50 "$dir/server.log" >&2
    return 1
}

# ---------------------------------------------------------------------------
# sf_wait_offsets DIR PORT PIPELINE TOTAL [TRIES [INTERVAL]]
#   sf_wait_sql until PIPELINE's checkpointed offsets (streamflink.offsets,
#   next offsets summed over its partitions) are TOTAL: every message of its
#   topic, when TOTAL is how many were produced, is in a checkpoint.
# ---------------------------------------------------------------------------
sf_wait_offsets() {
    [ $# -ge 4 ] || { _sf_die "usage: sf_wait_offsets DIR PORT PIPELINE TOTAL [TRIES [INTERVAL]]"; return 1; }
    sf_wait_sql "$1" "$2" "$4 offsets of pipeline $3 to be checkpointed" \
        "(SELECT coalesce(sum(next_offset), 0) = $4 FROM streamflink.offsets WHERE pipeline = '$3')" \
        "${@:5}"
}

# ---------------------------------------------------------------------------
# sf_wait_worker DIR CMD [ARGS...]
#   Runs CMD (a function echoing the pid of a running worker, or nothing)
#   every 0.1 s until it echoes a pid, for 30 s at most; echoes that pid.
#   Fails, showing the tail of DIR/server.log, if no worker came back.
# ---------------------------------------------------------------------------
sf_wait_worker() {
    [ $# -ge 2 ] || { _sf_die "usage: sf_wait_worker DIR CMD [ARGS...]"; return 1; }
    local dir=$1 i pid=""
    shift
    for ((i = 0; i < 300; i++)); do
        pid=$("$@")
        [ -z "$pid" ] || break
        sleep 0.1
    done
    if [ -z "$pid" ]; then
        echo "streamflink test: the worker did not come back" >&2
        tail -n 50 "$dir/server.log" >&2
        return 1
    fi
    echo "$pid"
}

# ---------------------------------------------------------------------------
# sf_fault_order SEED KILLS RESTARTS
#   Echoes "kill" KILLS times and "restart" RESTARTS times, one a line, in
#   an order drawn from SEED (the same seed, the same order).
# ---------------------------------------------------------------------------
sf_fault_order() {
    [ $# -eq 3 ] || { _sf_die "usage: sf_fault_order SEED KILLS RESTARTS"; return 1; }
    local i
    {
        for ((i = 0; i < $2; i++)); do echo kill; done
        for ((i = 0; i < $3; i++)); do echo restart; done
    } | awk -v s="$1" 'BEGIN { srand(s) } { print rand() "\t" $0 }' | sort | cut -f2
}

# sf_fault_pause: sleep 0 to 1.5 seconds, drawn from RANDOM (seed it): a
# fault then strikes while a chunk is processed, in a checkpoint, or after.
sf_fault_pause() {
    sleep "$(printf '%d.%d' $((RANDOM % 2)) $((RANDOM % 6)))"
}

# ---------------------------------------------------------------------------
# sf_failpoint_set DIR POINT [rows]
#   The next worker of the server in DIR to reach failpoint POINT crashes
#   there on purpose (the failpoint file DIR/streamflink/failpoint, which the
#   worker removes when it takes it).  With "rows" (the coordinator's points
#   after_prepare and after_decision only): the next to reach it at a
#   checkpoint whose sink wrote rows in its epoch.
# sf_failpoint_wait DIR [SECONDS]
#   Waits up to SECONDS (60) for the failpoint to be taken; fails, showing
#   the server log's tail, if it was not.
# ---------------------------------------------------------------------------
sf_failpoint_set() {
    [ $# -eq 2 ] || { [ $# -eq 3 ] && [ "$3" = rows ]; } ||
        { _sf_die "usage: sf_failpoint_set DIR POINT [rows]"; return 1; }
    echo "${*:2}" | sf_as_user tee "$1/streamflink/failpoint" >/dev/null
}

sf_failpoint_wait() {
    [ $# -ge 1 ] || { _sf_die "usage: sf_failpoint_wait DIR [SECONDS]"; return 1; }
    local dir=$1 i point
    for ((i = 0; i < ${2:-60} * 10; i++)); do
        [ -e "$dir/streamflink/failpoint" ] || return 0
        sleep 0.1
    done
    point=$(cat "$dir/streamflink/failpoint" 2>/dev/null || true)
    echo "streamflink test: failpoint $point not reached" >&2
    tail -n 30 "$dir/server.log" >&2
    return 1
}

# ---------------------------------------------------------------------------
# sf_rides_expected_sql CSV
#   Echoes SQL that loads test/gen_events.py's events (its events.csv, path
#   CSV) into a table ride_events and defines the view expected: what the
#   crash tests' hop window (5 minutes every 30 seconds; count(*) AS rides,
#   avg(wait_s) AS avg_wait, max(wait_s) AS max_wait per geo) must produce.
# ---------------------------------------------------------------------------
sf_rides_expected_sql() {
    cat <<SQL
CREATE TABLE ride_events (geo text, wait_s float8, ts timestamptz);
\copy ride_events FROM '$1' WITH (FORMAT csv)
CREATE VIEW expected AS
SELECT geo, ws AS window_start, ws + interval '5 minutes' AS window_end,
       count(*) AS rides, avg(wait_s) AS avg_wait, max(wait_s) AS max_wait
FROM ride_events,
     generate_series(date_bin('30 seconds', ts, 'epoch') - interval '4 minutes 30 seconds',
                     date_bin('30 seconds', ts, 'epoch'), '30 seconds') ws
GROUP BY geo, ws;
SQL
}

# sf_show_window_diff DIR PORT TABLE: the first 20 windows missing from
# TABLE or wrong in it, against the view expected (a failed test's detail).
sf_show_window_diff() {
    sf_psql "$1" "$2" -qAt -c "SELECT * FROM (SELECT 'missing' AS what, * FROM (SELECT * FROM expected EXCEPT SELECT * FROM $3) a
                           UNION ALL SELECT 'wrong', * FROM (SELECT * FROM $3 EXCEPT SELECT * FROM expected) b) x
            ORDER BY geo, window_start LIMIT 20"
}

# ---------------------------------------------------------------------------
# sf_rides_setup NAME TOPIC PARTS EVENTS CHUNKS [BROKER_SPEC...] [-- CONF_LINE...]
#   The start of the crash tests that read test/gen_events.py's rides in
#   chunks into the hop window of sf_rides_expected_sql: sf_test_setup NAME;
#   EVENTS events over PARTS partitions in CHUNKS chunks, in $work/events
#   (chunk-NN.tsv, late.tsv, final.tsv, events.csv, counts); a broker with
#   TOPIC of PARTS partitions and the other BROKER_SPECs (as sf_broker_start
#   takes them); a server with the postgresql.conf CONF_LINEs.  Sets work,
#   addr, port and pg, and defines for the caller:
#     say MSG...          echo "NAME: MSG"
#     count KIND          how many KIND events gen_events.py injected
#                         (total, malformed, late)
#     sql ARGS...; sql_retry ARGS...  psql -qAt to the server (retried while
#                         it restarts)
# ---------------------------------------------------------------------------
# shellcheck disable=SC2317  # say, count, sql, sql_retry: the caller's
sf_rides_setup() {
    [ $# -ge 5 ] || { _sf_die "usage: sf_rides_setup NAME TOPIC PARTS EVENTS CHUNKS [BROKER_SPEC...] [-- CONF_LINE...]"; return 1; }
    local topic=$2 parts=$3 events=$4 chunks=$5 specs=()
    _sf_rides_name=$1
    shift 5
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        specs+=("$1")
        shift
    done
    [ $# -eq 0 ] || shift
    say() { echo "$_sf_rides_name: $*"; }
    count() { awk -v k="$1" '$1 == k { print $2 }' "$work/events/counts"; }
    sql() { sf_psql "$pg" "$port" -qAt "$@"; }
    sql_retry() { sf_psql_retry "$pg" "$port" -qAt "$@"; }

    sf_test_setup "$_sf_rides_name" || return 1
    work=$SF_TEST_DIR
    python3 "$SF_ROOT/test/gen_events.py" "$work/events" "$events" "$parts" "$chunks" 20 || return 1
    chmod -R a+rX "$work"
    addr=$(sf_broker_start "$work/broker" "$topic:$parts" "${specs[@]}") || return 1
    port=$(sf_free_port) || return 1
    pg=$work/pg
    sf_pg_start "$pg" "$port" "$@"
}

# ---------------------------------------------------------------------------
# sf_rides_start PIPE SINK TOPIC FORMAT [PIPELINE_ARGS [SOURCE_ARGS]]
#   On the server of sf_rides_setup (sql): the extension, the source 'rides'
#   (TOPIC on addr, FORMAT, the columns geo, wait_s and ts) and the window
#   pipeline PIPE of sf_rides_expected_sql into SINK, started.
#   PIPELINE_ARGS and SOURCE_ARGS: more named arguments of
#   create_window_pipeline and create_source ("parallelism => 2, ...").
# ---------------------------------------------------------------------------
sf_rides_start() {
    [ $# -ge 4 ] || { _sf_die "usage: sf_rides_start PIPE SINK TOPIC FORMAT [PIPELINE_ARGS [SOURCE_ARGS]]"; return 1; }
    local more_pipe=${5:+, $5} more_source=${6:+, $6}
    sql >/dev/null <<SQL
CREATE EXTENSION streamflink;
SELECT streamflink.create_source('rides', brokers => '$addr', topic => '$3',
       format => '$4', columns => 'geo text, wait_s float8, ts timestamptz',
       event_time => 'ts', max_out_of_orderness => '5 seconds',
       options => '{fetch.wait.max.ms=10}'$more_source);
SELECT streamflink.create_window_pipeline('$1', source => 'rides', key => 'geo',
       "window" => 'hop', size => '5 minutes', slide => '30 seconds',
       aggregates => 'count(*) AS rides, avg(wait_s) AS avg_wait, max(wait_s) AS max_wait',
       sink => '$2', allowed_lateness => '1 minute',
       checkpoint_interval => '300 milliseconds'$more_pipe);
SELECT streamflink.start('$1');
SQL
}

# ---------------------------------------------------------------------------
# sf_rides_verdict PIPE TABLE
#   Once every event is checkpointed: compares TABLE (PIPE's windows) with
#   the answer SQL computes over the same events (sf_rides_expected_sql, run
#   here: it leaves ride_events and the view expected), and PIPE's
#   dead-letter and late-event rows with the injected malformed and late
#   events; says so and sets expected, sink, missing, wrong, dead, late and
#   ok (1: all right, 0: not).  On the server of sf_rides_setup.
# ---------------------------------------------------------------------------
# shellcheck disable=SC2034  # ok and the counts: the caller's
sf_rides_verdict() {
    [ $# -eq 2 ] || { _sf_die "usage: sf_rides_verdict PIPE TABLE"; return 1; }
    sf_rides_expected_sql "$work/events/events.csv" | sql || return 1
    read -r expected sink missing wrong dead late <<<"$(sql -F ' ' -c "
SELECT (SELECT count(*) FROM expected),
       (SELECT count(*) FROM $2),
       (SELECT count(*) FROM (SELECT * FROM expected EXCEPT SELECT * FROM $2) x),
       (SELECT count(*) FROM (SELECT * FROM $2 EXCEPT SELECT * FROM expected) x),
       (SELECT count(*) FROM streamflink.dead_letters WHERE pipeline = '$1'),
       (SELECT count(*) FROM streamflink.late_events WHERE pipeline = '$1')")"
    say "windows: expected $expected, in sink $sink, missing $missing, wrong $wrong"
    say "dead letters: $dead (injected $(count malformed)); late events: $late (injected $(count late))"
    ok=1
    [ "$expected" -gt 0 ] && [ "$expected" = "$sink" ] && [ "$missing" = 0 ] && [ "$wrong" = 0 ] || ok=0
    [ "$dead" = "$(count malformed)" ] || ok=0
    [ "$late" = "$(count late)" ] || ok=0
}

# ---------------------------------------------------------------------------
# Benchmarks (test/bench/*.sh): what they share.
# ---------------------------------------------------------------------------

# sf_now: the time in seconds, with nanoseconds.
sf_now() {
    date +%s.%N
}

# sf_rate N T0 T1: N per second between times T0 and T1 (sf_now), rounded.
sf_rate() {
    python3 -c "print(round($1 / ($3 - $2)))"
}

# ---------------------------------------------------------------------------
# sf_bench_events N PARTS [FINAL]
#   Echoes N JSON events {"k", "v", "ts"} as test/produce reads them
#   (partition TAB payload): 1,000 keys, one event a millisecond from
#   2024-01-01, round robin over PARTS partitions.  With FINAL=1, one more
#   event per partition two hours later, which closes every window.
# ---------------------------------------------------------------------------
sf_bench_events() {
    [ $# -ge 2 ] || { _sf_die "usage: sf_bench_events N PARTS [FINAL]"; return 1; }
    local p
    python3 - "$1" "$2" <<'PY'
import datetime, sys
n, parts = int(sys.argv[1]), int(sys.argv[2])
base = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
w = sys.stdout.write
for i in range(n):
    ts = (base + datetime.timedelta(milliseconds=i)).isoformat()
    w('%d\t{"k": "key%d", "v": %d.5, "ts": "%s"}\n' % (i % parts, (i * 7919) % 1000, i % 100, ts))
PY
    if [ "${3:-0}" = 1 ]; then
        for ((p = 0; p < $2; p++)); do
            printf '%d\t{"k": "key0", "v": 0, "ts": "2024-01-01T02:00:00+00:00"}\n' "$p"
        done
    fi
}

# ---------------------------------------------------------------------------
# sf_bench_pg_start DIR PORT [EXTRA_CONF_LINE...]
#   sf_pg_start with the benchmarks' settings (shared_buffers 512MB,
#   synchronous_commit off), then EXTRA_CONF_LINEs.
# ---------------------------------------------------------------------------
sf_bench_pg_start() {
    [ $# -ge 2 ] || { _sf_die "usage: sf_bench_pg_start DIR PORT [CONF_LINE...]"; return 1; }
    local dir=$1 port=$2
    shift 2
    sf_pg_start "$dir" "$port" "shared_buffers = '512MB'" "synchronous_commit = off" "$@"
}

# ---------------------------------------------------------------------------
# sf_bench_db DIR PORT [EXTRA_CONF_LINE...]
#   sf_pg_start DIR PORT [EXTRA_CONF_LINE...] (no settings of its own), then
#   the database 'bench' with the extension streamflink in it.  The
#   benchmarks query it as sf_psql DIR PORT -d bench.
# ---------------------------------------------------------------------------
sf_bench_db() {
    [ $# -ge 2 ] || { _sf_die "usage: sf_bench_db DIR PORT [CONF_LINE...]"; return 1; }
    sf_pg_start "$@" || return 1
    sf_psql "$1" "$2" -q -c "CREATE DATABASE bench" || return 1
    sf_psql "$1" "$2" -d bench -q -c "CREATE EXTENSION streamflink"
}

# ---------------------------------------------------------------------------
# sf_bench_source DIR PORT ADDR
#   CREATE EXTENSION streamflink, and the source 'bench': the JSON events of
#   sf_bench_events on topic 'bench' of the broker at ADDR.
# ---------------------------------------------------------------------------
sf_bench_source() {
    [ $# -eq 3 ] || { _sf_die "usage: sf_bench_source DIR PORT ADDR"; return 1; }
    sf_psql "$1" "$2" -qAt >/dev/null <<SQL
CREATE EXTENSION streamflink;
SELECT streamflink.create_source('bench', brokers => '$3', topic => 'bench', format => 'json',
       columns => 'k text, v float8, ts timestamptz', event_time => 'ts',
       options => '{fetch.wait.max.ms=10}');
SQL
}

# ---------------------------------------------------------------------------
# sf_bench_perf DIR PORT PIPELINE SECONDS FILE
#   Profiles the worker of PIPELINE (once it runs) for SECONDS with perf
#   record -g and writes perf report's by-DSO and by-symbol tables to FILE.
# ---------------------------------------------------------------------------
sf_bench_perf() {
    [ $# -eq 5 ] || { _sf_die "usage: sf_bench_perf DIR PORT PIPELINE SECONDS FILE"; return 1; }
    local dir=$1 port=$2 pipeline=$3 seconds=$4 file=$5 i pid="" sort data
    for ((i = 0; i < 100; i++)); do
        pid=$(sf_psql "$dir" "$port" -qAt \
                  -c "SELECT pid FROM streamflink.pipelines WHERE name = '$pipeline'")
        [ -z "$pid" ] || break
        sleep 0.02
    done
    data=$(dirname "$(_sf_abspath "$dir")")/perf.data
    perf record -q -F 1999 -g -p "$pid" -o "$data" -- sleep "$seconds" 2>/dev/null
    for sort in dso sym; do
        perf report -i "$data" --comm postgres --percentage relative \
            --no-children --sort "$sort" --percent-limit 0.7 --stdio -g none 2>/dev/null
    done >"$file"
}

# ---------------------------------------------------------------------------
# Benchmark helpers (test/bench/state_scaling.sh; usable by any benchmark
# with a window pipeline over keyed JSON events).
#
# sf_bench_keyed_events N KEYS PARTS [US_PER_EVENT] [FIRST]
#   Writes N events for test/produce ("PARTITION<TAB>PAYLOAD") to stdout:
#   {"k": key, "v": 0..999, "ts": ...}, event i (counting from FIRST,
#   default 0) with key (7 i) mod KEYS (every key once per KEYS events when
#   KEYS is not a multiple of 7) at 2024-01-01 00:00:00 UTC plus
#   i * US_PER_EVENT microseconds (default 1000), round robin over PARTS
#   partitions.  With FIRST = -1: instead, one event per partition at
#   2031-01-01 (key -1), which moves the watermark past every window.
# ---------------------------------------------------------------------------
sf_bench_keyed_events() {
    awk -v n="$1" -v keys="$2" -v parts="$3" -v us="${4:-1000}" -v first="${5:-0}" 'BEGIN {
        base = 1704067200;
        if (first < 0) {
            for (p = 0; p < parts; p++)
                printf "%d\t{\"k\":-1,\"v\":0,\"ts\":\"2031-01-01T00:00:00Z\"}\n", p;
            exit;
        }
        for (i = first; i < first + n; i++) {
            t = i * us;
            printf "%d\t{\"k\":%d,\"v\":%d,\"ts\":\"%s.%06dZ\"}\n", i % parts, (i * 7) % keys,
                i % 1000, strftime("%Y-%m-%dT%H:%M:%S", base + int(t / 1000000), 1), t % 1000000;
        }
    }'
}

# sf_pipeline_wait DIR PORT DB SQL [TIMEOUT_S]
#   Polls SQL (a boolean query) every 0.2 s until it returns true; fails
#   after TIMEOUT_S seconds (default 3600).
sf_pipeline_wait() {
    local i limit
    limit=$(( ${5:-3600} * 5 ))
    for ((i = 0; i < limit; i++)); do
        [ "$(sf_psql "$1" "$2" -d "$3" -Atq -c "$4")" = t ] && return 0
        sleep 0.2
    done
    _sf_die "timed out waiting for: $4"
    return 1
}

# sf_pipeline_stop DIR PORT DB NAME
#   streamflink.stop(NAME), then waits until the pipeline is stopped.
sf_pipeline_stop() {
    sf_psql "$1" "$2" -d "$3" -Atq -c "SELECT streamflink.stop('$4')" >/dev/null &&
    sf_pipeline_wait "$1" "$2" "$3" \
        "SELECT status = 'stopped' FROM streamflink.pipelines WHERE name = '$4'" 120
}

# sf_proc_peak_rss_mb PID
#   The peak resident memory (VmHWM) of process PID in MB.
sf_proc_peak_rss_mb() {
    awk '$1 == "VmHWM:" { printf "%.0f", $2 / 1024 }' "/proc/$1/status"
}

# ---------------------------------------------------------------------------
# sf_topic_intact ADDR TOPIC PARTITIONS
#   Status 0 when every partition of TOPIC on the broker at ADDR still
#   starts at offset 0 (kcat reads its first message).  The test broker
#   silently deletes the oldest batches of a partition beyond 5 MiB (see
#   test/mock_broker.c): a benchmark that produced more must not go on with
#   part of its data gone.  Says which partition lost data and fails.
# ---------------------------------------------------------------------------
sf_topic_intact() {
    [ $# -eq 3 ] || { _sf_die "usage: sf_topic_intact ADDR TOPIC PARTITIONS"; return 1; }
    local p first
    for ((p = 0; p < $3; p++)); do
        first=$(kcat -C -b "$1" -t "$2" -p "$p" -o beginning -c 1 -e -q -f '%o\n' 2>/dev/null) || first=
        if [ "$first" != 0 ]; then
            _sf_die "topic $2 partition $p starts at offset '${first:-?}', not 0: the test" \
                    "broker dropped data beyond its 5 MiB per partition (use more partitions)"
            return 1
        fi
    done
}

# ---------------------------------------------------------------------------
# sf_cpu_seconds PID
#   Echoes the user + system CPU seconds of process PID so far (every
#   thread: /proc/PID/stat), two decimals.
# ---------------------------------------------------------------------------
sf_cpu_seconds() {
    [ $# -eq 1 ] || { _sf_die "usage: sf_cpu_seconds PID"; return 1; }
    awk -v tck="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / tck }' "/proc/$1/stat"
}
