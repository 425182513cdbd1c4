--
-- 004_failure_resume: an action that fails in batch 3 rolls back only that
-- batch and marks the migration failed with the message, the SQLSTATE and
-- the batch's bounds; batches 1 and 2 stay done.  After the data is fixed,
-- mig_start resumes after the last committed batch (DESIGN.md: a managed
-- migration keeps its progress), and no row is changed twice.  Transient
-- errors are retried up to max_retries.
--
-- mig_start of a managed migration wakes the background worker of the
-- database migration_runner.database names (contrib_regression here).  To
-- keep the runs in this session, this file works in a database of its own,
-- which no worker serves; mig_start then warns so, and CALL mig_run runs it.
--
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_mr_failure;
CREATE DATABASE regress_mr_failure;
\c regress_mr_failure
SET client_min_messages = warning;
CREATE EXTENSION migration_runner;
RESET client_min_messages;

CREATE FUNCTION progress(n text)
RETURNS TABLE (status text, processed bigint, scanned bigint, batches bigint,
			   cursor text[], high_water text[], retries bigint, throttled text,
			   runner_left boolean, completed boolean)
LANGUAGE sql AS $$
	SELECT status, processed, scanned, batches, cursor, high_water, retries, throttled,
		   worker_pid IS NOT NULL, completed_at IS NOT NULL
	  FROM migrations WHERE name = n
$$;

-- keys 1..40 without the multiples of 4: 30 keys, batches of 5:
--   1: 1-6   2: 7-13   3: 14-19   4: 21-26   5: 27-33   6: 34-39
-- id 17 (in batch 3) has divisor 0: the action divides by zero there
CREATE TABLE items (
	id		int PRIMARY KEY,
	divisor	int NOT NULL DEFAULT 1,
	val		int,
	touched	int NOT NULL DEFAULT 0
);
INSERT INTO items (id) SELECT g FROM generate_series(1, 40) g WHERE g % 4 <> 0;
UPDATE items SET divisor = 0 WHERE id = 17;

SELECT mig_define('items_val_v1', 'items',
  $$UPDATE items SET val = 100 / divisor, touched = touched + 1 WHERE id BETWEEN $1 AND $2$$,
  batch_size => 5) > 0 AS defined;

-- the run fails in batch 3: an ERROR whose DETAIL is the recorded error
CALL mig_run('items_val_v1');
SELECT * FROM progress('items_val_v1');
SELECT error FROM migrations WHERE name = 'items_val_v1';
SELECT mig_has_run('items_val_v1') AS has_run;
SELECT mig_wait('items_val_v1') AS waited;

-- batches 1 and 2 are committed; batch 3 was rolled back entirely: the
-- history keeps it with its keys, no rows and the error
SELECT batch, first_key, last_key, keys, rows, b.error
  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
 WHERE m.name = 'items_val_v1' ORDER BY batch;
SELECT touched, count(*), min(id), max(id), count(val) AS with_val
  FROM items GROUP BY touched ORDER BY touched;

-- mig_start before the fix: running again, progress kept (a managed
-- migration resumes), error cleared; the run fails at the same batch
SELECT mig_start('items_val_v1') > 0 AS started;
SELECT * FROM progress('items_val_v1');
SELECT error IS NULL AS error_cleared FROM migrations WHERE name = 'items_val_v1';
SELECT mig_start('items_val_v1');
CALL mig_run('items_val_v1');
SELECT * FROM progress('items_val_v1');

-- fix the data, mig_start: the run resumes after key 13 and completes
UPDATE items SET divisor = 4 WHERE id = 17;
SELECT mig_start('items_val_v1') > 0 AS started;
CALL mig_run('items_val_v1');
SELECT * FROM progress('items_val_v1');
SELECT error FROM migrations WHERE name = 'items_val_v1';
SELECT batch, first_key, last_key, keys, rows
  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
 WHERE m.name = 'items_val_v1' ORDER BY batch;

-- every row was changed exactly once
SELECT touched, count(*), min(id), max(id), count(val) AS with_val
  FROM items GROUP BY touched ORDER BY touched;
SELECT val, count(*) FROM items GROUP BY val ORDER BY val;
SELECT mig_has_run('items_val_v1') AS has_run;
SELECT mig_start('items_val_v1');

-- ---------------------------------------------------------------------------
-- a CHECK violation in batch 1 of a two-column key: nothing is committed, the
-- error names the batch's keys.  CALL mig_run resumes a
-- failed migration directly, too.
CREATE TABLE lines (
	order_id	int NOT NULL,
	line_no		int NOT NULL,
	qty			int NOT NULL,
	touched		int NOT NULL DEFAULT 0,
	PRIMARY KEY (order_id, line_no),
	CONSTRAINT lines_qty_positive CHECK (qty > 0)
);
INSERT INTO lines (order_id, line_no, qty)
SELECT o, l, CASE WHEN (o, l) = (1, 2) THEN 1 ELSE 5 END
  FROM generate_series(1, 3) o, generate_series(1, 3) l;
SELECT mig_define('lines_qty_v1', 'lines',
  $$UPDATE lines SET qty = qty - 1, touched = touched + 1
     WHERE (order_id, line_no) BETWEEN ($1, $2) AND ($3, $4)$$,
  batch_size => 4) > 0 AS defined;
CALL mig_run('lines_qty_v1');
SELECT * FROM progress('lines_qty_v1');
SELECT max(touched) AS max_touched FROM lines;
UPDATE lines SET qty = 2 WHERE (order_id, line_no) = (1, 2);
CALL mig_run('lines_qty_v1');
SELECT * FROM progress('lines_qty_v1');
SELECT order_id, array_agg(qty ORDER BY line_no) AS qty, min(touched), max(touched)
  FROM lines GROUP BY order_id ORDER BY order_id;

-- ...and a failure in a later batch of the two-column key names that
-- batch's first and last key; the cursor is the last key of batch 1
UPDATE lines SET qty = CASE WHEN (order_id, line_no) = (3, 1) THEN 1 ELSE 5 END,
	touched = 0;
SELECT mig_reset('lines_qty_v1');
CALL mig_run('lines_qty_v1');
SELECT * FROM progress('lines_qty_v1');
SELECT touched, count(*), array_agg(order_id || '-' || line_no ORDER BY order_id, line_no) AS keys
  FROM lines GROUP BY touched ORDER BY touched;

-- ---------------------------------------------------------------------------
-- transient errors (here a serialization failure, 40001) are retried with a
-- backoff, up to max_retries; the batch's history records its attempts.  The
-- sequence counts the attempts (it is not rolled back with them).
CREATE SEQUENCE attempts;
CREATE FUNCTION flaky(id int, failures int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF id = 17 AND nextval('attempts') <= failures THEN
		RAISE EXCEPTION 'simulated conflict on row %', id
			USING ERRCODE = 'serialization_failure';
	END IF;
	RETURN true;
END
$$;
UPDATE items SET touched = 0;

-- two failures, three attempts allowed: batch 3 succeeds on its third attempt
SELECT mig_define('items_retry_v1', 'items',
  $$UPDATE items SET touched = touched + 1 WHERE id BETWEEN $1 AND $2 AND flaky(id, 2)$$,
  batch_size => 5, max_retries => 2) > 0 AS defined;
CALL mig_run('items_retry_v1');
SELECT * FROM progress('items_retry_v1');
SELECT batch, first_key, last_key, keys, rows, attempts
  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
 WHERE m.name = 'items_retry_v1' ORDER BY batch;
SELECT touched, count(*) FROM items GROUP BY touched ORDER BY touched;

-- more failures than retries: failed, and the error counts the attempts
UPDATE items SET touched = 0;
SELECT setval('attempts', 1, false);
SELECT mig_define('items_retry_v2', 'items',
  $$UPDATE items SET touched = touched + 1 WHERE id BETWEEN $1 AND $2 AND flaky(id, 100)$$,
  batch_size => 5, max_retries => 1) > 0 AS defined;
CALL mig_run('items_retry_v2');
SELECT * FROM progress('items_retry_v2');
SELECT touched, count(*), min(id), max(id) FROM items GROUP BY touched ORDER BY touched;

-- no retries for other errors: a division by zero fails at once
SELECT mig_define('items_no_retry_v1', 'items',
  $$UPDATE items SET val = 1 / (id - 17) WHERE id BETWEEN $1 AND $2$$,
  batch_size => 5, max_retries => 5) > 0 AS defined;
CALL mig_run('items_no_retry_v1');
SELECT status, retries, error FROM migrations WHERE name = 'items_no_retry_v1';

\c contrib_regression
DROP DATABASE regress_mr_failure WITH (FORCE);
