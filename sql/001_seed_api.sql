--
-- 001_seed_api: the seed's functions for application-driven migrations
-- (hasMigrationRun, startMigration, updateMigrationProgress,
-- completeMigration, failMigration) and their rules, as in DESIGN.md.
--
-- Ids depend on what ran before in this database, so they are never printed:
-- each id is kept in a psql variable and compared.
--

-- a helper that shows the seed's columns of one migration
CREATE FUNCTION s01_row(n text)
RETURNS TABLE (name text, status text, processed bigint, error text,
			   started boolean, completed boolean, kind text)
LANGUAGE sql AS $$
	SELECT m.name, m.status, m.processed, m.error,
		   m.started_at IS NOT NULL, m.completed_at IS NOT NULL,
		   CASE WHEN m.relation IS NULL THEN 'application' ELSE 'managed' END
	  FROM migrations m WHERE m.name = n
$$;

-- ---------------------------------------------------------------------------
-- mig_has_run: true only when completed; false for an unknown name
SELECT mig_has_run('s01_users_v1') AS has_run_unknown;

-- mig_start of an unknown name: a new row, running, processed = 0, a NOTICE
SELECT mig_start('s01_users_v1') AS id \gset s01_
SELECT :s01_id > 0 AS id_positive,
	   :s01_id = (SELECT id FROM migrations WHERE name = 's01_users_v1') AS id_is_the_row;
SELECT * FROM s01_row('s01_users_v1');
SELECT mig_has_run('s01_users_v1') AS has_run_running;

-- running: ERROR already running (the row is unchanged)
SELECT mig_start('s01_users_v1');
SELECT * FROM s01_row('s01_users_v1');

-- mig_update_progress adds to processed
SELECT mig_update_progress(:s01_id, 100);
SELECT mig_update_progress(:s01_id, 100);
SELECT mig_update_progress(:s01_id, 0);
SELECT mig_update_progress(:s01_id, 42);
SELECT processed FROM migrations WHERE id = :s01_id;

-- several reports in one statement: each one is added
SELECT count(mig_update_progress(:s01_id, 1)) AS reports FROM generate_series(1, 10);
SELECT processed FROM migrations WHERE id = :s01_id;

-- a negative count is an error and changes nothing
SELECT mig_update_progress(:s01_id, -1);
SELECT processed FROM migrations WHERE id = :s01_id;

-- an unknown id is a no-op, as in the seed (no error, no row)
SELECT mig_update_progress(-1, 10) AS unknown_id_is_noop;
SELECT mig_update_progress(9223372036854775807, 10) AS unknown_id_is_noop;
SELECT count(*) AS rows_with_that_id FROM migrations WHERE id IN (-1, 9223372036854775807);

-- mig_complete: completed, completed_at set; mig_has_run is true
SELECT mig_complete(:s01_id);
SELECT * FROM s01_row('s01_users_v1');
SELECT completed_at >= started_at AS completed_after_start FROM migrations WHERE id = :s01_id;
SELECT mig_has_run('s01_users_v1') AS has_run_completed;

-- completed: ERROR already completed
SELECT mig_start('s01_users_v1');
SELECT * FROM s01_row('s01_users_v1');

-- ---------------------------------------------------------------------------
-- mig_fail: failed with the message; mig_start again resets the run as the
-- seed does: running, started_at = now(), error = NULL, processed = 0
SELECT mig_start('s01_split_names_v1') AS id \gset s01_split_
SELECT mig_update_progress(:s01_split_id, 250);
SELECT mig_fail(:s01_split_id, 'division by zero at row 251');
SELECT * FROM s01_row('s01_split_names_v1');
SELECT mig_has_run('s01_split_names_v1') AS has_run_failed;

-- started_at is set again by the restart (pretend the first start was long ago)
UPDATE migrations SET started_at = '2000-01-01' WHERE id = :s01_split_id;
SELECT mig_start('s01_split_names_v1') = :s01_split_id AS same_id;
SELECT * FROM s01_row('s01_split_names_v1');
SELECT started_at > '2000-01-01' AS started_at_is_now FROM migrations WHERE id = :s01_split_id;

-- the restarted run counts from zero and can complete
SELECT mig_update_progress(:s01_split_id, 7);
SELECT mig_complete(:s01_split_id);
SELECT * FROM s01_row('s01_split_names_v1');

-- a completed migration can still be failed by its application (as in the
-- seed); completed_at is cleared, and mig_start may run it again
SELECT mig_fail(:s01_split_id, 'verification found bad rows');
SELECT * FROM s01_row('s01_split_names_v1');
SELECT mig_start('s01_split_names_v1') = :s01_split_id AS same_id;
SELECT * FROM s01_row('s01_split_names_v1');

-- ---------------------------------------------------------------------------
-- mig_fail persists once the calling transaction commits (unlike the seed,
-- where failMigration is rolled back with the rethrown error)
SELECT mig_start('s01_backfill_fk_v1') AS id \gset s01_fk_
BEGIN;
SELECT mig_update_progress(:s01_fk_id, 30);
SELECT mig_fail(:s01_fk_id, 'persisted failure');
COMMIT;
SELECT * FROM s01_row('s01_backfill_fk_v1');

-- called from the handler of the failing batch (the recommended pattern):
-- the batch's subtransaction rolls back, the failure is recorded
SELECT mig_start('s01_backfill_fk_v1') = :s01_fk_id AS restarted;
CREATE TABLE s01_items (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO s01_items SELECT g, g FROM generate_series(1, 5) g;
DO $$
DECLARE
	mid bigint := (SELECT id FROM migrations WHERE name = 's01_backfill_fk_v1');
BEGIN
	BEGIN
		UPDATE s01_items SET v = v / (id - 3);
		PERFORM mig_update_progress(mid, 5);
	EXCEPTION WHEN others THEN
		PERFORM mig_fail(mid, SQLERRM || ' (SQLSTATE ' || SQLSTATE || ')');
	END;
END
$$;
SELECT * FROM s01_row('s01_backfill_fk_v1');
SELECT sum(v) AS untouched_sum FROM s01_items;

-- called in a transaction that then aborts: rolled back with it (the reason
-- the README says to call it from the transaction that handles the error)
SELECT mig_start('s01_backfill_fk_v1') = :s01_fk_id AS restarted;
BEGIN;
SELECT mig_fail(:s01_fk_id, 'lost with the transaction');
SELECT 1 / 0;
COMMIT;
SELECT * FROM s01_row('s01_backfill_fk_v1');

-- ---------------------------------------------------------------------------
-- cancelled (mig_cancel works on application-driven migrations too): mig_start
-- runs it again from zero, like a failed one
SELECT mig_update_progress(:s01_fk_id, 12);
SELECT mig_cancel('s01_backfill_fk_v1');
SELECT * FROM s01_row('s01_backfill_fk_v1');
SELECT mig_cancel('s01_backfill_fk_v1');
SELECT mig_start('s01_backfill_fk_v1') = :s01_fk_id AS restarted;
SELECT * FROM s01_row('s01_backfill_fk_v1');
SELECT mig_complete(:s01_fk_id);
SELECT mig_cancel('s01_backfill_fk_v1');

-- the managed-only functions refuse application-driven migrations
SELECT mig_pause('s01_backfill_fk_v1');
SELECT mig_resume('s01_backfill_fk_v1');
SELECT mig_reset('s01_backfill_fk_v1');
CALL mig_run('s01_backfill_fk_v1');

-- ---------------------------------------------------------------------------
-- mig_start of a name in one transaction, twice: the second call sees the
-- first one's row and says it is running
BEGIN;
SELECT mig_start('s01_twice_v1') > 0 AS started;
SELECT mig_start('s01_twice_v1');
ROLLBACK;
SELECT count(*) AS rows_after_rollback FROM migrations WHERE name = 's01_twice_v1';

-- names: empty and longer than 200 bytes are refused; other text is kept as is
SELECT mig_start('');
SELECT mig_start(repeat('x', 201));
SET client_min_messages = warning;
SELECT mig_start(repeat('x', 200)) > 0 AS started_200_bytes;
RESET client_min_messages;
SELECT mig_start('s01 Odd "name"; DROP TABLE s01_items; --') > 0 AS started_odd_name;
SELECT length(name), CASE WHEN length(name) = 200 THEN 'x...' ELSE name END AS name, status FROM migrations
 WHERE name LIKE 's01 Odd%' OR name = repeat('x', 200) ORDER BY name;
SELECT mig_has_run('S01_USERS_V1') AS names_are_case_sensitive;

-- ---------------------------------------------------------------------------
-- NULL arguments are errors that name the argument
SELECT mig_has_run(NULL);
SELECT mig_start(NULL);
SELECT mig_update_progress(NULL, 1);
SELECT mig_update_progress(:s01_id, NULL);
SELECT mig_complete(NULL);
SELECT mig_fail(NULL, 'x');
SELECT mig_fail(:s01_id, NULL);

-- unknown ids: mig_complete and mig_fail are errors (there is nothing to mark)
SELECT mig_complete(-1);
SELECT mig_fail(-1, 'no such migration');

-- managed migrations refuse the application's progress functions
CREATE TABLE s01_managed (id int PRIMARY KEY, v int);
SELECT mig_define('s01_managed_v1', 's01_managed',
				  $$UPDATE s01_managed SET v = 0 WHERE id BETWEEN $1 AND $2$$) AS id \gset s01_managed_
SELECT mig_update_progress(:s01_managed_id, 1);
SELECT mig_complete(:s01_managed_id);
SELECT mig_fail(:s01_managed_id, 'x');
SELECT * FROM s01_row('s01_managed_v1');

-- the final state of this file's migrations
SELECT name, status, processed, error IS NOT NULL AS has_error,
	   (status = 'completed') = (completed_at IS NOT NULL) AS completed_at_consistent
  FROM migrations WHERE name LIKE 's01\_%' ORDER BY name;

-- clean up (the catalog rows are removed so later files start clean)
DELETE FROM migrations WHERE name LIKE 's01%' OR name = repeat('x', 200);
DROP TABLE s01_items, s01_managed;
DROP FUNCTION s01_row(text);
