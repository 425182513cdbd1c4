--
-- 082_dry_run: mig_dry_run runs the next batches of a managed migration
-- through the batch engine, as its owner, and rolls them all back: the
-- bounds, rows, timing and RETURNING sample of each batch; three batches
-- walk three consecutive ranges; the table and the catalog are unchanged
-- afterwards; pending, paused, failed, cancelled and running migrations,
-- and one in slices; the refusals; the owner runs the action whoever calls;
-- an action error propagates with nothing changed; sequences stay advanced.
-- A migration is never left running once a transaction commits, so the
-- background worker has nothing to pick up.
--
CREATE ROLE regress_mr82_owner;
CREATE ROLE regress_mr82_other;
CREATE ROLE regress_mr82_member IN ROLE regress_mr82_owner;
CREATE TABLE d82_t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO d82_t (id) SELECT generate_series(1, 50);
CREATE TABLE d82_log (seq bigserial PRIMARY KEY, who name NOT NULL, key int NOT NULL);
GRANT SELECT, UPDATE ON d82_t TO regress_mr82_owner, regress_mr82_other;
GRANT SELECT, INSERT ON d82_log TO regress_mr82_owner;
GRANT USAGE ON SEQUENCE d82_log_seq_seq TO regress_mr82_owner;

-- everything a run would change: the migration's catalog row, its history
-- and slices, and the table
CREATE FUNCTION d82_state(m text) RETURNS text
LANGUAGE sql AS $$
	SELECT md5(concat_ws('|',
		(SELECT to_jsonb(c) FROM migrations c WHERE c.name = m),
		(SELECT jsonb_agg(to_jsonb(b) ORDER BY b.slice, b.batch)
		   FROM migration_batches b JOIN migrations c ON c.id = b.migration_id
		  WHERE c.name = m),
		(SELECT jsonb_agg(to_jsonb(s) ORDER BY s.slice)
		   FROM migration_slices s JOIN migrations c ON c.id = s.migration_id
		  WHERE c.name = m),
		(SELECT string_agg(t::text, ',' ORDER BY t.id) FROM d82_t t),
		(SELECT count(*) FROM d82_log)))
$$;
CREATE TEMP TABLE d82_saved (name text PRIMARY KEY, state text);
CREATE FUNCTION d82_save(m text) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO d82_saved VALUES (m, d82_state(m))
	ON CONFLICT (name) DO UPDATE SET state = excluded.state
$$;
CREATE FUNCTION d82_unchanged(m text) RETURNS boolean
LANGUAGE sql AS $$
	SELECT state = d82_state(m) FROM d82_saved WHERE name = m
$$;

-- ---------------------------------------------------------------------------
-- an action with RETURNING: one batch by default, after the cursor (none
-- yet: from the first key); the sample shows what the action returned
SELECT mig_define('d82_ret', 'd82_t',
  $$UPDATE d82_t SET n = n + 1 WHERE id BETWEEN $1 AND $2 RETURNING id, n$$,
  batch_size => 5) > 0 AS defined;
SELECT d82_save('d82_ret');
SELECT batch, first_key, last_key, rows, ms >= 0 AS timed, sample
  FROM mig_dry_run('d82_ret');
-- three batches walk three consecutive ranges
SELECT batch, first_key, last_key, rows, sample
  FROM mig_dry_run('d82_ret', 3);
SELECT batch, first_key, last_key, rows FROM mig_dry_run('d82_ret', batches => 2);
-- nothing was changed or recorded: no row of the table, no cursor, no
-- high-water mark, no counter, no history, still pending
SELECT d82_unchanged('d82_ret') AS unchanged;
SELECT count(*) FILTER (WHERE n <> 0) AS changed_rows FROM d82_t;
SELECT status, cursor, high_water, processed, scanned, batches, last_batch_at, started_at
  FROM migrations WHERE name = 'd82_ret';
SELECT count(*) AS history FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
 WHERE m.name = 'd82_ret';

-- the sample holds at most 10 of the rows the action returned
SELECT mig_define('d82_big', 'd82_t',
  $$UPDATE d82_t SET n = n + 1 WHERE id BETWEEN $1 AND $2 RETURNING id$$,
  batch_size => 12) > 0 AS defined;
SELECT batch, first_key, last_key, rows, jsonb_array_length(sample) AS sampled,
	   sample -> 0 AS first, sample -> 9 AS tenth
  FROM mig_dry_run('d82_big', 2);

-- an action without RETURNING: no sample; a RETURNING that returns no row
-- neither
SELECT mig_define('d82_plain', 'd82_t',
  $$UPDATE d82_t SET n = n + 1 WHERE id BETWEEN $1 AND $2$$,
  batch_size => 20) > 0 AS defined;
SELECT batch, first_key, last_key, rows, sample FROM mig_dry_run('d82_plain', 3);
SELECT mig_define('d82_none', 'd82_t',
  $$UPDATE d82_t SET n = n + 1 WHERE id BETWEEN $1 AND $2 AND n < 0 RETURNING id$$,
  batch_size => 25) > 0 AS defined;
SELECT batch, first_key, last_key, rows, sample FROM mig_dry_run('d82_none', 5);
SELECT count(*) FILTER (WHERE n <> 0) AS changed_rows FROM d82_t;

-- ---------------------------------------------------------------------------
-- from the cursor of a migration that ran before (catalog written here as a
-- superuser, as a run would leave it), up to its high-water mark only: keys
-- added since are for another run; and in every status but completed
INSERT INTO d82_t (id) SELECT generate_series(51, 55);
UPDATE migrations SET status = 'paused', cursor = '{35}', high_water = '{50}',
	   processed = 35, scanned = 35, batches = 7, started_at = now()
 WHERE name = 'd82_ret';
SELECT d82_save('d82_ret');
SELECT batch, first_key, last_key, rows, sample -> 0 AS first
  FROM mig_dry_run('d82_ret', 1000);
SELECT d82_unchanged('d82_ret') AS unchanged;
UPDATE migrations SET status = 'failed', error = 'd82 made it fail' WHERE name = 'd82_ret';
SELECT d82_save('d82_ret');
SELECT batch, first_key, last_key, rows FROM mig_dry_run('d82_ret');
SELECT d82_unchanged('d82_ret') AS unchanged;
SELECT mig_cancel('d82_ret');
SELECT d82_save('d82_ret');
SELECT batch, first_key, last_key, rows FROM mig_dry_run('d82_ret');
SELECT d82_unchanged('d82_ret') AS unchanged;
-- running (inside this transaction, paused again before it commits)
BEGIN;
SELECT mig_reset('d82_plain');
SELECT mig_start('d82_plain') > 0 AS started;
SELECT batch, first_key, last_key, rows FROM mig_dry_run('d82_plain');
SELECT status, cursor, batches FROM migrations WHERE name = 'd82_plain';
SELECT mig_pause('d82_plain');
COMMIT;
-- completed: refused, and nothing changes
UPDATE migrations SET status = 'completed', completed_at = now(), error = NULL,
	   cursor = '{50}' WHERE name = 'd82_ret';
SELECT d82_save('d82_ret');
SELECT * FROM mig_dry_run('d82_ret');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT d82_unchanged('d82_ret') AS unchanged;

-- ---------------------------------------------------------------------------
-- a migration in slices is walked slice by slice, each from its cursor to
-- its upper key; done slices are skipped (slices written as a superuser, as
-- a split would leave them)
SELECT mig_define('d82_sliced', 'd82_t',
  $$UPDATE d82_t SET n = n + 1 WHERE id BETWEEN $1 AND $2 RETURNING id$$,
  batch_size => 5, parallel => 3) > 0 AS defined;
UPDATE migrations SET status = 'paused', high_water = '{50}', started_at = now()
 WHERE name = 'd82_sliced';
INSERT INTO migration_slices (migration_id, slice, status, lower_key, upper_key, cursor)
SELECT id, 1, 'running', NULL::text[], '{25}'::text[], '{20}'::text[] FROM migrations WHERE name = 'd82_sliced'
UNION ALL
SELECT id, 2, 'done', '{25}', '{40}', '{40}' FROM migrations WHERE name = 'd82_sliced'
UNION ALL
SELECT id, 3, 'running', '{40}', '{50}', '{40}' FROM migrations WHERE name = 'd82_sliced';
SELECT d82_save('d82_sliced');
SELECT batch, first_key, last_key, rows, sample FROM mig_dry_run('d82_sliced', 10);
SELECT d82_unchanged('d82_sliced') AS unchanged;
SELECT slice, status, cursor FROM mig_slices WHERE name = 'd82_sliced' ORDER BY slice;

-- ---------------------------------------------------------------------------
-- refusals: batches out of range or NULL, an unknown name, a NULL name, an
-- application-driven migration
SELECT * FROM mig_dry_run('d82_big', 0);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM mig_dry_run('d82_big', -1);
SELECT * FROM mig_dry_run('d82_big', 1001);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM mig_dry_run('d82_big', NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT * FROM mig_dry_run('d82_nonexistent');
SELECT * FROM mig_dry_run(NULL);
SELECT mig_start('d82_app') > 0 AS started;
SELECT * FROM mig_dry_run('d82_app');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT mig_complete(id) FROM migrations WHERE name = 'd82_app';

-- ---------------------------------------------------------------------------
-- the action runs as the migration's owner, whoever calls: here it logs
-- current_user; its member may dry-run it, another role may not, even with
-- the privileges the action needs
SET ROLE regress_mr82_owner;
SELECT mig_define('d82_who', 'd82_t',
  $$INSERT INTO d82_log (who, key)
	SELECT current_user, id FROM d82_t WHERE id BETWEEN $1 AND $2
	RETURNING who, key$$,
  batch_size => 2) > 0 AS defined;
RESET ROLE;
SELECT d82_save('d82_who');
SELECT last_value AS seq_before, is_called FROM d82_log_seq_seq;
-- a superuser caller: the sample shows the owner
SELECT current_user = session_user AS as_superuser;
SELECT batch, first_key, last_key, rows, sample FROM mig_dry_run('d82_who', 2);
SET ROLE regress_mr82_member;
SELECT batch, rows, sample FROM mig_dry_run('d82_who');
RESET ROLE;
SET ROLE regress_mr82_other;
SELECT * FROM mig_dry_run('d82_who');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
RESET ROLE;
-- the log is empty again and the catalog unchanged, but what a rollback
-- cannot undo shows: the sequence gave out 6 values (4, then 2) for good
SELECT count(*) AS logged FROM d82_log;
SELECT d82_unchanged('d82_who') AS unchanged;
SELECT last_value AS seq_after, is_called FROM d82_log_seq_seq;

-- ---------------------------------------------------------------------------
-- an error of the action (here in the second batch) propagates, with the
-- batch's bounds, and nothing of the first batch stays either: not in a
-- plain statement, not when a PL/pgSQL block catches it
SELECT mig_define('d82_err', 'd82_t',
  $$UPDATE d82_t SET n = n + 1 / (id - 8) WHERE id BETWEEN $1 AND $2 RETURNING id$$,
  batch_size => 5) > 0 AS defined;
SELECT d82_save('d82_err');
SELECT batch, first_key, last_key FROM mig_dry_run('d82_err', 3);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT d82_unchanged('d82_err') AS unchanged;
SELECT status, error, cursor FROM migrations WHERE name = 'd82_err';
DO $$
BEGIN
	PERFORM mig_dry_run('d82_err', 3);
EXCEPTION WHEN division_by_zero THEN
	RAISE NOTICE 'caught: %', SQLERRM;
END
$$;
SELECT d82_unchanged('d82_err') AS unchanged;
-- the caller's transaction goes on after a caught error, with its own work
BEGIN;
UPDATE d82_t SET n = 100 WHERE id = 1;
SAVEPOINT s;
SELECT * FROM mig_dry_run('d82_err', 3);
ROLLBACK TO s;
SELECT batch, first_key, last_key, rows FROM mig_dry_run('d82_err');
SELECT id, n FROM d82_t WHERE id <= 2 ORDER BY id;
ROLLBACK;

-- the batch's statement_timeout applies to the action
SELECT mig_define('d82_slow', 'd82_t',
  $$UPDATE d82_t SET n = n + 1 WHERE id BETWEEN $1 AND $2 AND pg_sleep(5) IS NOT NULL$$,
  batch_size => 5, statement_timeout => '50 ms') > 0 AS defined;
SELECT * FROM mig_dry_run('d82_slow');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;

-- NOTIFY of the action is rolled back too, and a dry run that reaches the
-- end of the keys sends no state change
LISTEN d82;
LISTEN migration_runner;
SELECT mig_define('d82_notify', 'd82_t',
  $$UPDATE d82_t SET n = n + 1 WHERE id BETWEEN $1 AND $2
	RETURNING pg_notify('d82', id::text)$$,
  batch_size => 40) > 0 AS defined;
SELECT batch, first_key, last_key, rows FROM mig_dry_run('d82_notify', 5);
UNLISTEN *;

-- clean up (a superuser may write the catalog)
DELETE FROM migrations WHERE name LIKE 'd82\_%';
DROP FUNCTION d82_state(text), d82_save(text), d82_unchanged(text);
DROP TABLE d82_t, d82_log;
DROP ROLE regress_mr82_owner, regress_mr82_other, regress_mr82_member;
