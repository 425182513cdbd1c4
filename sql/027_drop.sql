--
-- 027_drop: mig_drop(name) removes a migration and its history, so that
-- the name can be used again.  The owner, a member of the owning role or a
-- superuser may; not while the migration is running.  (A runner that still
-- holds a paused migration is refused too: specs/drop_running.spec.)
--
-- Managed migrations are never left "running" here, so the background
-- worker of this database has nothing to pick up.
--
CREATE ROLE regress_mr_owner;
CREATE ROLE regress_mr_member IN ROLE regress_mr_owner;
CREATE ROLE regress_mr_stranger;
CREATE TABLE h27_t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO h27_t (id) SELECT generate_series(1, 10);
GRANT SELECT, UPDATE ON h27_t TO regress_mr_owner;

CREATE FUNCTION h27_rows(n text)
RETURNS TABLE (migrations bigint, history bigint)
LANGUAGE sql AS $$
	SELECT (SELECT count(*) FROM migrations WHERE name = n),
		   (SELECT count(*) FROM migration_batches b
			 WHERE b.migration_id IN (SELECT id FROM migrations WHERE name = n))
$$;

-- ---------------------------------------------------------------------------
-- the owner drops a completed migration: its row and its history go
SET ROLE regress_mr_owner;
SELECT mig_define('h27_done', 'h27_t', 'UPDATE h27_t SET n = n + 1 WHERE id BETWEEN $1 AND $2', 3) > 0 AS defined;
CALL mig_run('h27_done');
RESET ROLE;
SELECT id AS done_id FROM migrations WHERE name = 'h27_done' \gset h27_
SELECT status, batches FROM migrations WHERE name = 'h27_done';
SELECT * FROM h27_rows('h27_done');
SET ROLE regress_mr_owner;
SELECT mig_drop('h27_done');
RESET ROLE;
SELECT * FROM h27_rows('h27_done');
SELECT count(*) AS history_left FROM migration_batches WHERE migration_id = :h27_done_id;
-- the data it changed stays changed
SELECT n, count(*) FROM h27_t GROUP BY n;

-- the name is free again: a new definition gets a new id and starts over
SET ROLE regress_mr_owner;
SELECT mig_define('h27_done', 'h27_t', 'UPDATE h27_t SET n = n + 1 WHERE id BETWEEN $1 AND $2', 5)
	<> :h27_done_id AS new_id;
CALL mig_run('h27_done');
RESET ROLE;
SELECT status, processed, batches FROM migrations WHERE name = 'h27_done';
SELECT n, count(*) FROM h27_t GROUP BY n;

-- ---------------------------------------------------------------------------
-- another role may not; a member of the owning role may
SET ROLE regress_mr_stranger;
SELECT mig_drop('h27_done');
RESET ROLE;
SELECT * FROM h27_rows('h27_done');
SET ROLE regress_mr_member;
SELECT mig_drop('h27_done');
RESET ROLE;
SELECT * FROM h27_rows('h27_done');

-- ---------------------------------------------------------------------------
-- a running migration is refused, managed or application-driven; pausing
-- or cancelling it first makes it droppable
SET ROLE regress_mr_owner;
SELECT mig_define('h27_live', 'h27_t', 'UPDATE h27_t SET n = n + 1 WHERE id BETWEEN $1 AND $2', 3) > 0 AS defined;
BEGIN;
SELECT mig_start('h27_live') > 0 AS started;
SELECT mig_drop('h27_live');
ROLLBACK;
BEGIN;
SELECT mig_start('h27_live') > 0 AS started;
SELECT mig_pause('h27_live');
SELECT mig_drop('h27_live');
COMMIT;
SELECT * FROM h27_rows('h27_live');

SELECT mig_start('h27_app') > 0 AS started;
SELECT mig_update_progress(id, 7) FROM migrations WHERE name = 'h27_app';
SELECT mig_drop('h27_app');
SELECT status, processed FROM migrations WHERE name = 'h27_app';
SELECT mig_cancel('h27_app');
SELECT mig_drop('h27_app');
SELECT * FROM h27_rows('h27_app');

-- every other status may be dropped: pending, failed, cancelled
SELECT mig_define('h27_pending', 'h27_t', 'UPDATE h27_t SET n = n + 1 WHERE id BETWEEN $1 AND $2') > 0 AS defined;
SELECT mig_drop('h27_pending');
SELECT mig_fail(mig_start('h27_failed'), 'gave up');
SELECT mig_drop('h27_failed');
SELECT mig_define('h27_cancelled', 'h27_t', 'UPDATE h27_t SET n = n + 1 WHERE id BETWEEN $1 AND $2') > 0 AS defined;
SELECT mig_cancel('h27_cancelled');
SELECT mig_drop('h27_cancelled');
RESET ROLE;
SELECT count(*) AS left_over FROM migrations WHERE name LIKE 'h27\_%';

-- ---------------------------------------------------------------------------
-- a superuser may drop any migration, also one whose owner is gone
SET ROLE regress_mr_stranger;
SELECT mig_start('h27_orphan') > 0 AS started;
SELECT mig_complete(id) FROM migrations WHERE name = 'h27_orphan';
RESET ROLE;
DROP ROLE regress_mr_stranger;
SELECT mig_drop('h27_orphan');
SELECT * FROM h27_rows('h27_orphan');

-- ---------------------------------------------------------------------------
-- an action cannot drop or reset the migration whose batch it is part of,
-- not even after pausing it: the batch fails, and the rows it changed and
-- the migration's progress are as before it
CREATE FUNCTION h27_self_at(id int, stop_id int, how text, mig text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	IF id = stop_id THEN
		PERFORM mig_pause(mig);
		IF how = 'drop' THEN
			PERFORM mig_drop(mig);
		ELSE
			PERFORM mig_reset(mig);
		END IF;
	END IF;
	RETURN true;
END
$$;
UPDATE h27_t SET n = 0;
SELECT mig_define('h27_self_drop', 'h27_t',
	$$UPDATE h27_t SET n = n + 1 WHERE id BETWEEN $1 AND $2 AND h27_self_at(id, 5, 'drop', 'h27_self_drop')$$,
	3) > 0 AS defined;
CALL mig_run('h27_self_drop');
SELECT status, processed, batches, cursor FROM migrations WHERE name = 'h27_self_drop';
SELECT mig_define('h27_self_reset', 'h27_t',
	$$UPDATE h27_t SET n = n + 1 WHERE id BETWEEN $1 AND $2 AND h27_self_at(id, 8, 'reset', 'h27_self_reset')$$,
	3) > 0 AS defined;
CALL mig_run('h27_self_reset');
SELECT status, processed, batches, cursor FROM migrations WHERE name = 'h27_self_reset';
SELECT n, count(*), min(id), max(id) FROM h27_t GROUP BY n ORDER BY n;
SELECT mig_drop('h27_self_drop'), mig_drop('h27_self_reset');
DROP FUNCTION h27_self_at(int, int, text, text);

-- ---------------------------------------------------------------------------
-- a dropped migration no longer exists for the other functions
SELECT mig_drop('h27_orphan');
SELECT mig_wait('h27_orphan', '0');
SELECT mig_drop('h27_nope');
SELECT mig_drop(NULL);
SELECT mig_drop('');

-- clean up
DROP FUNCTION h27_rows(text);
DROP TABLE h27_t;
DROP ROLE regress_mr_member, regress_mr_owner;
