/*-------------------------------------------------------------------------
 *
 * slot.c
 *	  The worker slots in shared memory (see slot.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "slot.h"

typedef struct SlotArray
{
	LWLock	   *lock;
	int			nslots;
	WorkerSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} SlotArray;

static int	max_workers = 16;

/* NULL unless the library was preloaded. */
static SlotArray *slots = NULL;

void
slot_define_settings(void)
{
	/*
	 * Without shared_preload_libraries the functions still load (to define
	 * pipelines and to say what is missing when one is started), but a
	 * server-start setting cannot be defined after startup.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("streamflink.max_workers",
								"Maximum number of pipeline workers running at once.",
								"Each running pipeline uses one background worker; "
								"max_worker_processes must leave room for them.",
								&max_workers, 16, 1, 1024,
								PGC_POSTMASTER, 0, NULL, NULL, NULL);
}

Size
slot_shmem_size(void)
{
	return add_size(offsetof(SlotArray, slots),
					mul_size(sizeof(WorkerSlot), max_workers));
}

/* Call holding AddinShmemInitLock. */
void
slot_shmem_init(void)
{
	bool		found;

	slots = ShmemInitStruct("streamflink", slot_shmem_size(), &found);
	if (!found)
	{
		memset(slots, 0, slot_shmem_size());
		slots->lock = &(GetNamedLWLockTranche("streamflink"))->lock;
		slots->nslots = max_workers;
		for (int i = 0; i < max_workers; i++)
			SpinLockInit(&slots->slots[i].mutex);
	}
}

void
slot_require_preload(void)
{
	if (slots == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("streamflink must be loaded via shared_preload_libraries"),
				 errhint("Add streamflink to shared_preload_libraries in postgresql.conf and restart the server.")));
}

int
slot_count(void)
{
	return slots ? slots->nslots : 0;
}

/*
 * The slot of a pipeline, or NULL.  A pipeline has at most one: a worker
 * claiming a slot takes over its pipeline's before any free one.  The
 * caller holds slots->lock.
 */
static WorkerSlot *
pipeline_slot(Oid dboid, int32 pipeline_id)
{
	for (int i = 0; i < slots->nslots; i++)
	{
		WorkerSlot *s = &slots->slots[i];

		if (s->in_use && s->dboid == dboid && s->pipeline_id == pipeline_id)
			return s;
	}
	return NULL;
}

/* Is the process holding a slot alive? */
static bool
slot_pid_alive(WorkerSlot *s)
{
	return s->pid != 0 && kill(s->pid, 0) == 0;
}

/*
 * Claim the slot of a pipeline.  Returns NULL with *taken set if a live
 * worker already holds it (two workers of one pipeline would both consume
 * and both write), NULL with *taken false if no slot is free.
 */
WorkerSlot *
slot_claim(Oid dboid, int32 pipeline_id, bool *taken)
{
	WorkerSlot *slot;

	LWLockAcquire(slots->lock, LW_EXCLUSIVE);
	slot = pipeline_slot(dboid, pipeline_id);
	if (slot != NULL && slot->pid != MyProcPid && slot_pid_alive(slot))
	{
		LWLockRelease(slots->lock);
		*taken = true;
		return NULL;
	}
	for (int i = 0; slot == NULL && i < slots->nslots; i++)
		if (!slots->slots[i].in_use)
			slot = &slots->slots[i];
	*taken = false;
	if (slot == NULL)
	{
		LWLockRelease(slots->lock);
		return NULL;
	}

	slot->in_use = true;
	slot->dboid = dboid;
	slot->pipeline_id = pipeline_id;
	slot->pid = MyProcPid;
	SpinLockAcquire(&slot->mutex);
	slot->stop_requested = false;
	slot->status = SLOT_STARTING;
	slot->error[0] = '\0';
	slot->started = GetCurrentTimestamp();
	slot->events = 0;
	slot->events_per_second = 0;
	slot->rows_emitted = 0;
	slot->dead_letters = 0;
	slot->late_events = 0;
	slot->watermark = DT_NOBEGIN;
	slot->lag = -1;
	slot->last_checkpoint = 0;
	slot->last_checkpoint_at = 0;
	slot->state_keys = 0;
	slot->partial_matches_dropped = 0;
	memset(&slot->state_metrics, 0, sizeof(slot->state_metrics));
	SpinLockRelease(&slot->mutex);
	LWLockRelease(slots->lock);
	return slot;
}

void
slot_release(WorkerSlot *slot)
{
	LWLockAcquire(slots->lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid)
	{
		slot->in_use = false;
		slot->pid = 0;
	}
	LWLockRelease(slots->lock);
}

void
slot_set_status(WorkerSlot *slot, SlotStatus status, const char *error)
{
	SpinLockAcquire(&slot->mutex);
	slot->status = status;
	strlcpy(slot->error, error ? error : "", SF_ERROR_LEN);
	SpinLockRelease(&slot->mutex);
}

const char *
slot_status_name(SlotStatus status)
{
	switch (status)
	{
		case SLOT_STARTING:
			return "starting";
		case SLOT_RECOVERING:
			return "recovering";
		case SLOT_WAITING_FOR_BROKER:
			return "waiting for broker";
		case SLOT_RUNNING:
			return "running";
		case SLOT_FAILED:
			return "failed";
	}
	return "unknown";
}

/* Free worker slots (streamflink.max_workers less the running workers). */
int
slot_free_count(void)
{
	int			used = 0;

	LWLockAcquire(slots->lock, LW_SHARED);
	for (int i = 0; i < slots->nslots; i++)
		if (slots->slots[i].in_use)
			used++;
	LWLockRelease(slots->lock);
	return slots->nslots - used;
}

void
slot_request_stop(Oid dboid, int32 pipeline_id)
{
	WorkerSlot *s;

	LWLockAcquire(slots->lock, LW_SHARED);
	s = pipeline_slot(dboid, pipeline_id);
	if (s != NULL && s->pid != 0)
	{
		SpinLockAcquire(&s->mutex);
		s->stop_requested = true;
		SpinLockRelease(&s->mutex);
		kill(s->pid, SIGTERM);
	}
	LWLockRelease(slots->lock);
}

WorkerSlot *
slot_find(Oid dboid, int32 pipeline_id, pid_t *pid)
{
	WorkerSlot *s;

	*pid = 0;
	if (slots == NULL)
		return NULL;
	LWLockAcquire(slots->lock, LW_SHARED);
	s = pipeline_slot(dboid, pipeline_id);
	if (s != NULL)
		*pid = s->pid;
	LWLockRelease(slots->lock);
	return s;
}

/* The pid of the worker holding the pipeline's slot, 0 if none. */
static pid_t
slot_holder(Oid dboid, int32 pipeline_id)
{
	WorkerSlot *s;
	pid_t		pid;

	if (slots == NULL)
		return 0;
	LWLockAcquire(slots->lock, LW_SHARED);
	s = pipeline_slot(dboid, pipeline_id);
	pid = s != NULL ? s->pid : 0;
	LWLockRelease(slots->lock);
	return pid;
}

bool
slot_pipeline_has_worker(Oid dboid, int32 pipeline_id)
{
	pid_t		pid = slot_holder(dboid, pipeline_id);

	return pid != 0 && kill(pid, 0) == 0;
}

bool
slot_am_worker_of(int32 pipeline_id)
{
	return slot_holder(MyDatabaseId, pipeline_id) == MyProcPid;
}

int
slot_copy_all(Oid dboid, WorkerSlot **copies)
{
	int			n = 0;

	*copies = NULL;
	if (slots == NULL)
		return 0;
	*copies = palloc(sizeof(WorkerSlot) * slots->nslots);
	LWLockAcquire(slots->lock, LW_SHARED);
	for (int i = 0; i < slots->nslots; i++)
	{
		WorkerSlot *s = &slots->slots[i];

		if (!s->in_use || s->dboid != dboid)
			continue;
		SpinLockAcquire(&s->mutex);
		memcpy(&(*copies)[n++], s, sizeof(WorkerSlot));
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(slots->lock);
	return n;
}
