--
-- 060_status_details: mig_status without statistics, its rate after
-- completion, and the progress that notifications carry.
--
-- * total_estimate of a table never analyzed (pg_class.reltuples = -1) is
--   its live-row count from the cumulative statistics (n_live_tup); of a
--   partitioned table, the sum over its leaves; NULL only when nothing is
--   known.  Statistics reach the shared counters when a session flushes
--   them: pg_stat_force_next_flush() makes that happen at the end of the
--   next statement, so the counts below are exact.
-- * rows_per_sec of a completed migration is the run's average: keys walked
--   over completed_at - started_at.
-- * the notification of mig_reset (and of an application-driven restart)
--   carries the new processed count, 0.
--
-- The tables have autovacuum off, so that no ANALYZE runs behind the test's
-- back.  Managed migrations are never left running here (the worker serves
-- this database).
--
-- ---------------------------------------------------------------------------
-- a table never analyzed: the total is its live rows
CREATE TABLE h60_users (id int PRIMARY KEY, d int NOT NULL DEFAULT 1, n int NOT NULL DEFAULT 0)
	WITH (autovacuum_enabled = off);
INSERT INTO h60_users (id) SELECT generate_series(1, 200);
UPDATE h60_users SET d = 0 WHERE id = 58;
SELECT pg_stat_force_next_flush();
SELECT reltuples < 0 AS never_analyzed FROM pg_class WHERE oid = 'h60_users'::regclass;
SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'h60_users'::regclass;
-- it fails in batch 12 (keys 56 to 60) of 40
SELECT mig_define('h60_users_v1', 'h60_users',
	$$UPDATE h60_users SET n = n + 1 / d WHERE id BETWEEN $1 AND $2$$,
	batch_size => 5) > 0 AS defined;
SELECT status, scanned, total_estimate, percent, eta FROM mig_status WHERE name = 'h60_users_v1';
CALL mig_run('h60_users_v1');
SELECT status, scanned, total_estimate, percent, eta FROM mig_status WHERE name = 'h60_users_v1';
-- running (in a transaction that rolls back, so that no worker takes it):
-- the ETA follows from the rate and the keys left
BEGIN;
SELECT mig_start('h60_users_v1') > 0 AS started;
SELECT status, percent, rows_per_sec > 0 AS has_rate, eta IS NOT NULL AS has_eta,
	   eta >= interval '0' AS eta_not_negative
  FROM mig_status WHERE name = 'h60_users_v1';
ROLLBACK;

-- rows deleted and inserted since count too
DELETE FROM h60_users WHERE id > 150;
INSERT INTO h60_users (id) SELECT generate_series(1001, 1010);
SELECT pg_stat_force_next_flush();
SELECT total_estimate, percent FROM mig_status WHERE name = 'h60_users_v1';

-- nothing known (statistics reset, as after a crash): no total, no percent
SELECT pg_stat_reset_single_table_counters('h60_users'::regclass);
SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'h60_users'::regclass;
SELECT total_estimate, percent, eta FROM mig_status WHERE name = 'h60_users_v1';
-- after the reset only the rows inserted since are counted, 10 here: the
-- total never falls below the 55 keys walked
INSERT INTO h60_users (id) SELECT generate_series(1011, 1020);
SELECT pg_stat_force_next_flush();
SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'h60_users'::regclass;
SELECT scanned, total_estimate, percent FROM mig_status WHERE name = 'h60_users_v1';

-- analyzed, the planner's estimate is used, as before: 170 rows
ANALYZE h60_users;
SELECT total_estimate, percent FROM mig_status WHERE name = 'h60_users_v1';

-- ---------------------------------------------------------------------------
-- a partitioned table: each leaf by its reltuples if analyzed, else by its
-- live rows; the partitioned table's own estimate once it is analyzed
CREATE TABLE h60_events (tenant int NOT NULL, id int NOT NULL, n int NOT NULL DEFAULT 0,
	PRIMARY KEY (tenant, id)) PARTITION BY RANGE (tenant);
CREATE TABLE h60_events_a PARTITION OF h60_events FOR VALUES FROM (0) TO (10)
	WITH (autovacuum_enabled = off);
CREATE TABLE h60_events_b PARTITION OF h60_events FOR VALUES FROM (10) TO (30)
	PARTITION BY RANGE (tenant);
CREATE TABLE h60_events_b1 PARTITION OF h60_events_b FOR VALUES FROM (10) TO (20)
	WITH (autovacuum_enabled = off);
CREATE TABLE h60_events_b2 PARTITION OF h60_events_b FOR VALUES FROM (20) TO (30)
	WITH (autovacuum_enabled = off);
INSERT INTO h60_events (tenant, id)
SELECT t, i FROM (VALUES (1), (11), (21)) v(t), generate_series(1, 10) i;
SELECT mig_define('h60_events_v1', 'h60_events',
	$$UPDATE h60_events SET n = n + 1 WHERE (tenant, id) BETWEEN ($1, $2) AND ($3, $4)$$,
	batch_size => 2) > 0 AS defined;
SELECT pg_stat_force_next_flush();
SELECT total_estimate, percent FROM mig_status WHERE name = 'h60_events_v1';
-- leaf a analyzed (10 rows), then 5 more rows in a and in b1: a still
-- counts 10 (its reltuples), b1 counts its 15 live rows, b2 its 10
ANALYZE h60_events_a;
INSERT INTO h60_events (tenant, id)
SELECT t, i FROM (VALUES (1), (11)) v(t), generate_series(11, 15) i;
SELECT pg_stat_force_next_flush();
SELECT total_estimate FROM mig_status WHERE name = 'h60_events_v1';
-- the partitioned table analyzed: its own estimate of every row
ANALYZE h60_events;
SELECT total_estimate FROM mig_status WHERE name = 'h60_events_v1';

-- ---------------------------------------------------------------------------
-- after completion, rows_per_sec is the run's average: keys walked over the
-- time from started_at to completed_at, not the rate of the last 20 batches
CALL mig_run('h60_events_v1');
SELECT status, scanned,
	   rows_per_sec = round(scanned / nullif(extract(epoch FROM completed_at - started_at), 0), 1)
	   AS is_run_average
  FROM mig_status WHERE name = 'h60_events_v1';
-- h60_users_v1 resumed: keys 56 to 150 (the rows past its high-water mark,
-- 200, inserted after it started, are not visited)
UPDATE h60_users SET d = 1;
CALL mig_run('h60_users_v1');
SELECT status, scanned, batches, total_estimate, percent FROM mig_status WHERE name = 'h60_users_v1';
-- with known times: 150 keys in 30 batches over 10 seconds
UPDATE migrations SET started_at = completed_at - interval '10 seconds' WHERE name = 'h60_users_v1';
SELECT rows_per_sec FROM mig_status WHERE name = 'h60_users_v1';
-- no keys, or no run of the batch engine: no rate
CREATE TABLE h60_empty (id int PRIMARY KEY) WITH (autovacuum_enabled = off);
SELECT mig_define('h60_empty_v1', 'h60_empty', 'SELECT $1, $2') > 0 AS defined;
CALL mig_run('h60_empty_v1');
SET client_min_messages = warning;
SELECT mig_complete(mig_start('h60_app_v1'));
RESET client_min_messages;
SELECT name, status, scanned, rows_per_sec FROM mig_status
 WHERE name IN ('h60_empty_v1', 'h60_app_v1') ORDER BY name;

-- ---------------------------------------------------------------------------
-- notifications: mig_reset announces processed 0, and so does the restart
-- of an application-driven migration (the seed starts it over from 0).
-- psql prints them with the sending process's PID, which is masked.
\getenv abs_builddir PG_ABS_BUILDDIR
\set h60_notify_file :abs_builddir '/results/060_notifications.txt'
SELECT processed FROM migrations WHERE name = 'h60_users_v1';
SET client_min_messages = warning;
SELECT mig_start('h60_app_v2') AS app_id \gset h60_
RESET client_min_messages;
SELECT mig_update_progress(:h60_app_id, 42);
SELECT mig_fail(:h60_app_id, 'try again');
LISTEN migration_runner;
\o :h60_notify_file
SELECT mig_reset('h60_users_v1');
SELECT mig_start('h60_app_v2') = :h60_app_id AS restarted;
\o
UNLISTEN migration_runner;
SELECT regexp_replace(line, 'PID [0-9]+', 'PID N') AS notification
  FROM regexp_split_to_table(pg_read_file(:'h60_notify_file'), '\n') AS line
 WHERE line LIKE 'Asynchronous notification%';
SELECT name, status, processed FROM migrations WHERE name IN ('h60_users_v1', 'h60_app_v2') ORDER BY name;

-- clean up
DELETE FROM migrations WHERE name LIKE 'h60\_%';
DROP TABLE h60_users, h60_events, h60_empty;
