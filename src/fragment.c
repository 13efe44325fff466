/*-------------------------------------------------------------------------
 *
 * fragment.c
 *	  A user's SQL fragment inside the query we wrap around it (see
 *	  fragment.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "parser/analyze.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"

#include "fragment.h"

void
fragment_wrap(Fragment *f, const char *what, const char *text, const char *hint,
			  Oid row_type)
{
	f->what = what;
	f->text = text;
	f->hint = hint;
	/* A newline ends a trailing "--" comment before our FROM. */
	f->sql = psprintf("SELECT %s\n FROM (SELECT (NULL::%s).*) AS e",
					  text, format_type_be_qualified(row_type));
	f->offset = strlen("SELECT ");
	f->end = f->offset + strlen(text);
}

static void
fragment_error_callback(void *arg)
{
	Fragment   *f = (Fragment *) arg;
	int			pos = geterrposition();
	int			len = strlen(f->text);

	if (pos > 0)
	{
		/*
		 * Positions are 1-based characters; the fragment is the query now.
		 * An error past its end (at what we appended, as in "count(*" then
		 * FROM) is at its end.
		 */
		pos -= pg_mbstrlen_with_len(f->sql, f->offset);
		errposition(0);
		internalerrposition(Min(Max(pos, 1), Max(pg_mbstrlen_with_len(f->text, len), 1)));
		internalerrquery(f->text);
	}
	errcontext("in %s \"%s\"", f->what, f->text);
}

void
fragment_enter(Fragment *f)
{
	f->errcb.callback = fragment_error_callback;
	f->errcb.arg = f;
	f->errcb.previous = error_context_stack;
	error_context_stack = &f->errcb;
}

void
fragment_leave(Fragment *f)
{
	Assert(error_context_stack == &f->errcb);
	error_context_stack = f->errcb.previous;
}

static void
invalid_fragment(Fragment *f)
{
	ereport(ERROR,
			(errcode(ERRCODE_SYNTAX_ERROR),
			 errmsg("invalid %s: %s", f->what, f->text),
			 f->hint ? errhint("%s", f->hint) : 0));
}

Query *
fragment_analyse(Fragment *f, FragmentRawHook raw_hook, void *arg)
{
	List	   *raw = pg_parse_query(f->sql);
	RawStmt    *stmt;
	Oid		   *param_types = NULL;
	int			nparams = 0;

	if (list_length(raw) != 1)
		invalid_fragment(f);
	stmt = linitial_node(RawStmt, raw);
	if (!IsA(stmt->stmt, SelectStmt))
		invalid_fragment(f);
	if (raw_hook)
		param_types = raw_hook(arg, (SelectStmt *) stmt->stmt, &nparams);
	return parse_analyze_fixedparams(stmt, f->sql, param_types, nparams, NULL);
}
