--
-- 040_high_water: a table that grows at its end while the migration runs
-- cannot keep it running forever.  The largest key is fixed when the run
-- first starts; mig_reset forgets it.
--
CREATE TABLE hw (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO hw (id) SELECT g FROM generate_series(1, 50) g;

-- every batch appends a row past the current end of the table, the way a
-- busy application inserts new rows while the backfill runs
SELECT mig_define('hw_v1', 'hw',
	$$WITH grow AS (INSERT INTO hw (id) SELECT max(id) + 1 FROM hw RETURNING id)
	  UPDATE hw SET n = n + 1 WHERE id BETWEEN $1 AND $2$$,
	batch_size => 10) > 0 AS defined;
SELECT high_water FROM migrations WHERE name = 'hw_v1';

CALL mig_run('hw_v1');

-- it stopped at the mark taken when it started: rows 1..50 once, the five
-- rows appended by the five batches not at all
SELECT status, processed, batches, cursor, high_water
  FROM migrations WHERE name = 'hw_v1';
SELECT id > 50 AS appended, n, count(*) FROM hw GROUP BY 1, 2 ORDER BY 1, 2;

-- mig_reset forgets the cursor and the mark; the next run takes a new mark
SELECT mig_reset('hw_v1');
SELECT status, processed, batches, cursor, high_water
  FROM migrations WHERE name = 'hw_v1';
CALL mig_run('hw_v1');
SELECT status, processed, batches, cursor, high_water
  FROM migrations WHERE name = 'hw_v1';
SELECT id > 55 AS appended, n, count(*) FROM hw GROUP BY 1, 2 ORDER BY 1, 2;

-- an empty table: the mark is not set and the migration completes at once
CREATE TABLE hw_empty (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
SELECT mig_define('hw_empty_v1', 'hw_empty',
	'UPDATE hw_empty SET n = n + 1 WHERE id BETWEEN $1 AND $2') > 0 AS defined;
CALL mig_run('hw_empty_v1');
SELECT status, processed, batches, cursor, high_water
  FROM migrations WHERE name = 'hw_empty_v1';

DROP TABLE hw, hw_empty;
