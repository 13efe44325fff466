--
-- setup: the extension, and helpers the other tests share.
--
\set SHOW_CONTEXT never
CREATE EXTENSION streamflink;
SELECT extname, extversion, nspname
FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE extname = 'streamflink';

-- The test broker's address (set on this database by test/run_tests.sh).
CREATE FUNCTION regress_brokers() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT current_setting('regress.brokers') $$;

-- Wait until a query returns true (polling; a running pipeline works in the
-- background).  Errors out after timeout so that a hang is a failure.
CREATE FUNCTION wait_until(cond text, timeout interval DEFAULT '60 seconds')
RETURNS bool
LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
	ok bool;
BEGIN
	LOOP
		EXECUTE cond INTO ok;
		IF ok THEN
			RETURN true;
		END IF;
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'timed out waiting for: %', cond;
		END IF;
		PERFORM pg_sleep(0.1);
		-- See other sessions' commits.
	END LOOP;
END
$$;
