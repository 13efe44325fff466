/*-------------------------------------------------------------------------
 *
 * exchange.h
 *	  The channels between the tasks of a parallel pipeline: a DSM segment
 *	  per pipeline holding an shm_mq per ordered pair of tasks (N x (N-1);
 *	  a task's records to itself skip the queues), batched records, and the
 *	  control block through which the tasks take checkpoints together.
 *
 * As Postgres' parallel query (access/transam/parallel.c, tqueue.c), task
 * 0 creates the segment with shm_toc and the queues; the other tasks are
 * background workers task 0 registers with the segment's handle in
 * bgw_extra, and attach.  Every send is nowait (shm_mq_send with nowait):
 * a task whose output is full keeps draining its own inputs instead of
 * waiting on its peer, who might be waiting on it (the deadlock of two
 * blocking senders); the time its source side cannot send is its
 * backpressured time.
 *
 * Records (in a batch, back to back, unaligned):
 *	 'E' event		[partition:4][offset:8][event time:8][tuple len:4][payload len:4]
 *					[minimal tuple][payload]
 *	 'W' watermark	[watermark:8][idle:1]
 *	 'B' barrier	[checkpoint id:8]
 *	 'P' partial	[partition:4][offset:8][window start:8][events:8][tuple len:4]
 *					[states len:4][minimal tuple][serialized states]
 *					(local_agg.h: the partition and offset of its first event,
 *					whose tuple carries the key)
 * Records on one channel keep their order; a barrier n on a channel
 * separates what belongs to checkpoint n from what comes after.
 *
 * Memory: an Exchange and its batch buffers live in the context current at
 * exchange_create / exchange_attach (the worker's TopMemoryContext); the
 * segment stays mapped until the process exits (dsm_pin_mapping).  A
 * peer's exit detaches its queues: the next send to it or receive from it
 * raises an error, and the worker restarts (see worker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_EXCHANGE_H
#define STREAMFLINK_EXCHANGE_H

#include "lib/stringinfo.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "state.h"

#define EXCHANGE_EVENT		'E'
#define EXCHANGE_WATERMARK	'W'
#define EXCHANGE_BARRIER	'B'
#define EXCHANGE_PARTIAL	'P'

/* What each task publishes about the checkpoint it prepared. */
typedef struct ExchangeTaskFigures
{
	int64		start_delay_us;
	int64		alignment_us;
	int64		duration_us;
	int64		events;			/* taken by its operator side */
	int64		consumed;		/* messages its source side read */
	int64		rows_emitted;
	int64		state_bytes;
	int64		new_state_bytes;
	TimestampTz watermark;
	bool		unaligned;
	int64		persisted_bytes;	/* channel state */
	int64		sync_us;		/* its state's flush and snapshot */
	TimestampTz sync_end;		/* when that ended (DT_NOBEGIN: no state) */
} ExchangeTaskFigures;

typedef struct ExchangeTask
{
	pid_t		pid;			/* set when attached */
	PGPROC	   *proc;			/* its latch, to wake it */
	pg_atomic_uint64 prepared;	/* last checkpoint it prepared */
	ExchangeTaskFigures figures;	/* of 'prepared', written before it */
	/* progress, for task 0's totals in streamflink.pipelines (its own writer) */
	int64		events;
	int64		dead_letters;
	int64		late_events;
	int64		rows_emitted;
	int64		lag;			/* -1 unknown */
	int64		open_count;
	double		events_per_second;
	/* its operator's watermark (local_agg.h); DT_NOEND until first set */
	pg_atomic_uint64 op_watermark;
	/* its state's RocksDB numbers, for task 0's totals (state_metrics) */
	slock_t		metrics_mutex;
	StateMetrics state_metrics;
} ExchangeTask;

/* The shared control block: written with atomics, read by every task. */
typedef struct ExchangeControl
{
	int			ntasks;
	Size		queue_size;
	pg_atomic_uint32 ready;		/* tasks recovered and attached */
	pg_atomic_uint64 trigger;	/* checkpoint requested by task 0 */
	TimestampTz triggered_at;	/* of 'trigger', written before it */
	pg_atomic_uint64 decided;	/* last checkpoint decided */
	pg_atomic_uint64 stop_after;	/* 0, or 1 + the checkpoint to stop after */
	pg_atomic_uint32 dirty;		/* events or firing since the last trigger */
	pg_atomic_uint32 failed;	/* 0; 1 while error_task writes, 2 written */
	int			error_task;		/* the first task that failed, and why */
	char		error[256];
	ExchangeTask tasks[FLEXIBLE_ARRAY_MEMBER];
	/*
	 * then per channel s -> d: pg_atomic_uint64 bytes sent, bytes received,
	 * and how often d saw s come back from idle (local_agg.h)
	 */
} ExchangeControl;

typedef struct Exchange Exchange;

/* streamflink.exchange_queue_size, streamflink.exchange_batch_size */
extern void exchange_define_settings(void);

/* Task 0: create the segment for 'ntasks' tasks. */
extern Exchange *exchange_create(int ntasks);
extern dsm_handle exchange_handle(Exchange *ex);

/* Leave at once (on error): the peers' queues detach, they fail and leave. */
extern void exchange_detach(Exchange *ex);

/*
 * Task 0: the worker of 'task' (so that a task that failed to start is
 * noticed by its queues, shm_mq_set_handle).
 */
extern void exchange_set_worker(Exchange *ex, int task, BackgroundWorkerHandle *handle);

/* Tasks 1..N-1: attach; NULL if the segment is gone (task 0 left). */
extern Exchange *exchange_attach(dsm_handle handle, int task);

extern ExchangeControl *exchange_control(Exchange *ex);
extern int	exchange_task(Exchange *ex);
extern int	exchange_ntasks(Exchange *ex);

/*
 * A task failed: record why (the first one only), for the others' errors;
 * and the message of the first failure, if any (palloc'd), or NULL.
 */
extern void exchange_report_failure(Exchange *ex, const char *message);
extern char *exchange_failure(Exchange *ex, int *task);

/* ERROR: task 'peer' is gone (with the first failure's message, if any). */
extern void exchange_peer_gone(Exchange *ex, int peer) pg_attribute_noreturn();

/* Wake every other task (after a change to the control block). */
extern void exchange_wake_all(Exchange *ex);

/* --- sending -------------------------------------------------------------- */

/* Append a record for task 'dest' (sent by exchange_flush). */
extern void exchange_put_event(Exchange *ex, int dest, int32 partition, int64 offset,
							   TimestampTz t, const void *tuple, uint32 tuple_len,
							   const char *payload, uint32 payload_len);
extern void exchange_put_watermark(Exchange *ex, int dest, TimestampTz wm, bool idle);
extern void exchange_put_barrier(Exchange *ex, int dest, int64 id);
extern void exchange_put_partial(Exchange *ex, int dest, int32 partition, int64 offset,
								 TimestampTz start, int64 events,
								 const void *tuple, uint32 tuple_len,
								 const char *states, uint32 states_len);

/*
 * Two-stage aggregation (local_agg.h) asks what the owner's watermark can
 * be when a partial arrives.  The operator side publishes its watermark
 * after each change, and counts each channel's return from idle; the
 * source side reads them (task 'dest', and what 'dest' saw of this
 * task's channel).
 */
extern void exchange_publish_watermark(Exchange *ex, TimestampTz wm);
extern void exchange_saw_resume(Exchange *ex, int src);
extern TimestampTz exchange_published_watermark(Exchange *ex, int dest);
extern uint64 exchange_resumes_seen(Exchange *ex, int dest);

/*
 * Send what can be sent without waiting.  Returns true if every output is
 * below one batch (the source side may take more input); false means
 * backpressure.  ERROR if a peer is gone.
 */
extern bool exchange_flush(Exchange *ex);

/* --- receiving ------------------------------------------------------------ */

typedef struct ExchangeRecord
{
	char		kind;
	int32		partition;
	int64		offset;
	TimestampTz time;			/* event time, or the watermark */
	bool		idle;
	int64		checkpoint_id;
	const char *tuple;			/* unaligned: copy before use */
	uint32		tuple_len;
	const char *payload;		/* or a partial's serialized states */
	uint32		payload_len;
	int64		events;			/* a partial's */
	const char *raw;			/* the whole record, as sent */
	uint32		raw_len;
} ExchangeRecord;

/*
 * Parse the record at 'p' (as exchange_next returns it, or as kept from
 * its raw bytes); returns its length.
 */
extern Size exchange_parse(const char *p, ExchangeRecord *rec);

/*
 * The next record from channel 'src' (src == own task: the local one),
 * without waiting; false if none now.  The record's bytes stay valid until
 * the next call for the same channel.  ERROR if the peer is gone.
 */
extern bool exchange_next(Exchange *ex, int src, ExchangeRecord *rec);

/* Fill of the fullest input and output queue, 0..1. */
extern void exchange_fill(Exchange *ex, double *input, double *output);

#endif							/* STREAMFLINK_EXCHANGE_H */
