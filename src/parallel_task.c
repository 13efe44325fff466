/*-------------------------------------------------------------------------
 *
 * parallel_task.c
 *	  A task of a parallel pipeline: its loop, the exchange's routing,
 *	  barriers and channel state, and the pipeline-level checkpoint
 *	  decision.  Moved out of worker.c, which starts and recovers the task
 *	  (worker_startup) before it runs here.
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
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "checkpoint.h"
#include "exchange.h"
#include "group_key.h"
#include "hot_keys.h"
#include "kafka_source.h"
#include "local_agg.h"
#include "operator.h"
#include "parallel_task.h"
#include "poison.h"
#include "run_as.h"
#include "savepoint.h"
#include "side_output.h"
#include "sink.h"
#include "slot.h"
#include "state.h"
#include "task.h"
#include "watermark.h"
#include "window.h"
#include "worker_internal.h"

static void load_channel_state(Worker *w);

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
void
parallel_start_tasks(Worker *w)
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
void
parallel_stop_tasks(Worker *w)
{
	if (w->handles == NULL)
		return;
	for (int t = 1; t < w->ntasks; t++)
		if (w->handles[t] != NULL)
			TerminateBackgroundWorker(w->handles[t]);
}

/* In worker_startup, once the checkpoint is recovered and positions read. */
void
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
	initStringInfo(&w->ahead);
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
void
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
		if (worker_got_stop)
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

	error = worker_decode_event(w, msg, &t);
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

/*
 * Source side: one message of a batch read from the source, routed.  What
 * routing it allocates lives in msg_cxt, reset after it, and its partition
 * had a message now (the idle timeout counts from there).
 */
static void
take_message(Worker *w, KafkaMessage *msg, TimestampTz now)
{
	MemoryContext old = MemoryContextSwitchTo(w->msg_cxt);

	w->parts[msg->partition].last_message = now;
	route_message(w, msg);
	MemoryContextSwitchTo(old);
	MemoryContextReset(w->msg_cxt);
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
	worker_take_positions(w);
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

/*
 * Operator side: a record's tuple into w->event, deformed from a copy in
 * the current memory context (the message context).
 */
static void
deform_record(Worker *w, ExchangeRecord *rec)
{
	MinimalTuple mt = palloc(rec->tuple_len);	/* aligned copy */
	HeapTupleData htup;

	memcpy(mt, rec->tuple, rec->tuple_len);
	htup.t_len = mt->t_len + MINIMAL_TUPLE_OFFSET;
	htup.t_data = (HeapTupleHeader) ((char *) mt - MINIMAL_TUPLE_OFFSET);
	ItemPointerSetInvalid(&htup.t_self);
	htup.t_tableOid = InvalidOid;
	ExecClearTuple(w->event);
	heap_deform_tuple(&htup, w->event_desc, w->event->tts_values, w->event->tts_isnull);
	ExecStoreVirtualTuple(w->event);
}

/* Operator side: the event of record rec, deformed into w->event, processed. */
static void
process_record(Worker *w, ExchangeRecord *rec)
{
	SfMessagePos pos = {rec->partition, rec->offset};
	char	   *error;

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
}

/*
 * Operator side: the events kept by keep_record, processed as the single
 * worker's loop processes a chunk (process_chunk in worker.c): each
 * deformed into a slot of its own, the operator told of them
 * (operator_prefetch), then each processed in turn.  Called before
 * anything else read from a channel (or a checkpoint's channel state) is
 * taken, so that everything is taken in the order it came.
 */
static void
take_records(Worker *w)
{
	ExchangeRecord recs[WORKER_LOOKAHEAD];
	TupleTableSlot *events[WORKER_LOOKAHEAD];
	TimestampTz times[WORKER_LOOKAHEAD];
	const char *p = w->ahead.data;
	int			n = w->nahead;
	MemoryContext old;

	if (n == 0)
		return;
	old = MemoryContextSwitchTo(w->msg_cxt);
	for (int i = 0; i < n; i++)
	{
		p += exchange_parse(p, &recs[i]);
		w->event = w->events[i];
		deform_record(w, &recs[i]);
		events[i] = w->event;
		times[i] = recs[i].time;
	}
	operator_prefetch(w->op, n, events, times);
	for (int i = 0; i < n; i++)
	{
		w->event = events[i];
		process_record(w, &recs[i]);
		MemoryContextSwitchTo(old);
		operator_maybe_flush(w->op);
		MemoryContextSwitchTo(w->msg_cxt);
	}
	w->event = w->events[0];
	MemoryContextSwitchTo(old);
	MemoryContextReset(w->msg_cxt);
	w->nahead = 0;
	resetStringInfo(&w->ahead);
}

/*
 * Operator side: an event from a channel (or a checkpoint's channel
 * state), kept to be processed with the ones after it (take_records), up
 * to WORKER_LOOKAHEAD.  Its bytes are copied: a channel's record is valid
 * only until the next is read.
 */
static void
keep_record(Worker *w, ExchangeRecord *rec)
{
	appendBinaryStringInfo(&w->ahead, rec->raw, rec->raw_len);
	if (++w->nahead == WORKER_LOOKAHEAD)
		take_records(w);
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
	SfMessagePos pos = {rec->partition, rec->offset};

	deform_record(w, rec);
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
			keep_record(w, &rec);
		else if (rec.kind == EXCHANGE_PARTIAL)
		{
			take_records(w);
			take_partial(w, &rec);
		}
		if (++n % 64 == 0 && GetCurrentTimestamp() > deadline)
			break;
	}
	take_records(w);
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

		for (int i = 0; i < worker_batch_size && !w->blocked[c]; i++)
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
					{
						take_records(w);
						take_partial(w, &rec);
					}
					else
						keep_record(w, &rec);
					break;
				case EXCHANGE_WATERMARK:
					if (w->chan_idle[c] && !rec.idle)
						exchange_saw_resume(w->ex, c);	/* local_bound */
					w->chan_wm[c] = rec.time;
					w->chan_idle[c] = rec.idle;
					break;
				case EXCHANGE_BARRIER:
					take_records(w);	/* the epoch's last events */
					barrier_received(w, c, rec.checkpoint_id);
					break;
			}
		}
		take_records(w);
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
		if (GetCurrentTimestamp() - ctl->triggered_at > (int64) worker_checkpoint_timeout_ms * 1000)
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

/*
 * In worker_startup, among the participants in the order they prepare
 * (before the epoch transaction): this task's figures, and the
 * pipeline-level decision over the tasks.
 */
void
parallel_register(Worker *w)
{
	CheckpointGroup g = {
		.arg = w,
		.prepared = group_prepared,
		.record = group_record,
		.decided = group_decided
	};
	CheckpointParticipant p;

	savepoint_set_task(&w->savepoint, w->task, w->ntasks);

	p = task_participant(w);
	checkpoint_register(w->coord, &p);
	checkpoint_set_group(w->coord, &g);
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
void
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
				now - ctl->triggered_at > (int64) worker_checkpoint_timeout_ms * 1000)
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("checkpoint " INT64_FORMAT " of pipeline \"%s\" did not complete within streamflink.checkpoint_timeout",
								trigger, w->def->name),
						 errdetail("The checkpoint is aborted; every task restarts from the last completed one.")));
			if (worker_got_stop && stop_after == 0 && trigger == decided)
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
			n = ksrc_consume(w->src, w->batch, Min(worker_batch_size, 1000000), 0, &err);
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
					take_message(w, &w->batch[i], now);
				hot_keys_render(w->hot, now);
				work_end(w, &as);
				worker_take_positions(w);
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
			worker_report_progress(w);
			last_report = now;
		}
	}
}
