/*-------------------------------------------------------------------------
 *
 * match_recognize.c
 *	  MATCH_RECOGNIZE as a pattern pipeline (see match_recognize.h).
 *
 * A small tokenizer (identifiers, quoted identifiers, strings, dollar
 * quotes, numbers, comments, punctuation) finds the clauses at the top
 * level of the MATCH_RECOGNIZE parentheses; DEFINE and MEASURES are passed
 * on as written, so pattern.c parses and analyses them with Postgres'
 * parser, as for create_pattern_pipeline.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "parser/scansup.h"
#include "utils/builtins.h"

#include "match_recognize.h"

PG_FUNCTION_INFO_V1(streamflink_match_recognize);

typedef enum TokKind
{
	TK_END,
	TK_IDENT,					/* word: lower case */
	TK_QIDENT,					/* word: as quoted */
	TK_STRING,					/* word: the string's value */
	TK_NUMBER,
	TK_PUNCT
} TokKind;

typedef struct Tok
{
	TokKind		kind;
	int			start;			/* byte offsets in the query */
	int			end;
	char	   *word;
	char		c;				/* TK_PUNCT */
} Tok;

typedef struct MrParser
{
	const char *sql;
	Tok		   *toks;
	int			ntoks;
	int			pos;
} MrParser;

static void mr_error(MrParser *p, int offset, const char *msg, const char *hint) pg_attribute_noreturn();

static void
mr_error(MrParser *p, int offset, const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_SYNTAX_ERROR),
			 errmsg("%s", msg),
			 hint ? errhint("%s", hint) : 0,
			 internalerrquery(p->sql),
			 internalerrposition(pg_mbstrlen_with_len(p->sql, offset) + 1),
			 errcontext("in MATCH_RECOGNIZE")));
}

static void mr_refuse(MrParser *p, int offset, const char *what, const char *hint) pg_attribute_noreturn();

static void
mr_refuse(MrParser *p, int offset, const char *what, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("a pipeline cannot run %s", what),
			 errhint("%s", hint),
			 internalerrquery(p->sql),
			 internalerrposition(pg_mbstrlen_with_len(p->sql, offset) + 1),
			 errcontext("in MATCH_RECOGNIZE")));
}

static bool
ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || IS_HIGHBIT_SET(c);
}

static bool
ident_char(char c)
{
	return ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

static void
tokenize(MrParser *p)
{
	const char *s = p->sql;
	int			n = strlen(s);
	int			i = 0;
	int			cap = 64;

	p->toks = palloc(sizeof(Tok) * cap);
	p->ntoks = 0;
	for (;;)
	{
		Tok			t;

		while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f'))
			i++;
		if (i + 1 < n && s[i] == '-' && s[i + 1] == '-')
		{
			while (i < n && s[i] != '\n')
				i++;
			continue;
		}
		if (i + 1 < n && s[i] == '/' && s[i + 1] == '*')
		{
			int			depth = 0;

			do
			{
				if (i + 1 < n && s[i] == '/' && s[i + 1] == '*')
					depth++, i += 2;
				else if (i + 1 < n && s[i] == '*' && s[i + 1] == '/')
					depth--, i += 2;
				else
					i++;
			} while (i < n && depth > 0);
			continue;
		}
		memset(&t, 0, sizeof(t));
		t.start = i;
		if (i >= n)
			t.kind = TK_END;
		else if (s[i] == '\'' || ((s[i] == 'E' || s[i] == 'e') && i + 1 < n && s[i + 1] == '\''))
		{
			StringInfoData buf;
			bool		escapes = s[i] != '\'';

			initStringInfo(&buf);
			i += escapes ? 2 : 1;
			for (;;)
			{
				if (i >= n)
					mr_error(p, t.start, "unterminated quoted string", NULL);
				if (s[i] == '\'' && i + 1 < n && s[i + 1] == '\'')
					appendStringInfoChar(&buf, '\''), i += 2;
				else if (s[i] == '\'')
				{
					i++;
					break;
				}
				else if (escapes && s[i] == '\\' && i + 1 < n)
					appendStringInfoChar(&buf, s[i + 1]), i += 2;
				else
					appendStringInfoChar(&buf, s[i++]);
			}
			t.kind = TK_STRING;
			t.word = buf.data;
		}
		else if (s[i] == '"')
		{
			StringInfoData buf;

			initStringInfo(&buf);
			i++;
			for (;;)
			{
				if (i >= n)
					mr_error(p, t.start, "unterminated quoted identifier", NULL);
				if (s[i] == '"' && i + 1 < n && s[i + 1] == '"')
					appendStringInfoChar(&buf, '"'), i += 2;
				else if (s[i] == '"')
				{
					i++;
					break;
				}
				else
					appendStringInfoChar(&buf, s[i++]);
			}
			t.kind = TK_QIDENT;
			t.word = buf.data;
		}
		else if (s[i] == '$' && i + 1 < n && (s[i + 1] == '$' || ident_start(s[i + 1])))
		{
			/* $tag$ ... $tag$ */
			int			j = i + 1;
			char	   *tag;
			const char *close;

			while (j < n && s[j] != '$' && ident_char(s[j]))
				j++;
			if (j >= n || s[j] != '$')
				mr_error(p, i, "syntax error at \"$\"", NULL);
			tag = pnstrdup(s + i, j - i + 1);
			close = strstr(s + j + 1, tag);
			if (close == NULL)
				mr_error(p, i, "unterminated dollar-quoted string", NULL);
			t.kind = TK_STRING;
			t.word = pnstrdup(s + j + 1, close - (s + j + 1));
			i = (close - s) + strlen(tag);
		}
		else if (ident_start(s[i]))
		{
			while (i < n && ident_char(s[i]))
				i++;
			t.kind = TK_IDENT;
			t.word = downcase_identifier(s + t.start, i - t.start, false, false);
		}
		else if (s[i] >= '0' && s[i] <= '9')
		{
			while (i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
				i++;
			t.kind = TK_NUMBER;
			t.word = pnstrdup(s + t.start, i - t.start);
		}
		else
		{
			t.kind = TK_PUNCT;
			t.c = s[i++];
		}
		t.end = i;
		if (p->ntoks == cap)
		{
			cap *= 2;
			p->toks = repalloc(p->toks, sizeof(Tok) * cap);
		}
		p->toks[p->ntoks++] = t;
		if (t.kind == TK_END)
			break;
	}
}

static Tok *
peek(MrParser *p, int ahead)
{
	int			i = Min(p->pos + ahead, p->ntoks - 1);

	return &p->toks[i];
}

static bool
is_word(Tok *t, const char *w)
{
	return t->kind == TK_IDENT && strcmp(t->word, w) == 0;
}

static bool
is_punct(Tok *t, char c)
{
	return t->kind == TK_PUNCT && t->c == c;
}

static void
expect_word(MrParser *p, const char *w, const char *hint)
{
	if (!is_word(peek(p, 0), w))
		mr_error(p, peek(p, 0)->start, psprintf("syntax error: expected %s", w), hint);
	p->pos++;
}

static char *
name_token(MrParser *p, const char *what)
{
	Tok		   *t = peek(p, 0);

	if (t->kind != TK_IDENT && t->kind != TK_QIDENT)
		mr_error(p, t->start, psprintf("syntax error: expected %s", what), NULL);
	p->pos++;
	return t->word;
}

/* Is token i the start of a clause of the MATCH_RECOGNIZE body? */
static bool
clause_start(MrParser *p, int i)
{
	Tok		   *t = &p->toks[i];
	Tok		   *next = &p->toks[Min(i + 1, p->ntoks - 1)];

	if (t->kind != TK_IDENT)
		return false;
	return ((strcmp(t->word, "partition") == 0 || strcmp(t->word, "order") == 0) && is_word(next, "by")) ||
		strcmp(t->word, "measures") == 0 || strcmp(t->word, "define") == 0 ||
		strcmp(t->word, "pattern") == 0 || strcmp(t->word, "within") == 0 ||
		strcmp(t->word, "subset") == 0 ||
		(strcmp(t->word, "one") == 0 && is_word(next, "row")) ||
		(strcmp(t->word, "all") == 0 && is_word(next, "rows")) ||
		(strcmp(t->word, "after") == 0 && is_word(next, "match"));
}

/* From token p->pos to the next clause at depth 0 (or 'end'): its text. */
static char *
clause_text(MrParser *p, int end)
{
	int			depth = 0;
	int			first = p->pos;

	while (p->pos < end)
	{
		Tok		   *t = &p->toks[p->pos];

		if (depth == 0 && p->pos > first && clause_start(p, p->pos))
			break;
		if (is_punct(t, '('))
			depth++;
		else if (is_punct(t, ')'))
			depth--;
		p->pos++;
	}
	if (p->pos == first)
		mr_error(p, p->toks[first].start, "syntax error: a clause of MATCH_RECOGNIZE is empty", NULL);
	return pnstrdup(p->sql + p->toks[first].start,
					p->toks[p->pos - 1].end - p->toks[first].start);
}

/*
 * PATTERN (...) in pattern.c's syntax: variables in sequence are strict
 * (as in SQL); a quantifier is greedy (a trailing +) unless followed by ?.
 */
static char *
translate_pattern(MrParser *p, int close)
{
	StringInfoData out;
	static const char *const hint =
		"A pattern is a sequence of variables with quantifiers: PATTERN (a b+ c{2,} d?).";

	initStringInfo(&out);
	while (p->pos < close)
	{
		Tok		   *t = peek(p, 0);
		bool		quantified = false;
		bool		exact = false;

		if (t->kind != TK_IDENT && t->kind != TK_QIDENT)
		{
			if (is_punct(t, '(') || is_punct(t, '|') || is_punct(t, '^') || is_punct(t, '$'))
				mr_refuse(p, t->start, "groups, alternation or anchors in PATTERN",
						  "Write the pattern as a sequence of quantified variables.");
			mr_error(p, t->start, "syntax error in PATTERN", hint);
		}
		appendStringInfo(&out, "%s%.*s", out.len ? " " : "", t->end - t->start, p->sql + t->start);
		p->pos++;
		t = peek(p, 0);
		if (p->pos < close && (is_punct(t, '*') || is_punct(t, '+') || is_punct(t, '?')))
		{
			appendStringInfoChar(&out, t->c);
			quantified = true;
			p->pos++;
		}
		else if (p->pos < close && is_punct(t, '{'))
		{
			int			start = t->start;
			bool		comma = false;

			p->pos++;
			if (is_punct(peek(p, 0), ','))
				appendStringInfoString(&out, "{0");
			else
				appendStringInfoChar(&out, '{');
			while (p->pos < close && !is_punct(peek(p, 0), '}'))
			{
				t = peek(p, 0);
				if (t->kind == TK_NUMBER)
					appendStringInfoString(&out, t->word);
				else if (is_punct(t, ',') && !comma)
				{
					appendStringInfoChar(&out, ',');
					comma = true;
				}
				else
					mr_error(p, t->start, "syntax error in a quantifier", hint);
				p->pos++;
			}
			if (p->pos >= close)
				mr_error(p, start, "unterminated quantifier", hint);
			appendStringInfoChar(&out, '}');
			p->pos++;
			quantified = true;
			exact = !comma;
		}
		t = peek(p, 0);
		if (quantified && p->pos < close && is_punct(t, '?'))
			p->pos++;			/* reluctant: our default */
		else if (quantified && !exact)
			appendStringInfoChar(&out, '+');	/* greedy */
	}
	if (out.len == 0)
		mr_error(p, peek(p, 0)->start, "PATTERN is empty", hint);
	return out.data;
}

/* The index of the ')' matching the '(' at token i. */
static int
matching_paren(MrParser *p, int i)
{
	int			depth = 0;

	for (; i < p->ntoks; i++)
	{
		if (is_punct(&p->toks[i], '('))
			depth++;
		else if (is_punct(&p->toks[i], ')') && --depth == 0)
			return i;
	}
	mr_error(p, strlen(p->sql), "syntax error: missing \")\"", NULL);
}

MatchRecognize *
mr_parse(const char *sql)
{
	MrParser	p = {sql, NULL, 0, 0};
	MatchRecognize *mr;
	bool		found = false;
	int			close;
	bool		one_row = false;

	tokenize(&p);
	for (int i = 0; i < p.ntoks; i++)
		found |= is_word(&p.toks[i], "match_recognize");
	if (!found)
		return NULL;

	mr = palloc0(sizeof(MatchRecognize));
	mr->key = "";
	mr->skip = "skip_past_last_event";	/* SQL's default */
	expect_word(&p, "select", NULL);
	if (!is_punct(peek(&p, 0), '*'))
		mr_refuse(&p, peek(&p, 0)->start, "a select list other than * with MATCH_RECOGNIZE",
				  "Write SELECT * FROM source MATCH_RECOGNIZE (...): the sink has the key, match_start, match_end, events and the measures.");
	p.pos++;
	expect_word(&p, "from", NULL);
	mr->source = name_token(&p, "a source name");
	expect_word(&p, "match_recognize", "Write SELECT * FROM source MATCH_RECOGNIZE (...).");
	if (!is_punct(peek(&p, 0), '('))
		mr_error(&p, peek(&p, 0)->start, "syntax error: expected \"(\"", NULL);
	close = matching_paren(&p, p.pos);
	p.pos++;

	while (p.pos < close)
	{
		Tok		   *t = peek(&p, 0);

		if (!clause_start(&p, p.pos))
			mr_error(&p, t->start, "syntax error in MATCH_RECOGNIZE",
					 "Its clauses are PARTITION BY, ORDER BY, MEASURES, ONE ROW PER MATCH, AFTER MATCH SKIP, PATTERN, WITHIN and DEFINE.");
		if (is_word(t, "partition"))
		{
			StringInfoData key;

			p.pos += 2;
			initStringInfo(&key);
			for (;;)
			{
				char	   *col = name_token(&p, "a column");

				appendStringInfo(&key, "%s%s", key.len ? ", " : "", col);
				if (!is_punct(peek(&p, 0), ','))
					break;
				p.pos++;
			}
			mr->key = key.data;
		}
		else if (is_word(t, "order"))
		{
			p.pos += 2;
			mr->order_by = name_token(&p, "the event time column");
			if (is_word(peek(&p, 0), "asc"))
				p.pos++;
			if (p.pos < close && !clause_start(&p, p.pos))
				mr_refuse(&p, peek(&p, 0)->start, "this ORDER BY",
						  "Patterns match events in event time order: ORDER BY the source's event time column.");
		}
		else if (is_word(t, "measures"))
		{
			p.pos++;
			mr->measures = clause_text(&p, close);
		}
		else if (is_word(t, "define"))
		{
			p.pos++;
			mr->define = clause_text(&p, close);
		}
		else if (is_word(t, "one"))
		{
			p.pos++;
			expect_word(&p, "row", NULL);
			expect_word(&p, "per", NULL);
			expect_word(&p, "match", NULL);
			one_row = true;
		}
		else if (is_word(t, "all"))
			mr_refuse(&p, t->start, "ALL ROWS PER MATCH",
					  "A pattern pipeline writes one row per match, with its events as jsonb in the events column: ONE ROW PER MATCH.");
		else if (is_word(t, "subset"))
			mr_refuse(&p, t->start, "SUBSET",
					  "Write conditions and measures over each variable.");
		else if (is_word(t, "after"))
		{
			p.pos += 2;
			expect_word(&p, "skip", NULL);
			if (is_word(peek(&p, 0), "past"))
			{
				p.pos++;
				expect_word(&p, "last", NULL);
				expect_word(&p, "row", NULL);
				mr->skip = "skip_past_last_event";
			}
			else
			{
				expect_word(&p, "to", "AFTER MATCH SKIP PAST LAST ROW, TO NEXT ROW, TO FIRST v or TO LAST v.");
				if (is_word(peek(&p, 0), "next"))
				{
					p.pos++;
					expect_word(&p, "row", NULL);
					mr->skip = "skip_to_next";
				}
				else if (is_word(peek(&p, 0), "first"))
				{
					p.pos++;
					mr->skip = psprintf("skip_to_first(%s)", name_token(&p, "a variable"));
				}
				else
				{
					if (is_word(peek(&p, 0), "last"))
						p.pos++;
					mr->skip = psprintf("skip_to_last(%s)", name_token(&p, "a variable"));
				}
			}
		}
		else if (is_word(t, "pattern"))
		{
			int			pclose;

			p.pos++;
			if (!is_punct(peek(&p, 0), '('))
				mr_error(&p, peek(&p, 0)->start, "syntax error: expected \"(\" after PATTERN", NULL);
			pclose = matching_paren(&p, p.pos);
			p.pos++;
			mr->pattern = translate_pattern(&p, pclose);
			p.pos = pclose + 1;
		}
		else if (is_word(t, "within"))
		{
			Tok		   *v;

			p.pos++;
			if (is_word(peek(&p, 0), "interval"))
				p.pos++;
			v = peek(&p, 0);
			if (v->kind != TK_STRING)
				mr_error(&p, v->start, "syntax error: expected an interval after WITHIN",
						 "Write WITHIN INTERVAL '1' HOUR or WITHIN INTERVAL '10 minutes'.");
			p.pos++;
			mr->within = v->word;
			if (peek(&p, 0)->kind == TK_IDENT && p.pos < close && !clause_start(&p, p.pos))
			{
				mr->within = psprintf("%s %s", v->word, peek(&p, 0)->word);
				p.pos++;
			}
		}
	}
	p.pos = close + 1;
	/* An alias: after AS, or a last word. */
	if (is_word(peek(&p, 0), "as"))
		p.pos += 2;
	else if ((peek(&p, 0)->kind == TK_IDENT || peek(&p, 0)->kind == TK_QIDENT) &&
			 (peek(&p, 1)->kind == TK_END || is_punct(peek(&p, 1), ';')))
		p.pos++;
	if (is_punct(peek(&p, 0), ';'))
		p.pos++;
	if (peek(&p, 0)->kind != TK_END)
		mr_refuse(&p, peek(&p, 0)->start, "anything after MATCH_RECOGNIZE (...)",
				  "Filter and join the matches when reading the sink table.");
	if (mr->pattern == NULL || mr->define == NULL)
		mr_error(&p, p.toks[0].start, "MATCH_RECOGNIZE needs PATTERN and DEFINE", NULL);
	if (mr->order_by == NULL)
		mr_error(&p, p.toks[0].start, "MATCH_RECOGNIZE needs ORDER BY the event time column", NULL);
	(void) one_row;				/* the default, and the only form */
	return mr;
}

/*
 * streamflink._match_recognize(query): the parts of a MATCH_RECOGNIZE
 * query for create_pattern_pipeline, or NULL.
 */
Datum
streamflink_match_recognize(PG_FUNCTION_ARGS)
{
	TupleDesc	rdesc;
	MatchRecognize *mr;
	Datum		values[8];
	bool		nulls[8] = {0};

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (get_call_result_type(fcinfo, NULL, &rdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	mr = mr_parse(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	if (mr == NULL)
		PG_RETURN_NULL();
	values[0] = CStringGetTextDatum(mr->source);
	values[1] = CStringGetTextDatum(mr->key);
	values[2] = CStringGetTextDatum(mr->order_by);
	values[3] = CStringGetTextDatum(mr->pattern);
	values[4] = CStringGetTextDatum(mr->define);
	nulls[5] = mr->measures == NULL;
	if (mr->measures)
		values[5] = CStringGetTextDatum(mr->measures);
	values[6] = CStringGetTextDatum(mr->skip);
	nulls[7] = mr->within == NULL;
	if (mr->within)
		values[7] = CStringGetTextDatum(mr->within);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(rdesc), values, nulls)));
}
