/*-------------------------------------------------------------------------
 *
 * sql_pipeline.h
 *	  Pipelines written as one SQL query over a source (create_pipeline).
 *
 * The query is parsed by Postgres' raw parser; its one FROM item, a source
 * or a window table function over a source (streamflink.tumble, hop,
 * session), is replaced by a subquery of the source's row type (plus
 * window_start and window_end), and the whole query is analysed by
 * Postgres' parse analysis as the pipeline's owner, so every function,
 * operator and type works and errors point into the user's query.  The
 * analysed Query is kept in streamflink.pipeline.query_tree (written by the
 * catalog's resolve trigger, with pg_depend records on what it uses); the
 * worker maps it onto our operators without resolving any name again:
 *
 *	 no window:	 WHERE and the SELECT list as a filter and projection per
 *				 event (filter_project.c), rows inserted into the sink;
 *	 a window:	 WHERE as a filter before the window, the GROUP BY
 *				 expressions as the key, the aggregates' arguments over the
 *				 event, and the SELECT list and HAVING over the fired
 *				 window (keys, window_start, window_end, aggregate values)
 *				 as a post-projection (window.c).
 *
 * What cannot run as a stream is refused at creation with the reason.
 *
 * Memory: plans and stages live in the context current at their creation;
 * per-event work is in their own expression context, reset per event.
 * Threads: none.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_SQL_PIPELINE_H
#define STREAMFLINK_SQL_PIPELINE_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "executor/tuptable.h"
#include "nodes/parsenodes.h"

#include "aggregate.h"
#include "catalog.h"
#include "sink.h"

/*
 * For the pipeline_resolve trigger (resolve.c): analyse 'query' as the
 * current role (the owner) and return the row with its shape columns
 * (kind, key_columns, window_kind, window_size, window_slide,
 * session_gap, aggregates) and query_tree set from the query;
 * *aggregates_tree gets the aggregates as an aggregate list tree (NULL
 * without a window), *queries what to record in pg_depend.  The query must
 * read the row's source.
 */
extern HeapTuple sqlp_resolve(TupleDesc desc, HeapTuple tup, int32 source_id,
							  const char *query, char **aggregates_tree,
							  List **queries);

/* --- stateless pipelines (filter_project.c) --- */

typedef struct SqlpProjection
{
	Expr	   *where;			/* NULL: every event */
	List	   *targets;		/* TargetEntry, resno 1..n, over the event */
	int			ncols;
	const char **names;
	Oid		   *types;
} SqlpProjection;

/* The filter and projection of a stateless pipeline's stored query. */
extern SqlpProjection *sqlp_projection_load(PipelineDef *def);

/* --- window pipelines (window.c) --- */

typedef struct SqlpWindow SqlpWindow;

/*
 * The stage of a window pipeline's stored query: its aggregates (states in
 * state_cxt), filter, key and post-projection.  Call as the owner.
 */
extern SqlpWindow *sqlp_window_create(PipelineDef *def, MemoryContext state_cxt);
extern AggSpec *sqlp_window_aggregates(SqlpWindow *w);

/* The key's columns: one per GROUP BY expression but the window's. */
extern TupleDesc sqlp_window_key_desc(SqlpWindow *w);

/*
 * One event: false if WHERE rejects it; else *keys is a slot of the key
 * descriptor holding its key values (valid until the next event).
 */
extern bool sqlp_window_accept(SqlpWindow *w, TupleTableSlot *event,
							   TupleTableSlot **keys);

/*
 * The sink output: the identifying columns first (the keys as the SELECT
 * list names them, then window_start), then the other columns.
 */
extern void sqlp_window_output(SqlpWindow *w, SinkRowDesc *desc);

/*
 * A fired window's sink row (in sqlp_window_output's order) from its keys,
 * bounds and final aggregate values: false if HAVING rejects it.  By-ref
 * values are in CurrentMemoryContext.  A Top-N query's rows are held back
 * (false) for sqlp_window_fired.
 */
extern bool sqlp_window_project(SqlpWindow *w, Datum *keys, bool *keynulls,
								TimestampTz start, TimestampTz end,
								Datum *aggs, bool *aggnulls,
								Datum *row, bool *rownulls);

/*
 * After a watermark step fired windows: a Top-N query ranks their rows
 * (held back by sqlp_window_project) and writes the first ranks to 'out'.
 * Nothing for other queries.
 */
extern void sqlp_window_fired(SqlpWindow *w, Sink *sink, SinkOutput *out);

#endif							/* STREAMFLINK_SQL_PIPELINE_H */
