--
-- 021_partitioned: a partitioned table whose primary key includes the
-- partition key is walked across all its partitions, every row once.
--
CREATE TABLE h21_events (
	tenant int NOT NULL,
	id int NOT NULL,
	n int NOT NULL DEFAULT 0,
	PRIMARY KEY (tenant, id)
) PARTITION BY RANGE (tenant);
CREATE TABLE h21_events_low PARTITION OF h21_events FOR VALUES FROM (0) TO (3);
CREATE TABLE h21_events_mid PARTITION OF h21_events FOR VALUES FROM (3) TO (6)
	PARTITION BY LIST (id);
CREATE TABLE h21_events_mid_even PARTITION OF h21_events_mid FOR VALUES IN (0, 2, 4, 6, 8, 10);
CREATE TABLE h21_events_mid_rest PARTITION OF h21_events_mid DEFAULT;
CREATE TABLE h21_events_rest PARTITION OF h21_events DEFAULT;
INSERT INTO h21_events (tenant, id) SELECT t, i FROM generate_series(0, 8) t, generate_series(1, 10) i;
SELECT tableoid::regclass AS partition, count(*) FROM h21_events GROUP BY 1 ORDER BY 1;
SELECT mig_define('h21_bump', 'h21_events',
	$$UPDATE h21_events SET n = n + 1 WHERE (tenant, id) BETWEEN ($1, $2) AND ($3, $4)$$, 7) > 0 AS defined;
SELECT key_columns, key_types FROM migrations WHERE name = 'h21_bump';
CALL mig_run('h21_bump');
SELECT status, processed, scanned, batches, cursor, high_water, error
  FROM migrations WHERE name = 'h21_bump';
-- every row exactly once
SELECT n, count(*) FROM h21_events GROUP BY n ORDER BY n;
SELECT batch, first_key, last_key, keys, rows FROM migration_batches
 WHERE migration_id = (SELECT id FROM migrations WHERE name = 'h21_bump')
 ORDER BY batch LIMIT 3;
-- a leaf partition is a table of its own
SELECT mig_define('h21_leaf', 'h21_events_low',
	$$UPDATE h21_events_low SET n = n + 10 WHERE (tenant, id) BETWEEN ($1, $2) AND ($3, $4)$$, 4) > 0 AS defined;
CALL mig_run('h21_leaf');
SELECT status, processed, batches FROM migrations WHERE name = 'h21_leaf';
SELECT tableoid::regclass AS partition, n, count(*) FROM h21_events GROUP BY 1, 2 ORDER BY 1, 2;
-- a partitioned table without a primary key, or whose unique index is
-- nullable, cannot be walked
CREATE TABLE h21_nokey (tenant int NOT NULL, id int) PARTITION BY LIST (tenant);
CREATE UNIQUE INDEX h21_nokey_u ON h21_nokey (tenant, id);
SELECT mig_define('h21_x', 'h21_nokey', 'SELECT $1, $2');
SELECT mig_define('h21_x', 'h21_nokey', 'SELECT $1, $2, $3, $4', 10, '{tenant,id}');
-- an empty partitioned table completes at once
CREATE TABLE h21_empty (id int PRIMARY KEY) PARTITION BY HASH (id);
CREATE TABLE h21_empty_0 PARTITION OF h21_empty FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE h21_empty_1 PARTITION OF h21_empty FOR VALUES WITH (MODULUS 2, REMAINDER 1);
SELECT mig_define('h21_empty', 'h21_empty', 'DELETE FROM h21_empty WHERE id BETWEEN $1 AND $2') > 0 AS defined;
CALL mig_run('h21_empty');
SELECT status, processed, batches, cursor, high_water FROM migrations WHERE name = 'h21_empty';
