--
-- 006_status_view: the columns of mig_status for application-driven and
-- managed migrations in each state: kind, progress, the estimate of the
-- total, percent, rate and ETA, and the action (shown only to the owner's
-- roles).
-- Timestamps, durations, rates and pids vary from run to run: only whether
-- they are set is shown.
--
SELECT array_agg(attname ORDER BY attnum) AS columns
  FROM pg_attribute WHERE attrelid = 'mig_status'::regclass AND attnum > 0;

CREATE FUNCTION s06_status(n text)
RETURNS TABLE (status text, kind text, own boolean, relation regclass,
			   processed bigint, scanned bigint, batches bigint,
			   total_estimate bigint, percent numeric, has_rate boolean,
			   eta interval, current_batch_size int, has_last_batch boolean,
			   retries bigint, throttled text, worker_pid int,
			   started boolean, completed boolean, error text, action text)
LANGUAGE sql AS $$
	SELECT status, kind, owner::oid = (SELECT oid FROM pg_roles WHERE rolname = current_user),
		   relation, processed, scanned, batches, total_estimate, percent,
		   rows_per_sec > 0, eta, current_batch_size,
		   last_batch_ms IS NOT NULL AND last_batch_at IS NOT NULL,
		   retries, throttled, worker_pid, started_at IS NOT NULL,
		   completed_at IS NOT NULL, error, action
	  FROM mig_status WHERE name = n
$$;

-- ---------------------------------------------------------------------------
-- application-driven: no relation, no estimate, no rate
SET client_min_messages = warning;
SELECT mig_start('s06_app_v1') AS id \gset s06_app_
RESET client_min_messages;
SELECT mig_update_progress(:s06_app_id, 40);
SELECT * FROM s06_status('s06_app_v1');
SELECT mig_fail(:s06_app_id, 'upstream API returned 503');
SELECT status, percent, error FROM mig_status WHERE name = 's06_app_v1';
SELECT mig_start('s06_app_v1') = :s06_app_id AS restarted;
SELECT mig_update_progress(:s06_app_id, 55);
SELECT mig_complete(:s06_app_id);
-- completed: 100 percent, and the total is what was walked (nothing, here)
SELECT * FROM s06_status('s06_app_v1');

-- ---------------------------------------------------------------------------
-- managed: 100 rows; until the table is analyzed, the estimate is its live
-- rows in the cumulative statistics (see 060; flushed here, so that the
-- count is exact), then the planner's
CREATE TABLE s06_users (id int PRIMARY KEY, d int NOT NULL DEFAULT 1,
						touched int NOT NULL DEFAULT 0);
INSERT INTO s06_users (id) SELECT g FROM generate_series(1, 100) g;
UPDATE s06_users SET d = 0 WHERE id = 65;
SELECT mig_define('s06_users_v1', 's06_users',
  $$UPDATE s06_users SET touched = touched + 1 / d WHERE id BETWEEN $1 AND $2$$,
  batch_size => 20) > 0 AS defined;
SELECT pg_stat_force_next_flush();
SELECT * FROM s06_status('s06_users_v1');
ANALYZE s06_users;
SELECT status, total_estimate, percent, eta FROM mig_status WHERE name = 's06_users_v1';

-- failed in batch 4 (keys 61 to 80): 60 of 100 keys done
CALL mig_run('s06_users_v1');
SELECT * FROM s06_status('s06_users_v1');

-- while running (here inside a transaction that is rolled back, so that no
-- worker takes it), the ETA follows from the rate and the keys left
BEGIN;
SELECT mig_start('s06_users_v1') > 0 AS started;
SELECT status, percent, rows_per_sec > 0 AS has_rate, eta IS NOT NULL AS has_eta,
	   eta >= interval '0' AS eta_not_negative, error
  FROM mig_status WHERE name = 's06_users_v1';
ROLLBACK;

-- fixed and run to the end: 100 percent, no ETA, the total is the keys walked
UPDATE s06_users SET d = 1;
CALL mig_run('s06_users_v1');
SELECT * FROM s06_status('s06_users_v1');

-- the estimate grows with the table (after ANALYZE) and never falls below
-- the keys walked; a completed migration counts what it walked
INSERT INTO s06_users (id) SELECT g FROM generate_series(101, 400) g;
ANALYZE s06_users;
SELECT mig_define('s06_users_v2', 's06_users',
  $$UPDATE s06_users SET touched = touched + 1 WHERE id BETWEEN $1 AND $2$$,
  batch_size => 100) > 0 AS defined;
SELECT name, status, total_estimate, percent FROM mig_status
 WHERE name LIKE 's06_users%' ORDER BY name;

-- ---------------------------------------------------------------------------
-- the action is shown only to roles with the privileges of the owner
CREATE ROLE regress_s06_viewer;
SET ROLE regress_s06_viewer;
SELECT name, kind, status, percent, action FROM mig_status
 WHERE name LIKE 's06%' ORDER BY name;
RESET ROLE;
-- a member of the owning role sees it
SELECT current_user AS s06_owner \gset
GRANT :"s06_owner" TO regress_s06_viewer;
SET ROLE regress_s06_viewer;
SELECT name, action FROM mig_status WHERE name = 's06_users_v1';
RESET ROLE;
DROP ROLE regress_s06_viewer;

-- clean up
DELETE FROM migrations WHERE name LIKE 's06\_%';
DROP TABLE s06_users;
DROP FUNCTION s06_status(text);
