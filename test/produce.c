/*
 * produce: bulk-load a Kafka topic from stdin, for tests and benchmarks.
 *
 * Usage:
 *   produce BROKERS TOPIC [--partitions N] [--hex] [-X PROP=VALUE]...
 *
 * Input: one message per line, "PARTITION<TAB>PAYLOAD".
 *   PARTITION  an integer >= 0 (explicit partition), or -1 to let
 *              librdkafka's partitioner choose (no key, so: random).
 *   PAYLOAD    everything after the FIRST tab up to (not including) the
 *              '\n': further tabs, '\r' and any other bytes belong to the
 *              payload and are sent unchanged.  An empty payload is a
 *              zero-length message.  A last line without '\n' is accepted.
 *   With --hex, PAYLOAD is the message in hexadecimal (binary payloads such
 *   as Avro); a line whose payload is not hex stops the run as a bad line.
 *   Messages carry no key.  A line without a tab, or with a bad partition,
 *   stops the run with exit status 2 (messages read before it are still
 *   flushed).
 *
 * Before producing, the topic's partition count is read from the cluster's
 * metadata (careful: on the mock broker, and on a real broker with
 * auto.create.topics.enable, that request creates a missing topic).  Every
 * explicit PARTITION must be below that count.  --partitions N additionally
 * requires the topic to have exactly N partitions, which catches a topic the
 * test forgot to create (auto-created with the broker's default count).
 *
 * Producer settings: compression.codec=zstd, linger.ms=20,
 * batch.num.messages=10000, a large local queue.  Compression and big
 * batches are not optional on the mock broker: it keeps at most 5 MiB or
 * 100,000 batches per partition and silently drops older data beyond that.
 * -X PROP=VALUE overrides or adds any librdkafka property (applied last).
 *
 * On success prints "produced N messages in S seconds: R msg/s" to stderr
 * and exits 0.  Any delivery failure (counted by the delivery report
 * callback), or messages still unsent after the final 120 s flush, gives
 * exit status 1.
 *
 * Build: cc -O2 -Wall -o test/produce test/produce.c -lrdkafka -lpthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#define FLUSH_TIMEOUT_MS    120000
#define METADATA_TIMEOUT_MS 10000
#define MAX_REPORTED_ERRORS 10

static const char *progname = "produce";

static long long delivered;
static long long failed;

static double now_sec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs inside rd_kafka_poll()/rd_kafka_flush() on the main thread. */
static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m,
                      void *opaque)
{
    (void) rk;
    (void) opaque;
    if (m->err) {
        if (failed < MAX_REPORTED_ERRORS)
            fprintf(stderr, "%s: delivery to partition %d failed: %s\n",
                    progname, (int) m->partition, rd_kafka_err2str(m->err));
        failed++;
    } else
        delivered++;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: %s BROKERS TOPIC [--partitions N] [--hex] [-X PROP=VALUE]...\n"
            "  stdin: PARTITION<TAB>PAYLOAD per line (PARTITION -1: any)\n",
            progname);
}

static int set_conf(rd_kafka_conf_t *conf, const char *name,
                    const char *value)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s: %s=%s: %s\n", progname, name, value, errstr);
        return -1;
    }
    return 0;
}

/* Partition count of topic from the cluster's metadata, or -1. */
static int topic_partitions(rd_kafka_t *rk, rd_kafka_topic_t *rkt,
                            const char *topic)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t             err;
    int                             n = -1;

    err = rd_kafka_metadata(rk, 0, rkt, &md, METADATA_TIMEOUT_MS);
    if (err) {
        fprintf(stderr, "%s: cannot read metadata of topic %s: %s\n",
                progname, topic, rd_kafka_err2str(err));
        return -1;
    }
    if (md->topic_cnt != 1 || strcmp(md->topics[0].topic, topic) != 0)
        fprintf(stderr, "%s: topic %s missing from metadata\n", progname,
                topic);
    else if (md->topics[0].err)
        fprintf(stderr, "%s: topic %s: %s\n", progname, topic,
                rd_kafka_err2str(md->topics[0].err));
    else
        n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

/* Decode the hex digits at p (*len of them) in place; *len becomes bytes. */
static int unhex(char *p, size_t *len)
{
    size_t  i;

    if (*len % 2 != 0)
        return -1;
    for (i = 0; i < *len; i += 2) {
        int     v = 0;

        for (int j = 0; j < 2; j++) {
            char    c = p[i + j];

            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= c - '0';
            else if (c >= 'a' && c <= 'f')
                v |= c - 'a' + 10;
            else if (c >= 'A' && c <= 'F')
                v |= c - 'A' + 10;
            else
                return -1;
        }
        p[i / 2] = (char) v;
    }
    *len /= 2;
    return 0;
}

int main(int argc, char **argv)
{
    const char       *brokers, *topic;
    long              want_partitions = -1;
    rd_kafka_conf_t  *conf;
    rd_kafka_t       *rk;
    rd_kafka_topic_t *rkt;
    char              errstr[512];
    char             *line = NULL;
    size_t            cap = 0;
    ssize_t           len;
    long long         lineno = 0, produced = 0;
    int               nparts, i, status = 0;
    int               hex = 0;
    double            t0, elapsed;
    static char       inbuf[1 << 20];

    if (argc < 3) {
        usage();
        return 2;
    }
    brokers = argv[1];
    topic = argv[2];

    conf = rd_kafka_conf_new();
    if (set_conf(conf, "bootstrap.servers", brokers) ||
        set_conf(conf, "client.id", "streamflink-test-produce") ||
        set_conf(conf, "compression.codec", "zstd") ||
        set_conf(conf, "linger.ms", "20") ||
        set_conf(conf, "batch.num.messages", "10000") ||
        set_conf(conf, "queue.buffering.max.messages", "2000000") ||
        set_conf(conf, "queue.buffering.max.kbytes", "1048576"))
        return 1;

    for (i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--hex")) {
            hex = 1;
        } else if (!strcmp(argv[i], "--partitions") && i + 1 < argc) {
            char *end;

            errno = 0;
            want_partitions = strtol(argv[++i], &end, 10);
            if (errno || *end || end == argv[i] || want_partitions < 1) {
                fprintf(stderr, "%s: --partitions: bad count \"%s\"\n",
                        progname, argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "-X") && i + 1 < argc) {
            char *prop = strdup(argv[++i]);
            char *eq = strchr(prop, '=');

            if (!eq) {
                fprintf(stderr, "%s: -X expects PROP=VALUE\n", progname);
                return 2;
            }
            *eq = '\0';
            if (set_conf(conf, prop, eq + 1))
                return 2;
            free(prop);
        } else {
            usage();
            return 2;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);

    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "%s: rd_kafka_new: %s\n", progname, errstr);
        return 1;
    }
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        fprintf(stderr, "%s: topic %s: %s\n", progname, topic,
                rd_kafka_err2str(rd_kafka_last_error()));
        rd_kafka_destroy(rk);
        return 1;
    }

    nparts = topic_partitions(rk, rkt, topic);
    if (nparts < 0) {
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        return 1;
    }
    if (want_partitions > 0 && nparts != want_partitions) {
        fprintf(stderr,
                "%s: topic %s has %d partitions, --partitions says %ld\n",
                progname, topic, nparts, want_partitions);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        return 2;
    }

    setvbuf(stdin, inbuf, _IOFBF, sizeof(inbuf));
    t0 = now_sec();

    while ((len = getline(&line, &cap, stdin)) >= 0) {
        char   *tab, *end;
        long    part;
        size_t  plen;

        lineno++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';

        tab = memchr(line, '\t', (size_t) len);
        if (!tab) {
            fprintf(stderr, "%s: line %lld: expected PARTITION<TAB>PAYLOAD\n",
                    progname, lineno);
            status = 2;
            break;
        }
        *tab = '\0';
        errno = 0;
        part = strtol(line, &end, 10);
        if (errno || end == line || *end != '\0' || part < -1 ||
            part >= nparts) {
            fprintf(stderr,
                    "%s: line %lld: bad partition \"%s\" (topic %s has "
                    "%d partitions; -1 lets librdkafka choose)\n",
                    progname, lineno, line, topic, nparts);
            status = 2;
            break;
        }
        plen = (size_t) (line + len - (tab + 1));
        if (hex && unhex(tab + 1, &plen) != 0) {
            fprintf(stderr, "%s: line %lld: payload is not hex\n", progname, lineno);
            status = 2;
            break;
        }

        while (rd_kafka_produce(rkt,
                                part < 0 ? RD_KAFKA_PARTITION_UA
                                         : (int32_t) part,
                                RD_KAFKA_MSG_F_COPY, tab + 1, plen, NULL, 0,
                                NULL) != 0) {
            rd_kafka_resp_err_t err = rd_kafka_last_error();

            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "%s: line %lld: produce failed: %s\n",
                        progname, lineno, rd_kafka_err2str(err));
                status = 1;
                goto done_reading;
            }
            /* Local queue full: serve delivery reports until there is room. */
            rd_kafka_poll(rk, 10);
        }
        produced++;
        if ((produced & 1023) == 0)
            rd_kafka_poll(rk, 0);
    }
    if (ferror(stdin)) {
        fprintf(stderr, "%s: reading stdin: %s\n", progname, strerror(errno));
        status = 1;
    }
done_reading:
    free(line);

    if (rd_kafka_flush(rk, FLUSH_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        int left = rd_kafka_outq_len(rk);

        fprintf(stderr, "%s: flush timed out, %d message(s) not delivered\n",
                progname, left);
        /* Drop what is left so that rd_kafka_destroy() does not wait on it. */
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(rk, 0);
        if (status == 0)
            status = 1;
    }
    elapsed = now_sec() - t0;

    if (failed > 0) {
        fprintf(stderr, "%s: %lld of %lld message(s) failed delivery\n",
                progname, failed, produced);
        if (status == 0)
            status = 1;
    }
    fprintf(stderr, "produced %lld messages in %.3f seconds: %.0f msg/s\n",
            delivered, elapsed, elapsed > 0 ? delivered / elapsed : 0.0);

    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return status;
}
