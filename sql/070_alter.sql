--
-- 070_alter: mig_define's parallel argument, mig_alter (every option, NULL
-- leaves one as it is, the same validation as mig_define, all of it before
-- any write, who may call it and in which status), mig_reset removing the
-- slices, the mig_slices view, and a CALL mig_run of a migration defined
-- with parallel => 3.  A migration is never left running once a transaction
-- commits, so the background worker has nothing to pick up.
--
CREATE ROLE regress_mr70_owner;
CREATE ROLE regress_mr70_other;
CREATE ROLE regress_mr70_team;
CREATE ROLE regress_mr70_member IN ROLE regress_mr70_team;
CREATE TABLE h70_t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO h70_t (id) SELECT generate_series(1, 100);
GRANT SELECT, UPDATE ON h70_t TO regress_mr70_owner, regress_mr70_other, regress_mr70_team;

-- the run options of a migration, as stored
CREATE FUNCTION h70_opts(n text)
RETURNS TABLE (status text, batch_size int, current_batch_size int, parallel int,
			   batch_delay interval, lock_timeout interval,
			   statement_timeout interval, max_retries int,
			   target_batch_time interval)
LANGUAGE sql AS $$
	SELECT status, batch_size, current_batch_size, parallel, batch_delay,
		   lock_timeout, statement_timeout, max_retries, target_batch_time
	  FROM migrations WHERE name = n
$$;

-- ---------------------------------------------------------------------------
-- mig_define's parallel: 1 by default, 1 to 64, never NULL
SELECT mig_define('h70_default', 'h70_t', 'UPDATE h70_t SET n = n + 1 WHERE id BETWEEN $1 AND $2') > 0 AS defined;
SELECT mig_define('h70_three', 'h70_t', 'UPDATE h70_t SET n = n + 1 WHERE id BETWEEN $1 AND $2',
				  parallel => 3) > 0 AS defined;
SELECT mig_define('h70_max', 'h70_t', 'UPDATE h70_t SET n = n + 1 WHERE id BETWEEN $1 AND $2',
				  parallel => 64) > 0 AS defined;
SELECT name, parallel FROM migrations WHERE name LIKE 'h70\_%' ORDER BY id;
SELECT mig_define('h70_zero', 'h70_t', 'UPDATE h70_t SET n = n + 1 WHERE id BETWEEN $1 AND $2',
				  parallel => 0);
SELECT mig_define('h70_big', 'h70_t', 'UPDATE h70_t SET n = n + 1 WHERE id BETWEEN $1 AND $2',
				  parallel => 65);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT mig_define('h70_null', 'h70_t', 'UPDATE h70_t SET n = n + 1 WHERE id BETWEEN $1 AND $2',
				  parallel => NULL);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) AS not_defined FROM migrations WHERE name IN ('h70_zero', 'h70_big', 'h70_null');
-- parallel is part of the definition, like batch_size: the same value gives
-- the same id (the default spelled out too), another one is a new version
SELECT mig_define('h70_three', 'h70_t', 'UPDATE h70_t SET n = n + 1 WHERE id BETWEEN $1 AND $2',
				  parallel => 3) = (SELECT id FROM migrations WHERE name = 'h70_three') AS same_id;
SELECT mig_define('h70_default', 'h70_t', 'UPDATE h70_t SET n = n + 1 WHERE id BETWEEN $1 AND $2',
				  parallel => 1) = (SELECT id FROM migrations WHERE name = 'h70_default') AS same_id;
SELECT mig_define('h70_three', 'h70_t', 'UPDATE h70_t SET n = n + 1 WHERE id BETWEEN $1 AND $2',
				  parallel => 4);
SELECT parallel FROM migrations WHERE name = 'h70_three';

-- ---------------------------------------------------------------------------
-- mig_alter: each option alone, read back; the others stay as they were
SELECT * FROM h70_opts('h70_default');
SELECT mig_alter('h70_default', batch_size => 250);
SELECT * FROM h70_opts('h70_default');
SELECT mig_alter('h70_default', parallel => 8);
SELECT * FROM h70_opts('h70_default');
SELECT mig_alter('h70_default', batch_delay => '150 ms');
SELECT * FROM h70_opts('h70_default');
SELECT mig_alter('h70_default', lock_timeout => '2 s');
SELECT * FROM h70_opts('h70_default');
SELECT mig_alter('h70_default', statement_timeout => '1 min');
SELECT * FROM h70_opts('h70_default');
SELECT mig_alter('h70_default', max_retries => 0);
SELECT * FROM h70_opts('h70_default');
SELECT mig_alter('h70_default', target_batch_time => '500 ms');
SELECT * FROM h70_opts('h70_default');
-- all of them at once, positionally
SELECT mig_alter('h70_default', 40, 2, '1 s', '3 s', '2 min', 7, '250 ms');
SELECT * FROM h70_opts('h70_default');
-- all NULL: nothing changes
SELECT mig_alter('h70_default');
SELECT mig_alter('h70_default', NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SELECT * FROM h70_opts('h70_default');
-- the stored intervals read back as mig_define stores them (whole
-- milliseconds), and mig_define then sees the same definition
SELECT mig_alter('h70_max', batch_delay => '1.5 s', lock_timeout => '1 day', statement_timeout => '0');
SELECT * FROM h70_opts('h70_max');
SELECT mig_define('h70_max', 'h70_t', 'UPDATE h70_t SET n = n + 1 WHERE id BETWEEN $1 AND $2',
				  batch_delay => '1500 ms', lock_timeout => '24 h', statement_timeout => '0',
				  parallel => 64) = (SELECT id FROM migrations WHERE name = 'h70_max') AS same_id;

-- changing batch_size restarts adaptive sizing from it; other options keep
-- the size in use (as a superuser, set it as a run would have)
UPDATE migrations SET current_batch_size = 77 WHERE name = 'h70_default';
SELECT mig_alter('h70_default', parallel => 5, max_retries => 3);
SELECT batch_size, current_batch_size, parallel, max_retries FROM migrations WHERE name = 'h70_default';
SELECT mig_alter('h70_default', batch_size => 60);
SELECT batch_size, current_batch_size, parallel, max_retries FROM migrations WHERE name = 'h70_default';

-- ---------------------------------------------------------------------------
-- validation: as mig_define's, and nothing is written when any argument
-- is wrong, even after a valid one
SELECT * FROM h70_opts('h70_default');
SELECT mig_alter('h70_default', batch_size => 0);
SELECT mig_alter('h70_default', batch_size => 1000001);
SELECT mig_alter('h70_default', batch_size => -5);
SELECT mig_alter('h70_default', parallel => 0);
SELECT mig_alter('h70_default', parallel => 65);
SELECT mig_alter('h70_default', parallel => -1);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT mig_alter('h70_default', batch_delay => '-1 ms');
SELECT mig_alter('h70_default', batch_delay => '1 hour 1 ms');
SELECT mig_alter('h70_default', lock_timeout => '-1 s');
SELECT mig_alter('h70_default', lock_timeout => '25 days');
SELECT mig_alter('h70_default', statement_timeout => '-1 day');
SELECT mig_alter('h70_default', statement_timeout => '1 month');
SELECT mig_alter('h70_default', max_retries => -1);
SELECT mig_alter('h70_default', max_retries => 1001);
SELECT mig_alter('h70_default', target_batch_time => '0');
SELECT mig_alter('h70_default', target_batch_time => '-1 s');
SELECT mig_alter('h70_default', target_batch_time => '2 hours');
SELECT mig_alter('h70_default', batch_size => 10, parallel => 2, batch_delay => '5 s',
				 max_retries => 1, target_batch_time => '0');
SELECT mig_alter('h70_default', 10, 2, '5 s', '5 s', '5 s', 1, '-1 ms');
SELECT * FROM h70_opts('h70_default');
-- the edges are accepted
SELECT mig_alter('h70_max', batch_size => 1000000, parallel => 1, batch_delay => '1 hour',
				 lock_timeout => '2147483647 ms', statement_timeout => '0',
				 max_retries => 1000, target_batch_time => '1 hour');
SELECT * FROM h70_opts('h70_max');
SELECT mig_alter('h70_max', batch_size => 1, max_retries => 0, target_batch_time => '1 ms',
				 batch_delay => '0');
SELECT * FROM h70_opts('h70_max');

-- an unknown name, a NULL name, an application-driven migration
SELECT mig_alter('h70_nonexistent', batch_size => 10);
SELECT mig_alter(NULL, batch_size => 10);
SELECT mig_start('h70_app') > 0 AS started;
SELECT mig_alter('h70_app', batch_size => 10);
SELECT mig_complete(id) FROM migrations WHERE name = 'h70_app';

-- ---------------------------------------------------------------------------
-- every status but completed: running (inside the transaction), paused,
-- cancelled, failed, pending again after a reset
BEGIN;
SELECT mig_start('h70_three') > 0 AS started;
SELECT mig_alter('h70_three', batch_size => 20, parallel => 6);
SELECT * FROM h70_opts('h70_three');
SELECT mig_pause('h70_three');
COMMIT;
SELECT mig_alter('h70_three', parallel => 2);
SELECT * FROM h70_opts('h70_three');
SELECT mig_cancel('h70_three');
SELECT mig_alter('h70_three', batch_delay => '10 ms');
SELECT * FROM h70_opts('h70_three');
-- failed as a failing run would leave it (a superuser writes the catalog)
UPDATE migrations SET status = 'failed', error = 'h70 made it fail' WHERE name = 'h70_three';
SELECT mig_alter('h70_three', max_retries => 2);
SELECT * FROM h70_opts('h70_three');
-- completed: refused, with or without options, and nothing changes
UPDATE migrations SET status = 'completed', completed_at = now(), error = NULL WHERE name = 'h70_three';
SELECT mig_alter('h70_three', batch_size => 99);
SELECT mig_alter('h70_three');
SELECT * FROM h70_opts('h70_three');
SELECT mig_alter('h70_three', parallel => 1);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT mig_reset('h70_three');
SELECT mig_alter('h70_three', batch_size => 99);
SELECT * FROM h70_opts('h70_three');

-- ---------------------------------------------------------------------------
-- privileges: the owner and a member of the owning role may; another role,
-- even with UPDATE on the table, may not, and nothing changes
SET ROLE regress_mr70_owner;
SELECT mig_define('h70_owned', 'h70_t', 'UPDATE h70_t SET n = n + 1 WHERE id BETWEEN $1 AND $2',
				  parallel => 2) > 0 AS defined;
SELECT mig_alter('h70_owned', batch_size => 30, parallel => 4);
RESET ROLE;
SET ROLE regress_mr70_team;
SELECT mig_define('h70_team', 'h70_t', 'UPDATE h70_t SET n = n + 1 WHERE id BETWEEN $1 AND $2') > 0 AS defined;
RESET ROLE;
SET ROLE regress_mr70_other;
SELECT mig_alter('h70_owned', batch_size => 31);
SELECT mig_alter('h70_team', parallel => 9);
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- not even all NULL, nor a change that the owner could make
SELECT mig_alter('h70_owned');
-- and the catalog stays closed to direct writes
UPDATE migrations SET parallel = 9 WHERE name = 'h70_owned';
RESET ROLE;
SET ROLE regress_mr70_member;
SELECT mig_alter('h70_team', parallel => 9, max_retries => 4);
SELECT mig_alter('h70_owned', parallel => 9);
RESET ROLE;
SELECT name, owner, batch_size, parallel, max_retries FROM migrations
 WHERE name IN ('h70_owned', 'h70_team') ORDER BY name;
-- a superuser may alter anyone's
SELECT mig_alter('h70_owned', parallel => 1);
SELECT parallel FROM migrations WHERE name = 'h70_owned';

-- ---------------------------------------------------------------------------
-- the slices: the mig_slices view's columns, users cannot write
-- migration_slices, and mig_reset removes a migration's slices with its
-- history (slice rows written here as a superuser, as a run would)
\d mig_slices
SELECT * FROM mig_slices WHERE name LIKE 'h70\_%';
SELECT mig_alter('h70_owned', parallel => 2);
INSERT INTO migration_slices (migration_id, slice, status, lower_key, upper_key, cursor, processed, scanned, batches, current_batch_size)
SELECT id, 1, 'running', NULL::text[], '{50}'::text[], '{20}'::text[], 20, 20, 2, 33 FROM migrations WHERE name = 'h70_owned'
UNION ALL
SELECT id, 2, 'done', '{50}', '{100}', '{100}', 50, 50, 5, 34 FROM migrations WHERE name = 'h70_owned';
INSERT INTO migration_slices (migration_id, slice, upper_key, current_batch_size)
SELECT id, 1, '{100}', 44 FROM migrations WHERE name = 'h70_team';
INSERT INTO migration_batches (migration_id, slice, batch, first_key, last_key, keys, rows, started_at, duration_ms, bounds_ms, action_ms)
SELECT id, 1, 1, '{1}'::text[], '{10}'::text[], 10, 10, now(), 1, 0, 1 FROM migrations WHERE name = 'h70_owned'
UNION ALL
SELECT id, 2, 1, '{51}', '{60}', 10, 10, now(), 1, 0, 1 FROM migrations WHERE name = 'h70_owned';
UPDATE migrations SET status = 'paused' WHERE name = 'h70_owned';
SELECT * FROM mig_slices WHERE name LIKE 'h70\_%' ORDER BY name, slice;
SELECT name, processed, scanned, batches FROM mig_status WHERE name = 'h70_owned';
SELECT count(*) AS history FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
 WHERE m.name = 'h70_owned';
-- a new batch_size restarts each slice's adaptive size too (and only the
-- migration's own slices)
SELECT mig_alter('h70_owned', parallel => 3);
SELECT m.name, s.slice, s.current_batch_size FROM migration_slices s
  JOIN migrations m ON m.id = s.migration_id WHERE m.name LIKE 'h70\_%' ORDER BY 1, 2;
SELECT mig_alter('h70_owned', batch_size => 35);
SELECT m.name, s.slice, s.current_batch_size FROM migration_slices s
  JOIN migrations m ON m.id = s.migration_id WHERE m.name LIKE 'h70\_%' ORDER BY 1, 2;
SET ROLE regress_mr70_owner;
SELECT count(*) AS visible FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
 WHERE m.name LIKE 'h70\_%';
UPDATE migration_slices SET cursor = '{49}';
DELETE FROM migration_slices;
INSERT INTO migration_slices (migration_id, slice, upper_key) VALUES (1, 3, '{1}');
SELECT mig_reset('h70_owned');
RESET ROLE;
SELECT * FROM mig_slices WHERE name LIKE 'h70\_%' ORDER BY name, slice;
SELECT count(*) AS history FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
 WHERE m.name = 'h70_owned';
SELECT status, processed, scanned, batches, cursor FROM migrations WHERE name = 'h70_owned';
-- reset keeps the options, parallel included
SELECT * FROM h70_opts('h70_owned');

-- ---------------------------------------------------------------------------
-- CALL mig_run of a migration defined with parallel => 3 runs its slices
-- one after another: every row changed exactly once, processed = the rows
SELECT mig_define('h70_run', 'h70_t', 'UPDATE h70_t SET n = n + 1 WHERE id BETWEEN $1 AND $2',
				  batch_size => 7, parallel => 3) > 0 AS defined;
CALL mig_run('h70_run');
SELECT status, processed, scanned, completed_at IS NOT NULL AS has_completed_at, error
  FROM migrations WHERE name = 'h70_run';
SELECT n, count(*) FROM h70_t GROUP BY n ORDER BY n;
-- the history of every slice: each key in exactly one batch
SELECT sum(b.keys) AS keys, sum(b.rows) AS rows, count(b.error) AS errors
  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
 WHERE m.name = 'h70_run';
SELECT count(*) AS overlapping_batches
  FROM migration_batches a
  JOIN migration_batches b ON b.migration_id = a.migration_id
	   AND (a.slice, a.batch) < (b.slice, b.batch)
	   AND a.first_key[1]::int <= b.last_key[1]::int
	   AND b.first_key[1]::int <= a.last_key[1]::int
 WHERE a.migration_id = (SELECT id FROM migrations WHERE name = 'h70_run');
SELECT count(*) AS slices_left FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
 WHERE m.name = 'h70_run';
SELECT status, processed, percent FROM mig_status WHERE name = 'h70_run';
-- a completed run cannot be altered
SELECT mig_alter('h70_run', parallel => 1);

-- clean up (a superuser may write the catalog)
DELETE FROM migrations WHERE name LIKE 'h70\_%';
DROP FUNCTION h70_opts(text);
DROP TABLE h70_t;
DROP ROLE regress_mr70_owner, regress_mr70_other, regress_mr70_member, regress_mr70_team;
