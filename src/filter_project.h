/*-------------------------------------------------------------------------
 *
 * filter_project.h
 *	  The stateless operator: a pipeline's WHERE and SELECT list evaluated
 *	  on each event, the rows inserted into the sink.
 *
 * No key, no window, no state: the event's row goes through the
 * executor's expression machinery (ExecQual, ExecProject over the decoded
 * slot) and into the sink's INSERT batches, which land in the worker's
 * epoch transaction with the offsets of the messages they came from, so
 * every row is written exactly once.  Nothing is late: the watermark only
 * times checkpoints here.
 *
 * Memory: the operator lives in the context current at creation; each
 * event's values in its expression context, reset per event (the sink
 * copies what it keeps).  Threads: none.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_FILTER_PROJECT_H
#define STREAMFLINK_FILTER_PROJECT_H

#include "operator.h"

typedef struct FilterProject FilterProject;

extern FilterProject *filter_project_create(PipelineDef *def, Sink *sink,
											TupleDesc event_desc);

extern const OperatorMethods filter_project_methods;

#endif							/* STREAMFLINK_FILTER_PROJECT_H */
