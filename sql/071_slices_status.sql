-- mig_status and mig_slices of a migration that runs in slices: one row per
-- migration with the slices' sums, and one row per slice.  The slices are
-- written here by hand (as superuser), so that the figures are exact; a
-- pending migration is not run by anyone meanwhile.
CREATE TABLE s71 (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO s71 SELECT g FROM generate_series(1, 100) g;
SELECT mig_define('s71_v1', 's71', 'UPDATE s71 SET n = n + 1 WHERE id BETWEEN $1 AND $2',
				  batch_size => 10, parallel => 2) > 0 AS defined;
UPDATE migrations SET processed = 5, scanned = 7, batches = 1,
	   current_batch_size = 10, last_batch_ms = 1.5,
	   last_batch_at = '2026-01-01 00:00:00+00'
 WHERE name = 's71_v1';
INSERT INTO migration_slices (migration_id, slice, lower_key, cursor, upper_key,
	processed, scanned, batches, current_batch_size, worker_pid,
	last_batch_at, last_batch_ms)
SELECT id, 1, NULL::text[], '{20}'::text[], '{50}'::text[], 20, 20, 2, 12, NULL::int,
	   timestamptz '2026-01-01 00:00:02+00', 2.25
  FROM migrations WHERE name = 's71_v1'
UNION ALL
SELECT id, 2, '{50}', '{60}', '{100}', 10, 10, 1, 8, NULL,
	   timestamptz '2026-01-01 00:00:01+00', 3.5
  FROM migrations WHERE name = 's71_v1';

-- sums; the largest batch size; the last batch of any slice
SELECT processed, scanned, batches, current_batch_size, last_batch_ms, last_batch_at
  FROM mig_status WHERE name = 's71_v1';
SELECT name, slice, status, lower_key, upper_key, cursor, processed, batches, worker_pid
  FROM mig_slices WHERE name = 's71_v1' ORDER BY slice;

-- without slices, the migration's own figures
DELETE FROM migration_slices;
SELECT processed, scanned, batches, current_batch_size, last_batch_ms, last_batch_at
  FROM mig_status WHERE name = 's71_v1';

SELECT mig_drop('s71_v1');
DROP TABLE s71;
