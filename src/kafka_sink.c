/*-------------------------------------------------------------------------
 *
 * kafka_sink.c
 *	  The Kafka sink (see kafka_sink.h and README.md, "Kafka sink").
 *
 * The exactly-once argument in short.  Epoch n's rows exist twice: as
 * messages of one Kafka transaction T(n, run) and as rows of the outbox
 * table, written in the worker's Postgres epoch transaction together with
 * a row of streamflink.kafka_sink_txn naming (n, run).  Both become
 * durable only through checkpoint n's decision (the Postgres side by
 * COMMIT PREPARED, the Kafka side by commit_transaction, which runs only
 * after it).  What can be lost in a crash is only the knowledge of
 * whether T committed, between commit_transaction and the record of it.
 * Recovery answers that from the broker: T carries a marker message
 * (n, run) in the marker topic, produced after the decision, and once
 * init_transactions has fenced the crashed producer (its open transaction
 * is aborted), the marker is readable with read_committed exactly when T
 * committed.  Unconfirmed and not committed: the outbox is sent again as
 * T(n, new run), after the txn row names the new run (so a crash during
 * the resend is settled the same way).
 *
 * A parallel pipeline's tasks each do all of this for their own rows
 * ('worker' is the task): their own producer and transactional.id, txn
 * rows, outbox rows and markers.  Only the decision is shared, and each
 * task's epoch transaction is resolved from it before its recover runs,
 * so every task settles its own transactions independently.
 *
 * librdkafka's test broker does not honour read_committed: there every
 * message of an aborted transaction stays visible, and a marker that was
 * written reads as committed.  The decision is then still consistent with
 * what any reader of that broker sees (the messages are there), and the
 * fault test counts messages by the transactions the sink recorded.  A
 * crash before the marker was written (failpoint after_decision) takes the
 * resend path on either broker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>

#include <librdkafka/rdkafka.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "checkpoint.h"
#include "kafka_sink.h"
#include "kafka_source.h"
#include "run_as.h"
#include "thread_signals.h"

/* Messages an outbox row holds (as arrays), and kept in memory until then. */
#define OUTBOX_BATCH 1000

/* librdkafka's default transaction.timeout.ms */
#define DEFAULT_TXN_TIMEOUT_MS 60000

/* Waits on the broker: init, commit, watermark queries. */
#define BROKER_TIMEOUT_MS 10000

struct SinkOutput
{
	char	   *name;
	int			ncols;
	int			nident;			/* identity columns: the message key */
	TupleDesc	desc;			/* every column, blessed */
	TupleDesc	keydesc;		/* the identity columns, if more than one */
	Oid			key_out;		/* output function of a single identity column */
};

typedef struct KafkaSink
{
	Sink		sink;			/* first: a KafkaSink is a Sink */
	Oid			dboid;
	PipelineDef *def;
	int			worker;
	char	   *txid;			/* transactional.id */
	char	   *marker_topic;
	char	   *outbox;			/* the outbox table, qualified and quoted */
	int			txn_timeout_ms;
	MemoryContext cxt;
	MemoryContext scratch;		/* one write */
	rd_kafka_t *rk;
	rd_kafka_queue_t *log_queue;
	int64		run;			/* this worker start's incarnation */
	int64		epoch;			/* the checkpoint that ends the open epoch */
	bool		in_txn;			/* a Kafka transaction is open */
	int64		seq;			/* messages of the epoch so far */
	/* delivery reports, counted on our thread (rd_kafka_poll/flush) */
	int64		failed;
	char		first_error[256];
	/* outbox rows not yet inserted */
	MemoryContext batch_cxt;
	int			nbatch;
	int64		b_first_seq;	/* sequence of the batch's first message */
	Datum		b_output[OUTBOX_BATCH];
	Datum		b_key[OUTBOX_BATCH];
	bool		b_key_null[OUTBOX_BATCH];
	Datum		b_value[OUTBOX_BATCH];
	bool		b_value_null[OUTBOX_BATCH];
	SPIPlanPtr	insert_plan;
} KafkaSink;

/* --- options ------------------------------------------------------------- */

/* Settings the sink owns: exactly-once rests on them. */
static const char *const producer_protected[] = {
	"bootstrap.servers",
	"metadata.broker.list",
	"transactional.id",
	"enable.idempotence",
	"enable.gapless.guarantee",
	"acks",
	"request.required.acks",
	"max.in.flight.requests.per.connection",
	"max.in.flight",
	"log.queue",
};

/* Producer settings any role may use (they touch nothing on the server). */
static const char *const producer_tenant_options[] = {
	"linger.ms",
	"queue.buffering.max.ms",
	"batch.num.messages",
	"batch.size",
	"compression.codec",
	"compression.type",
	"compression.level",
	"transaction.timeout.ms",
	"message.timeout.ms",
	"delivery.timeout.ms",
	"partitioner",
	"message.send.max.retries",
	"retries",
	"sticky.partitioning.linger.ms",
};

static bool
in_list(const char *name, const char *const *list, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(name, list[i]) == 0)
			return true;
	return false;
}

static int
txn_timeout_of(List *options)
{
	ListCell   *lc;
	int			ms = DEFAULT_TXN_TIMEOUT_MS;

	foreach(lc, options)
	{
		char	   *opt = (char *) lfirst(lc);

		if (strncmp(opt, "transaction.timeout.ms=", 23) == 0)
		{
			char	   *end;
			long		v = strtol(opt + 23, &end, 10);

			if (*end != '\0' || v <= 0 || v > INT_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid Kafka option \"%s\"", opt),
						 errhint("transaction.timeout.ms is a number of milliseconds.")));
			ms = (int) v;
		}
	}
	return ms;
}

void
kafka_sink_check(const char *brokers, const char *topic, const char *format,
				 List *options, int64 checkpoint_interval, bool trusted)
{
	ListCell   *lc;
	int			timeout_ms;
	int64		interval_ms = checkpoint_interval / 1000;

	if (brokers == NULL || brokers[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a Kafka sink needs sink_brokers"),
				 errhint("Give a list of host:port, for example sink_brokers => 'localhost:9092'.")));
	if (topic == NULL || topic[0] == '\0' || strlen(topic) > 240 ||
		strspn(topic, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(topic) ||
		strcmp(topic, ".") == 0 || strcmp(topic, "..") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Kafka sink topic \"%s\"", topic ? topic : ""),
				 errhint("A topic name has 1 to 240 letters, digits, '.', '_' or '-' (the sink also uses <topic>.markers).")));
	if (format == NULL || strcmp(format, "json") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown Kafka sink format \"%s\"", format ? format : ""),
				 errhint("sink_format may be 'json'.")));

	foreach(lc, options)
	{
		char	   *opt = (char *) lfirst(lc);
		char	   *eq = strchr(opt, '=');
		char	   *name;

		if (eq == NULL || eq == opt)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid Kafka option \"%s\"", opt),
					 errhint("Kafka options are written name=value, for example \"linger.ms=20\".")));
		name = pnstrdup(opt, eq - opt);
		if (in_list(name, producer_protected, lengthof(producer_protected)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("Kafka option \"%s\" is set by streamflink and cannot be changed", name),
					 errdetail("The sink's producer is transactional and idempotent, with a transactional.id of its own: that is what exactly-once rests on."),
					 errhint("Give brokers as sink_brokers; leave the transaction and acknowledgement settings out.")));
		/* the rest: as for sources (kafka_source.c's allow-list) */
		if (!in_list(name, producer_tenant_options, lengthof(producer_tenant_options)))
			ksrc_check_options(list_make1(opt), trusted);
		pfree(name);
	}

	timeout_ms = txn_timeout_of(options);
	if ((int64) timeout_ms < 2 * interval_ms)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("transaction.timeout.ms %d is too short for a checkpoint interval of " INT64_FORMAT " ms",
						timeout_ms, interval_ms),
				 errdetail("A Kafka transaction stays open from the first result of an epoch until its checkpoint completes, up to a checkpoint interval and the checkpoint itself; the broker aborts a transaction older than transaction.timeout.ms (librdkafka's default: 60000)."),
				 errhint("Set transaction.timeout.ms in sink_options to at least " INT64_FORMAT " (twice the checkpoint interval; the broker caps it at its transaction.max.timeout.ms, 15 minutes by default), or use a shorter checkpoint_interval.",
						 2 * interval_ms)));
}

PG_FUNCTION_INFO_V1(streamflink_check_kafka_sink);

/*
 * streamflink._check_kafka_sink(brokers, topic, format, options,
 * checkpoint_interval, owner): kafka_sink_check for create_*_pipeline and
 * the pipeline trigger.
 */
Datum
streamflink_check_kafka_sink(PG_FUNCTION_ARGS)
{
	char	   *brokers = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *topic = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *format = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	List	   *options = NIL;
	Interval   *iv = PG_ARGISNULL(4) ? NULL : PG_GETARG_INTERVAL_P(4);
	Oid			owner = PG_ARGISNULL(5) ? GetUserId() : PG_GETARG_OID(5);
	int64		interval_us = 1000000;

	if (!PG_ARGISNULL(3))
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
		for (int i = 0; i < n; i++)
		{
			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("Kafka options must not be NULL")));
			options = lappend(options, TextDatumGetCString(elems[i]));
		}
	}
	if (iv)
		interval_us = iv->time + (int64) iv->day * USECS_PER_DAY;
	kafka_sink_check(brokers, topic, format, options, interval_us, superuser_arg(owner));
	PG_RETURN_VOID();
}

/* --- the producer -------------------------------------------------------- */

static KafkaSink *sink_for_exit = NULL;

/* librdkafka's queued log lines, on our thread. */
static void
poll_logs(rd_kafka_queue_t *q)
{
	rd_kafka_event_t *ev;

	if (q == NULL)
		return;
	while ((ev = rd_kafka_queue_poll(q, 0)) != NULL)
	{
		if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_LOG)
		{
			const char *fac,
					   *str;
			int			level;

			if (rd_kafka_event_log(ev, &fac, &str, &level) == 0)
				ereport(level <= 4 ? LOG : DEBUG1,
						(errmsg("streamflink Kafka sink: %s: %s", fac, str)));
		}
		rd_kafka_event_destroy(ev);
	}
}

/* Delivery reports: on our thread, inside rd_kafka_poll/flush; no palloc. */
static void
delivery_report(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	KafkaSink  *ks = (KafkaSink *) opaque;

	if (msg->err)
	{
		if (ks->failed++ == 0)
			strlcpy(ks->first_error, rd_kafka_err2str(msg->err), sizeof(ks->first_error));
	}
}

/* Set one property on a conf; on failure frees it and ereports. */
static void
conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Kafka sink option \"%s=%s\": %s", name, value, errstr),
				 errhint("Options are librdkafka producer settings, see librdkafka's CONFIGURATION.md.")));
	}
}

static void
destroy_handle(rd_kafka_t *rk, rd_kafka_queue_t *q)
{
	sigset_t	saved;

	if (rk == NULL)
		return;
	thread_signals_block(&saved);
	if (q)
		rd_kafka_queue_destroy(q);
	rd_kafka_destroy(rk);
	thread_signals_restore(&saved);
}

/* before_shmem_exit: no librdkafka thread outlives the worker. */
static void
kafka_sink_exit(int code, Datum arg)
{
	KafkaSink  *ks = sink_for_exit;

	if (ks == NULL || ks->rk == NULL)
		return;
	/* an open transaction is aborted by the next init_transactions */
	rd_kafka_purge(ks->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	destroy_handle(ks->rk, ks->log_queue);
	ks->rk = NULL;
	ks->log_queue = NULL;
}

static void
create_producer(KafkaSink *ks)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];
	sigset_t	saved;
	rd_kafka_t *rk;

	conf_set(conf, "bootstrap.servers", ks->def->sink_brokers);
	conf_set(conf, "transactional.id", ks->txid);
	conf_set(conf, "client.id", "streamflink-sink");
	conf_set(conf, "linger.ms", "5");
	/* the key's partition as Java clients compute it */
	conf_set(conf, "partitioner", "murmur2_random");
	conf_set(conf, "log.queue", "true");
	/* the user's options, after our defaults */
	ksrc_conf_apply_options(conf, ks->def->sink_options, "Kafka sink option", "producer",
							NULL, 0);
	rd_kafka_conf_set_dr_msg_cb(conf, delivery_report);
	rd_kafka_conf_set_opaque(conf, ks);

	thread_signals_block(&saved);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	thread_signals_restore(&saved);
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not create the Kafka sink's producer: %s", errstr)));
	}
	ks->rk = rk;
	ks->log_queue = rd_kafka_queue_new(rk);
	rd_kafka_set_log_queue(rk, ks->log_queue);
}

/* An error from a transactional call: ereport it (and free it). */
static void
txn_error(KafkaSink *ks, rd_kafka_error_t *error, const char *what, int64 checkpoint)
{
	char	   *msg = pstrdup(rd_kafka_error_string(error));
	bool		fatal = rd_kafka_error_is_fatal(error);
	bool		fenced = rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__FENCED ||
		rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR_PRODUCER_FENCED;

	rd_kafka_error_destroy(error);
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("Kafka sink of pipeline \"%s\": could not %s (checkpoint " INT64_FORMAT "): %s",
					ks->def->name, what, checkpoint, msg),
			 fenced ?
			 errhint("Another producer with transactional.id \"%s\" took over: is the pipeline running on another server against the same brokers?", ks->txid) :
			 fatal ? errhint("The worker restarts and sends the checkpoint's results again if they were not committed.") :
			 errhint("Check that the brokers \"%s\" are reachable; the worker retries from its last checkpoint.",
					 ks->def->sink_brokers)));
}

/*
 * A transactional call that the broker may answer late: retried while it
 * says so, with interrupts checked between tries.
 */
typedef rd_kafka_error_t *(*TxnCall) (rd_kafka_t *rk, int timeout_ms);

static void
txn_call(KafkaSink *ks, TxnCall call, const char *what, int64 checkpoint)
{
	for (int tries = 0;; tries++)
	{
		rd_kafka_error_t *error = call(ks->rk, BROKER_TIMEOUT_MS);

		poll_logs(ks->log_queue);
		if (error == NULL)
			return;
		/* a timeout is reported at once: the worker's restart retries */
		if (rd_kafka_error_is_retriable(error) && tries < 5 &&
			rd_kafka_error_code(error) != RD_KAFKA_RESP_ERR__TIMED_OUT)
		{
			rd_kafka_error_destroy(error);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		txn_error(ks, error, what, checkpoint);
	}
}

/* Wait until every message is delivered; an undelivered one is an error. */
static void
flush_all(KafkaSink *ks, int64 checkpoint)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   ks->txn_timeout_ms + BROKER_TIMEOUT_MS);

	while (rd_kafka_outq_len(ks->rk) > 0)
	{
		rd_kafka_flush(ks->rk, 100);
		poll_logs(ks->log_queue);
		CHECK_FOR_INTERRUPTS();
		if (GetCurrentTimestamp() > deadline)
		{
			ks->failed++;
			strlcpy(ks->first_error, "timed out", sizeof(ks->first_error));
			break;
		}
	}
	if (ks->failed > 0)
	{
		int64		n = ks->failed;

		ks->failed = 0;
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("Kafka sink of pipeline \"%s\": " INT64_FORMAT " messages of checkpoint " INT64_FORMAT " not delivered to topic \"%s\": %s",
						ks->def->name, n, checkpoint, ks->def->sink_topic, ks->first_error),
				 errhint("Check that the brokers \"%s\" are reachable and the topics \"%s\" and \"%s\" exist; the worker retries from its last checkpoint.",
						 ks->def->sink_brokers, ks->def->sink_topic, ks->marker_topic)));
	}
}

static void
begin_txn(KafkaSink *ks)
{
	rd_kafka_error_t *error;

	if (ks->in_txn)
		return;
	error = rd_kafka_begin_transaction(ks->rk);
	if (error)
		txn_error(ks, error, "begin a transaction", ks->epoch);
	ks->in_txn = true;
}

static void
add_header(rd_kafka_headers_t *h, const char *name, const char *value)
{
	rd_kafka_header_add(h, name, -1, value, -1);
}

/* One message into the open transaction; waits while the queue is full. */
static void
produce(KafkaSink *ks, const char *topic, int32 partition, const char *output,
		int64 checkpoint, int64 seq, const char *key, const char *value)
{
	char		buf[32];

	for (;;)
	{
		rd_kafka_headers_t *h = rd_kafka_headers_new(7);
		rd_kafka_resp_err_t err;

		add_header(h, "pipeline", ks->def->name);
		snprintf(buf, sizeof(buf), "%d", ks->worker);
		add_header(h, "worker", buf);
		snprintf(buf, sizeof(buf), INT64_FORMAT, checkpoint);
		add_header(h, "checkpoint", buf);
		snprintf(buf, sizeof(buf), INT64_FORMAT, ks->run);
		add_header(h, "run", buf);
		snprintf(buf, sizeof(buf), INT64_FORMAT, seq);
		add_header(h, "sequence", buf);
		add_header(h, "output", output);
		add_header(h, "transactional_id", ks->txid);

		err = rd_kafka_producev(ks->rk,
								RD_KAFKA_V_TOPIC(topic),
								RD_KAFKA_V_PARTITION(partition),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
								RD_KAFKA_V_VALUE((void *) value, value ? strlen(value) : 0),
								RD_KAFKA_V_HEADERS(h),
								RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			rd_kafka_poll(ks->rk, 0);
			return;
		}
		rd_kafka_headers_destroy(h);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("Kafka sink of pipeline \"%s\": could not produce to topic \"%s\": %s",
							ks->def->name, topic, rd_kafka_err2str(err))));
		rd_kafka_poll(ks->rk, 100);
		poll_logs(ks->log_queue);
		CHECK_FOR_INTERRUPTS();
	}
}

/* The marker of (checkpoint, run): the last message of its transaction. */
static void
produce_marker(KafkaSink *ks, int64 checkpoint, int64 messages)
{
	StringInfoData value;

	initStringInfo(&value);
	appendStringInfoString(&value, "{\"pipeline\": ");
	escape_json(&value, ks->def->name);
	appendStringInfo(&value, ", \"worker\": %d, \"checkpoint\": " INT64_FORMAT
					 ", \"run\": " INT64_FORMAT ", \"messages\": " INT64_FORMAT "}",
					 ks->worker, checkpoint, ks->run, messages);
	produce(ks, ks->marker_topic, 0, "marker", checkpoint, messages, ks->txid, value.data);
}

/* The end offset of the marker partition (where a read-back starts). */
static int64
marker_end(KafkaSink *ks, rd_kafka_t *rk)
{
	int64_t		lo,
				hi;
	rd_kafka_resp_err_t err;

	err = rd_kafka_query_watermark_offsets(rk, ks->marker_topic, 0, &lo, &hi,
										   BROKER_TIMEOUT_MS);
	if (err)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("Kafka sink of pipeline \"%s\": could not read the end of marker topic \"%s\": %s",
						ks->def->name, ks->marker_topic, rd_kafka_err2str(err)),
				 errhint("Check that the brokers \"%s\" are reachable and that topic \"%s\" exists (create it with one partition where topics are not created automatically).",
						 ks->def->sink_brokers, ks->marker_topic)));
	return hi;
}

/*
 * Did the transaction of (checkpoint, run) commit?  Its marker is looked
 * for in the marker partition from 'from' to the end, reading committed
 * messages only; the crashed producer was fenced before (init_transactions),
 * so its transaction is decided.  Another worker's open transaction may
 * hold the readable end (the last stable offset) back: wait for it, up to
 * the transaction timeout.  Never guesses: an unanswerable question is an
 * error, and the worker asks again at its next start.
 */
static bool
marker_committed(KafkaSink *ks, int64 checkpoint, int64 run, int64 from)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_queue_t *logq;
	rd_kafka_topic_partition_list_t *parts;
	char		errstr[512];
	char		want_ck[32],
				want_run[32];
	sigset_t	saved;
	int64		end;
	bool		found = false;
	bool		done = false;
	char	   *error = NULL;
	TimestampTz deadline;

	conf_set(conf, "bootstrap.servers", ks->def->sink_brokers);
	conf_set(conf, "group.id", psprintf("%s-audit", ks->txid));
	conf_set(conf, "isolation.level", "read_committed");
	conf_set(conf, "enable.auto.commit", "false");
	conf_set(conf, "auto.offset.reset", "error");
	conf_set(conf, "enable.partition.eof", "true");
	conf_set(conf, "fetch.wait.max.ms", "10");
	conf_set(conf, "log.queue", "true");
	/* the user's connection settings; producer-only ones do not apply */
	ksrc_conf_apply_options(conf, ks->def->sink_options, "Kafka sink option", "producer",
							producer_tenant_options, lengthof(producer_tenant_options));
	thread_signals_block(&saved);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	thread_signals_restore(&saved);
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not create the Kafka sink's reader: %s", errstr)));
	}
	logq = rd_kafka_queue_new(rk);
	rd_kafka_set_log_queue(rk, logq);
	rd_kafka_poll_set_consumer(rk);

	snprintf(want_ck, sizeof(want_ck), INT64_FORMAT, checkpoint);
	snprintf(want_run, sizeof(want_run), INT64_FORMAT, run);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   ks->txn_timeout_ms + 3 * BROKER_TIMEOUT_MS);

	PG_TRY();
	{
		end = marker_end(ks, rk);
		if (from >= end)
			done = true;		/* nothing was written after the prepare */
		else
		{
			parts = rd_kafka_topic_partition_list_new(1);
			rd_kafka_topic_partition_list_add(parts, ks->marker_topic, 0)->offset = from;
			if (rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
				error = "could not assign the marker partition";
			rd_kafka_topic_partition_list_destroy(parts);
		}
		while (!done && error == NULL)
		{
			rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);

			poll_logs(logq);
			CHECK_FOR_INTERRUPTS();
			if (GetCurrentTimestamp() > deadline)
			{
				error = "timed out waiting for the marker partition's stable end";
				break;
			}
			if (m == NULL)
				continue;
			if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			{
				/* read_committed stops at the last stable offset */
				if (m->offset >= end)
					done = true;
			}
			else if (m->err)
				error = pstrdup(rd_kafka_message_errstr(m));
			else
			{
				rd_kafka_headers_t *h;
				const void *v;
				size_t		len;

				if (m->key_len == strlen(ks->txid) &&
					memcmp(m->key, ks->txid, m->key_len) == 0 &&
					rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
					rd_kafka_header_get_last(h, "checkpoint", &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR &&
					len == strlen(want_ck) && memcmp(v, want_ck, len) == 0 &&
					rd_kafka_header_get_last(h, "run", &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR &&
					len == strlen(want_run) && memcmp(v, want_run, len) == 0)
				{
					found = true;
					done = true;
				}
				else if (m->offset + 1 >= end)
					done = true;
			}
			rd_kafka_message_destroy(m);
		}
	}
	PG_CATCH();
	{
		destroy_handle(rk, logq);
		PG_RE_THROW();
	}
	PG_END_TRY();
	destroy_handle(rk, logq);
	if (error)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("Kafka sink of pipeline \"%s\": could not tell whether checkpoint " INT64_FORMAT " was committed to Kafka: %s",
						ks->def->name, checkpoint, error),
				 errhint("Its results stay in the outbox table until this is known; the worker asks again at its next start.")));
	return found;
}

/* --- the outbox and the records ------------------------------------------ */

static void
outbox_flush(KafkaSink *ks)
{
	Oid			types[7] = {INT8OID, INT8OID, INT8OID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT4OID};
	Datum		args[7];
	int			dims[1];
	int			lbs[1] = {1};
	RunAs		as;
	MemoryContext old;
	int			ret;
	bool		nonull[OUTBOX_BATCH] = {0};

	if (ks->nbatch == 0)
		return;
	if (ks->insert_plan == NULL)
	{
		char	   *sql = psprintf("INSERT INTO %s (checkpoint_id, run, first_seq, output, key, value, worker)"
								   " VALUES ($1, $2, $3, $4, $5, $6, $7)", ks->outbox);

		run_as_role(ks->def->owner, &as);
		ks->insert_plan = SPI_prepare(sql, 7, types);
		run_as_restore(&as);
		if (ks->insert_plan == NULL)
			elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(ks->insert_plan);
	}
	old = MemoryContextSwitchTo(ks->batch_cxt);
	dims[0] = ks->nbatch;
	args[0] = Int64GetDatum(ks->epoch);
	args[1] = Int64GetDatum(ks->run);
	args[2] = Int64GetDatum(ks->b_first_seq);
	args[3] = PointerGetDatum(construct_md_array(ks->b_output, nonull, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	args[4] = PointerGetDatum(construct_md_array(ks->b_key, ks->b_key_null, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	args[5] = PointerGetDatum(construct_md_array(ks->b_value, ks->b_value_null, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	args[6] = Int32GetDatum(ks->worker);
	MemoryContextSwitchTo(old);

	run_as_role(ks->def->owner, &as);
	ret = SPI_execute_plan(ks->insert_plan, args, NULL, false, 0);
	run_as_restore(&as);
	MemoryContextSwitchTo(old);
	if (ret != SPI_OK_INSERT || SPI_processed != 1)
		elog(ERROR, "could not write the Kafka sink's outbox %s: %s", ks->outbox,
			 SPI_result_code_string(ret));
	ks->nbatch = 0;
	MemoryContextReset(ks->batch_cxt);
}

/*
 * "Checkpoint n is committed to Kafka by run r": its txn row says so, and
 * its outbox rows go; older records beyond streamflink.checkpoint_history
 * are pruned.  Outside any transaction.
 */
static void
record_commit(KafkaSink *ks, int64 checkpoint, int64 run, bool resent)
{
	Oid			types[5] = {INT4OID, INT4OID, INT8OID, INT8OID, BOOLOID};
	Datum		args[5] = {Int32GetDatum(ks->def->id), Int32GetDatum(ks->worker),
	Int64GetDatum(checkpoint), Int64GetDatum(run), BoolGetDatum(resent)};
	RunAs		as;
	int			ret;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args("UPDATE streamflink.kafka_sink_txn"
							  "   SET committed = pg_catalog.now(), run = $4, resent = $5"
							  " WHERE pipeline_id = $1 AND worker = $2 AND checkpoint_id = $3",
							  5, types, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the Kafka commit of checkpoint " INT64_FORMAT, checkpoint);
	if (checkpoint > checkpoint_history)
	{
		args[2] = Int64GetDatum(checkpoint - checkpoint_history);
		if (SPI_execute_with_args("DELETE FROM streamflink.kafka_sink_txn"
								  " WHERE pipeline_id = $1 AND worker = $2 AND checkpoint_id <= $3"
								  "   AND committed IS NOT NULL",
								  3, types, args, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not prune streamflink.kafka_sink_txn");
	}
	/* this task's rows only: the others settle theirs */
	args[0] = Int64GetDatum(checkpoint);
	args[1] = Int32GetDatum(ks->worker);
	{
		Oid			t2[2] = {INT8OID, INT4OID};

		run_as_role(ks->def->owner, &as);
		ret = SPI_execute_with_args(psprintf("DELETE FROM %s WHERE checkpoint_id = $1 AND worker = $2",
											 ks->outbox),
									2, t2, args, NULL, false, 0);
	}
	run_as_restore(&as);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not clear the Kafka sink's outbox %s", ks->outbox);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/* --- the sink methods ---------------------------------------------------- */

static TupleDesc
make_desc(int ncols, const char *const *names, const Oid *types)
{
	TupleDesc	desc = CreateTemplateTupleDesc(ncols);

	for (int i = 0; i < ncols; i++)
		TupleDescInitEntry(desc, (AttrNumber) (i + 1), names[i], types[i], -1, 0);
	return BlessTupleDesc(desc);
}

static SinkOutput *
ks_open_output(Sink *sink, const SinkRowDesc *rd)
{
	KafkaSink  *ks = (KafkaSink *) sink;
	MemoryContext old = MemoryContextSwitchTo(ks->cxt);
	SinkOutput *out = palloc0(sizeof(SinkOutput));

	out->name = pstrdup(rd->name);
	out->ncols = rd->ncols;
	/* windows: key columns and window_start; patterns: the key columns */
	out->nident = rd->nkeys > 0 ? rd->nkeys : Min(ks->def->nkeys, rd->ncols);
	out->desc = make_desc(rd->ncols, rd->colnames, rd->coltypes);
	if (out->nident > 1)
		out->keydesc = make_desc(out->nident, rd->colnames, rd->coltypes);
	else if (out->nident == 1)
	{
		bool		varlena;

		getTypeOutputInfo(rd->coltypes[0], &out->key_out, &varlena);
	}
	MemoryContextSwitchTo(old);
	return out;
}

static void
ks_begin_epoch(Sink *sink, int64 epoch)
{
	KafkaSink  *ks = (KafkaSink *) sink;

	ks->epoch = epoch;
	ks->seq = 0;
	ks->in_txn = false;
}

static char *
row_json(TupleDesc desc, Datum *values, bool *nulls)
{
	HeapTuple	tup = heap_form_tuple(desc, values, nulls);

	return TextDatumGetCString(DirectFunctionCall1(row_to_json, HeapTupleGetDatum(tup)));
}

static void
ks_write(Sink *sink, SinkOutput *out, SinkOp op, Datum *values, bool *nulls)
{
	KafkaSink  *ks = (KafkaSink *) sink;
	MemoryContext old = MemoryContextSwitchTo(ks->scratch);
	char	   *key = NULL;
	char	   *value = NULL;
	int			i;

	if (out->keydesc)
		key = row_json(out->keydesc, values, nulls);
	else if (out->nident == 1 && !nulls[0])
		key = OidOutputFunctionCall(out->key_out, values[0]);
	/* a retraction is a tombstone: the key with a null value */
	if (op != SINK_RETRACT)
		value = row_json(out->desc, values, nulls);

	begin_txn(ks);
	produce(ks, ks->def->sink_topic, RD_KAFKA_PARTITION_UA, out->name, ks->epoch,
			ks->seq, key, value);

	MemoryContextSwitchTo(ks->batch_cxt);
	i = ks->nbatch++;
	if (i == 0)
		ks->b_first_seq = ks->seq;
	ks->b_output[i] = CStringGetTextDatum(out->name);
	ks->b_key_null[i] = key == NULL;
	ks->b_key[i] = key ? CStringGetTextDatum(key) : (Datum) 0;
	ks->b_value_null[i] = value == NULL;
	ks->b_value[i] = value ? CStringGetTextDatum(value) : (Datum) 0;
	MemoryContextSwitchTo(old);
	MemoryContextReset(ks->scratch);

	ks->seq++;
	sink->rows_written++;
	if (ks->nbatch == OUTBOX_BATCH)
		outbox_flush(ks);
}

static void
ks_flush(Sink *sink)
{
	KafkaSink  *ks = (KafkaSink *) sink;

	outbox_flush(ks);
	if (ks->rk)
	{
		rd_kafka_poll(ks->rk, 0);
		poll_logs(ks->log_queue);
	}
}

/*
 * Phase 1, in the epoch's transaction block: the outbox rows and the
 * transaction's row go into the epoch transaction (prepared after us);
 * every message is delivered, not committed.
 */
static void
ks_prepare(Sink *sink, int64 epoch)
{
	KafkaSink  *ks = (KafkaSink *) sink;
	Oid			types[6] = {INT4OID, INT4OID, INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		args[6];

	if (!ks->in_txn)
		return;					/* nothing written in this epoch */
	flush_all(ks, epoch);

	args[0] = Int32GetDatum(ks->def->id);
	args[1] = Int32GetDatum(ks->worker);
	args[2] = Int64GetDatum(epoch);
	args[3] = Int64GetDatum(ks->run);
	args[4] = Int64GetDatum(ks->seq);
	args[5] = Int64GetDatum(marker_end(ks, ks->rk));

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	outbox_flush(ks);
	if (SPI_execute_with_args("INSERT INTO streamflink.kafka_sink_txn"
							  " (pipeline_id, worker, checkpoint_id, run, messages, marker_offset)"
							  " VALUES ($1, $2, $3, $4, $5, $6)",
							  6, types, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record the Kafka transaction of checkpoint " INT64_FORMAT, epoch);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/* Phase 2, after the decision (and the epoch's COMMIT PREPARED). */
static void
ks_commit(Sink *sink, int64 epoch)
{
	KafkaSink  *ks = (KafkaSink *) sink;

	if (!ks->in_txn)
		return;
	produce_marker(ks, epoch, ks->seq);
	flush_all(ks, epoch);
	checkpoint_failpoint("kafka_before_commit");
	txn_call(ks, rd_kafka_commit_transaction, "commit the Kafka transaction", epoch);
	ks->in_txn = false;
	checkpoint_failpoint("kafka_after_commit");
	record_commit(ks, epoch, ks->run, false);
	checkpoint_failpoint("kafka_after_record");
}

/* A prepare failed: drop the transaction (in error cleanup: never raise). */
static void
ks_abort(Sink *sink, int64 epoch)
{
	KafkaSink  *ks = (KafkaSink *) sink;

	ks->nbatch = 0;
	MemoryContextReset(ks->batch_cxt);
	if (ks->in_txn && ks->rk)
	{
		rd_kafka_error_t *error = rd_kafka_abort_transaction(ks->rk, BROKER_TIMEOUT_MS);

		if (error)
			rd_kafka_error_destroy(error);
	}
	ks->in_txn = false;
}

/* Send the outbox rows of a checkpoint again, in a new transaction. */
static void
resend(KafkaSink *ks, int64 checkpoint)
{
	Datum		args[4] = {Int32GetDatum(ks->def->id), Int32GetDatum(ks->worker),
	Int64GetDatum(checkpoint), Int64GetDatum(ks->run)};
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "kafka sink resend",
											  ALLOCSET_DEFAULT_SIZES);
	int64		n = 0;
	RunAs		as;
	int			ret;
	SPITupleTable *tuptable;
	int64		marker_from = marker_end(ks, ks->rk);
	Oid			t_out[2] = {INT8OID, INT4OID};
	Datum		a_out[2] = {Int64GetDatum(checkpoint), Int32GetDatum(ks->worker)};

	/*
	 * First the txn row names this run and where its marker will be: a
	 * crash during the resend is then settled by this run's marker.
	 */
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	{
		Oid			t5[5] = {INT4OID, INT4OID, INT8OID, INT8OID, INT8OID};
		Datum		a5[5] = {args[0], args[1], args[2], args[3], Int64GetDatum(marker_from)};

		if (SPI_execute_with_args("UPDATE streamflink.kafka_sink_txn SET run = $4, marker_offset = $5"
								  " WHERE pipeline_id = $1 AND worker = $2 AND checkpoint_id = $3",
								  5, t5, a5, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update streamflink.kafka_sink_txn");
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	run_as_role(ks->def->owner, &as);
	ret = SPI_execute_with_args(psprintf("SELECT b.first_seq + u.ord - 1, u.o, u.k, u.v FROM %s b,"
										 " ROWS FROM (pg_catalog.unnest(b.output), pg_catalog.unnest(b.key),"
										 "            pg_catalog.unnest(b.value)) WITH ORDINALITY AS u(o, k, v, ord)"
										 " WHERE b.checkpoint_id = $1 AND b.worker = $2"
										 " ORDER BY b.first_seq, u.ord", ks->outbox),
								2, t_out, a_out, NULL, true, 0);
	run_as_restore(&as);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the Kafka sink's outbox %s", ks->outbox);
	tuptable = SPI_tuptable;

	ks->epoch = checkpoint;
	begin_txn(ks);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = tuptable->vals[i];
		TupleDesc	desc = tuptable->tupdesc;
		bool		isnull;
		int64		seq = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		MemoryContext old = MemoryContextSwitchTo(cxt);

		produce(ks, ks->def->sink_topic, RD_KAFKA_PARTITION_UA, SPI_getvalue(tup, desc, 2),
				checkpoint, seq, SPI_getvalue(tup, desc, 3), SPI_getvalue(tup, desc, 4));
		MemoryContextSwitchTo(old);
		MemoryContextReset(cxt);
		n++;
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	flush_all(ks, checkpoint);
	produce_marker(ks, checkpoint, n);
	flush_all(ks, checkpoint);
	checkpoint_failpoint("kafka_before_commit");
	txn_call(ks, rd_kafka_commit_transaction, "commit the Kafka transaction", checkpoint);
	ks->in_txn = false;
	checkpoint_failpoint("kafka_after_commit");
	record_commit(ks, checkpoint, ks->run, true);
	checkpoint_failpoint("kafka_after_record");
	MemoryContextDelete(cxt);
	ereport(LOG,
			(errmsg("streamflink pipeline \"%s\" task %d: checkpoint " INT64_FORMAT " was not committed to Kafka; sent its " INT64_FORMAT " messages again (run " INT64_FORMAT ")",
					ks->def->name, ks->worker, checkpoint, n, ks->run)));
}

/*
 * At start, after the epoch transaction's recovery (in-doubt prepared
 * transactions are committed or rolled back, so the txn rows visible are
 * exactly those of decided checkpoints): fence the previous producer, take
 * a new run, and settle every transaction not recorded as committed.
 */
static void
ks_recover(Sink *sink, int64 last_completed)
{
	KafkaSink  *ks = (KafkaSink *) sink;
	Oid			types[3] = {INT4OID, INT4OID, TEXTOID};
	Datum		args[3] = {Int32GetDatum(ks->def->id), Int32GetDatum(ks->worker),
	CStringGetTextDatum(ks->txid)};
	bool		isnull;
	int			npending;
	int64	   *pending;
	int64	   *pending_run;
	int64	   *pending_from;

	/* The options were checked at creation; again for the owner now. */
	StartTransactionCommand();
	kafka_sink_check(ks->def->sink_brokers, ks->def->sink_topic, ks->def->sink_format,
					 ks->def->sink_options, ks->def->checkpoint_interval,
					 superuser_arg(ks->def->owner));
	CommitTransactionCommand();

	if (ks->rk == NULL)
		create_producer(ks);
	txn_call(ks, rd_kafka_init_transactions, "initialise the transactional producer", last_completed);

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args("INSERT INTO streamflink.kafka_sink_run AS r"
							  " (pipeline_id, worker, run, transactional_id) VALUES ($1, $2, 1, $3)"
							  " ON CONFLICT (pipeline_id, worker)"
							  " DO UPDATE SET run = r.run + 1, transactional_id = $3"
							  " RETURNING run", 3, types, args, NULL, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not record the Kafka sink's run");
	ks->run = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (SPI_execute_with_args("SELECT checkpoint_id, run, marker_offset FROM streamflink.kafka_sink_txn"
							  " WHERE pipeline_id = $1 AND worker = $2 AND committed IS NULL"
							  " ORDER BY checkpoint_id", 2, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read streamflink.kafka_sink_txn");
	npending = (int) SPI_processed;
	pending = MemoryContextAlloc(TopTransactionContext, sizeof(int64) * (npending + 1));
	pending_run = MemoryContextAlloc(TopTransactionContext, sizeof(int64) * (npending + 1));
	pending_from = MemoryContextAlloc(TopTransactionContext, sizeof(int64) * (npending + 1));
	for (int i = 0; i < npending; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		pending[i] = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		pending_run[i] = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		pending_from[i] = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	}
	{
		MemoryContext old = MemoryContextSwitchTo(ks->cxt);
		int64	   *copy = palloc(sizeof(int64) * 3 * (npending + 1));

		memcpy(copy, pending, sizeof(int64) * npending);
		memcpy(copy + npending, pending_run, sizeof(int64) * npending);
		memcpy(copy + 2 * npending, pending_from, sizeof(int64) * npending);
		pending = copy;
		pending_run = copy + npending;
		pending_from = copy + 2 * npending;
		MemoryContextSwitchTo(old);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	for (int i = 0; i < npending; i++)
	{
		if (marker_committed(ks, pending[i], pending_run[i], pending_from[i]))
		{
			record_commit(ks, pending[i], pending_run[i], false);
			ereport(LOG,
					(errmsg("streamflink pipeline \"%s\" task %d: checkpoint " INT64_FORMAT " was committed to Kafka (run " INT64_FORMAT "); recorded",
							ks->def->name, ks->worker, pending[i], pending_run[i])));
		}
		else
			resend(ks, pending[i]);
	}
	pfree(pending);
}

static void
ks_destroy(Sink *sink)
{
	KafkaSink  *ks = (KafkaSink *) sink;

	kafka_sink_exit(0, (Datum) 0);
	if (sink_for_exit == ks)
		sink_for_exit = NULL;
	MemoryContextDelete(ks->cxt);
}

static const SinkMethods kafka_sink_methods = {
	.open_output = ks_open_output,
	.begin_epoch = ks_begin_epoch,
	.write = ks_write,
	.flush = ks_flush,
	.prepare = ks_prepare,
	.commit = ks_commit,
	.abort = ks_abort,
	.recover = ks_recover,
	.destroy = ks_destroy,
};

Sink *
kafka_sink_create(Oid dboid, PipelineDef *def, int worker)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink Kafka sink",
											  ALLOCSET_DEFAULT_SIZES);
	KafkaSink  *ks = MemoryContextAllocZero(cxt, sizeof(KafkaSink));
	MemoryContext old = MemoryContextSwitchTo(cxt);

	ks->sink.methods = &kafka_sink_methods;
	ks->cxt = cxt;
	ks->scratch = AllocSetContextCreate(cxt, "Kafka sink row", ALLOCSET_DEFAULT_SIZES);
	ks->batch_cxt = AllocSetContextCreate(cxt, "Kafka sink outbox batch", ALLOCSET_DEFAULT_SIZES);
	ks->dboid = dboid;
	ks->def = def;
	ks->worker = worker;
	ks->txid = psprintf("streamflink-" UINT64_FORMAT "-%u-%d-%d",
						GetSystemIdentifier(), dboid, def->id, worker);
	ks->marker_topic = psprintf("%s.markers", def->sink_topic);
	ks->outbox = quote_qualified_identifier(get_namespace_name(get_rel_namespace(def->sink_relid)),
											get_rel_name(def->sink_relid));
	ks->txn_timeout_ms = txn_timeout_of(def->sink_options);
	MemoryContextSwitchTo(old);

	sink_for_exit = ks;
	before_shmem_exit(kafka_sink_exit, (Datum) 0);
	return &ks->sink;
}

/* --- reading a topic back (tests, audits) -------------------------------- */

PG_FUNCTION_INFO_V1(streamflink_read_topic);

/*
 * streamflink._read_topic(brokers, topic, timeout_ms): every message of
 * every partition of a topic, from its start to its end when called, with
 * its key, value and headers (jsonb).  Reads committed messages only on a
 * broker that honours isolation.level (the test broker shows all).
 * Superusers only (it connects from the server to any broker).
 */
Datum
streamflink_read_topic(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *brokers = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *topic = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int			timeout_ms = PG_GETARG_INT32(2);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_queue_t *logq;
	char		errstr[512];
	sigset_t	saved;
	char	   *error = NULL;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read topics from the server")));
	InitMaterializedSRF(fcinfo, 0);

	conf_set(conf, "bootstrap.servers", brokers);
	conf_set(conf, "group.id", "streamflink-read-topic");
	conf_set(conf, "isolation.level", "read_committed");
	conf_set(conf, "enable.auto.commit", "false");
	conf_set(conf, "enable.partition.eof", "true");
	conf_set(conf, "fetch.wait.max.ms", "10");
	conf_set(conf, "log.queue", "true");
	thread_signals_block(&saved);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	thread_signals_restore(&saved);
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR, (errmsg("could not create Kafka consumer: %s", errstr)));
	}
	logq = rd_kafka_queue_new(rk);
	rd_kafka_set_log_queue(rk, logq);
	rd_kafka_poll_set_consumer(rk);

	PG_TRY();
	{
		const struct rd_kafka_metadata *md = NULL;
		rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
		rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
		int			nparts = 0;
		int64	   *ends = NULL;
		int			open = 0;
		TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

		rd_kafka_topic_destroy(rkt);
		if (err || md->topic_cnt != 1 || md->topics[0].err)
			error = psprintf("no metadata for topic \"%s\": %s", topic,
							 rd_kafka_err2str(err ? err : md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
		else
		{
			rd_kafka_topic_partition_list_t *parts;

			nparts = md->topics[0].partition_cnt;
			ends = palloc0(sizeof(int64) * Max(nparts, 1));
			parts = rd_kafka_topic_partition_list_new(Max(nparts, 1));
			for (int p = 0; p < nparts && error == NULL; p++)
			{
				int64_t		lo,
							hi;

				if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, timeout_ms))
					error = "could not query watermarks";
				ends[p] = hi;
				if (hi > lo)
				{
					rd_kafka_topic_partition_list_add(parts, topic, p)->offset = lo;
					open++;
				}
			}
			if (error == NULL && open > 0 && rd_kafka_assign(rk, parts))
				error = "could not assign partitions";
			rd_kafka_topic_partition_list_destroy(parts);
		}
		if (md)
			rd_kafka_metadata_destroy(md);

		while (error == NULL && open > 0)
		{
			rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);

			poll_logs(logq);
			CHECK_FOR_INTERRUPTS();
			if (GetCurrentTimestamp() > deadline)
				error = "timed out";
			if (m == NULL)
				continue;
			if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			{
				if (m->offset >= ends[m->partition] && ends[m->partition] >= 0)
				{
					ends[m->partition] = -1;
					open--;
				}
			}
			else if (m->err)
				error = pstrdup(rd_kafka_message_errstr(m));
			else if (ends[m->partition] >= 0 && m->offset < ends[m->partition])
			{
				Datum		values[5];
				bool		nulls[5] = {0};
				rd_kafka_headers_t *h;
				StringInfoData js;

				values[0] = Int32GetDatum(m->partition);
				values[1] = Int64GetDatum(m->offset);
				if (m->key)
					values[2] = PointerGetDatum(cstring_to_text_with_len(m->key, m->key_len));
				else
					nulls[2] = true;
				if (m->payload)
					values[3] = PointerGetDatum(cstring_to_text_with_len(m->payload, m->len));
				else
					nulls[3] = true;
				initStringInfo(&js);
				appendStringInfoChar(&js, '{');
				if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
				{
					const char *name;
					const void *v;
					size_t		len;

					for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
					{
						if (i > 0)
							appendStringInfoString(&js, ", ");
						escape_json(&js, name);
						appendStringInfoString(&js, ": ");
						escape_json(&js, v ? pnstrdup(v, len) : "");
					}
				}
				appendStringInfoChar(&js, '}');
				values[4] = DirectFunctionCall1(jsonb_in, CStringGetDatum(js.data));
				tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
				if (m->offset + 1 >= ends[m->partition])
				{
					ends[m->partition] = -1;
					open--;
				}
			}
			rd_kafka_message_destroy(m);
		}
	}
	PG_CATCH();
	{
		destroy_handle(rk, logq);
		PG_RE_THROW();
	}
	PG_END_TRY();
	destroy_handle(rk, logq);
	if (error)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not read topic \"%s\": %s", topic, error)));
	return (Datum) 0;
}
