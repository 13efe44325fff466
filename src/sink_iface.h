/*-------------------------------------------------------------------------
 *
 * sink_iface.h
 *	  TEMPORARY (branch h4): the pinned sink interface (SINK_INTERFACE.md),
 *	  which helper h2 puts into sink.h in place of today's concrete API.
 *
 * At the merge: delete this file and include "sink.h" instead (in
 * collect_sink.c and sink_shim.c; the shim goes too).  The text below is
 * the pinned interface, unchanged, so code written against it compiles
 * against h2's sink.h.
 *
 * It cannot be included together with today's sink.h: the inline wrappers
 * sink_flush, sink_destroy and sink_take_row_count have the names of
 * today's concrete functions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_SINK_IFACE_H
#define STREAMFLINK_SINK_IFACE_H

#ifdef STREAMFLINK_SINK_H
#error "sink_iface.h (the pinned interface) and today's sink.h cannot be used together"
#endif

typedef struct Sink Sink;
typedef struct SinkOutput SinkOutput;	/* one destination of an operator's
										 * rows; opaque, owned by the sink */

typedef enum SinkOp
{
	SINK_INSERT,				/* append a row */
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
	void		(*recover) (Sink *sink, int64 last_completed);	/* at start, before the
																 * first epoch */
	void		(*destroy) (Sink *sink);
} SinkMethods;

struct Sink
{
	const SinkMethods *methods;
	int64		rows_written;	/* result rows written (UPSERT/INSERT/RETRACT),
								 * side outputs not included */
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

static inline int64
sink_take_row_count(Sink *sink)
{
	int64		n = sink->rows_written;

	sink->rows_written = 0;
	return n;
}

#endif							/* STREAMFLINK_SINK_IFACE_H */
