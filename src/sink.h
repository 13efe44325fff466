/*-------------------------------------------------------------------------
 *
 * sink.h
 *	  Where a pipeline's result rows go: the sink interface.
 *
 * An operator opens its outputs once (open_output, in its create function)
 * and then only writes rows: SINK_INSERT appends, SINK_UPSERT inserts or
 * replaces the row with the same key columns, SINK_RETRACT removes it.  On
 * an output with key columns, SINK_INSERT says the operator never wrote a
 * row with these keys (a window's first firing): a sink may write it more
 * cheaply, but must still replace a row with the keys that is there
 * (someone else's), as SINK_UPSERT would.  A
 * sink is a participant of the pipeline's checkpoints (checkpoint.h):
 * begin_epoch opens an epoch, prepare (phase 1) makes the epoch's rows
 * durable but not yet visible, commit makes them visible once the
 * checkpoint is decided, abort drops them, and recover, at start, settles
 * what a crashed run left prepared, given the last completed checkpoint.
 * A sink whose rows live in the worker's epoch transaction (the Postgres
 * table sink, pg_sink.h) has little to do in those: the epoch transaction
 * is a participant of its own.
 *
 * Dead letters and late events are not sink rows: see side_output.h.
 *
 * Memory: a sink and its outputs live in the context current at creation
 * and open_output; rows passed to write are copied if kept.  Threads: none
 * (a sink's methods run in the worker's process, under its transactions).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_SINK_H
#define STREAMFLINK_SINK_H

typedef struct Sink Sink;
typedef struct SinkOutput SinkOutput;	/* one destination of an operator's
										 * rows; opaque, owned by the sink */

typedef enum SinkOp
{
	SINK_INSERT,				/* append a row; with keys: one the
								 * operator never wrote (an upsert to the
								 * sink) */
	SINK_UPSERT,				/* insert, or replace the row with the same
								 * key columns */
	SINK_RETRACT				/* remove the row with these key columns
								 * (other values ignored) */
} SinkOp;

/* The rows of one output of an operator. */
typedef struct SinkRowDesc
{
	const char *name;			/* the pipeline's output: "result" or
								 * "timed_out" */
	Oid			relid;			/* its table in the catalog (a Postgres sink
								 * writes there; others may ignore it) */
	int			ncols;
	const char *const *colnames;
	const Oid  *coltypes;
	int			nkeys;			/* the first nkeys columns identify a row for
								 * UPSERT and RETRACT; 0: insert only */
} SinkRowDesc;

typedef struct SinkMethods
{
	SinkOutput *(*open_output) (Sink *sink, const SinkRowDesc *desc);
	void		(*begin_epoch) (Sink *sink, int64 epoch);
	void		(*write) (Sink *sink, SinkOutput *out, SinkOp op, Datum *values, bool *nulls);
	void		(*flush) (Sink *sink);	/* write what is batched, before a
										 * transaction ends */
	void		(*prepare) (Sink *sink, int64 epoch);	/* checkpoint phase 1 */
	void		(*commit) (Sink *sink, int64 epoch);	/* after the checkpoint's
														 * decision */
	void		(*abort) (Sink *sink, int64 epoch);
	void		(*recover) (Sink *sink, int64 last_completed);	/* at start, before
																 * the first epoch */
	void		(*destroy) (Sink *sink);
} SinkMethods;

struct Sink
{
	const SinkMethods *methods;
	int64		rows_written;	/* result rows written
								 * (UPSERT/INSERT/RETRACT), side outputs not
								 * included */
};

static inline SinkOutput *
sink_open_output(Sink *sink, const SinkRowDesc *desc)
{
	return sink->methods->open_output(sink, desc);
}

static inline void
sink_begin_epoch(Sink *sink, int64 epoch)
{
	sink->methods->begin_epoch(sink, epoch);
}

static inline void
sink_write(Sink *sink, SinkOutput *out, SinkOp op, Datum *values, bool *nulls)
{
	sink->methods->write(sink, out, op, values, nulls);
}

static inline void
sink_flush(Sink *sink)
{
	sink->methods->flush(sink);
}

static inline void
sink_prepare(Sink *sink, int64 epoch)
{
	sink->methods->prepare(sink, epoch);
}

static inline void
sink_commit(Sink *sink, int64 epoch)
{
	sink->methods->commit(sink, epoch);
}

static inline void
sink_abort(Sink *sink, int64 epoch)
{
	sink->methods->abort(sink, epoch);
}

static inline void
sink_recover(Sink *sink, int64 last_completed)
{
	sink->methods->recover(sink, last_completed);
}

static inline void
sink_destroy(Sink *sink)
{
	sink->methods->destroy(sink);
}

/* Result rows written since the last call (for checkpoint statistics). */
static inline int64
sink_take_row_count(Sink *sink)
{
	int64		n = sink->rows_written;

	sink->rows_written = 0;
	return n;
}

#endif							/* STREAMFLINK_SINK_H */
