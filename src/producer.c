/*-------------------------------------------------------------------------
 *
 * producer.c
 *	  streamflink.produce(): send messages to a Kafka topic from SQL.
 *
 * For tests, demos and backfills: one short-lived producer per call.  The
 * delivery callback runs inside rd_kafka_poll/flush on this thread and
 * only counts, so no Postgres function runs on a librdkafka thread.
 *
 * Who may produce: it opens connections from the server to any address,
 * so superusers, and other roles only to the brokers a superuser listed in
 * streamflink.produce_allowed_brokers.  Waiting for deliveries is done in
 * short polls with CHECK_FOR_INTERRUPTS between them, so a cancel or
 * statement_timeout ends the call; the producer is then purged and
 * destroyed before the error propagates, so no librdkafka thread outlives
 * the call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>

#include <librdkafka/rdkafka.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/timestamp.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "producer.h"

PG_FUNCTION_INFO_V1(streamflink_produce);

/* Brokers non-superusers may produce to: "host:port, host:port". */
static char *produce_allowed_brokers = NULL;

void
producer_define_settings(void)
{
	DefineCustomStringVariable("streamflink.produce_allowed_brokers",
							   "Brokers that roles other than superusers may send to with streamflink.produce().",
							   "A comma-separated list of host:port, matched exactly against each "
							   "broker the caller names; empty: produce() is for superusers only.",
							   &produce_allowed_brokers, "",
							   PGC_SUSET, GUC_LIST_INPUT, NULL, NULL, NULL);
}

/* Is every broker of the comma-separated list in the allowed list? */
static bool
brokers_allowed(const char *brokers)
{
	char	   *allowed_copy = pstrdup(produce_allowed_brokers ? produce_allowed_brokers : "");
	char	   *wanted_copy = pstrdup(brokers);
	List	   *allowed;
	List	   *wanted;
	ListCell   *lc;

	if (!SplitGUCList(allowed_copy, ',', &allowed) ||
		!SplitGUCList(wanted_copy, ',', &wanted) || wanted == NIL)
		return false;
	foreach(lc, wanted)
	{
		char	   *w = (char *) lfirst(lc);
		bool		found = false;
		ListCell   *lc2;

		foreach(lc2, allowed)
			if (pg_strcasecmp(w, (char *) lfirst(lc2)) == 0)
				found = true;
		if (!found)
			return false;
	}
	return true;
}

typedef struct DeliveryCount
{
	int64		ok;
	int64		failed;
	rd_kafka_resp_err_t first_error;
} DeliveryCount;

static void
delivery_report(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	DeliveryCount *dc = (DeliveryCount *) opaque;

	if (msg->err)
	{
		if (dc->failed++ == 0)
			dc->first_error = msg->err;
	}
	else
		dc->ok++;
}

Datum
streamflink_produce(PG_FUNCTION_ARGS)
{
	char	   *brokers = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *topic = text_to_cstring(PG_GETARG_TEXT_PP(1));
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(2);
	int32		partition = PG_GETARG_INT32(3);
	Datum	   *elems;
	bool	   *enulls;
	int			nelems;
	char		errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	DeliveryCount dc = {0, 0, RD_KAFKA_RESP_ERR_NO_ERROR};
	sigset_t	all,
				old;

	if (!superuser() && !brokers_allowed(brokers))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to produce to brokers \"%s\"", brokers),
				 errdetail("produce() connects from the server to the brokers named."),
				 errhint("Only superusers may produce, except to the brokers a superuser lists in streamflink.produce_allowed_brokers.")));

	/* text[] or bytea[]: both varlena, sent as they are */
	deconstruct_array(arr, ARR_ELEMTYPE(arr), -1, false, TYPALIGN_INT, &elems, &enulls, &nelems);
	if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "message.timeout.ms", "30000", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Kafka producer setting: %s", errstr)));
	}
	rd_kafka_conf_set_dr_msg_cb(conf, delivery_report);
	rd_kafka_conf_set_opaque(conf, &dc);

	/* librdkafka's threads must not take Postgres' signals. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rk == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not create Kafka producer: %s", errstr)));
	rkt = rd_kafka_topic_new(rk, topic, NULL);

	PG_TRY();
	{
		TimestampTz deadline;

		for (int i = 0; i < nelems; i++)
		{
			text	   *t;

			if (enulls[i])
				continue;
			t = DatumGetTextPP(elems[i]);
			while (rd_kafka_produce(rkt, partition < 0 ? RD_KAFKA_PARTITION_UA : partition,
									RD_KAFKA_MSG_F_COPY, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
									NULL, 0, NULL) != 0)
			{
				rd_kafka_resp_err_t err = rd_kafka_last_error();

				if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
					ereport(ERROR,
							(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
							 errmsg("could not produce to topic \"%s\": %s", topic, rd_kafka_err2str(err))));
				rd_kafka_poll(rk, 100);
				CHECK_FOR_INTERRUPTS();
			}
			rd_kafka_poll(rk, 0);
		}

		/*
		 * Wait for the deliveries in short steps: message.timeout.ms bounds
		 * the wait, and a cancel or statement_timeout ends it sooner.
		 */
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 31000);
		while (rd_kafka_outq_len(rk) > 0 && GetCurrentTimestamp() < deadline)
		{
			rd_kafka_flush(rk, 100);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		/* Drop what is unsent so that the destroy does not wait for it. */
		rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_topic_destroy(rkt);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		rd_kafka_destroy(rk);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		PG_RE_THROW();
	}
	PG_END_TRY();
	rd_kafka_topic_destroy(rkt);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	rd_kafka_destroy(rk);
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	if (dc.failed > 0 || dc.ok + dc.failed < nelems)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not deliver %lld of %d messages to topic \"%s\": %s",
						(long long) (nelems - dc.ok), nelems, topic,
						dc.failed ? rd_kafka_err2str(dc.first_error) : "timed out"),
				 errhint("Check that the brokers are reachable and the topic exists.")));
	PG_RETURN_INT64(dc.ok);
}
