/* streamflink 0.1 -> 0.2: the runtime seams (checkpoint coordinator with
 * participants, sink interface, one key space and timer service).
 *
 * streamflink--0.1.sql is the released 0.1 and stays as it was: a fresh
 * CREATE EXTENSION runs it and then this script, and ALTER EXTENSION
 * streamflink UPDATE brings a 0.1 installation to the same catalog.  Every
 * catalog change of 0.2 goes here, never into the 0.1 script.
 */
\echo Use "ALTER EXTENSION streamflink UPDATE TO '0.2'" to load this file. \quit

/*
 * Checkpoint coordinator: a checkpoint row records the pipeline watermark
 * (read back at recovery; 0.1 kept it in RocksDB, under a key outside any
 * key group) and the format of its state snapshot.  Rows written by 0.1
 * get format 1 (their snapshots hold 0.1's key layout, which this release
 * refuses to read, naming the release); the default is then dropped, so
 * that every new row says which format it holds.
 */
ALTER TABLE streamflink.checkpoint ADD COLUMN watermark timestamptz;
ALTER TABLE streamflink.checkpoint ADD COLUMN state_format int NOT NULL DEFAULT 1;
ALTER TABLE streamflink.checkpoint ALTER COLUMN state_format DROP DEFAULT;
COMMENT ON COLUMN streamflink.checkpoint.watermark IS
	'pipeline watermark when the checkpoint was taken (NULL: none yet)';
COMMENT ON COLUMN streamflink.checkpoint.state_format IS
	'format of the state snapshot: 1 = streamflink 0.1, 2 = streamflink 0.2';

/* ---- Deterministic operator entry points for tests (src/run_operator.c) ----
 *
 * A pipeline's operator over given events with explicit watermarks, in the
 * calling backend, returning every row it emitted (sink rows with their
 * operation, late events, dead letters) and writing nothing.  watermarks[i]
 * (NULL: no move) is the watermark after events[i]; at the end it moves to
 * final_watermark ('infinity': the end of input, which fires everything;
 * NULL: no move).  For superusers and the pipeline's owners; the pipeline
 * may be running.
 */
CREATE FUNCTION streamflink.run_operator(pipeline text, events text[],
	watermarks timestamptz[] DEFAULT NULL,
	final_watermark timestamptz DEFAULT 'infinity')
RETURNS TABLE (ord int, event int, watermark timestamptz, output text, op text,
			   key jsonb, data jsonb, reason text)
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'streamflink_run_operator';
REVOKE ALL ON FUNCTION streamflink.run_operator(text, text[], timestamptz[], timestamptz)
	FROM PUBLIC;
/* It checks the pipeline's owner itself, and writes no table. */
GRANT EXECUTE ON FUNCTION streamflink.run_operator(text, text[], timestamptz[], timestamptz)
	TO streamflink_user;
