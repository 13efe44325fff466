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
	void	   *handle;			/* librdkafka's message, for its headers */
} KafkaMessage;

/*
 * Where a pipeline starts reading a partition that has no checkpointed
 * position (see start_position.h for the catalog side).
 */
typedef enum KsrcStartKind
{
	KSRC_START_EARLIEST,		/* the first offset the broker still holds */
	KSRC_START_LATEST,			/* the end: only messages produced later */
	KSRC_START_TIMESTAMP,		/* first message with timestamp >= it */
	KSRC_START_OFFSETS			/* given per partition; others: earliest */
} KsrcStartKind;

typedef struct KsrcStartPosition
{
	KsrcStartKind kind;
	int64		timestamp_ms;	/* KSRC_START_TIMESTAMP: Unix ms */
	int			noffsets;		/* KSRC_START_OFFSETS */
	int32	   *partitions;
	int64	   *offsets;		/* >= 0, or KSRC_OFFSET_BEGINNING / _END */
} KsrcStartPosition;

#define KSRC_OFFSET_END (-1)

/*
 * Parse a start position: 'earliest', 'latest', a timestamptz literal
 * (read in the session's TimeZone), or a JSON object of partition ->
 * offset ('{"0": 42, "1": "latest"}').  ereports ERROR with a hint for
 * anything else.  Returns the canonical text (timestamps in UTC, offsets as
 * jsonb prints them), which reads back to the same position anywhere.
 */
extern char *ksrc_parse_start_position(const char *spec, KsrcStartPosition *out);

/*
 * The offsets where each of 'nparts' partitions starts under 'start':
 * asks the broker for the partitions' first and end offsets (and, for a
 * timestamp, the first offset at or after it: rd_kafka_offsets_for_times).
 * Every result is a concrete offset >= 0.  Returns false and sets *errmsg
 * if the broker does not answer within timeout_ms, or an explicit offset
 * lies outside what the partition holds.  'how' (palloc'd per partition)
 * says how each was resolved, for streamflink.offsets.
 */
extern bool ksrc_resolve_start_offsets(KafkaSource *src, const KsrcStartPosition *start,
									   int nparts, const int32 *partitions,
									   int64 *offsets, char **how,
									   int timeout_ms, char **errmsg);

/*
 * The partition ids of the topic (sorted), from a metadata request waiting
 * at most timeout_ms: their number, or -1 with *errmsg set.  *partitions is
 * palloc'd.
 */
extern int	ksrc_list_partitions(KafkaSource *src, int timeout_ms, int32 **partitions,
								 char **errmsg);

/*
 * Start fetching more partitions, each at offsets[i], leaving the current
 * assignment as it is (rd_kafka_incremental_assign).
 */
extern void ksrc_assign_more(KafkaSource *src, int n, const int32 *partitions,
							 const int64 *offsets);

/*
 * The headers of a message handed out by ksrc_consume(), as parallel arrays
 * (palloc'd; a header with a null value has a NULL value): their number.
 */
extern int	ksrc_message_headers(const KafkaMessage *msg, const char ***names,
								 const char ***values, size_t **lens);

/* streamflink.partition_discovery_interval */
extern int	ksrc_partition_discovery_ms;
extern void ksrc_define_settings(void);

/*
 * Create a consumer for 'topic' on 'brokers'.  'options' is a list of
 * librdkafka "name=value" settings (char *) applied after our defaults (the
 * caller checked them with ksrc_check_options).  Never contacts the broker;
 * ereports ERROR (ERRCODE_INVALID_PARAMETER_VALUE) on a bad setting.
 */
extern KafkaSource *ksrc_create(const char *brokers, const char *topic,
								const char *group_id, List *options);

/*
 * Apply a user's librdkafka "name=value" settings (checked before with
 * ksrc_check_options, or kafka_sink_check) to 'conf', after the caller's own
 * settings, leaving out those named in skip[0..nskip-1].  One place for the
 * consumer and the producers (kafka_sink.c).  On a malformed setting or one
 * librdkafka refuses, destroys conf and ereports ERROR
 * (ERRCODE_INVALID_PARAMETER_VALUE), naming the setting as an invalid
 * 'what' ("Kafka option") with a hint to librdkafka's 'client' settings
 * ("consumer", "producer").
 */
struct rd_kafka_conf_s;
extern void ksrc_conf_apply_options(struct rd_kafka_conf_s *conf, List *options,
									const char *what, const char *client,
									const char *const *skip, int nskip);

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
