/*-------------------------------------------------------------------------
 *
 * pattern.c
 *	  Row patterns for CEP pipelines: parsing and compilation.
 *
 * PATTERN: a sequence of variables, in the style of SQL's row pattern
 * (MATCH_RECOGNIZE), extended with Flink CEP's contiguities:
 *
 *	 a b		strict contiguity: b is the very next event (Flink next)
 *	 a -> b		relaxed: events not matching b may come between (followedBy)
 *	 a ->> b	non-deterministic relaxed: any events may come between, and
 *				every later b starts a match (followedByAny)
 *	 a !b c		notNext: the event right after a is not a b
 *	 a -> !b -> c	notFollowedBy: no b between a and c
 *	 a !b		at the end: a, then an event that is not a b (the match,
 *				a's events, completes at that event)
 *	 a -> !b	at the end, only with within: no b until the within
 *				window of the match's first event ends (Flink's pending
 *				state; the match completes when the window ends)
 *	 a -> !b -> c? -> d	 an optional variable after a negation: no b
 *				between a and c, or between a and d when c took no
 *				event (Flink: a take in c drops the negations before it)
 *
 * Quantifiers after a variable:
 *	 a{n}  a{n,m}  a{n,}  a+ (={1,})  a* (={0,})  a? (={0,1})
 * and (a{n})?, (a{n,m})?, (a{n,})?: no event, or n (..m) events, never
 * 1..n-1 (Flink's times(n).optional(), times(n, m).optional(),
 * timesOrMore(n).optional(); a{0,m} is times(1, m).optional()).  A ?
 * right after a quantifier, SQL's reluctant quantifier, is refused.
 * Groups, Flink's GroupPattern: (a -> b){2}, (a b)+, (a b){2,3}, (a b)*,
 * (a b)?, nested groups; the quantifier after a group takes the same
 * forms (not greedy), with the contiguity between iterations in the
 * braces, and a looping group may end with until (check_group_until).
 * A group runs as copies of its elements (expand_group).  Negations and
 * greedy quantifiers next to groups: check_negation_in_groups.
 * Alternation (a | b) is refused, as Flink's MATCH_RECOGNIZE refuses it.
 * The iterations of a quantified variable are consecutive (strict), as in
 * SQL and Flink's consecutive(); write the contiguity inside the braces for
 * Flink's default relaxed iterations, a{->1,}, or allowCombinations(),
 * a{->>1,}.  A quantifier is non-greedy (Flink's default: every way of
 * matching is tried); a trailing + makes it greedy (Flink's greedy(), a
 * possessive quantifier in regex terms): while the variable can take an
 * event, the next variable does not get it.  Example: a{3,}+ -> b.
 * A loop may end with "until (u)", u a condition of DEFINE that is no
 * variable (Flink's until): on an event satisfying u the loop takes and
 * ignores nothing; it may proceed.  Example: c -> a{->1,} until (u) -> e.
 * Variables are SQL identifiers (case-insensitive) and appear once.
 *
 * DEFINE: "var AS condition, ...": each condition is a SQL boolean
 * expression over the event's columns, parsed and analysed by Postgres
 * against the source row type and evaluated by the executor's expression
 * machinery.  A variable without a condition matches every event.
 * Iterative conditions refer to the events already matched (not counting
 * the event being tested, as in Flink's IterativeCondition):
 *	 LAST(v.col [, n])	 col of the last (n-th from last) event of v, or NULL
 *	 FIRST(v.col [, n])  col of the first (n-th) event of v, or NULL
 *	 v.col				 LAST(v.col) when v is another variable; the event
 *						 being tested when v is the variable defined
 *	 agg(... v.col ...)	 any aggregate over the events of v so far:
 *						 SUM(v.amount), COUNT(v.*), AVG(v.x) FILTER (...)
 * Before evaluation these references are replaced by parameters ($n)
 * that cep.c fills from the partial match; the rest is plain SQL.
 *
 * MEASURES: "expr AS name, ...": the same references over the whole
 * match; unqualified columns are those of the match's last event.
 *
 * Errors point at the offending position of the pattern, define or
 * measures text (as internal query position, with the text).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/readfuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/scansup.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "fragment.h"
#include "pattern.h"

#define MAX_QUANTIFIER 100000

/* --- errors at a position of a user's text ------------------------------ */

/* An error at byte offset 'at' of the pattern text. */
static void pattern_error(const char *text, int at, const char *msg, const char *hint) pg_attribute_noreturn();

static void
pattern_error(const char *text, int at, const char *msg, const char *hint)
{
	int			charpos = pg_mbstrlen_with_len(text, at) + 1;

	ereport(ERROR,
			(errcode(ERRCODE_SYNTAX_ERROR),
			 errmsg("invalid pattern at position %d: %s", charpos, msg),
			 hint ? errhint("%s", hint) : 0,
			 internalerrquery(text),
			 internalerrposition(charpos)));
}

/* --- pattern ------------------------------------------------------------- */

static bool
is_ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || IS_HIGHBIT_SET(c);
}

static bool
is_ident_char(char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

static int
skip_space(const char *s, int p)
{
	while (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')
		p++;
	return p;
}

static int
read_int(const char *text, int *p)
{
	int64		v = 0;
	int			start = *p;

	if (!(text[*p] >= '0' && text[*p] <= '9'))
		pattern_error(text, *p, text[*p] ? "a number was expected" : "unterminated quantifier", "Quantifiers are {n}, {n,}, {n,m}, +, * or ?.");
	while (text[*p] >= '0' && text[*p] <= '9')
	{
		v = v * 10 + (text[*p] - '0');
		if (v > MAX_QUANTIFIER)
			pattern_error(text, start, "quantifier too large", "The largest count is 100000.");
		(*p)++;
	}
	return (int) v;
}

static int
find_var(Pattern *pat, const char *name)
{
	for (int i = 0; i < pat->nvars; i++)
		if (strcmp(pat->vars[i], name) == 0)
			return i;
	return -1;
}

/* Is variable v an element of the pattern (and not negated, if asked)? */
static bool
var_is_element(Pattern *pat, int v, bool positive)
{
	for (int i = 0; i < pat->nelems; i++)
		if (pat->elems[i].var == v)
			return !(positive && pat->elems[i].negated);
	return false;
}

/* s without the white space around it (in place). */
static char *
trim_space(char *s)
{
	char	   *e;

	s += strspn(s, " \t\n\r");
	for (e = s + strlen(s); e > s && strchr(" \t\n\r", e[-1]); e--)
		;
	*e = '\0';
	return s;
}

/* "a, b, c": the variables, for hints. */
static char *
pattern_var_list(Pattern *pat)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < pat->nvars; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", pat->vars[i]);
	return buf.data;
}

/* Quantifier after a variable, if any: {..}, +, *, ?, then greedy +. */
static void
parse_quantifier(const char *text, int *pp, PatternElement *el)
{
	int			p = *pp;

	el->min = el->max = 1;
	el->inner = CONTIG_STRICT;
	if (text[p] == '+')
	{
		el->min = 1, el->max = -1;
		p++;
	}
	else if (text[p] == '*')
	{
		el->min = 0, el->max = -1;
		p++;
	}
	else if (text[p] == '?')
	{
		el->min = 0, el->max = 1;
		p++;
	}
	else if (text[p] == '{')
	{
		int			open = p;

		p = skip_space(text, p + 1);
		if (strncmp(text + p, "->>", 3) == 0)
			el->inner = CONTIG_ANY, p = skip_space(text, p + 3);
		else if (strncmp(text + p, "->", 2) == 0)
			el->inner = CONTIG_RELAXED, p = skip_space(text, p + 2);
		if (text[p] == ',')
			el->min = 0;
		else
			el->min = read_int(text, &p);
		p = skip_space(text, p);
		if (text[p] == ',')
		{
			p = skip_space(text, p + 1);
			if (text[p] == '}')
				el->max = -1;
			else
			{
				el->max = read_int(text, &p);
				p = skip_space(text, p);
			}
		}
		else
			el->max = el->min;
		if (text[p] != '}')
			pattern_error(text, text[p] ? p : open, text[p] ? "\"}\" was expected" : "unterminated quantifier",
						  "Quantifiers are {n}, {n,}, {n,m}, {->n,m} (relaxed iterations) or {->>n,m}.");
		p++;
		if (el->max >= 0 && el->max < el->min)
			pattern_error(text, open, "the maximum of a quantifier is below its minimum", NULL);
		if (el->max == 0)
			pattern_error(text, open, "a quantifier must allow at least one event", NULL);
	}
	else
	{
		*pp = p;
		return;
	}
	if (text[p] == '+')
	{
		el->greedy = true;
		p++;
	}

	/*
	 * In SQL's row patterns a ? after a quantifier makes it reluctant.  Our
	 * quantifiers try every way of matching (Flink's default) and a
	 * trailing + makes one greedy; a reluctant one has no Flink meaning, so
	 * b{3}? is refused rather than read as Flink's times(3).optional().
	 */
	if (text[p] == '?')
		pattern_error(text, p, "reluctant quantifiers are not supported",
					  "A quantifier tries every way of matching (Flink's default); a trailing + makes it greedy. "
					  "For a variable with no event or n of them (Flink's times(n).optional()) write (b{n})?.");
	*pp = p;
}

/*
 * The parse tree of a pattern: variables and groups, each with the
 * contiguity to what comes before it.  pattern_parse expands it into the
 * element list the NFA runs (expand_items).
 */
typedef struct PNode
{
	bool		group;
	Contiguity	contiguity;
	int			start;			/* position in the text */
	PatternElement el;			/* a variable */
	List	   *items;			/* a group: its PNodes */
	int			min;			/* a group's quantifier */
	int			max;
	Contiguity	inner;
	int			until;			/* a looping group's until, or -1 */
} PNode;

typedef struct PatParse
{
	const char *text;
	Pattern    *pat;
	int			cap;			/* of pat->elems */
	int		   *starts;			/* text position of each element */
	bool		groups;			/* the pattern has groups */

	/*
	 * Where each element sits among the groups, for the rules on negations
	 * and greedy quantifiers next to groups (check_negation_in_groups):
	 * the innermost group copy (0: none), and whether a copy around it
	 * belongs to a group with a quantifier other than {1}.
	 */
	int		   *gids;
	bool	   *quants;
	int			cur_gid;
	bool		cur_quant;
	int			ngids;
	int			cur_guntil;		/* until of the group being expanded */
	List	   *grecs;			/* GroupRec per expanded group */
	int		   *gid_rec;		/* group copy id -> index into grecs */
	int			gid_cap;
} PatParse;

/* An expanded group: its elements start..end-1 and its copies. */
typedef struct GroupRec
{
	PNode	   *node;
	int			start;
	int			end;
	int			parent_gid;		/* the copy the group is an item of */
	int			ncopies;
	int		   *heads;			/* first element of each copy */
} GroupRec;

#define MAX_ELEMENTS 1000

static List *parse_items(PatParse *ps, int *pp, int open);

/* "b{1,} until (s)" after a variable or a group (at p); -1 if none. */
static int
parse_until(PatParse *ps, int *pp, PatternElement *el, int group_max, int *at)
{
	const char *text = ps->text;
	Pattern    *pat = ps->pat;
	int			p = *pp;
	int			s;
	char	   *name;
	int			var;

	if (!(pg_strncasecmp(text + p, "until", 5) == 0 &&
		  text[skip_space(text, p + 5)] == '('))
		return -1;
	*at = p;
	p = skip_space(text, skip_space(text, p + 5) + 1);
	s = p;
	if (!is_ident_start(text[p]))
		pattern_error(text, p, "a condition name was expected in until", "For example: b{1,} until (s), with s AS ... in define.");
	while (is_ident_char(text[p]))
		p++;
	name = downcase_truncate_identifier(text + s, p - s, false);
	p = skip_space(text, p);
	if (text[p] != ')')
		pattern_error(text, p, "\")\" was expected", NULL);
	p = skip_space(text, p + 1);
	/* Flink: "The until condition is only applicable to looping states." */
	if (el ? (el->negated || el->max >= 0) : group_max >= 0)
		pattern_error(text, *at, "until applies only to a loop",
					  "A loop is a variable or group with an unbounded quantifier: b+, b*, b{2,}, b{->1,}, (a b)+.");
	if (find_var(pat, name) >= 0)
		pattern_error(text, s, psprintf("\"%s\" is already a name of the pattern", name),
					  "The stop condition of until is a condition of its own in define.");
	var = pat->nvars;
	pat->vars[pat->nvars++] = name;
	*pp = p;
	return var;
}

/*
 * until on a looping group (Flink's until() on a GroupPattern): NFACompiler
 * ands "not until" into the take and ignore conditions of the states of
 * the group's variables and into their own proceed edges (getTakeCondition,
 * getIgnoreCondition, getInnerIgnoreCondition and getTrueFunction look at
 * the current group's until), not into the group's edges (a copy's first
 * state proceeding past the group, the looping copy's dummy state), which
 * are built with the enclosing pattern's conditions.  The runtime applies
 * it per element (PatternElement.guntil).  Not supported: groups inside
 * such a group (their edges are built with the until), an optional first
 * variable (Flink takes the group's optionality for it) and greedy
 * variables in it.
 */
static void
check_group_until(PatParse *ps, PNode *g, int at)
{
	ListCell   *lc;

	foreach(lc, g->items)
	{
		PNode	   *n = lfirst(lc);

		if (n->group)
			pattern_error(ps->text, at, "until on a group with groups inside is not supported", NULL);
		if (lc == list_head(g->items) && pattern_elem_optional(&n->el))
			pattern_error(ps->text, at, "until on a group that begins with an optional variable is not supported", NULL);
		if (n->el.greedy)
			pattern_error(ps->text, at, "until on a group with a greedy variable is not supported", NULL);
	}
}

/*
 * One item at p: a variable ("!v", "v{2,}", "v+ until (s)") or a group
 * "( items )" with a quantifier.
 */
static PNode *
parse_item(PatParse *ps, int *pp, Contiguity c)
{
	const char *text = ps->text;
	Pattern    *pat = ps->pat;
	PNode	   *node = palloc0(sizeof(PNode));
	PatternElement *el = &node->el;
	int			p = *pp;
	int			until_at;
	char	   *name;

	node->contiguity = c;
	node->start = p;
	node->until = -1;
	if (text[p] == '(')
	{
		int			open = p;
		PatternElement q;

		p = skip_space(text, p + 1);
		node->items = parse_items(ps, &p, open);
		p++;					/* the ")" */
		memset(&q, 0, sizeof(q));
		parse_quantifier(text, &p, &q);
		if (q.greedy)
			/* Flink: "Option not applicable to group pattern" */
			pattern_error(text, p - 1, "a group cannot be greedy", "Greedy applies to the quantifier of a variable: b{2,}+.");
		p = skip_space(text, p);
		node->until = parse_until(ps, &p, NULL, q.max, &until_at);
		if (node->until >= 0)
			check_group_until(ps, node, until_at);
		if (list_length(node->items) == 1 && !((PNode *) linitial(node->items))->group)
		{
			PNode	   *only = linitial(node->items);

			/*
			 * One variable in parentheses: (b{n,m})? is Flink's times(n,
			 * m).optional(), no event or n..m of them (b{0,m} is n..m from
			 * 1); likewise (b{n,})?, timesOrMore(n).optional(); (b) is b.
			 * With another quantifier it is a group of one variable.
			 */
			if (q.min == 1 && q.max == 1)
			{
				only->contiguity = c;
				only->start = node->start;
				*pp = p;
				return only;
			}
			if (q.min == 0 && q.max == 1)
			{
				/* Flink: "Optional already applied!" */
				if (pattern_elem_optional(&only->el))
					pattern_error(text, open, "the variable in parentheses is optional already",
								  "(b{n,m})? takes no event or n..m events; b{0,m}, b* and b? are optional themselves.");
				only->el.optional = true;
				only->contiguity = c;
				only->start = node->start;
				*pp = p;
				return only;
			}
		}
		node->group = true;
		node->min = q.min;
		node->max = q.max;
		node->inner = q.inner;
		ps->groups = true;
		*pp = p;
		return node;
	}

	if (text[p] == '!')
	{
		el->negated = true;
		p = skip_space(text, p + 1);
		if (text[p] == '(')
			pattern_error(text, p, "a negated variable cannot be in parentheses",
						  "Negation applies to one variable: !c.");
	}
	if (text[p] == '|')
		pattern_error(text, p, "alternatives are not supported",
					  "As in Flink (its MATCH_RECOGNIZE refuses branching patterns): "
					  "write one variable whose condition is the disjunction, v AS cond1 OR cond2.");
	if (!is_ident_start(text[p]))
		pattern_error(text, p, text[p] ? "a pattern variable was expected" : "the pattern ends after a contiguity",
					  "Variables are identifiers; sequences are written a b (next), a -> b (followed by) or a ->> b (followed by any).");
	{
		int			s = p;

		while (is_ident_char(text[p]))
			p++;
		name = downcase_truncate_identifier(text + s, p - s, false);
	}
	if (find_var(pat, name) >= 0)
		pattern_error(text, node->start + (el->negated ? 1 : 0), psprintf("variable \"%s\" appears twice", name),
					  "Each variable appears once; use a quantifier such as a{2} for repetitions.");
	el->var = pat->nvars;
	pat->vars[pat->nvars++] = name;
	parse_quantifier(text, &p, el);
	if (el->negated && (el->min != 1 || el->max != 1))
		pattern_error(text, node->start, "a negated variable cannot have a quantifier", NULL);

	/*
	 * "b{1,} until (s)": the loop's stop condition (Flink's until), a
	 * condition s of define that is no variable of the pattern.
	 */
	p = skip_space(text, p);
	el->until = parse_until(ps, &p, el, 0, &until_at);
	*pp = p;
	return node;
}

/*
 * Items up to the end of the text, or (open >= 0: after the "(" at open)
 * up to the ")" at which *pp stops.
 */
static List *
parse_items(PatParse *ps, int *pp, int open)
{
	const char *text = ps->text;
	List	   *items = NIL;
	int			p = *pp;

	if (text[p] == '\0' && open < 0)
		pattern_error(text, 0, "the pattern is empty", "For example: 'a -> b{2,} c'.");
	if (text[p] == ')' && open >= 0)
		pattern_error(text, open, "the group is empty", "For example: 'a (b c)+ d'.");
	for (;;)
	{
		Contiguity	c = CONTIG_STRICT;

		/* contiguity to the previous item */
		if (items != NIL)
		{
			if (strncmp(text + p, "->>", 3) == 0)
				c = CONTIG_ANY, p = skip_space(text, p + 3);
			else if (strncmp(text + p, "->", 2) == 0)
				c = CONTIG_RELAXED, p = skip_space(text, p + 2);
		}
		items = lappend(items, parse_item(ps, &p, c));

		/*
		 * A group, like a pattern, begins with a variable (Flink's
		 * Pattern.begin(), of which a group is made, has no negated form).
		 */
		if (open >= 0 && list_length(items) == 1 && ((PNode *) linitial(items))->el.negated)
			pattern_error(text, ((PNode *) linitial(items))->start, "a group cannot begin with a negated variable",
						  "Write the negation before the group: a -> !c -> (b d).");
		p = skip_space(text, p);
		if (text[p] == '\0')
		{
			if (open >= 0)
				pattern_error(text, open, "the group is not closed", "A group is written (a b), followed by an optional quantifier: (a b){2}.");
			break;
		}
		if (text[p] == ')')
		{
			PNode	   *last = llast(items);

			if (open < 0)
				pattern_error(text, p, "unexpected \")\"", NULL);

			/*
			 * Flink's NFACompiler turns a notFollowedBy into stop edges of the
			 * states after it, found by walking back the Pattern chain from
			 * them; the chain after a group links to the group, not to its
			 * last variable, so a notFollowedBy ending a group would stop
			 * nothing (or only a loop right before it): refused rather than
			 * ignored.
			 */
			if (!last->group && last->el.negated && last->contiguity != CONTIG_STRICT)
				pattern_error(text, last->start, "a group cannot end with a notFollowedBy variable",
							  "Write the negation after the group: (a b) -> !c -> d.");
			break;
		}
		if (text[p] == '|')
			pattern_error(text, p, "alternatives are not supported",
						  "As in Flink (its MATCH_RECOGNIZE refuses branching patterns): "
						  "write one variable whose condition is the disjunction, v AS cond1 OR cond2.");
		if (!(is_ident_start(text[p]) || text[p] == '!' || text[p] == '-' || text[p] == '('))
			pattern_error(text, p, psprintf("unexpected \"%c\"", text[p]),
						  "Sequences are written a b (next), a -> b (followed by) or a ->> b (followed by any).");
		if (text[p] == '-' && text[p + 1] != '>')
			pattern_error(text, p, "unexpected \"-\"", "Relaxed contiguity is written ->.");
	}
	*pp = p;
	return items;
}

static void
add_edge(int *n, int **targets, int t)
{
	for (int i = 0; i < *n; i++)
		if ((*targets)[i] == t)
			return;
	*targets = *n == 0 ? palloc(sizeof(int)) : repalloc(*targets, sizeof(int) * (*n + 1));
	(*targets)[(*n)++] = t;
}

static void expand_items(PatParse *ps, List *items, Contiguity first);

/* One copy of group g's items, the first with contiguity 'first'. */
static void
expand_copy(PatParse *ps, PNode *g, GroupRec *rec, Contiguity first)
{
	int			saved_gid = ps->cur_gid;
	bool		saved_quant = ps->cur_quant;

	ps->cur_gid = ++ps->ngids;
	ps->cur_guntil = g->until;
	if (ps->ngids >= ps->gid_cap)
	{
		ps->gid_cap *= 2;
		ps->gid_rec = repalloc(ps->gid_rec, sizeof(int) * ps->gid_cap);
	}
	ps->gid_rec[ps->cur_gid] = list_length(ps->grecs) - 1;
	rec->heads[rec->ncopies++] = ps->pat->nelems;
	ps->cur_quant = saved_quant || g->min != 1 || g->max != 1;
	expand_items(ps, g->items, first);
	ps->cur_guntil = -1;		/* (no group with until has groups inside) */
	ps->cur_gid = saved_gid;
	ps->cur_quant = saved_quant;
}

/*
 * A group with quantifier {min,max}, as elements: its items min times
 * (at least once), then either a copy that loops (max unbounded: the last
 * element of the copy proceeds back to its first, and the copy may be
 * skipped), or max - min copies that may each be skipped to the end.  A
 * group with min 0 may be skipped as a whole.  Copies after the first
 * start with the group's inner contiguity, as Flink's inner consuming
 * strategy of a group (getInnerIgnoreCondition on the head of the group).
 * Each copy's elements keep the group's variables.
 */
static void
expand_group(PatParse *ps, PNode *g, Contiguity c)
{
	Pattern    *pat = ps->pat;
	int			lo = Max(g->min, 1);
	int			start_all = pat->nelems;
	int		   *copies;
	int			ncopies = 0;
	GroupRec   *rec;

	if (g->max >= 0 && (int64) g->max * list_length(g->items) > MAX_ELEMENTS)
		pattern_error(ps->text, g->start, "the group repeats too many variables",
					  psprintf("A pattern may expand to at most %d variables; a group's quantifier copies them.", MAX_ELEMENTS));
	copies = palloc(sizeof(int) * (Max(g->max, lo) + 1));
	rec = palloc0(sizeof(GroupRec));
	rec->node = g;
	rec->start = start_all;
	rec->parent_gid = ps->cur_gid;
	rec->heads = palloc(sizeof(int) * (Max(g->max, lo) + 1));
	ps->grecs = lappend(ps->grecs, rec);
	for (int k = 0; k < lo; k++)
		expand_copy(ps, g, rec, k == 0 ? c : g->inner);
	if (g->max < 0)
	{
		int			s = pat->nelems;

		expand_copy(ps, g, rec, g->inner);
		copies[ncopies++] = s;
		add_edge(&pat->elems[pat->nelems - 1].nloops, &pat->elems[pat->nelems - 1].loops, s);
	}
	else
		for (int k = lo; k < g->max; k++)
		{
			copies[ncopies++] = pat->nelems;
			expand_copy(ps, g, rec, g->inner);
		}
	for (int k = 0; k < ncopies; k++)
		add_edge(&pat->elems[copies[k]].nskips, &pat->elems[copies[k]].skips, pat->nelems);
	if (g->min == 0)
		add_edge(&pat->elems[start_all].nskips, &pat->elems[start_all].skips, pat->nelems);
	rec->end = pat->nelems;
}

/* Append the elements of items; the first gets contiguity 'first'. */
static void
expand_items(PatParse *ps, List *items, Contiguity first)
{
	Pattern    *pat = ps->pat;
	ListCell   *lc;

	foreach(lc, items)
	{
		PNode	   *node = lfirst(lc);
		Contiguity	c = (lc == list_head(items)) ? first : node->contiguity;

		if (node->group)
		{
			expand_group(ps, node, c);
			continue;
		}
		if (pat->nelems >= MAX_ELEMENTS)
			pattern_error(ps->text, node->start, "the group repeats too many variables",
						  psprintf("A pattern may expand to at most %d variables; a group's quantifier copies them.", MAX_ELEMENTS));
		if (pat->nelems == ps->cap)
		{
			ps->cap *= 2;
			pat->elems = repalloc(pat->elems, sizeof(PatternElement) * ps->cap);
			ps->starts = repalloc(ps->starts, sizeof(int) * ps->cap);
			ps->gids = repalloc(ps->gids, sizeof(int) * ps->cap);
			ps->quants = repalloc(ps->quants, sizeof(bool) * ps->cap);
		}
		pat->elems[pat->nelems] = node->el;
		pat->elems[pat->nelems].contiguity = c;
		ps->starts[pat->nelems] = node->start;
		pat->elems[pat->nelems].stop0 = -1;
		pat->elems[pat->nelems].guntil = ps->cur_guntil;
		ps->gids[pat->nelems] = ps->cur_gid;
		ps->quants[pat->nelems] = ps->cur_quant;
		pat->nelems++;
	}
}

/*
 * The first element after element i that a negation or a greedy quantifier
 * at i reaches: past optional elements and notFollowedBy elements (which
 * are conditions on the next state's edges in Flink, not states).  Sets
 * *optional when it passes an optional element.  pat->nelems if none.
 */
static int
reach_end(Pattern *pat, int i, bool *optional)
{
	int			k;

	*optional = false;
	for (k = i + 1; k < pat->nelems; k++)
	{
		PatternElement *el = &pat->elems[k];

		if (el->negated && el->contiguity != CONTIG_STRICT)
			continue;
		if (!el->negated && pattern_elem_optional(el))
		{
			*optional = true;
			continue;
		}
		break;
	}
	return k;
}

static GroupRec *
group_of(PatParse *ps, int gid)
{
	return gid > 0 ? list_nth(ps->grecs, ps->gid_rec[gid]) : NULL;
}

static bool
group_quantified(GroupRec *g)
{
	return g->node->min != 1 || g->node->max != 1;
}

/* Does the item list of a group end (begin) with a variable? */
static bool
group_edge_is_var(GroupRec *g, bool last)
{
	PNode	   *n = last ? llast(g->node->items) : linitial(g->node->items);

	return !n->group;
}

static void negation_unsupported(PatParse *ps, int i) pg_attribute_noreturn();

static void
negation_unsupported(PatParse *ps, int i)
{
	pattern_error(ps->text, ps->starts[i],
				  "this negation next to a group is not supported",
				  "A negation may follow a group, (a b){2} -> !c -> d, precede one, "
				  "a -> !c -> (b d)+, or stand inside one, (a !c b)+; not at the end of a "
				  "quantified group, nor next to a group that ends or begins with another group.");
}

/*
 * A negation in a pattern with groups.  The NFA applies a negation to its
 * neighbours in the element list: the element before it (own_stop in
 * cep.c, through next_not), the elements after it up to the first that
 * takes an event (prev_nots).  That is Flink's rule within a copy of a
 * group (NFACompiler builds each copy from the group's Pattern chain), and
 * next to a group without quantifier, whose states are its variables'.
 * Across the boundary of a quantified group Flink adds:
 *	 - a notFollowedBy !n after the group: a stop state on the first state
 *	   of every copy but the first (createTimesState calls
 *	   addStopStateToLooping on each; the looping copy's first state
 *	   proceeds to the next state, which has the stop state), and on the
 *	   inner states of the last variable of every copy if it loops
 *	   (convertPattern of that variable sees the group's following pattern);
 *	 - a notNext !n after the group: the copies that may be skipped (the
 *	   looping copy, the copies past the minimum) proceed from their first
 *	   state to the notNext state, whose stop state takes an n;
 *	 - a negation before the group: the stop state is on the first copy's
 *	   first state only (addStopStates for the group), as in the list.
 * A notNext or notFollowedBy after an optional group is refused by Flink
 * (Pattern.notNext/notFollowedBy); the other cases (a negation reaching
 * across a group boundary through optional variables, as Flink decides by
 * the group's optionality, not its variables'; a negation ending a
 * quantified group's copy; groups ending or beginning with groups) are
 * refused here rather than run with other matches than Flink's.
 */
static void
check_negation_in_groups(PatParse *ps, int i)
{
	Pattern    *pat = ps->pat;
	PatternElement *neg = &pat->elems[i];
	bool		optional;
	int			end = reach_end(pat, i, &optional);
	int			hi = Min(end, pat->nelems - 1);

	/* After: the elements the negation's stop edges reach. */
	for (int k = i + 1; k <= hi; k++)
	{
		int			gid;
		GroupRec   *g;

		if (ps->gids[k] == ps->gids[i])
			continue;
		if (optional)
			pattern_error(ps->text, ps->starts[i],
						  "a negated variable cannot reach into or out of a group through optional variables",
						  "Flink decides which states a negation stops by the optionality of the group, "
						  "not of its variables; write the optional variable outside the group.");

		/* Out of groups without quantifier that end here ... */
		gid = ps->gids[k - 1];
		while (gid != 0 && (g = group_of(ps, gid))->end == k && !group_quantified(g) &&
			   ps->gids[k] != gid)
			gid = g->parent_gid;
		if (gid == ps->gids[k])
			continue;
		/* ... or into a group that begins here with a variable. */
		g = group_of(ps, ps->gids[k]);
		if (g == NULL || g->start != k || g->parent_gid != gid || !group_edge_is_var(g, false) ||
			pattern_elem_optional(&pat->elems[k]))
			negation_unsupported(ps, i);
		if (g->node->min == 0)
			pattern_error(ps->text, ps->starts[i],
						  "a negated variable before an optional group is not supported",
						  "Flink's stop state is on the group's first state but not on the state that "
						  "ignores events there; write the group without the optional quantifier.");
	}

	/* Before: a group ending right before the negation. */
	if (ps->gids[i - 1] != ps->gids[i])
	{
		GroupRec   *g = group_of(ps, ps->gids[i - 1]);

		if (g == NULL || g->end != i || g->parent_gid != ps->gids[i] || !group_edge_is_var(g, true))
			negation_unsupported(ps, i);
		/* Flink's Pattern.notNext() and notFollowedBy() on an optional group */
		if (g->node->min == 0)
			pattern_error(ps->text, ps->starts[i],
						  "a negated variable cannot follow an optional group",
						  "Flink: Specifying a pattern with an optional path to NOT condition is not supported yet. "
						  "You can simulate such pattern with two independent patterns, one with and the other "
						  "without the optional part.");
		if (group_quantified(g))
		{
			if (i == pat->nelems - 1)
				pattern_error(ps->text, ps->starts[i],
							  "a pattern cannot end with a negation after a quantified group",
							  "Add a variable after the negation: (a b){2} -> !c -> d.");
			for (int k = 0; k < g->ncopies; k++)
			{
				int			head = g->heads[k];
				int			last = (k + 1 < g->ncopies ? g->heads[k + 1] : g->end) - 1;

				if (neg->contiguity != CONTIG_STRICT)
				{
					if (k > 0)
						pat->elems[head].stop0 = neg->var;
					pat->elems[last].next_not = neg->var;
				}
				else if (pat->elems[head].nskips > 0)
					pat->elems[head].stop0 = neg->var;
			}
		}
	}
}

/*
 * A greedy quantifier in a pattern with groups: Flink's greedy condition
 * is put on the edges of the state the loop proceeds to
 * (updateWithGreedyCondition on the sink state), as cep.c does for the
 * next element (greedy_guard).  Inside or next to a quantified group that
 * state is a copy of a group (or the dummy state of a looping group, which
 * has no edges yet when Flink updates it), so those cases are refused.
 */
static void
check_greedy_in_groups(PatParse *ps, int g)
{
	Pattern    *pat = ps->pat;
	bool		optional;
	int			end = reach_end(pat, g, &optional);
	int			hi = Min(end, pat->nelems - 1);

	for (int k = g; k <= hi; k++)
		if (ps->quants[k])
			pattern_error(ps->text, ps->starts[g],
						  "a greedy variable in or next to a quantified group is not supported",
						  "A greedy variable may stand inside or next to a group without quantifier, "
						  "(a b{2,}+) c; Flink's greedy condition on the copies of a group with times(), "
						  "oneOrMore() or optional() is not implemented.");
	if (optional)
		for (int k = g + 1; k <= hi; k++)
			if (ps->gids[k] != ps->gids[g])
				pattern_error(ps->text, ps->starts[g],
							  "a greedy variable cannot reach into or out of a group through optional variables",
							  "Flink decides how far a greedy loop reaches by the optionality of the group, "
							  "not of its variables.");
}

Pattern *
pattern_parse(const char *text, const char *skip, bool has_within)
{
	Pattern    *pat = palloc0(sizeof(Pattern));
	int			len = strlen(text);
	int			p = 0;
	int		   *starts;
	PatParse	ps;
	List	   *items;

	pat->vars = palloc(sizeof(char *) * (len + 1));
	memset(&ps, 0, sizeof(ps));
	ps.text = text;
	ps.pat = pat;
	ps.cap = 16;
	pat->elems = palloc0(sizeof(PatternElement) * ps.cap);
	ps.starts = palloc(sizeof(int) * ps.cap);
	ps.gids = palloc(sizeof(int) * ps.cap);
	ps.quants = palloc(sizeof(bool) * ps.cap);
	ps.gid_cap = 16;
	ps.cur_guntil = -1;
	ps.gid_rec = palloc(sizeof(int) * ps.gid_cap);

	p = skip_space(text, p);
	items = parse_items(&ps, &p, -1);
	expand_items(&ps, items, CONTIG_STRICT);
	starts = ps.starts;
	pat->has_groups = ps.groups;

	for (int i = 0; i < pat->nelems; i++)
	{
		PatternElement *nx = i + 1 < pat->nelems ? &pat->elems[i + 1] : NULL;

		pat->elems[i].next_not = (nx && nx->negated && nx->contiguity != CONTIG_STRICT) ? nx->var : -1;
	}

	/*
	 * Negations and greedy quantifiers next to groups: see
	 * check_negation_in_groups.
	 */
	if (ps.groups)
		for (int i = 0; i < pat->nelems; i++)
		{
			if (pat->elems[i].negated && i > 0)
				check_negation_in_groups(&ps, i);
			if (pat->elems[i].greedy)
				check_greedy_in_groups(&ps, i);
		}

	/* Rules Flink's NFA compiler enforces too. */
	for (int i = 0; i < pat->nelems; i++)
	{
		PatternElement *el = &pat->elems[i];

		if (el->negated && i == 0)
			pattern_error(text, starts[i], "a pattern cannot begin with a negated variable", NULL);
		/*
		 * notFollowedBy last: Flink's NFACompiler accepts it only with a
		 * window ("NotFollowedBy is not supported without windowTime as a
		 * last part of a Pattern!"), as only the window's end can tell that
		 * the negated event did not come.  notNext last needs none: the next
		 * event tells.
		 */
		if (el->negated && i == pat->nelems - 1 && el->contiguity != CONTIG_STRICT &&
			!has_within)
			pattern_error(text, starts[i], "a pattern can end with a notFollowedBy variable only with within",
						  "A pattern ending in \"-> !v\" matches when its within window ends without a v: "
						  "add within => '10 minutes', for example, or end with \"!v\" (notNext: "
						  "the very next event is not a v).");
		if (el->negated && pattern_elem_optional(&pat->elems[i - 1]))
			pattern_error(text, starts[i], "a negated variable cannot follow an optional variable", NULL);
		/*
		 * A greedy last variable is accepted, as by Flink: nothing follows
		 * it to decide against, so it emits every prefix as a non-greedy
		 * one does.
		 */
	}
	/*
	 * A pattern whose variables are all optional (a*, a? b*) is accepted, as
	 * by Flink: a match is made by taking an event, so it is never empty.
	 */

	/* After-match skip strategy. */
	pat->skip = SKIP_NONE;
	pat->skip_var = -1;
	if (skip != NULL)
	{
		char	   *s = downcase_identifier(skip, strlen(skip), false, false);
		char	   *open = strchr(s, '(');
		char	   *v = NULL;

		/*
		 * "skip to first ( v_ )": the words of the name may be separated by
		 * spaces; the variable is an identifier, underscores included, with
		 * spaces around it.
		 */
		if (open)
		{
			char	   *close = strchr(open, ')');
			char	   *after;

			*open = '\0';
			if (close == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid skip strategy: %s", skip),
						 errhint("Use no_skip, skip_to_next, skip_past_last_event, skip_to_first(var) or skip_to_last(var).")));

			/*
			 * "skip_to_first(v) throw_exception_on_miss" (words separated by
			 * spaces or underscores): Flink's throwExceptionOnMiss().
			 */
			after = trim_space(close + 1);
			for (char *q = after; *q; q++)
				if (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
					*q = '_';
			if (strcmp(after, "throw_exception_on_miss") == 0)
				pat->skip_throw = true;
			else if (*after != '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid skip strategy: %s", skip),
						 errhint("After skip_to_first(var) or skip_to_last(var) only throw_exception_on_miss may follow.")));
			*close = '\0';
			v = pstrdup(trim_space(open + 1));
		}
		s = trim_space(s);
		for (char *q = s; *q; q++)
			if (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
				*q = '_';
		if (strcmp(s, "no_skip") == 0 && v == NULL)
			pat->skip = SKIP_NONE;
		else if (strcmp(s, "skip_to_next") == 0 && v == NULL)
			pat->skip = SKIP_TO_NEXT;
		else if (strcmp(s, "skip_past_last_event") == 0 && v == NULL)
			pat->skip = SKIP_PAST_LAST_EVENT;
		else if (strcmp(s, "skip_to_first") == 0 && v != NULL)
			pat->skip = SKIP_TO_FIRST;
		else if (strcmp(s, "skip_to_last") == 0 && v != NULL)
			pat->skip = SKIP_TO_LAST;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid skip strategy: %s", skip),
					 errhint("Use no_skip, skip_to_next, skip_past_last_event, skip_to_first(var) or skip_to_last(var).")));
		if (v != NULL)
		{
			pat->skip_var = find_var(pat, v);
			if (pat->skip_var >= 0 && !var_is_element(pat, pat->skip_var, true))
				pat->skip_var = -1;
			if (pat->skip_var < 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("skip strategy %s names \"%s\", which is not a variable of the pattern", skip, v),
						 errhint("Variables of the pattern: %s.", pattern_var_list(pat))));
		}
	}
	return pat;
}

/* --- SQL text scanning --------------------------------------------------- */

/*
 * Offset of the end of the SQL item starting at p: the next comma at depth
 * 0 outside literals, identifiers and comments, or the end of the text.
 * With stop_at_close, the end is the unmatched ')' instead: p is inside
 * parentheses, whose commas belong to them.
 */
static int
sql_item_end(const char *s, int p, bool stop_at_close)
{
	int			depth = 0;

	while (s[p])
	{
		char		c = s[p];

		if (c == '\'' || c == '"')
		{
			bool		backslash = (c == '\'' && p > 0 && (s[p - 1] == 'E' || s[p - 1] == 'e'));

			p++;
			while (s[p])
			{
				if (backslash && s[p] == '\\' && s[p + 1])
					p += 2;
				else if (s[p] == c && s[p + 1] == c)
					p += 2;
				else if (s[p] == c)
					break;
				else
					p++;
			}
			if (s[p])
				p++;
			continue;
		}
		if (c == '$' && (p == 0 || !is_ident_char(s[p - 1])))
		{
			int			q = p + 1;

			while (is_ident_char(s[q]) && s[q] != '$')
				q++;
			if (s[q] == '$')
			{
				int			taglen = q - p + 1;
				const char *close;

				close = strstr(s + q + 1, pnstrdup(s + p, taglen));
				p = close ? (int) (close - s) + taglen : (int) strlen(s);
				continue;
			}
		}
		if (c == '-' && s[p + 1] == '-')
		{
			while (s[p] && s[p] != '\n')
				p++;
			continue;
		}
		if (c == '/' && s[p + 1] == '*')
		{
			const char *close = strstr(s + p + 2, "*/");

			p = close ? (int) (close - s) + 2 : (int) strlen(s);
			continue;
		}
		if (c == '(' || c == '[')
			depth++;
		else if (c == ')' || c == ']')
		{
			if (depth == 0 && stop_at_close)
				return p;
			depth--;
		}
		else if (c == ',' && depth == 0 && !stop_at_close)
			return p;
		p++;
	}
	return p;
}

/* Replace the characters of s[from, to) by spaces (newlines kept). */
static void
blank(char *s, int from, int to)
{
	for (int i = from; i < to;)
	{
		int			l = pg_mblen(s + i);

		if (s[i] != '\n')
		{
			/* one space per character, so character positions stay */
			s[i] = ' ';
			memmove(s + i + 1, s + i + l, strlen(s + i + l) + 1);
			to -= l - 1;
		}
		i++;
	}
}

/* --- navigation references ----------------------------------------------- */

typedef struct NavContext
{
	Pattern    *pat;
	Oid			row_type;
	TupleDesc	desc;
	char	   *sql;			/* what the raw parser parsed */
	int			prefix;			/* bytes before the user's text in sql */
	const char *text;			/* the user's text */
	const char *what;
	int			current_var;	/* variable defined, -1 for measures */
	int			expr;			/* expression index */
	List	   *refs;			/* NavRef * */
	List	   *types;			/* param types (Oid) */
	List	   *typmods;
} NavContext;

static void nav_error(NavContext *cxt, int location, const char *msg, const char *hint) pg_attribute_noreturn();

static void
nav_error(NavContext *cxt, int location, const char *msg, const char *hint)
{
	int			charpos = location >= cxt->prefix ?
		pg_mbstrlen_with_len(cxt->sql + cxt->prefix, location - cxt->prefix) + 1 : 0;

	ereport(ERROR,
			(errcode(ERRCODE_SYNTAX_ERROR),
			 errmsg("%s", msg),
			 hint ? errhint("%s", hint) : 0,
			 internalerrquery(cxt->text),
			 charpos > 0 ? internalerrposition(charpos) : 0));
}

/* The variable a ColumnRef "v.col" / "v.*" is qualified with, or -1. */
static int
columnref_var(NavContext *cxt, ColumnRef *cr)
{
	Node	   *first;

	if (list_length(cr->fields) != 2)
		return -1;
	first = linitial(cr->fields);
	if (!IsA(first, String))
		return -1;
	return find_var(cxt->pat, strVal(first));
}

static char *
column_list(TupleDesc desc)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped)
			appendStringInfo(&buf, "%s%s", buf.len ? ", " : "",
							 NameStr(TupleDescAttr(desc, i)->attname));
	return buf.data;
}

static int
column_attno(NavContext *cxt, ColumnRef *cr)
{
	Node	   *col = lsecond(cr->fields);

	if (IsA(col, String))
	{
		for (int i = 0; i < cxt->desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(cxt->desc, i);

			if (!att->attisdropped && strcmp(NameStr(att->attname), strVal(col)) == 0)
				return i;
		}
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" does not exist", strVal(col)),
				 errhint("Columns of the source: %s.", column_list(cxt->desc)),
				 internalerrquery(cxt->text),
				 internalerrposition(pg_mbstrlen_with_len(cxt->sql + cxt->prefix, cr->location - cxt->prefix) + 1)));
	}
	nav_error(cxt, cr->location, "FIRST() and LAST() take a column of a variable, as LAST(v.col)", NULL);
}

/* Turn a raw node into parameter $n of the given type (see below). */
static void
make_param(NavContext *cxt, Node *node, int location, NavRef *ref, Oid type, int32 typmod)
{
	ParamRef   *pr;

	ref->expr = cxt->expr;
	cxt->refs = lappend(cxt->refs, ref);
	cxt->types = lappend_oid(cxt->types, type);
	cxt->typmods = lappend_int(cxt->typmods, typmod);

	/*
	 * Replace the node in place: the raw tree has no parent pointers, and
	 * FuncCall and ColumnRef nodes are larger than a ParamRef.
	 */
	StaticAssertStmt(sizeof(ParamRef) <= sizeof(ColumnRef) && sizeof(ParamRef) <= sizeof(FuncCall),
					 "ParamRef must fit where it replaces a node");
	pr = (ParamRef *) node;
	pr->type = T_ParamRef;
	pr->number = list_length(cxt->refs);
	pr->location = location;
}

static bool
collect_var_refs(Node *node, List **refs_cxt)
{
	if (node == NULL)
		return false;
	if (IsA(node, ColumnRef))
		*refs_cxt = lappend(*refs_cxt, node);
	return raw_expression_tree_walker(node, collect_var_refs, refs_cxt);
}

/* End (offset past the closing parenthesis) of "(...)" opening at or after p. */
static int
paren_end(const char *s, int p)
{
	const char *open = strchr(s + p, '(');
	int			end;

	if (open == NULL)
		return p;
	end = sql_item_end(s, (int) (open - s) + 1, true);
	return s[end] == ')' ? end + 1 : end;
}

/* If s continues at p with the keyword 'word' (any case), the offset past it. */
static int
keyword_at(const char *s, int p, const char *word)
{
	int			len = strlen(word);

	p = skip_space(s, p);
	if (pg_strncasecmp(s + p, word, len) == 0 && !is_ident_char(s[p + len]))
		return p + len;
	return -1;
}

/*
 * End of the aggregate call starting at 'loc': its parentheses, then
 * WITHIN GROUP (...) and FILTER (...) if the call has them.
 */
static int
call_end(NavContext *cxt, FuncCall *fc)
{
	int			end = paren_end(cxt->sql, fc->location);
	int			p;

	if (fc->agg_within_group &&
		(p = keyword_at(cxt->sql, end, "within")) >= 0 &&
		(p = keyword_at(cxt->sql, p, "group")) >= 0)
		end = paren_end(cxt->sql, p);
	if (fc->agg_filter && (p = keyword_at(cxt->sql, end, "filter")) >= 0)
		end = paren_end(cxt->sql, p);
	return end;
}

/* An aggregate over the events of a variable: agg(... v.col ...). */
static void
nav_aggregate(NavContext *cxt, FuncCall *fc, List *colrefs, int var)
{
	int			end = call_end(cxt, fc);
	char	   *aggsql = pstrdup(cxt->sql);
	char	   *aggtext;
	ListCell   *lc;
	List	   *raw;
	Query	   *q;
	NavRef	   *ref;

	if (fc->over)
		nav_error(cxt, fc->location, "window functions are not allowed in a pattern", NULL);

	/* Remove the qualifiers: "sum(v.amount)" is sum(amount) over v's events. */
	foreach(lc, colrefs)
	{
		ColumnRef  *cr = (ColumnRef *) lfirst(lc);
		int			p = cr->location;

		if (columnref_var(cxt, cr) != var)
			nav_error(cxt, cr->location,
					  "an aggregate in a pattern must refer to the events of one variable",
					  "For example: sum(small.amount), count(small.*).");
		if (aggsql[p] == '"')
		{
			p++;
			while (aggsql[p] && aggsql[p] != '"')
				p++;
			p++;
		}
		else
			while (is_ident_char(aggsql[p]))
				p++;
		p = skip_space(aggsql, p);
		if (aggsql[p] == '.')
			p++;
		for (int i = cr->location; i < p; i++)
			if (aggsql[i] != '\n')
				aggsql[i] = ' ';
	}
	aggtext = pnstrdup(aggsql + fc->location, end - fc->location);

	/*
	 * Check that it is an aggregate call, in a statement where it sits at the
	 * same (character) position as in the user's text, so errors point there:
	 * blank the rest of the user's text, the tail first.
	 */
	{
		int			tail = cxt->prefix + strlen(cxt->text);

		blank(aggsql, end, tail);
		blank(aggsql, cxt->prefix, fc->location);
	}
	raw = pg_parse_query(aggsql);
	q = parse_analyze_fixedparams(linitial_node(RawStmt, raw), aggsql, NULL, 0, NULL);
	if (list_length(q->targetList) != 1 ||
		!IsA(((TargetEntry *) linitial(q->targetList))->expr, Aggref))
		nav_error(cxt, fc->location,
				  psprintf("%s is not FIRST(), LAST() or an aggregate call",
						   pnstrdup(cxt->sql + fc->location, end - fc->location)),
				  "References to matched events are LAST(v.col), FIRST(v.col), v.col or an aggregate such as sum(v.col).");

	/* Analysed now; built into an AggSpec with the rest (build_exprs). */
	ref = palloc0(sizeof(NavRef));
	ref->kind = NAV_AGG;
	ref->var = var;
	ref->agg_query = agg_analyse(cxt->row_type, aggtext);
	make_param(cxt, (Node *) fc, fc->location, ref,
			   exprType((Node *) linitial_node(TargetEntry, ref->agg_query->targetList)->expr),
			   -1);
}

/* Is some function of this name an aggregate? (Others take plain values.) */
static bool
is_aggregate_name(List *funcname)
{
	FuncCandidateList c = FuncnameGetCandidates(funcname, -1, NIL, false, false, false, true);

	for (; c != NULL; c = c->next)
		if (get_func_prokind(c->oid) == PROKIND_AGGREGATE)
			return true;
	return false;
}

static bool
nav_walker(Node *node, NavContext *cxt)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncCall))
	{
		FuncCall   *fc = (FuncCall *) node;
		char	   *fname = strVal(llast(fc->funcname));
		List	   *colrefs = NIL;
		List	   *varrefs = NIL;
		ListCell   *lc;
		int			var = -1;

		collect_var_refs((Node *) fc->args, &colrefs);
		collect_var_refs((Node *) fc->agg_order, &colrefs);
		collect_var_refs(fc->agg_filter, &colrefs);
		foreach(lc, colrefs)
		{
			int			v = columnref_var(cxt, (ColumnRef *) lfirst(lc));

			if (v >= 0)
			{
				varrefs = lappend(varrefs, lfirst(lc));
				if (var < 0)
					var = v;
			}
		}
		if (list_length(fc->funcname) == 1 &&
			(strcmp(fname, "first") == 0 || strcmp(fname, "last") == 0) &&
			list_length(fc->args) >= 1 && IsA(linitial(fc->args), ColumnRef) &&
			columnref_var(cxt, linitial(fc->args)) >= 0)
		{
			ColumnRef  *cr = linitial(fc->args);
			NavRef	   *ref = palloc0(sizeof(NavRef));
			Form_pg_attribute att;

			ref->kind = fname[0] == 'f' ? NAV_FIRST : NAV_LAST;
			ref->var = columnref_var(cxt, cr);
			ref->attno = column_attno(cxt, cr);
			if (list_length(fc->args) > 2)
				nav_error(cxt, fc->location, "FIRST() and LAST() take a column and an optional offset", NULL);
			if (list_length(fc->args) == 2)
			{
				Node	   *n = lsecond(fc->args);

				if (!IsA(n, A_Const) || !IsA(&((A_Const *) n)->val, Integer) ||
					intVal(&((A_Const *) n)->val) < 0)
					nav_error(cxt, exprLocation(n), "the offset of FIRST() and LAST() must be a non-negative integer constant", NULL);
				ref->offset = intVal(&((A_Const *) n)->val);
			}
			att = TupleDescAttr(cxt->desc, ref->attno);
			make_param(cxt, node, fc->location, ref, att->atttypid, att->atttypmod);
			return false;
		}
		if (fc->over == NULL && is_aggregate_name(fc->funcname))
		{
			if (var < 0)
				nav_error(cxt, fc->location,
						  "an aggregate in a pattern must refer to the events of a variable",
						  "For example: sum(small.amount), count(small.*).");
			nav_aggregate(cxt, fc, varrefs, var);
			return false;
		}
	}
	else if (IsA(node, ColumnRef))
	{
		ColumnRef  *cr = (ColumnRef *) node;
		int			var = columnref_var(cxt, cr);

		if (var < 0 && list_length(cr->fields) == 2 && IsA(linitial(cr->fields), String) &&
			strcmp(strVal(linitial(cr->fields)), "e") != 0)
			nav_error(cxt, cr->location,
					  psprintf("\"%s\" is not a variable of the pattern", strVal(linitial(cr->fields))),
					  psprintf("Variables of the pattern: %s.", pattern_var_list(cxt->pat)));
		if (var < 0)
			return false;
		if (IsA(lsecond(cr->fields), A_Star))
			nav_error(cxt, cr->location, "v.* is allowed in count(v.*) only", NULL);
		if (var == cxt->current_var)
		{
			/* the event being tested */
			cr->fields = list_delete_first(cr->fields);
			return false;
		}
		else
		{
			NavRef	   *ref = palloc0(sizeof(NavRef));
			Form_pg_attribute att;

			ref->kind = NAV_LAST;
			ref->var = var;
			ref->attno = column_attno(cxt, cr);
			att = TupleDescAttr(cxt->desc, ref->attno);
			make_param(cxt, node, cr->location, ref, att->atttypid, att->atttypmod);
			return false;
		}
	}
	return raw_expression_tree_walker(node, nav_walker, cxt);
}

/*
 * Analysed expressions, as the catalog keeps them (nodeToString): a List
 * (names: List of String, query: the analysed SELECT whose target list
 * holds the expressions, refs: List of NavRef as List (kind, var, attno,
 * offset, expr, parameter type, NAV_AGG's analysed aggregate or NULL)).
 * Integer nodes hold OIDs as their int bit pattern.
 */
#define EXPRS_NAMES 0
#define EXPRS_QUERY 1
#define EXPRS_REFS 2

/* analyse_exprs' work on the raw statement (a FragmentRawHook). */
typedef struct ExprsWalk
{
	NavContext	cxt;
	int			nitems;
	int		   *vars;			/* item i's current variable, -1: none */
	bool		conditions;
	List	   *names;			/* out: String per item */
	List	   *refs;			/* out: as EXPRS_REFS */
} ExprsWalk;

/*
 * Check the items, collect their names and turn their references to matched
 * events into parameters: their types.
 */
static Oid *
walk_exprs(void *arg, SelectStmt *sel, int *nparams)
{
	ExprsWalk  *ew = (ExprsWalk *) arg;
	NavContext *cxt = &ew->cxt;
	Oid		   *ptypes;
	ListCell   *lc;
	int			i;

	if (list_length(sel->targetList) != ew->nitems)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("invalid %s: %s", cxt->what, cxt->text)));

	i = 0;
	foreach(lc, sel->targetList)
	{
		ResTarget  *rt = lfirst_node(ResTarget, lc);

		cxt->current_var = ew->vars[i];
		cxt->expr = i;
		if (!ew->conditions)
		{
			if (rt->name == NULL)
				nav_error(cxt, rt->location, "a measure needs a name",
						  "Write measures as expression AS name, for example count(small.*) AS n.");
			ew->names = lappend(ew->names, makeString(pstrdup(rt->name)));
		}
		else
			ew->names = lappend(ew->names, makeString(pstrdup(cxt->pat->vars[ew->vars[i]])));
		nav_walker(rt->val, cxt);
		i++;
	}

	ptypes = palloc(sizeof(Oid) * Max(list_length(cxt->refs), 1));
	i = 0;
	foreach(lc, cxt->refs)
	{
		NavRef	   *ref = (NavRef *) lfirst(lc);

		List	   *r;

		ptypes[i] = list_nth_oid(cxt->types, i);
		r = list_make5(makeInteger(ref->kind), makeInteger(ref->var),
					   makeInteger(ref->attno), makeInteger(ref->offset),
					   makeInteger(ref->expr));
		r = lappend(r, makeInteger((int) ptypes[i]));
		r = lappend(r, ref->agg_query);
		ew->refs = lappend(ew->refs, r);
		i++;
	}
	*nparams = list_length(cxt->refs);
	return ptypes;
}

/*
 * Analyse the items of fragment f (its text blanked where it is no SQL),
 * with item i's current variable vars[i] (-1: none).
 */
static List *
analyse_exprs(Pattern *pat, Oid row_type, Fragment *f, int nitems, int *vars,
			  bool conditions)
{
	ExprsWalk	ew;
	NavContext *cxt = &ew.cxt;
	Query	   *q;
	const char *what = f->what;
	char	   *sql = f->sql;
	List	   *names;
	ListCell   *lc;
	int			i;

	fragment_enter(f);

	memset(&ew, 0, sizeof(ew));
	cxt->pat = pat;
	cxt->row_type = row_type;
	cxt->desc = lookup_rowtype_tupdesc_copy(row_type, -1);
	cxt->sql = f->sql;
	cxt->prefix = f->offset;
	cxt->text = f->text;
	cxt->what = f->what;
	ew.nitems = nitems;
	ew.vars = vars;
	ew.conditions = conditions;

	q = fragment_analyse(f, walk_exprs, &ew);
	names = ew.names;
	if (q->hasAggs)
		ereport(ERROR,
				(errcode(ERRCODE_GROUPING_ERROR),
				 errmsg("an aggregate in a pattern must refer to the events of a variable"),
				 errhint("For example: sum(small.amount), count(small.*).")));
	if (q->hasWindowFuncs || q->hasSubLinks || q->hasTargetSRFs)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("subqueries, window functions and set-returning functions are not allowed in a pattern's %s", what)));

	i = 0;
	foreach(lc, q->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		Oid			type = exprType((Node *) tle->expr);

		if (conditions && type != BOOLOID)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("the condition of variable \"%s\" must be of type boolean, not %s",
							strVal(list_nth(names, i)), format_type_be(type)),
					 errhint("A condition is a SQL boolean expression over the event's columns, such as amount < 100."),
					 errposition(pg_mbstrlen_with_len(sql, Max(exprLocation((Node *) tle->expr), 0)) + 1)));
		i++;
	}

	fragment_leave(f);
	return list_make3(names, q, ew.refs);
}

/*
 * The runtime of analysed expressions: planned and ready for the executor's
 * expression machinery.  Plans as the role they will run as (planning may
 * evaluate immutable functions).
 */
static PatternExprs *
build_exprs(List *tree)
{
	PatternExprs *pe = palloc0(sizeof(PatternExprs));
	List	   *names = (List *) list_nth(tree, EXPRS_NAMES);
	Query	   *q = list_nth_node(Query, tree, EXPRS_QUERY);
	List	   *refs = (List *) list_nth(tree, EXPRS_REFS);
	int			nitems = list_length(q->targetList);
	ListCell   *lc;
	int			i;

	if (list_length(names) != nitems)
		elog(ERROR, "stored pattern expressions are inconsistent");
	pe->agg_cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink pattern aggregates",
										ALLOCSET_SMALL_SIZES);
	pe->nexprs = nitems;
	pe->names = palloc0(sizeof(char *) * Max(nitems, 1));
	pe->exprs = palloc0(sizeof(ExprState *) * Max(nitems, 1));
	pe->types = palloc0(sizeof(Oid) * Max(nitems, 1));
	pe->typmods = palloc0(sizeof(int32) * Max(nitems, 1));
	pe->has_refs = palloc0(sizeof(bool) * Max(nitems, 1));
	i = 0;
	foreach(lc, q->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		Expr	   *expr = tle->expr;

		pe->names[i] = pstrdup(strVal(list_nth(names, i)));
		pe->types[i] = exprType((Node *) expr);
		pe->typmods[i] = exprTypmod((Node *) expr);
		if (pe->types[i] == UNKNOWNOID)
			pe->types[i] = TEXTOID;
		pe->exprs[i] = ExecInitExpr(expression_planner(expr), NULL);
		i++;
	}

	pe->nrefs = list_length(refs);
	pe->refs = palloc0(sizeof(NavRef) * Max(pe->nrefs, 1));
	pe->params = makeParamList(pe->nrefs);
	i = 0;
	foreach(lc, refs)
	{
		List	   *r = (List *) lfirst(lc);
		NavRef	   *ref = &pe->refs[i];

		ref->kind = (NavKind) intVal(list_nth(r, 0));
		ref->var = intVal(list_nth(r, 1));
		ref->attno = intVal(list_nth(r, 2));
		ref->offset = intVal(list_nth(r, 3));
		ref->expr = intVal(list_nth(r, 4));
		if (ref->expr < 0 || ref->expr >= nitems)
			elog(ERROR, "stored pattern expressions are inconsistent");
		pe->has_refs[ref->expr] = true;
		if (ref->kind == NAV_AGG)
		{
			/* The spec lives with the pattern; its states in agg_cxt, reset often. */
			ref->agg_query = list_nth_node(Query, r, 6);
			ref->agg = agg_spec_build(ref->agg_query, pe->agg_cxt);
		}
		pe->params->params[i].ptype = (Oid) intVal(list_nth(r, 5));
		pe->params->params[i].pflags = PARAM_FLAG_CONST;
		pe->params->params[i].isnull = true;
		i++;
	}
	return pe;
}

static bool
is_as_keyword(const char *s, int p)
{
	return (s[p] == 'a' || s[p] == 'A') && (s[p + 1] == 's' || s[p + 1] == 'S') &&
		!is_ident_char(s[p + 2]);
}

/*
 * Analyse define and measures against a parsed pattern: the tree the
 * catalog keeps, List (conditions or NIL, measures or NIL, cond_of_var:
 * List of Integer), each of the first two as analyse_exprs makes them.
 */
static List *
analyse_pattern(Pattern *pat, Oid row_type, const char *define, const char *measures)
{
	List	   *conds = NIL;
	List	   *meas = NIL;
	List	   *cond_list = NIL;
	int		   *cond_of_var;
	Fragment	f;
	int		   *vars;
	int			nitems = 0;
	int			p;

	cond_of_var = palloc(sizeof(int) * pat->nvars);
	for (int i = 0; i < pat->nvars; i++)
		cond_of_var[i] = -1;

	/*
	 * DEFINE: "v AS cond, ...".  Blank "v AS" of each item, so that the rest
	 * is a SELECT list whose positions are those of the user's text.
	 */
	if (define == NULL)
		define = "";
	fragment_wrap(&f, "define", define, NULL, row_type);
	vars = palloc(sizeof(int) * (strlen(define) + 1));
	p = 0;
	while (skip_space(define, p) < (int) strlen(define))
	{
		int			start = skip_space(define, p);
		int			end = sql_item_end(define, start, false);
		int			q = start;
		char	   *name;
		int			var;

		if (define[q] == '"')
		{
			int			s = ++q;

			while (define[q] && define[q] != '"')
				q++;
			name = pnstrdup(define + s, q - s);
			if (define[q])
				q++;
		}
		else if (is_ident_start(define[q]))
		{
			int			s = q;

			while (is_ident_char(define[q]))
				q++;
			name = downcase_truncate_identifier(define + s, q - s, false);
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("a variable name was expected in define"),
					 errhint("Write conditions as var AS condition, separated by commas: small AS amount < 100, large AS amount > 5000."),
					 internalerrquery(define),
					 internalerrposition(pg_mbstrlen_with_len(define, q) + 1)));
		var = find_var(pat, name);
		if (var < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("variable \"%s\" in define does not appear in the pattern", name),
					 errhint("Variables of the pattern: %s.", pattern_var_list(pat)),
					 internalerrquery(define),
					 internalerrposition(pg_mbstrlen_with_len(define, start) + 1)));
		if (cond_of_var[var] >= 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("variable \"%s\" is defined twice", name),
					 internalerrquery(define),
					 internalerrposition(pg_mbstrlen_with_len(define, start) + 1)));
		q = skip_space(define, q);
		if (!is_as_keyword(define, q))
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("AS was expected after variable \"%s\" in define", name),
					 errhint("Write conditions as var AS condition, separated by commas: small AS amount < 100, large AS amount > 5000."),
					 internalerrquery(define),
					 internalerrposition(pg_mbstrlen_with_len(define, q) + 1)));
		q += 2;
		if (skip_space(define, q) >= end)
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("variable \"%s\" has an empty condition in define", name),
					 internalerrquery(define),
					 internalerrposition(pg_mbstrlen_with_len(define, q) + 1)));
		cond_of_var[var] = nitems;
		vars[nitems++] = var;
		/* blank "name AS" in the SQL (same characters, same positions) */
		{
			int			cstart = pg_mbstrlen_with_len(define, start);
			int			cend = pg_mbstrlen_with_len(define, q);
			char	   *b = f.sql + f.offset;
			int			bstart,
						bend;

			/* back to byte offsets in sql, whose earlier items may be blanked */
			bstart = 0;
			for (int c = 0; c < cstart; c++)
				bstart += pg_mblen(b + bstart);
			bend = bstart;
			for (int c = cstart; c < cend; c++)
				bend += pg_mblen(b + bend);
			blank(b, bstart, bend);
		}
		p = end;
		if (define[p] == ',')
		{
			p++;
			if (skip_space(define, p) >= (int) strlen(define))
				ereport(ERROR,
						(errcode(ERRCODE_SYNTAX_ERROR),
						 errmsg("define ends with a comma"),
						 internalerrquery(define),
						 internalerrposition(pg_mbstrlen_with_len(define, p))));
		}
	}
	if (nitems > 0)
		conds = analyse_exprs(pat, row_type, &f, nitems, vars, true);

	if (measures != NULL && skip_space(measures, 0) < (int) strlen(measures))
	{
		int			n = 0;

		p = 0;
		for (;;)
		{
			p = sql_item_end(measures, p, false);
			n++;
			if (measures[p] != ',')
				break;
			p++;
		}
		vars = palloc(sizeof(int) * n);
		for (int i = 0; i < n; i++)
			vars[i] = -1;
		fragment_wrap(&f, "measures", measures, NULL, row_type);
		meas = analyse_exprs(pat, row_type, &f, n, vars, false);
	}
	for (int i = 0; i < pat->nelems; i++)
	{
		int			u = pat->elems[i].until;

		if (u >= 0 && cond_of_var[u] < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("the until condition \"%s\" is not in define", pat->vars[u]),
					 errhint("Add %s AS condition to define.", pat->vars[u])));
		if (pat->elems[i].guntil >= 0 && cond_of_var[pat->elems[i].guntil] < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("the until condition \"%s\" is not in define", pat->vars[pat->elems[i].guntil]),
					 errhint("Add %s AS condition to define.", pat->vars[pat->elems[i].guntil])));
	}
	for (int i = 0; i < pat->nvars; i++)
		cond_list = lappend(cond_list, makeInteger(cond_of_var[i]));
	return list_make3(conds, meas, cond_list);
}

/* The runtime of a parsed pattern and its analysed tree. */
static CompiledPattern *
build_pattern(Pattern *pat, List *tree)
{
	CompiledPattern *cp = palloc0(sizeof(CompiledPattern));
	List	   *conds = (List *) linitial(tree);
	List	   *meas = (List *) lsecond(tree);
	List	   *cond_list = (List *) lthird(tree);
	int			i = 0;
	ListCell   *lc;

	if (list_length(cond_list) != pat->nvars)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the stored analysis of the pattern does not match its variables")));
	cp->pattern = pat;
	cp->cond_of_var = palloc(sizeof(int) * Max(pat->nvars, 1));
	foreach(lc, cond_list)
		cp->cond_of_var[i++] = intVal(lfirst(lc));
	if (conds != NIL)
		cp->conds = build_exprs(conds);
	for (i = 0; i < pat->nvars; i++)
		if (cp->cond_of_var[i] >= (cp->conds ? cp->conds->nexprs : 0))
			elog(ERROR, "stored pattern conditions are inconsistent");
	if (meas != NIL)
		cp->measures = build_exprs(meas);
	return cp;
}

CompiledPattern *
pattern_compile(Oid row_type, const char *pattern, const char *define,
				const char *measures, const char *skip, bool has_within)
{
	Pattern    *pat = pattern_parse(pattern, skip, has_within);

	return build_pattern(pat, analyse_pattern(pat, row_type, define, measures));
}

Node *
pattern_analyse(Oid row_type, const char *pattern, const char *define,
				const char *measures, const char *skip, bool has_within)
{
	Pattern    *pat = pattern_parse(pattern, skip, has_within);

	return (Node *) analyse_pattern(pat, row_type, define, measures);
}

List *
pattern_tree_queries(Node *tree)
{
	List	   *queries = NIL;

	for (int i = 0; i < 2; i++)
	{
		List	   *exprs = (List *) list_nth((List *) tree, i);
		ListCell   *lc;

		if (exprs == NIL)
			continue;
		queries = lappend(queries, list_nth_node(Query, exprs, EXPRS_QUERY));
		foreach(lc, (List *) list_nth(exprs, EXPRS_REFS))
		{
			Node	   *agg = list_nth((List *) lfirst(lc), 6);

			if (agg != NULL)
				queries = lappend(queries, castNode(Query, agg));
		}
	}
	return queries;
}

CompiledPattern *
pattern_load(const char *tree, const char *pattern, const char *skip, bool has_within)
{
	Node	   *node;

	if (tree == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the pipeline has no analysed pattern definition"),
				 errhint("Drop the pipeline and create it again.")));
	node = stringToNode(tree);
	if (!IsA(node, List) || list_length((List *) node) != 3)
		elog(ERROR, "stored pattern definition is not a pattern tree");
	return build_pattern(pattern_parse(pattern, skip, has_within), (List *) node);
}

/* --- SQL-callable check --------------------------------------------------- */

PG_FUNCTION_INFO_V1(streamflink_check_pattern);

/*
 * streamflink._check_pattern(row_type, pattern, define, measures, skip,
 * has_within): compiles everything at pipeline creation, so that a bad
 * pattern fails there, and returns the measures as "name type" column
 * definitions.
 */
Datum
streamflink_check_pattern(PG_FUNCTION_ARGS)
{
	Oid			row_type;
	char	   *pattern;
	char	   *define = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *measures = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	char	   *skip = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	bool		has_within = !PG_ARGISNULL(5) && PG_GETARG_BOOL(5);
	CompiledPattern *cp;
	Datum	   *cols;
	int			n;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a pattern pipeline needs a pattern"),
				 errhint("For example: pattern => 'login -> purchase'.")));
	row_type = PG_GETARG_OID(0);
	pattern = text_to_cstring(PG_GETARG_TEXT_PP(1));
	cp = pattern_compile(row_type, pattern, define, measures, skip, has_within);
	n = cp->measures ? cp->measures->nexprs : 0;
	cols = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
		cols[i] = CStringGetTextDatum(psprintf("%s %s",
											   quote_identifier(cp->measures->names[i]),
											   format_type_with_typemod(cp->measures->types[i],
																		cp->measures->typmods[i])));
	PG_RETURN_ARRAYTYPE_P(construct_array(cols, n, TEXTOID, -1, false, TYPALIGN_INT));
}
