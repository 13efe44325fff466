/*
 * mock_broker: a standalone Kafka "broker" for tests, built on librdkafka's
 * mock cluster (rdkafka_mock.h).  Other processes (kcat, produce,
 * consume_bench, the streamflink workers) talk to it over loopback TCP as if
 * it were a real Kafka cluster.
 *
 * Usage:
 *   mock_broker [--brokers N] [--topic NAME:PARTITIONS]...
 *               [--missing-topic NAME]... [--addr-file PATH]
 *               [--watch-pid PID]
 *
 *   --brokers N          number of mock brokers (default 1)
 *   --topic NAME:P       create topic NAME with P partitions (replication 1;
 *                        the mock caps replication at the broker count)
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
    int   partitions;
};

static const char *progname = "mock_broker";

static void usage(FILE *out)
{
    fprintf(out,
            "usage: %s [--brokers N] [--topic NAME:PARTITIONS]... "
            "[--missing-topic NAME]... [--addr-file PATH] [--watch-pid PID]\n",
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
        } else if (!strcmp(a, "--topic") && v) {
            const char *colon = strrchr(v, ':');
            long        parts;

            if (!colon || colon == v ||
                parse_int(colon + 1, 1, 100000, &parts) != 0) {
                fprintf(stderr,
                        "%s: --topic: expected NAME:PARTITIONS, got \"%s\"\n",
                        progname, v);
                return 2;
            }
            if (ntopics == MAX_TOPICS) {
                fprintf(stderr, "%s: too many --topic options\n", progname);
                return 2;
            }
            topics[ntopics].name = strndup(v, (size_t) (colon - v));
            topics[ntopics].partitions = (int) parts;
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
        struct timespec timeout = {1, 0};

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

    /* The cluster runs on the handle: destroy it first. */
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    for (i = 0; i < ntopics; i++)
        free(topics[i].name);
    return 0;
}
