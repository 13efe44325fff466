/*-------------------------------------------------------------------------
 *
 * task.c
 *	  The tasks of running pipelines in shared memory, the clock of busy /
 *	  idle / backpressured time, and streamflink._tasks() (see task.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "task.h"
#include "tenancy.h"

typedef struct TaskArray
{
	LWLock	   *lock;
	int			ntasks;
	TaskSlot	tasks[FLEXIBLE_ARRAY_MEMBER];
} TaskArray;

static TaskArray *tasks = NULL;

PG_FUNCTION_INFO_V1(streamflink_tasks);

/*
 * Every task is a background worker: as many entries as there can be
 * (max_worker_processes), and at least the worker slots
 * (streamflink.max_workers, slot.c), one per running pipeline.
 */
static int
task_entries(void)
{
	const char *v = GetConfigOption("streamflink.max_workers", true, false);

	return Max(v ? atoi(v) : 16, Max(max_worker_processes, 1));
}

Size
task_shmem_size(void)
{
	return add_size(offsetof(TaskArray, tasks),
					mul_size(sizeof(TaskSlot), task_entries()));
}

/* Call holding AddinShmemInitLock, after the LWLock tranche exists. */
void
task_shmem_init(void)
{
	bool		found;

	tasks = ShmemInitStruct("streamflink tasks", task_shmem_size(), &found);
	if (!found)
	{
		memset(tasks, 0, task_shmem_size());
		/* the worker slots' lock: claims are rare */
		tasks->lock = &(GetNamedLWLockTranche("streamflink"))->lock;
		tasks->ntasks = task_entries();
		for (int i = 0; i < tasks->ntasks; i++)
			SpinLockInit(&tasks->tasks[i].mutex);
	}
}

static bool
holder_alive(TaskSlot *t)
{
	return t->pid != 0 && t->pid != MyProcPid && kill(t->pid, 0) == 0;
}

TaskSlot *
task_claim(Oid dboid, int32 pipeline_id, int task, int timeout_ms, bool required)
{
	if (tasks == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("streamflink must be loaded via shared_preload_libraries")));
	for (int waited = 0;; waited += 100)
	{
		TaskSlot   *mine = NULL;
		TaskSlot   *free_one = NULL;
		bool		busy = false;

		LWLockAcquire(tasks->lock, LW_EXCLUSIVE);
		for (int i = 0; i < tasks->ntasks; i++)
		{
			TaskSlot   *t = &tasks->tasks[i];

			if (t->in_use && t->dboid == dboid && t->pipeline_id == pipeline_id &&
				t->task == task)
			{
				if (holder_alive(t))
					busy = true;
				else
					mine = t;
			}
			else if (!t->in_use && free_one == NULL)
				free_one = t;
		}
		if (!busy && (mine != NULL || free_one != NULL))
		{
			TaskSlot   *t = mine ? mine : free_one;

			t->in_use = true;
			t->dboid = dboid;
			t->pipeline_id = pipeline_id;
			t->task = task;
			t->pid = MyProcPid;
			SpinLockAcquire(&t->mutex);
			memset(&t->m, 0, sizeof(t->m));
			t->m.watermark = DT_NOBEGIN;
			SpinLockRelease(&t->mutex);
			LWLockRelease(tasks->lock);
			return t;
		}
		LWLockRelease(tasks->lock);
		if (!busy && !required)
			return NULL;
		if (!busy)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("no free streamflink task entry for task %d of pipeline %d",
							task, pipeline_id),
					 errhint("Each task of a pipeline is a background worker: raise max_worker_processes (%d task entries now) and restart the server, or stop a pipeline.",
							 tasks->ntasks)));
		if (waited >= timeout_ms)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("task %d of pipeline %d is still held by another worker",
							task, pipeline_id)));
		pg_usleep(100 * 1000L);
		CHECK_FOR_INTERRUPTS();
	}
}

bool
task_am_task_of(int32 pipeline_id)
{
	bool		found = false;

	if (tasks == NULL)
		return false;
	LWLockAcquire(tasks->lock, LW_SHARED);
	for (int i = 0; i < tasks->ntasks && !found; i++)
	{
		TaskSlot   *t = &tasks->tasks[i];

		found = t->in_use && t->pid == MyProcPid && t->dboid == MyDatabaseId &&
			t->pipeline_id == pipeline_id;
	}
	LWLockRelease(tasks->lock);
	return found;
}

void
task_release(TaskSlot *slot)
{
	LWLockAcquire(tasks->lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid)
	{
		slot->in_use = false;
		slot->pid = 0;
	}
	LWLockRelease(tasks->lock);
}

void
task_report(TaskSlot *slot, const TaskMetrics *m)
{
	SpinLockAcquire(&slot->mutex);
	slot->m = *m;
	SpinLockRelease(&slot->mutex);
}

/* --- the clock ------------------------------------------------------------ */

void
task_clock_init(TaskClock *clock)
{
	memset(clock, 0, sizeof(*clock));
	clock->current = TASK_BUSY;
	clock->since = clock->window_start = GetCurrentTimestamp();
}

void
task_clock_tick(TaskClock *clock, TimestampTz now)
{
	int64		span = now - clock->window_start;

	if (span < USECS_PER_SEC)
		return;
	clock->us[clock->current] += now - clock->since;
	clock->since = now;
	for (int i = 0; i < 3; i++)
	{
		clock->ms_per_second[i] = (double) clock->us[i] * 1000.0 / span;
		clock->us[i] = 0;
	}
	if (clock->out_blocked)
	{
		clock->out_us += now - clock->out_since;
		clock->out_since = now;
	}
	clock->out_ms_per_second = (double) clock->out_us * 1000.0 / span;
	clock->out_us = 0;
	clock->window_start = now;
}

void
task_clock_output(TaskClock *clock, bool blocked)
{
	TimestampTz now;

	if (blocked == clock->out_blocked)
		return;
	now = GetCurrentTimestamp();
	if (clock->out_blocked)
		clock->out_us += now - clock->out_since;
	clock->out_blocked = blocked;
	clock->out_since = now;
}

void
task_clock_switch(TaskClock *clock, TaskTime state)
{
	TimestampTz now;

	if (state == clock->current)
		return;
	now = GetCurrentTimestamp();
	clock->us[clock->current] += now - clock->since;
	clock->since = now;
	clock->current = state;
	task_clock_tick(clock, now);
}

TaskSlot *
task_copy_visible(int *n)
{
	bool		all_visible = superuser();
	List	   *visible = all_visible ? NIL : sf_visible_pipelines();
	TaskSlot   *copies;

	*n = 0;
	if (tasks == NULL)
		return NULL;
	copies = palloc(sizeof(TaskSlot) * tasks->ntasks);
	LWLockAcquire(tasks->lock, LW_SHARED);
	for (int i = 0; i < tasks->ntasks; i++)
	{
		TaskSlot   *t = &tasks->tasks[i];

		if (!t->in_use || t->dboid != MyDatabaseId)
			continue;
		if (!all_visible && !list_member_int(visible, t->pipeline_id))
			continue;
		SpinLockAcquire(&t->mutex);
		memcpy(&copies[(*n)++], t, sizeof(TaskSlot));
		SpinLockRelease(&t->mutex);
	}
	LWLockRelease(tasks->lock);
	return copies;
}

/* --- streamflink._tasks() ------------------------------------------------- */

Datum
streamflink_tasks(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TaskSlot   *copies;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	if (tasks == NULL)
		PG_RETURN_VOID();
	/* As streamflink.pipelines: the tasks of the pipelines the caller sees. */
	copies = task_copy_visible(&n);

	for (int i = 0; i < n; i++)
	{
		TaskSlot   *t = &copies[i];
		TaskMetrics *m = &t->m;
		Datum		values[17];
		bool		nulls[17];
		Datum	   *parts;
		int			nlisted = Min(m->nparts, TASK_MAX_LISTED_PARTITIONS);

		memset(nulls, 0, sizeof(nulls));
		parts = palloc(sizeof(Datum) * Max(nlisted, 1));
		for (int p = 0; p < nlisted; p++)
			parts[p] = Int32GetDatum(m->partitions[p]);
		values[0] = Int32GetDatum(t->pipeline_id);
		values[1] = Int32GetDatum(t->task);
		values[2] = Int32GetDatum(t->pid);
		values[3] = Int32GetDatum(m->parallelism);
		values[4] = PointerGetDatum(construct_array(parts, nlisted, INT4OID, 4, true,
													TYPALIGN_INT));
		values[5] = Int32GetDatum(m->key_group_first);
		values[6] = Int32GetDatum(m->key_group_last);
		values[7] = Int64GetDatum(m->events_in);
		values[8] = Int64GetDatum(m->events_out);
		values[9] = Float8GetDatum(m->events_per_second);
		values[10] = Float8GetDatum(m->busy_ms_per_second);
		values[11] = Float8GetDatum(m->idle_ms_per_second);
		values[12] = Float8GetDatum(m->backpressured_ms_per_second);
		values[13] = Float8GetDatum(m->input_queue_fill);
		values[14] = Float8GetDatum(m->output_queue_fill);
		values[15] = TimestampTzGetDatum(m->watermark);
		nulls[15] = (m->watermark == DT_NOBEGIN);
		values[16] = Int64GetDatum(m->last_checkpoint);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
