/*
 * consume_bench: the raw librdkafka consume rate of a topic, the baseline the
 * streamflink benchmarks compare against.
 *
 * Usage:
 *   consume_bench BROKERS TOPIC COUNT [-X PROP=VALUE]...
 *
 * Reads the partition count from the topic's metadata, assigns every
 * partition (manual rd_kafka_assign, no group rebalance) from
 * RD_KAFKA_OFFSET_BEGINNING and reads with rd_kafka_consume_batch_queue() on
 * the consumer queue until COUNT messages have been seen, summing payload
 * lengths and bytes so that the work is not optimised away.  Consumer
 * settings: group.id (required by librdkafka even with manual assignment),
 * enable.auto.commit=false, auto.offset.reset=earliest, fetch.wait.max.ms=10
 * (the mock broker holds an empty fetch for the full wait); -X PROP=VALUE
 * overrides or adds any librdkafka property, e.g. to match the settings of
 * the pipeline being benchmarked.
 *
 * The clock starts just before rd_kafka_assign() and stops when the COUNT-th
 * message arrives: it includes the offset lookup and the connection to the
 * partition leader (a few milliseconds on loopback), as a pipeline's own
 * measurement would.  Metadata is fetched before the clock starts.
 *
 * Output (stdout):
 *   consumed N messages in S seconds: R msg/s
 *   RATE R                      <- always the last line, R = N / S
 * Diagnostics (first-message latency, byte counts, errors) go to stderr.
 * Exit status 1 when COUNT messages have not arrived within 120 s, 2 on a
 * usage error.
 *
 * Build: cc -O2 -Wall -o test/consume_bench test/consume_bench.c -lrdkafka -lpthread
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#define TIMEOUT_SEC         120.0
#define METADATA_TIMEOUT_MS 10000
#define BATCH               1024
#define MAX_REPORTED_ERRORS 10

static const char *progname = "consume_bench";

static double now_sec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + ts.tv_nsec / 1e9;
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

static void usage(void)
{
    fprintf(stderr, "usage: %s BROKERS TOPIC COUNT [-X PROP=VALUE]...\n",
            progname);
}

int main(int argc, char **argv)
{
    const char                     *brokers, *topic;
    long long                       count, seen = 0, errors = 0;
    uint64_t                        bytes = 0, checksum = 0;
    rd_kafka_conf_t                *conf;
    rd_kafka_t                     *rk;
    rd_kafka_topic_t               *rkt;
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_queue_t               *q;
    rd_kafka_message_t             *msgs[BATCH];
    rd_kafka_resp_err_t             err;
    char                            errstr[512], *end;
    int                             i, nparts, status = 0;
    double                          t0, t_first = 0, t_end, elapsed;

    if (argc < 4) {
        usage();
        return 2;
    }
    brokers = argv[1];
    topic = argv[2];
    errno = 0;
    count = strtoll(argv[3], &end, 10);
    if (errno || end == argv[3] || *end || count < 1) {
        fprintf(stderr, "%s: COUNT must be a positive integer, got \"%s\"\n",
                progname, argv[3]);
        return 2;
    }

    conf = rd_kafka_conf_new();
    if (set_conf(conf, "bootstrap.servers", brokers) ||
        set_conf(conf, "client.id", "streamflink-consume-bench") ||
        set_conf(conf, "group.id", "streamflink-consume-bench") ||
        set_conf(conf, "enable.auto.commit", "false") ||
        set_conf(conf, "auto.offset.reset", "earliest") ||
        set_conf(conf, "fetch.wait.max.ms", "10"))
        return 1;
    for (i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "-X") && i + 1 < argc) {
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

    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "%s: rd_kafka_new: %s\n", progname, errstr);
        return 1;
    }

    /* Partition count from metadata. */
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        fprintf(stderr, "%s: topic %s: %s\n", progname, topic,
                rd_kafka_err2str(rd_kafka_last_error()));
        rd_kafka_destroy(rk);
        return 1;
    }
    err = rd_kafka_metadata(rk, 0, rkt, &md, METADATA_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    if (err) {
        fprintf(stderr, "%s: metadata of topic %s: %s\n", progname, topic,
                rd_kafka_err2str(err));
        rd_kafka_destroy(rk);
        return 1;
    }
    if (md->topic_cnt != 1 || md->topics[0].err ||
        md->topics[0].partition_cnt < 1) {
        fprintf(stderr, "%s: topic %s: %s\n", progname, topic,
                md->topic_cnt != 1 ? "missing from metadata"
                : md->topics[0].err ? rd_kafka_err2str(md->topics[0].err)
                                    : "no partitions");
        rd_kafka_metadata_destroy(md);
        rd_kafka_destroy(rk);
        return 1;
    }
    nparts = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(nparts);
    for (i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(parts, topic,
                                          md->topics[0].partitions[i].id)
            ->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_metadata_destroy(md);

    q = rd_kafka_queue_get_consumer(rk);

    t0 = now_sec();
    err = rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (err) {
        fprintf(stderr, "%s: assign: %s\n", progname, rd_kafka_err2str(err));
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
        return 1;
    }

    while (seen < count) {
        ssize_t n;
        size_t  want;
        double  left = t0 + TIMEOUT_SEC - now_sec();

        if (left <= 0) {
            fprintf(stderr,
                    "%s: timed out after %.0f s: %lld of %lld messages\n",
                    progname, TIMEOUT_SEC, seen, count);
            status = 1;
            break;
        }
        /*
         * rd_kafka_consume_batch_queue() returns only when the array is full
         * or the timeout has passed, even if messages are waiting: ask for no
         * more than are still expected, or the last partial batch would cost
         * a whole timeout.
         */
        want = count - seen < BATCH ? (size_t) (count - seen) : BATCH;
        n = rd_kafka_consume_batch_queue(q, left > 0.1 ? 100 : (int) (left * 1000) + 1,
                                         msgs, want);
        if (n < 0) {
            fprintf(stderr, "%s: consume: %s\n", progname,
                    rd_kafka_err2str(rd_kafka_last_error()));
            status = 1;
            break;
        }
        for (i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];

            if (m->err) {
                if (errors < MAX_REPORTED_ERRORS)
                    fprintf(stderr, "%s: partition %d: %s\n", progname,
                            (int) m->partition, rd_kafka_message_errstr(m));
                errors++;
            } else {
                const unsigned char *p = m->payload;

                if (seen == 0)
                    t_first = now_sec();
                seen++;
                bytes += m->len;
                if (m->len > 0)
                    checksum += p[0] + p[m->len - 1];
            }
            rd_kafka_message_destroy(m);
        }
    }
    t_end = now_sec();
    elapsed = t_end - t0;

    fprintf(stderr,
            "%s: %d partition(s), first message after %.1f ms, %" PRIu64
            " payload bytes (checksum %" PRIu64 "), %lld error event(s)\n",
            progname, nparts, seen ? (t_first - t0) * 1000 : -1.0, bytes,
            checksum, errors);

    rd_kafka_queue_destroy(q);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);

    if (status != 0)
        return status;
    printf("consumed %lld messages in %.3f seconds: %.0f msg/s\n", seen,
           elapsed, seen / elapsed);
    printf("RATE %.0f\n", seen / elapsed);
    return 0;
}
