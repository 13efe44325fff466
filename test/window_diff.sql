--
-- test/window_diff.sql: the reference side of test/window_diff.sh.
--
-- diff_check() runs the current case's pipeline "d" over the events of
-- table ev (ord: arrival order, part: partition, k: key, v, ts) with
-- streamflink._replay, then computes SQL's answer over the same events and
-- compares it with the sink d_out.  Which events count is decided from
-- each event's time and the watermark when it arrived (reported by
-- _replay), by the documented rule, not from the operator's decisions:
--   tumble/hop: an event counts in each of its windows (date_bin of the
--     slide, back while the window contains it) whose end + allowed
--     lateness is after its arrival watermark; it is late if none is left;
--   session: in arrival order, per key (SQL equality: ranks of ORDER BY k),
--     sessions whose end + allowed lateness the watermark reached are gone
--     (purged); an event's window [ts, ts + gap) merges with every live
--     session it touches; it is late if the merged end + allowed lateness
--     is not after its arrival watermark.  Sessions are then the groups of
--     events merged together.  When no event met a purged session this
--     equals the gaps-and-islands query over the counted events, which is
--     checked too.  When one did, two sessions of a key may start at the
--     same time; the sink holds one row per key and start: the later
--     session's, which replaced the purged one's.
-- Returns NULL when the sink equals the answer, else what differs.
--
CREATE FUNCTION diff_check(kind text, size interval, slide interval, gap interval,
						   lateness interval, seed int, p_advance float8,
						   p_checkpoint float8, p_restore float8)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	bad text;
	n_late_op int;
	purge_touch bool := false;
	ev_row record;
	live record;
	sid int;
	span_start timestamptz;
	span_end timestamptz;
	merged int[];
BEGIN
	-- Keys as their output functions write them (char keeps its trailing
	-- spaces there, not in a cast to text).
	CREATE TEMP TABLE rep ON COMMIT DROP AS
	SELECT * FROM streamflink._replay('d',
		ARRAY(SELECT json_build_object('k', CASE WHEN k IS NOT NULL THEN format('%s', k) END, 'v', v, 'ts', ts)::text FROM ev ORDER BY ord),
		ARRAY(SELECT part FROM ev ORDER BY ord), seed, p_advance, p_checkpoint, p_restore, 3);
	CREATE TEMP TABLE evr ON COMMIT DROP AS
	SELECT ev.*, dense_rank() OVER (ORDER BY k) AS kid, r.watermark AS wm, r.status
	FROM ev JOIN rep r ON r.ord = ev.ord;
	IF EXISTS (SELECT 1 FROM evr WHERE status NOT IN ('accepted', 'late')) THEN
		RETURN 'unexpected status: ' || (SELECT string_agg(DISTINCT status, ',') FROM evr);
	END IF;

	-- The reported watermarks themselves follow the rule, computed here from
	-- the events alone: never backwards along the arrival order, never
	-- ahead of the rule over the events before (per partition the largest
	-- time less the out-of-orderness, the minimum over the partitions, none
	-- while a partition has had no event), and equal to it when the
	-- watermark moves after every message and nothing is restored.
	SELECT string_agg(format('%s: %s (rule %s)', ord, wm, rule), ', ') INTO bad FROM (
		SELECT e.ord, e.wm, lag(e.wm) OVER (ORDER BY e.ord) AS prev,
			   (SELECT CASE WHEN count(*) = (SELECT max(part) + 1 FROM ev)
							THEN min(m.mx) - (SELECT max_out_of_orderness FROM streamflink.source
											  WHERE name = 'src') END
				FROM (SELECT o.part, max(o.ts) AS mx FROM ev o WHERE o.ord < e.ord
					  GROUP BY o.part) m) AS rule
		FROM evr e) w
	WHERE wm < prev
	   OR (wm <> '-infinity' AND (rule IS NULL OR wm > rule))
	   OR (p_advance = 1 AND p_restore = 0 AND wm IS DISTINCT FROM coalesce(rule, '-infinity'));
	IF bad IS NOT NULL THEN
		RETURN 'watermarks off the rule (ord: reported): ' || bad;
	END IF;

	-- (event, window) pairs that count, and whether each event counts.
	CREATE TEMP TABLE counted (ord int, kid bigint, ws timestamptz, we timestamptz,
							   sid int DEFAULT 0)
		ON COMMIT DROP;
	IF kind <> 'session' THEN
		INSERT INTO counted
		SELECT e.ord, e.kid, w.ws, w.ws + size
		FROM evr e,
			 LATERAL (SELECT date_bin(slide, e.ts, 'epoch') - j * slide AS ws
					  FROM generate_series(0, ceil(extract(epoch FROM size) / extract(epoch FROM slide))::int) j) w
		WHERE w.ws > e.ts - size AND w.ws + size + lateness > e.wm;
	ELSE
		CREATE TEMP TABLE sess (kid bigint, id int, s_start timestamptz, s_end timestamptz) ON COMMIT DROP;
		CREATE TEMP TABLE member (ord int, id int) ON COMMIT DROP;
		-- Each time a session fired, under its start then: the sink row of a
		-- purged session is overwritten when a later session of the key
		-- fires under the same start (an upsert by key and start), and
		-- retracted with it if that one then merges to an earlier start.
		CREATE TEMP TABLE fired_at (kid bigint, ws timestamptz, sid int) ON COMMIT DROP;
		sid := 0;
		FOR ev_row IN SELECT * FROM evr ORDER BY ord LOOP
			INSERT INTO fired_at SELECT s.kid, s.s_start, s.id FROM sess s WHERE s.s_end <= ev_row.wm;
			DELETE FROM sess WHERE sess.s_end + lateness <= ev_row.wm;
			span_start := ev_row.ts;
			span_end := ev_row.ts + gap;
			SELECT least(span_start, min(s.s_start)), greatest(span_end, max(s.s_end)), array_agg(s.id)
			INTO span_start, span_end, merged
			FROM sess s WHERE s.kid = ev_row.kid AND s.s_start <= ev_row.ts + gap AND s.s_end >= ev_row.ts;
			span_start := coalesce(span_start, ev_row.ts);
			span_end := coalesce(span_end, ev_row.ts + gap);
			IF span_end + lateness <= ev_row.wm THEN
				CONTINUE;		-- late
			END IF;
			-- Did it touch the events of a purged session?
			IF EXISTS (SELECT 1 FROM member m JOIN evr o ON o.ord = m.ord
					   WHERE o.kid = ev_row.kid AND o.ts <= ev_row.ts + gap AND o.ts + gap >= ev_row.ts
					     AND m.id NOT IN (SELECT id FROM sess)) THEN
				purge_touch := true;
			END IF;
			sid := sid + 1;
			UPDATE member SET id = sid WHERE id = ANY (merged);
			DELETE FROM sess WHERE id = ANY (merged);
			INSERT INTO sess VALUES (ev_row.kid, sid, span_start, span_end);
			INSERT INTO member VALUES (ev_row.ord, sid);
			IF span_end <= ev_row.wm THEN
				INSERT INTO fired_at VALUES (ev_row.kid, span_start, sid);	-- at once
			END IF;
		END LOOP;
		INSERT INTO fired_at SELECT s.kid, s.s_start, s.id FROM sess s;	-- the final watermark
		INSERT INTO counted
		SELECT m.ord, e.kid, min(e.ts) OVER w, max(e.ts) OVER w + gap, m.id
		FROM member m JOIN evr e USING (ord)
		WINDOW w AS (PARTITION BY m.id);

		-- Without purged sessions met again: the gaps-and-islands answer.
		IF NOT purge_touch THEN
			SELECT 'sessions differ from gaps and islands: ' || string_agg(x::text, ' ') INTO bad FROM (
				(SELECT kid, min(ts) AS s, max(ts) + gap AS e, count(*) FROM (
					SELECT *, sum(brk) OVER (PARTITION BY kid ORDER BY ts, ord) AS island FROM (
						SELECT c.kid, e.ts, e.ord,
							   CASE WHEN e.ts <= max(e.ts) OVER (PARTITION BY c.kid ORDER BY e.ts, e.ord
										 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + gap
									THEN 0 ELSE 1 END AS brk
						FROM counted c JOIN evr e USING (ord)) a) b
				 GROUP BY kid, island
				 EXCEPT ALL
				 SELECT kid, ws, we, count(*) FROM counted GROUP BY kid, ws, we)
				UNION ALL
				(SELECT kid, ws, we, count(*) FROM counted GROUP BY kid, ws, we
				 EXCEPT ALL
				 SELECT kid, min(ts), max(ts) + gap, count(*) FROM (
					SELECT *, sum(brk) OVER (PARTITION BY kid ORDER BY ts, ord) AS island FROM (
						SELECT c.kid, e.ts, e.ord,
							   CASE WHEN e.ts <= max(e.ts) OVER (PARTITION BY c.kid ORDER BY e.ts, e.ord
										 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + gap
									THEN 0 ELSE 1 END AS brk
						FROM counted c JOIN evr e USING (ord)) a) b
				 GROUP BY kid, island)) x;
			IF bad IS NOT NULL THEN
				RETURN bad;
			END IF;
		END IF;
	END IF;

	-- The operator's late events are exactly the events that count nowhere.
	SELECT string_agg(ord::text || ':' || status, ' ') INTO bad FROM evr
	WHERE (status = 'late') <> NOT EXISTS (SELECT 1 FROM counted c WHERE c.ord = evr.ord);
	IF bad IS NOT NULL THEN
		RETURN 'late events differ (ord:operator status): ' || bad;
	END IF;

	-- Of two sessions of a key with one start, the sink has the later's;
	-- a session's row is gone once a later session fired under its start.
	IF kind = 'session' THEN
		DELETE FROM counted c WHERE EXISTS (SELECT 1 FROM fired_at f WHERE f.kid = c.kid
											  AND f.ws = c.ws AND f.sid > c.sid);
	END IF;
	DELETE FROM counted c WHERE EXISTS (SELECT 1 FROM counted o WHERE o.kid = c.kid
										  AND o.ws = c.ws AND o.sid > c.sid);

	-- Sink rows, by key id (SQL equality with the sink's key).
	SELECT 'sink key matching no single key: ' || string_agg(d.k::text, ', ') INTO bad
	FROM d_out d WHERE (SELECT count(DISTINCT kid) FROM evr WHERE evr.k IS NOT DISTINCT FROM d.k) <> 1;
	IF bad IS NOT NULL THEN
		RETURN bad;
	END IF;
	SELECT string_agg(x::text, ' ') INTO bad FROM (
		(SELECT 'missing' AS what, kid, ws, we, count(*)::bigint AS n, sum(v)::bigint AS s
		 FROM counted JOIN evr USING (ord, kid) GROUP BY kid, ws, we
		 EXCEPT ALL
		 SELECT 'missing', (SELECT DISTINCT kid FROM evr WHERE evr.k IS NOT DISTINCT FROM d.k),
				window_start, window_end, n, s FROM d_out d)
		UNION ALL
		(SELECT 'extra', (SELECT DISTINCT kid FROM evr WHERE evr.k IS NOT DISTINCT FROM d.k),
				window_start, window_end, n, s FROM d_out d
		 EXCEPT ALL
		 SELECT 'extra', kid, ws, we, count(*), sum(v)
		 FROM counted JOIN evr USING (ord, kid) GROUP BY kid, ws, we)) x;
	RETURN bad;
END
$$;
