/*-------------------------------------------------------------------------
 *
 * pattern.h
 *	  Row patterns for CEP pipelines: parsing the pattern text, compiling
 *	  its conditions (SQL boolean expressions) and measures.
 *
 * The syntax is documented at the top of pattern.c and in the comment of
 * streamflink.create_pattern_pipeline.  The runtime (the NFA) is cep.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_PATTERN_H
#define STREAMFLINK_PATTERN_H

#include "nodes/execnodes.h"
#include "nodes/params.h"

#include "aggregate.h"

/* How an element's events follow the previous ones (Flink's names). */
typedef enum Contiguity
{
	CONTIG_STRICT,				/* next: the very next event */
	CONTIG_RELAXED,				/* followedBy: skip events that do not match */
	CONTIG_ANY					/* followedByAny: skip any events */
} Contiguity;

typedef enum SkipStrategy
{
	SKIP_NONE,					/* noSkip: every match */
	SKIP_TO_NEXT,				/* skipToNext */
	SKIP_PAST_LAST_EVENT,		/* skipPastLastEvent */
	SKIP_TO_FIRST,				/* skipToFirst(var) */
	SKIP_TO_LAST				/* skipToLast(var) */
} SkipStrategy;

typedef struct PatternElement
{
	int			var;			/* index into Pattern.vars */
	int			min;			/* events: min..max, max -1 for unbounded */
	int			max;
	bool		negated;		/* notNext / notFollowedBy: min = max = 1 */
	bool		greedy;
	bool		optional;		/* (v{n,m})?: no event, or min..max (Flink's
								 * times(n, m).optional()) */
	Contiguity	contiguity;		/* to the previous element */
	Contiguity	inner;			/* between iterations of a loop */
	int			until;			/* loop's stop condition (a Pattern.vars
								 * entry that is no element), or -1 */

	/*
	 * Groups are expanded into elements (pattern.c, expand_group): a copy of
	 * a group that may be skipped as a whole starts with an element whose
	 * skips hold where skipping it continues (the element after the copy);
	 * the last element of a looping copy proceeds back to its first
	 * (loops).  Several for nested groups.
	 */
	int			nskips;
	int		   *skips;
	int			nloops;
	int		   *loops;

	/*
	 * Negations next to quantified groups (pattern.c,
	 * check_negation_in_groups): stop0, a negated variable whose event
	 * stops a partial match waiting for this element's first event (the
	 * first element of a copy of a group that a negation follows); next_not,
	 * the notFollowedBy variable whose event stops this element's inner
	 * states (the next element, or the negation after the group this
	 * element ends a copy of); -1 if none.
	 */
	int			stop0;
	int			next_not;

	/*
	 * The until of the looping group this element is a variable of (Flink's
	 * until() on a GroupPattern: "and not until" on the element's take,
	 * ignore and own proceed edges), or -1.
	 */
	int			guntil;
} PatternElement;

/*
 * May the element take no event?  Flink's optional(): v?, v*, v{0,m} (which
 * are Flink's times(1, m).optional()) and (v{n,m})?.
 */
static inline bool
pattern_elem_optional(const PatternElement *el)
{
	return el->min == 0 || el->optional;
}

typedef struct Pattern
{
	int			nvars;
	char	  **vars;			/* variable names, in pattern order */
	int			nelems;			/* one element per variable, or per variable
								 * of each copy of a group */
	bool		has_groups;
	PatternElement *elems;
	SkipStrategy skip;
	int			skip_var;		/* SKIP_TO_FIRST/LAST: its variable */
	bool		skip_throw;		/* ... throw_exception_on_miss: a match
								 * without an event of skip_var is an error
								 * (Flink's throwExceptionOnMiss()) */
} Pattern;

/* A reference to already matched events, filled in as a parameter. */
typedef enum NavKind
{
	NAV_FIRST,					/* FIRST(var.col [, n]) */
	NAV_LAST,					/* LAST(var.col [, n]), and var.col */
	NAV_AGG						/* agg(... var.col ...), over var's events */
} NavKind;

typedef struct NavRef
{
	NavKind		kind;
	int			var;
	int			attno;			/* 0-based column, NAV_FIRST/NAV_LAST */
	int			offset;			/* n */
	AggSpec    *agg;			/* NAV_AGG: one aggregate */
	Query	   *agg_query;		/* NAV_AGG: its analysed form (agg_analyse) */
	int			expr;			/* the expression it belongs to */
} NavRef;

/*
 * Compiled expressions over the event row type and navigation references:
 * the conditions of the variables (one boolean expression each) or the
 * measures.  Reference i is parameter $i+1 of every expression.
 */
typedef struct PatternExprs
{
	int			nexprs;
	char	  **names;			/* variable / measure name */
	ExprState **exprs;
	Oid		   *types;
	int32	   *typmods;
	bool	   *has_refs;		/* per expression */
	int			nrefs;
	NavRef	   *refs;
	ParamListInfo params;
	MemoryContext agg_cxt;		/* NAV_AGG states; reset by the caller */
} PatternExprs;

typedef struct CompiledPattern
{
	Pattern    *pattern;
	PatternExprs *conds;		/* conditions of the defined variables */
	int		   *cond_of_var;	/* index into conds, -1: always true */
	PatternExprs *measures;		/* NULL: no measures */
} CompiledPattern;

/*
 * Parse a pattern and a skip strategy; ereports with the position.
 * has_within: the pipeline has a within bound (a pattern may then end with
 * a notFollowedBy variable).
 */
extern Pattern *pattern_parse(const char *pattern, const char *skip, bool has_within);

/*
 * Parse and compile everything; ereports with the offending position.
 * Resolves names as the current role, in its search_path: at creation.
 */
extern CompiledPattern *pattern_compile(Oid row_type, const char *pattern,
										const char *define, const char *measures,
										const char *skip, bool has_within);

/*
 * At creation: parse the pattern and analyse define and measures (as the
 * current role, in its search_path).  The result is what the catalog keeps
 * as nodeToString() text: analysed expressions with their navigation
 * references and which condition each variable has (see pattern.c).
 */
extern Node *pattern_analyse(Oid row_type, const char *pattern, const char *define,
							 const char *measures, const char *skip, bool has_within);

/* The analysed queries in such a tree (for its dependencies). */
extern List *pattern_tree_queries(Node *tree);

/*
 * The runtime from the stored tree and the pattern text (the pattern
 * syntax has no names to resolve).  Call as the role the conditions run as.
 */
extern CompiledPattern *pattern_load(const char *tree, const char *pattern,
									 const char *skip, bool has_within);

#endif							/* STREAMFLINK_PATTERN_H */
