--
-- 051_exactly_once: CALL mig_run cannot be made to skip or repeat rows by
-- the session's settings, by a table created later on the search_path, or
-- by a key type whose text form cannot be stored exactly.
--
-- Each migration is made to fail part-way (its action divides by the
-- divisor of e51_ctl for keys past a point), so that a cursor is stored
-- under one session's settings; the run is then resumed under others.
--
CREATE TABLE e51_ctl (divisor int NOT NULL);
INSERT INTO e51_ctl VALUES (0);

-- a date key, cursor written under DateStyle 'SQL, DMY'
CREATE TABLE e51_date (d date PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO e51_date (d) SELECT DATE '2024-01-01' + i FROM generate_series(0, 90) i;
SELECT mig_define('e51_date_v1', 'e51_date',
	$$UPDATE e51_date SET n = n + 1 / CASE WHEN d >= DATE '2024-02-05'
	    THEN (SELECT divisor FROM e51_ctl) ELSE 1 END
	  WHERE d BETWEEN $1 AND $2$$, batch_size => 10) > 0 AS defined;
SET DateStyle = 'SQL, DMY';
\set VERBOSITY terse
CALL mig_run('e51_date_v1');
\set VERBOSITY default
RESET DateStyle;
-- stored in ISO form whatever the writer's DateStyle: 30 January, not 01/30
SELECT status, cursor, high_water, processed FROM migrations WHERE name = 'e51_date_v1';
SELECT first_key, last_key FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
 WHERE m.name = 'e51_date_v1' ORDER BY batch;
UPDATE e51_ctl SET divisor = 1;
SET DateStyle = 'German';
CALL mig_run('e51_date_v1');
RESET DateStyle;
SELECT status, processed, cursor FROM migrations WHERE name = 'e51_date_v1';
SELECT count(*) AS rows, count(*) FILTER (WHERE n <> 1) AS not_once FROM e51_date;

-- a timestamptz key, cursor written in India, read in UTC
UPDATE e51_ctl SET divisor = 0;
CREATE TABLE e51_ts (t timestamptz PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO e51_ts (t)
SELECT TIMESTAMPTZ '2024-04-01 00:00:00+00' + i * interval '7 minutes'
  FROM generate_series(0, 199) i;
SELECT mig_define('e51_ts_v1', 'e51_ts',
	$$UPDATE e51_ts SET n = n + 1 / CASE WHEN t >= TIMESTAMPTZ '2024-04-01 12:00:00+00'
	    THEN (SELECT divisor FROM e51_ctl) ELSE 1 END
	  WHERE t BETWEEN $1 AND $2$$, batch_size => 25) > 0 AS defined;
SET TimeZone = 'Asia/Kolkata';
SET DateStyle = 'SQL, DMY';
\set VERBOSITY terse
CALL mig_run('e51_ts_v1');
\set VERBOSITY default
RESET TimeZone;
RESET DateStyle;
SELECT status, cursor, high_water FROM migrations WHERE name = 'e51_ts_v1';
UPDATE e51_ctl SET divisor = 1;
SET TimeZone = 'America/St_Johns';
CALL mig_run('e51_ts_v1');
RESET TimeZone;
SELECT status, processed FROM migrations WHERE name = 'e51_ts_v1';
SELECT count(*) AS rows, count(*) FILTER (WHERE n <> 1) AS not_once FROM e51_ts;

-- a float8 key whose short text form loses digits
UPDATE e51_ctl SET divisor = 0;
CREATE TABLE e51_f (x float8 PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO e51_f (x) SELECT i * 0.1 + 1e-9 FROM generate_series(1, 100) i;
SELECT mig_define('e51_f_v1', 'e51_f',
	$$UPDATE e51_f SET n = n + 1 / CASE WHEN x > 5 THEN (SELECT divisor FROM e51_ctl) ELSE 1 END
	  WHERE x BETWEEN $1 AND $2$$, batch_size => 7) > 0 AS defined;
SET extra_float_digits = 0;
\set VERBOSITY terse
CALL mig_run('e51_f_v1');
\set VERBOSITY default
SELECT status, cursor FROM migrations WHERE name = 'e51_f_v1';
UPDATE e51_ctl SET divisor = 1;
CALL mig_run('e51_f_v1');
RESET extra_float_digits;
SELECT status, processed FROM migrations WHERE name = 'e51_f_v1';
SELECT count(*) AS rows, count(*) FILTER (WHERE n <> 1) AS not_once FROM e51_f;

-- a key type whose text form follows lc_monetary is refused
CREATE TABLE e51_money (m money PRIMARY KEY, n int NOT NULL DEFAULT 0);
SELECT mig_define('e51_money_v1', 'e51_money',
	'UPDATE e51_money SET n = n + 1 WHERE m BETWEEN $1 AND $2');

-- a table created later, earlier on the recorded search_path, would capture
-- the unqualified action: the run refuses to start
CREATE SCHEMA e51_s;
CREATE TABLE e51_cap (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO e51_cap (id) SELECT generate_series(1, 10);
SET search_path = e51_s, public;
SELECT mig_define('e51_cap_v1', 'e51_cap',
	'UPDATE e51_cap SET n = n + 1 WHERE id BETWEEN $1 AND $2', batch_size => 3) > 0 AS defined;
SELECT action_target FROM migrations WHERE name = 'e51_cap_v1';
CREATE TABLE e51_s.e51_cap (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO e51_s.e51_cap (id) SELECT generate_series(1, 10);
RESET search_path;
CALL mig_run('e51_cap_v1');
SELECT status, processed FROM migrations WHERE name = 'e51_cap_v1';
SELECT (SELECT sum(n) FROM public.e51_cap) AS real_table, (SELECT sum(n) FROM e51_s.e51_cap) AS captor;
-- once the captor is gone, CALL mig_run resumes the failed migration exactly once
DROP TABLE e51_s.e51_cap;
CALL mig_run('e51_cap_v1');
SELECT status, processed FROM migrations WHERE name = 'e51_cap_v1';
SELECT count(*) FILTER (WHERE n <> 1) AS not_once FROM public.e51_cap;

-- a run refuses to start without the key's unique index (as while pg_restore
-- is still loading the table: it creates the index after the rows)
CREATE TABLE e51_noidx (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO e51_noidx (id) SELECT generate_series(1, 10);
SELECT mig_define('e51_noidx_v1', 'e51_noidx',
	'UPDATE e51_noidx SET n = n + 1 WHERE id BETWEEN $1 AND $2', batch_size => 3) > 0 AS defined;
ALTER TABLE e51_noidx DROP CONSTRAINT e51_noidx_pkey;
CALL mig_run('e51_noidx_v1');
SELECT status, processed FROM migrations WHERE name = 'e51_noidx_v1';
ALTER TABLE e51_noidx ADD PRIMARY KEY (id);
CALL mig_run('e51_noidx_v1');
SELECT status, processed FROM migrations WHERE name = 'e51_noidx_v1';
SELECT count(*) FILTER (WHERE n <> 1) AS not_once FROM e51_noidx;

DELETE FROM migrations WHERE name LIKE 'e51\_%';
DROP TABLE e51_ctl, e51_date, e51_ts, e51_f, e51_money, e51_cap, e51_noidx;
DROP SCHEMA e51_s;
