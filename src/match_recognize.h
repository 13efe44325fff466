/*-------------------------------------------------------------------------
 *
 * match_recognize.h
 *	  MATCH_RECOGNIZE (Flink SQL's row pattern recognition) as a pattern
 *	  pipeline.
 *
 * Postgres' parser does not know the clause, so a parser of our own splits
 *
 *	 SELECT * FROM source MATCH_RECOGNIZE (
 *	   PARTITION BY col, ...  ORDER BY event_time_column
 *	   MEASURES expr AS name, ...  ONE ROW PER MATCH
 *	   AFTER MATCH SKIP {PAST LAST ROW | TO NEXT ROW | TO FIRST v | TO LAST v}
 *	   PATTERN (v1 v2+ v3{2,} ...) [WITHIN INTERVAL '1' HOUR]
 *	   DEFINE v AS condition, ...) [AS alias]
 *
 * into the parts create_pattern_pipeline takes (pattern.h): the key, the
 * pattern in our syntax (concatenation is strict, as in SQL; quantifiers
 * are greedy unless followed by ?, as in Flink's MATCH_RECOGNIZE), DEFINE
 * and MEASURES as written (their LAST/FIRST/v.col references and
 * aggregates over variables are pattern.c's), the skip strategy and
 * within.  Those parts are then checked and analysed by the pattern
 * pipeline's own code, as the owner.
 *
 * Memory: results in CurrentMemoryContext.  Threads: none.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_MATCH_RECOGNIZE_H
#define STREAMFLINK_MATCH_RECOGNIZE_H

typedef struct MatchRecognize
{
	char	   *source;
	char	   *key;			/* comma-separated columns, "" for none */
	char	   *order_by;		/* the ORDER BY column */
	char	   *pattern;		/* in pattern.c's syntax */
	char	   *define;
	char	   *measures;		/* NULL: none */
	char	   *skip;			/* create_pattern_pipeline's skip argument */
	char	   *within;			/* interval text, NULL: none */
} MatchRecognize;

/*
 * The parts of a query with MATCH_RECOGNIZE, or NULL if it has none.
 * ereports a syntax error (with its position) for a malformed clause and
 * refuses what a pattern pipeline cannot run (ALL ROWS PER MATCH, SUBSET,
 * alternation, groups, a projection other than *).
 */
extern MatchRecognize *mr_parse(const char *sql);

#endif							/* STREAMFLINK_MATCH_RECOGNIZE_H */
