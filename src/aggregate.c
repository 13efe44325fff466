/*-------------------------------------------------------------------------
 *
 * aggregate.c
 *	  Running Postgres aggregates outside the executor, over event rows.
 *
 * This follows nodeAgg.c: the same strictness rules for transition and
 * combine functions, the same copying of by-reference states into the
 * aggregate memory context, the same final-function calls.  Transition
 * functions of aggregates with an "internal" state (avg(int8), sum(numeric),
 * ...) insist on being called by an aggregate node (AggCheckCallContext), so
 * they are handed a minimal AggState whose aggregate context is the
 * caller's state context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_aggregate.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parse_agg.h"
#include "parser/parser.h"
#include "rewrite/rewriteHandler.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "nodes/readfuncs.h"
#include "utils/datum.h"
#include "utils/expandeddatum.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/ruleutils.h"
#include "utils/syscache.h"

#include "aggregate.h"
#include "fragment.h"

typedef struct AggDef
{
	char	   *name;			/* output column name */
	Oid			aggfnoid;
	Oid			result_type;
	int			nargs;
	ExprState **args;			/* argument expressions over the event row */
	ExprState  *filter;			/* FILTER (WHERE ...), or NULL */

	Oid			transtype;
	int16		transtypeLen;
	bool		transtypeByVal;
	bool		initValueIsNull;
	Datum		initValue;		/* in the spec's memory */

	FmgrInfo	transfn;
	FmgrInfo	finalfn;		/* fn_oid InvalidOid if none */
	int			finalfn_nargs;
	FmgrInfo	combinefn;		/* fn_oid InvalidOid if none */
	FmgrInfo	serialfn;		/* internal states only */
	FmgrInfo	deserialfn;

	Oid			collation;
	FunctionCallInfo transfn_fcinfo;	/* reused for every event */
} AggDef;

struct AggSpec
{
	int			naggs;
	AggDef	   *aggs;
	MemoryContext state_cxt;
	ExprContext *econtext;		/* for argument evaluation */
	AggState   *aggstate;		/* passed as fcinfo->context, see above */
	ExprContext *agg_econtext;	/* its aggregate context: state_cxt */
};

/*
 * Parse "agg(...) AS name, ..." as the target list of a query over the row
 * type, and analyse it.  The only range table entry is a subquery whose
 * columns are the row type's, so Vars' attribute numbers are the row's.
 */
#define AGGREGATE_LIST_HINT "Write aggregates as in a SELECT list: count(*) AS n, avg(x) AS mean."

static void
invalid_aggregate_list(const char *aggregates)
{
	ereport(ERROR,
			(errcode(ERRCODE_SYNTAX_ERROR),
			 errmsg("invalid aggregate list: %s", aggregates),
			 errhint(AGGREGATE_LIST_HINT)));
}

/*
 * The list is spliced into a query, so it must be a SELECT list and nothing
 * more: parsed alone, "SELECT <list>" has to be one plain SELECT with no
 * FROM, WHERE, GROUP BY, ... of its own.  A list that ended in a comment
 * ("count(*) FROM t --") or took a FROM clause would otherwise read other
 * tables, or comment out what we append.
 */
static void
check_select_list_only(const char *aggregates)
{
	List	   *raw = raw_parser(psprintf("SELECT %s", aggregates), RAW_PARSE_DEFAULT);
	SelectStmt *stmt;

	if (list_length(raw) != 1 ||
		!IsA(linitial_node(RawStmt, raw)->stmt, SelectStmt))
		invalid_aggregate_list(aggregates);
	stmt = (SelectStmt *) linitial_node(RawStmt, raw)->stmt;
	if (stmt->op != SETOP_NONE || stmt->intoClause || stmt->fromClause ||
		stmt->whereClause || stmt->groupClause || stmt->havingClause ||
		stmt->windowClause || stmt->valuesLists || stmt->sortClause ||
		stmt->limitOffset || stmt->limitCount || stmt->lockingClause ||
		stmt->withClause || stmt->distinctClause)
		invalid_aggregate_list(aggregates);
}

/*
 * Parse "agg(...) AS name, ..." as the target list of a query over the row
 * type, and analyse it.  The only range table entry is a subquery whose
 * columns are the row type's, so Vars' attribute numbers are the row's.
 */
static Query *
analyse_aggregates(Oid row_type, const char *aggregates)
{
	Fragment	f;
	Query	   *query;

	fragment_wrap(&f, "aggregate list", aggregates, AGGREGATE_LIST_HINT, row_type);
	fragment_enter(&f);
	check_select_list_only(aggregates);
	query = fragment_analyse(&f, NULL, NULL);
	if (query->commandType != CMD_SELECT || query->groupClause || query->havingQual ||
		query->hasWindowFuncs || query->hasSubLinks || query->sortClause ||
		query->limitCount || query->distinctClause || query->hasTargetSRFs ||
		list_length(query->rtable) != 1 ||
		linitial_node(RangeTblEntry, query->rtable)->rtekind != RTE_SUBQUERY ||
		list_length(query->jointree->fromlist) != 1 || query->jointree->quals)
		invalid_aggregate_list(aggregates);
	fragment_leave(&f);
	return query;
}

static void
check_aggref(Aggref *aggref, const char *name, Form_pg_aggregate agg)
{
	const char *problem = NULL;

	if (aggref->aggkind != AGGKIND_NORMAL)
		problem = "ordered-set and hypothetical-set aggregates are not supported";
	else if (aggref->aggorder != NIL || aggref->aggdistinct != NIL)
		problem = "DISTINCT and ORDER BY inside aggregates are not supported";
	else if (aggref->agglevelsup != 0)
		problem = "outer-level aggregates are not supported";
	else if (agg->aggfinalmodify == AGGMODIFY_READ_WRITE)
		problem = "aggregates whose final function modifies the state are not supported";
	else if (agg->aggtranstype == INTERNALOID &&
			 (!OidIsValid(agg->aggserialfn) || !OidIsValid(agg->aggdeserialfn)))
		problem = "its state cannot be serialized (it has no serial and deserial functions)";

	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("aggregate \"%s\" (%s) cannot run in a pipeline: %s",
						name, format_procedure(aggref->aggfnoid), problem),
				 errhint("count, sum, avg, min, max, bool_and, bool_or, stddev, variance and most other built-in aggregates work.")));
}

/* Value of a transition type from its text form in pg_aggregate. */
static Datum
init_value(Oid transtype, const char *text)
{
	Oid			typinput,
				typioparam;

	getTypeInputInfo(transtype, &typinput, &typioparam);
	return OidInputFunctionCall(typinput, (char *) text, typioparam, -1);
}

static void
setup_fn(FmgrInfo *finfo, Oid fnoid, Expr *expr)
{
	fmgr_info(fnoid, finfo);
	fmgr_info_set_expr((Node *) expr, finfo);
}

/*
 * Parse and analyse an aggregate list (as the current role, in its
 * search_path) and check every item.  The result is what the catalog stores
 * (agg_tree): functions, operators and types are resolved for good.
 */
Query *
agg_analyse(Oid row_type, const char *aggregates)
{
	Query	   *query = analyse_aggregates(row_type, aggregates);
	ListCell   *lc;

	foreach(lc, query->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		const char *name = tle->resname ? tle->resname : "?column?";
		HeapTuple	tup;

		if (!IsA(tle->expr, Aggref))
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("\"%s\" is not an aggregate call", name),
					 errhint("Each item of the aggregate list must be one aggregate call, such as count(*) or max(x); compute expressions of aggregates when reading the sink.")));
		tup = SearchSysCache1(AGGFNOID, ObjectIdGetDatum(((Aggref *) tle->expr)->aggfnoid));
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for aggregate %u", ((Aggref *) tle->expr)->aggfnoid);
		check_aggref((Aggref *) tle->expr, name, (Form_pg_aggregate) GETSTRUCT(tup));
		ReleaseSysCache(tup);
	}
	return query;
}

AggSpec *
agg_spec_create(Oid row_type, const char *aggregates, MemoryContext state_cxt)
{
	return agg_spec_build(agg_analyse(row_type, aggregates), state_cxt);
}

AggSpec *
agg_spec_load(const char *tree, MemoryContext state_cxt)
{
	Node	   *node;

	if (tree == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the pipeline has no analysed aggregate list"),
				 errhint("Drop the pipeline and create it again.")));
	node = stringToNode(tree);
	if (!IsA(node, Query))
		elog(ERROR, "stored aggregate list is not a query tree");
	return agg_spec_build((Query *) node, state_cxt);
}

/*
 * The runtime of an analysed aggregate list.  Runs the aggregates' own
 * functions only later, but looks up their definitions now (and plans the
 * arguments, which may evaluate immutable functions): call it as the role
 * the aggregates run as.
 */
AggSpec *
agg_spec_build(Query *query, MemoryContext state_cxt)
{
	AggSpec    *spec = palloc0(sizeof(AggSpec));
	ListCell   *lc;
	int			i = 0;

	spec->state_cxt = state_cxt;
	spec->naggs = list_length(query->targetList);
	spec->aggs = palloc0(sizeof(AggDef) * spec->naggs);
	spec->econtext = CreateStandaloneExprContext();

	/* A minimal aggregate node: AggCheckCallContext looks at these only. */
	spec->aggstate = makeNode(AggState);
	spec->agg_econtext = CreateStandaloneExprContext();
	spec->agg_econtext->ecxt_per_tuple_memory = state_cxt;
	spec->aggstate->curaggcontext = spec->agg_econtext;

	foreach(lc, query->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		AggDef	   *def = &spec->aggs[i++];
		Aggref	   *aggref;
		HeapTuple	tup;
		Form_pg_aggregate agg;
		Oid			inputTypes[FUNC_MAX_ARGS];
		int			numArguments;
		Expr	   *transfnexpr,
				   *finalfnexpr,
				   *combinefnexpr,
				   *serialfnexpr,
				   *deserialfnexpr;
		Datum		textInitVal;
		bool		initIsNull;
		ListCell   *alc;
		int			j = 0;
		AclResult	aclresult;

		def->name = pstrdup(tle->resname ? tle->resname : "?column?");
		aggref = castNode(Aggref, tle->expr);
		def->aggfnoid = aggref->aggfnoid;
		def->result_type = exprType((Node *) aggref);

		/* As an Agg node checks it: the role running it may call it. */
		aclresult = pg_proc_aclcheck(aggref->aggfnoid, GetUserId(), ACL_EXECUTE);
		if (aclresult != ACLCHECK_OK)
			aclcheck_error(aclresult, OBJECT_AGGREGATE, get_func_name(aggref->aggfnoid));

		tup = SearchSysCache1(AGGFNOID, ObjectIdGetDatum(aggref->aggfnoid));
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for aggregate %u", aggref->aggfnoid);
		agg = (Form_pg_aggregate) GETSTRUCT(tup);
		check_aggref(aggref, def->name, agg);

		numArguments = get_aggregate_argtypes(aggref, inputTypes);
		def->transtype = resolve_aggregate_transtype(aggref->aggfnoid, agg->aggtranstype,
													 inputTypes, numArguments);
		get_typlenbyval(def->transtype, &def->transtypeLen, &def->transtypeByVal);

		textInitVal = SysCacheGetAttr(AGGFNOID, tup, Anum_pg_aggregate_agginitval, &initIsNull);
		def->initValueIsNull = initIsNull;
		if (!initIsNull)
			def->initValue = init_value(def->transtype, TextDatumGetCString(textInitVal));

		build_aggregate_transfn_expr(inputTypes, numArguments, 0, aggref->aggvariadic,
									 def->transtype, aggref->inputcollid,
									 agg->aggtransfn, InvalidOid, &transfnexpr, NULL);
		setup_fn(&def->transfn, agg->aggtransfn, transfnexpr);

		if (OidIsValid(agg->aggfinalfn))
		{
			def->finalfn_nargs = agg->aggfinalextra ? numArguments + 1 : 1;
			build_aggregate_finalfn_expr(inputTypes, def->finalfn_nargs, def->transtype,
										 def->result_type, aggref->inputcollid,
										 agg->aggfinalfn, &finalfnexpr);
			setup_fn(&def->finalfn, agg->aggfinalfn, finalfnexpr);
		}
		if (OidIsValid(agg->aggcombinefn))
		{
			Oid			combineTypes[2] = {def->transtype, def->transtype};

			build_aggregate_transfn_expr(combineTypes, 1, 0, false, def->transtype,
										 aggref->inputcollid, agg->aggcombinefn,
										 InvalidOid, &combinefnexpr, NULL);
			setup_fn(&def->combinefn, agg->aggcombinefn, combinefnexpr);
		}
		if (def->transtype == INTERNALOID)
		{
			build_aggregate_serialfn_expr(agg->aggserialfn, &serialfnexpr);
			setup_fn(&def->serialfn, agg->aggserialfn, serialfnexpr);
			build_aggregate_deserialfn_expr(agg->aggdeserialfn, &deserialfnexpr);
			setup_fn(&def->deserialfn, agg->aggdeserialfn, deserialfnexpr);
		}
		ReleaseSysCache(tup);

		/* Arguments and filter, planned as the executor would. */
		def->nargs = list_length(aggref->args);
		def->args = palloc(sizeof(ExprState *) * Max(def->nargs, 1));
		foreach(alc, aggref->args)
		{
			TargetEntry *arg = lfirst_node(TargetEntry, alc);

			def->args[j++] = ExecInitExpr(expression_planner(arg->expr), NULL);
		}
		if (aggref->aggfilter)
			def->filter = ExecInitQual(list_make1(expression_planner(aggref->aggfilter)), NULL);

		def->collation = aggref->inputcollid;
		def->transfn_fcinfo = palloc0(SizeForFunctionCallInfo(def->nargs + 1));
		InitFunctionCallInfoData(*def->transfn_fcinfo, &def->transfn, def->nargs + 1,
								 aggref->inputcollid, (Node *) spec->aggstate, NULL);
	}
	return spec;
}

int
agg_count(AggSpec *spec)
{
	return spec->naggs;
}

const char *
agg_name(AggSpec *spec, int i)
{
	return spec->aggs[i].name;
}

Oid
agg_result_type(AggSpec *spec, int i)
{
	return spec->aggs[i].result_type;
}

/* Two-stage aggregation (local_agg.h): which aggregate cannot combine. */
bool
agg_has_combine(AggSpec *spec, int i)
{
	return OidIsValid(spec->aggs[i].combinefn.fn_oid);
}

Oid
agg_function(AggSpec *spec, int i)
{
	return spec->aggs[i].aggfnoid;
}

bool
agg_can_combine(AggSpec *spec)
{
	for (int i = 0; i < spec->naggs; i++)
		if (!OidIsValid(spec->aggs[i].combinefn.fn_oid))
			return false;
	return true;
}

/*
 * States are one chunk: the values, then whether each is NULL, then
 * whether each has no value yet (strict transition function, no initial
 * value, no input yet).  A window's states are a large share of what a
 * cache of many windows holds, and every chunk costs its header and its
 * rounding up to a power of two.
 */
#define STATES_VALUES(st) ((Datum *) (st))
#define STATES_ISNULL(spec, st) ((bool *) (STATES_VALUES(st) + (spec)->naggs))
#define STATES_NO_VALUE(spec, st) (STATES_ISNULL(spec, st) + (spec)->naggs)

static AggStates *
states_alloc(AggSpec *spec)
{
	return MemoryContextAllocZero(spec->state_cxt,
								  Max((sizeof(Datum) + 2 * sizeof(bool)) * spec->naggs, 1));
}

void
agg_states_free(AggSpec *spec, AggStates *st)
{
	for (int i = 0; i < spec->naggs; i++)
	{
		AggDef	   *def = &spec->aggs[i];
		Datum		v = STATES_VALUES(st)[i];

		/* internal states are by value here: not known how to free them */
		if (STATES_ISNULL(spec, st)[i] || def->transtypeByVal)
			continue;
		if (DatumIsReadWriteExpandedObject(v, false, def->transtypeLen))
			DeleteExpandedObject(v);
		else
			pfree(DatumGetPointer(v));
	}
	pfree(st);
}

AggStates *
agg_states_new(AggSpec *spec)
{
	AggStates  *st = states_alloc(spec);

	for (int i = 0; i < spec->naggs; i++)
	{
		AggDef	   *def = &spec->aggs[i];

		if (def->initValueIsNull)
		{
			STATES_ISNULL(spec, st)[i] = true;
			STATES_NO_VALUE(spec, st)[i] = true;
		}
		else
		{
			MemoryContext old = MemoryContextSwitchTo(spec->state_cxt);

			STATES_VALUES(st)[i] = datumCopy(def->initValue, def->transtypeByVal, def->transtypeLen);
			MemoryContextSwitchTo(old);
		}
	}
	return st;
}

/*
 * Keep a new transition value: by-reference values returned by the
 * function live in a short-lived context and are copied into the state
 * context, and the old value is freed (as ExecAggTransReparent does).
 */
static void
keep_new_value(AggSpec *spec, AggDef *def, AggStates *st, int i,
			   Datum newval, bool newnull)
{
	Datum		oldval = STATES_VALUES(st)[i];
	bool		oldnull = STATES_ISNULL(spec, st)[i];

	if (!def->transtypeByVal && DatumGetPointer(newval) != DatumGetPointer(oldval))
	{
		if (!newnull)
		{
			MemoryContext old = MemoryContextSwitchTo(spec->state_cxt);

			if (DatumIsReadWriteExpandedObject(newval, false, def->transtypeLen) &&
				MemoryContextGetParent(DatumGetEOHP(newval)->eoh_context) == CurrentMemoryContext)
				 /* already ours */ ;
			else
				newval = datumCopy(newval, def->transtypeByVal, def->transtypeLen);
			MemoryContextSwitchTo(old);
		}
		if (!oldnull)
		{
			if (DatumIsReadWriteExpandedObject(oldval, false, def->transtypeLen))
				DeleteExpandedObject(oldval);
			else
				pfree(DatumGetPointer(oldval));
		}
	}
	STATES_VALUES(st)[i] = newval;
	STATES_ISNULL(spec, st)[i] = newnull;
}

void
agg_advance(AggSpec *spec, AggStates *st, TupleTableSlot *slot)
{
	ExprContext *econtext = spec->econtext;

	econtext->ecxt_scantuple = slot;
	for (int i = 0; i < spec->naggs; i++)
	{
		AggDef	   *def = &spec->aggs[i];
		FunctionCallInfo fcinfo = def->transfn_fcinfo;
		MemoryContext old;
		Datum		newval;
		bool		anynull = false;

		ResetExprContext(econtext);
		old = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);

		if (def->filter && !ExecQual(def->filter, econtext))
		{
			MemoryContextSwitchTo(old);
			continue;
		}
		for (int j = 0; j < def->nargs; j++)
		{
			fcinfo->args[j + 1].value = ExecEvalExpr(def->args[j], econtext,
													 &fcinfo->args[j + 1].isnull);
			anynull |= fcinfo->args[j + 1].isnull;
		}

		if (def->transfn.fn_strict)
		{
			/* A strict transition function ignores rows with a NULL input. */
			if (anynull)
			{
				MemoryContextSwitchTo(old);
				continue;
			}
			if (STATES_NO_VALUE(spec, st)[i])
			{
				/* The first input becomes the state, as in nodeAgg.c. */
				MemoryContextSwitchTo(spec->state_cxt);
				STATES_VALUES(st)[i] = datumCopy(fcinfo->args[1].value, def->transtypeByVal,
										  def->transtypeLen);
				STATES_ISNULL(spec, st)[i] = false;
				STATES_NO_VALUE(spec, st)[i] = false;
				MemoryContextSwitchTo(old);
				continue;
			}
			if (STATES_ISNULL(spec, st)[i])
			{
				MemoryContextSwitchTo(old);
				continue;
			}
		}

		fcinfo->args[0].value = STATES_VALUES(st)[i];
		fcinfo->args[0].isnull = STATES_ISNULL(spec, st)[i];
		fcinfo->isnull = false;
		spec->aggstate->curaggcontext = spec->agg_econtext;
		newval = FunctionCallInvoke(fcinfo);
		keep_new_value(spec, def, st, i, newval, fcinfo->isnull);
		STATES_NO_VALUE(spec, st)[i] = false;
		MemoryContextSwitchTo(old);
	}
}

void
agg_combine(AggSpec *spec, AggStates *into, AggStates *from)
{
	for (int i = 0; i < spec->naggs; i++)
	{
		AggDef	   *def = &spec->aggs[i];
		LOCAL_FCINFO(fcinfo, 2);
		MemoryContext old;
		Datum		newval;

		if (!OidIsValid(def->combinefn.fn_oid))
			elog(ERROR, "aggregate \"%s\" has no combine function", def->name);

		if (def->combinefn.fn_strict)
		{
			if (STATES_ISNULL(spec, from)[i])
				continue;
			if (STATES_NO_VALUE(spec, into)[i] || STATES_ISNULL(spec, into)[i])
			{
				old = MemoryContextSwitchTo(spec->state_cxt);
				STATES_VALUES(into)[i] = datumCopy(STATES_VALUES(from)[i], def->transtypeByVal,
											def->transtypeLen);
				STATES_ISNULL(spec, into)[i] = false;
				STATES_NO_VALUE(spec, into)[i] = false;
				MemoryContextSwitchTo(old);
				continue;
			}
		}

		InitFunctionCallInfoData(*fcinfo, &def->combinefn, 2,
								 def->collation,
								 (Node *) spec->aggstate, NULL);
		fcinfo->args[0].value = STATES_VALUES(into)[i];
		fcinfo->args[0].isnull = STATES_ISNULL(spec, into)[i];
		fcinfo->args[1].value = STATES_VALUES(from)[i];
		fcinfo->args[1].isnull = STATES_ISNULL(spec, from)[i];
		ResetExprContext(spec->econtext);
		old = MemoryContextSwitchTo(spec->econtext->ecxt_per_tuple_memory);
		newval = FunctionCallInvoke(fcinfo);
		keep_new_value(spec, def, into, i, newval, fcinfo->isnull);
		STATES_NO_VALUE(spec, into)[i] = false;
		MemoryContextSwitchTo(old);
	}
}

AggStates *
agg_combine_in(AggSpec *spec, MemoryContext cxt, int n, AggStates *const *from)
{
	MemoryContext state_cxt = spec->state_cxt;
	AggStates  *volatile st = NULL;

	/* The states' context and the aggregate context, for this call. */
	spec->state_cxt = cxt;
	spec->agg_econtext->ecxt_per_tuple_memory = cxt;
	PG_TRY();
	{
		st = agg_states_new(spec);
		for (int i = 0; i < n; i++)
			agg_combine(spec, st, from[i]);
	}
	PG_FINALLY();
	{
		spec->state_cxt = state_cxt;
		spec->agg_econtext->ecxt_per_tuple_memory = state_cxt;
	}
	PG_END_TRY();
	return st;
}

void
agg_final(AggSpec *spec, AggStates *st, Datum *values, bool *isnull)
{
	for (int i = 0; i < spec->naggs; i++)
	{
		AggDef	   *def = &spec->aggs[i];

		if (!OidIsValid(def->finalfn.fn_oid))
		{
			/* The state is the result; copy it, the state lives on. */
			isnull[i] = STATES_ISNULL(spec, st)[i];
			values[i] = STATES_ISNULL(spec, st)[i] ? (Datum) 0 :
				datumCopy(STATES_VALUES(st)[i], def->transtypeByVal, def->transtypeLen);
			continue;
		}
		if (def->finalfn.fn_strict && STATES_ISNULL(spec, st)[i])
		{
			isnull[i] = true;
			values[i] = (Datum) 0;
			continue;
		}
		{
			LOCAL_FCINFO(fcinfo, FUNC_MAX_ARGS);
			Datum		result;

			InitFunctionCallInfoData(*fcinfo, &def->finalfn, def->finalfn_nargs,
									 def->collation,
									 (Node *) spec->aggstate, NULL);
			fcinfo->args[0].value = STATES_VALUES(st)[i];
			fcinfo->args[0].isnull = STATES_ISNULL(spec, st)[i];
			for (int j = 1; j < def->finalfn_nargs; j++)
			{
				fcinfo->args[j].value = (Datum) 0;
				fcinfo->args[j].isnull = true;
			}
			result = FunctionCallInvoke(fcinfo);
			isnull[i] = fcinfo->isnull;
			values[i] = result;
		}
	}
}

/*
 * Binary form: for each aggregate a tag byte (0: no value yet, 1: NULL,
 * 2: value) and then the value.  Internal states go through the
 * aggregate's serial function; others are stored as their datum image.
 * State only ever moves between processes of one server, so the image of
 * a by-value datum is fine.
 */
void
agg_serialize(AggSpec *spec, AggStates *st, StringInfo buf)
{
	for (int i = 0; i < spec->naggs; i++)
	{
		AggDef	   *def = &spec->aggs[i];
		char		tag = !STATES_ISNULL(spec, st)[i] ? 2 : STATES_NO_VALUE(spec, st)[i] ? 0 : 1;

		appendBinaryStringInfo(buf, &tag, 1);
		if (tag != 2)
			continue;

		if (def->transtype == INTERNALOID)
		{
			LOCAL_FCINFO(fcinfo, 1);
			bytea	   *b;
			uint32		len;

			InitFunctionCallInfoData(*fcinfo, &def->serialfn, 1, InvalidOid,
									 (Node *) spec->aggstate, NULL);
			fcinfo->args[0].value = STATES_VALUES(st)[i];
			fcinfo->args[0].isnull = false;
			b = DatumGetByteaPP(FunctionCallInvoke(fcinfo));
			len = VARSIZE_ANY_EXHDR(b);
			appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
			appendBinaryStringInfo(buf, VARDATA_ANY(b), len);
		}
		else if (def->transtypeByVal)
			appendBinaryStringInfo(buf, (char *) &STATES_VALUES(st)[i], sizeof(Datum));
		else
		{
			Datum		v = STATES_VALUES(st)[i];
			uint32		len;

			if (def->transtypeLen == -1)
			{
				struct varlena *flat = (struct varlena *) DatumGetPointer(v);

				/* Flatten expanded objects (datumCopy does) and toasted values. */
				if (VARATT_IS_EXTERNAL_EXPANDED(flat))
					flat = (struct varlena *) DatumGetPointer(datumCopy(v, false, -1));
				else
					flat = pg_detoast_datum_packed(flat);
				len = VARSIZE_ANY(flat);
				appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
				appendBinaryStringInfo(buf, (char *) flat, len);
			}
			else
			{
				len = datumGetSize(v, false, def->transtypeLen);
				appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
				appendBinaryStringInfo(buf, DatumGetPointer(v), len);
			}
		}
	}
}

AggStates *
agg_deserialize(AggSpec *spec, const char *data, size_t len, size_t *consumed)
{
	AggStates  *st = states_alloc(spec);
	const char *p = data;
	const char *end = data + len;
	MemoryContext old = MemoryContextSwitchTo(spec->state_cxt);

	for (int i = 0; i < spec->naggs; i++)
	{
		AggDef	   *def = &spec->aggs[i];
		char		tag;
		uint32		vlen;

		if (p >= end)
			elog(ERROR, "corrupt aggregate state");
		tag = *p++;
		STATES_NO_VALUE(spec, st)[i] = (tag == 0);
		STATES_ISNULL(spec, st)[i] = (tag != 2);
		if (tag != 2)
			continue;

		if (def->transtypeByVal && def->transtype != INTERNALOID)
		{
			memcpy(&STATES_VALUES(st)[i], p, sizeof(Datum));
			p += sizeof(Datum);
			continue;
		}
		memcpy(&vlen, p, sizeof(vlen));
		p += sizeof(vlen);
		if (p + vlen > end)
			elog(ERROR, "corrupt aggregate state");
		if (def->transtype == INTERNALOID)
		{
			LOCAL_FCINFO(fcinfo, 2);
			bytea	   *b = palloc(VARHDRSZ + vlen);

			SET_VARSIZE(b, VARHDRSZ + vlen);
			memcpy(VARDATA(b), p, vlen);
			InitFunctionCallInfoData(*fcinfo, &def->deserialfn, 2, InvalidOid,
									 (Node *) spec->aggstate, NULL);
			fcinfo->args[0].value = PointerGetDatum(b);
			fcinfo->args[0].isnull = false;
			fcinfo->args[1].value = (Datum) 0;
			fcinfo->args[1].isnull = false;
			STATES_VALUES(st)[i] = FunctionCallInvoke(fcinfo);
			pfree(b);
		}
		else
		{
			/* palloc'd copy: varlena headers must be aligned. */
			char	   *copy = palloc(vlen);

			memcpy(copy, p, vlen);
			STATES_VALUES(st)[i] = PointerGetDatum(copy);
		}
		p += vlen;
	}
	MemoryContextSwitchTo(old);
	if (consumed)
		*consumed = p - data;
	return st;
}

PG_FUNCTION_INFO_V1(streamflink_check_aggregates);

/*
 * streamflink._check_aggregates(row_type, aggregates): checks a pipeline's
 * aggregate list at creation, so a bad one fails there with a clear error,
 * and returns the output column names.
 */
Datum
streamflink_check_aggregates(PG_FUNCTION_ARGS)
{
	Oid			row_type = PG_GETARG_OID(0);
	char	   *aggregates = text_to_cstring(PG_GETARG_TEXT_PP(1));
	AggSpec    *spec = agg_spec_create(row_type, aggregates, CurrentMemoryContext);
	Datum	   *names = palloc(sizeof(Datum) * spec->naggs);

	if (spec->naggs == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a window pipeline needs at least one aggregate"),
				 errhint("For example: aggregates => 'count(*) AS events'.")));
	for (int i = 0; i < spec->naggs; i++)
		names[i] = CStringGetTextDatum(spec->aggs[i].name);
	PG_RETURN_ARRAYTYPE_P(construct_array(names, spec->naggs, TEXTOID, -1, false, TYPALIGN_INT));
}

PG_FUNCTION_INFO_V1(streamflink_aggregate_columns);

/*
 * streamflink._aggregate_columns(row_type, aggregates): the sink columns of
 * an aggregate list, as column definitions "name type [COLLATE c]" with
 * the types (and collations) GROUP BY would give: the sink table is created
 * from these, never from the user's text.
 */
Datum
streamflink_aggregate_columns(PG_FUNCTION_ARGS)
{
	Oid			row_type = PG_GETARG_OID(0);
	char	   *aggregates = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Query	   *query = analyse_aggregates(row_type, aggregates);
	Datum	   *defs = palloc(sizeof(Datum) * Max(list_length(query->targetList), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, query->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		Node	   *expr = (Node *) tle->expr;
		Oid			type = exprType(expr);
		Oid			coll = exprCollation(expr);
		char	   *def;

		def = psprintf("%s %s", quote_identifier(tle->resname ? tle->resname : "?column?"),
					   format_type_with_typemod(type, exprTypmod(expr)));
		if (OidIsValid(coll) && coll != get_typcollation(type))
			def = psprintf("%s COLLATE %s", def, generate_collation_name(coll));
		defs[n++] = CStringGetTextDatum(def);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(defs, n, TEXTOID, -1, false, TYPALIGN_INT));
}
