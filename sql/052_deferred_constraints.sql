-- A table with a DEFERRABLE INITIALLY DEFERRED foreign key (as Django makes
-- them) migrates: each batch checks the constraints at the end of each of
-- its statements, so a violation fails the batch with its bounds, and the
-- batches before it stay committed.
CREATE TABLE d52_parent (id int PRIMARY KEY);
INSERT INTO d52_parent SELECT g FROM generate_series(1, 10) g;
CREATE TABLE d52_child (
	id int PRIMARY KEY,
	parent int REFERENCES d52_parent DEFERRABLE INITIALLY DEFERRED,
	n int NOT NULL DEFAULT 0);
INSERT INTO d52_child SELECT g, 1 + g % 10 FROM generate_series(1, 100) g;

SELECT mig_define('d52_ok_v1', 'd52_child',
	'UPDATE d52_child SET n = n + 1, parent = 1 + (parent % 10) WHERE id BETWEEN $1 AND $2',
	batch_size => 30) > 0 AS defined;
CALL mig_run('d52_ok_v1');
SELECT status, processed, error FROM migrations WHERE name = 'd52_ok_v1';
SELECT n, count(*) FROM d52_child GROUP BY n ORDER BY n;

-- keys 61..100 point to a parent that does not exist: the third batch fails
-- with the foreign key's own error; batches 1 and 2 are kept
SELECT mig_define('d52_bad_v1', 'd52_child',
	'UPDATE d52_child SET n = n + 1, parent = CASE WHEN id > 60 THEN 99 ELSE parent END WHERE id BETWEEN $1 AND $2',
	batch_size => 30, max_retries => 0) > 0 AS defined;
\set VERBOSITY sqlstate
CALL mig_run('d52_bad_v1');
\set VERBOSITY default
SELECT status, processed, error FROM migrations WHERE name = 'd52_bad_v1';
SELECT n, count(*) FROM d52_child GROUP BY n ORDER BY n;

DROP TABLE d52_child, d52_parent;
