--
-- 081_verify: a migration's verify query, a SELECT that returns the rows the
-- migration got wrong.  mig_define checks it like the action (one SELECT,
-- analyzed with the key's parameters under the pinned search_path, the
-- definer's privileges).  With the key parameters it runs after the action
-- in every batch, and a row it returns fails that batch (SQLSTATE 23514);
-- without them it runs once, when no key is left, before the migration is
-- completed: 'verifying' in mig_status while it runs, failed with the number
-- of rows and the first of them when it returns any.
--
-- CALL mig_run runs everything in this session, in a database of its own
-- that no worker serves (as in 004_failure_resume).  A verify query can see
-- its own migration: note_status() reports mig_status's status as a NOTICE.
--
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_mr_verify;
CREATE DATABASE regress_mr_verify;
\c regress_mr_verify
SET client_min_messages = warning;
CREATE EXTENSION migration_runner;
DROP ROLE IF EXISTS regress_mr_verifier;
RESET client_min_messages;

CREATE FUNCTION v_err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; det text;
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL;
	RETURN st || ': ' || msg || coalesce(E'\nDETAIL: ' || nullif(det, ''), '');
END $$;

CREATE FUNCTION progress(n text)
RETURNS TABLE (status text, view_status text, processed bigint, batches bigint,
			   verifying boolean, completed boolean, runner_left boolean)
LANGUAGE sql AS $$
	SELECT m.status, s.status, m.processed, m.batches, m.verifying_since IS NOT NULL,
		   m.completed_at IS NOT NULL, m.worker_pid IS NOT NULL
	  FROM migrations m JOIN mig_status s USING (id) WHERE m.name = n
$$;

-- what mig_status says about a migration, from inside its verify query
CREATE FUNCTION note_status(n text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'mig_status of %: %', n, (SELECT status FROM mig_status WHERE name = n);
	RETURN true;
END $$;

-- items 1..20; the migrations fill doubled = val * 2
CREATE TABLE items (id int PRIMARY KEY, val int NOT NULL, doubled int);
INSERT INTO items (id, val) SELECT g, g FROM generate_series(1, 20) g;

-- ---------------------------------------------------------------------------
-- 1. Checked at define time; nothing is defined when it is refused.
SELECT v_err($$SELECT mig_define('bad', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	verify => 'VACUUM items')$$);
SELECT v_err($$SELECT mig_define('bad', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	verify => 'SELECT 1; SELECT 2')$$);
SELECT v_err($$SELECT mig_define('bad', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	verify => 'INSERT INTO items VALUES (100, 1) RETURNING *')$$);
SELECT v_err($$SELECT mig_define('bad', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	verify => 'WITH d AS (DELETE FROM items RETURNING *) SELECT * FROM d')$$);
SELECT v_err($$SELECT mig_define('bad', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	verify => 'SELECT * FROM items WHERE id BETWEEN $1 AND $2 FOR UPDATE')$$);
SELECT v_err($$SELECT mig_define('bad', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	verify => 'SELECT * FROM items WHERE nope > 0')$$);
-- a one-column key has $1 and $2 only
SELECT v_err($$SELECT mig_define('bad', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	verify => 'SELECT * FROM items WHERE id = $5')$$);
-- the definer must be able to read what the verify query reads
CREATE TABLE secrets (id int PRIMARY KEY);
CREATE ROLE regress_mr_verifier;
GRANT SELECT, UPDATE ON items TO regress_mr_verifier;
SET ROLE regress_mr_verifier;
SELECT v_err($$SELECT mig_define('bad', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	verify => 'SELECT * FROM secrets')$$);
SELECT v_err($$SELECT mig_define('bad', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	verify => 'SELECT * FROM items WHERE doubled <> val * 2')$$);
RESET ROLE;
SELECT name, owner FROM migrations ORDER BY id;
SELECT mig_drop('bad');

-- ---------------------------------------------------------------------------
-- 2. A verify query with the key parameters runs in every batch, on the
-- batch's keys, while the migration is running.
SELECT mig_define('doubled_v1', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	batch_size => 5,
	verify => 'SELECT id, doubled FROM items WHERE id BETWEEN $1 AND $2 AND doubled IS DISTINCT FROM val * 2
			   UNION ALL SELECT $1, $2 WHERE NOT note_status(''doubled_v1'')') > 0 AS defined;
SELECT verify FROM migrations WHERE name = 'doubled_v1';
CALL mig_run('doubled_v1');
SELECT * FROM progress('doubled_v1');
SELECT count(*) FILTER (WHERE doubled = val * 2) AS right FROM items;

-- redefining it with another verify query, or none, is refused; with the
-- same one it is the same migration
SELECT v_err($$SELECT mig_define('doubled_v1', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2', batch_size => 5,
	verify => 'SELECT id FROM items WHERE id BETWEEN $1 AND $2 AND doubled <> val * 2')$$);
SELECT v_err($$SELECT mig_define('doubled_v1', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2', batch_size => 5)$$);
SELECT mig_define('doubled_v1', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	batch_size => 5,
	verify => 'SELECT id, doubled FROM items WHERE id BETWEEN $1 AND $2 AND doubled IS DISTINCT FROM val * 2
			   UNION ALL SELECT $1, $2 WHERE NOT note_status(''doubled_v1'')') > 0 AS same_again;

-- ---------------------------------------------------------------------------
-- 3. A batch whose verify query returns rows fails, and rolls back: the
-- action skips id 13 (batch 3, keys 11 to 15), so the verify query finds
-- it.  The error names the keys and the number of rows, the detail the
-- first row; batches 1 and 2 stay done, batch 3 changed nothing.
UPDATE items SET doubled = NULL;
SELECT mig_define('doubled_v2', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2 AND id NOT IN (13, 14)',
	batch_size => 5,
	verify => 'SELECT id, doubled FROM items WHERE id BETWEEN $1 AND $2 AND doubled IS DISTINCT FROM val * 2 ORDER BY id') > 0 AS defined;
CALL mig_run('doubled_v2');
SELECT * FROM progress('doubled_v2');
SELECT error, error_detail FROM migrations WHERE name = 'doubled_v2';
SELECT batch, first_key, last_key, rows, b.error FROM migration_batches b
  JOIN migrations m ON m.id = b.migration_id WHERE m.name = 'doubled_v2' ORDER BY batch;
SELECT count(doubled) AS filled, min(id) FILTER (WHERE doubled IS NULL) AS first_empty FROM items;

-- ---------------------------------------------------------------------------
-- 4. A verify query without the parameters runs once, after the last batch,
-- while mig_status says 'verifying'; it passes: completed.
UPDATE items SET doubled = NULL;
SELECT mig_define('doubled_v3', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	batch_size => 5,
	verify => 'SELECT id FROM items WHERE doubled IS DISTINCT FROM val * 2
			   UNION ALL SELECT NULL WHERE NOT note_status(''doubled_v3'')') > 0 AS defined;
CALL mig_run('doubled_v3');
SELECT * FROM progress('doubled_v3');
SELECT count(*) FILTER (WHERE doubled = val * 2) AS right FROM items;

-- ---------------------------------------------------------------------------
-- 5. A final verify query that returns rows fails the migration with their
-- number and the first of them; its batches stay done.
UPDATE items SET doubled = NULL;
SELECT mig_define('doubled_v4', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2 AND id NOT IN (7, 9, 19)',
	batch_size => 5,
	verify => 'SELECT id, val, doubled FROM items WHERE doubled IS DISTINCT FROM val * 2 ORDER BY id') > 0 AS defined;
CALL mig_run('doubled_v4');
SELECT * FROM progress('doubled_v4');
SELECT error, error_detail FROM migrations WHERE name = 'doubled_v4';
SELECT count(doubled) AS filled FROM items;

-- running it again without a fix verifies again: failed again
CALL mig_run('doubled_v4');
SELECT * FROM progress('doubled_v4');

-- mig_resume is for a paused migration; mig_start (or CALL mig_run) takes a
-- failed one: after the data is fixed the check passes, and it completes
-- without running any batch again
SELECT mig_resume('doubled_v4');
UPDATE items SET doubled = val * 2 WHERE id IN (7, 9, 19);
SELECT mig_start('doubled_v4') > 0 AS started;
SELECT * FROM progress('doubled_v4');
CALL mig_run('doubled_v4');
SELECT * FROM progress('doubled_v4');
SELECT error, error_detail FROM migrations WHERE name = 'doubled_v4';

-- ---------------------------------------------------------------------------
-- 6. An error in the final verify query fails the migration with its
-- message; an empty relation is verified too.
SELECT mig_define('doubled_v5', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	batch_size => 50, verify => 'SELECT id FROM items WHERE 1 / (id - 20) > 1') > 0 AS defined;
CALL mig_run('doubled_v5');
SELECT status, error FROM migrations WHERE name = 'doubled_v5';
-- our statement timeout in the verify query is retried up to max_retries
SELECT mig_define('doubled_v8', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	batch_size => 50, statement_timeout => '50ms', max_retries => 1,
	verify => 'SELECT s FROM (SELECT pg_sleep(5)::text AS s) x WHERE s IS NULL') > 0 AS defined;
CALL mig_run('doubled_v8');
SELECT status, retries, error FROM migrations WHERE name = 'doubled_v8';
-- a wide row is cut in the detail
SELECT mig_define('doubled_v9', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	verify => 'SELECT id, repeat(''x'', 2000) AS wide, 1 AS last FROM items WHERE id = 3') > 0 AS defined;
\set VERBOSITY terse
CALL mig_run('doubled_v9');
\set VERBOSITY default
SELECT left(error_detail, 25) AS starts, length(error_detail) AS len, right(error_detail, 4) AS ends
  FROM migrations WHERE name = 'doubled_v9';
-- a table the verify query reads, dropped before the run: the run fails at
-- its start, and the context names the verify query
CREATE TABLE doomed (id int);
SELECT mig_define('doubled_v10', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	verify => 'SELECT id FROM doomed') > 0 AS defined;
DROP TABLE doomed;
CALL mig_run('doubled_v10');
SELECT status, batches, error, error_context FROM migrations WHERE name = 'doubled_v10';
CREATE TABLE empty_items (id int PRIMARY KEY, v int);
SELECT mig_define('empty_v1', 'empty_items',
	'UPDATE empty_items SET v = 1 WHERE id BETWEEN $1 AND $2',
	verify => 'SELECT 42 AS answer') > 0 AS defined;
CALL mig_run('empty_v1');
SELECT status, error, error_detail FROM migrations WHERE name = 'empty_v1';

-- ---------------------------------------------------------------------------
-- 7. In slices (CALL runs them one after another): the final verify query
-- runs once, when the last slice is done.
UPDATE items SET doubled = NULL;
SELECT mig_define('doubled_v6', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	batch_size => 2, parallel => 2,
	verify => 'SELECT id FROM items WHERE doubled IS DISTINCT FROM val * 2
			   UNION ALL SELECT NULL WHERE NOT note_status(''doubled_v6'')') > 0 AS defined;
CALL mig_run('doubled_v6');
SELECT * FROM progress('doubled_v6');
SELECT count(*) AS slices_left FROM migration_slices;
SELECT count(*) FILTER (WHERE doubled = val * 2) AS right FROM items;

-- ---------------------------------------------------------------------------
-- 8. Odd session settings: the verify query runs under the search_path
-- pinned at define time (pg_temp last), so a temporary table named like the
-- table it reads is not the one it reads.
CREATE TABLE audit (id int);
UPDATE items SET doubled = NULL;
SELECT mig_define('doubled_v7', 'items',
	'UPDATE items SET doubled = val * 2 WHERE id BETWEEN $1 AND $2',
	batch_size => 8, verify => 'SELECT id AS audit_id FROM audit') > 0 AS defined;
CREATE TEMP TABLE audit (id int);
INSERT INTO audit VALUES (1), (2);
SET search_path = pg_temp, public;
SET statement_timeout = '1h';
SET DateStyle = 'SQL, DMY';
CALL mig_run('doubled_v7');
RESET search_path;
RESET statement_timeout;
RESET DateStyle;
SELECT * FROM progress('doubled_v7');
-- and the real table is: a row in it fails the check
INSERT INTO public.audit VALUES (3);
SELECT mig_start('doubled_v7');
SELECT mig_reset('doubled_v7');
CALL mig_run('doubled_v7');
SELECT status, error, error_detail FROM migrations WHERE name = 'doubled_v7';

\c contrib_regression
DROP DATABASE regress_mr_verify WITH (FORCE);
DROP ROLE regress_mr_verifier;
