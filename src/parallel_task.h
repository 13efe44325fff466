/*-------------------------------------------------------------------------
 *
 * parallel_task.h
 *	  A task of a parallel pipeline (parallel_task.c): the exchange between
 *	  tasks (routing, watermarks, barriers), aligned and unaligned
 *	  checkpoints with their channel state, and the pipeline-level decision
 *	  over the tasks' checkpoints (CheckpointGroup, checkpoint.h).
 *
 * Called by worker.c only, on its Worker (worker_internal.h).  Memory: what
 * a task keeps for its life is allocated in TopMemoryContext, what one
 * record needs in the worker's msg_cxt; channel state is held in the
 * Worker's StringInfos and persisted in the task's state directory.
 * Threads: none; the source side and the operator side of a task take
 * turns in its one loop.  Ownership: task 0 creates the exchange
 * (exchange.h) and registers the other tasks (parallel_start_tasks),
 * which attach to it (worker.c); a task's exit detaches it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_PARALLEL_TASK_H
#define STREAMFLINK_PARALLEL_TASK_H

struct Worker;

/* Task 0: the exchange and the other tasks' workers; their end on an error */
extern void parallel_start_tasks(struct Worker *w);
extern void parallel_stop_tasks(struct Worker *w);

/* In worker_startup: the task's participant and the group decision */
extern void parallel_register(struct Worker *w);

/* In worker_startup, once the checkpoint is recovered and positions read */
extern void parallel_startup(struct Worker *w);

/* Every task recovered: start together, then run until the stop or an error */
extern void parallel_join(struct Worker *w);
extern void parallel_loop(struct Worker *w);

#endif							/* STREAMFLINK_PARALLEL_TASK_H */
