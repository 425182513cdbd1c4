--
-- 080_skip: on_error 'skip'.  A batch that fails with a data error (class
-- 22 or 23, or RAISE EXCEPTION) is narrowed down, over the next batches, to
-- the keys whose action fails; each such key is skipped with its error in
-- migration_skipped, in the transaction that moves the cursor past it, and
-- every other key is migrated exactly once.  More than max_skipped skips
-- fail the migration; transient errors are retried, never skipped; with
-- on_error 'fail' nothing changes.  mig_retry_skipped runs the action again
-- for the skipped keys, as their owner, once the data is fixed.
--
-- Like 004, this file works in a database of its own, which no worker
-- serves, and runs the migrations with CALL mig_run.
--
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_mr_skip;
CREATE DATABASE regress_mr_skip;
\c regress_mr_skip
SET client_min_messages = warning;
CREATE EXTENSION migration_runner;
DROP ROLE IF EXISTS regress_skip_alice;
DROP ROLE IF EXISTS regress_skip_bob;
RESET client_min_messages;
CREATE ROLE regress_skip_alice;
CREATE ROLE regress_skip_bob;

CREATE FUNCTION progress(n text)
RETURNS TABLE (status text, processed bigint, scanned bigint, skipped bigint,
			   max_skipped bigint, retries bigint, cursor text[], error text)
LANGUAGE sql AS $$
	SELECT status, processed, scanned, skipped, max_skipped, retries, cursor, error
	  FROM migrations WHERE name = n
$$;

CREATE FUNCTION skipped_keys(n text)
RETURNS TABLE (key text, sqlstate text, error text, error_detail text, slice integer)
LANGUAGE sql AS $$
	SELECT s.key, s.sqlstate, s.error, s.error_detail, s.slice
	  FROM migration_skipped s JOIN migrations m ON m.id = s.migration_id
	 WHERE m.name = n ORDER BY (s.key::text[])[1]::int
$$;

-- ids 1..40; raw is the text to convert into amount.  Four poison rows:
-- 7 and 23 are not numbers (22P02), 31 is negative (the CHECK, 23514),
-- 38 makes the check function raise (P0001, with a DETAIL)
CREATE TABLE accounts (
	id		int PRIMARY KEY,
	raw		text NOT NULL,
	amount	int CHECK (amount >= 0),
	who		text,
	n		int NOT NULL DEFAULT 0
);
INSERT INTO accounts (id, raw) SELECT g, (g * 10)::text FROM generate_series(1, 40) g;
UPDATE accounts SET raw = 'x' || id WHERE id IN (7, 23);
UPDATE accounts SET raw = '-5' WHERE id = 31;
UPDATE accounts SET raw = '999' WHERE id = 38;
CREATE FUNCTION checked(v int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
	IF v = 999 THEN
		RAISE EXCEPTION 'amount % is reserved', v USING DETAIL = 'Reserved amounts are refused.';
	END IF;
	RETURN v;
END
$$;
GRANT SELECT, UPDATE ON accounts TO regress_skip_alice;
GRANT EXECUTE ON FUNCTION checked(int) TO regress_skip_alice;

-- defined by alice: the action runs as alice, and records it in who
SET ROLE regress_skip_alice;
SELECT mig_define('accounts_v1', 'accounts',
  $$UPDATE accounts SET amount = checked(raw::int), who = current_user, n = n + 1
     WHERE id BETWEEN $1 AND $2$$,
  batch_size => 10, on_error => 'skip', max_skipped => 5) > 0 AS defined;
CALL mig_run('accounts_v1');
RESET ROLE;

-- completed: 36 rows changed, the 4 poison keys skipped with their errors
SELECT * FROM progress('accounts_v1');
SELECT * FROM skipped_keys('accounts_v1');
SELECT error_context FROM migration_skipped WHERE key = '{7}';
SELECT skipped FROM mig_status WHERE name = 'accounts_v1';
SELECT n, count(*), array_agg(id ORDER BY id) FILTER (WHERE n <> 1) AS ids,
	   count(*) FILTER (WHERE who = 'regress_skip_alice') AS by_alice
  FROM accounts GROUP BY n ORDER BY n;
-- the history keeps each skip as a batch of one key, with its error
SELECT b.first_key, b.last_key, b.keys, b.rows, b.error
  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
 WHERE m.name = 'accounts_v1' AND b.error IS NOT NULL ORDER BY b.batch;
-- the batches that committed cover every key once
SELECT sum(b.keys) AS keys, sum(b.rows) AS rows
  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
 WHERE m.name = 'accounts_v1' AND b.error IS NULL;

-- ---------------------------------------------------------------------------
-- mig_retry_skipped: unknown names, non-owners and NULL are refused
SELECT mig_retry_skipped('no_such_migration');
SELECT mig_retry_skipped(NULL);
SET ROLE regress_skip_bob;
SELECT mig_retry_skipped('accounts_v1');
RESET ROLE;
-- nothing fixed yet: every key fails again and stays
SELECT mig_retry_skipped('accounts_v1');
SELECT status, processed, skipped FROM migrations WHERE name = 'accounts_v1';
-- fix two keys and make the check function refuse 31 with another error:
-- 7 and 23 succeed, run as alice (the owner), 31 and 38 stay, 31 with the
-- error of this try
UPDATE accounts SET raw = '70' WHERE id = 7;
UPDATE accounts SET raw = '230' WHERE id = 23;
UPDATE accounts SET raw = '-1' WHERE id = 31;
SELECT mig_retry_skipped('accounts_v1');
SELECT status, processed, skipped FROM migrations WHERE name = 'accounts_v1';
SELECT * FROM skipped_keys('accounts_v1');
SELECT id, amount, who, n FROM accounts WHERE id IN (7, 23, 31, 38) ORDER BY id;
-- the rest, in a transaction that rolls back: nothing changes
UPDATE accounts SET raw = '310' WHERE id = 31;
UPDATE accounts SET raw = '380' WHERE id = 38;
BEGIN;
SELECT mig_retry_skipped('accounts_v1');
ROLLBACK;
SELECT status, processed, skipped FROM migrations WHERE name = 'accounts_v1';
SELECT count(*) AS still_skipped FROM skipped_keys('accounts_v1');
-- ... and for real: every row changed exactly once, by alice
SELECT mig_retry_skipped('accounts_v1');
SELECT * FROM progress('accounts_v1');
SELECT count(*) AS still_skipped FROM skipped_keys('accounts_v1');
SELECT n, count(*), count(*) FILTER (WHERE who = 'regress_skip_alice') AS by_alice,
	   sum(amount) AS amount FROM accounts GROUP BY n ORDER BY n;
-- no keys left: 0
SELECT mig_retry_skipped('accounts_v1');

-- ---------------------------------------------------------------------------
-- max_skipped: the second poison key is one too many.  The migration fails
-- before it (that key is not recorded, the cursor stays before it); after
-- the data is fixed and the first key retried, the run completes
CREATE TABLE items (
	id		int PRIMARY KEY,
	raw		text NOT NULL,
	val		int,
	n		int NOT NULL DEFAULT 0
);
INSERT INTO items (id, raw) SELECT g, g::text FROM generate_series(1, 30) g;
UPDATE items SET raw = 'bad' WHERE id IN (5, 17, 26);
SELECT mig_define('items_v1', 'items',
  $$UPDATE items SET val = raw::int, n = n + 1 WHERE id BETWEEN $1 AND $2$$,
  batch_size => 8, on_error => 'skip', max_skipped => 1) > 0 AS defined;
CALL mig_run('items_v1');
SELECT * FROM progress('items_v1');
SELECT error_detail, error_hint FROM migrations WHERE name = 'items_v1';
SELECT * FROM skipped_keys('items_v1');
SELECT n, count(*), min(id), max(id) FROM items GROUP BY n ORDER BY n;
-- run again unchanged: fails at the same key, nothing recorded twice
CALL mig_run('items_v1');
SELECT status, processed, skipped, cursor FROM migrations WHERE name = 'items_v1';
-- fix 5 and 17 and retry 5: the run goes on, skips 26 (1 key again), completes
UPDATE items SET raw = '5' WHERE id = 5;
UPDATE items SET raw = '17' WHERE id = 17;
SELECT mig_retry_skipped('items_v1');
CALL mig_run('items_v1');
SELECT * FROM progress('items_v1');
SELECT * FROM skipped_keys('items_v1');
SELECT n, count(*), array_agg(id) FILTER (WHERE n <> 1) AS ids FROM items GROUP BY n ORDER BY n;

-- mig_reset forgets the skipped keys: every key is tried again
SELECT mig_reset('items_v1');
SELECT status, skipped FROM migrations WHERE name = 'items_v1';
SELECT count(*) AS skipped_rows FROM skipped_keys('items_v1');

-- ---------------------------------------------------------------------------
-- on_error 'fail' (the default) is unchanged: the first data error fails
-- the migration with the batch's bounds, nothing is skipped
UPDATE items SET n = 0, val = NULL;
SELECT mig_define('items_fail_v1', 'items',
  $$UPDATE items SET val = raw::int, n = n + 1 WHERE id BETWEEN $1 AND $2$$,
  batch_size => 8) > 0 AS defined;
CALL mig_run('items_fail_v1');
SELECT * FROM progress('items_fail_v1');
SELECT count(*) AS skipped_rows FROM skipped_keys('items_fail_v1');
SELECT n, count(*) FROM items GROUP BY n ORDER BY n;

-- ---------------------------------------------------------------------------
-- transient errors are retried, not skipped: a serialization failure on
-- key 10 every time fails the migration after max_retries
CREATE FUNCTION conflict(id int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF id = 10 THEN
		RAISE EXCEPTION 'simulated conflict on row %', id
			USING ERRCODE = 'serialization_failure';
	END IF;
	RETURN true;
END
$$;
UPDATE items SET n = 0;
SELECT mig_define('items_transient_v1', 'items',
  $$UPDATE items SET n = n + 1 WHERE id BETWEEN $1 AND $2 AND conflict(id)$$,
  batch_size => 8, max_retries => 1, on_error => 'skip') > 0 AS defined;
CALL mig_run('items_transient_v1');
SELECT * FROM progress('items_transient_v1');
SELECT count(*) AS skipped_rows FROM skipped_keys('items_transient_v1');
SELECT n, count(*), min(id), max(id) FROM items GROUP BY n ORDER BY n;

-- ... and neither is the batch's own statement_timeout (57014): key 10
-- sleeps past it every time; the batch is halved, retried, then failed
UPDATE items SET n = 0;
SELECT mig_define('items_timeout_v1', 'items',
  $$UPDATE items SET n = n + 1 WHERE id BETWEEN $1 AND $2
       AND (id <> 10 OR pg_sleep(0.3) IS NOT NULL)$$,
  batch_size => 8, max_retries => 1, statement_timeout => '50ms',
  on_error => 'skip') > 0 AS defined;
CALL mig_run('items_timeout_v1');
SELECT status, processed, skipped, cursor FROM migrations WHERE name = 'items_timeout_v1';
SELECT count(*) AS skipped_rows FROM skipped_keys('items_timeout_v1');

-- ---------------------------------------------------------------------------
-- slices under CALL mig_run: each slice skips its own keys, and moves its
-- own cursor past them
CREATE TABLE parts (id int PRIMARY KEY, raw text NOT NULL, val int, n int NOT NULL DEFAULT 0);
INSERT INTO parts (id, raw) SELECT g, g::text FROM generate_series(1, 60) g;
UPDATE parts SET raw = 'bad' WHERE id IN (3, 4, 29, 41, 60);
SELECT mig_define('parts_v1', 'parts',
  $$UPDATE parts SET val = raw::int, n = n + 1 WHERE id BETWEEN $1 AND $2$$,
  batch_size => 5, parallel => 2, on_error => 'skip') > 0 AS defined;
CALL mig_run('parts_v1');
SELECT * FROM progress('parts_v1');
SELECT key, sqlstate, error, slice FROM skipped_keys('parts_v1');
SELECT count(DISTINCT slice) AS slices FROM migration_batches b
  JOIN migrations m ON m.id = b.migration_id WHERE m.name = 'parts_v1';
SELECT n, count(*), array_agg(id ORDER BY id) FILTER (WHERE n <> 1) AS ids
  FROM parts GROUP BY n ORDER BY n;

-- ---------------------------------------------------------------------------
-- a key of two columns, one of them text with a comma and a quote: the
-- skipped key is kept as the cursor keeps keys (text[]), and
-- mig_retry_skipped reads it back to the same key
CREATE TABLE lines (
	order_id	int NOT NULL,
	code		text NOT NULL,
	qty			text NOT NULL,
	val			int,
	n			int NOT NULL DEFAULT 0,
	PRIMARY KEY (order_id, code)
);
INSERT INTO lines SELECT o, c, '1' FROM generate_series(1, 3) o,
	unnest(ARRAY['a', 'b,c', 'd"e']) c;
UPDATE lines SET qty = 'one' WHERE (order_id, code) = (2, 'b,c');
SELECT mig_define('lines_v1', 'lines',
  $$UPDATE lines SET val = qty::int, n = n + 1
     WHERE (order_id, code) BETWEEN ($1, $2) AND ($3, $4)$$,
  batch_size => 4, on_error => 'skip') > 0 AS defined;
CALL mig_run('lines_v1');
SELECT status, processed, skipped, cursor FROM migrations WHERE name = 'lines_v1';
SELECT s.key, s.sqlstate, s.error FROM migration_skipped s
  JOIN migrations m ON m.id = s.migration_id WHERE m.name = 'lines_v1';
UPDATE lines SET qty = '1' WHERE (order_id, code) = (2, 'b,c');
SELECT mig_retry_skipped('lines_v1');
SELECT status, processed, skipped FROM migrations WHERE name = 'lines_v1';
SELECT n, count(*), sum(val) FROM lines GROUP BY n ORDER BY n;

\c contrib_regression
DROP DATABASE regress_mr_skip WITH (FORCE);
DROP ROLE regress_skip_alice;
DROP ROLE regress_skip_bob;
