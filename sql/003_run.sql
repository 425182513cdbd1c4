--
-- 003_run: CALL mig_run runs a managed migration in the session, batch by
-- batch in key order: batch counts, the cursor and the high-water mark, the
-- history, keys with gaps, a two-column key, an empty table; and its refusals.
--
-- Every action increments a counter column, so "no row changed twice" is
-- checked as max(touched) = 1.  pg_regress's database is the one the
-- background worker serves, so managed migrations here are never
-- mig_start'ed: CALL mig_run takes a pending migration itself.
--

-- the progress of a migration, without ids, pids or timestamps
CREATE FUNCTION s03_progress(n text)
RETURNS TABLE (status text, processed bigint, scanned bigint, batches bigint,
			   cursor text[], high_water text[], current_batch_size int,
			   error text, runner_left boolean, timestamps_ok boolean)
LANGUAGE sql AS $$
	SELECT status, processed, scanned, batches, cursor, high_water,
		   current_batch_size, error, worker_pid IS NOT NULL,
		   started_at IS NOT NULL AND last_batch_at IS NOT NULL
		   AND (completed_at IS NULL) = (status <> 'completed')
		   AND coalesce(completed_at >= started_at, true)
	  FROM migrations WHERE name = n
$$;

-- the batch history of a migration
CREATE FUNCTION s03_history(n text)
RETURNS TABLE (batch bigint, first_key text[], last_key text[], keys int,
			   rows bigint, attempts int, error text, timed boolean)
LANGUAGE sql AS $$
	SELECT b.batch, b.first_key, b.last_key, b.keys, b.rows, b.attempts, b.error,
		   b.duration_ms >= b.bounds_ms + b.action_ms
	  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
	 WHERE m.name = n ORDER BY b.batch
$$;

-- ---------------------------------------------------------------------------
-- keys 1..100 with holes: every multiple of 7 and the range 41..50 are gone,
-- 78 keys remain; 7 rows already have a value and need no change
CREATE TABLE s03_users (
	id			int PRIMARY KEY,
	inserted_at	timestamptz NOT NULL DEFAULT '2024-01-01',
	created_at	timestamptz,
	touched		int NOT NULL DEFAULT 0
);
INSERT INTO s03_users (id) SELECT g FROM generate_series(1, 100) g
 WHERE g % 7 <> 0 AND g NOT BETWEEN 41 AND 50;
UPDATE s03_users SET created_at = '2023-06-01' WHERE id % 10 = 1;
SELECT count(*) AS keys, count(created_at) AS already_set FROM s03_users;

SELECT mig_define('s03_users_v1', 's03_users',
  $$UPDATE s03_users SET created_at = inserted_at, touched = touched + 1
     WHERE id BETWEEN $1 AND $2 AND created_at IS NULL$$,
  batch_size => 10) > 0 AS defined;

CALL mig_run('s03_users_v1');

-- 78 keys in batches of 10: 8 batches, the last one of 8 keys completes the
-- migration in its own transaction; 71 rows changed, 78 keys scanned
SELECT * FROM s03_progress('s03_users_v1');
SELECT * FROM s03_history('s03_users_v1');
SELECT mig_has_run('s03_users_v1') AS has_run;

-- every row that needed it changed exactly once; the others kept their value
SELECT touched, count(*), min(id), max(id), count(created_at) AS with_value
  FROM s03_users GROUP BY touched ORDER BY touched;
SELECT count(*) AS unchanged_values FROM s03_users WHERE created_at = '2023-06-01';

-- CALL mig_run on a completed migration only says so
CALL mig_run('s03_users_v1');
SELECT max(touched) AS max_touched FROM s03_users;

-- ---------------------------------------------------------------------------
-- an exact multiple of the batch size: three full batches, then an empty
-- probe finds no key and completes the migration (the probe is no batch)
CREATE TABLE s03_exact (id bigint PRIMARY KEY, touched int NOT NULL DEFAULT 0);
INSERT INTO s03_exact SELECT g * 1000 FROM generate_series(1, 30) g;
SELECT mig_define('s03_exact_v1', 's03_exact',
  $$UPDATE s03_exact SET touched = touched + 1 WHERE id BETWEEN $1 AND $2$$,
  batch_size => 10) > 0 AS defined;
CALL mig_run('s03_exact_v1');
SELECT * FROM s03_progress('s03_exact_v1');
SELECT batch, first_key, last_key, keys, rows FROM s03_history('s03_exact_v1');
SELECT touched, count(*) FROM s03_exact GROUP BY touched;

-- batch_size 1: one batch per key
CREATE TABLE s03_tiny (id int PRIMARY KEY, touched int NOT NULL DEFAULT 0);
INSERT INTO s03_tiny VALUES (-5), (0), (3), (2147483647);
SELECT mig_define('s03_tiny_v1', 's03_tiny',
  $$UPDATE s03_tiny SET touched = touched + 1 WHERE id BETWEEN $1 AND $2$$,
  batch_size => 1) > 0 AS defined;
CALL mig_run('s03_tiny_v1');
SELECT * FROM s03_progress('s03_tiny_v1');
SELECT batch, first_key, last_key, keys, rows FROM s03_history('s03_tiny_v1');
SELECT id, touched FROM s03_tiny ORDER BY id;

-- ---------------------------------------------------------------------------
-- an empty table: completed at once, no batch, no cursor
CREATE TABLE s03_empty (id int PRIMARY KEY, touched int NOT NULL DEFAULT 0);
SELECT mig_define('s03_empty_v1', 's03_empty',
  $$UPDATE s03_empty SET touched = touched + 1 WHERE id BETWEEN $1 AND $2$$) > 0 AS defined;
CALL mig_run('s03_empty_v1');
SELECT status, processed, scanned, batches, cursor, high_water, error,
	   worker_pid IS NULL AS no_runner, completed_at IS NOT NULL AS has_completed_at
  FROM migrations WHERE name = 's03_empty_v1';
SELECT count(*) AS history FROM s03_history('s03_empty_v1');
SELECT mig_has_run('s03_empty_v1') AS has_run;

-- ---------------------------------------------------------------------------
-- a two-column primary key: batches follow the key's order across tenants
-- ((1,1) < (1,2) < ... < (2,1)); gaps in both columns
CREATE TABLE s03_orders (
	tenant_id	int NOT NULL,
	order_no	int NOT NULL,
	total		numeric,
	touched		int NOT NULL DEFAULT 0,
	PRIMARY KEY (tenant_id, order_no)
);
INSERT INTO s03_orders (tenant_id, order_no)
SELECT t, o FROM generate_series(1, 4) t, generate_series(1, 5) o
 WHERE t <> 3 AND (t, o) <> (2, 3);
SELECT count(*) AS keys FROM s03_orders;
SELECT mig_define('s03_orders_v1', 's03_orders',
  $$UPDATE s03_orders SET total = tenant_id * 100 + order_no, touched = touched + 1
     WHERE (tenant_id, order_no) BETWEEN ($1, $2) AND ($3, $4)$$,
  batch_size => 4) > 0 AS defined;
CALL mig_run('s03_orders_v1');
SELECT * FROM s03_progress('s03_orders_v1');
SELECT batch, first_key, last_key, keys, rows FROM s03_history('s03_orders_v1');
SELECT tenant_id, count(*) AS rows, min(touched), max(touched),
	   bool_and(total = tenant_id * 100 + order_no) AS all_set
  FROM s03_orders GROUP BY tenant_id ORDER BY tenant_id;

-- a text key (a unique index on a NOT NULL column, given as key_columns)
CREATE TABLE s03_codes (id serial, code text NOT NULL, touched int NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX s03_codes_code ON s03_codes (code);
INSERT INTO s03_codes (code) SELECT 'code-' || lpad(g::text, 3, '0') FROM generate_series(1, 12) g;
SELECT mig_define('s03_codes_v1', 's03_codes',
  $$UPDATE s03_codes SET touched = touched + 1 WHERE code BETWEEN $1 AND $2$$,
  batch_size => 5, key_columns => '{code}') > 0 AS defined;
CALL mig_run('s03_codes_v1');
SELECT * FROM s03_progress('s03_codes_v1');
SELECT batch, first_key, last_key, keys, rows FROM s03_history('s03_codes_v1');
SELECT min(touched), max(touched) FROM s03_codes;

-- a partitioned table: one key order over all partitions
CREATE TABLE s03_events (id int PRIMARY KEY, touched int NOT NULL DEFAULT 0)
	PARTITION BY RANGE (id);
CREATE TABLE s03_events_a PARTITION OF s03_events FOR VALUES FROM (1) TO (10);
CREATE TABLE s03_events_b PARTITION OF s03_events FOR VALUES FROM (10) TO (100);
INSERT INTO s03_events (id) SELECT g FROM generate_series(5, 14) g;
SELECT mig_define('s03_events_v1', 's03_events',
  $$UPDATE s03_events SET touched = touched + 1 WHERE id BETWEEN $1 AND $2$$,
  batch_size => 3) > 0 AS defined;
CALL mig_run('s03_events_v1');
SELECT * FROM s03_progress('s03_events_v1');
SELECT batch, first_key, last_key, keys, rows FROM s03_history('s03_events_v1');
SELECT tableoid::regclass AS partition, count(*), min(touched), max(touched)
  FROM s03_events GROUP BY 1 ORDER BY 1;

-- ---------------------------------------------------------------------------
-- the high-water mark: the largest key when the run starts.  This action
-- appends a row beyond it for every key of its batch; the appended rows are
-- not visited, so the run ends
CREATE TABLE s03_grow (id int PRIMARY KEY, copied_from int);
INSERT INTO s03_grow (id) SELECT g FROM generate_series(1, 8) g;
SELECT mig_define('s03_grow_v1', 's03_grow',
  $$INSERT INTO s03_grow (id, copied_from)
    SELECT id + 1000, id FROM s03_grow WHERE id BETWEEN $1 AND $2$$,
  batch_size => 3) > 0 AS defined;
CALL mig_run('s03_grow_v1');
SELECT * FROM s03_progress('s03_grow_v1');
SELECT count(*) AS rows, count(copied_from) AS copies, max(id) FROM s03_grow;

-- a SELECT action changes nothing, and processed counts the rows it returned
CREATE TABLE s03_audit (id int PRIMARY KEY);
INSERT INTO s03_audit SELECT g FROM generate_series(1, 25) g;
SELECT mig_define('s03_audit_v1', 's03_audit',
  $$SELECT id FROM s03_audit WHERE id BETWEEN $1 AND $2 AND id % 2 = 0$$,
  batch_size => 10) > 0 AS defined;
CALL mig_run('s03_audit_v1');
SELECT status, processed, scanned, batches, cursor FROM migrations WHERE name = 's03_audit_v1';

-- ---------------------------------------------------------------------------
-- the action runs with the search_path recorded at define time, whatever
-- the path of the session that runs it; the session's settings are left as
-- they were
CREATE SCHEMA s03_app;
CREATE TABLE s03_app.accounts (id int PRIMARY KEY, touched int NOT NULL DEFAULT 0);
CREATE TABLE public.accounts (id int PRIMARY KEY, touched int NOT NULL DEFAULT 0);
INSERT INTO s03_app.accounts SELECT g FROM generate_series(1, 5) g;
INSERT INTO public.accounts SELECT g FROM generate_series(1, 5) g;
SET search_path = s03_app, public;
SELECT mig_define('s03_accounts_v1', 'accounts',
  $$UPDATE accounts SET touched = touched + 1 WHERE id BETWEEN $1 AND $2$$,
  batch_size => 2) > 0 AS defined;
RESET search_path;
SET statement_timeout = '10min';
SET lock_timeout = '7s';
CALL mig_run('s03_accounts_v1');
SHOW search_path;
SHOW statement_timeout;
SHOW lock_timeout;
RESET statement_timeout;
RESET lock_timeout;
SELECT relation, status, processed, batches FROM migrations WHERE name = 's03_accounts_v1';
SELECT 's03_app' AS schema, sum(touched) FROM s03_app.accounts
UNION ALL SELECT 'public', sum(touched) FROM public.accounts;

-- ---------------------------------------------------------------------------
-- migration_runner.history_size keeps only the last batches of a migration
SET migration_runner.history_size = 2;
CREATE TABLE s03_hist (id int PRIMARY KEY, touched int NOT NULL DEFAULT 0);
INSERT INTO s03_hist SELECT g FROM generate_series(1, 10) g;
SELECT mig_define('s03_hist_v1', 's03_hist',
  $$UPDATE s03_hist SET touched = touched + 1 WHERE id BETWEEN $1 AND $2$$,
  batch_size => 2) > 0 AS defined;
CALL mig_run('s03_hist_v1');
RESET migration_runner.history_size;
SELECT status, batches, cursor FROM migrations WHERE name = 's03_hist_v1';
SELECT batch, first_key, last_key, keys FROM s03_history('s03_hist_v1');

-- ---------------------------------------------------------------------------
-- mig_reset forgets the cursor, the high-water mark and the history: the
-- next run starts at the first key again (so the rows are changed again)
SELECT mig_reset('s03_exact_v1');
SELECT status, processed, scanned, batches, cursor, high_water, current_batch_size,
	   started_at IS NULL AS no_started_at, completed_at IS NULL AS no_completed_at
  FROM migrations WHERE name = 's03_exact_v1';
SELECT count(*) AS history FROM s03_history('s03_exact_v1');
INSERT INTO s03_exact VALUES (31000, 0);
CALL mig_run('s03_exact_v1');
SELECT * FROM s03_progress('s03_exact_v1');
SELECT touched, count(*) FROM s03_exact GROUP BY touched ORDER BY touched;

-- ---------------------------------------------------------------------------
-- refusals: mig_run commits after every batch, so not in a transaction block
CREATE TABLE s03_refuse (id int PRIMARY KEY, touched int NOT NULL DEFAULT 0);
INSERT INTO s03_refuse SELECT g FROM generate_series(1, 5) g;
SELECT mig_define('s03_refuse_v1', 's03_refuse',
  $$UPDATE s03_refuse SET touched = touched + 1 WHERE id BETWEEN $1 AND $2$$) > 0 AS defined;
BEGIN;
CALL mig_run('s03_refuse_v1');
ROLLBACK;
-- ... nor from a function (an atomic context)
CREATE FUNCTION s03_run_in_function() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	CALL mig_run('s03_refuse_v1');
END
$$;
SELECT s03_run_in_function();
-- a DO block outside a transaction block is not atomic: CALL works there
DO $$ BEGIN CALL mig_run('s03_refuse_v1'); END $$;
SELECT status, batches, processed FROM migrations WHERE name = 's03_refuse_v1';
SELECT max(touched) AS max_touched FROM s03_refuse;

-- unknown name, NULL name, an application-driven migration
CALL mig_run('s03_no_such_migration');
CALL mig_run(NULL);
SET client_min_messages = warning;
SELECT mig_start('s03_app_v1') > 0 AS started;
RESET client_min_messages;
CALL mig_run('s03_app_v1');

-- a cancelled migration is not run; mig_reset makes it pending again
SELECT mig_define('s03_cancelled_v1', 's03_refuse',
  $$UPDATE s03_refuse SET touched = touched + 1 WHERE id BETWEEN $1 AND $2$$) > 0 AS defined;
SELECT mig_cancel('s03_cancelled_v1');
CALL mig_run('s03_cancelled_v1');
SELECT status, batches FROM migrations WHERE name = 's03_cancelled_v1';

-- the catalog of this file: invariants hold for every row
SELECT name, status, processed <= scanned AS processed_le_scanned,
	   worker_pid IS NULL AS no_runner,
	   (status = 'completed') = (completed_at IS NOT NULL) AS completed_at_ok,
	   (SELECT coalesce(max(b.batch), 0) FROM migration_batches b WHERE b.migration_id = m.id)
		 <= batches AS history_ok
  FROM migrations m WHERE name LIKE 's03\_%' ORDER BY name;

-- clean up
DELETE FROM migrations WHERE name LIKE 's03\_%';
DROP TABLE s03_users, s03_exact, s03_tiny, s03_empty, s03_orders, s03_codes, s03_events,
	s03_grow, s03_audit, s03_hist, s03_refuse, public.accounts;
DROP SCHEMA s03_app CASCADE;
DROP FUNCTION s03_progress(text), s03_history(text), s03_run_in_function();
