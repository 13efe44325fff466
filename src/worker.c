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
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/relpath.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/fd.h"
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
#include "exchange.h"
#include "group_key.h"
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
#include "task.h"
#include "operator_factory.h"
#include "poison.h"
#include "run_as.h"
#include "savepoint.h"
#include "watermark.h"
#include "local_agg.h"
#include "window.h"
#include "hot_keys.h"
#include "worker.h"

PGDLLEXPORT void streamflink_worker_main(Datum arg);

/* streamflink.batch_size */
static int	batch_size = 5000;

/* streamflink.checkpoint_timeout (ms): a parallel checkpoint's limit */
static int	checkpoint_timeout_ms = 10 * 60 * 1000;

/* bgw_extra: dboid, starter xid, tablespace, then task and exchange */
#define EXTRA_TASK_OFFSET (sizeof(Oid) + sizeof(TransactionId) + sizeof(Oid))
#define EXTRA_HANDLE_OFFSET (EXTRA_TASK_OFFSET + sizeof(int32))

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
	double		last_rate;		/* events per second, last measured */

	/*
	 * Parallel pipelines (def->parallelism > 1): this worker is task 'task'
	 * of 'ntasks'.  Its source side reads partitions mine[0..nmine-1] and
	 * routes each event to the task owning its key group; its operator side
	 * owns key groups kg_first..kg_last and reads one channel per task.
	 */
	int			task;
	int			ntasks;
	Exchange   *ex;
	TaskSlot   *tslot;
	TaskClock	clock;
	BackgroundWorkerHandle **handles;	/* task 0: the other tasks */
	int			nmine;
	int32	   *mine;
	int			kg_first;
	int			kg_last;
	KeyCodec	codec;			/* routing: the operators' group key */
	StringInfoData gk;
	LocalAgg   *local;			/* two-stage aggregation, or NULL (local_agg.h) */
	uint64		resumes_sent;	/* returns from idle on its channels */
	HotKeys    *hot;			/* keys it routed most (hot_keys.h) */
	/* source side */
	TimestampTz src_wm;
	bool		src_idle;
	bool		src_wm_sent;
	int64		emitted;		/* last barrier emitted */
	PartitionPosition *barrier_positions;	/* at that barrier */
	int64		barrier_events; /* messages of the epoch it ends */
	int64		events_out;
	WatermarkPartition *scratch;
	/* operator side */
	TimestampTz *chan_wm;
	bool	   *chan_idle;
	bool	   *blocked;		/* barrier received, waiting for the others */
	int			nblocked;
	int			next_channel;	/* round robin */
	TimestampTz first_barrier_at;
	int64		under_way;		/* the checkpoint this task knows is taken */
	TimestampTz last_barrier_at;
	int64		events_in;
	int64		epoch_events_in;
	bool		stopping;		/* task 0: a stop was requested */
	/*
	 * Unaligned checkpoints (or aligned ones past aligned_checkpoint_timeout):
	 * from the first barrier (or the switch) on, the operator side takes no
	 * more events but keeps reading every channel until its barrier; the
	 * events read meanwhile are the checkpoint's channel state (chstate),
	 * persisted with it and processed right after it (replay), as after a
	 * recovery from it.  The next unaligned checkpoint's barriers overtake
	 * what is left of the replay: it becomes the head of that checkpoint's
	 * channel state (Flink's barriers overtake in-flight buffers the same
	 * way), so a slow task does not hold back checkpoints by its backlog.
	 */
	bool		draining;
	StringInfoData chstate;
	StringInfoData replay;
	int			replay_off;		/* taken so far */
} Worker;

static volatile sig_atomic_t got_stop = false;
static Worker *worker_for_exit = NULL;

static void report_task(Worker *w, TimestampTz now);
static void load_channel_state(Worker *w);

void
worker_define_settings(void)
{
	DefineCustomIntVariable("streamflink.batch_size",
							"Kafka messages a worker takes in one batch.",
							NULL,
							&batch_size, 5000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("streamflink.checkpoint_timeout",
							"Time a checkpoint of a parallel pipeline may take before it is aborted.",
							"An aborted checkpoint restarts every task of the pipeline from the last completed one.",
							&checkpoint_timeout_ms, 10 * 60 * 1000, 1000, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
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
	if (w->tslot)
		task_release(w->tslot);
	w->tslot = NULL;
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
	for (int i = 0; i < (w->ex ? w->nmine : w->nparts); i++)
	{
		int			p = w->ex ? w->mine[i] : i;
		int64		high = ksrc_high_watermark(w->src, p);
		int64		next = w->parts[p].pos.next_offset;

		if (high < 0)
		{
			lag = -1;
			break;
		}
		lag += Max(0, high - Max(next, 0));
	}

	if (secs >= 1.0)
	{
		w->last_rate = w->rate_events / secs;
		w->rate_events = 0;
		w->rate_since = now;
	}
	report_task(w, now);
	if (w->ex != NULL)
	{
		ExchangeTask *mine = &exchange_control(w->ex)->tasks[w->task];

		mine->events = w->events_total;
		mine->dead_letters = w->dead_total;
		mine->late_events = w->late_total;
		mine->rows_emitted = w->rows_total;
		mine->lag = lag;
		mine->open_count = operator_open_count(w->op);
		mine->events_per_second = w->last_rate;
	}
	if (w->slot == NULL)
		return;

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
	w->slot->events_per_second = w->last_rate;
	if (w->ex != NULL)
	{
		/* a parallel pipeline: the totals of its tasks (as last reported) */
		ExchangeControl *ctl = exchange_control(w->ex);

		w->slot->events = w->slot->dead_letters = w->slot->late_events = 0;
		w->slot->rows_emitted = w->slot->state_keys = 0;
		w->slot->events_per_second = 0;
		w->slot->lag = 0;
		for (int t = 0; t < w->ntasks; t++)
		{
			ExchangeTask *task = &ctl->tasks[t];

			w->slot->events += task->events;
			w->slot->dead_letters += task->dead_letters;
			w->slot->late_events += task->late_events;
			w->slot->rows_emitted += task->rows_emitted;
			w->slot->state_keys += task->open_count;
			w->slot->events_per_second += task->events_per_second;
			if (task->lag < 0 || w->slot->lag < 0)
				w->slot->lag = -1;
			else
				w->slot->lag += task->lag;
		}
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

/*
 * Decode a message into w->event and take its event time; returns why it
 * cannot be processed (for its dead letter), or NULL.
 */
static char *
decode_event(Worker *w, KafkaMessage *msg, TimestampTz *time)
{
	char	   *error = NULL;
	const char *terror = NULL;
	TimestampTz t = DT_NOBEGIN;

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
	*time = t;
	return error;
}

static void
process_message(Worker *w, KafkaMessage *msg)
{
	PartitionState *ps = &w->parts[msg->partition];
	char	   *error;
	TimestampTz t;
	SfMessagePos pos = {msg->partition, msg->offset};

	w->events_total++;
	w->rate_events++;
	w->stats.events++;
	/* a floor only: the consumer's position replaces it (see take_positions) */
	ps->pos.next_offset = Max(ps->pos.next_offset, msg->offset + 1);

	error = decode_event(w, msg, &t);
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

/* --- parallel pipelines ---------------------------------------------------
 *
 * A pipeline of parallelism N runs as N tasks, each a worker: task 0 (the
 * worker the launcher starts, holding the pipeline's slot) creates the
 * exchange (exchange.h) and registers tasks 1..N-1 (never restarted by the
 * postmaster: task 0 forms the group again at each of its starts).  Every
 * task recovers from the last completed checkpoint on its own (its state
 * directory, its in-doubt transactions), then all run:
 *
 *	 source side: its partitions (p mod N = task), decoded, routed by key
 *		group (Flink's KeyGroupRangeAssignment: key group kg goes to task
 *		kg * N / 128) with the watermark of its partitions as 'W' records;
 *		when task 0 triggers checkpoint n, it records its partitions'
 *		positions and emits barrier n on every channel, and reads no more
 *		until its own operator side took its part of n (its dead letters
 *		go into the epoch transaction of n until then);
 *	 operator side: reads every channel, the watermark being the minimum
 *		over channels that are not idle; a channel that delivered barrier n
 *		is not read until all did (alignment); then the task takes its part
 *		of checkpoint n: its participants prepare its own epoch transaction
 *		(gid ending in the task), and it waits for the decision;
 *	 task 0 writes the decision row once every task prepared (group_*),
 *		and every task commits.
 * Any task's exit makes the others' queues detach: they fail, task 0
 * restarts, and the group recovers from the last completed checkpoint.  A
 * checkpoint that does not complete within streamflink.checkpoint_timeout
 * does the same: its prepared transactions have no decision and are rolled
 * back by recovery, never half-committed.
 */

/* Flink's KeyGroupRangeAssignment over STATE_KEY_GROUPS key groups. */
static inline int
task_for_key_group(int kg, int ntasks)
{
	return (int) ((int64) kg * ntasks / STATE_KEY_GROUPS);
}

/* A task's own error ends it; the others notice its queues. */
static void
check_peers(Worker *w)
{
	ExchangeControl *ctl = exchange_control(w->ex);

	for (int t = 0; t < w->ntasks; t++)
	{
		pid_t		pid = ctl->tasks[t].pid;

		if (t == w->task)
			continue;
		if (w->handles != NULL && w->handles[t] != NULL)
		{
			pid_t		bgpid;

			if (GetBackgroundWorkerPid(w->handles[t], &bgpid) == BGWH_STOPPED)
				exchange_peer_gone(w->ex, t);
		}
		if (pid != 0 && kill(pid, 0) != 0 && errno == ESRCH)
			exchange_peer_gone(w->ex, t);
	}
}

/* Task 0: the exchange and the other tasks' workers. */
static void
start_tasks(Worker *w)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	dsm_handle	handle;

	w->ex = exchange_create(w->ntasks);
	handle = exchange_handle(w->ex);
	w->handles = palloc0(sizeof(BackgroundWorkerHandle *) * w->ntasks);
	for (int t = 1; t < w->ntasks; t++)
	{
		BackgroundWorker worker;
		TransactionId none = InvalidTransactionId;
		int32		task = t;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		/* task 0 starts the group again; the postmaster must not */
		worker.bgw_restart_time = BGW_NEVER_RESTART;
		strlcpy(worker.bgw_library_name, "streamflink", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, "streamflink_worker_main", BGW_MAXLEN);
		snprintf(worker.bgw_name, BGW_MAXLEN, "streamflink pipeline %d task %d", w->def->id, t);
		strlcpy(worker.bgw_type, "streamflink pipeline", BGW_MAXLEN);
		worker.bgw_main_arg = Int32GetDatum(w->def->id);
		memcpy(worker.bgw_extra, &w->dboid, sizeof(Oid));
		memcpy(worker.bgw_extra + sizeof(Oid), &none, sizeof(TransactionId));
		memcpy(worker.bgw_extra + sizeof(Oid) + sizeof(TransactionId), &MyDatabaseTableSpace,
			   sizeof(Oid));
		memcpy(worker.bgw_extra + EXTRA_TASK_OFFSET, &task, sizeof(int32));
		memcpy(worker.bgw_extra + EXTRA_HANDLE_OFFSET, &handle, sizeof(dsm_handle));
		worker.bgw_notify_pid = MyProcPid;
		if (!RegisterDynamicBackgroundWorker(&worker, &w->handles[t]))
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("could not start task %d of pipeline \"%s\"", t, w->def->name),
					 errdetail("All max_worker_processes (%d) background worker slots are in use.",
							   max_worker_processes),
					 errhint("Each task of a parallel pipeline is a background worker: raise max_worker_processes and restart the server.")));
		exchange_set_worker(w->ex, t, w->handles[t]);
	}
	MemoryContextSwitchTo(old);
}

/*
 * Task 0 leaving on an error: the other tasks end too (SIGTERM: die(), so
 * that one stuck in the owner's code stops there as well).
 */
static void
stop_tasks(Worker *w)
{
	if (w->handles == NULL)
		return;
	for (int t = 1; t < w->ntasks; t++)
		if (w->handles[t] != NULL)
			TerminateBackgroundWorker(w->handles[t]);
}

/* In worker_startup, once the checkpoint is recovered and positions read. */
static void
parallel_startup(Worker *w)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	int			n = w->ntasks;

	w->kg_first = (w->task * STATE_KEY_GROUPS + n - 1) / n;
	w->kg_last = ((w->task + 1) * STATE_KEY_GROUPS - 1) / n;
	w->chan_wm = palloc(sizeof(TimestampTz) * n);
	w->chan_idle = palloc0(sizeof(bool) * n);
	w->blocked = palloc0(sizeof(bool) * n);
	for (int c = 0; c < n; c++)
		w->chan_wm[c] = DT_NOBEGIN;
	w->barrier_positions = palloc0(sizeof(PartitionPosition) * Max(w->nparts, 1));
	w->scratch = palloc0(sizeof(WatermarkPartition) * Max(w->nparts, 1));
	w->src_wm = DT_NOBEGIN;
	w->emitted = w->checkpoint_id;
	initStringInfo(&w->chstate);
	initStringInfo(&w->replay);
	MemoryContextSwitchTo(old);
	if (w->checkpoint_id > 0)
		load_channel_state(w);

	/* this task's operator watermark of the last checkpoint, if recorded */
	if (w->checkpoint_id > 0)
	{
		Oid			types[3] = {INT4OID, INT8OID, INT4OID};
		Datum		args[3] = {Int32GetDatum(w->def->id), Int64GetDatum(w->checkpoint_id),
		Int32GetDatum(w->task)};

		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_execute_with_args("SELECT watermark FROM streamflink.checkpoint_task"
								  " WHERE pipeline_id = $1 AND checkpoint_id = $2 AND task = $3",
								  3, types, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read streamflink.checkpoint_task");
		if (SPI_processed == 1)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			w->watermark = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
		}
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
	}
}

/*
 * Every task recovered: start together.  Each says which checkpoint it
 * recovered; they must agree (task 0 alone decides, so they do, unless a
 * task of an older run is still around).
 */
static void
parallel_join(Worker *w)
{
	ExchangeControl *ctl = exchange_control(w->ex);
	TimestampTz start = GetCurrentTimestamp();

	pgstat_report_activity(STATE_RUNNING, "waiting for the other tasks");
	if (w->task == 0)
	{
		pg_atomic_write_u64(&ctl->decided, w->checkpoint_id);
		pg_atomic_write_u64(&ctl->trigger, w->checkpoint_id);
	}
	pg_atomic_write_u64(&ctl->tasks[w->task].prepared, w->checkpoint_id);
	exchange_publish_watermark(w->ex, w->watermark);	/* local_bound */
	pg_atomic_fetch_add_u32(&ctl->ready, 1);
	exchange_wake_all(w->ex);
	while (pg_atomic_read_u32(&ctl->ready) < (uint32) w->ntasks)
	{
		check_peers(w);
		if (got_stop)
			proc_exit(0);
		if (GetCurrentTimestamp() - start > 120 * USECS_PER_SEC)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("the tasks of pipeline \"%s\" did not all start within 120 seconds",
							w->def->name)));
		worker_sleep(10);
	}
	pg_read_barrier();
	for (int t = 0; t < w->ntasks; t++)
		if ((int64) pg_atomic_read_u64(&ctl->tasks[t].prepared) != w->checkpoint_id)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("task %d of pipeline \"%s\" recovered checkpoint " INT64_FORMAT ", task %d checkpoint " INT64_FORMAT,
							t, w->def->name, (int64) pg_atomic_read_u64(&ctl->tasks[t].prepared),
							w->task, w->checkpoint_id)));
}

/* Owner's work on records: one transaction command per round. */
static void
work_begin(RunAs *as)
{
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	run_as_owner(as);
}

static void
work_end(Worker *w, RunAs *as)
{
	sink_flush(w->sink);
	run_as_restore(as);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/*
 * Source side, two-stage aggregation (local_agg.h): the highest watermark
 * the operator side of 'dest' can have before a partial sent now arrives,
 * or DT_NOEND if that is not known.  While 'dest' takes this channel as
 * active (it saw every return from idle this side sent, and this side is
 * not idle), its watermark can only pass the one it published through this
 * channel's own watermark, which this side raises only after sending the
 * partials it reaches.
 */
static TimestampTz
local_bound(Worker *w, int dest)
{
	TimestampTz pub;

	if (w->src_idle || exchange_resumes_seen(w->ex, dest) != w->resumes_sent)
		return DT_NOEND;
	pub = exchange_published_watermark(w->ex, dest);
	if (pub == DT_NOEND)
		return DT_NOEND;
	return w->src_wm_sent ? Max(pub, w->src_wm) : pub;
}

/*
 * Source side: send the partials now.  Serializing them may run the
 * aggregates' functions (user-written ones too): as the owner, in a
 * transaction, as routing does.
 */
static void
local_flush(Worker *w)
{
	RunAs		as;

	if (w->local == NULL || !local_agg_holds(w->local))
		return;
	work_begin(&as);
	local_agg_flush(w->local, w->ex);
	work_end(w, &as);
}

/* Source side: decode, then route by key group. */
static void
route_message(Worker *w, KafkaMessage *msg)
{
	PartitionState *ps = &w->parts[msg->partition];
	TimestampTz t;
	char	   *error;
	MinimalTuple mt;
	int			dest;

	w->events_total++;
	w->stats.events++;
	ps->pos.next_offset = Max(ps->pos.next_offset, msg->offset + 1);

	error = decode_event(w, msg, &t);
	if (error)
	{
		side_output_dead_letter(w->side, msg->partition, msg->offset, msg->payload, msg->len, error);
		return;
	}
	watermark_observe(ps, t);
	kstate_encode_key(&w->codec, w->event, &w->gk);
	dest = task_for_key_group(state_key_group(w->gk.data, w->gk.len), w->ntasks);
	hot_keys_count(w->hot, w->gk.data, w->gk.len, dest);
	if (w->local)
	{
		/*
		 * Pre-aggregating runs the aggregates here: a message whose
		 * transition failed (poison.h) is a dead letter, as it would be on
		 * its owner.
		 */
		SfMessagePos pos = {msg->partition, msg->offset};
		bool		absorbed;

		error = poison_skip(w->poison, pos);
		if (error)
		{
			side_output_dead_letter(w->side, msg->partition, msg->offset, msg->payload,
									msg->len, error);
			return;
		}
		poison_begin(w->poison, pos);
		absorbed = local_agg_absorb(w->local, w->event, t, w->gk.data, w->gk.len, dest,
									msg->partition, msg->offset, local_bound(w, dest));
		poison_end(w->poison);
		if (absorbed)
		{
			w->events_out++;
			if (local_agg_full(w->local))
				local_agg_flush(w->local, w->ex);
			return;
		}
	}
	mt = heap_form_minimal_tuple(w->event_desc, w->event->tts_values, w->event->tts_isnull);
	exchange_put_event(w->ex, dest, msg->partition, msg->offset, t, mt, mt->t_len,
					   msg->payload, msg->payload ? (uint32) msg->len : 0);
	w->events_out++;
}

/* Source side: the watermark of its partitions, sent when it changes. */
static void
source_watermark(Worker *w, TimestampTz now)
{
	int64		idle_timeout = w->def->source.idle_timeout;
	bool		idle = true;
	TimestampTz wm;

	for (int i = 0; i < w->nmine; i++)
	{
		w->scratch[i] = w->parts[w->mine[i]];
		if (!(idle_timeout > 0 && now - w->scratch[i].last_message >= idle_timeout))
			idle = false;
	}
	wm = watermark_compute(&w->def->source, w->scratch, w->nmine, now, w->src_wm);
	if (w->src_wm_sent && wm == w->src_wm && idle == w->src_idle)
		return;
	/* partials the owners could fire (or take for idle) go first */
	if (w->local && (idle || local_agg_reached(w->local, wm)))
		local_flush(w);
	if (w->src_wm_sent && w->src_idle && !idle)
		w->resumes_sent++;
	for (int t = 0; t < w->ntasks; t++)
		exchange_put_watermark(w->ex, t, wm, idle);
	w->src_wm = wm;
	w->src_idle = idle;
	w->src_wm_sent = true;
}

/* Source side: checkpoint n covers what was read up to here. */
static void
emit_barrier(Worker *w, int64 id)
{
	take_positions(w);
	for (int p = 0; p < w->nparts; p++)
	{
		if (p % w->ntasks == w->task)
			w->barrier_positions[p] = w->parts[p].pos;
		else
		{
			w->barrier_positions[p].next_offset = -1;
			w->barrier_positions[p].max_event_time = DT_NOBEGIN;
		}
	}
	w->barrier_events = w->stats.events;
	w->stats.events = 0;
	/* the partials of what the checkpoint covers belong to it */
	local_flush(w);
	for (int t = 0; t < w->ntasks; t++)
		exchange_put_barrier(w->ex, t, id);
	w->emitted = id;
}

/* Operator side: one event from a channel. */
static void
take_record(Worker *w, ExchangeRecord *rec)
{
	MemoryContext old = MemoryContextSwitchTo(w->msg_cxt);
	MinimalTuple mt = palloc(rec->tuple_len);	/* aligned copy */
	HeapTupleData htup;
	SfMessagePos pos = {rec->partition, rec->offset};
	char	   *error;

	memcpy(mt, rec->tuple, rec->tuple_len);
	htup.t_len = mt->t_len + MINIMAL_TUPLE_OFFSET;
	htup.t_data = (HeapTupleHeader) ((char *) mt - MINIMAL_TUPLE_OFFSET);
	ItemPointerSetInvalid(&htup.t_self);
	htup.t_tableOid = InvalidOid;
	ExecClearTuple(w->event);
	heap_deform_tuple(&htup, w->event_desc, w->event->tts_values, w->event->tts_isnull);
	ExecStoreVirtualTuple(w->event);
	w->events_in++;
	w->epoch_events_in++;
	w->rate_events++;

	/* the poison of this task's previous run (its operator failed on it) */
	error = poison_skip(w->poison, pos);
	if (error)
		side_output_dead_letter(w->side, rec->partition, rec->offset, rec->payload,
								rec->payload_len, error);
	else
	{
		poison_begin(w->poison, pos);
		if (!operator_process(w->op, w->event, rec->time, w->watermark, pos))
		{
			char	   *reason = operator_late_reason(w->op);

			if (reason == NULL)
				reason = watermark_late_reason(w->def, rec->time, w->watermark);
			side_output_late_event(w->side, rec->partition, rec->offset, rec->time,
								   w->watermark, rec->payload, rec->payload_len, reason);
		}
		poison_end(w->poison);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(w->msg_cxt);
	operator_maybe_flush(w->op);
}

/*
 * Operator side: a partial of a window of one key (local_agg.h), merged as
 * its events would be one by one: the source side sends partials only of
 * windows this side has not fired.
 */
static void
take_partial(Worker *w, ExchangeRecord *rec)
{
	MemoryContext old = MemoryContextSwitchTo(w->msg_cxt);
	MinimalTuple mt = palloc(rec->tuple_len);	/* aligned copy */
	HeapTupleData htup;
	SfMessagePos pos = {rec->partition, rec->offset};

	memcpy(mt, rec->tuple, rec->tuple_len);
	htup.t_len = mt->t_len + MINIMAL_TUPLE_OFFSET;
	htup.t_data = (HeapTupleHeader) ((char *) mt - MINIMAL_TUPLE_OFFSET);
	ItemPointerSetInvalid(&htup.t_self);
	htup.t_tableOid = InvalidOid;
	ExecClearTuple(w->event);
	heap_deform_tuple(&htup, w->event_desc, w->event->tts_values, w->event->tts_isnull);
	ExecStoreVirtualTuple(w->event);
	w->events_in += rec->events;
	w->epoch_events_in += rec->events;
	w->rate_events += rec->events;

	poison_begin(w->poison, pos);
	if (!window_merge_partial((WindowOperator *) w->op->impl, w->event, rec->time,
							  rec->payload, rec->payload_len, w->watermark))
	{
		/* cannot happen (see local_bound): say so rather than lose it quietly */
		elog(WARNING, "streamflink pipeline \"%s\": a partial aggregate of " INT64_FORMAT " events arrived after its window's allowed lateness",
			 w->def->name, rec->events);
		w->late_total += rec->events;
	}
	poison_end(w->poison);
	MemoryContextSwitchTo(old);
	MemoryContextReset(w->msg_cxt);
	operator_maybe_flush(w->op);
}

/*
 * Operator side: the minimum over the channels that are not idle; when
 * all are, the ones that had events decide (as watermark_compute does for
 * partitions).  Never backwards.
 */
static TimestampTz
operator_watermark(Worker *w)
{
	TimestampTz wm = DT_NOEND;
	bool		any_active = false;
	bool		any = false;

	for (int c = 0; c < w->ntasks; c++)
	{
		if (w->chan_idle[c])
			continue;
		any_active = true;
		if (w->chan_wm[c] == DT_NOBEGIN)
			return w->watermark;
		wm = Min(wm, w->chan_wm[c]);
	}
	if (!any_active)
	{
		for (int c = 0; c < w->ntasks; c++)
			if (w->chan_wm[c] != DT_NOBEGIN)
			{
				any = true;
				wm = Min(wm, w->chan_wm[c]);
			}
		if (!any)
			return w->watermark;
	}
	return Max(wm, w->watermark);
}

/* Operator side: this task's part of checkpoint n, once aligned. */
static void
parallel_checkpoint(Worker *w)
{
	Checkpoint	chk;

	pgstat_report_activity(STATE_RUNNING, "checkpoint");
	memset(&chk, 0, sizeof(chk));
	chk.watermark = w->watermark;
	chk.nparts = w->nparts;
	chk.positions = w->barrier_positions;
	chk.stats.events = w->barrier_events;
	w->checkpoint_id = checkpoint_take(w->coord, &chk);
	w->rows_total += chk.stats.rows_emitted;
	poison_checkpointed(w->poison);
	if (w->slot)
	{
		SpinLockAcquire(&w->slot->mutex);
		w->slot->last_checkpoint = w->checkpoint_id;
		w->slot->last_checkpoint_at = GetCurrentTimestamp();
		w->slot->error[0] = '\0';
		SpinLockRelease(&w->slot->mutex);
	}
	memset(w->blocked, 0, sizeof(bool) * w->ntasks);
	w->nblocked = 0;
	w->epoch_events_in = 0;
	/* the channel state is processed now, as a recovery from here would */
	if (w->draining)
	{
		StringInfoData tmp = w->replay;

		w->replay = w->chstate;
		w->chstate = tmp;
		resetStringInfo(&w->chstate);
		w->draining = false;
	}
}

/*
 * Whether the checkpoint under way is to be taken unaligned from now on:
 * an unaligned pipeline from its first barrier, an aligned one once
 * alignment took aligned_checkpoint_timeout; a savepoint never.  What is
 * left of the previous channel state is carried into this one, but not
 * without bound: each draining adds at most the contents of the task's
 * input queues (and its own buffer), so under lasting overload it would
 * grow with every checkpoint.  Beyond CARRY_QUEUES times its input queues
 * the task first processes the backlog (aligned, as far as that goes):
 * memory and persisted bytes stay bounded, at the price of that one
 * checkpoint's delay.
 */
#define CARRY_QUEUES 2

static bool
drain_now(Worker *w, TimestampTz now)
{
	ExchangeControl *ctl = exchange_control(w->ex);
	int64		timeout = w->def->aligned_checkpoint_timeout;
	Size		carry = w->replay.len - w->replay_off;

	if (w->draining || w->under_way != w->checkpoint_id + 1 || w->savepoint.aligned)
		return false;
	if (carry > CARRY_QUEUES * ctl->queue_size * w->ntasks)
		return false;
	if (w->def->unaligned_checkpoints || timeout == 0)
		return true;
	/* from the trigger, as Flink's aligned checkpoint timeout counts */
	return timeout > 0 && now - ctl->triggered_at >= timeout;
}

/*
 * The task learns that checkpoint 'id' is under way: from the trigger in
 * the exchange's control, or from its first barrier, whichever comes
 * first.  The trigger is this design's priority event: a task whose
 * channels are full of backlog (a slow operator) would see the barriers
 * only behind it, but an unaligned checkpoint may start draining at once;
 * what it reads from then on up to each channel's barrier precedes the
 * barrier, and is channel state.
 */
static void
checkpoint_under_way(Worker *w, int64 id)
{
	if (w->under_way == id)
		return;
	w->under_way = id;
	/* a savepoint is aligned: its restore has no channel state */
	w->savepoint.aligned = savepoint_is_checkpoint(&w->savepoint, id);
}

/*
 * Draining starts while channel state of the previous checkpoint is not
 * processed yet: the barriers overtook it, so it goes first into this
 * checkpoint's channel state (a recovery from this checkpoint processes it
 * before what is drained now, the order it would have had).
 */
static void
carry_replay(Worker *w)
{
	StringInfoData tmp;

	if (w->replay.len == 0)
		return;
	initStringInfo(&tmp);
	appendBinaryStringInfo(&tmp, w->replay.data + w->replay_off,
						   w->replay.len - w->replay_off);
	appendBinaryStringInfo(&tmp, w->chstate.data, w->chstate.len);
	resetStringInfo(&w->chstate);
	appendBinaryStringInfo(&w->chstate, tmp.data, tmp.len);
	pfree(tmp.data);
	resetStringInfo(&w->replay);
	w->replay_off = 0;
}

static void
barrier_received(Worker *w, int channel, int64 id)
{
	TimestampTz now = GetCurrentTimestamp();

	if (id != w->checkpoint_id + 1)
		elog(ERROR, "task %d received barrier " INT64_FORMAT " from task %d after checkpoint " INT64_FORMAT,
			 w->task, id, channel, w->checkpoint_id);
	if (w->nblocked == 0)
		w->first_barrier_at = now;
	checkpoint_under_way(w, id);
	w->last_barrier_at = now;
	w->blocked[channel] = true;
	w->nblocked++;
	/* unaligned: the first barrier ends the taking of events */
	if (drain_now(w, now))
		w->draining = true;
}

/*
 * Events of the channel state (of this checkpoint, or recovered) go first,
 * until 'deadline'; true if any are left.
 */
static bool
replay_channel_state(Worker *w, TimestampTz deadline)
{
	RunAs		as;
	const char *p;
	const char *end;
	int			n = 0;

	if (w->replay.len == 0)
		return false;
	pgstat_report_activity(STATE_RUNNING, "processing channel state");
	work_begin(&as);
	p = w->replay.data + w->replay_off;
	end = w->replay.data + w->replay.len;
	while (p < end)
	{
		ExchangeRecord rec;

		p += exchange_parse(p, &rec);
		if (rec.kind == EXCHANGE_EVENT)
			take_record(w, &rec);
		else if (rec.kind == EXCHANGE_PARTIAL)
			take_partial(w, &rec);
		if (++n % 64 == 0 && GetCurrentTimestamp() > deadline)
			break;
	}
	work_end(w, &as);
	pg_atomic_write_u32(&exchange_control(w->ex)->dirty, 1);
	w->replay_off = p - w->replay.data;
	if (p < end)
		return true;
	resetStringInfo(&w->replay);
	w->replay_off = 0;
	return false;
}

static char *
channel_state_path(Worker *w, int64 id)
{
	return psprintf("%s/channels-" INT64_FORMAT, w->dir, id);
}

/* Recovery: the channel state of the checkpoint recovered, if any. */
static void
load_channel_state(Worker *w)
{
	char	   *path = channel_state_path(w, w->checkpoint_id);
	FILE	   *f = AllocateFile(path, PG_BINARY_R);
	char		buf[65536];
	size_t		n;

	if (f == NULL)
	{
		if (errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not open \"%s\": %m", path)));
		return;
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		appendBinaryStringInfo(&w->replay, buf, n);
	if (ferror(f))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read \"%s\": %m", path)));
	FreeFile(f);
}

/*
 * The channel state of checkpoint id, durable before the checkpoint is
 * prepared (write, fsync, rename, fsync the directory); none: no file, an
 * older attempt's removed.
 */
static void
save_channel_state(Worker *w, int64 id)
{
	char	   *path = channel_state_path(w, id);
	char	   *tmp = psprintf("%s.tmp", path);
	int			fd;

	if (w->chstate.len == 0)
	{
		if (unlink(path) != 0 && errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not remove \"%s\": %m", path)));
		return;
	}
	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create \"%s\": %m", tmp)));
	if (write(fd, w->chstate.data, w->chstate.len) != w->chstate.len)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write \"%s\": %m", tmp)));
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close \"%s\": %m", tmp)));
	(void) durable_rename(tmp, path, ERROR);
}

/* Operator side: a round over the channels; true if anything came. */
#define ROUND_MS 20

static bool
operator_round(Worker *w)
{
	bool		did = false;
	bool		in_work = false;
	RunAs		as;
	TimestampTz wm;

	/*
	 * A round takes at most ROUND_MS, so that the loop soon comes back to
	 * the source side (a checkpoint's barrier, input to route): one process
	 * runs both sides.
	 */
	TimestampTz deadline = GetCurrentTimestamp() + ROUND_MS * 1000;
	bool		out_of_time = false;

	/*
	 * Unaligned: from the trigger on; aligned, but alignment took too long:
	 * unaligned from here on.  Or the backlog that held draining back is
	 * small enough now.
	 */
	if ((int64) pg_atomic_read_u64(&exchange_control(w->ex)->trigger) == w->checkpoint_id + 1)
		checkpoint_under_way(w, w->checkpoint_id + 1);
	if (drain_now(w, GetCurrentTimestamp()))
		w->draining = true;

	/* a checkpoint's (or a recovery's) channel state before new input */
	if (w->replay.len > 0)
	{
		if (w->draining)
			carry_replay(w);
		else if (replay_channel_state(w, deadline))
			return true;		/* more of it next round */
		did = true;
	}

	for (int k = 0; k < w->ntasks && !out_of_time; k++)
	{
		int			c = (w->next_channel + k) % w->ntasks;

		for (int i = 0; i < batch_size && !w->blocked[c]; i++)
		{
			ExchangeRecord rec;

			if (i % 64 == 63 && GetCurrentTimestamp() > deadline)
			{
				out_of_time = true;
				break;
			}
			if (!exchange_next(w->ex, c, &rec))
				break;
			did = true;
			switch (rec.kind)
			{
				case EXCHANGE_EVENT:
				case EXCHANGE_PARTIAL:
					if (w->draining)
					{
						/* overtaken by the snapshot: channel state */
						appendBinaryStringInfo(&w->chstate, rec.raw, rec.raw_len);
						break;
					}
					if (!in_work)
					{
						pgstat_report_activity(STATE_RUNNING, "processing events");
						work_begin(&as);
						in_work = true;
					}
					if (rec.kind == EXCHANGE_PARTIAL)
						take_partial(w, &rec);
					else
						take_record(w, &rec);
					break;
				case EXCHANGE_WATERMARK:
					if (w->chan_idle[c] && !rec.idle)
						exchange_saw_resume(w->ex, c);	/* local_bound */
					w->chan_wm[c] = rec.time;
					w->chan_idle[c] = rec.idle;
					break;
				case EXCHANGE_BARRIER:
					barrier_received(w, c, rec.checkpoint_id);
					break;
			}
		}
	}
	w->next_channel = (w->next_channel + 1) % w->ntasks;

	/*
	 * Not only when a watermark came: those read while draining for an
	 * unaligned checkpoint wait for it to be taken.
	 */
	if (!w->draining && (wm = operator_watermark(w)) > w->watermark)
	{
		w->watermark = wm;
		exchange_publish_watermark(w->ex, wm);	/* local_bound */
		if (!in_work)
		{
			work_begin(&as);
			in_work = true;
		}
		pgstat_report_activity(STATE_RUNNING, "firing windows");
		operator_advance(w->op, wm);
	}
	if (in_work)
	{
		work_end(w, &as);
		pg_atomic_write_u32(&exchange_control(w->ex)->dirty, 1);
	}
	if (w->nblocked == w->ntasks)
		parallel_checkpoint(w);
	return did;
}

/* --- the pipeline-level decision (CheckpointGroup) ------------------------ */

static void
task_prepare(void *arg, Checkpoint *chk)
{
	Worker	   *w = (Worker *) arg;
	ExchangeControl *ctl = exchange_control(w->ex);
	ExchangeTaskFigures *f = &ctl->tasks[w->task].figures;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz trig = ctl->triggered_at;
	Oid			types[17] = {INT4OID, INT8OID, INT4OID, INT4ARRAYOID, INT4OID, INT4OID,
		TIMESTAMPTZOID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, BOOLOID, INT8OID,
	INT8OID, INT8OID};
	Datum		args[17];
	char		nulls[17];
	Datum	   *parts = palloc(sizeof(Datum) * Max(w->nmine, 1));

	f->start_delay_us = Max(0, w->first_barrier_at - trig);
	f->alignment_us = Max(0, w->last_barrier_at - w->first_barrier_at);
	f->duration_us = Max(0, now - trig);
	f->events = w->epoch_events_in;
	f->consumed = chk->stats.events;
	f->rows_emitted = chk->stats.rows_emitted;
	f->state_bytes = chk->stats.state_bytes;
	f->new_state_bytes = chk->stats.new_state_bytes;
	f->watermark = chk->watermark;
	f->unaligned = w->draining;
	f->persisted_bytes = w->chstate.len;
	f->sync_us = chk->stats.sync_us;
	f->sync_end = chk->stats.sync_end;
	save_channel_state(w, chk->id);

	for (int i = 0; i < w->nmine; i++)
		parts[i] = Int32GetDatum(w->mine[i]);
	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int32GetDatum(w->def->id);
	args[1] = Int64GetDatum(chk->id);
	args[2] = Int32GetDatum(w->task);
	args[3] = PointerGetDatum(construct_array(parts, w->nmine, INT4OID, 4, true, TYPALIGN_INT));
	args[4] = Int32GetDatum(w->kg_first);
	args[5] = Int32GetDatum(w->kg_last);
	args[6] = TimestampTzGetDatum(chk->watermark);
	if (chk->watermark == DT_NOBEGIN)
		nulls[6] = 'n';
	args[7] = Int64GetDatum(f->events);
	args[8] = Int64GetDatum(f->rows_emitted);
	args[9] = Int64GetDatum(f->state_bytes);
	args[10] = Int64GetDatum(f->start_delay_us);
	args[11] = Int64GetDatum(f->alignment_us);
	args[12] = Int64GetDatum(f->duration_us);
	args[13] = BoolGetDatum(f->unaligned);
	args[14] = Int64GetDatum(f->persisted_bytes);
	/* its async part so far: from its snapshot to here, before its PREPARE */
	args[15] = Int64GetDatum(f->sync_us);
	args[16] = Int64GetDatum(f->sync_end == DT_NOBEGIN ? 0 : Max(0, now - f->sync_end));
	if (f->sync_end == DT_NOBEGIN)
		nulls[15] = nulls[16] = 'n';

	/* inside the epoch's transaction block: prepared with it */
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args("INSERT INTO streamflink.checkpoint_task"
							  " (pipeline_id, checkpoint_id, task, partitions, key_group_first,"
							  "  key_group_last, watermark, events, rows_emitted, state_bytes,"
							  "  start_delay, alignment, duration, unaligned, persisted_bytes,"
							  "  sync_duration, async_duration)"
							  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
							  "  $11 * interval '1 microsecond', $12 * interval '1 microsecond',"
							  "  $13 * interval '1 microsecond', $14, $15,"
							  "  $16 * interval '1 microsecond', $17 * interval '1 microsecond')",
							  17, types, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record task %d of checkpoint " INT64_FORMAT, w->task, chk->id);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/* Channel state older than the previous checkpoint's is not needed. */
static void
task_commit(void *arg, Checkpoint *chk)
{
	Worker	   *w = (Worker *) arg;

	if (chk->id > 1)
		(void) unlink(channel_state_path(w, chk->id - 2));
}

static CheckpointParticipant
task_participant(Worker *w)
{
	CheckpointParticipant p = {
		.name = "task figures",
		.arg = w,
		.prepare = task_prepare,
		.commit = task_commit
	};

	return p;
}

/*
 * This task prepared chk.  Task 0 waits for every task to have prepared
 * and decides; the others wait for its decision.  Outputs keep flowing
 * meanwhile (a barrier another task waits for may be in them).
 */
static bool
group_prepared(void *arg, Checkpoint *chk)
{
	Worker	   *w = (Worker *) arg;
	ExchangeControl *ctl = exchange_control(w->ex);

	pg_write_barrier();
	pg_atomic_write_u64(&ctl->tasks[w->task].prepared, chk->id);
	exchange_wake_all(w->ex);
	task_clock_switch(&w->clock, TASK_IDLE);
	pgstat_report_activity(STATE_IDLEINTRANSACTION, "waiting for the checkpoint decision");
	for (;;)
	{
		if (w->task == 0)
		{
			bool		all = true;

			for (int t = 0; t < w->ntasks && all; t++)
				all = (int64) pg_atomic_read_u64(&ctl->tasks[t].prepared) >= chk->id;
			if (all)
				break;
		}
		else if ((int64) pg_atomic_read_u64(&ctl->decided) >= chk->id)
			break;
		(void) exchange_flush(w->ex);
		check_peers(w);
		if (GetCurrentTimestamp() - ctl->triggered_at > (int64) checkpoint_timeout_ms * 1000)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("checkpoint " INT64_FORMAT " of pipeline \"%s\" did not complete within streamflink.checkpoint_timeout",
							chk->id, w->def->name),
					 errdetail("The checkpoint is aborted; every task restarts from the last completed one.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	task_clock_switch(&w->clock, TASK_BUSY);
	pg_read_barrier();
	return w->task == 0;
}

/* Task 0, in the decision's transaction: the pipeline's figures. */
static void
group_record(void *arg, Checkpoint *chk)
{
	Worker	   *w = (Worker *) arg;
	ExchangeControl *ctl = exchange_control(w->ex);
	int64		consumed = 0,
				rows = 0,
				bytes = 0,
				new_bytes = 0,
				alignment = 0,
				delay = 0,
				persisted = 0,
				slowest_us = -1,
				sync_us = 0;
	TimestampTz sync_end = DT_NOBEGIN;
	int			unaligned = 0;
	int			slowest = 0;
	TimestampTz wm = DT_NOEND;
	Oid			types[16] = {INT4OID, INT8OID, INT4OID, INT8OID, INT8OID, INT8OID, INT8OID,
		TIMESTAMPTZOID, INT8OID, INT8OID, INT4OID, INT4OID, INT8OID, TIMESTAMPTZOID,
	INT8OID, TIMESTAMPTZOID};
	Datum		args[16];
	char		nulls[16];

	for (int t = 0; t < w->ntasks; t++)
	{
		ExchangeTaskFigures *f = &ctl->tasks[t].figures;

		consumed += f->consumed;
		rows += f->rows_emitted;
		bytes += f->state_bytes;
		new_bytes += f->new_state_bytes;
		alignment = Max(alignment, f->alignment_us);
		delay = Max(delay, f->start_delay_us);
		wm = Min(wm, f->watermark);
		persisted += f->persisted_bytes;
		unaligned += f->unaligned ? 1 : 0;
		/* the slowest snapshot; the async part from the last one's end */
		sync_us = Max(sync_us, f->sync_us);
		sync_end = Max(sync_end, f->sync_end);
		if (f->duration_us > slowest_us)
		{
			slowest_us = f->duration_us;
			slowest = t;
		}
	}
	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int32GetDatum(w->def->id);
	args[1] = Int64GetDatum(chk->id);
	args[2] = Int32GetDatum(w->ntasks);
	args[3] = Int64GetDatum(consumed);
	args[4] = Int64GetDatum(rows);
	args[5] = Int64GetDatum(bytes);
	args[6] = Int64GetDatum(new_bytes);
	args[7] = TimestampTzGetDatum(wm);
	if (wm == DT_NOBEGIN || wm == DT_NOEND)
		nulls[7] = 'n';
	args[8] = Int64GetDatum(alignment);
	args[9] = Int64GetDatum(delay);
	args[10] = Int32GetDatum(slowest);
	args[11] = Int32GetDatum(unaligned);
	args[12] = Int64GetDatum(persisted);
	args[13] = TimestampTzGetDatum(ctl->triggered_at);
	args[14] = Int64GetDatum(sync_us);
	args[15] = TimestampTzGetDatum(sync_end);
	if (sync_end == DT_NOBEGIN)
		nulls[14] = nulls[15] = 'n';
	/* from the trigger: barriers' travel and alignment included, as Flink's */
	if (SPI_execute_with_args("UPDATE streamflink.checkpoint SET parallelism = $3, events = $4,"
							  " rows_emitted = $5, state_bytes = $6, new_state_bytes = $7,"
							  " watermark = $8, alignment = $9 * interval '1 microsecond',"
							  " start_delay = $10 * interval '1 microsecond', slowest_task = $11,"
							  " unaligned_tasks = $12, persisted_bytes = $13,"
							  " started = $14, duration = completed - $14,"
							  " sync_duration = $15 * interval '1 microsecond',"
							  " async_duration = completed - $16"
							  " WHERE pipeline_id = $1 AND id = $2",
							  16, types, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record checkpoint " INT64_FORMAT, chk->id);
	/* a savepoint's row comes with the decision, once every task prepared */
	savepoint_record(&w->savepoint, chk, w->ntasks, bytes, wm);
	if (chk->id > checkpoint_history &&
		SPI_execute_with_args("DELETE FROM streamflink.checkpoint_task"
							  " WHERE pipeline_id = $1 AND checkpoint_id <= $2",
							  2, types,
							  (Datum[]) {Int32GetDatum(w->def->id),
								  Int64GetDatum(chk->id - checkpoint_history)},
							  NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not prune streamflink.checkpoint_task");
}

static void
group_decided(void *arg, Checkpoint *chk)
{
	Worker	   *w = (Worker *) arg;

	pg_atomic_write_u64(&exchange_control(w->ex)->decided, chk->id);
	exchange_wake_all(w->ex);
}

/* Task 0: request checkpoint 'id' of every task. */
static void
trigger_checkpoint(Worker *w, int64 id, TimestampTz now)
{
	ExchangeControl *ctl = exchange_control(w->ex);

	ctl->triggered_at = now;
	pg_write_barrier();
	pg_atomic_write_u64(&ctl->trigger, id);
	exchange_wake_all(w->ex);
}

/* After the stop's checkpoint: leave (task 0 last, its slot shows it). */
static void
parallel_leave(Worker *w)
{
	AbortOutOfAnyTransaction();
	if (w->local)
		ereport(LOG,
				(errmsg("streamflink pipeline \"%s\" task %d: " INT64_FORMAT " of its " INT64_FORMAT " events pre-aggregated (local aggregation)",
						w->def->name, w->task, local_agg_absorbed(w->local), w->events_out)));
	if (w->task == 0)
	{
		for (int i = 0; i < 300; i++)
		{
			bool		all_gone = true;

			for (int t = 1; t < w->ntasks; t++)
			{
				pid_t		pid;

				if (GetBackgroundWorkerPid(w->handles[t], &pid) != BGWH_STOPPED)
					all_gone = false;
			}
			if (all_gone)
				break;
			worker_sleep(100);
		}
		ereport(LOG, (errmsg("streamflink pipeline \"%s\" stopped", w->def->name)));
	}
	proc_exit(0);
}

/* The tasks view's figures (and, for task 0, the pipeline's slot). */
static void
report_task(Worker *w, TimestampTz now)
{
	TaskMetrics m;

	if (w->tslot == NULL)
		return;
	memset(&m, 0, sizeof(m));
	task_clock_tick(&w->clock, now);
	m.parallelism = Max(w->ntasks, 1);
	if (w->ex != NULL)
	{
		m.nparts = w->nmine;
		for (int i = 0; i < Min(w->nmine, TASK_MAX_LISTED_PARTITIONS); i++)
			m.partitions[i] = w->mine[i];
		m.key_group_first = w->kg_first;
		m.key_group_last = w->kg_last;
		m.events_in = w->events_in;
		m.events_out = w->events_out;
		exchange_fill(w->ex, &m.input_queue_fill, &m.output_queue_fill);
	}
	else
	{
		m.nparts = w->nparts;
		for (int i = 0; i < Min(w->nparts, TASK_MAX_LISTED_PARTITIONS); i++)
			m.partitions[i] = i;
		m.key_group_first = 0;
		m.key_group_last = STATE_KEY_GROUPS - 1;
		m.events_in = m.events_out = w->events_total;
	}
	m.events_per_second = w->last_rate;
	m.busy_ms_per_second = w->clock.ms_per_second[TASK_BUSY];
	m.idle_ms_per_second = w->clock.ms_per_second[TASK_IDLE];
	/* a parallel task: while its source side's output was full */
	m.backpressured_ms_per_second = w->ex != NULL ? w->clock.out_ms_per_second :
		w->clock.ms_per_second[TASK_BACKPRESSURED];
	m.watermark = w->watermark;
	m.last_checkpoint = w->checkpoint_id;
	if (w->hot)
		m.hot = *hot_keys_report(w->hot);
	task_report(w->tslot, &m);
}

static void
parallel_loop(Worker *w)
{
	ExchangeControl *ctl = exchange_control(w->ex);
	TimestampTz next_checkpoint;
	TimestampTz last_report = 0;

	w->rate_since = GetCurrentTimestamp();
	memset(&w->stats, 0, sizeof(w->stats));
	w->stats.started = GetCurrentTimestamp();
	next_checkpoint = w->stats.started + w->def->checkpoint_interval;
	if (w->slot)
		slot_set_status(w->slot, SLOT_RUNNING, NULL);
	checkpoint_begin_epoch(w->coord);
	task_clock_init(&w->clock);

	for (;;)
	{
		bool		did = false;
		bool		room;
		int64		trigger;
		int64		stop_after;
		TimestampTz now;
		bool		paused;

		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			proc_exit(1);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		stop_after = (int64) pg_atomic_read_u64(&ctl->stop_after);
		if (stop_after > 0 && w->checkpoint_id >= stop_after - 1)
			parallel_leave(w);

		now = GetCurrentTimestamp();
		trigger = (int64) pg_atomic_read_u64(&ctl->trigger);
		if (w->task == 0)
			savepoint_parallel_done(&w->savepoint, w->slot, w->checkpoint_id);
		/* after a stop's savepoint: every task reads nothing more until the stop */
		paused = savepoint_task_paused(&w->savepoint, w->checkpoint_id);
		if (w->task == 0)
		{
			int64		decided = (int64) pg_atomic_read_u64(&ctl->decided);

			if (trigger > decided &&
				now - ctl->triggered_at > (int64) checkpoint_timeout_ms * 1000)
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("checkpoint " INT64_FORMAT " of pipeline \"%s\" did not complete within streamflink.checkpoint_timeout",
								trigger, w->def->name),
						 errdetail("The checkpoint is aborted; every task restarts from the last completed one.")));
			if (got_stop && stop_after == 0 && trigger == decided)
			{
				/* A requested stop ends with a checkpoint: nothing is left behind. */
				int64		last = decided;

				if (pg_atomic_exchange_u32(&ctl->dirty, 0) != 0)
					trigger_checkpoint(w, ++last, now);
				stop_after = last + 1;
				pg_atomic_write_u64(&ctl->stop_after, stop_after);
				exchange_wake_all(w->ex);
			}
			else if (stop_after == 0 && trigger == decided &&
					 savepoint_parallel_request(&w->savepoint, w->slot, decided + 1))
			{
				/* a savepoint is a checkpoint now, events or not (savepoint.h) */
				(void) pg_atomic_exchange_u32(&ctl->dirty, 0);
				trigger_checkpoint(w, decided + 1, now);
				next_checkpoint = now + w->def->checkpoint_interval;
			}
			else if (stop_after == 0 && trigger == decided && now >= next_checkpoint)
			{
				/* as the single worker: no checkpoint for an epoch without change */
				if (pg_atomic_exchange_u32(&ctl->dirty, 0) != 0)
					trigger_checkpoint(w, decided + 1, now);
				next_checkpoint = now + w->def->checkpoint_interval;
			}
			trigger = (int64) pg_atomic_read_u64(&ctl->trigger);
		}

		room = exchange_flush(w->ex);
		if (trigger > w->emitted)
		{
			emit_barrier(w, trigger);
			room = exchange_flush(w->ex);
			did = true;
		}

		/*
		 * Source side: more input, unless an output is full (backpressure)
		 * or this task's own part of the checkpoint whose barrier it sent is
		 * not taken yet: what it writes itself (dead letters) goes into the
		 * epoch transaction, which belongs to that checkpoint until it is
		 * prepared.
		 */
		if (room && stop_after == 0 && w->nmine > 0 && w->emitted == w->checkpoint_id &&
			!paused)
		{
			char	   *err = NULL;
			int			n;

			ksrc_clear_wakeup(w->src);
			n = ksrc_consume(w->src, w->batch, Min(batch_size, 1000000), 0, &err);
			ksrc_poll_events(w->src);
			if (n < 0)
				ereport(ERROR,
						(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
						 errmsg("streamflink pipeline \"%s\": %s", w->def->name, err)));
			if (n > 0)
			{
				RunAs		as;

				pgstat_report_activity(STATE_RUNNING, "routing messages");
				work_begin(&as);
				for (int i = 0; i < n; i++)
				{
					MemoryContext old = MemoryContextSwitchTo(w->msg_cxt);

					w->parts[w->batch[i].partition].last_message = now;
					route_message(w, &w->batch[i]);
					MemoryContextSwitchTo(old);
					MemoryContextReset(w->msg_cxt);
				}
				hot_keys_render(w->hot, now);
				work_end(w, &as);
				take_positions(w);
				pg_atomic_write_u32(&ctl->dirty, 1);
				did = true;
			}
			else
				local_flush(w);	/* caught up: no latency */
		}
		if (!paused)
			source_watermark(w, now);
		room = exchange_flush(w->ex);
		task_clock_output(&w->clock, !room);

		if (operator_round(w))
			did = true;

		if (!did)
		{
			int			fd = (room && stop_after == 0 && w->emitted == w->checkpoint_id && !paused) ?
				ksrc_wakeup_fd(w->src) : -1;
			int			rc;

			task_clock_switch(&w->clock, room ? TASK_IDLE : TASK_BACKPRESSURED);
			pgstat_report_activity(STATE_IDLEINTRANSACTION, NULL);
			if (fd >= 0)
				rc = WaitLatchOrSocket(MyLatch,
									   WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT |
									   WL_EXIT_ON_PM_DEATH,
									   fd, 100, PG_WAIT_EXTENSION);
			else
				rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   room ? 100 : 10, PG_WAIT_EXTENSION);
			if (rc & WL_LATCH_SET)
				ResetLatch(MyLatch);
			task_clock_switch(&w->clock, TASK_BUSY);
			CHECK_FOR_INTERRUPTS();
		}
		if (now - last_report >= 200 * 1000)
		{
			report_progress(w);
			last_report = now;
		}
	}
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
		if (w->slot)
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

	if (w->slot)
		slot_set_status(w->slot, SLOT_RECOVERING, NULL);
	w->dir = state_pipeline_dir(w->dboid, w->def->id);
	/* task 0 keeps the pipeline's directory; the others have their own in it */
	if (w->task > 0)
		w->dir = MemoryContextStrdup(TopMemoryContext,
									 psprintf("%s/task-%d", w->dir, w->task));

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
		w->sink = w->def->sink_topic ? kafka_sink_create(w->dboid, w->def, w->task) :
			pg_sink_create(w->side);
		p = checkpoint_state_participant(&w->state);
		checkpoint_register(w->coord, &p);
		p = checkpoint_sink_participant(w->sink);
		checkpoint_register(w->coord, &p);
		p = savepoint_participant(&w->savepoint, w->dir, w->def,
								  w->task == 0 ? w->slot : NULL);
		checkpoint_register(w->coord, &p);
		if (w->ex != NULL)
		{
			CheckpointGroup g = {
				.arg = w,
				.prepared = group_prepared,
				.record = group_record,
				.decided = group_decided
			};

			savepoint_set_task(&w->savepoint, w->task, w->ntasks);

			p = task_participant(w);
			checkpoint_register(w->coord, &p);
			checkpoint_set_group(w->coord, &g);
		}
		p = checkpoint_task_epoch_participant(w->dboid, w->def, w->task);
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
	/* a parallel pipeline's task 0 restored a savepoint before starting its tasks */
	if (w->ex == NULL)
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
	if (w->slot)
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
		int32	   *ids = palloc(sizeof(int32) * Max(w->nparts, 1));
		PartitionPosition *mine = palloc(sizeof(PartitionPosition) * Max(w->nparts, 1));
		int			n = 0;

		/* a parallel task resolves and records only the partitions it reads */
		for (int p = 0; p < w->nparts; p++)
			if (w->ex == NULL || p % w->ntasks == w->task)
			{
				ids[n] = p;
				mine[n++] = start[p];
			}
		start_positions_apply(w->def, w->src, w->checkpoint_id, n, ids, mine);
		for (int i = 0; i < n; i++)
			start[ids[i]] = mine[i];
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
		w->store = state_open_worker(checkpoint_db_dir(w->dir), &tuning);
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
		if (w->ex != NULL)
		{
			/* this task's share: partitions task, task + N, task + 2N... */
			w->mine = MemoryContextAlloc(TopMemoryContext, sizeof(int32) * Max(w->nparts, 1));
			w->nmine = 0;
			for (int p = w->task; p < w->nparts; p += w->ntasks)
				w->mine[w->nmine++] = p;
			ksrc_assign_partitions(w->src, w->nmine, w->mine, offsets);
		}
		else
			ksrc_assign(w->src, w->nparts, offsets);
	}
	/* The watermark the last completed checkpoint recorded. */
	w->watermark = checkpoint_last_completed(w->coord)->watermark;
	if (w->ex != NULL)
		parallel_startup(w);

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
		/* routing by the operators' own group key (group_key.h) */
		if (w->ex != NULL)
		{
			kstate_codec_init(&w->codec, w->def);
			initStringInfo(&w->gk);
			if (local_agg_enabled(w->def))
				w->local = local_agg_create(w->def);
			w->hot = hot_keys_create(&w->codec, w->event_desc);
		}
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

	if (w->ex != NULL)
		ereport(LOG,
				(errmsg("streamflink pipeline \"%s\" task %d of %d started from checkpoint " INT64_FORMAT " on %d of %d partitions, key groups %d to %d",
						w->def->name, w->task, w->ntasks, w->checkpoint_id, w->nmine,
						w->nparts, w->kg_first, w->kg_last)));
	else
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
	task_clock_init(&w->clock);

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
			task_clock_switch(&w->clock, TASK_IDLE);
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
			task_clock_switch(&w->clock, TASK_BUSY);
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

/* Task 1..N-1 of a parallel pipeline: attach, recover, join, run. */
static void
parallel_task_main(Worker *w, int32 pipeline_id, dsm_handle handle)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	/* gone: task 0 left before we started, and starts a new group */
	w->ex = exchange_attach(handle, w->task);
	MemoryContextSwitchTo(old);
	if (w->ex == NULL)
		proc_exit(0);
	w->ntasks = exchange_ntasks(w->ex);
	w->def = load_definition(pipeline_id);
	if (w->def == NULL || !w->def->running)
		proc_exit(0);
	pgstat_report_appname(psprintf("streamflink %s task %d", w->def->name, w->task));
	w->tslot = task_claim(w->dboid, pipeline_id, w->task, 30000, true);
	worker_startup(w);
	parallel_join(w);
	parallel_loop(w);
}

void
streamflink_worker_main(Datum arg)
{
	int32		pipeline_id = DatumGetInt32(arg);
	Worker	   *w;
	Oid			dboid;
	Oid			spcoid;
	TransactionId starter;
	int32		task = 0;
	dsm_handle	handle = 0;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	memcpy(&starter, MyBgworkerEntry->bgw_extra + sizeof(Oid), sizeof(TransactionId));
	memcpy(&spcoid, MyBgworkerEntry->bgw_extra + sizeof(Oid) + sizeof(TransactionId), sizeof(Oid));
	/* zero from the launcher: task 0; other tasks come from task 0 */
	memcpy(&task, MyBgworkerEntry->bgw_extra + EXTRA_TASK_OFFSET, sizeof(int32));
	memcpy(&handle, MyBgworkerEntry->bgw_extra + EXTRA_HANDLE_OFFSET, sizeof(dsm_handle));

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
	w->task = task;
	w->ntasks = 1;
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

		if (task > 0)
		{
			/* a task of a parallel pipeline: task 0 started us */
			parallel_task_main(w, pipeline_id, handle);
			proc_exit(0);		/* not reached */
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

		w->ntasks = Max(w->def->parallelism, 1);
		w->tslot = task_claim(dboid, pipeline_id, 0, 30000, w->ntasks > 1);
		if (w->ntasks > 1)
		{
			/* every task's snapshot of a savepoint to restore, before they start */
			w->recovering = true;
			savepoint_prepare_restore(dboid, w->def, state_pipeline_dir(dboid, pipeline_id));
			w->recovering = false;
			start_tasks(w);
			worker_startup(w);
			parallel_join(w);
			parallel_loop(w);
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
		/* a parallel pipeline's other tasks leave now, not after the back-off */
		if (w->ex != NULL)
		{
			exchange_report_failure(w->ex, edata->message);
			stop_tasks(w);
			exchange_detach(w->ex);
			w->ex = NULL;
		}

		/*
		 * Recovery refused what it found (state of another release, a
		 * catalog not updated): a restart would find the same, so wait to
		 * be stopped, showing why.
		 */
		if (w->recovering && edata->sqlerrcode == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE &&
			w->task == 0)
		{
			pgstat_report_activity(STATE_IDLE, "failed, waiting to be stopped");
			for (;;)
			{
				worker_sleep(1000);
				if (got_stop)
					proc_exit(0);
			}
		}
		/*
		 * Tasks other than 0 are not restarted: task 0 notices that this
		 * one left, and starts the group again.
		 */
		if (w->task > 0)
			proc_exit(1);
		pgstat_report_activity(STATE_IDLE, "failed, restarting");

		/* Back off before the restart, so a persistent error is no busy loop. */
		for (int i = 0; i < 50 && !got_stop; i++)
			worker_sleep(100);
		proc_exit(got_stop ? 0 : 1);
	}
	PG_END_TRY();
}
