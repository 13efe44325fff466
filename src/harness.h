/*-------------------------------------------------------------------------
 *
 * harness.h
 *	  Running a pipeline's operator in a backend over given payloads, for
 *	  tests: what streamflink._replay (replay.c) and
 *	  streamflink.run_operator (run_operator.c) share.
 *
 * Both feed text payloads through the source's decoder to the pipeline's
 * operator (operator.h) in the calling backend, with the operator's state
 * in a private directory under base/pgsql_tmp (removed at the end, on
 * error, and by the server's start-up clean-up of temporary files after a
 * crash), and the pipeline's code run as its owner, as a worker runs it.
 * They differ in how the watermark moves and where the rows go.
 *
 * Memory: everything is allocated in the caller's current context.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_HARNESS_H
#define STREAMFLINK_HARNESS_H

#include "executor/tuptable.h"
#include "utils/array.h"

#include "catalog.h"
#include "decode.h"

/* Payloads of a text[] (a NULL element: a message without value). */
typedef struct HarnessInput
{
	int			n;
	char	  **payloads;
	int		   *lens;
} HarnessInput;

extern void harness_input(ArrayType *payloads, HarnessInput *in);

/*
 * The pipeline 'name', read as the extension (the caller decides who may
 * run it); an error if there is none, or if its source has no event-time
 * column ('what' names the caller in the message).
 */
extern PipelineDef *harness_load_pipeline(const char *name, const char *what);

/* The source's row type, a copy. */
extern TupleDesc harness_event_desc(PipelineDef *def);

/* A fresh private directory for a run's state. */
extern char *harness_make_dir(void);

/*
 * Decode a payload into 'slot' as the worker does: NULL and the event time
 * in *t, or the dead letter's error (never raises one for bad input).
 */
extern char *harness_decode(PipelineDef *def, Decoder *dec, TupleTableSlot *slot,
							const char *payload, int len, TimestampTz *t);

/*
 * Run body(arg) connected to SPI, as the pipeline's owner; on an error,
 * cleanup(arg) frees what is no transaction's (RocksDB: state_close) and
 * rolls back what the body began, then 'dir' is removed and the error goes
 * on.  'dir' is removed at the end in any case.  Returns in the caller's
 * memory context.
 */
extern void harness_run(PipelineDef *def, const char *dir,
						void (*body) (void *arg), void (*cleanup) (void *arg),
						void *arg);

#endif							/* STREAMFLINK_HARNESS_H */
