/*-------------------------------------------------------------------------
 *
 * kafka_source.c
 *	  Kafka consumer for pipeline sources, on librdkafka.
 *
 * The consumer is a librdkafka KafkaConsumer whose partitions are assigned
 * manually (rd_kafka_assign) at offsets taken from our checkpoint catalog.
 * Kafka's group offsets are never committed nor read, but librdkafka still
 * requires a group.id.
 *
 * Threads: librdkafka runs its own threads, and none of them may ever call
 * into Postgres (no palloc, no elog).  So no callback is registered at all:
 * log lines go to a queue of their own (log.queue=true) that
 * ksrc_poll_events() drains from the caller's thread, and errors arrive as
 * messages on the consumer queue.  Signals are blocked while librdkafka
 * creates its threads so that they never run Postgres' signal handlers (they
 * block signals themselves too, but only once running).
 *
 * One queue serves everything: the main queue is forwarded to the consumer
 * queue, which is read with rd_kafka_consume_batch_queue (about 2M msg/s on
 * the test machine, far more than one message per call).  So that the
 * caller never blocks inside librdkafka (where it would notice neither
 * signals nor the postmaster's death), the consumer queue writes a byte to
 * a pipe whenever it becomes non-empty (rd_kafka_queue_io_event_enable):
 * the caller waits on the pipe's read end with its latch, WaitLatchOrSocket,
 * and consumes with a zero timeout.
 *
 * The error out-parameter of the header's functions is named 'error' here,
 * as 'errmsg' would shadow ereport's errmsg().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "kafka_source.h"
#include "thread_signals.h"

struct KafkaSource
{
	rd_kafka_t *rk;
	rd_kafka_queue_t *consumer_queue;
	rd_kafka_queue_t *log_queue;
	rd_kafka_topic_t *rkt;		/* for metadata requests; made on demand */
	int			wakeup[2];		/* pipe librdkafka writes to, -1 if none */
	char	   *topic;
	MemoryContext mcxt;			/* where this struct lives */

	/* messages handed out by the last ksrc_consume() */
	rd_kafka_message_t **batch;
	int			batch_alloc;
	int			batch_count;
};

/* Our defaults, applied before the user's options. */
static const char *const default_options[][2] = {
	/* offsets are ours, kept in the checkpoint catalog */
	{"enable.auto.commit", "false"},
	{"enable.auto.offset.store", "false"},
	/* an offset gone from the broker is data loss: fail, never skip ahead */
	{"auto.offset.reset", "error"},
	{"enable.partition.eof", "false"},
	/* bounds the latency of an idle partition */
	{"fetch.wait.max.ms", "100"},
	/*
	 * Prefetch.  librdkafka 2.0.2 stops fetching a partition whose queue is
	 * above queued.min.messages and only reconsiders it when its broker
	 * thread next wakes up, up to a second later: a consumer slower than
	 * the fetcher then gets about queued.min.messages per partition per
	 * second.  Measured with 4 partitions and ~60-byte JSON events: 100000
	 * gave 190k msg/s consumed and decoded, 1000000 gave 1.37M msg/s.  So
	 * the message count is set high and the real bound is the memory one,
	 * queued.max.messages.kbytes, which for a KafkaConsumer covers the
	 * whole consumer queue (all partitions).  It counts payload bytes only:
	 * librdkafka's structures per message come on top, as much again or
	 * more with small messages, and the queue fills whenever the pipeline
	 * is slower than the broker (many keys).  librdkafka's 64 MB made a
	 * worker's RSS 100-270 MB larger in test/bench/cep_bench.sh; 16 MB is
	 * still a fraction of a second of the fastest pipelines' input.
	 */
	{"queued.min.messages", "1000000"},
	{"queued.max.messages.kbytes", "16384"},
	{"client.id", "streamflink"},
	/* no log callback from librdkafka threads: queue the lines */
	{"log.queue", "true"},
};

/*
 * Who may set which librdkafka option.
 *
 * librdkafka has settings that run commands (sasl.kerberos.kinit.cmd, and
 * the GSSAPI mechanism, which runs kinit), load code (plugin.library.paths,
 * ssl.engine.location, ssl.providers) or read and write the server's files
 * (ssl.*.location, sasl.kerberos.keytab, ssl.keystore.location, ...).  All
 * of them would run as the server's OS user.  So options are deny by
 * default: a role that is not a superuser may set only the settings a
 * connection to a real cluster needs, listed here; a superuser may set any
 * setting but our own.
 *
 * Our own settings are refused for everyone: they are what exactly-once
 * rests on (offsets kept in our checkpoints, never committed to Kafka nor
 * reset silently) or what keeps librdkafka's threads out of Postgres (the
 * log queue).  Refusing is clearer than ignoring them silently.
 */
static const char *const protected_options[] = {
	"bootstrap.servers",		/* the source's brokers */
	"metadata.broker.list",
	"group.id",					/* ours; no consumer group is used */
	"group.instance.id",
	"enable.auto.commit",
	"enable.auto.offset.store",
	"auto.commit.enable",
	"auto.offset.reset",
	"offset.store.method",
	"enable.partition.eof",
	"log.queue",
};

static const char *const tenant_options[] = {
	"security.protocol",
	"sasl.mechanism",			/* values checked below */
	"sasl.mechanisms",
	"sasl.username",
	"sasl.password",
	"sasl.oauthbearer.config",
	"sasl.oauthbearer.method",
	"sasl.oauthbearer.client.id",
	"sasl.oauthbearer.client.secret",
	"sasl.oauthbearer.scope",
	"sasl.oauthbearer.extensions",
	"sasl.oauthbearer.token.endpoint.url",	/* http(s) only, see below */
	"enable.sasl.oauthbearer.unsecure.jwt",
	"ssl.ca.pem",				/* PEM values inline; never file paths */
	"ssl.certificate.pem",
	"ssl.key.pem",
	"ssl.key.password",
	"ssl.cipher.suites",
	"ssl.curves.list",
	"ssl.sigalgs.list",
	"ssl.endpoint.identification.algorithm",
	"enable.ssl.certificate.verification",
	"client.id",
	"client.rack",
	"socket.timeout.ms",
	"socket.connection.setup.timeout.ms",
	"socket.keepalive.enable",
	"socket.nagle.disable",
	"socket.send.buffer.bytes",
	"socket.receive.buffer.bytes",
	"socket.max.fails",
	"connections.max.idle.ms",
	"session.timeout.ms",
	"request.timeout.ms",
	"metadata.max.age.ms",
	"topic.metadata.refresh.interval.ms",
	"topic.metadata.refresh.fast.interval.ms",
	"topic.metadata.propagation.max.ms",
	"fetch.max.bytes",
	"fetch.min.bytes",
	"fetch.wait.max.ms",
	"fetch.error.backoff.ms",
	"fetch.message.max.bytes",
	"max.partition.fetch.bytes",
	"receive.message.max.bytes",
	"message.max.bytes",
	"queued.min.messages",
	"queued.max.messages.kbytes",
	"isolation.level",
	"check.crcs",
	"api.version.request",
	"api.version.request.timeout.ms",
	"api.version.fallback.ms",
	"broker.version.fallback",
	"broker.address.family",
	"broker.address.ttl",
	"reconnect.backoff.ms",
	"reconnect.backoff.max.ms",
	"retry.backoff.ms",
	"retry.backoff.max.ms",
};

/* SASL mechanisms that run nothing on the server (GSSAPI runs kinit). */
static const char *const tenant_sasl_mechanisms[] = {
	"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER",
};

static bool
in_list(const char *name, const char *const *list, int n, bool nocase)
{
	for (int i = 0; i < n; i++)
		if ((nocase ? pg_strcasecmp(name, list[i]) : strcmp(name, list[i])) == 0)
			return true;
	return false;
}

static char *
tenant_options_text(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(tenant_options); i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", tenant_options[i]);
	return buf.data;
}

void
ksrc_check_options(List *options, bool trusted)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		char	   *opt = (char *) lfirst(lc);
		char	   *eq = strchr(opt, '=');
		char	   *name;
		char	   *value;
		bool		ok;

		if (eq == NULL || eq == opt)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid Kafka option \"%s\"", opt),
					 errhint("Kafka options are written name=value, for example \"fetch.wait.max.ms=10\".")));
		name = pnstrdup(opt, eq - opt);
		value = eq + 1;

		if (in_list(name, protected_options, lengthof(protected_options), false))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("Kafka option \"%s\" is set by streamflink and cannot be changed", name),
					 errdetail("Offsets are kept in streamflink's checkpoints, never committed to Kafka nor reset: that is what exactly-once rests on."),
					 errhint("Give brokers as the source's brokers; leave the consumer group and offset settings out.")));
		if (trusted)
			continue;

		ok = in_list(name, tenant_options, lengthof(tenant_options), false);
		if (ok && (strcmp(name, "sasl.mechanism") == 0 ||
				   strcmp(name, "sasl.mechanisms") == 0))
			ok = in_list(value, tenant_sasl_mechanisms,
						 lengthof(tenant_sasl_mechanisms), true);
		/* libcurl would also read file:// URLs */
		if (ok && strcmp(name, "sasl.oauthbearer.token.endpoint.url") == 0)
			ok = pg_strncasecmp(value, "https://", 8) == 0 ||
				pg_strncasecmp(value, "http://", 7) == 0;
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("Kafka option \"%s\" needs a superuser", opt),
					 errdetail("Settings that run commands, load libraries or read server files (and any setting not known to be safe) are reserved to superusers; sasl.mechanism may be PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER; PEM values are given inline (ssl.ca.pem, ssl.certificate.pem, ssl.key.pem)."),
					 errhint("Settings other roles may use: %s.", tenant_options_text())));
		pfree(name);
	}
}

PG_FUNCTION_INFO_V1(streamflink_check_kafka_options);

/*
 * streamflink._check_kafka_options(options text[], owner regrole): refuses,
 * at create_source, the options the source's owner may not set.  The
 * worker checks again before it creates the consumer (see worker.c).
 */
Datum
streamflink_check_kafka_options(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	Oid			owner = PG_GETARG_OID(1);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *options = NIL;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("Kafka options must not be NULL")));
		options = lappend(options, TextDatumGetCString(elems[i]));
	}
	ksrc_check_options(options, superuser_arg(owner));
	PG_RETURN_VOID();
}

/* Set one property; on failure frees conf and ereports. */
static void
conf_set_or_error(rd_kafka_conf_t *conf, const char *name, const char *value,
				  bool user_option)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		if (user_option)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid Kafka option \"%s=%s\": %s",
							name, value, errstr),
					 errhint("Options are librdkafka consumer settings, see librdkafka's CONFIGURATION.md.")));
		else
			elog(ERROR, "could not set Kafka option \"%s=%s\": %s",
				 name, value, errstr);
	}
}

void
ksrc_conf_apply_options(rd_kafka_conf_t *conf, List *options, const char *what,
						const char *client, const char *const *skip, int nskip)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		char	   *opt = (char *) lfirst(lc);
		char	   *eq = strchr(opt, '=');
		char	   *name;
		char		errstr[512];

		if (eq == NULL || eq == opt)
		{
			rd_kafka_conf_destroy(conf);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid Kafka option \"%s\"", opt),
					 errhint("Kafka options are written name=value, for example \"fetch.wait.max.ms=10\".")));
		}
		name = pnstrdup(opt, eq - opt);
		if (!in_list(name, skip, nskip, false) &&
			rd_kafka_conf_set(conf, name, eq + 1, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		{
			rd_kafka_conf_destroy(conf);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s \"%s=%s\": %s", what, name, eq + 1, errstr),
					 errhint("Options are librdkafka %s settings, see librdkafka's CONFIGURATION.md.",
							 client)));
		}
		pfree(name);
	}
}

KafkaSource *
ksrc_create(const char *brokers, const char *topic, const char *group_id,
			List *options)
{
	KafkaSource *src;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	char		errstr[512];
	sigset_t	saved;
	int			i;

	if (brokers == NULL || brokers[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("Kafka brokers must not be empty"),
				 errhint("Give a list of host:port, for example \"localhost:9092\".")));
	if (topic == NULL || topic[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("Kafka topic must not be empty")));

	/* Allocate everything that can fail before librdkafka owns resources. */
	src = palloc0(sizeof(KafkaSource));
	src->mcxt = CurrentMemoryContext;
	src->wakeup[0] = src->wakeup[1] = -1;
	src->topic = pstrdup(topic);

	conf = rd_kafka_conf_new();
	conf_set_or_error(conf, "bootstrap.servers", brokers, true);
	conf_set_or_error(conf, "group.id",
					  (group_id && group_id[0]) ? group_id : "streamflink",
					  true);
	for (i = 0; i < lengthof(default_options); i++)
		conf_set_or_error(conf, default_options[i][0], default_options[i][1],
						  false);

	ksrc_conf_apply_options(conf, options, "Kafka option", "consumer", NULL, 0);

	/*
	 * rd_kafka_new starts librdkafka's threads, which inherit our signal
	 * mask: block everything so that Postgres' handlers never run on them.
	 */
	thread_signals_block(&saved);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	thread_signals_restore(&saved);
	if (rk == NULL)
	{
		/* conf is only consumed on success */
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not create Kafka consumer: %s", errstr)));
	}

	/*
	 * Nothing below can fail: the source is complete once rk is set, and
	 * ksrc_destroy copes with any prefix of it.
	 */
	src->rk = rk;
	src->log_queue = rd_kafka_queue_new(rk);
	rd_kafka_set_log_queue(rk, src->log_queue);
	rd_kafka_poll_set_consumer(rk);
	src->consumer_queue = rd_kafka_queue_get_consumer(rk);

	/*
	 * Both ends non-blocking: librdkafka's thread must never block on a
	 * full pipe (one byte is enough to wake us), nor we on an empty one.
	 * Without a pipe, ksrc_wakeup_fd() says so and the caller polls.
	 */
	if (pipe(src->wakeup) == 0)
	{
		fcntl(src->wakeup[0], F_SETFL, O_NONBLOCK);
		fcntl(src->wakeup[1], F_SETFL, O_NONBLOCK);
		fcntl(src->wakeup[0], F_SETFD, FD_CLOEXEC);
		fcntl(src->wakeup[1], F_SETFD, FD_CLOEXEC);
		rd_kafka_queue_io_event_enable(src->consumer_queue, src->wakeup[1], "1", 1);
	}
	else
		src->wakeup[0] = src->wakeup[1] = -1;

	return src;
}

/*
 * The topic's metadata, from a request waiting at most timeout_ms: the
 * caller frees it with rd_kafka_metadata_destroy.  NULL with *error set
 * (palloc'd) if the broker does not answer or the topic is not available.
 */
static const struct rd_kafka_metadata *
topic_metadata(KafkaSource *src, int timeout_ms, char **error)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err;

	*error = NULL;
	if (src->rkt == NULL)
	{
		src->rkt = rd_kafka_topic_new(src->rk, src->topic, NULL);
		if (src->rkt == NULL)
		{
			*error = psprintf("invalid Kafka topic \"%s\": %s", src->topic,
							   rd_kafka_err2str(rd_kafka_last_error()));
			return NULL;
		}
	}

	err = rd_kafka_metadata(src->rk, 0, src->rkt, &md, timeout_ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		*error = psprintf("could not get metadata of Kafka topic \"%s\" within %d ms: %s",
						   src->topic, timeout_ms, rd_kafka_err2str(err));
		return NULL;
	}

	if (md->topic_cnt != 1)
	{
		*error = psprintf("Kafka metadata for topic \"%s\" has %d topics",
						   src->topic, md->topic_cnt);
		rd_kafka_metadata_destroy(md);
		return NULL;
	}
	if (md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		*error = psprintf("Kafka topic \"%s\" is not available: %s",
						   src->topic, rd_kafka_err2str(md->topics[0].err));
		rd_kafka_metadata_destroy(md);
		return NULL;
	}
	return md;
}

int
ksrc_partition_count(KafkaSource *src, int timeout_ms, char **error)
{
	const struct rd_kafka_metadata *md;
	const rd_kafka_metadata_topic_t *t;
	int			count;

	md = topic_metadata(src, timeout_ms, error);
	if (md == NULL)
		return -1;
	t = &md->topics[0];
	if (t->partition_cnt <= 0)
	{
		*error = psprintf("Kafka topic \"%s\" has no partitions", src->topic);
		rd_kafka_metadata_destroy(md);
		return -1;
	}

	count = t->partition_cnt;
	rd_kafka_metadata_destroy(md);
	return count;
}

void
ksrc_assign(KafkaSource *src, int nparts, const int64 *next_offsets)
{
	rd_kafka_topic_partition_list_t *parts;
	rd_kafka_resp_err_t err;
	int			i;

	for (i = 0; i < nparts; i++)
	{
		if (next_offsets[i] < 0 && next_offsets[i] != KSRC_OFFSET_BEGINNING)
			elog(ERROR, "invalid start offset " INT64_FORMAT " for partition %d of Kafka topic \"%s\"",
				 next_offsets[i], i, src->topic);
	}

	parts = rd_kafka_topic_partition_list_new(nparts);
	for (i = 0; i < nparts; i++)
	{
		rd_kafka_topic_partition_t *p;

		p = rd_kafka_topic_partition_list_add(parts, src->topic, i);
		p->offset = (next_offsets[i] == KSRC_OFFSET_BEGINNING) ?
			RD_KAFKA_OFFSET_BEGINNING : next_offsets[i];
	}

	err = rd_kafka_assign(src->rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not assign partitions of Kafka topic \"%s\": %s",
						src->topic, rd_kafka_err2str(err))));
}

/*
 * Parallel pipelines: assign only the listed partitions (a task's share),
 * each at next_offsets[partition] (indexed by partition number).
 */
void
ksrc_assign_partitions(KafkaSource *src, int nlisted, const int32 *partitions,
					   const int64 *next_offsets)
{
	rd_kafka_topic_partition_list_t *parts;
	rd_kafka_resp_err_t err;

	parts = rd_kafka_topic_partition_list_new(Max(nlisted, 1));
	for (int i = 0; i < nlisted; i++)
	{
		int32		pnum = partitions[i];
		int64		off = next_offsets[pnum];
		rd_kafka_topic_partition_t *p;

		if (off < 0 && off != KSRC_OFFSET_BEGINNING)
			elog(ERROR, "invalid start offset " INT64_FORMAT " for partition %d of Kafka topic \"%s\"",
				 off, pnum, src->topic);
		p = rd_kafka_topic_partition_list_add(parts, src->topic, pnum);
		p->offset = (off == KSRC_OFFSET_BEGINNING) ? RD_KAFKA_OFFSET_BEGINNING : off;
	}
	err = rd_kafka_assign(src->rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not assign partitions of Kafka topic \"%s\": %s",
						src->topic, rd_kafka_err2str(err))));
}

static void
release_batch(KafkaSource *src)
{
	int			i;

	for (i = 0; i < src->batch_count; i++)
		rd_kafka_message_destroy(src->batch[i]);
	src->batch_count = 0;
}

/*
 * Errors about the connection to the cluster, which librdkafka recovers from
 * by itself (reconnecting, refreshing metadata); fetching resumes where it
 * stopped, so nothing is lost by carrying on.
 */
static bool
error_is_transient(rd_kafka_resp_err_t err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR__TRANSPORT:
		case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
		case RD_KAFKA_RESP_ERR__RESOLVE:
		case RD_KAFKA_RESP_ERR__TIMED_OUT:
		case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
		case RD_KAFKA_RESP_ERR__AUTHENTICATION:
		case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
		case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
		case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
		case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
			return true;
		default:
			return false;
	}
}

int
ksrc_consume(KafkaSource *src, KafkaMessage *out, int max, int timeout_ms,
			 char **error)
{
	ssize_t		n;
	int			i;
	int			count = 0;

	*error = NULL;
	release_batch(src);

	if (max <= 0)
		return 0;

	if (src->batch_alloc < max)
	{
		rd_kafka_message_t **newbatch;

		newbatch = MemoryContextAlloc(src->mcxt,
									  sizeof(rd_kafka_message_t *) * max);
		if (src->batch)
			pfree(src->batch);
		src->batch = newbatch;
		src->batch_alloc = max;
	}

	/*
	 * rd_kafka_consume_batch_queue waits until the batch is full or the
	 * timeout expires, which would hold a trickle of messages for the whole
	 * timeout.  So take what is ready without waiting, and if nothing is,
	 * wait for the first message only, then take what came along with it.
	 */
	n = rd_kafka_consume_batch_queue(src->consumer_queue, 0, src->batch, max);
	if (n == 0 && timeout_ms > 0)
	{
		rd_kafka_message_t *first = rd_kafka_consumer_poll(src->rk, timeout_ms);

		if (first != NULL)
		{
			src->batch[0] = first;
			n = 1;
			if (max > 1)
			{
				ssize_t		more;

				more = rd_kafka_consume_batch_queue(src->consumer_queue, 0,
													src->batch + 1, max - 1);
				if (more > 0)
					n += more;
			}
		}
	}
	if (n < 0)
	{
		*error = psprintf("could not consume from Kafka topic \"%s\": %s",
						   src->topic, rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	src->batch_count = (int) n;

	for (i = 0; i < src->batch_count; i++)
	{
		rd_kafka_message_t *m = src->batch[i];
		KafkaMessage *o;
		rd_kafka_timestamp_type_t tstype;
		int64_t		ts;

		if (unlikely(m->err != RD_KAFKA_RESP_ERR_NO_ERROR))
		{
			if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
				continue;
			if (error_is_transient(m->err))
			{
				ereport(LOG,
						(errmsg("Kafka consumer of topic \"%s\": %s (retrying)",
								src->topic, rd_kafka_message_errstr(m))));
				continue;
			}

			/*
			 * Anything else, e.g. an offset no longer held by the broker
			 * (auto.offset.reset=error): the partition stops here and must
			 * not be skipped silently.  Messages already in this batch are
			 * dropped with it: the caller restarts from its checkpoint.
			 */
			if (m->rkt != NULL)
				*error = psprintf("Kafka error on topic \"%s\" partition %d at offset " INT64_FORMAT ": %s (%s)",
								   rd_kafka_topic_name(m->rkt), (int) m->partition,
								   (int64) m->offset,
								   rd_kafka_message_errstr(m),
								   rd_kafka_err2name(m->err));
			else
				*error = psprintf("Kafka error on topic \"%s\": %s (%s)",
								   src->topic, rd_kafka_message_errstr(m),
								   rd_kafka_err2name(m->err));
			return -1;
		}

		o = &out[count++];
		o->partition = m->partition;
		o->offset = m->offset;
		o->payload = (const char *) m->payload;
		o->len = m->len;
		o->key = (const char *) m->key;
		o->key_len = m->key_len;
		ts = rd_kafka_message_timestamp(m, &tstype);
		o->timestamp_ms = (tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) ? -1 : ts;
		o->handle = m;
	}

	return count;
}

int
ksrc_wakeup_fd(KafkaSource *src)
{
	return src->wakeup[0];
}

void
ksrc_clear_wakeup(KafkaSource *src)
{
	char		buf[64];

	if (src->wakeup[0] < 0)
		return;
	while (read(src->wakeup[0], buf, sizeof(buf)) > 0)
		;
}

void
ksrc_positions(KafkaSource *src, int nparts, int64 *next_offsets)
{
	rd_kafka_topic_partition_list_t *parts;

	parts = rd_kafka_topic_partition_list_new(nparts);
	for (int i = 0; i < nparts; i++)
		rd_kafka_topic_partition_list_add(parts, src->topic, i);
	if (rd_kafka_position(src->rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		for (int i = 0; i < nparts; i++)
			next_offsets[i] = -1;
	}
	else
	{
		for (int i = 0; i < nparts; i++)
		{
			rd_kafka_topic_partition_t *p = &parts->elems[i];

			next_offsets[i] = (p->err == RD_KAFKA_RESP_ERR_NO_ERROR && p->offset >= 0) ?
				p->offset : -1;
		}
	}
	rd_kafka_topic_partition_list_destroy(parts);
}

int64
ksrc_high_watermark(KafkaSource *src, int32 partition)
{
	int64_t		low;
	int64_t		high;

	if (rd_kafka_get_watermark_offsets(src->rk, src->topic, partition,
									   &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	if (high < 0)				/* RD_KAFKA_OFFSET_INVALID: not known yet */
		return -1;
	return high;
}

void
ksrc_poll_events(KafkaSource *src)
{
	int			i;

	if (src == NULL || src->log_queue == NULL)
		return;

	/* bounded, so that a flood of debug lines cannot stall the caller */
	for (i = 0; i < 1000; i++)
	{
		rd_kafka_event_t *ev = rd_kafka_queue_poll(src->log_queue, 0);

		if (ev == NULL)
			break;
		if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_LOG)
		{
			const char *fac;
			const char *str;
			int			level;

			if (rd_kafka_event_log(ev, &fac, &str, &level) == 0)
				ereport(level >= 7 ? DEBUG1 : LOG,
						(errmsg_internal("librdkafka %s: %s", fac, str)));
		}
		rd_kafka_event_destroy(ev);
	}
}

/*
 * Release everything.  Safe on a partially built source, twice, and from a
 * before_shmem_exit callback (nothing here allocates or can ereport).
 */
void
ksrc_destroy(KafkaSource *src)
{
	sigset_t	saved;

	if (src == NULL)
		return;

	/* every message and handle must go before rd_kafka_destroy */
	if (src->batch)
		release_batch(src);
	if (src->rkt)
	{
		rd_kafka_topic_destroy(src->rkt);
		src->rkt = NULL;
	}
	if (src->consumer_queue)
	{
		rd_kafka_queue_io_event_enable(src->consumer_queue, -1, NULL, 0);
		rd_kafka_queue_destroy(src->consumer_queue);
		src->consumer_queue = NULL;
	}

	if (src->rk)
	{
		rd_kafka_t *rk = src->rk;

		src->rk = NULL;

		/*
		 * rd_kafka_consumer_close would leave the group and commit offsets;
		 * we never joined a group (manual assign) nor commit, and closing
		 * can wait on an unreachable coordinator.  Skip it.
		 */
		if (src->log_queue)
		{
			rd_kafka_set_log_queue(rk, NULL);
			rd_kafka_queue_destroy(src->log_queue);
			src->log_queue = NULL;
		}
		thread_signals_block(&saved);
		rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
		thread_signals_restore(&saved);
	}
	else if (src->log_queue)
	{
		rd_kafka_queue_destroy(src->log_queue);
		src->log_queue = NULL;
	}

	/* librdkafka's threads are gone: nobody writes to the pipe any more */
	for (int i = 0; i < 2; i++)
	{
		if (src->wakeup[i] >= 0)
			close(src->wakeup[i]);
		src->wakeup[i] = -1;
	}
}


/* ---- Start positions, partition discovery, headers ----
 *
 * What a pipeline needs beyond consuming: where a partition without a
 * checkpointed position starts, which partitions the topic has now, and a
 * message's headers.  The catalog side (which positions were recorded) is
 * start_position.c's.
 */

/* streamflink.partition_discovery_interval, ms; 0: never */
int			ksrc_partition_discovery_ms = 10000;

void
ksrc_define_settings(void)
{
	DefineCustomIntVariable("streamflink.partition_discovery_interval",
							"How often a running pipeline asks the broker for new partitions of its topic.",
							"Partitions added to the topic are read from their beginning. 0 turns discovery off.",
							&ksrc_partition_discovery_ms, 10000, 0, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
}

static void
start_position_error(const char *spec, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid start position \"%s\"", spec),
			 detail ? errdetail("%s", detail) : 0,
			 errhint("Use 'earliest', 'latest', a timestamp ('2024-01-01 00:00:00+00'), or offsets per partition as JSON ('{\"0\": 42, \"1\": 0}').")));
}

/* An offset of the JSON form: a whole number >= 0, "earliest" or "latest". */
static int64
start_offset_value(const char *spec, JsonbValue *v)
{
	if (v->type == jbvString)
	{
		if (v->val.string.len == 8 && pg_strncasecmp(v->val.string.val, "earliest", 8) == 0)
			return KSRC_OFFSET_BEGINNING;
		if (v->val.string.len == 6 && pg_strncasecmp(v->val.string.val, "latest", 6) == 0)
			return KSRC_OFFSET_END;
	}
	else if (v->type == jbvNumeric)
	{
		char	   *str = DatumGetCString(DirectFunctionCall1(numeric_out,
															   NumericGetDatum(v->val.numeric)));
		char	   *end;
		long long	off;

		errno = 0;
		off = strtoll(str, &end, 10);
		if (errno == 0 && end != str && *end == '\0' && off >= 0)
			return (int64) off;
	}
	start_position_error(spec, "An offset is a whole number >= 0, \"earliest\" or \"latest\".");
	return 0;					/* not reached */
}

char *
ksrc_parse_start_position(const char *spec, KsrcStartPosition *out)
{
	const char *p = spec;

	memset(out, 0, sizeof(*out));
	if (spec == NULL)
		start_position_error("", NULL);
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;

	if (pg_strcasecmp(p, "earliest") == 0)
	{
		out->kind = KSRC_START_EARLIEST;
		return pstrdup("earliest");
	}
	if (pg_strcasecmp(p, "latest") == 0)
	{
		out->kind = KSRC_START_LATEST;
		return pstrdup("latest");
	}
	if (*p == '{')
	{
		Jsonb	   *jb;
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;
		int			alloc = 8;
		MemoryContext cxt = CurrentMemoryContext;

		/* jsonb's own parser; its error is the user's, with our hint */
		PG_TRY();
		{
			jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(p)));
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			start_position_error(spec, edata->message);
		}
		PG_END_TRY();

		if (!JB_ROOT_IS_OBJECT(jb))
			start_position_error(spec, "Offsets are a JSON object of partition: offset.");
		out->kind = KSRC_START_OFFSETS;
		out->partitions = palloc(sizeof(int32) * alloc);
		out->offsets = palloc(sizeof(int64) * alloc);
		it = JsonbIteratorInit(&jb->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				char	   *key = pnstrdup(v.val.string.val, v.val.string.len);
				char	   *end;
				long		part;

				errno = 0;
				part = strtol(key, &end, 10);
				if (errno != 0 || end == key || *end != '\0' || part < 0 || part > PG_INT32_MAX)
					start_position_error(spec, psprintf("\"%s\" is not a partition number.", key));
				if (out->noffsets == alloc)
				{
					alloc *= 2;
					out->partitions = repalloc(out->partitions, sizeof(int32) * alloc);
					out->offsets = repalloc(out->offsets, sizeof(int64) * alloc);
				}
				out->partitions[out->noffsets] = (int32) part;
			}
			else if (tok == WJB_VALUE)
				out->offsets[out->noffsets++] = start_offset_value(spec, &v);
		}
		if (out->noffsets == 0)
			start_position_error(spec, "Give at least one partition.");
		return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	}

	/* A timestamp, read as timestamptz_in reads it (the session's TimeZone). */
	{
		MemoryContext cxt = CurrentMemoryContext;
		TimestampTz ts = 0;
		struct pg_tm tm;
		fsec_t		fsec;

		PG_TRY();
		{
			ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(p),
														 ObjectIdGetDatum(InvalidOid),
														 Int32GetDatum(-1)));
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			FlushErrorState();
			start_position_error(spec, NULL);
		}
		PG_END_TRY();
		if (TIMESTAMP_NOT_FINITE(ts) ||
			timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
			start_position_error(spec, "A start timestamp must be finite.");
		out->kind = KSRC_START_TIMESTAMP;
		/* Kafka timestamps are Unix milliseconds; a fraction below is rounded up */
		out->timestamp_ms = (ts + (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
		out->timestamp_ms = out->timestamp_ms >= 0 ?
			(out->timestamp_ms + 999) / 1000 : out->timestamp_ms / 1000;
		if (out->timestamp_ms < 0)
			start_position_error(spec, "Kafka timestamps start at 1970-01-01 00:00:00+00.");
		return psprintf("%04d-%02d-%02d %02d:%02d:%02d.%06d+00",
						tm.tm_year, tm.tm_mon, tm.tm_mday,
						tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
	}
}

int
ksrc_list_partitions(KafkaSource *src, int timeout_ms, int32 **partitions,
					 char **error)
{
	const struct rd_kafka_metadata *md;
	const rd_kafka_metadata_topic_t *t;
	int32	   *ids;
	int			count;

	*partitions = NULL;
	md = topic_metadata(src, timeout_ms, error);
	if (md == NULL)
		return -1;
	t = &md->topics[0];
	count = t->partition_cnt;
	ids = palloc(sizeof(int32) * Max(count, 1));
	for (int i = 0; i < count; i++)
	{
		int32		id = t->partitions[i].id;
		int			j = i;

		/* insertion sort: brokers list them in any order */
		while (j > 0 && ids[j - 1] > id)
		{
			ids[j] = ids[j - 1];
			j--;
		}
		ids[j] = id;
	}
	rd_kafka_metadata_destroy(md);
	*partitions = ids;
	return count;
}

bool
ksrc_resolve_start_offsets(KafkaSource *src, const KsrcStartPosition *start,
						   int nparts, const int32 *partitions,
						   int64 *offsets, char **how, int timeout_ms,
						   char **error)
{
	rd_kafka_topic_partition_list_t *times = NULL;

	*error = NULL;

	/* By timestamp: one ListOffsets request for every partition. */
	if (start->kind == KSRC_START_TIMESTAMP)
	{
		rd_kafka_resp_err_t err;

		times = rd_kafka_topic_partition_list_new(nparts);
		for (int i = 0; i < nparts; i++)
			rd_kafka_topic_partition_list_add(times, src->topic, partitions[i])->offset =
				start->timestamp_ms;
		err = rd_kafka_offsets_for_times(src->rk, times, timeout_ms);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			*error = psprintf("could not look up offsets by timestamp in Kafka topic \"%s\": %s",
							   src->topic, rd_kafka_err2str(err));
			rd_kafka_topic_partition_list_destroy(times);
			return false;
		}
	}

	for (int i = 0; i < nparts; i++)
	{
		int64_t		low;
		int64_t		high;
		int64		want = KSRC_OFFSET_BEGINNING;
		rd_kafka_resp_err_t err;

		err = rd_kafka_query_watermark_offsets(src->rk, src->topic, partitions[i],
											   &low, &high, timeout_ms);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			*error = psprintf("could not get the offsets of partition %d of Kafka topic \"%s\": %s",
							   partitions[i], src->topic, rd_kafka_err2str(err));
			if (times)
				rd_kafka_topic_partition_list_destroy(times);
			return false;
		}

		switch (start->kind)
		{
			case KSRC_START_EARLIEST:
				want = KSRC_OFFSET_BEGINNING;
				how[i] = pstrdup("earliest");
				break;
			case KSRC_START_LATEST:
				want = KSRC_OFFSET_END;
				how[i] = pstrdup("latest");
				break;
			case KSRC_START_TIMESTAMP:
				{
					rd_kafka_topic_partition_t *p = &times->elems[i];

					if (p->err != RD_KAFKA_RESP_ERR_NO_ERROR)
					{
						*error = psprintf("could not look up offsets by timestamp in partition %d of Kafka topic \"%s\": %s",
										   partitions[i], src->topic, rd_kafka_err2str(p->err));
						rd_kafka_topic_partition_list_destroy(times);
						return false;
					}
					/* -1: no message at or after the timestamp (yet): the end */
					want = p->offset >= 0 ? p->offset : KSRC_OFFSET_END;
					how[i] = pstrdup(p->offset >= 0 ? "timestamp" : "timestamp (after the last message)");
					break;
				}
			case KSRC_START_OFFSETS:
				how[i] = pstrdup("earliest (not in the given offsets)");
				for (int j = 0; j < start->noffsets; j++)
					if (start->partitions[j] == partitions[i])
					{
						want = start->offsets[j];
						how[i] = pstrdup("given offset");
					}
				break;
		}

		if (want == KSRC_OFFSET_BEGINNING)
			offsets[i] = low;
		else if (want == KSRC_OFFSET_END)
			offsets[i] = high;
		else if (want < low || want > high)
		{
			*error = psprintf("start offset " INT64_FORMAT " of partition %d of Kafka topic \"%s\" is outside the offsets it holds (" INT64_FORMAT " to " INT64_FORMAT ")",
							   want, partitions[i], src->topic, (int64) low, (int64) high);
			if (times)
				rd_kafka_topic_partition_list_destroy(times);
			return false;
		}
		else
			offsets[i] = want;
	}
	if (times)
		rd_kafka_topic_partition_list_destroy(times);
	return true;
}

void
ksrc_assign_more(KafkaSource *src, int n, const int32 *partitions,
				 const int64 *offsets)
{
	rd_kafka_topic_partition_list_t *parts;
	rd_kafka_error_t *err;

	parts = rd_kafka_topic_partition_list_new(n);
	for (int i = 0; i < n; i++)
		rd_kafka_topic_partition_list_add(parts, src->topic, partitions[i])->offset =
			offsets[i] >= 0 ? offsets[i] : RD_KAFKA_OFFSET_BEGINNING;
	err = rd_kafka_incremental_assign(src->rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (err != NULL)
	{
		char	   *msg = pstrdup(rd_kafka_error_string(err));

		rd_kafka_error_destroy(err);
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not add partitions of Kafka topic \"%s\": %s",
						src->topic, msg)));
	}
}

int
ksrc_message_headers(const KafkaMessage *msg, const char ***names,
					 const char ***values, size_t **lens)
{
	rd_kafka_headers_t *hdrs = NULL;
	size_t		n;

	*names = NULL;
	*values = NULL;
	*lens = NULL;
	if (msg->handle == NULL ||
		rd_kafka_message_headers((rd_kafka_message_t *) msg->handle, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		hdrs == NULL)
		return 0;
	n = rd_kafka_header_cnt(hdrs);
	if (n == 0)
		return 0;
	*names = palloc(sizeof(char *) * n);
	*values = palloc(sizeof(char *) * n);
	*lens = palloc(sizeof(size_t) * n);
	for (size_t i = 0; i < n; i++)
	{
		const char *name;
		const void *value;
		size_t		size;

		if (rd_kafka_header_get_all(hdrs, i, &name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
			return (int) i;
		(*names)[i] = name;
		(*values)[i] = value;
		(*lens)[i] = size;
	}
	return (int) n;
}
