/*-------------------------------------------------------------------------
 *
 * fragment.h
 *	  A user's SQL fragment (an aggregate list, pattern conditions or
 *	  measures) parsed and analysed inside the query we wrap around it.
 *
 * The fragment becomes the SELECT list of a query over the source's row
 * type:
 *
 *	  SELECT <fragment>
 *	   FROM (SELECT (NULL::<row type>).*) AS e
 *
 * whose only range table entry has the row type's columns, so Vars'
 * attribute numbers are the row's.  While the caller works on it (between
 * fragment_enter and fragment_leave), an error context callback reports
 * syntax and analysis errors at their position in the fragment, as the
 * user wrote it, instead of in our query or in the SQL call that passed it
 * (as the parser's own setup_parser_errposition_callback does for a
 * node).  An error raised meanwhile pops the callback with the rest of the
 * error context stack.
 *
 * The Fragment lives on the caller's stack; the wrapping query, the parse
 * trees and the analysed Query are allocated in CurrentMemoryContext.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_FRAGMENT_H
#define STREAMFLINK_FRAGMENT_H

#include "nodes/parsenodes.h"

typedef struct Fragment
{
	const char *what;			/* e.g. "aggregate list", in errors */
	const char *text;			/* the user's text */
	const char *hint;			/* hint of the "invalid <what>" error, or NULL */
	char	   *sql;			/* the wrapping query, containing text */
	int			offset;			/* where (in bytes) text starts in sql */
	int			end;			/* where it ends: the wrapper's tail follows */
	ErrorContextCallback errcb;
} Fragment;

/*
 * Wrap 'text' (see above) into f->sql.  The caller may blank parts of the
 * text in f->sql (bytes to spaces) before analysing: positions stay those
 * of the user's text.
 */
extern void fragment_wrap(Fragment *f, const char *what, const char *text,
						  const char *hint, Oid row_type);

/* Install and remove the error context callback (see above). */
extern void fragment_enter(Fragment *f);
extern void fragment_leave(Fragment *f);

/*
 * Before analysis, a caller's look at the raw SELECT (checks, references it
 * turns into parameters): returns the types of the $n parameters the
 * analysis gets, *nparams of them.
 */
typedef Oid *(*FragmentRawHook) (void *arg, SelectStmt *stmt, int *nparams);

/*
 * Parse and analyse f->sql, as the current role in its search_path.  It
 * must be one SELECT ("invalid <what>: <text>" otherwise).  raw_hook may be
 * NULL (no parameters).  Call between fragment_enter and fragment_leave.
 */
extern Query *fragment_analyse(Fragment *f, FragmentRawHook raw_hook, void *arg);

#endif							/* STREAMFLINK_FRAGMENT_H */
