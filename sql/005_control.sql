--
-- 005_control: mig_start, mig_pause, mig_resume, mig_cancel and mig_reset of
-- managed migrations, every transition of the README's table and every
-- refusal; CALL mig_run stops at the next batch boundary when the migration
-- is paused or cancelled, and a resumed run goes on from the cursor.
--
-- As in 004, a database of its own keeps the background worker out of it:
-- mig_start and mig_resume warn that no worker will run the migration.
--
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_mr_control;
CREATE DATABASE regress_mr_control;
\c regress_mr_control
SET client_min_messages = warning;
CREATE EXTENSION migration_runner;
RESET client_min_messages;

CREATE FUNCTION state(n text)
RETURNS TABLE (status text, processed bigint, batches bigint, cursor text[],
			   high_water text[], history bigint, error text,
			   started boolean, completed boolean, runner_left boolean)
LANGUAGE sql AS $$
	SELECT status, processed, batches, cursor, high_water,
		   (SELECT count(*) FROM migration_batches b WHERE b.migration_id = m.id),
		   error, started_at IS NOT NULL, completed_at IS NOT NULL, worker_pid IS NOT NULL
	  FROM migrations m WHERE name = n
$$;

CREATE TABLE items (id int PRIMARY KEY, touched int NOT NULL DEFAULT 0);
INSERT INTO items SELECT g FROM generate_series(1, 20) g;
SELECT mig_define('ctl_v1', 'items',
  $$UPDATE items SET touched = touched + 1 WHERE id BETWEEN $1 AND $2$$,
  batch_size => 5) > 0 AS defined;

-- ---------------------------------------------------------------------------
-- pending: neither pause nor resume; mig_start makes it running
SELECT mig_pause('ctl_v1');
SELECT mig_resume('ctl_v1');
SELECT mig_start('ctl_v1') > 0 AS started;
SELECT * FROM state('ctl_v1');

-- running: no second start, no reset; resume is only a NOTICE
SELECT mig_start('ctl_v1');
SELECT mig_reset('ctl_v1');
SELECT mig_resume('ctl_v1');

-- running -> paused; pausing again is only a NOTICE
SELECT mig_pause('ctl_v1');
SELECT * FROM state('ctl_v1');
SELECT mig_pause('ctl_v1');

-- paused: no start, no run; mig_resume makes it running again
SELECT mig_start('ctl_v1');
CALL mig_run('ctl_v1');
SELECT mig_resume('ctl_v1');
SELECT * FROM state('ctl_v1');

-- running without a runner: CALL mig_run runs it to the end
CALL mig_run('ctl_v1');
SELECT * FROM state('ctl_v1');
SELECT min(touched), max(touched) FROM items;

-- completed: no pause, resume or cancel; mig_reset makes it pending and
-- forgets its progress and history
SELECT mig_pause('ctl_v1');
SELECT mig_resume('ctl_v1');
SELECT mig_cancel('ctl_v1');
SELECT mig_reset('ctl_v1');
SELECT * FROM state('ctl_v1');
SELECT mig_has_run('ctl_v1') AS has_run_after_reset;

-- pending -> cancelled; cancelling again is only a NOTICE; cancelled refuses
-- pause, resume and run; mig_start runs it again
SELECT mig_cancel('ctl_v1');
SELECT * FROM state('ctl_v1');
SELECT mig_cancel('ctl_v1');
SELECT mig_pause('ctl_v1');
SELECT mig_resume('ctl_v1');
CALL mig_run('ctl_v1');
SELECT mig_start('ctl_v1') > 0 AS started;
SELECT * FROM state('ctl_v1');

-- running -> cancelled and paused -> cancelled
SELECT mig_cancel('ctl_v1');
SELECT mig_start('ctl_v1') > 0 AS started;
SELECT mig_pause('ctl_v1');
SELECT mig_cancel('ctl_v1');
SELECT * FROM state('ctl_v1');
-- cancelled -> pending
SELECT mig_reset('ctl_v1');
SELECT * FROM state('ctl_v1');

-- ---------------------------------------------------------------------------
-- a pause or cancel that commits with a batch stops CALL mig_run at the next
-- batch boundary, with a NOTICE.  To do this in one session, the action
-- itself pauses its migration when it reaches a given key (a second session
-- would do the same between two batches: the change and the batch commit
-- before the runner looks at the status again).
UPDATE items SET touched = 0;
CREATE FUNCTION stop_at(id int, stop_id int, how text, mig text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF id = stop_id THEN
		IF how = 'pause' THEN
			PERFORM mig_pause(mig);
		ELSE
			PERFORM mig_cancel(mig);
		END IF;
	END IF;
	RETURN true;
END
$$;
SELECT mig_define('ctl_pause_v1', 'items',
  $$UPDATE items SET touched = touched + 1
     WHERE id BETWEEN $1 AND $2 AND stop_at(id, 8, 'pause', 'ctl_pause_v1')$$,
  batch_size => 5) > 0 AS defined;
CALL mig_run('ctl_pause_v1');
-- batch 2 (keys 6 to 10) paused the migration and was committed in full
SELECT * FROM state('ctl_pause_v1');
SELECT touched, count(*), min(id), max(id) FROM items GROUP BY touched ORDER BY touched;

-- resumed: it goes on after key 10 and changes no row twice
SELECT mig_resume('ctl_pause_v1');
CALL mig_run('ctl_pause_v1');
SELECT * FROM state('ctl_pause_v1');
SELECT touched, count(*), min(id), max(id) FROM items GROUP BY touched ORDER BY touched;

-- cancelled in batch 3 (keys 11 to 15); mig_start resumes a cancelled
-- managed migration after its cursor
UPDATE items SET touched = 0;
SELECT mig_define('ctl_cancel_v1', 'items',
  $$UPDATE items SET touched = touched + 1
     WHERE id BETWEEN $1 AND $2 AND stop_at(id, 13, 'cancel', 'ctl_cancel_v1')$$,
  batch_size => 5) > 0 AS defined;
CALL mig_run('ctl_cancel_v1');
SELECT * FROM state('ctl_cancel_v1');
SELECT mig_start('ctl_cancel_v1') > 0 AS started;
CALL mig_run('ctl_cancel_v1');
SELECT * FROM state('ctl_cancel_v1');
SELECT touched, count(*), min(id), max(id) FROM items GROUP BY touched ORDER BY touched;

-- a pause in the last batch does not undo the completion it commits with
UPDATE items SET touched = 0;
SELECT mig_define('ctl_last_v1', 'items',
  $$UPDATE items SET touched = touched + 1
     WHERE id BETWEEN $1 AND $2 AND stop_at(id, 20, 'pause', 'ctl_last_v1')$$,
  batch_size => 8) > 0 AS defined;
CALL mig_run('ctl_last_v1');
SELECT * FROM state('ctl_last_v1');
SELECT touched, count(*) FROM items GROUP BY touched ORDER BY touched;

-- ---------------------------------------------------------------------------
-- failed -> pending with mig_reset; the next run starts at the first key
CREATE TABLE frail (id int PRIMARY KEY, d int NOT NULL DEFAULT 1, touched int NOT NULL DEFAULT 0);
INSERT INTO frail (id) SELECT g FROM generate_series(1, 6) g;
UPDATE frail SET d = 0 WHERE id = 5;
SELECT mig_define('ctl_frail_v1', 'frail',
  $$UPDATE frail SET touched = touched + 1 / d WHERE id BETWEEN $1 AND $2$$,
  batch_size => 2) > 0 AS defined;
CALL mig_run('ctl_frail_v1');
SELECT * FROM state('ctl_frail_v1');
-- failed: not paused, not running
SELECT mig_pause('ctl_frail_v1');
SELECT mig_resume('ctl_frail_v1');
SELECT mig_reset('ctl_frail_v1');
SELECT * FROM state('ctl_frail_v1');
UPDATE frail SET d = 1;
CALL mig_run('ctl_frail_v1');
SELECT * FROM state('ctl_frail_v1');
SELECT id, touched FROM frail ORDER BY id;
-- failed -> cancelled
UPDATE frail SET d = 0 WHERE id = 1;
SELECT mig_reset('ctl_frail_v1');
CALL mig_run('ctl_frail_v1');
SELECT mig_cancel('ctl_frail_v1');
SELECT status, error FROM migrations WHERE name = 'ctl_frail_v1';

-- ---------------------------------------------------------------------------
-- unknown names and NULL arguments
SELECT mig_pause('ctl_nope');
SELECT mig_resume('ctl_nope');
SELECT mig_cancel('ctl_nope');
SELECT mig_reset('ctl_nope');
SELECT mig_pause(NULL);
SELECT mig_resume(NULL);
SELECT mig_cancel(NULL);
SELECT mig_reset(NULL);

\c contrib_regression
DROP DATABASE regress_mr_control WITH (FORCE);
