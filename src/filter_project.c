/*-------------------------------------------------------------------------
 *
 * filter_project.c
 *	  The stateless operator (see filter_project.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/executor.h"
#include "nodes/makefuncs.h"

#include "filter_project.h"
#include "sql_pipeline.h"

struct FilterProject
{
	Sink	   *sink;
	SinkOutput *out;
	ExprContext *econtext;
	ExprState  *where;			/* NULL: every event */
	ProjectionInfo *project;
	TupleTableSlot *result;
};

FilterProject *
filter_project_create(PipelineDef *def, Sink *sink, TupleDesc event_desc)
{
	FilterProject *fp = palloc0(sizeof(FilterProject));
	SqlpProjection *p = sqlp_projection_load(def);
	TupleDesc	rdesc = CreateTemplateTupleDesc(p->ncols);
	SinkRowDesc desc;

	for (int i = 0; i < p->ncols; i++)
		TupleDescInitEntry(rdesc, i + 1, p->names[i], p->types[i], -1, 0);
	fp->sink = sink;
	fp->econtext = CreateStandaloneExprContext();
	if (p->where)
		fp->where = ExecInitQual(make_ands_implicit(p->where), NULL);
	fp->result = MakeSingleTupleTableSlot(rdesc, &TTSOpsVirtual);
	fp->project = ExecBuildProjectionInfo(p->targets, fp->econtext, fp->result, NULL,
										  event_desc);

	desc.name = "result";
	desc.relid = def->sink_relid;
	desc.ncols = p->ncols;
	desc.colnames = p->names;
	desc.coltypes = p->types;
	desc.nkeys = 0;
	fp->out = sink_open_output(sink, &desc);
	return fp;
}

static bool
fp_process(void *arg, TupleTableSlot *event, TimestampTz t, TimestampTz wm, SfMessagePos pos)
{
	FilterProject *fp = (FilterProject *) arg;
	ExprContext *ec = fp->econtext;
	TupleTableSlot *row;

	ResetExprContext(ec);
	ec->ecxt_scantuple = event;
	if (fp->where && !ExecQual(fp->where, ec))
		return true;			/* filtered out, not late */
	row = ExecProject(fp->project);
	slot_getallattrs(row);
	sink_write(fp->sink, fp->out, SINK_INSERT, row->tts_values, row->tts_isnull);
	return true;
}

static void
fp_advance(void *arg, TimestampTz wm)
{
	/* Nothing waits for the watermark. */
}

static void
fp_flush(void *arg)
{
	/* No state. */
}

static int64
fp_open_count(void *arg)
{
	return 0;
}

const OperatorMethods filter_project_methods = {
	fp_process,
	fp_advance,
	fp_flush,					/* maybe_flush */
	fp_flush,
	fp_open_count,
	NULL,
	NULL
};
