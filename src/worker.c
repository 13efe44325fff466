/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background worker that runs one pipeline.
 *
 * Start-up: resolve in-doubt transactions, restore state from the last
 * completed checkpoint, seek Kafka to its positions.  Then, in a loop:
 * take a batch of messages, decode them (bad ones to the dead-letter
 * table), track per-partition watermarks, feed the pipeline's operator
 * (windows or CEP, see operator.h), let it fire what the pipeline
 * watermark passed, and checkpoint every checkpoint_interval.
 *
 * The worker connects as the bootstrap superuser (it writes the extension's
 * tables and drives 2PC) with search_path fixed to pg_catalog, pg_temp;
 * decoding, the operator and sink writes run the pipeline owner's code and
 * run as the owner (run_as.h).
 *
 * Everything the worker writes goes into its open epoch transaction (see
 * checkpoint.h).  Any error ends the worker; the postmaster starts it again
 * (bgw_restart_time) and it recovers from its last checkpoint, which is also
 * what happens after a crash.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "access/twophase.h"
#include "access/xact.h"
#include "common/relpath.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "catalog.h"
#include "checkpoint.h"
#include "decode.h"
#include "kafka_sink.h"
#include "kafka_source.h"
#include "live.h"
#include "pg_sink.h"
#include "side_output.h"
#include "sink.h"
#include "slot.h"
#include "start_position.h"
#include "state.h"
#include "state_tuning.h"
#include "operator_factory.h"
#include "poison.h"
#include "run_as.h"
#include "savepoint.h"
#include "watermark.h"
#include "worker.h"

PGDLLEXPORT void streamflink_worker_main(Datum arg);

/* streamflink.batch_size */
static int	batch_size = 5000;

#define UNIX_EPOCH_TS (-((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE)) * USECS_PER_DAY)

typedef WatermarkPartition PartitionState;

typedef struct Worker
{
	Oid			dboid;
	PipelineDef *def;
	WorkerSlot *slot;
	char	   *dir;
	Poison	   *poison;		/* see poison.h */
	StateStore *store;
	KafkaSource *src;
	Decoder    *decoder;
	TupleDesc	event_desc;
	TupleTableSlot *event;
	Sink	   *sink;
	SideOutput *side;			/* dead letters, late events */
	Operator   *op;
	CheckpointCoordinator *coord;
	StateParticipant state;		/* the operator state, as a participant */
	SavepointParticipant savepoint; /* savepoints, as a participant */
	bool		recovering;		/* in checkpoint_recover (see the error path) */
	int			nparts;
	PartitionState *parts;
	PartitionPosition *positions;	/* scratch for checkpoints */
	TimestampTz watermark;
	int64		checkpoint_id;	/* last completed */
	EpochStats stats;		/* of the epoch in progress */
	bool		advanced;		/* the watermark moved in this epoch */
	MemoryContext msg_cxt;
	KafkaMessage *batch;
	/* progress reporting */
	int64		events_total;
	int64		dead_total;
	int64		late_total;
	int64		rows_total;
	TimestampTz rate_since;
	int64		rate_events;
	TimestampTz metrics_at;		/* state metrics last published */
	TimestampTz next_discovery;	/* next look for partitions added to the topic */
} Worker;

static volatile sig_atomic_t got_stop = false;
static Worker *worker_for_exit = NULL;

void
worker_define_settings(void)
{
	DefineCustomIntVariable("streamflink.batch_size",
							"Kafka messages a worker takes in one batch.",
							NULL,
							&batch_size, 5000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/*
 * SIGTERM.  A stop requested by streamflink.stop() (the slot says so
 * before the signal is sent) is ours to finish: the loop ends it with a
 * checkpoint and exits 0, so the worker is not restarted.  Any other
 * SIGTERM (server shutdown, pg_terminate_backend) gets Postgres' own
 * semantics, die(): the next CHECK_FOR_INTERRUPTS ends the worker, and
 * recovery starts from the last checkpoint.
 */
static void
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;
	Worker	   *w = worker_for_exit;

	if (w != NULL && w->slot != NULL && w->slot->stop_requested)
	{
		/* A stop: the loop ends with a checkpoint, unless a step is stuck. */
		got_stop = true;
		sf_termination_requested = true;
		SetLatch(MyLatch);
	}
	else
		die(postgres_signal_arg);
	errno = save_errno;
}

/*
 * A requested stop is graceful: the loop ends it with a checkpoint.  But
 * the loop only sees it between steps, and a step may be the owner's code
 * that never returns (a sink trigger in pg_sleep or an endless loop): the
 * worker would keep its slot, neither stoppable nor droppable by the
 * tenant (only a superuser may signal it).  A timer ticks once a second;
 * STOP_GRACE_TICKS after a stop it cancels whatever runs, as
 * pg_cancel_backend would (statement_timeout's way: SIGINT to ourselves).
 * The error ends the worker without a checkpoint; the next start recovers
 * from the last one.
 */
#define STOP_GRACE_TICKS 5

static volatile sig_atomic_t stop_ticks = 0;

static void
stop_grace_tick(void)
{
	if (got_stop && ++stop_ticks == STOP_GRACE_TICKS)
		kill(MyProcPid, SIGINT);
}

/* Close Kafka and RocksDB (their threads) before the process goes away. */
static void
worker_shmem_exit(int code, Datum arg)
{
	Worker	   *w = worker_for_exit;

	if (w == NULL)
		return;
	if (w->src)
		ksrc_destroy(w->src);
	w->src = NULL;
	if (w->store)
		state_close(w->store);
	w->store = NULL;
	if (w->slot)
		slot_release(w->slot);
	w->slot = NULL;
}

/* Sleep on the latch, reacting to SIGTERM and config reloads. */
static void
worker_sleep(long ms)
{
	int			rc;

	/* outside the epoch (start-up, back-off): flush table statistics */
	if (!IsTransactionOrTransactionBlock())
		pgstat_report_stat(false);
	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
				   ms, PG_WAIT_EXTENSION);

	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

static void
report_progress(Worker *w)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		lag = 0;
	double		secs = (now - w->rate_since) / 1000000.0;

	w->dead_total += side_output_take_dead_letters(w->side);
	w->late_total += side_output_take_late_events(w->side);
	for (int p = 0; p < w->nparts; p++)
	{
		int64		high = ksrc_high_watermark(w->src, p);
		int64		next = w->parts[p].pos.next_offset;

		if (high < 0)
		{
			lag = -1;
			break;
		}
		lag += Max(0, high - Max(next, 0));
	}

	/* RocksDB's own numbers: once a second is plenty (see state.h) */
	if (now - w->metrics_at >= USECS_PER_SEC)
	{
		StateMetrics m;

		state_collect_metrics(w->store, &m);
		SpinLockAcquire(&w->slot->mutex);
		w->slot->state_metrics = m;
		SpinLockRelease(&w->slot->mutex);
		w->metrics_at = now;
	}

	SpinLockAcquire(&w->slot->mutex);
	w->slot->events = w->events_total;
	w->slot->dead_letters = w->dead_total;
	w->slot->late_events = w->late_total;
	w->slot->rows_emitted = w->rows_total;
	w->slot->watermark = w->watermark;
	w->slot->lag = lag;
	w->slot->state_keys = operator_open_count(w->op);
	w->slot->partial_matches_dropped = operator_dropped_count(w->op);
	w->slot->last_checkpoint = w->checkpoint_id;
	if (secs >= 1.0)
	{
		w->slot->events_per_second = w->rate_events / secs;
		w->rate_events = 0;
		w->rate_since = now;
	}
	SpinLockRelease(&w->slot->mutex);
}

/* The pipeline watermark now (see watermark.h). */
static TimestampTz
compute_watermark(Worker *w, TimestampTz now)
{
	return watermark_compute(&w->def->source, w->parts, w->nparts, now, w->watermark);
}

static TimestampTz
event_time(Worker *w, KafkaMessage *msg, const char **error)
{
	int			attno = w->def->source.event_time_attno;

	if (attno < 0)
	{
		if (msg->timestamp_ms < 0)
		{
			*error = "message has no Kafka timestamp";
			return DT_NOBEGIN;
		}
		return UNIX_EPOCH_TS + msg->timestamp_ms * 1000;
	}
	if (w->event->tts_isnull[attno])
	{
		*error = "event time is NULL";
		return DT_NOBEGIN;
	}
	/* timestamp without time zone is taken as UTC */
	if (TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(w->event->tts_values[attno])))
	{
		*error = "event time is not finite";
		return DT_NOBEGIN;
	}
	return DatumGetTimestampTz(w->event->tts_values[attno]);
}

static void
process_message(Worker *w, KafkaMessage *msg)
{
	PartitionState *ps = &w->parts[msg->partition];
	char	   *error = NULL;
	const char *terror = NULL;
	TimestampTz t;
	SfMessagePos pos = {msg->partition, msg->offset};

	w->events_total++;
	w->rate_events++;
	w->stats.events++;
	/* a floor only: the consumer's position replaces it (see take_positions) */
	ps->pos.next_offset = Max(ps->pos.next_offset, msg->offset + 1);

	ExecClearTuple(w->event);
	if (msg->payload == NULL)
		error = "message has no value";
	else
	{
		/* the message's key, headers, partition, offset, timestamp */
		DecodeMeta	meta = {msg->key, msg->key_len, msg->partition, msg->offset,
		msg->timestamp_ms};

		if (decoder_wants_headers(w->decoder))
			meta.nheaders = ksrc_message_headers(msg, &meta.header_names,
												 &meta.header_values, &meta.header_lens);
		if (!decode_kafka_message(w->decoder, msg->payload, msg->len, &meta,
								  w->event->tts_values, w->event->tts_isnull, &error))
			 /* error set */ ;
	}
	if (error == NULL)
	{
		ExecStoreVirtualTuple(w->event);
		t = event_time(w, msg, &terror);
		if (terror)
			error = (char *) terror;
	}
	if (error == NULL)
		error = poison_skip(w->poison, pos);
	if (error)
	{
		side_output_dead_letter(w->side, msg->partition, msg->offset, msg->payload, msg->len, error);
		return;
	}

	watermark_observe(ps, t);

	poison_begin(w->poison, pos);
	if (!operator_process(w->op, w->event, t, w->watermark, pos))
	{
		char	   *reason = operator_late_reason(w->op);

		if (reason == NULL)
			reason = watermark_late_reason(w->def, t, w->watermark);
		side_output_late_event(w->side, msg->partition, msg->offset, t, w->watermark,
							   msg->payload, msg->len, reason);
	}
	poison_end(w->poison);
}

/*
 * The offset of the next message of each partition, as the consumer
 * reports it: on a real broker, transaction markers occupy offsets, and
 * the position steps over them, where the last message's offset + 1 would
 * point at a marker.  Messages handed to us are processed before the next
 * checkpoint, so the position never runs ahead of what the checkpoint
 * covers.  Never below last + 1 (that would replay a message).
 */
static void
take_positions(Worker *w)
{
	int64	   *next = palloc(sizeof(int64) * w->nparts);

	ksrc_positions(w->src, w->nparts, next);
	for (int p = 0; p < w->nparts; p++)
		if (next[p] >= 0)
			w->parts[p].pos.next_offset = Max(w->parts[p].pos.next_offset, next[p]);
	pfree(next);
}

/*
 * Everything up to the current positions: the coordinator takes the
 * checkpoint over its participants (operator state, sink, epoch
 * transaction); the worker only says when, and what the checkpoint
 * covers.
 */
static void
take_checkpoint(Worker *w)
{
	Checkpoint	chk;

	pgstat_report_activity(STATE_RUNNING, "checkpoint");
	take_positions(w);

	memset(&chk, 0, sizeof(chk));
	chk.watermark = w->watermark;
	chk.nparts = w->nparts;
	chk.positions = w->positions;
	for (int p = 0; p < w->nparts; p++)
		w->positions[p] = w->parts[p].pos;
	chk.stats.events = w->stats.events;
	w->checkpoint_id = checkpoint_take(w->coord, &chk);
	w->rows_total += chk.stats.rows_emitted;
	poison_checkpointed(w->poison);

	SpinLockAcquire(&w->slot->mutex);
	w->slot->last_checkpoint = w->checkpoint_id;
	w->slot->last_checkpoint_at = GetCurrentTimestamp();
	w->slot->error[0] = '\0';
	SpinLockRelease(&w->slot->mutex);

	memset(&w->stats, 0, sizeof(w->stats));
	w->advanced = false;
}

/* Wait until the broker answers; report why not in the status view. */
static int
wait_for_partitions(Worker *w)
{
	for (;;)
	{
		char	   *err = NULL;
		int			n = ksrc_partition_count(w->src, 5000, &err);

		ksrc_poll_events(w->src);
		if (n > 0)
			return n;
		slot_set_status(w->slot, SLOT_WAITING_FOR_BROKER, err);
		ereport(LOG,
				(errmsg("streamflink pipeline \"%s\": %s", w->def->name, err ? err : "no partitions")));
		if (got_stop)
			proc_exit(0);
		worker_sleep(5000);
	}
}

static void
worker_startup(Worker *w)
{
	TypeCacheEntry *tce;
	PartitionPosition *pos;
	PartitionPosition *start;

	slot_set_status(w->slot, SLOT_RECOVERING, NULL);
	w->dir = state_pipeline_dir(w->dboid, w->def->id);

	/*
	 * The coordinator and its participants, in the order they prepare: the
	 * operator state, the sink, and last the epoch transaction the others
	 * write into.  The side output and the sink exist before recovery
	 * (recovery is theirs too); the store and the operator after it.
	 */
	w->coord = checkpoint_coordinator_create(w->dboid, w->def);
	w->state.dir = w->dir;
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		CheckpointParticipant p;

		/* A catalog the library cannot write: refused (see the error path). */
		w->recovering = true;
		checkpoint_check_catalog_version();
		w->recovering = false;

		w->side = side_output_create(w->def);
		/* a Kafka sink when the pipeline names a topic (kafka_sink.h) */
		w->sink = w->def->sink_topic ? kafka_sink_create(w->dboid, w->def, 0) :
			pg_sink_create(w->side);
		p = checkpoint_state_participant(&w->state);
		checkpoint_register(w->coord, &p);
		p = checkpoint_sink_participant(w->sink);
		checkpoint_register(w->coord, &p);
		p = savepoint_participant(&w->savepoint, w->dir, w->def, w->slot);
		checkpoint_register(w->coord, &p);
		p = checkpoint_epoch_participant(w->dboid, w->def);
		checkpoint_register(w->coord, &p);
		MemoryContextSwitchTo(old);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	/*
	 * Prepared transactions of a crashed run first (they hold locks), then
	 * the state of the last completed checkpoint.
	 */
	w->recovering = true;
	savepoint_prepare_restore(w->dboid, w->def, w->dir);
	w->checkpoint_id = checkpoint_recover(w->coord);
	w->recovering = false;
	savepoint_remove_orphans(w->def, w->dir);

	/*
	 * Whatever the pipeline refers to by OID (owner, row type, tables) may
	 * have been dropped while it was stopped: a clear error then, which the
	 * status view shows, not a crash.
	 */
	StartTransactionCommand();
	catalog_check_pipeline(w->def);
	CommitTransactionCommand();
	run_as_set_owner(w->def->owner);

	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		w->poison = poison_open(w->dir);
		MemoryContextSwitchTo(old);
	}

	/*
	 * The crash restart or immediate shutdown that started us again also
	 * ended every backend reading live(): their secondaries would stay until
	 * someone calls live() for this pipeline again.
	 */
	live_remove_stale(w->dir);

	/*
	 * The options were checked at create_source; check them again against
	 * the source's owner now, in case the catalog row was changed since.
	 */
	StartTransactionCommand();
	ksrc_check_options(w->def->source.options, superuser_arg(w->def->source.owner));
	CommitTransactionCommand();
	w->src = ksrc_create(w->def->source.brokers, w->def->source.topic,
						 psprintf("streamflink-%u-%d", w->dboid, w->def->id),
						 w->def->source.options);
	w->nparts = wait_for_partitions(w);
	slot_set_status(w->slot, SLOT_RECOVERING, NULL);

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pos = MemoryContextAlloc(TopMemoryContext, sizeof(PartitionPosition) * w->nparts);
	checkpoint_positions(w->coord, w->nparts, pos);
	PopActiveSnapshot();
	CommitTransactionCommand();

	/*
	 * Partitions without a checkpointed position: where they start (their
	 * position stays unknown until read, as before; the start is recorded).
	 */
	start = MemoryContextAlloc(TopMemoryContext, sizeof(PartitionPosition) * w->nparts);
	memcpy(start, pos, sizeof(PartitionPosition) * w->nparts);
	{
		int32	   *ids = palloc(sizeof(int32) * w->nparts);

		for (int p = 0; p < w->nparts; p++)
			ids[p] = p;
		start_positions_apply(w->def, w->src, w->checkpoint_id, w->nparts, ids, start);
	}

	/*
	 * RocksDB tuning, checked again for the owner (and against the memory
	 * budget as it is now, see state_tuning.h).
	 */
	{
		StateTuning tuning;

		StartTransactionCommand();
		state_tuning_resolve(w->def->state_profile, w->def->state_options,
							 superuser_arg(w->def->owner), true, w->def->name, &tuning);
		CommitTransactionCommand();
		w->store = state_open_tuned(checkpoint_db_dir(w->dir), &tuning);
	}
	w->state.store = w->store;

	w->parts = MemoryContextAllocZero(TopMemoryContext, sizeof(PartitionState) * w->nparts);
	w->positions = MemoryContextAllocZero(TopMemoryContext, sizeof(PartitionPosition) * w->nparts);
	{
		int64	   *offsets = palloc(sizeof(int64) * w->nparts);
		TimestampTz now = GetCurrentTimestamp();

		for (int p = 0; p < w->nparts; p++)
		{
			w->parts[p].pos = pos[p];
			w->parts[p].last_message = now;
			offsets[p] = start[p].next_offset >= 0 ? start[p].next_offset : KSRC_OFFSET_BEGINNING;
		}
		ksrc_assign(w->src, w->nparts, offsets);
	}
	/* The watermark the last completed checkpoint recorded. */
	w->watermark = checkpoint_last_completed(w->coord)->watermark;

	/*
	 * Decoder and operator, over the source's row type, built as the owner:
	 * building looks up and plans the owner's analysed expressions, and
	 * opens the operator's sink outputs.
	 */
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		RunAs		as;

		run_as_owner(&as);

		tce = lookup_type_cache(w->def->source.row_type, TYPECACHE_TUPDESC);
		w->event_desc = CreateTupleDescCopy(tce->tupDesc);
		w->decoder = decoder_create_for_source(&w->def->source, w->event_desc);
		w->event = MakeSingleTupleTableSlot(w->event_desc, &TTSOpsVirtual);
		w->op = operator_create(w->def, w->store, w->sink, w->side, w->event_desc,
								w->poison);
		w->state.op = w->op;
		w->batch = palloc(sizeof(KafkaMessage) * Max(batch_size, 1));
		w->msg_cxt = AllocSetContextCreate(TopMemoryContext, "streamflink message",
										   ALLOCSET_DEFAULT_SIZES);
		run_as_restore(&as);
		MemoryContextSwitchTo(old);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	ereport(LOG,
			(errmsg("streamflink pipeline \"%s\" started from checkpoint " INT64_FORMAT " on %d partitions",
					w->def->name, w->checkpoint_id, w->nparts)));
}

/*
 * Partitions added to the topic since the worker started: read from their
 * beginning, recorded with the epoch (see start_position.h).  A broker that
 * does not answer is asked again next time.
 */
static void
discover_partitions(Worker *w, TimestampTz now)
{
	int32	   *ids;
	char	   *err = NULL;
	int			n;
	int			nnew;
	int64	   *offsets;

	w->next_discovery = now + (int64) ksrc_partition_discovery_ms * 1000;
	n = ksrc_list_partitions(w->src, 1000, &ids, &err);
	ksrc_poll_events(w->src);
	if (n <= w->nparts)
		return;
	nnew = n - w->nparts;
	offsets = palloc(sizeof(int64) * nnew);

	pgstat_report_activity(STATE_RUNNING, "adding partitions");
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	start_positions_added(w->def, w->src, nnew, ids + w->nparts, offsets);
	PopActiveSnapshot();
	CommitTransactionCommand();

	w->parts = repalloc(w->parts, sizeof(PartitionState) * n);
	w->positions = repalloc(w->positions, sizeof(PartitionPosition) * n);
	for (int i = 0; i < nnew; i++)
	{
		PartitionState *ps = &w->parts[w->nparts + i];

		/* unknown until read, as at the start; where it starts is recorded */
		memset(ps, 0, sizeof(*ps));
		ps->pos.next_offset = -1;
		ps->pos.max_event_time = DT_NOBEGIN;
		ps->last_message = now;
	}
	ksrc_assign_more(w->src, nnew, ids + w->nparts, offsets);
	w->nparts = n;
}

static void
worker_loop(Worker *w)
{
	TimestampTz next_checkpoint;
	TimestampTz last_report = 0;

	w->rate_since = GetCurrentTimestamp();
	memset(&w->stats, 0, sizeof(w->stats));
	w->stats.started = GetCurrentTimestamp();
	next_checkpoint = w->stats.started + w->def->checkpoint_interval;
	slot_set_status(w->slot, SLOT_RUNNING, NULL);
	checkpoint_begin_epoch(w->coord);

	for (;;)
	{
		char	   *err = NULL;
		int			n;
		TimestampTz now;
		TimestampTz wm;

		CHECK_FOR_INTERRUPTS();
		/* cheap on Linux: a flag set by the parent-death signal */
		if (!PostmasterIsAlive())
			proc_exit(1);
		if (got_stop)
		{
			/* A requested stop ends with a checkpoint: nothing is left behind. */
			if (w->stats.events > 0 || w->advanced)
				take_checkpoint(w);
			AbortOutOfAnyTransaction();
			ereport(LOG, (errmsg("streamflink pipeline \"%s\" stopped", w->def->name)));
			proc_exit(0);
		}
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* A savepoint is a checkpoint now, events or not (savepoint.h). */
		if (savepoint_requested(&w->savepoint, w->slot))
		{
			take_checkpoint(w);
			savepoint_taken(&w->savepoint, w->slot, w->checkpoint_id);
		}
		if (savepoint_paused(&w->savepoint))
		{
			/* after a stop's savepoint: nothing more until the stop */
			worker_sleep(20);
			continue;
		}

		/*
		 * Never block in librdkafka: take what is there, and if nothing is,
		 * wait on the latch and on the queue's wake-up pipe, which also
		 * notices SIGTERM and the postmaster's death.  The pipe is emptied
		 * before consuming: a byte written after that means new messages.
		 */
		ksrc_clear_wakeup(w->src);
		n = ksrc_consume(w->src, w->batch, Min(batch_size, 1000000), 0, &err);
		ksrc_poll_events(w->src);
		if (n < 0)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("streamflink pipeline \"%s\": %s", w->def->name, err)));
		if (n == 0)
		{
			int			fd = ksrc_wakeup_fd(w->src);
			int			rc;

			/* the epoch transaction stays open */
			pgstat_report_activity(STATE_IDLEINTRANSACTION, NULL);
			if (fd >= 0)
				rc = WaitLatchOrSocket(MyLatch,
									   WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT |
									   WL_EXIT_ON_PM_DEATH,
									   fd, 100, PG_WAIT_EXTENSION);
			else
				rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   10, PG_WAIT_EXTENSION);
			if (rc & WL_LATCH_SET)
				ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		now = GetCurrentTimestamp();

		if (n > 0)
		{
			RunAs		as;

			pgstat_report_activity(STATE_RUNNING, "processing messages");
			StartTransactionCommand();
			SPI_connect();
			PushActiveSnapshot(GetTransactionSnapshot());
			/* Decoding and the operator run the owner's code (run_as.h). */
			run_as_owner(&as);
			for (int i = 0; i < n; i++)
			{
				MemoryContext old = MemoryContextSwitchTo(w->msg_cxt);

				w->parts[w->batch[i].partition].last_message = now;
				process_message(w, &w->batch[i]);
				MemoryContextSwitchTo(old);
				MemoryContextReset(w->msg_cxt);
				operator_maybe_flush(w->op);
			}
			sink_flush(w->sink);
			run_as_restore(&as);
			PopActiveSnapshot();
			SPI_finish();
			CommitTransactionCommand();
			take_positions(w);
		}

		if (ksrc_partition_discovery_ms > 0 && now >= w->next_discovery)
			discover_partitions(w, now);

		wm = compute_watermark(w, now);
		if (wm > w->watermark)
		{
			RunAs		as;

			w->watermark = wm;
			pgstat_report_activity(STATE_RUNNING, "firing windows");
			StartTransactionCommand();
			SPI_connect();
			PushActiveSnapshot(GetTransactionSnapshot());
			run_as_owner(&as);
			operator_advance(w->op, wm);
			w->advanced = true;
			sink_flush(w->sink);
			run_as_restore(&as);
			PopActiveSnapshot();
			SPI_finish();
			CommitTransactionCommand();
		}

		if (now >= next_checkpoint)
		{
			/*
			 * An epoch with no events still needs its checkpoint if the
			 * watermark moved: firing wrote rows and changed state.
			 */
			if (w->stats.events > 0 || w->advanced)
				take_checkpoint(w);
			next_checkpoint = now + w->def->checkpoint_interval;
		}
		if (now - last_report >= 200 * 1000)
		{
			report_progress(w);
			last_report = now;
		}
	}
}

/* Reload the definition; NULL if the pipeline was dropped. */
static PipelineDef *
load_definition(int32 pipeline_id)
{
	PipelineDef *def;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		def = catalog_load_pipeline(pipeline_id, NULL);
		MemoryContextSwitchTo(old);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	return def;
}

/*
 * A slot of our own.  With every slot in use (more pipelines running than
 * streamflink.max_workers), wait for one, checking now and then that the
 * pipeline is still meant to run; streamflink.pipelines shows the wait
 * (status "waiting for a worker slot").  Exits if another worker already
 * runs the pipeline.
 */
static void
claim_slot(Worker *w, int32 pipeline_id)
{
	for (int tries = 0;; tries++)
	{
		bool		taken = false;

		w->slot = slot_claim(w->dboid, pipeline_id, &taken);
		if (w->slot != NULL)
			return;
		if (taken)
		{
			ereport(LOG,
					(errmsg("streamflink pipeline %d already has a worker", pipeline_id)));
			proc_exit(0);
		}
		if (tries == 0)
			ereport(LOG,
					(errmsg("streamflink pipeline \"%s\" is waiting for a worker slot", w->def->name),
					 errhint("Raise streamflink.max_workers (currently %d) and restart the server, or stop a pipeline.",
							 slot_count())));
		pgstat_report_activity(STATE_IDLE, "waiting for a worker slot");
		worker_sleep(1000);
		if (tries % 5 == 4)
		{
			w->def = load_definition(pipeline_id);
			if (w->def == NULL || !w->def->running)
				proc_exit(0);
		}
	}
}

void
streamflink_worker_main(Datum arg)
{
	int32		pipeline_id = DatumGetInt32(arg);
	Worker	   *w;
	Oid			dboid;
	Oid			spcoid;
	TransactionId starter;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	memcpy(&starter, MyBgworkerEntry->bgw_extra + sizeof(Oid), sizeof(TransactionId));
	memcpy(&spcoid, MyBgworkerEntry->bgw_extra + sizeof(Oid) + sizeof(TransactionId), sizeof(Oid));

	/* See worker_sigterm: a requested stop, or Postgres' die(). */
	pqsignal(SIGTERM, worker_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	/*
	 * DROP DATABASE ... WITH (FORCE) terminates a running pipeline's worker,
	 * which the postmaster then restarts: connecting would fail with FATAL
	 * before our handler, and the worker would be restarted every second
	 * for ever.  With the database's directory gone, leave for good (exit
	 * 0 unregisters a dynamic worker).  Its state directory stays: the
	 * directory may be missing only while ALTER DATABASE SET TABLESPACE
	 * moves it, and the state must outlive that.
	 */
	if (OidIsValid(spcoid))
	{
		struct stat st;

		if (stat(GetDatabasePath(dboid, spcoid), &st) != 0 && errno == ENOENT)
		{
			ereport(LOG,
					(errmsg("streamflink pipeline %d: database %u no longer exists, not restarting",
							pipeline_id, dboid)));
			proc_exit(0);
		}
	}
	/*
	 * Connected as the bootstrap superuser: the worker writes the
	 * extension's tables and drives 2PC; the pipeline's own code runs as its
	 * owner (run_as.h).  The search_path is fixed before the first query.
	 */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	run_as_worker_init();

	w = MemoryContextAllocZero(TopMemoryContext, sizeof(Worker));
	w->dboid = dboid;
	worker_for_exit = w;
	before_shmem_exit(worker_shmem_exit, (Datum) 0);
	enable_timeout_every(RegisterTimeout(USER_TIMEOUT, stop_grace_tick),
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000), 1000);

	/*
	 * Everything that can fail is inside the handler, so that every failure
	 * is shown and backed off from, never a restart every second.
	 */
	PG_TRY();
	{
		/*
		 * streamflink.start() registers the worker inside its transaction:
		 * wait until that transaction ends; if it rolled back, the pipeline
		 * is not marked running and we leave.
		 */
		if (TransactionIdIsValid(starter))
		{
			pgstat_report_activity(STATE_RUNNING, "waiting for streamflink.start() to commit");
			StartTransactionCommand();
			XactLockTableWait(starter, NULL, NULL, XLTW_None);
			CommitTransactionCommand();
		}

		w->def = load_definition(pipeline_id);
		if (w->def == NULL || !w->def->running)
			proc_exit(0);		/* dropped or stopped meanwhile */
		pgstat_report_appname(psprintf("streamflink %s", w->def->name));

		claim_slot(w, pipeline_id);

		/*
		 * A stop that committed after we read the definition and before
		 * the claim found no slot to signal: read the desired state again,
		 * now that a stop committing from here on finds our slot.  (Its
		 * commit is visible before its callback looks for workers.)
		 */
		w->def = load_definition(pipeline_id);
		if (w->def == NULL || !w->def->running)
			proc_exit(0);		/* the slot goes in worker_shmem_exit */

		if (max_prepared_xacts <= 0)
		{
			/* Not a crash loop: say why and wait to be stopped. */
			slot_set_status(w->slot, SLOT_FAILED,
							"max_prepared_transactions is 0; set it above 0 and restart the server");
			for (;;)
			{
				worker_sleep(10000);
				if (got_stop)
					proc_exit(0);
			}
		}

		worker_startup(w);
		worker_loop(w);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* Show the error in streamflink.pipelines, then restart. */
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		poison_record(w->poison, edata);
		if (w->slot)
			slot_set_status(w->slot, SLOT_FAILED, edata->message);
		EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();

		/*
		 * Recovery refused what it found (state of another release, a
		 * catalog not updated): a restart would find the same, so wait to
		 * be stopped, showing why.
		 */
		if (w->recovering && edata->sqlerrcode == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
		{
			pgstat_report_activity(STATE_IDLE, "failed, waiting to be stopped");
			for (;;)
			{
				worker_sleep(1000);
				if (got_stop)
					proc_exit(0);
			}
		}
		pgstat_report_activity(STATE_IDLE, "failed, restarting");

		/* Back off before the restart, so a persistent error is no busy loop. */
		for (int i = 0; i < 50 && !got_stop; i++)
			worker_sleep(100);
		proc_exit(got_stop ? 0 : 1);
	}
	PG_END_TRY();
}
