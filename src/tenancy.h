/*-------------------------------------------------------------------------
 *
 * tenancy.h
 *	  Who may see and act on streamflink's objects (see tenancy.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_TENANCY_H
#define STREAMFLINK_TENANCY_H

#include "nodes/pg_list.h"

#include "catalog.h"

/*
 * Ids of the pipelines the current role may see (row-level security on
 * streamflink.pipeline decides; read as the caller).
 */
extern List *sf_visible_pipelines(void);

/*
 * Copies (palloc'd) of this database's worker slots (slot.h) whose
 * pipelines the current role may see, as sf_visible_pipelines decides (a
 * superuser sees all): their number.  For the views over the slots.
 */
struct WorkerSlot;
extern int	sf_visible_slots(struct WorkerSlot **copies);

/*
 * Load a pipeline for a role that wants its results: the pipeline is read
 * whatever row-level security hides, then the caller must be a member of
 * its owner or may SELECT its sink table; otherwise an error.  NULL if no
 * pipeline has that name.
 */
extern PipelineDef *sf_load_pipeline_for_reader(const char *name);

#endif							/* STREAMFLINK_TENANCY_H */
