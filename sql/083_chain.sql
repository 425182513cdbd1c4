--
-- 083_chain: continue_from (a new version takes over the cursor of an
-- earlier one that failed, was paused or cancelled), after (a migration
-- runs only once others completed) and mig_wait_all.
--
CREATE TABLE s83 (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, d int NOT NULL DEFAULT 1);
INSERT INTO s83 (id) SELECT g FROM generate_series(1, 20) g;
CREATE TABLE s83_other (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO s83_other (id) SELECT g FROM generate_series(1, 10) g;
CREATE TABLE s83_keys (id int PRIMARY KEY, code text NOT NULL UNIQUE, n int NOT NULL DEFAULT 0);
INSERT INTO s83_keys SELECT g, 'c' || g FROM generate_series(1, 10) g;

CREATE FUNCTION s83_state(mig text)
RETURNS TABLE (status text, cursor text, high_water text, processed bigint,
			   scanned bigint, skipped bigint, continued_from text, error text,
			   error_detail text)
LANGUAGE sql AS $$
	SELECT m.status, m.cursor::text, m.high_water::text, m.processed, m.scanned,
		   m.skipped, p.name, m.error, m.error_detail
	  FROM migrations m LEFT JOIN migrations p ON p.id = m.continued_from
	 WHERE m.name = mig
$$;

-- the action counts in n how often it changed a row, and divides by d
\set s83_action 'UPDATE s83 SET n = n + 1 + 0 * (1 / d) WHERE id BETWEEN $1 AND $2'

-- ---------------------------------------------------------------------------
-- continue_from a failed migration: v1 fails in its third batch (keys 9-12)
UPDATE s83 SET d = 0 WHERE id = 10;
SELECT mig_define('s83_v1', 's83', :'s83_action', batch_size => 4) > 0 AS defined;
CALL mig_run('s83_v1');
SELECT * FROM s83_state('s83_v1');
-- a key the run set aside (as on_error 'skip' does), written as the
-- extension's owner
INSERT INTO migration_skipped (migration_id, key, sqlstate, error)
SELECT id, '{3}', '22012', 'division by zero' FROM migrations WHERE name = 's83_v1';
UPDATE migrations SET skipped = 1 WHERE name = 's83_v1';

-- define-time errors of continue_from
SELECT mig_define('s83_x', 's83', :'s83_action', continue_from => 's83_nope');
SELECT mig_define('s83_x', 's83', :'s83_action', continue_from => 's83_x');
SELECT mig_start('s83_app') > 0 AS app_started;
SELECT mig_define('s83_x', 's83', :'s83_action', continue_from => 's83_app');
SELECT mig_define('s83_x', 's83_other',
  $$UPDATE s83_other SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, continue_from => 's83_v1');
SELECT mig_define('s83_keys_v1', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$) > 0 AS defined;
SELECT mig_define('s83_x', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE code BETWEEN $1 AND $2$$,
  key_columns => '{code}', continue_from => 's83_keys_v1');
-- pending, running and completed migrations cannot be continued
SELECT mig_define('s83_x', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, continue_from => 's83_keys_v1');
BEGIN;
SELECT mig_start('s83_keys_v1') > 0 AS started;
SELECT mig_define('s83_x', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, continue_from => 's83_keys_v1');
ROLLBACK;
CALL mig_run('s83_keys_v1');
SELECT mig_define('s83_x', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, continue_from => 's83_keys_v1');
-- only a role with the earlier migration's owner's privileges
CREATE ROLE regress_mr_s83;
GRANT SELECT, UPDATE ON s83 TO regress_mr_s83;
SET ROLE regress_mr_s83;
SELECT mig_define('s83_x', 's83', :'s83_action', continue_from => 's83_v1');
RESET ROLE;
SELECT count(*) AS no_s83_x FROM migrations WHERE name = 's83_x';

-- v2 takes over: cursor, high-water mark, scanned and the skipped keys;
-- processed starts at 0.  v1 is cancelled with a note, its error moved to
-- error_detail.
UPDATE s83 SET d = 1 WHERE id = 10;
SELECT mig_define('s83_v2', 's83', :'s83_action', batch_size => 4,
  continue_from => 's83_v1') AS v2_id \gset
SELECT * FROM s83_state('s83_v1');
SELECT * FROM s83_state('s83_v2');
SELECT m.name, s.key, s.sqlstate FROM migration_skipped s
  JOIN migrations m ON m.id = s.migration_id WHERE m.name LIKE 's83_v_' ORDER BY 1;
-- the same definition again: the same id, although v1 is cancelled now
SELECT mig_define('s83_v2', 's83', :'s83_action', batch_size => 4,
  continue_from => 's83_v1') = :v2_id AS same_id;
SELECT mig_define('s83_v2', 's83', :'s83_action', batch_size => 4);
-- nobody continues v1 twice, and v1 cannot run again
SELECT mig_define('s83_v2b', 's83', :'s83_action', continue_from => 's83_v1');
SELECT mig_start('s83_v1');
SELECT mig_reset('s83_v1');
CALL mig_run('s83_v1');
SELECT mig_cancel('s83_v1');
-- v2 changes only the keys after v1's cursor: every row exactly once
CALL mig_run('s83_v2');
SELECT n, count(*), min(id), max(id) FROM s83 GROUP BY n ORDER BY n;
SELECT * FROM s83_state('s83_v2');
SELECT status, processed, scanned, percent, skipped FROM mig_status WHERE name = 's83_v2';

-- ---------------------------------------------------------------------------
-- continue_from a paused migration that runs in slices: the slices, their
-- ranges and cursors are carried; v2 changes every row the slices had left
CREATE TABLE s83_p (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO s83_p (id) SELECT g FROM generate_series(1, 40) g;
CREATE FUNCTION s83_pause_at(id int, stop_id int, mig text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF id = stop_id THEN
		PERFORM mig_pause(mig);
	END IF;
	RETURN true;
END
$$;
SELECT mig_define('s83_p_v1', 's83_p',
  $$UPDATE s83_p SET n = n + 1 WHERE id BETWEEN $1 AND $2 AND s83_pause_at(id, 13, 's83_p_v1')$$,
  batch_size => 5, parallel => 2) > 0 AS defined;
CALL mig_run('s83_p_v1');
SELECT status FROM migrations WHERE name = 's83_p_v1';
SELECT slice, status, lower_key, upper_key, cursor FROM mig_slices
 WHERE name = 's83_p_v1' ORDER BY slice;
SELECT mig_define('s83_p_v2', 's83_p',
  $$UPDATE s83_p SET n = n + 1 WHERE id BETWEEN $1 AND $2$$,
  batch_size => 5, parallel => 2, continue_from => 's83_p_v1') > 0 AS defined;
SELECT name, status, error FROM migrations WHERE name LIKE 's83_p_v_' ORDER BY name;
SELECT slice, status, lower_key, upper_key, cursor, processed FROM mig_slices
 WHERE name = 's83_p_v2' ORDER BY slice;
SELECT (SELECT scanned FROM mig_status WHERE name = 's83_p_v2') =
	   (SELECT scanned FROM mig_status WHERE name = 's83_p_v1') AS same_scanned;
CALL mig_run('s83_p_v2');
SELECT n, count(*), min(id), max(id) FROM s83_p GROUP BY n ORDER BY n;
SELECT status, processed, processed + (SELECT processed FROM mig_status WHERE name = 's83_p_v1')
	   AS both_processed, scanned FROM mig_status WHERE name = 's83_p_v2';
SELECT count(*) AS slices_left FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
 WHERE m.name = 's83_p_v2';

-- ---------------------------------------------------------------------------
-- after: define-time errors
SELECT mig_define('s83_pre', 's83_other',
  $$UPDATE s83_other SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, batch_size => 3) > 0 AS defined;
SELECT mig_define('s83_a', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, after => ARRAY['s83_nope']);
SELECT mig_define('s83_a', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, after => ARRAY['s83_pre', 's83_a']);
SELECT mig_define('s83_a', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, after => ARRAY['s83_pre', 's83_pre']);
SELECT mig_define('s83_a', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, after => ARRAY['s83_pre', NULL]);
-- an empty array is no prerequisite
SELECT mig_define('s83_empty', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, after => '{}') > 0 AS defined;
SELECT run_after IS NULL AS no_run_after FROM migrations WHERE name = 's83_empty';
-- a cycle can only close through a migration dropped and defined again
SELECT mig_define('s83_cy1', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$) > 0 AS defined;
SELECT mig_define('s83_cy2', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, after => ARRAY['s83_cy1']) > 0 AS defined;
SELECT mig_define('s83_cy3', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, after => ARRAY['s83_cy2']) > 0 AS defined;
SELECT mig_drop('s83_cy1');
SELECT mig_define('s83_cy1', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, after => ARRAY['s83_cy3']);
-- the same definition again: the same id; other prerequisites: an error
SELECT mig_define('s83_cy3', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, after => ARRAY['s83_cy2']) =
  (SELECT id FROM migrations WHERE name = 's83_cy3') AS same_id;
SELECT mig_define('s83_cy3', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, after => ARRAY['s83_pre']);

-- after: waiting.  s83_dep is started (a worker will run it once s83_pre
-- completes), s83_dep2 is only defined (for CALL mig_run).
UPDATE s83_keys SET n = 0;
SELECT mig_define('s83_dep', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$, batch_size => 4,
  after => ARRAY['s83_pre', 's83_v2']) > 0 AS defined;
SELECT mig_define('s83_dep2', 's83_other',
  $$UPDATE s83_other SET n = n + 10 WHERE id BETWEEN $1 AND $2$$, batch_size => 4,
  after => ARRAY['s83_pre']) > 0 AS defined;
SELECT mig_start('s83_dep') > 0 AS started;
SELECT m.status, m.started_at IS NULL AS not_started_yet, s.status AS shown, s.waiting_for
  FROM migrations m JOIN mig_status s USING (name) WHERE name = 's83_dep';
CALL mig_run('s83_dep');
CALL mig_run('s83_dep2');
SELECT status FROM migrations WHERE name = 's83_dep2';
SELECT * FROM mig_wait_all(ARRAY['s83_dep', 's83_dep2'], '200 ms');
-- s83_pre completes: the launcher starts s83_dep at once; s83_dep2 may run now
CALL mig_run('s83_pre');
SELECT * FROM mig_wait_all(ARRAY['s83_pre', 's83_dep'], '60 s');
SELECT d.started_at >= p.completed_at AS started_after_pre, d.processed,
	   s.status AS shown, s.waiting_for
  FROM migrations d, migrations p, mig_status s
 WHERE d.name = 's83_dep' AND p.name = 's83_pre' AND s.name = 's83_dep';
SELECT n, count(*) FROM s83_keys GROUP BY n ORDER BY n;
CALL mig_run('s83_dep2');
SELECT n, count(*) FROM s83_other GROUP BY n ORDER BY n;

-- a failed prerequisite leaves its dependent waiting
CREATE TABLE s83_f (id int PRIMARY KEY, d int NOT NULL DEFAULT 1);
INSERT INTO s83_f (id) SELECT g FROM generate_series(1, 5) g;
UPDATE s83_f SET d = 0 WHERE id = 3;
SELECT mig_define('s83_fpre', 's83_f',
  $$UPDATE s83_f SET d = 1 / d WHERE id BETWEEN $1 AND $2$$) > 0 AS defined;
SELECT mig_define('s83_fdep', 's83_keys',
  $$UPDATE s83_keys SET n = n + 1 WHERE id BETWEEN $1 AND $2$$,
  after => ARRAY['s83_fpre']) > 0 AS defined;
SELECT mig_start('s83_fdep') > 0 AS started;
CALL mig_run('s83_fpre');
SELECT status, waiting_for FROM mig_status WHERE name = 's83_fdep';
SELECT * FROM mig_wait_all(ARRAY['s83_fdep'], '100 ms');
SELECT mig_cancel('s83_fdep');

-- ---------------------------------------------------------------------------
-- mig_wait_all: finished migrations at once, in the order named
SELECT * FROM mig_wait_all(ARRAY['s83_v2', 's83_v1', 's83_fpre']);
-- not finished (running, pending): the timeout ends the wait with the
-- statuses then
SELECT clock_timestamp() AS t0 \gset
SELECT * FROM mig_wait_all(ARRAY['s83_app', 's83_v2', 's83_empty'], '300 ms');
SELECT clock_timestamp() - :'t0' >= interval '300 ms' AS waited_the_timeout;
SELECT * FROM mig_wait_all('{}');
SELECT * FROM mig_wait_all(ARRAY['s83_v2', 's83_nope']);
SELECT * FROM mig_wait_all(ARRAY['s83_v2', NULL]);
SELECT * FROM mig_wait_all(NULL);
SELECT * FROM mig_wait_all(ARRAY['s83_v2'], '-1 s');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM mig_wait_all(ARRAY['s83_v2']);
ROLLBACK;

REVOKE ALL ON s83 FROM regress_mr_s83;
DROP ROLE regress_mr_s83;
