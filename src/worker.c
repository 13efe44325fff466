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
 * A parallel pipeline's tasks start and recover here too, then run the
 * loop of parallel_task.c.
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
#include "parallel_task.h"
#include "poison.h"
#include "run_as.h"
#include "savepoint.h"
#include "watermark.h"
#include "local_agg.h"
#include "window.h"
#include "hot_keys.h"
#include "worker.h"
#include "worker_internal.h"

PGDLLEXPORT void streamflink_worker_main(Datum arg);

/* streamflink.batch_size */
int			worker_batch_size = 5000;

/* streamflink.checkpoint_timeout (ms): a parallel checkpoint's limit */
int			worker_checkpoint_timeout_ms = 10 * 60 * 1000;

#define UNIX_EPOCH_TS (-((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE)) * USECS_PER_DAY)

volatile sig_atomic_t worker_got_stop = false;
static Worker *worker_for_exit = NULL;

static void report_task(Worker *w, TimestampTz now);


void
worker_define_settings(void)
{
	DefineCustomIntVariable("streamflink.batch_size",
							"Kafka messages a worker takes in one batch.",
							NULL,
							&worker_batch_size, 5000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("streamflink.checkpoint_timeout",
							"Time a checkpoint of a parallel pipeline may take before it is aborted.",
							"An aborted checkpoint restarts every task of the pipeline from the last completed one.",
							&worker_checkpoint_timeout_ms, 10 * 60 * 1000, 1000, INT_MAX,
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
		worker_got_stop = true;
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
	if (worker_got_stop && ++stop_ticks == STOP_GRACE_TICKS)
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
void
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

void
worker_report_progress(Worker *w)
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

	/*
	 * RocksDB's own numbers: once a second is plenty (see state.h).  Each
	 * task of a parallel pipeline has a database of its own: it publishes
	 * its numbers in the exchange, and task 0 shows their totals.
	 */
	if (now - w->metrics_at >= USECS_PER_SEC && (w->slot != NULL || w->ex != NULL))
	{
		StateMetrics m;

		state_collect_metrics(w->store, &m);
		w->metrics_at = now;
		if (w->ex != NULL)
		{
			ExchangeControl *ctl = exchange_control(w->ex);
			ExchangeTask *mine = &ctl->tasks[w->task];

			SpinLockAcquire(&mine->metrics_mutex);
			mine->state_metrics = m;
			SpinLockRelease(&mine->metrics_mutex);

			/* task 0, the one with the pipeline's slot, adds the others' */
			if (w->slot != NULL)
			{
				for (int t = 0; t < w->ntasks; t++)
				{
					ExchangeTask *task = &ctl->tasks[t];
					StateMetrics its;

					if (t == w->task)
						continue;
					SpinLockAcquire(&task->metrics_mutex);
					its = task->state_metrics;
					SpinLockRelease(&task->metrics_mutex);
					state_metrics_add(&m, &its);
				}
			}
		}
		if (w->slot != NULL)
		{
			SpinLockAcquire(&w->slot->mutex);
			w->slot->state_metrics = m;
			SpinLockRelease(&w->slot->mutex);
		}
	}
	if (w->slot == NULL)
		return;

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
char *
worker_decode_event(Worker *w, KafkaMessage *msg, TimestampTz *time)
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

/*
 * Message msg decoded into w->event, with its event time; false if it went
 * to the dead letters instead (undecodable, or skipped as poison).
 */
static bool
decode_event(Worker *w, KafkaMessage *msg, TimestampTz *t)
{
	PartitionState *ps = &w->parts[msg->partition];
	char	   *error;
	SfMessagePos pos = {msg->partition, msg->offset};

	w->events_total++;
	w->rate_events++;
	w->stats.events++;
	/* a floor only: the consumer's position replaces it (see worker_take_positions) */
	ps->pos.next_offset = Max(ps->pos.next_offset, msg->offset + 1);

	error = worker_decode_event(w, msg, t);
	if (error == NULL)
		error = poison_skip(w->poison, pos);
	if (error)
	{
		side_output_dead_letter(w->side, msg->partition, msg->offset, msg->payload, msg->len, error);
		return false;
	}
	return true;
}

/* The event of message msg, decoded into w->event, to the operator. */
static void
process_event(Worker *w, KafkaMessage *msg, TimestampTz t)
{
	PartitionState *ps = &w->parts[msg->partition];
	SfMessagePos pos = {msg->partition, msg->offset};

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
 * Messages msgs[0..n-1] of a batch (n <= WORKER_LOOKAHEAD): all decoded
 * first, each into a slot of its own, then the operator is told which
 * events come (operator_prefetch), then each is processed in turn.  With
 * many keys an event's state is seldom in the CPU's caches: taken one at a
 * time as they were decoded, each event's lookups waited for their cache
 * misses in turn; told of the events ahead, the operator brings in the
 * lines of all of them at once, so the misses overlap.  The events' values
 * and what processing them allocates live in msg_cxt, reset after the
 * chunk; the operator's flush between events runs outside it, as it runs
 * between batches.
 */
static void
process_chunk(Worker *w, KafkaMessage *msgs, int n, TimestampTz now)
{
	TupleTableSlot *events[WORKER_LOOKAHEAD];
	TimestampTz times[WORKER_LOOKAHEAD];
	KafkaMessage *taken[WORKER_LOOKAHEAD];
	int			m = 0;
	MemoryContext old = MemoryContextSwitchTo(w->msg_cxt);

	Assert(n <= WORKER_LOOKAHEAD);
	for (int i = 0; i < n; i++)
	{
		w->parts[msgs[i].partition].last_message = now;
		w->event = w->events[m];
		if (decode_event(w, &msgs[i], &times[m]))
		{
			events[m] = w->event;
			taken[m++] = &msgs[i];
		}
	}
	operator_prefetch(w->op, m, events, times);
	for (int j = 0; j < m; j++)
	{
		w->event = events[j];
		process_event(w, taken[j], times[j]);
		MemoryContextSwitchTo(old);
		operator_maybe_flush(w->op);
		MemoryContextSwitchTo(w->msg_cxt);
	}
	w->event = w->events[0];
	MemoryContextSwitchTo(old);
	MemoryContextReset(w->msg_cxt);
}

/*
 * The offset of the next message of each partition, as the consumer
 * reports it: on a real broker, transaction markers occupy offsets, and
 * the position steps over them, where the last message's offset + 1 would
 * point at a marker.  Messages handed to us are processed before the next
 * checkpoint, so the position never runs ahead of what the checkpoint
 * covers.  Never below last + 1 (that would replay a message).
 */
void
worker_take_positions(Worker *w)
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
	worker_take_positions(w);

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
		if (worker_got_stop)
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
	StateTuning tuning;

	if (w->slot)
		slot_set_status(w->slot, SLOT_RECOVERING, NULL);
	/* before the state's tuning and its cache's bound are taken */
	state_memory_set_tasks(w->ntasks);

	/*
	 * RocksDB tuning, checked again for the owner (and against the memory
	 * budget as it is now, see state_tuning.h), before any other work:
	 * settings refused now are refused at every start (see the error path).
	 */
	StartTransactionCommand();
	w->resolving_tuning = true;
	state_tuning_resolve(w->def->state_profile, w->def->state_options,
						 superuser_arg(w->def->owner), true, w->ntasks,
						 w->def->name, &tuning);
	w->resolving_tuning = false;
	CommitTransactionCommand();
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
			parallel_register(w);
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

	w->store = state_open_worker(checkpoint_db_dir(w->dir), &tuning);
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
		for (int i = 0; i < WORKER_LOOKAHEAD; i++)
			w->events[i] = MakeSingleTupleTableSlot(w->event_desc, &TTSOpsVirtual);
		w->event = w->events[0];
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
		w->batch = palloc(sizeof(KafkaMessage) * Max(worker_batch_size, 1));
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
		if (worker_got_stop)
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
		n = ksrc_consume(w->src, w->batch, Min(worker_batch_size, 1000000), 0, &err);
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
			for (int i = 0; i < n; i += WORKER_LOOKAHEAD)
				process_chunk(w, &w->batch[i], Min(WORKER_LOOKAHEAD, n - i), now);
			sink_flush(w->sink);
			run_as_restore(&as);
			PopActiveSnapshot();
			SPI_finish();
			CommitTransactionCommand();
			worker_take_positions(w);
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
			worker_report_progress(w);
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
				if (worker_got_stop)
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
			parallel_start_tasks(w);
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
			parallel_stop_tasks(w);
			exchange_detach(w->ex);
			w->ex = NULL;
		}

		/*
		 * Recovery refused what it found (state of another release, a
		 * catalog not updated), or the state's tuning was refused (a
		 * definition that never went through the catalog's trigger, a bound
		 * a later release tightened; a tenant's values beyond its bounds
		 * are reduced, not refused): a restart would find the same, so wait
		 * to be stopped, showing why.
		 */
		if (((w->recovering && edata->sqlerrcode == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE) ||
			 (w->resolving_tuning &&
			  (edata->sqlerrcode == ERRCODE_INVALID_PARAMETER_VALUE ||
			   edata->sqlerrcode == ERRCODE_SYNTAX_ERROR ||
			   edata->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE))) &&
			w->task == 0)
		{
			pgstat_report_activity(STATE_IDLE, "failed, waiting to be stopped");
			for (;;)
			{
				worker_sleep(1000);
				if (worker_got_stop)
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
		for (int i = 0; i < 50 && !worker_got_stop; i++)
			worker_sleep(100);
		proc_exit(worker_got_stop ? 0 : 1);
	}
	PG_END_TRY();
}
