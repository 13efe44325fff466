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

-- The messages of a Kafka-sink pipeline's committed transactions, by their
-- headers (the test broker shows aborted transactions' messages too).
CREATE FUNCTION regress_committed(pipeline text, topic text)
RETURNS TABLE (key text, value jsonb, checkpoint bigint, seq bigint, headers jsonb)
LANGUAGE sql AS $$
	SELECT m.key, m.value::jsonb, (m.headers ->> 'checkpoint')::bigint,
	       (m.headers ->> 'sequence')::bigint, m.headers
	FROM streamflink._read_topic(regress_brokers(), topic) m
	JOIN streamflink.pipeline p ON p.name = m.headers ->> 'pipeline'
	JOIN streamflink.kafka_sink_run r
	  ON r.pipeline_id = p.id AND r.worker = (m.headers ->> 'worker')::int
	 AND r.transactional_id = m.headers ->> 'transactional_id'
	JOIN streamflink.kafka_sink_txn t
	  ON t.pipeline_id = p.id AND t.worker = (m.headers ->> 'worker')::int
	 AND t.checkpoint_id = (m.headers ->> 'checkpoint')::bigint
	 AND t.run = (m.headers ->> 'run')::bigint AND t.committed IS NOT NULL
	WHERE p.name = pipeline
$$;

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
