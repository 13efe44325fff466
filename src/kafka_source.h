/*-------------------------------------------------------------------------
 *
 * kafka_source.h
 *	  Kafka consumer for pipeline sources, on librdkafka.
 *
 * Partitions are assigned manually and positioned at offsets read from our
 * checkpoint catalog; Kafka's consumer-group offsets are never committed nor
 * used.  librdkafka runs its own threads: nothing here is called from them,
 * its log lines are queued and emitted from the caller's thread by
 * ksrc_poll_events().
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_KAFKA_SOURCE_H
#define STREAMFLINK_KAFKA_SOURCE_H

/* Offset meaning "the first offset still held by the broker". */
#define KSRC_OFFSET_BEGINNING (-2)

typedef struct KafkaSource KafkaSource;

typedef struct KafkaMessage
{
	int32		partition;
	int64		offset;			/* offset of this message */
	const char *payload;		/* not NUL-terminated; NULL for a null value */
	size_t		len;
	const char *key;			/* may be NULL */
	size_t		key_len;
	int64		timestamp_ms;	/* Kafka message timestamp, -1 if none */
} KafkaMessage;

/*
 * Create a consumer for 'topic' on 'brokers'.  'options' is a list of
 * librdkafka "name=value" settings (char *) applied after our defaults (the
 * caller checked them with ksrc_check_options).  Never contacts the broker;
 * ereports ERROR (ERRCODE_INVALID_PARAMETER_VALUE) on a bad setting.
 */
extern KafkaSource *ksrc_create(const char *brokers, const char *topic,
								const char *group_id, List *options);

/*
 * Check librdkafka "name=value" settings before they are used: ereports
 * ERROR for a malformed one, for one of our own settings (refused for
 * everyone), and, unless 'trusted' (the options' owner is a superuser), for
 * any setting outside the allow-list of kafka_source.c.
 */
extern void ksrc_check_options(List *options, bool trusted);

/*
 * Number of partitions of the topic, from a metadata request waiting at most
 * timeout_ms.  Returns -1 and sets *errmsg (palloc'd) if the broker cannot
 * be reached or the topic does not exist.
 */
extern int	ksrc_partition_count(KafkaSource *src, int timeout_ms, char **errmsg);

/*
 * Assign partitions 0..nparts-1, each starting at next_offsets[i] (the offset
 * of the next message to read, or KSRC_OFFSET_BEGINNING).
 */
extern void ksrc_assign(KafkaSource *src, int nparts, const int64 *next_offsets);

/*
 * Assign only partitions[0..nlisted-1] (a parallel pipeline's task reads
 * its share), each at next_offsets[partition number].
 */
extern void ksrc_assign_partitions(KafkaSource *src, int nlisted, const int32 *partitions,
								   const int64 *next_offsets);

/*
 * Fetch up to 'max' messages, waiting at most timeout_ms for the first one.
 * The messages stay valid until the next ksrc_consume() or ksrc_destroy().
 * A partition-level error (e.g. offset out of range) is not returned as a
 * message: the call returns -1 and sets *errmsg.
 */
extern int	ksrc_consume(KafkaSource *src, KafkaMessage *out, int max,
						 int timeout_ms, char **errmsg);

/*
 * A file descriptor that becomes readable when messages (or errors) arrive
 * on the consumer queue, for WaitLatchOrSocket(WL_SOCKET_READABLE); -1 if
 * there is none (then poll).  Call ksrc_clear_wakeup() before consuming:
 * a byte is written only when the queue goes from empty to non-empty.
 */
extern int	ksrc_wakeup_fd(KafkaSource *src);
extern void ksrc_clear_wakeup(KafkaSource *src);

/*
 * The consumer's position in partitions 0..nparts-1: the offset of the next
 * message to fetch as librdkafka reports it (rd_kafka_position), which on a
 * real broker is past transaction markers, so not always the last
 * message's offset + 1.  -1 for a partition with no position yet (nothing
 * consumed since the assignment).
 */
extern void ksrc_positions(KafkaSource *src, int nparts, int64 *next_offsets);

/*
 * Last known end offset (high watermark) of a partition, from the broker's
 * fetch responses (no request is made); -1 if not known yet.
 */
extern int64 ksrc_high_watermark(KafkaSource *src, int32 partition);

/* Emit queued librdkafka log lines with elog(LOG) from the calling thread. */
extern void ksrc_poll_events(KafkaSource *src);

extern void ksrc_destroy(KafkaSource *src);

#endif							/* STREAMFLINK_KAFKA_SOURCE_H */
