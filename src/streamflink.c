/*-------------------------------------------------------------------------
 *
 * streamflink.c
 *	  Module load: every module's settings, the shared memory hooks, the
 *	  drop guard and the launcher.
 *
 * This file is the root of the module graph: it calls into the modules and
 * none of them calls into it.  Each module defines its own settings
 * (<module>_define_settings, as pgvector's HnswInit); what the shared
 * memory holds is the worker slots (slot.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "checkpoint.h"
#include "ddl_guard.h"
#include "exchange.h"
#include "local_agg.h"
#include "decode.h"
#include "kafka_source.h"
#include "keyed_state.h"
#include "launcher.h"
#include "producer.h"
#include "schema_registry.h"
#include "slot.h"
#include "state_tuning.h"
#include "task.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
sf_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(slot_shmem_size());
	RequestAddinShmemSpace(task_shmem_size());
	RequestNamedLWLockTranche("streamflink", 1);
}

static void
sf_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	slot_shmem_init();
	task_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	decode_define_settings();
	ksrc_define_settings();
	registry_define_settings();
	kstate_define_settings();
	state_define_settings();
	worker_define_settings();
	producer_define_settings();
	checkpoint_define_settings();
	exchange_define_settings();
	local_agg_define_settings();

	/* Also without preloading: a drop in any session must be checked. */
	ddl_guard_install();

	/* streamflink.max_workers: only when preloading (a server-start setting). */
	slot_define_settings();

	/*
	 * Last: placeholders of the prefix not defined by now (misspelt
	 * settings in postgresql.conf) are removed with a warning, so every
	 * setting must be defined before.
	 */
	MarkGUCPrefixReserved("streamflink");

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = sf_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = sf_shmem_startup;

	launcher_register();
}
