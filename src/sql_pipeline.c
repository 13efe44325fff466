/*-------------------------------------------------------------------------
 *
 * sql_pipeline.c
 *	  Pipelines written as one SQL query over a source: analysis at
 *	  creation, refusals, explain, and the runtime stages the operators run
 *	  (see sql_pipeline.h).
 *
 * The source is visible to the query as a subquery of its row type,
 *
 *	 (SELECT (NULL::<row type>).* [, NULL::timestamptz AS window_start,
 *			 NULL::timestamptz AS window_end]) AS <alias>
 *
 * put in place of the FROM item in the raw parse tree, so the user's query
 * text stays what Postgres analyses (positions in errors are the user's)
 * and the only range table entry's columns are the row type's, in order:
 * a Var's attribute number is the event slot's (as fragment.c does for
 * aggregate lists).  The window's columns come after them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parse_coerce.h"
#include "parser/parse_expr.h"
#include "parser/parse_node.h"
#include "parser/parser.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/ruleutils.h"
#include "utils/sortsupport.h"
#include "utils/typcache.h"

#include "group_key.h"
#include "match_recognize.h"
#include "sql_pipeline.h"

PG_FUNCTION_INFO_V1(streamflink_sql_shape);
PG_FUNCTION_INFO_V1(streamflink_sql_explain);

/* A query, analysed, and what it maps onto. */
typedef struct SqlpShape
{
	const char *sql;			/* as written (NULL at runtime) */
	/* the source */
	char	   *source;
	int32		source_id;
	Oid			row_type;
	char	   *event_time;		/* the source's event time column, or NULL */
	char	   *format;
	char	   *topic;
	/* the window table function, if any */
	bool		windowed;
	WindowKind	wkind;
	Interval   *size;
	Interval   *slide;
	Interval   *gap;
	Query	   *query;
	int			natts;			/* source columns; window columns follow */
	/* derived from the query (derive) */
	Expr	   *where;
	List	   *keys;			/* GROUP BY expressions but the window's */
	List	   *aggrefs;		/* distinct Aggrefs of SELECT and HAVING */
	List	   *outputs;		/* non-junk TargetEntries, in SELECT order */
	int		   *order;			/* sink column i is outputs[order[i]] */
	int			nidentity;		/* the first nidentity of order */
	/* Top-N per window: SELECT ... FROM (query with rank() OVER) t WHERE r <= N */
	Query	   *outer;			/* NULL: not Top-N */
	TargetEntry *rank_tle;		/* the ranking window function's, in query */
	WindowClause *wc;			/* its PARTITION BY and ORDER BY */
	int64		topn;			/* ranks 1..topn are kept */
	List	   *outer_outputs;	/* the outer SELECT list (Vars of t) */
} SqlpShape;

static const char *const window_names[] = {"tumble", "hop", "session"};

/* --- errors ------------------------------------------------------------ */

/*
 * Errors of the parser and of our checks carry a position in the user's
 * query: show it as an internal query (as PL/pgSQL does), since the
 * statement the client sent is the create_pipeline call.
 */
static void
query_error_callback(void *arg)
{
	SqlpShape  *s = (SqlpShape *) arg;
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery(s->sql);
	}
	errcontext("in the query of a pipeline");
}

/* The character position (1-based) of byte offset 'location', or 0. */
static int
position(SqlpShape *s, int location)
{
	if (location < 0 || s->sql == NULL)
		return 0;
	return pg_mbstrlen_with_len(s->sql, location) + 1;
}

/* A construct a stream cannot run: why, and what would work. */
static void refuse(SqlpShape *s, int location, const char *what, const char *why,
				   const char *hint) pg_attribute_noreturn();

static void
refuse(SqlpShape *s, int location, const char *what, const char *why, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("a pipeline cannot run %s", what),
			 errdetail("%s", why),
			 errhint("%s", hint),
			 position(s, location) ? errposition(position(s, location)) : 0));
}

/* --- the FROM item ----------------------------------------------------- */

static void
find_source(SqlpShape *s, const char *name, int location)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;
	int			ret;
	HeapTuple	tup;
	TupleDesc	desc;
	char	   *v;

	args[0] = CStringGetTextDatum(name);
	SPI_connect();
	/* Row-level security shows the caller its own sources only. */
	ret = SPI_execute_with_args("SELECT id, row_type::pg_catalog.oid, event_time, format, topic"
								"  FROM streamflink.source WHERE name OPERATOR(pg_catalog.=) $1",
								1, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read streamflink.source: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("source \"%s\" does not exist", name),
				 errdetail("A pipeline reads a streamflink source; tables cannot be read as streams."),
				 errhint("Create it with streamflink.create_source(); see streamflink.sources."),
				 errposition(position(s, location))));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	s->source = SPI_palloc(strlen(name) + 1);
	strcpy(s->source, name);
	s->source_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	s->row_type = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
	v = SPI_getvalue(tup, desc, 3);
	if (v)
	{
		s->event_time = SPI_palloc(strlen(v) + 1);
		strcpy(s->event_time, v);
	}
	v = SPI_getvalue(tup, desc, 4);
	s->format = SPI_palloc(strlen(v) + 1);
	strcpy(s->format, v);
	v = SPI_getvalue(tup, desc, 5);
	s->topic = SPI_palloc(strlen(v) + 1);
	strcpy(s->topic, v);
	SPI_finish();
}

/* A constant interval argument of a window function, checked. */
static Interval *
window_interval(SqlpShape *s, Node *raw, const char *what)
{
	ParseState *pstate = make_parsestate(NULL);
	Node	   *e;
	Interval   *iv;
	int			loc = exprLocation(raw);

	pstate->p_sourcetext = s->sql;
	e = transformExpr(pstate, raw, EXPR_KIND_FROM_FUNCTION);
	e = coerce_to_specific_type(pstate, e, INTERVALOID, what);
	e = eval_const_expressions(NULL, e);
	if (!IsA(e, Const) || ((Const *) e)->constisnull)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the %s of a window must be a constant interval", what),
				 errposition(position(s, loc))));
	iv = DatumGetIntervalP(((Const *) e)->constvalue);
	if (iv->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the %s of a window cannot be in months or years", what),
				 errhint("Months differ in length; write days instead."),
				 errposition(position(s, loc))));
	if ((int128) iv->day * USECS_PER_DAY + iv->time <= 0 ||
		(int128) iv->day * USECS_PER_DAY + iv->time > PG_INT64_MAX / 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the %s of a window must be positive", what),
				 errposition(position(s, loc))));
	free_parsestate(pstate);
	return iv;
}

static int64
interval_usecs(Interval *iv)
{
	return (int64) iv->day * USECS_PER_DAY + iv->time;
}

/* streamflink.tumble(source, ts, size), hop(source, ts, slide, size), session(source, ts, gap) */
static char *
window_function(SqlpShape *s, FuncCall *fc, WindowKind kind)
{
	ListCell   *lc;
	int			i = 0;
	char	   *source = NULL;
	char	   *time_column = NULL;
	int			time_location = -1;
	static const char *const positional[3][2] = {{"size", NULL}, {"slide", "size"}, {"gap", NULL}};
	static const char *const usage =
		"Write streamflink.tumble(source, time_column, size => '1 minute'), "
		"streamflink.hop(source, time_column, slide => '30 seconds', size => '5 minutes') or "
		"streamflink.session(source, time_column, gap => '10 minutes').";

	s->windowed = true;
	s->wkind = kind;
	if (fc->agg_order || fc->agg_filter || fc->over || fc->agg_star || fc->agg_distinct ||
		fc->func_variadic)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("invalid call of streamflink.%s", window_names[kind]),
				 errhint("%s", usage),
				 errposition(position(s, fc->location))));
	foreach(lc, fc->args)
	{
		Node	   *arg = lfirst(lc);
		const char *name = NULL;
		Interval  **target;

		if (IsA(arg, NamedArgExpr))
		{
			name = ((NamedArgExpr *) arg)->name;
			arg = (Node *) ((NamedArgExpr *) arg)->arg;
		}
		if (i < 2)
		{
			ColumnRef  *cr = (ColumnRef *) arg;

			if (name != NULL || !IsA(arg, ColumnRef) || list_length(cr->fields) != 1 ||
				!IsA(linitial(cr->fields), String))
				ereport(ERROR,
						(errcode(ERRCODE_SYNTAX_ERROR),
						 errmsg("the first two arguments of streamflink.%s are a source and its time column",
								window_names[kind]),
						 errhint("%s", usage),
						 errposition(position(s, exprLocation(arg)))));
			if (i == 0)
				source = strVal(linitial(cr->fields));
			else
			{
				time_column = strVal(linitial(cr->fields));
				time_location = cr->location;
			}
			i++;
			continue;
		}
		if (name == NULL)
		{
			if (i - 2 >= 2 || positional[kind][i - 2] == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_SYNTAX_ERROR),
						 errmsg("too many arguments for streamflink.%s", window_names[kind]),
						 errhint("%s", usage),
						 errposition(position(s, exprLocation(arg)))));
			name = positional[kind][i - 2];
		}
		if (strcmp(name, "size") == 0 && kind != WINDOW_SESSION)
			target = &s->size;
		else if (strcmp(name, "slide") == 0 && kind == WINDOW_HOP)
			target = &s->slide;
		else if (strcmp(name, "gap") == 0 && kind == WINDOW_SESSION)
			target = &s->gap;
		else
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("streamflink.%s has no argument \"%s\"", window_names[kind], name),
					 errhint("%s", usage),
					 errposition(position(s, exprLocation(arg)))));
		if (*target != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("argument \"%s\" given twice", name),
					 errposition(position(s, exprLocation(arg)))));
		*target = window_interval(s, arg, name);
		i++;
	}
	if (source == NULL || time_column == NULL ||
		(kind != WINDOW_SESSION && s->size == NULL) ||
		(kind == WINDOW_HOP && s->slide == NULL) || (kind == WINDOW_SESSION && s->gap == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("missing arguments of streamflink.%s", window_names[kind]),
				 errhint("%s", usage),
				 errposition(position(s, fc->location))));
	if (kind == WINDOW_HOP)
	{
		if (interval_usecs(s->slide) > interval_usecs(s->size))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("window slide is larger than window size"),
					 errhint("A slide larger than the size would skip events; use a smaller slide."),
					 errposition(position(s, fc->location))));
		if (interval_usecs(s->size) / interval_usecs(s->slide) > 1000)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("window size is more than 1000 slides"),
					 errhint("Each event is added to size/slide windows; use a larger slide."),
					 errposition(position(s, fc->location))));
	}

	find_source(s, source, exprLocation(linitial(fc->args)));
	if (s->event_time == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("source \"%s\" has no event time column", source),
				 errdetail("Its events are timed by their Kafka message timestamps."),
				 errhint("Create the source with event_time => 'column', or use streamflink.create_window_pipeline(), which windows by the message timestamp."),
				 errposition(position(s, time_location))));
	if (strcmp(s->event_time, time_column) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("windows of source \"%s\" are on its event time column \"%s\", not \"%s\"",
						source, s->event_time, time_column),
				 errdetail("The watermark, which fires windows, follows the event time column."),
				 errposition(position(s, time_location))));
	return source;
}

/* The subquery standing for the source (see the file's header). */
static Node *
source_subquery(SqlpShape *s, Alias *alias, const char *source)
{
	TupleDesc	desc = lookup_rowtype_tupdesc(s->row_type, -1);
	char	   *sql;
	SelectStmt *sel;
	RangeSubselect *rs;

	s->natts = 0;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("the row type of source \"%s\" has a dropped column", source),
					 errhint("Create the source again.")));
		if (s->windowed && (strcmp(NameStr(att->attname), "window_start") == 0 ||
							strcmp(NameStr(att->attname), "window_end") == 0))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("source \"%s\" has a column \"%s\", which its windows add",
							source, NameStr(att->attname))));
		s->natts++;
	}
	ReleaseTupleDesc(desc);

	sql = psprintf("SELECT 1 FROM (SELECT (NULL::%s).*%s) AS x",
				   format_type_be_qualified(s->row_type),
				   s->windowed ? ", NULL::pg_catalog.timestamptz AS window_start,"
				   " NULL::pg_catalog.timestamptz AS window_end" : "");
	sel = (SelectStmt *) linitial_node(RawStmt, raw_parser(sql, RAW_PARSE_DEFAULT))->stmt;
	rs = linitial_node(RangeSubselect, sel->fromClause);
	rs->alias = alias ? alias : makeAlias(source, NIL);
	return (Node *) rs;
}

static Node *
from_item(SqlpShape *s, Node *item)
{
	static const char *const one_source =
		"A pipeline reads one source, maybe through a window function: FROM source, or FROM streamflink.tumble(source, time_column, size => '1 minute').";

	if (IsA(item, RangeVar))
	{
		RangeVar   *rv = (RangeVar *) item;

		if (rv->schemaname != NULL || rv->catalogname != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("source names have no schema: \"%s.%s\"", rv->schemaname, rv->relname),
					 errhint("%s", one_source),
					 errposition(position(s, rv->location))));
		find_source(s, rv->relname, rv->location);
		return source_subquery(s, rv->alias, rv->relname);
	}
	if (IsA(item, RangeFunction))
	{
		RangeFunction *rf = (RangeFunction *) item;
		FuncCall   *fc;
		char	   *schema = NULL;
		char	   *name;
		int			kind = -1;
		char	   *source;

		fc = (FuncCall *) linitial((List *) linitial(rf->functions));
		if (rf->lateral || rf->ordinality || rf->is_rowsfrom || rf->coldeflist ||
			list_length(rf->functions) != 1 || !IsA(fc, FuncCall))
			refuse(s, -1, "this FROM item", "Only a source or a window function over a source can be read.",
				   one_source);
		DeconstructQualifiedName(fc->funcname, &schema, &name);
		for (int i = 0; i < lengthof(window_names); i++)
			if (strcmp(name, window_names[i]) == 0)
				kind = i;
		if (kind < 0 || (schema != NULL && strcmp(schema, "streamflink") != 0))
			refuse(s, fc->location, "a function in FROM",
				   "Only the window functions streamflink.tumble, streamflink.hop and streamflink.session can be read from.",
				   one_source);
		source = window_function(s, fc, (WindowKind) kind);
		return source_subquery(s, rf->alias, source);
	}
	if (IsA(item, JoinExpr))
		refuse(s, -1, "a join",
			   "A join of streams without a time bound keeps every event of both sides for ever, and a join with a table reads it at moments a replay after a failure cannot repeat.",
			   "Create one pipeline per source into tables and join the sink tables when reading them.");
	if (IsA(item, RangeSubselect) && s->outer == NULL)
	{
		/*
		 * The Top-N form: the subquery must read the source itself (its
		 * window function is checked after analysis).
		 */
		RangeSubselect *rs = (RangeSubselect *) item;
		SelectStmt *inner = (SelectStmt *) rs->subquery;

		s->outer = makeNode(Query);	/* a mark until analysis */
		if (!IsA(inner, SelectStmt) || inner->op != SETOP_NONE ||
			list_length(inner->fromClause) != 1 || inner->withClause != NULL)
			refuse(s, -1, "a subquery in FROM",
				   "Only the Top-N form reads a subquery: SELECT * FROM (SELECT ..., rank() OVER (PARTITION BY window_start ORDER BY ...) AS r FROM streamflink.tumble(...) GROUP BY ...) t WHERE r <= N.",
				   one_source);
		linitial(inner->fromClause) = from_item(s, linitial(inner->fromClause));
		return item;
	}
	if (IsA(item, RangeSubselect))
		refuse(s, -1, "a subquery in FROM",
			   "The query must read its source directly.",
			   one_source);
	refuse(s, -1, "this FROM item", "Only a source or a window function over a source can be read.",
		   one_source);
}

/* --- checks of the analysed query ------------------------------------- */

static bool
volatile_checker(Oid func_id, void *context)
{
	if (func_volatile(func_id) == PROVOLATILE_VOLATILE)
	{
		*(Oid *) context = func_id;
		return true;
	}
	return false;
}

static bool
find_volatile(Node *node, Oid *found)
{
	if (node == NULL)
		return false;
	if (check_functions_in_node(node, volatile_checker, found))
		return true;
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, find_volatile, found, 0);
	return expression_tree_walker(node, find_volatile, found);
}

static void
check_query(SqlpShape *s)
{
	Query	   *q = s->query;
	Oid			volatile_fn = InvalidOid;

	if (q->hasSubLinks)
		refuse(s, -1, "a subquery",
			   "A subquery reads other tables at moments a replay after a failure cannot repeat, and a pipeline reads only its source.",
			   "Look tables up when reading the sink, or in a function the query calls.");
	if (q->hasWindowFuncs && s->outer == NULL)
		refuse(s, -1, "window functions (OVER)",
			   "Rows of a stream never end, so a window function over them has no frame to finish.",
			   "Aggregate over windows instead: FROM streamflink.tumble(source, ts, size => '1 minute') ... GROUP BY key, window_start, window_end; for the top rows of each window, SELECT * FROM (SELECT ..., rank() OVER (PARTITION BY window_start ORDER BY count(*) DESC) AS r FROM streamflink.tumble(...) GROUP BY ...) t WHERE r <= N.");
	if (q->hasTargetSRFs)
		refuse(s, -1, "set-returning functions in the SELECT list",
			   "Each event gives at most one row.",
			   "Return an array or jsonb and expand it when reading the sink.");
	if (q->sortClause != NIL)
		refuse(s, -1, "ORDER BY",
			   "Rows land in the sink as events arrive or as windows fire: a stream has no end to sort at.",
			   "Drop ORDER BY and order the rows when reading the sink table.");
	if (q->limitCount != NULL || q->limitOffset != NULL)
		refuse(s, -1, "LIMIT or OFFSET",
			   "A stream has no end to count rows from.",
			   "Drop LIMIT and OFFSET; take the rows you need when reading the sink table.");
	if (q->distinctClause != NIL)
		refuse(s, -1, "DISTINCT",
			   "DISTINCT over an unbounded stream would keep every row it ever saw.",
			   "Group by the columns over a window: FROM streamflink.tumble(...) GROUP BY columns, window_start, window_end.");
	if (q->groupingSets != NIL)
		refuse(s, -1, "GROUPING SETS, ROLLUP or CUBE",
			   "A window's row in the sink is identified by one set of keys.",
			   "Create one pipeline per grouping.");
	if (q->rowMarks != NIL || q->cteList != NIL || q->setOperations != NULL)
		refuse(s, -1, "this query", "Only a plain SELECT over a source can run as a stream.",
			   "Write SELECT ... FROM source [WHERE ...], or group by a window.");
	if (find_volatile((Node *) q, &volatile_fn))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a pipeline cannot run volatile function %s()", get_func_name(volatile_fn)),
				 errdetail("Events are processed again after a failure, and a volatile function would give them other values than the first time: the results would not be exactly once."),
				 errhint("Use the event's own columns (its event time rather than clock_timestamp() or now()), or an immutable or stable function.")));
	if (s->windowed && !q->hasAggs && q->groupClause == NIL)
		refuse(s, -1, "a window function in FROM without GROUP BY",
			   "A window function in FROM assigns events to windows for aggregates.",
			   "Add aggregates and GROUP BY window_start, window_end; to keep every event, select from the source itself.");
	if (!s->windowed && (q->hasAggs || q->groupClause != NIL || q->havingQual != NULL))
		refuse(s, -1, "an aggregate without a window",
			   "An aggregate over an unbounded stream never finishes.",
			   "Aggregate over windows: FROM streamflink.tumble(source, ts, size => '1 minute') ... GROUP BY key, window_start, window_end.");
}

/* --- Top-N per window -------------------------------------------------- */

static bool is_window_var(SqlpShape *s, Node *node, int which);

static const char *const topn_form =
	"Write SELECT * FROM (SELECT key, window_start, window_end, count(*) AS n, "
	"rank() OVER (PARTITION BY window_start, window_end ORDER BY count(*) DESC) AS r "
	"FROM streamflink.hop(...) GROUP BY key, window_start, window_end) t WHERE r <= 3.";

static bool
window_func_walker(Node *node, void *arg)
{
	if (node == NULL)
		return false;
	if (IsA(node, WindowFunc))
		return true;
	return expression_tree_walker(node, window_func_walker, arg);
}

/* The rank limit of "r <= N" / "r < N" (or reversed), or -1. */
static int64
rank_limit(Node *qual, int rank_resno)
{
	OpExpr	   *op = (OpExpr *) qual;
	Node	   *l,
			   *r;
	char	   *name;
	bool		var_left;
	Const	   *c;
	int64		n;

	if (qual == NULL || !IsA(qual, OpExpr) || list_length(op->args) != 2)
		return -1;
	l = linitial(op->args);
	r = lsecond(op->args);
	var_left = IsA(l, Var);
	if (!IsA(var_left ? l : r, Var) || !IsA(var_left ? r : l, Const))
		return -1;
	if (((Var *) (var_left ? l : r))->varattno != rank_resno ||
		((Var *) (var_left ? l : r))->varlevelsup != 0)
		return -1;
	c = (Const *) (var_left ? r : l);
	if (c->constisnull)
		return -1;
	switch (c->consttype)
	{
		case INT8OID:
			n = DatumGetInt64(c->constvalue);
			break;
		case INT4OID:
			n = DatumGetInt32(c->constvalue);
			break;
		case INT2OID:
			n = DatumGetInt16(c->constvalue);
			break;
		default:
			return -1;
	}
	name = get_opname(op->opno);
	if (name == NULL)
		return -1;
	if (strcmp(name, var_left ? "<=" : ">=") == 0)
		return n;
	if (strcmp(name, var_left ? "<" : ">") == 0)
		return n - 1;
	return -1;
}

/*
 * The Top-N form: the outer query keeps the ranks up to N of a ranking
 * function over the windowed aggregate's rows of each window.
 */
static void
check_topn(SqlpShape *s)
{
	Query	   *o = s->outer;
	Query	   *q = s->query;
	ListCell   *lc;
	Oid			volatile_fn = InvalidOid;
	WindowFunc *wf = NULL;
	bool		by_window = false;

	if (!q->hasWindowFuncs)
		refuse(s, -1, "a subquery in FROM",
			   "The query must read its source directly; only the Top-N form reads a subquery.",
			   topn_form);
	if (o->hasAggs || o->groupClause != NIL || o->havingQual != NULL || o->hasWindowFuncs ||
		o->sortClause != NIL || o->limitCount != NULL || o->limitOffset != NULL ||
		o->distinctClause != NIL || o->hasSubLinks || o->hasTargetSRFs || o->cteList != NIL ||
		o->rowMarks != NIL || o->setOperations != NULL)
		refuse(s, -1, "this Top-N query",
			   "Around the windowed aggregate, a Top-N query only selects its columns and keeps the first ranks.",
			   topn_form);
	if (find_volatile((Node *) o->jointree->quals, &volatile_fn))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a pipeline cannot run volatile function %s()", get_func_name(volatile_fn))));
	if (!s->windowed || s->wkind == WINDOW_SESSION)
		refuse(s, -1, "a ranking without tumbling or hopping windows",
			   "Top-N ranks the rows of each window when it fires: sessions fire per key, and rows without a window never stop coming.",
			   topn_form);
	foreach(lc, q->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (IsA(tle->expr, WindowFunc) && wf == NULL)
		{
			wf = (WindowFunc *) tle->expr;
			s->rank_tle = tle;
		}
		else if (window_func_walker((Node *) tle->expr, NULL))
			refuse(s, exprLocation((Node *) tle->expr), "this window function",
				   "Top-N takes one rank(), dense_rank() or row_number() as an output column.",
				   topn_form);
	}
	if (wf == NULL || s->rank_tle->resjunk ||
		(wf->winfnoid != F_RANK_ && wf->winfnoid != F_DENSE_RANK_ && wf->winfnoid != F_ROW_NUMBER) ||
		wf->args != NIL || wf->aggfilter != NULL)
		refuse(s, wf ? wf->location : -1, "this window function",
			   "Top-N takes one rank(), dense_rank() or row_number() as an output column.",
			   topn_form);
	foreach(lc, q->windowClause)
		if (((WindowClause *) lfirst(lc))->winref == wf->winref)
			s->wc = lfirst(lc);
	foreach(lc, s->wc->partitionClause)
	{
		TargetEntry *tle = get_sortgroupclause_tle(lfirst(lc), q->targetList);

		if (is_window_var(s, (Node *) tle->expr, 1) || is_window_var(s, (Node *) tle->expr, 2))
			by_window = true;
		else
			refuse(s, exprLocation((Node *) tle->expr), "a ranking partitioned by other than the window",
				   "Top-N ranks the rows of each window: PARTITION BY window_start (and window_end).",
				   topn_form);
	}
	if (!by_window || s->wc->orderClause == NIL)
		refuse(s, wf->location, "a ranking without PARTITION BY window_start and ORDER BY",
			   "Top-N ranks the rows of each window by an order.",
			   topn_form);
	s->topn = rank_limit(o->jointree->quals, s->rank_tle->resno);
	if (s->topn < 1)
		refuse(s, -1, "this condition on the rank",
			   "A Top-N query keeps the first ranks: WHERE r <= N (or r < N) and nothing else.",
			   topn_form);
	s->outer_outputs = NIL;
	foreach(lc, o->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		Var		   *v = (Var *) tle->expr;

		if (tle->resjunk)
			continue;
		if (!IsA(v, Var) || v->varlevelsup != 0 || v->varattno <= 0)
			refuse(s, exprLocation((Node *) v), "an expression around a Top-N subquery",
				   "The outer query of a Top-N form selects the subquery's columns; compute expressions inside it.",
				   topn_form);
		s->outer_outputs = lappend(s->outer_outputs, tle);
	}
}

/* --- mapping onto our operators ---------------------------------------- */

typedef struct VarCheck
{
	SqlpShape  *s;
	int			location;
	bool		window;			/* found a window column */
	bool		wholerow;		/* found a whole-row reference */
} VarCheck;

static bool
var_check_walker(Node *node, VarCheck *c)
{
	if (node == NULL)
		return false;
	if (IsA(node, Var) && ((Var *) node)->varlevelsup == 0)
	{
		Var		   *v = (Var *) node;

		if (v->varattno > c->s->natts)
			c->window = true;
		if (v->varattno <= 0)
			c->wholerow = true;
		if (c->window || c->wholerow)
		{
			c->location = v->location;
			return true;
		}
	}
	return expression_tree_walker(node, var_check_walker, c);
}

/* Refuse window columns (and whole-row references) in 'node'. */
static void
check_vars(SqlpShape *s, Node *node, const char *where, const char *hint)
{
	VarCheck	c = {s, -1, false, false};

	if (!var_check_walker(node, &c))
		return;
	if (c.wholerow)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a pipeline cannot use a whole-row reference to its source"),
				 errhint("Name the columns."),
				 errposition(position(s, c.location))));
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s cannot refer to window_start or window_end", where),
			 errhint("%s", hint),
			 errposition(position(s, c.location))));
}

static bool
is_window_var(SqlpShape *s, Node *node, int which)
{
	return IsA(node, Var) && ((Var *) node)->varlevelsup == 0 &&
		((Var *) node)->varattno == s->natts + which;
}

static bool
collect_aggrefs(Node *node, SqlpShape *s)
{
	if (node == NULL)
		return false;
	if (IsA(node, Aggref))
	{
		ListCell   *lc;

		check_vars(s, (Node *) ((Aggref *) node)->args, "an aggregate's argument",
				   "An aggregate runs over the events of its window.");
		check_vars(s, (Node *) ((Aggref *) node)->aggfilter, "an aggregate's FILTER",
				   "An aggregate runs over the events of its window.");
		foreach(lc, s->aggrefs)
			if (equal(lfirst(lc), node))
				return false;
		s->aggrefs = lappend(s->aggrefs, node);
		return false;
	}
	return expression_tree_walker(node, collect_aggrefs, s);
}

/* The list index of a pointer member (list_member_ptr's position). */
static int
list_ptr_position(List *list, void *ptr)
{
	ListCell   *lc;

	foreach(lc, list)
		if (lfirst(lc) == ptr)
			return foreach_current_index(lc);
	return -1;
}

/*
 * Split the analysed query into our operators' parts: filter, key,
 * aggregates, outputs and the sink's identifying columns.
 */
static void
derive(SqlpShape *s)
{
	Query	   *q = s->query;
	ListCell   *lc;
	int			n;
	int			used = 0;
	bool	   *taken;

	s->where = (Expr *) q->jointree->quals;
	s->outputs = NIL;
	foreach(lc, q->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		ListCell   *lc2;

		if (tle->resjunk || tle == s->rank_tle)
			continue;
		if (tle->resname == NULL || strcmp(tle->resname, "?column?") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_COLUMN_DEFINITION),
					 errmsg("output column %d of the query has no name", tle->resno),
					 errhint("Name it with AS: the sink table's columns are the query's output columns."),
					 errposition(position(s, exprLocation((Node *) tle->expr)))));
		foreach(lc2, s->outputs)
			if (strcmp(((TargetEntry *) lfirst(lc2))->resname, tle->resname) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("the query has two output columns named \"%s\"", tle->resname),
						 errhint("Name them apart with AS: they are the sink table's columns."),
						 errposition(position(s, exprLocation((Node *) tle->expr)))));
		s->outputs = lappend(s->outputs, tle);
	}
	n = list_length(s->outputs);
	s->order = palloc(sizeof(int) * Max(n, 1));
	taken = palloc0(sizeof(bool) * Max(n, 1));
	s->keys = NIL;
	s->aggrefs = NIL;
	s->nidentity = 0;

	if (!s->windowed)
	{
		check_vars(s, (Node *) q->targetList, "", "");
		check_vars(s, (Node *) s->where, "", "");
		for (int i = 0; i < n; i++)
			s->order[i] = i;
		return;
	}

	check_vars(s, (Node *) s->where, "WHERE",
			   "WHERE filters events before they enter windows; filter windows with HAVING.");
	{
		int			start_pos = -1;
		List	   *key_pos = NIL;

		foreach(lc, q->groupClause)
		{
			SortGroupClause *sgc = lfirst_node(SortGroupClause, lc);
			TargetEntry *tle = get_sortgroupclause_tle(sgc, q->targetList);
			Node	   *expr = (Node *) tle->expr;

			if (is_window_var(s, expr, 2))
				continue;		/* window_end: one per window_start */
			if (tle->resjunk)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("GROUP BY expression %s is not an output column",
								is_window_var(s, expr, 1) ? "window_start" : "of the query"),
						 errdetail("The GROUP BY expressions identify a window's row in the sink, which a late event replaces."),
						 errhint("Add it to the SELECT list."),
						 errposition(position(s, exprLocation(expr)))));
			if (is_window_var(s, expr, 1))
			{
				start_pos = list_ptr_position(s->outputs, tle);
				continue;
			}
			check_vars(s, expr, "a GROUP BY key",
					   "Group by window_start and window_end themselves, and by expressions of the events' columns.");
			s->keys = lappend(s->keys, expr);
			key_pos = lappend_int(key_pos, list_ptr_position(s->outputs, tle));
		}
		if (start_pos < 0)
			refuse(s, -1, "a windowed aggregate without GROUP BY window_start",
				   "Each window's aggregates are one row per key and window.",
				   "Add window_start and window_end to the SELECT list and to GROUP BY.");
		foreach(lc, key_pos)
		{
			s->order[used++] = lfirst_int(lc);
			taken[lfirst_int(lc)] = true;
		}
		s->order[used++] = start_pos;
		taken[start_pos] = true;
		s->nidentity = used;
		for (int i = 0; i < n; i++)
			if (!taken[i])
				s->order[used++] = i;
	}
	collect_aggrefs((Node *) q->targetList, s);
	collect_aggrefs(q->havingQual, s);
}

static char *deparse(SqlpShape *s, Node *expr);

/*
 * The aggregates as the aggregate list agg_spec_build takes, each named
 * as written (errors about one name it so).
 */
static Query *
aggregate_query(SqlpShape *s)
{
	Query	   *aq = makeNode(Query);
	ListCell   *lc;

	aq->commandType = CMD_SELECT;
	aq->querySource = QSRC_ORIGINAL;
	aq->canSetTag = true;
	aq->hasAggs = true;
	aq->rtable = copyObject(s->query->rtable);
	aq->jointree = makeFromExpr(copyObject(s->query->jointree->fromlist), NULL);
	foreach(lc, s->aggrefs)
		aq->targetList = lappend(aq->targetList,
								 makeTargetEntry(copyObject(lfirst(lc)),
												 foreach_current_index(lc) + 1,
												 deparse(s, lfirst(lc)),
												 false));
	return aq;
}

/* An expression of the query as SQL text (ruleutils), for explain. */
static char *
deparse(SqlpShape *s, Node *expr)
{
	Query	   *q = makeNode(Query);
	char	   *text;
	char	   *end;
	const char *marker = " AS sf_expr__";

	q->commandType = CMD_SELECT;
	q->querySource = QSRC_ORIGINAL;
	q->canSetTag = true;
	q->hasAggs = s->query->hasAggs;
	q->rtable = s->query->rtable;
	q->jointree = makeFromExpr(s->query->jointree->fromlist, NULL);
	q->targetList = list_make1(makeTargetEntry((Expr *) expr, 1, "sf_expr__", false));
	text = pg_get_querydef(q, false);
	while (*text == ' ' || *text == '\n')
		text++;
	end = strstr(text, marker);
	if (strncmp(text, "SELECT ", 7) != 0 || end == NULL)
		elog(ERROR, "could not deparse an expression of the query");
	return pnstrdup(text + 7, end - text - 7);
}

static SqlpShape *
analyse(const char *sql)
{
	SqlpShape  *s = palloc0(sizeof(SqlpShape));
	ErrorContextCallback cb;
	List	   *raw;
	RawStmt    *rs;
	SelectStmt *sel;

	s->sql = sql;
	cb.callback = query_error_callback;
	cb.arg = s;
	cb.previous = error_context_stack;
	error_context_stack = &cb;

	raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	if (list_length(raw) != 1 || !IsA(linitial_node(RawStmt, raw)->stmt, SelectStmt))
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("the query of a pipeline must be one SELECT")));
	rs = linitial_node(RawStmt, raw);
	sel = (SelectStmt *) rs->stmt;
	if (sel->op != SETOP_NONE)
		refuse(s, -1, "UNION, INTERSECT or EXCEPT",
			   "A pipeline runs one SELECT over one source.",
			   "Create one pipeline per SELECT, with a sink each.");
	if (sel->valuesLists != NIL || sel->intoClause != NULL || sel->lockingClause != NIL)
		refuse(s, -1, "this statement", "A pipeline is a SELECT over a source.",
			   "Write SELECT ... FROM source [WHERE ...].");
	if (sel->withClause != NULL)
		refuse(s, sel->withClause->location, "WITH",
			   "A pipeline reads its source directly.",
			   "Write the query without WITH.");
	if (sel->fromClause == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("the query of a pipeline must read a source in FROM")));
	if (list_length(sel->fromClause) > 1)
		refuse(s, -1, "a join",
			   "A join of streams without a time bound keeps every event of both sides for ever, and a join with a table reads it at moments a replay after a failure cannot repeat.",
			   "Create one pipeline per source into tables and join the sink tables when reading them.");
	linitial(sel->fromClause) = from_item(s, linitial(sel->fromClause));

	s->query = parse_analyze_fixedparams(rs, sql, NULL, 0, NULL);
	if (s->outer != NULL)
	{
		s->outer = s->query;
		s->query = linitial_node(RangeTblEntry, s->outer->rtable)->subquery;
		check_query(s);
		check_topn(s);
	}
	else
		check_query(s);
	derive(s);

	error_context_stack = cb.previous;
	return s;
}

/* The shape of a stored query (no name is resolved again). */
static SqlpShape *
load(PipelineDef *def)
{
	SqlpShape  *s = palloc0(sizeof(SqlpShape));
	Node	   *node;
	RangeTblEntry *rte;

	if (def->query_tree == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pipeline \"%s\" has no analysed query", def->name),
				 errhint("Drop the pipeline and create it again.")));
	node = stringToNode(def->query_tree);
	if (!IsA(node, Query))
		elog(ERROR, "stored query of pipeline \"%s\" is not a query tree", def->name);
	s->query = (Query *) node;
	rte = linitial_node(RangeTblEntry, s->query->rtable);
	if (rte->rtekind == RTE_SUBQUERY && rte->subquery->hasWindowFuncs)
	{
		s->outer = s->query;
		s->query = rte->subquery;
	}
	s->windowed = def->kind == PIPELINE_WINDOW;
	s->wkind = def->window_kind;
	s->row_type = def->source.row_type;
	s->source = def->source.name;
	rte = linitial_node(RangeTblEntry, s->query->rtable);
	s->natts = list_length(rte->eref->colnames) - (s->windowed ? 2 : 0);
	if (s->outer)
		check_topn(s);
	derive(s);
	return s;
}

/* --- the catalog's trigger --------------------------------------------- */

static Datum
interval_datum(Interval *iv, bool *isnull)
{
	*isnull = iv == NULL;
	return iv ? IntervalPGetDatum(iv) : (Datum) 0;
}

/* The aggregates, as written in the query (for display). */
static char *
aggregates_text(SqlpShape *s)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, s->aggrefs)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", deparse(s, lfirst(lc)));
	return buf.data;
}

/* Checks at creation that need the runtime's pieces. */
static void
check_runtime(SqlpShape *s)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink sql check",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);

	if (s->windowed)
	{
		AggSpec    *aggs = agg_spec_build(aggregate_query(s), cxt);
		TupleDesc	kd = CreateTemplateTupleDesc(Max(list_length(s->keys), 1));
		KeyCodec	codec;
		int		   *attnos = palloc(sizeof(int) * Max(list_length(s->keys), 1));
		ListCell   *lc;

		if (s->wkind == WINDOW_SESSION && !agg_can_combine(aggs))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("session windows need aggregates with combine functions"),
					 errhint("Merging two sessions combines their aggregate states.")));
		foreach(lc, s->keys)
		{
			int			i = foreach_current_index(lc);
			Node	   *k = lfirst(lc);
			TargetEntry *tle = list_nth(s->outputs, s->order[i]);

			TupleDescInitEntry(kd, i + 1, tle->resname, exprType(k), exprTypmod(k), 0);
			TupleDescInitEntryCollation(kd, i + 1, exprCollation(k));
			attnos[i] = i;
		}
		kstate_codec_init_desc(&codec, kd, list_length(s->keys), attnos);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

HeapTuple
sqlp_resolve(TupleDesc desc, HeapTuple tup, int32 source_id, const char *query,
			 char **aggregates_tree, List **queries)
{
	SqlpShape  *s = analyse(query);
	static const char *const names[] = {"kind", "key_columns", "window_kind", "window_size",
	"window_slide", "session_gap", "aggregates", "query_tree"};
	int			cols[lengthof(names)];
	Datum		values[lengthof(names)];
	bool		nulls[lengthof(names)];

	if (s->source_id != source_id)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the query of a pipeline reads source \"%s\", not the pipeline's source", s->source)));
	check_runtime(s);
	if (s->outer)
	{
		int			col = SPI_fnumber(desc, "allowed_lateness");
		bool		isnull;
		Datum		d = col > 0 ? heap_getattr(tup, col, desc, &isnull) : (Datum) 0;

		if (col > 0 && !isnull && interval_usecs(DatumGetIntervalP(d)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("a Top-N pipeline cannot have allowed lateness"),
					 errdetail("The ranks of a window are written once, when it fires; a late event would change them."),
					 errhint("Create it with allowed_lateness => '0'.")));
	}

	for (int i = 0; i < lengthof(names); i++)
	{
		cols[i] = SPI_fnumber(desc, names[i]);
		if (cols[i] <= 0)
			elog(ERROR, "streamflink.pipeline has no column \"%s\"", names[i]);
		nulls[i] = false;
	}
	values[0] = CStringGetTextDatum(s->windowed ? "window" : "stateless");
	values[1] = PointerGetDatum(construct_empty_array(TEXTOID));
	values[2] = CStringGetTextDatum(window_names[s->wkind]);
	nulls[2] = !s->windowed;
	values[3] = interval_datum(s->size, &nulls[3]);
	values[4] = interval_datum(s->slide, &nulls[4]);
	values[5] = interval_datum(s->gap, &nulls[5]);
	nulls[6] = !s->windowed;
	if (s->windowed)
		values[6] = CStringGetTextDatum(aggregates_text(s));
	values[7] = CStringGetTextDatum(nodeToString(s->outer ? s->outer : s->query));
	*aggregates_tree = s->windowed ? nodeToString(aggregate_query(s)) : NULL;
	*queries = list_make1(s->outer ? s->outer : s->query);
	return heap_modify_tuple_by_cols(tup, desc, lengthof(names), cols, values, nulls);
}

/* --- create_pipeline's look at a query --------------------------------- */

Datum
streamflink_sql_shape(PG_FUNCTION_ARGS)
{
	TupleDesc	rdesc;
	Datum		values[9];
	bool		nulls[9] = {0};
	SqlpShape  *s;
	Datum	   *cols;
	Datum	   *ident;
	int			n;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a pipeline needs a query")));
	if (get_call_result_type(fcinfo, NULL, &rdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	s = analyse(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	check_runtime(s);

	n = list_length(s->outer ? s->outer_outputs : s->outputs);
	cols = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		TargetEntry *tle = list_nth(s->outer ? s->outer_outputs : s->outputs, i);
		Node	   *e = (Node *) tle->expr;
		Oid			coll = exprCollation(e);
		StringInfoData buf;

		initStringInfo(&buf);
		appendStringInfo(&buf, "%s %s", quote_identifier(tle->resname),
						 format_type_with_typemod(exprType(e), exprTypmod(e)));
		if (OidIsValid(coll) && coll != get_typcollation(exprType(e)))
			appendStringInfo(&buf, " COLLATE %s", generate_collation_name(coll));
		if (s->windowed && s->outer == NULL &&
			(is_window_var(s, e, 1) || is_window_var(s, e, 2)))
			appendStringInfoString(&buf, " NOT NULL");
		cols[i] = CStringGetTextDatum(buf.data);
	}
	ident = palloc(sizeof(Datum) * Max(s->nidentity, 1));
	for (int i = 0; i < s->nidentity; i++)
		ident[i] = CStringGetTextDatum(((TargetEntry *) list_nth(s->outputs, s->order[i]))->resname);
	if (s->outer)
		s->nidentity = 0;		/* ranked rows are inserted */

	values[0] = CStringGetTextDatum(s->source);
	values[1] = CStringGetTextDatum(s->windowed ? "window" : "stateless");
	values[2] = CStringGetTextDatum(window_names[s->wkind]);
	nulls[2] = !s->windowed;
	values[3] = interval_datum(s->size, &nulls[3]);
	values[4] = interval_datum(s->slide, &nulls[4]);
	values[5] = interval_datum(s->gap, &nulls[5]);
	nulls[6] = !s->windowed;
	if (s->windowed)
		values[6] = CStringGetTextDatum(aggregates_text(s));
	values[7] = PointerGetDatum(construct_array(cols, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[8] = PointerGetDatum(construct_array(ident, s->nidentity, TEXTOID, -1, false,
												TYPALIGN_INT));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(rdesc), values, nulls)));
}

/* --- explain ----------------------------------------------------------- */

static void
explain_line(Tuplestorestate *ts, TupleDesc desc, int depth, bool arrow, const char *fmt,...)
	pg_attribute_printf(5, 6);

static void
explain_line(Tuplestorestate *ts, TupleDesc desc, int depth, bool arrow, const char *fmt,...)
{
	StringInfoData buf;
	va_list		args;
	Datum		value;
	bool		isnull = false;

	initStringInfo(&buf);
	appendStringInfoSpaces(&buf, depth * 6 + (arrow ? 0 : 2) - (depth > 0 && arrow ? 4 : 0));
	if (depth > 0 && arrow)
		appendStringInfoString(&buf, "->  ");
	for (;;)
	{
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	value = CStringGetTextDatum(buf.data);
	tuplestore_putvalues(ts, desc, &value, &isnull);
}

static char *
interval_text(Interval *iv)
{
	return DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(iv)));
}

static char *
output_list(SqlpShape *s, bool with_exprs, bool sink_order)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < list_length(s->outputs); i++)
	{
		TargetEntry *tle = list_nth(s->outputs, sink_order ? s->order[i] : i);

		if (buf.len)
			appendStringInfoString(&buf, ", ");
		if (with_exprs)
		{
			char	   *e = deparse(s, (Node *) tle->expr);

			if (strcmp(e, quote_identifier(tle->resname)) == 0)
				appendStringInfoString(&buf, e);
			else
				appendStringInfo(&buf, "%s AS %s", e, quote_identifier(tle->resname));
		}
		else
			appendStringInfoString(&buf, quote_identifier(tle->resname));
	}
	return buf.data;
}

Datum
streamflink_sql_explain(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SqlpShape  *s;
	Tuplestorestate *ts;
	TupleDesc	desc;
	int			d = 0;
	MatchRecognize *mr;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("explain needs a query")));
	mr = mr_parse(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	if (mr != NULL)
	{
		InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
		ts = rsinfo->setResult;
		desc = rsinfo->setDesc;
		explain_line(ts, desc, d, true, "Sink: insert one row per match");
		explain_line(ts, desc, d, false, "Columns: %s%smatch_start, match_end, events%s",
					 mr->key, *mr->key ? ", " : "", mr->measures ? ", (measures)" : "");
		explain_line(ts, desc, ++d, true, "Pattern: %s", mr->pattern);
		explain_line(ts, desc, d, false, "After match: %s", mr->skip);
		if (mr->within)
			explain_line(ts, desc, d, false, "Within: %s", mr->within);
		explain_line(ts, desc, d, false, "Define: %s", mr->define);
		if (mr->measures)
			explain_line(ts, desc, d, false, "Measures: %s", mr->measures);
		explain_line(ts, desc, d, false, "Key: %s", *mr->key ? mr->key : "(none)");
		explain_line(ts, desc, d, false, "State: RocksDB, events buffered per key until the watermark passes them, partial matches per key");
		explain_line(ts, desc, ++d, true, "Source: %s, in event time order (%s)",
					 quote_identifier(mr->source), mr->order_by);
		return (Datum) 0;
	}
	s = analyse(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	check_runtime(s);
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	ts = rsinfo->setResult;
	desc = rsinfo->setDesc;

	if (s->outer)
	{
		StringInfoData buf;
		ListCell   *lc;
		Oid			fn = ((WindowFunc *) s->rank_tle->expr)->winfnoid;

		explain_line(ts, desc, d, true, "Sink: insert the first ranks of each window");
		initStringInfo(&buf);
		foreach(lc, s->outer_outputs)
			appendStringInfo(&buf, "%s%s", buf.len ? ", " : "",
							 quote_identifier(((TargetEntry *) lfirst(lc))->resname));
		explain_line(ts, desc, d, false, "Columns: %s", buf.data);
		resetStringInfo(&buf);
		foreach(lc, s->wc->orderClause)
		{
			SortGroupClause *sgc = lfirst_node(SortGroupClause, lc);
			Node	   *e = (Node *) get_sortgroupclause_tle(sgc, s->query->targetList)->expr;
			TypeCacheEntry *tc = lookup_type_cache(exprType(e), TYPECACHE_GT_OPR);
			bool		desc_order = sgc->sortop == tc->gt_opr;

			appendStringInfo(&buf, "%s%s%s%s", buf.len ? ", " : "", deparse(s, e),
							 desc_order ? " DESC" : "",
							 sgc->nulls_first != desc_order ?
							 (sgc->nulls_first ? " NULLS FIRST" : " NULLS LAST") : "");
		}
		explain_line(ts, desc, ++d, true, "Top-N: %s() per window, ordered by %s, ranks 1 to " INT64_FORMAT,
					 fn == F_ROW_NUMBER ? "row_number" : fn == F_RANK_ ? "rank" : "dense_rank",
					 buf.data, s->topn);
		explain_line(ts, desc, d, false, "Emits: when the watermark passes the window's end, once");
	}
	else if (s->windowed)
	{
		StringInfoData ident;

		initStringInfo(&ident);
		for (int i = 0; i < s->nidentity; i++)
			appendStringInfo(&ident, "%s%s", i ? ", " : "",
							 quote_identifier(((TargetEntry *) list_nth(s->outputs, s->order[i]))->resname));
		explain_line(ts, desc, d, true, "Sink: upsert one row per window, key (%s)", ident.data);
	}
	else
		explain_line(ts, desc, d, true, "Sink: insert every row");
	if (s->outer == NULL)
		explain_line(ts, desc, d, false, "Columns: %s", output_list(s, false, false));
	explain_line(ts, desc, ++d, true, "Project: %s", output_list(s, true, false));
	if (s->windowed)
	{
		StringInfoData buf;
		ListCell   *lc;

		if (s->query->havingQual)
			explain_line(ts, desc, ++d, true, "Having: %s", deparse(s, s->query->havingQual));
		if (s->wkind == WINDOW_TUMBLE)
			explain_line(ts, desc, ++d, true, "Window Aggregate: tumble, size %s",
						 interval_text(s->size));
		else if (s->wkind == WINDOW_HOP)
			explain_line(ts, desc, ++d, true, "Window Aggregate: hop, size %s, slide %s",
						 interval_text(s->size), interval_text(s->slide));
		else
			explain_line(ts, desc, ++d, true, "Window Aggregate: session, gap %s",
						 interval_text(s->gap));
		explain_line(ts, desc, d, false, "Fires: when the watermark passes a window's end");
		initStringInfo(&buf);
		foreach(lc, s->keys)
			appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", deparse(s, lfirst(lc)));
		explain_line(ts, desc, d, false, "Key: %s", buf.len ? buf.data : "(none)");
		explain_line(ts, desc, d, false, "Aggregates: %s", aggregates_text(s));
		explain_line(ts, desc, d, false, "State: RocksDB, one entry per key and window");
	}
	if (s->where)
		explain_line(ts, desc, ++d, true, "Filter: %s", deparse(s, (Node *) s->where));
	explain_line(ts, desc, ++d, true, "Source: %s (topic %s, format %s, event time %s)",
				 quote_identifier(s->source), s->topic ? s->topic : "?",
				 s->format ? s->format : "?",
				 s->event_time ? s->event_time : "Kafka message timestamp");
	return (Datum) 0;
}

/* --- runtime: stateless ------------------------------------------------ */

SqlpProjection *
sqlp_projection_load(PipelineDef *def)
{
	SqlpShape  *s = load(def);
	SqlpProjection *p = palloc0(sizeof(SqlpProjection));
	ListCell   *lc;

	p->where = s->where ? expression_planner(s->where) : NULL;
	p->ncols = list_length(s->outputs);
	p->names = palloc(sizeof(char *) * Max(p->ncols, 1));
	p->types = palloc(sizeof(Oid) * Max(p->ncols, 1));
	foreach(lc, s->outputs)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		int			i = foreach_current_index(lc);

		p->names[i] = tle->resname;
		p->types[i] = exprType((Node *) tle->expr);
		p->targets = lappend(p->targets,
							 makeTargetEntry(expression_planner(tle->expr), i + 1,
											 tle->resname, false));
	}
	return p;
}

/* --- runtime: windows -------------------------------------------------- */

struct SqlpWindow
{
	SqlpShape  *s;
	AggSpec    *aggs;
	ExprContext *event_cxt;		/* per event: filter, keys */
	ExprContext *fire_cxt;		/* per fired window: HAVING, outputs */
	ExprState  *where;
	int			nkeys;
	ExprState **keys;
	TupleDesc	keydesc;
	TupleTableSlot *keyslot;
	TupleTableSlot *fired;		/* keys, window_start, window_end, aggregates */
	ExprState  *having;
	int			ncols;
	ExprState **outs;			/* in sink order */
	const char **names;
	Oid		   *types;
	/* Top-N: rows of the windows fired in one watermark step, ranked after it */
	bool		topn;
	int16	   *typlens;		/* of outs */
	bool	   *typbyvals;
	int			nord;			/* ORDER BY of the ranking */
	ExprState **ord;
	SortSupportData *ssup;
	int16	   *ordlens;
	bool	   *ordbyvals;
	int			nout;			/* the sink's columns: */
	int		   *out_src;		/* index into outs, -1 for the rank */
	const char **out_names;
	Oid		   *out_types;
	MemoryContext buf_cxt;
	List	   *rows;			/* TopnRow */
};

typedef struct TopnRow
{
	TimestampTz start;
	Datum	   *vals;
	bool	   *nulls;
	Datum	   *ordv;
	bool	   *ordn;
} TopnRow;

typedef struct FiredMap
{
	SqlpShape  *s;
} FiredMap;

/* An output or HAVING expression over the fired row (see struct). */
static Node *
fired_mutator(Node *node, FiredMap *m)
{
	SqlpShape  *s = m->s;
	int			nkeys = list_length(s->keys);
	ListCell   *lc;

	if (node == NULL)
		return NULL;
	foreach(lc, s->keys)
	{
		Node	   *k = lfirst(lc);

		if (equal(node, k))
			return (Node *) makeVar(1, foreach_current_index(lc) + 1, exprType(k),
									exprTypmod(k), exprCollation(k), 0);
	}
	if (is_window_var(s, node, 1))
		return (Node *) makeVar(1, nkeys + 1, TIMESTAMPTZOID, -1, InvalidOid, 0);
	if (is_window_var(s, node, 2))
		return (Node *) makeVar(1, nkeys + 2, TIMESTAMPTZOID, -1, InvalidOid, 0);
	if (IsA(node, Aggref))
	{
		foreach(lc, s->aggrefs)
			if (equal(node, lfirst(lc)))
				return (Node *) makeVar(1, nkeys + 3 + foreach_current_index(lc),
										exprType(node), exprTypmod(node),
										exprCollation(node), 0);
		elog(ERROR, "aggregate of the query not found");
	}
	if (IsA(node, Var) && ((Var *) node)->varlevelsup == 0)
		elog(ERROR, "column of a fired window's row not found");
	return expression_tree_mutator(node, fired_mutator, m);
}

/* The ranking of a Top-N query (see check_topn). */
static void
topn_create(SqlpWindow *w, FiredMap *m)
{
	SqlpShape  *s = w->s;
	ListCell   *lc;

	w->topn = true;
	w->typlens = palloc(sizeof(int16) * Max(w->ncols, 1));
	w->typbyvals = palloc(sizeof(bool) * Max(w->ncols, 1));
	for (int i = 0; i < w->ncols; i++)
		get_typlenbyval(w->types[i], &w->typlens[i], &w->typbyvals[i]);
	w->nord = list_length(s->wc->orderClause);
	w->ord = palloc(sizeof(ExprState *) * w->nord);
	w->ssup = palloc0(sizeof(SortSupportData) * w->nord);
	w->ordlens = palloc(sizeof(int16) * w->nord);
	w->ordbyvals = palloc(sizeof(bool) * w->nord);
	foreach(lc, s->wc->orderClause)
	{
		SortGroupClause *sgc = lfirst_node(SortGroupClause, lc);
		TargetEntry *tle = get_sortgroupclause_tle(sgc, s->query->targetList);
		int			i = foreach_current_index(lc);
		Node	   *e = fired_mutator(copyObject((Node *) tle->expr), m);

		w->ord[i] = ExecInitExpr(expression_planner((Expr *) e), NULL);
		get_typlenbyval(exprType(e), &w->ordlens[i], &w->ordbyvals[i]);
		w->ssup[i].ssup_cxt = CurrentMemoryContext;
		w->ssup[i].ssup_collation = exprCollation(e);
		w->ssup[i].ssup_nulls_first = sgc->nulls_first;
		PrepareSortSupportFromOrderingOp(sgc->sortop, &w->ssup[i]);
	}
	w->nout = list_length(s->outer_outputs);
	w->out_src = palloc(sizeof(int) * Max(w->nout, 1));
	w->out_names = palloc(sizeof(char *) * Max(w->nout, 1));
	w->out_types = palloc(sizeof(Oid) * Max(w->nout, 1));
	foreach(lc, s->outer_outputs)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		Var		   *v = (Var *) tle->expr;
		int			i = foreach_current_index(lc);

		w->out_names[i] = tle->resname;
		w->out_types[i] = exprType((Node *) v);
		w->out_src[i] = -1;
		for (int j = 0; j < w->ncols; j++)
			if (((TargetEntry *) list_nth(s->outputs, s->order[j]))->resno == v->varattno)
				w->out_src[i] = j;
	}
	w->buf_cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink top-n",
									   ALLOCSET_DEFAULT_SIZES);
}

SqlpWindow *
sqlp_window_create(PipelineDef *def, MemoryContext state_cxt)
{
	SqlpWindow *w = palloc0(sizeof(SqlpWindow));
	SqlpShape  *s = load(def);
	FiredMap	m = {s};
	TupleDesc	fd;
	int			naggs;
	ListCell   *lc;

	w->s = s;
	w->aggs = agg_spec_build(aggregate_query(s), state_cxt);
	naggs = agg_count(w->aggs);
	w->event_cxt = CreateStandaloneExprContext();
	w->fire_cxt = CreateStandaloneExprContext();
	if (s->where)
		w->where = ExecInitQual(make_ands_implicit(expression_planner(s->where)), NULL);

	w->nkeys = list_length(s->keys);
	w->keys = palloc(sizeof(ExprState *) * Max(w->nkeys, 1));
	w->keydesc = CreateTemplateTupleDesc(w->nkeys);
	fd = CreateTemplateTupleDesc(w->nkeys + 2 + naggs);
	foreach(lc, s->keys)
	{
		int			i = foreach_current_index(lc);
		Node	   *k = lfirst(lc);
		TargetEntry *tle = list_nth(s->outputs, s->order[i]);

		w->keys[i] = ExecInitExpr(expression_planner((Expr *) k), NULL);
		TupleDescInitEntry(w->keydesc, i + 1, tle->resname, exprType(k), exprTypmod(k), 0);
		TupleDescInitEntryCollation(w->keydesc, i + 1, exprCollation(k));
		TupleDescInitEntry(fd, i + 1, tle->resname, exprType(k), exprTypmod(k), 0);
	}
	TupleDescInitEntry(fd, w->nkeys + 1, "window_start", TIMESTAMPTZOID, -1, 0);
	TupleDescInitEntry(fd, w->nkeys + 2, "window_end", TIMESTAMPTZOID, -1, 0);
	for (int i = 0; i < naggs; i++)
		TupleDescInitEntry(fd, w->nkeys + 3 + i, agg_name(w->aggs, i),
						   agg_result_type(w->aggs, i), -1, 0);
	w->keyslot = MakeSingleTupleTableSlot(w->keydesc, &TTSOpsVirtual);
	w->fired = MakeSingleTupleTableSlot(fd, &TTSOpsVirtual);

	if (s->query->havingQual)
		w->having = ExecInitQual(make_ands_implicit(expression_planner((Expr *)
																	   fired_mutator(copyObject(s->query->havingQual), &m))),
								 NULL);
	w->ncols = list_length(s->outputs);
	w->outs = palloc(sizeof(ExprState *) * Max(w->ncols, 1));
	w->names = palloc(sizeof(char *) * Max(w->ncols, 1));
	w->types = palloc(sizeof(Oid) * Max(w->ncols, 1));
	for (int i = 0; i < w->ncols; i++)
	{
		TargetEntry *tle = list_nth(s->outputs, s->order[i]);
		Node	   *e = fired_mutator(copyObject((Node *) tle->expr), &m);

		w->outs[i] = ExecInitExpr(expression_planner((Expr *) e), NULL);
		w->names[i] = tle->resname;
		w->types[i] = exprType((Node *) tle->expr);
	}
	if (s->outer)
		topn_create(w, &m);
	return w;
}

AggSpec *
sqlp_window_aggregates(SqlpWindow *w)
{
	return w->aggs;
}

TupleDesc
sqlp_window_key_desc(SqlpWindow *w)
{
	return w->keydesc;
}

bool
sqlp_window_accept(SqlpWindow *w, TupleTableSlot *event, TupleTableSlot **keys)
{
	ExprContext *ec = w->event_cxt;

	ResetExprContext(ec);
	ec->ecxt_scantuple = event;
	if (w->where && !ExecQual(w->where, ec))
		return false;
	ExecClearTuple(w->keyslot);
	for (int i = 0; i < w->nkeys; i++)
		w->keyslot->tts_values[i] = ExecEvalExprSwitchContext(w->keys[i], ec,
															  &w->keyslot->tts_isnull[i]);
	ExecStoreVirtualTuple(w->keyslot);
	*keys = w->keyslot;
	return true;
}

void
sqlp_window_output(SqlpWindow *w, SinkRowDesc *desc)
{
	if (w->topn)
	{
		/* Ranked rows are inserted once, when their window fires. */
		desc->ncols = w->nout;
		desc->colnames = w->out_names;
		desc->coltypes = w->out_types;
		desc->nkeys = 0;
		return;
	}
	desc->ncols = w->ncols;
	desc->colnames = w->names;
	desc->coltypes = w->types;
	desc->nkeys = w->s->nidentity;
}

bool
sqlp_window_project(SqlpWindow *w, Datum *keys, bool *keynulls,
					TimestampTz start, TimestampTz end, Datum *aggs, bool *aggnulls,
					Datum *row, bool *rownulls)
{
	ExprContext *ec = w->fire_cxt;
	TupleTableSlot *f = w->fired;
	int			naggs = agg_count(w->aggs);

	ResetExprContext(ec);
	ExecClearTuple(f);
	memcpy(f->tts_values, keys, sizeof(Datum) * w->nkeys);
	memcpy(f->tts_isnull, keynulls, sizeof(bool) * w->nkeys);
	f->tts_values[w->nkeys] = TimestampTzGetDatum(start);
	f->tts_isnull[w->nkeys] = false;
	f->tts_values[w->nkeys + 1] = TimestampTzGetDatum(end);
	f->tts_isnull[w->nkeys + 1] = false;
	memcpy(f->tts_values + w->nkeys + 2, aggs, sizeof(Datum) * naggs);
	memcpy(f->tts_isnull + w->nkeys + 2, aggnulls, sizeof(bool) * naggs);
	ExecStoreVirtualTuple(f);
	ec->ecxt_scantuple = f;
	if (w->having && !ExecQual(w->having, ec))
		return false;
	for (int i = 0; i < w->ncols; i++)
		row[i] = ExecEvalExpr(w->outs[i], ec, &rownulls[i]);
	if (w->topn)
	{
		MemoryContext old = MemoryContextSwitchTo(w->buf_cxt);
		TopnRow    *r = palloc(sizeof(TopnRow));

		r->start = start;
		r->vals = palloc(sizeof(Datum) * Max(w->ncols, 1));
		r->nulls = palloc(sizeof(bool) * Max(w->ncols, 1));
		r->ordv = palloc(sizeof(Datum) * w->nord);
		r->ordn = palloc(sizeof(bool) * w->nord);
		for (int i = 0; i < w->ncols; i++)
		{
			r->nulls[i] = rownulls[i];
			r->vals[i] = rownulls[i] ? (Datum) 0 :
				datumCopy(row[i], w->typbyvals[i], w->typlens[i]);
		}
		for (int i = 0; i < w->nord; i++)
		{
			Datum		d = ExecEvalExpr(w->ord[i], ec, &r->ordn[i]);

			r->ordv[i] = r->ordn[i] ? (Datum) 0 : datumCopy(d, w->ordbyvals[i], w->ordlens[i]);
		}
		w->rows = lappend(w->rows, r);
		MemoryContextSwitchTo(old);
		return false;			/* written by sqlp_window_fired */
	}
	return true;
}

static int
topn_compare_order(SqlpWindow *w, TopnRow *a, TopnRow *b)
{
	for (int i = 0; i < w->nord; i++)
	{
		int			c = ApplySortComparator(a->ordv[i], a->ordn[i], b->ordv[i], b->ordn[i],
											&w->ssup[i]);

		if (c != 0)
			return c;
	}
	return 0;
}

/*
 * list_sort's comparator takes no argument: the stage being sorted is set
 * here just before (one backend, no recursion).
 */
static SqlpWindow *topn_sort_arg;

/* By window, then by the ranking's ORDER BY. */
static int
topn_compare(const ListCell *a, const ListCell *b)
{
	TopnRow    *ra = lfirst(a);
	TopnRow    *rb = lfirst(b);

	if (ra->start != rb->start)
		return ra->start < rb->start ? -1 : 1;
	return topn_compare_order(topn_sort_arg, ra, rb);
}

void
sqlp_window_fired(SqlpWindow *w, Sink *sink, SinkOutput *out)
{
	Datum	   *vals;
	bool	   *nulls;
	TimestampTz start = 0;
	int64		pos = 0;
	int64		rank = 0;
	TopnRow    *prev = NULL;
	ListCell   *lc;
	Oid			fn;

	if (!w->topn || w->rows == NIL)
		return;
	fn = ((WindowFunc *) w->s->rank_tle->expr)->winfnoid;
	topn_sort_arg = w;
	list_sort(w->rows, topn_compare);
	vals = palloc(sizeof(Datum) * Max(w->nout, 1));
	nulls = palloc(sizeof(bool) * Max(w->nout, 1));
	foreach(lc, w->rows)
	{
		TopnRow    *r = lfirst(lc);
		bool		peer;

		if (prev == NULL || r->start != start)
		{
			start = r->start;
			pos = 0;
			rank = 0;
			prev = NULL;
		}
		pos++;
		peer = prev != NULL && topn_compare_order(w, prev, r) == 0;
		if (fn == F_ROW_NUMBER)
			rank = pos;
		else if (fn == F_RANK_)
			rank = peer ? rank : pos;
		else
			rank = peer ? rank : rank + 1;
		prev = r;
		if (rank > w->s->topn)
			continue;
		for (int i = 0; i < w->nout; i++)
		{
			int			src = w->out_src[i];

			vals[i] = src < 0 ? Int64GetDatum(rank) : r->vals[src];
			nulls[i] = src < 0 ? false : r->nulls[src];
		}
		sink_write(sink, out, SINK_INSERT, vals, nulls);
	}
	pfree(vals);
	pfree(nulls);
	w->rows = NIL;
	MemoryContextReset(w->buf_cxt);
}
