-- Runs: CALL mig_run end to end, a failing action and its resumption, a
-- composite key, and (when migration_runner.databases serves this database)
-- the background worker.  CALL mig_run commits after every batch, so this
-- file runs without a wrapping transaction and drops what it created at the
-- end.
\set VERBOSITY terse
SET client_min_messages = warning;
SET search_path = public;
SELECT plan(45);

-- the invariants of every catalog row (see 04_invariants.sql), after a run:
-- no runner left behind, and the cursor never beyond the high-water mark
CREATE TEMP VIEW tap_violations AS
SELECT m.name, i.name_ FROM migrations m, LATERAL (VALUES
	('completed_at iff completed', (m.status = 'completed') = (m.completed_at IS NOT NULL)),
	('counters never negative', m.processed >= 0 AND m.scanned >= 0 AND m.batches >= 0),
	('processed at most scanned for an UPDATE of the batch', m.processed <= m.scanned),
	('no runner left', m.worker_pid IS NULL),
	('a failure has an error', m.status <> 'failed' OR m.error IS NOT NULL),
	('cursor and high water have the key''s arity',
	 (m.cursor IS NULL OR cardinality(m.cursor) = cardinality(m.key_columns))
	 AND (m.high_water IS NULL OR cardinality(m.high_water) = cardinality(m.key_columns))),
	('history within the batches done',
	 (SELECT coalesce(max(b.batch), 0) FROM migration_batches b WHERE b.migration_id = m.id) <= m.batches)
) AS i(name_, ok)
WHERE i.ok IS NOT TRUE;

-- ---------------------------------------------------------------------------
-- 1. a run to completion: 250 keys in batches of 40; 25 rows need no change
CREATE TABLE tap_run_users (
	id int PRIMARY KEY,
	inserted_at timestamptz NOT NULL DEFAULT '2024-01-01',
	created_at timestamptz,
	touched int NOT NULL DEFAULT 0);
INSERT INTO tap_run_users (id, created_at)
SELECT g, CASE WHEN g % 10 = 0 THEN '2023-01-01'::timestamptz END FROM generate_series(1, 250) g;
SELECT ok(mig_define('tap_run_v1', 'tap_run_users',
					 $$UPDATE tap_run_users SET created_at = inserted_at, touched = touched + 1
					   WHERE id BETWEEN $1 AND $2 AND created_at IS NULL$$,
					 batch_size => 40) > 0, 'defined');

CALL mig_run('tap_run_v1');

SELECT is((SELECT ROW(status, processed, scanned, batches, cursor, high_water, error)::text
			 FROM migrations WHERE name = 'tap_run_v1'),
		  ROW('completed', 225, 250, 7, '{250}'::text[], '{250}'::text[], NULL::text)::text,
		  'completed: 225 rows changed, 250 keys in 7 batches, cursor at the last key');
SELECT ok((SELECT started_at IS NOT NULL AND completed_at >= started_at AND last_batch_at IS NOT NULL
			 FROM migrations WHERE name = 'tap_run_v1'), 'started_at <= completed_at, last_batch_at set');
SELECT is(mig_has_run('tap_run_v1'), true, 'mig_has_run is true');
SELECT is(mig_wait('tap_run_v1'), 'completed', 'mig_wait returns completed');
SELECT is((SELECT count(*)::int FROM tap_run_users WHERE touched = 1), 225, 'every row that needed it changed');
SELECT is((SELECT max(touched) FROM tap_run_users), 1, 'no row changed twice');
SELECT is((SELECT count(*)::int FROM tap_run_users WHERE created_at IS NULL), 0, 'no row left behind');
SELECT is((SELECT count(*)::int FROM tap_run_users WHERE created_at = '2023-01-01'), 25,
		  'rows that had a value kept it');

-- the batch history tiles the key range
SELECT is((SELECT ROW(count(*), min(batch), max(batch), sum(keys), sum(rows))::text
			 FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
			WHERE m.name = 'tap_run_v1'),
		  ROW(7, 1, 7, 250, 225)::text, 'history: batches 1 to 7, 250 keys, 225 rows');
SELECT is_empty(
	$$SELECT 1 FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
	   WHERE m.name = 'tap_run_v1'
		 AND (b.keys > 40 OR b.keys < 1 OR b.rows > b.keys OR b.attempts <> 1
			  OR b.error IS NOT NULL OR b.first_key[1]::int > b.last_key[1]::int)$$,
	'history: each batch has 1 to 40 keys, first <= last, one attempt, no error');
SELECT is_empty(
	$$SELECT 1 FROM (
		SELECT b.first_key[1]::int AS first_key,
			   lag(b.last_key[1]::int) OVER (ORDER BY b.batch) AS prev_last,
			   b.batch
		  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
		 WHERE m.name = 'tap_run_v1') s
	   WHERE (batch = 1 AND first_key <> 1) OR (batch > 1 AND first_key <= prev_last)$$,
	'history: batch 1 starts at the first key and each batch starts after the previous one');
SELECT is((SELECT ROW(percent, total_estimate, worker_pid)::text FROM mig_status WHERE name = 'tap_run_v1'),
		  ROW(100.0, 250, NULL::int)::text, 'mig_status: 100 percent of 250, no worker');

-- running a completed migration again does nothing
CALL mig_run('tap_run_v1');
SELECT is((SELECT ROW(status, processed, batches)::text FROM migrations WHERE name = 'tap_run_v1'),
		  ROW('completed', 225, 7)::text, 'CALL mig_run of a completed migration changes nothing');
SELECT is((SELECT max(touched) FROM tap_run_users), 1, 'and touches no row');

-- ---------------------------------------------------------------------------
-- 2. an action that fails in batch 6, then succeeds after the data is fixed
CREATE TABLE tap_run_div (id int PRIMARY KEY, d int NOT NULL, v int, n int NOT NULL DEFAULT 0);
INSERT INTO tap_run_div (id, d) SELECT g, CASE WHEN g = 57 THEN 0 ELSE 1 END FROM generate_series(1, 100) g;
SELECT ok(mig_define('tap_div_v1', 'tap_run_div',
					 'UPDATE tap_run_div SET v = 100 / d, n = n + 1 WHERE id BETWEEN $1 AND $2',
					 batch_size => 10) > 0, 'defined a migration that will fail');

\set ON_ERROR_STOP 0
CALL mig_run('tap_div_v1');
\set ON_ERROR_STOP 1
SELECT is(:'LAST_ERROR_SQLSTATE'::text, '22012', 'CALL mig_run raises the failing batch''s own SQLSTATE (22012, division by zero)');
SELECT is(:'LAST_ERROR_MESSAGE'::text, 'migration "tap_div_v1" failed', 'with the migration''s name');
SELECT is((SELECT ROW(status, processed, batches, cursor, completed_at)::text
			 FROM migrations WHERE name = 'tap_div_v1'),
		  ROW('failed', 50, 5, '{50}'::text[], NULL::timestamptz)::text,
		  'failed after 5 committed batches, cursor at 50');
-- the README documents the error as
-- "message (SQLSTATE xxxxx) in batch N (keys (F) to (L), batch size S)"
SELECT is((SELECT error FROM migrations WHERE name = 'tap_div_v1'),
		  'division by zero (SQLSTATE 22012) in batch 6 (keys (51) to (60), batch size 10)',
		  'the error has the message, SQLSTATE, batch number, the batch''s keys and size');
SELECT is((SELECT count(*)::int FROM tap_run_div WHERE n = 1), 50, 'the committed batches'' rows are changed');
SELECT is((SELECT count(*)::int FROM tap_run_div WHERE id > 50 AND n <> 0), 0,
		  'the failed batch was rolled back entirely');
SELECT is(mig_has_run('tap_div_v1'), false, 'a failed migration has not run');
SELECT is(mig_wait('tap_div_v1', '0'), 'failed', 'mig_wait returns failed');

UPDATE tap_run_div SET d = 1 WHERE id = 57;
CALL mig_run('tap_div_v1');
SELECT is((SELECT ROW(status, processed, batches, cursor, error)::text
			 FROM migrations WHERE name = 'tap_div_v1'),
		  ROW('completed', 100, 10, '{100}'::text[], NULL::text)::text,
		  'run again, it resumed after the last committed batch and completed');
SELECT is((SELECT ROW(min(n), max(n), count(*))::text FROM tap_run_div), ROW(1, 1, 100)::text,
		  'every row changed exactly once across the failure');
SELECT is((SELECT ROW(count(*), sum(keys), min(batch), max(batch))::text
			 FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
			WHERE m.name = 'tap_div_v1'),
		  ROW(10, 100, 1, 10)::text, 'the history has the ten successful batches');

-- ---------------------------------------------------------------------------
-- 3. a two-column key: 30 keys in batches of 7
CREATE TABLE tap_run_pairs (a int NOT NULL, b text NOT NULL, v int NOT NULL DEFAULT 0, UNIQUE (a, b));
INSERT INTO tap_run_pairs (a, b) SELECT i, 'x' || lpad(j::text, 2, '0')
  FROM generate_series(1, 3) i, generate_series(1, 10) j;
SELECT ok(mig_define('tap_pairs_v1', 'tap_run_pairs',
					 'UPDATE tap_run_pairs SET v = v + 1 WHERE (a, b) >= ($1, $2) AND (a, b) <= ($3, $4)',
					 batch_size => 7, key_columns => ARRAY['a', 'b']) > 0, 'defined with a two-column key');
CALL mig_run('tap_pairs_v1');
SELECT is((SELECT ROW(status, processed, scanned, batches, cursor, high_water)::text
			 FROM migrations WHERE name = 'tap_pairs_v1'),
		  ROW('completed', 30, 30, 5, '{3,x10}'::text[], '{3,x10}'::text[])::text,
		  'completed in 5 batches, cursor at the last key');
SELECT is((SELECT ROW(min(v), max(v))::text FROM tap_run_pairs), ROW(1, 1)::text,
		  'every row changed exactly once');
SELECT is((SELECT array_agg(ROW(first_key, last_key)::text ORDER BY batch)
			 FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
			WHERE m.name = 'tap_pairs_v1'),
		  ARRAY['("{1,x01}","{1,x07}")', '("{1,x08}","{2,x04}")', '("{2,x05}","{3,x01}")',
				'("{3,x02}","{3,x08}")', '("{3,x09}","{3,x10}")'],
		  'the batches'' bounds follow the key order across the first column');

-- ---------------------------------------------------------------------------
-- 4. an empty table completes at once, with no batch
CREATE TABLE tap_run_empty (id int PRIMARY KEY, v int);
SELECT ok(mig_define('tap_empty_v1', 'tap_run_empty',
					 'UPDATE tap_run_empty SET v = 1 WHERE id BETWEEN $1 AND $2') > 0, 'defined on an empty table');
CALL mig_run('tap_empty_v1');
SELECT is((SELECT ROW(status, processed, scanned, batches, cursor)::text
			 FROM migrations WHERE name = 'tap_empty_v1'),
		  ROW('completed', 0, 0, 0, NULL::text[])::text, 'an empty table completes with no batch');
SELECT is((SELECT percent FROM mig_status WHERE name = 'tap_empty_v1'), 100.0, 'mig_status: 100 percent');

-- ---------------------------------------------------------------------------
-- 5. a last batch of exactly batch_size keys: an empty probe then completes
-- the migration, and the probe is not counted as a batch
CREATE TABLE tap_run_grow (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO tap_run_grow (id) SELECT generate_series(1, 20);
SELECT ok(mig_define('tap_grow_v1', 'tap_run_grow',
					 'UPDATE tap_run_grow SET v = v + 1 WHERE id BETWEEN $1 AND $2',
					 batch_size => 10) > 0, 'defined: 20 keys in batches of 10');
CALL mig_run('tap_grow_v1');
SELECT is((SELECT ROW(status, processed, scanned, batches, high_water)::text
			 FROM migrations WHERE name = 'tap_grow_v1'),
		  ROW('completed', 20, 20, 2, '{20}'::text[])::text,
		  'two full batches; the empty probe that completes it is not a batch');
SELECT is((SELECT count(*)::int FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
			WHERE m.name = 'tap_grow_v1'), 2, 'the history has two batches');

-- ---------------------------------------------------------------------------
-- 6. the background worker, when this database is served
SELECT current_setting('migration_runner.databases', true) IN ('*', current_database()) AS worker_here \gset
\if :worker_here
CREATE TABLE tap_run_worker (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO tap_run_worker (id) SELECT generate_series(1, 500);
SELECT ok(mig_define('tap_worker_v1', 'tap_run_worker',
					 'UPDATE tap_run_worker SET v = v + 1 WHERE id BETWEEN $1 AND $2',
					 batch_size => 50) > 0, 'defined for the worker');
SELECT ok(mig_start('tap_worker_v1') > 0, 'started: the worker takes it');
SELECT is(mig_wait('tap_worker_v1', '60 s'), 'completed', 'the worker completes it (mig_wait)');
SELECT is((SELECT ROW(status, processed, batches, worker_pid)::text FROM migrations WHERE name = 'tap_worker_v1'),
		  ROW('completed', 500, 10, NULL::int)::text, 'completed by the worker in 10 batches, no worker left');
SELECT is((SELECT ROW(min(v), max(v))::text FROM tap_run_worker), ROW(1, 1)::text,
		  'the worker changed every row exactly once');
DROP TABLE tap_run_worker;
\else
SELECT skip('the background workers serve other databases (migration_runner.databases)', 5);
\endif

-- ---------------------------------------------------------------------------
SELECT is_empty('SELECT * FROM tap_violations', 'the invariants hold for every migration after the runs');
SELECT is((SELECT count(*)::int FROM migrations WHERE status = 'completed'),
		  (SELECT count(*)::int FROM migrations), 'every migration of this file completed');

-- clean up (the migrations' rows first: they name the tables)
DELETE FROM migrations WHERE name LIKE 'tap\_%';
SELECT is_empty($$SELECT 1 FROM migration_batches$$, 'deleting the migrations deleted their history');
DROP TABLE tap_run_users, tap_run_div, tap_run_pairs, tap_run_empty, tap_run_grow;
DROP VIEW tap_violations;

SELECT * FROM finish();
