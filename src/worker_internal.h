/*-------------------------------------------------------------------------
 *
 * worker_internal.h
 *	  The state of one pipeline's worker, shared by worker.c (start-up, the
 *	  single worker's loop, the bgworker's entry point) and parallel_task.c
 *	  (a parallel pipeline's task loop).  Only for those two files: other
 *	  modules see the worker through worker.h.
 *
 * Memory: the Worker and what it keeps for the life of the process are in
 * TopMemoryContext; what one message needs is in msg_cxt, reset after each
 * message (after each chunk of up to WORKER_LOOKAHEAD events, where they
 * are taken together: process_chunk, take_records).  Threads: none
 * of ours; the worker's code runs in the backend's one thread (librdkafka
 * and RocksDB run their own, behind kafka_source.h and state.h).
 * Ownership: worker.c creates the Worker and closes its source, store and
 * slots at exit (worker_shmem_exit); parallel_task.c owns the fields of the
 * parallel part (the exchange, the channels' state).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_WORKER_INTERNAL_H
#define STREAMFLINK_WORKER_INTERNAL_H

#include <signal.h>

#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "postmaster/bgworker.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "checkpoint.h"
#include "decode.h"
#include "exchange.h"
#include "group_key.h"
#include "hot_keys.h"
#include "kafka_source.h"
#include "local_agg.h"
#include "operator.h"
#include "poison.h"
#include "savepoint.h"
#include "side_output.h"
#include "sink.h"
#include "slot.h"
#include "state.h"
#include "task.h"
#include "watermark.h"

/* bgw_extra: dboid, starter xid, tablespace, then task and exchange */
#define EXTRA_TASK_OFFSET (sizeof(Oid) + sizeof(TransactionId) + sizeof(Oid))
#define EXTRA_HANDLE_OFFSET (EXTRA_TASK_OFFSET + sizeof(int32))

typedef WatermarkPartition PartitionState;

/*
 * Events taken at once, decoded (the single worker's loop) or read from a
 * channel (a parallel task's operator side) before any is processed: the
 * events the operator is told of ahead (operator_prefetch).  A few dozen
 * are enough for the cache misses of their state's lookups to overlap.
 */
#define WORKER_LOOKAHEAD 32

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
	TupleTableSlot *event;		/* the event being decoded or processed */
	TupleTableSlot *events[WORKER_LOOKAHEAD];	/* a chunk's (process_chunk) */
	Sink	   *sink;
	SideOutput *side;			/* dead letters, late events */
	Operator   *op;
	CheckpointCoordinator *coord;
	StateParticipant state;		/* the operator state, as a participant */
	SavepointParticipant savepoint; /* savepoints, as a participant */
	bool		recovering;		/* in checkpoint_recover (see the error path) */
	bool		resolving_tuning;	/* in state_tuning_resolve (the same) */
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
	/* events read from a channel, kept to be taken together (take_records) */
	StringInfoData ahead;
	int			nahead;
} Worker;

/* streamflink.batch_size */
extern int	worker_batch_size;

/* streamflink.checkpoint_timeout (ms): a parallel checkpoint's limit */
extern int	worker_checkpoint_timeout_ms;

/* a stop requested by streamflink.stop() (see worker_sigterm) */
extern volatile sig_atomic_t worker_got_stop;

/* worker.c, for both loops */
extern void worker_sleep(long ms);
extern void worker_report_progress(Worker *w);
extern char *worker_decode_event(Worker *w, KafkaMessage *msg, TimestampTz *time);
extern void worker_take_positions(Worker *w);

#endif							/* STREAMFLINK_WORKER_INTERNAL_H */
