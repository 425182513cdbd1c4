--
-- 020_bad_input: every function rejects bad input with a clear ERROR and a
-- proper SQLSTATE, and leaves the catalog exactly as it was.
--
-- h20_err(sql) runs one statement and returns "SQLSTATE: message" plus the
-- DETAIL and HINT, so that the error code is part of the expected output.
-- h20_catalog() fingerprints the catalog: rows being run by someone else
-- (status running) are left out of the checksum, not out of the count.
--
CREATE FUNCTION h20_err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; det text; hin text;
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT;
	RETURN st || ': ' || msg
		|| coalesce(E'\nDETAIL: ' || nullif(det, ''), '')
		|| coalesce(E'\nHINT: ' || nullif(hin, ''), '');
END $$;
CREATE FUNCTION h20_catalog() RETURNS text LANGUAGE sql AS $$
	SELECT (SELECT count(*) FROM migrations) || ' migrations, '
		|| (SELECT count(*) FROM migration_batches) || ' batches, '
		|| (SELECT md5(coalesce(string_agg(m::text, '|' ORDER BY m.id), ''))
			  FROM migrations m WHERE m.status <> 'running')
$$;
CREATE TABLE h20_t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO h20_t (id) SELECT generate_series(1, 10);
SELECT h20_catalog() AS before \gset
-- NULL for each argument of every function
SELECT call, h20_err(call) AS error FROM (VALUES
	($$SELECT mig_define(NULL, 'h20_t', 'SELECT $1, $2')$$),
	($$SELECT mig_define('h20_x', NULL, 'SELECT $1, $2')$$),
	($$SELECT mig_define('h20_x', 'h20_t', NULL)$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT $1, $2', NULL)$$),
	($$SELECT mig_start(NULL)$$),
	($$SELECT mig_has_run(NULL)$$),
	($$SELECT mig_update_progress(NULL, 1)$$),
	($$SELECT mig_update_progress(1, NULL)$$),
	($$SELECT mig_complete(NULL)$$),
	($$SELECT mig_fail(NULL, 'boom')$$),
	($$SELECT mig_fail(1, NULL)$$),
	($$SELECT mig_pause(NULL)$$),
	($$SELECT mig_resume(NULL)$$),
	($$SELECT mig_cancel(NULL)$$),
	($$SELECT mig_reset(NULL)$$),
	($$SELECT mig_wait(NULL)$$),
	($$SELECT mig_wait(NULL, '1 s')$$)
) AS c(call);
CALL mig_run(NULL);
SELECT h20_catalog() = :'before' AS catalog_unchanged;
-- the optional arguments of mig_define may be NULL: NULL means the default
SELECT mig_define('h20_nulls', 'h20_t', 'SELECT $1, $2', 10, NULL, NULL, NULL, NULL, NULL, NULL) > 0 AS defined;
SELECT key_columns, batch_delay, lock_timeout, statement_timeout, max_retries, target_batch_time
  FROM migrations WHERE name = 'h20_nulls';
SELECT h20_catalog() AS before \gset
-- names: empty, too long (bytes, not characters), unknown
SELECT call, h20_err(call) AS error FROM (VALUES
	($$SELECT mig_define('', 'h20_t', 'SELECT $1, $2')$$),
	($$SELECT mig_define(repeat('n', 201), 'h20_t', 'SELECT $1, $2')$$),
	($$SELECT mig_define(repeat('é', 101), 'h20_t', 'SELECT $1, $2')$$),
	($$SELECT mig_start('')$$),
	($$SELECT mig_start(repeat('n', 201))$$),
	($$SELECT mig_pause('h20_nosuch')$$),
	($$SELECT mig_resume('h20_nosuch')$$),
	($$SELECT mig_cancel('h20_nosuch')$$),
	($$SELECT mig_reset('h20_nosuch')$$),
	($$SELECT mig_wait('h20_nosuch', '0 s')$$),
	($$SELECT mig_wait('h20_nosuch', '-1 s')$$)
) AS c(call);
CALL mig_run('h20_nosuch');
CALL mig_run('');
SELECT h20_catalog() = :'before' AS catalog_unchanged;
SELECT mig_has_run(''), mig_has_run('h20_nosuch'), mig_has_run(repeat('n', 201));
-- a name of exactly 200 bytes is fine
SELECT mig_define(repeat('é', 100), 'h20_t', 'SELECT $1, $2') > 0 AS defined_200_bytes;
SELECT octet_length(name), length(name) FROM migrations WHERE name = repeat('é', 100);
SELECT h20_catalog() AS before \gset
-- unknown ids: mig_update_progress is a no-op (as in the seed), the others
-- are errors
SELECT mig_update_progress(-1, 5);
SELECT call, h20_err(call) AS error FROM (VALUES
	($$SELECT mig_update_progress(-1, -5)$$),
	($$SELECT mig_complete(-1)$$),
	($$SELECT mig_fail(-1, 'boom')$$),
	($$SELECT mig_complete(9223372036854775807)$$)
) AS c(call);
SELECT h20_catalog() = :'before' AS catalog_unchanged;
-- relations that cannot be migrated
CREATE VIEW h20_view AS SELECT * FROM h20_t;
CREATE MATERIALIZED VIEW h20_matview AS SELECT * FROM h20_t;
CREATE SEQUENCE h20_seq;
CREATE TYPE h20_composite AS (id int);
CREATE FOREIGN DATA WRAPPER h20_fdw;
CREATE SERVER h20_server FOREIGN DATA WRAPPER h20_fdw;
CREATE FOREIGN TABLE h20_foreign (id int NOT NULL) SERVER h20_server;
CREATE TABLE h20_dropped (id int PRIMARY KEY);
SELECT 'h20_dropped'::regclass::oid AS dropped_oid \gset
DROP TABLE h20_dropped;
SELECT call, h20_err(call) AS error FROM (VALUES
	($$SELECT mig_define('h20_x', 'h20_nosuch', 'SELECT $1, $2')$$),
	($$SELECT mig_define('h20_x', 0, 'SELECT $1, $2')$$),
	($$SELECT mig_define('h20_x', 'h20_view', 'SELECT $1, $2')$$),
	($$SELECT mig_define('h20_x', 'h20_matview', 'SELECT $1, $2')$$),
	($$SELECT mig_define('h20_x', 'h20_seq', 'SELECT $1, $2')$$),
	($$SELECT mig_define('h20_x', 'h20_composite', 'SELECT $1, $2')$$),
	($$SELECT mig_define('h20_x', 'h20_foreign', 'SELECT $1, $2')$$),
	($$SELECT mig_define('h20_x', 'h20_t_pkey', 'SELECT $1, $2')$$)
) AS c(call);
-- a dropped relation's OID (the OID is not printed)
SELECT replace(h20_err(format($$SELECT mig_define('h20_x', %s, 'SELECT $1, $2')$$, :dropped_oid)),
			   :'dropped_oid', 'N') AS error;
SELECT h20_catalog() = :'before' AS catalog_unchanged;
-- tables without a usable key
CREATE TABLE h20_nokey (id int NOT NULL, v int);
CREATE TABLE h20_nullable (id int UNIQUE, v int);
CREATE TABLE h20_keys (
	id int NOT NULL,
	a int NOT NULL,
	b int NOT NULL,
	t text NOT NULL,
	c text COLLATE "C" NOT NULL,
	n int,
	CONSTRAINT h20_keys_id_deferrable UNIQUE (id) DEFERRABLE);
CREATE UNIQUE INDEX h20_keys_a_partial ON h20_keys (a) WHERE a > 0;
CREATE UNIQUE INDEX h20_keys_b_desc ON h20_keys (b DESC);
CREATE UNIQUE INDEX h20_keys_t_pattern ON h20_keys (t text_pattern_ops);
CREATE UNIQUE INDEX h20_keys_c_collation ON h20_keys (c COLLATE "POSIX");
CREATE UNIQUE INDEX h20_keys_expr ON h20_keys ((a + b));
CREATE INDEX h20_keys_hash ON h20_keys USING hash (n);
CREATE UNIQUE INDEX h20_keys_ab ON h20_keys (a, b);
CREATE UNIQUE INDEX h20_keys_an ON h20_keys (a, n);
SELECT call, h20_err(call) AS error FROM (VALUES
	($$SELECT mig_define('h20_x', 'h20_nokey', 'SELECT $1, $2')$$),
	($$SELECT mig_define('h20_x', 'h20_nokey', 'SELECT $1, $2', 10, '{id}')$$),
	($$SELECT mig_define('h20_x', 'h20_nullable', 'SELECT $1, $2')$$),
	($$SELECT mig_define('h20_x', 'h20_nullable', 'SELECT $1, $2', 10, '{id}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2', 10, '{id}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2', 10, '{b}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2', 10, '{t}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2', 10, '{c}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2', 10, '{n}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2, $3, $4', 10, '{a,n}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2, $3, $4', 10, '{b,a}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2, $3, $4', 10, '{a}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2, $3, $4', 10, '{a,b,a}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2', 10, '{nosuch}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2', 10, '{"A"}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2', 10, '{}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2', 10, '{NULL}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2', 10, '{a,b,t,c,n,id,a,b,t}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2', 10, '{ctid}')$$)
) AS c(call);
SELECT h20_catalog() = :'before' AS catalog_unchanged;
-- the usable one, (a, b), is accepted
SELECT mig_define('h20_ab', 'h20_keys', 'UPDATE h20_keys SET n = 0 WHERE (a, b) BETWEEN ($1, $2) AND ($3, $4)', 10, '{a,b}') > 0 AS defined;
SELECT key_columns, key_types FROM migrations WHERE name = 'h20_ab';
SELECT h20_catalog() AS before \gset
-- actions: empty, not one statement, not DML, not parsing, wrong parameters
SELECT call, h20_err(call) AS error FROM (VALUES
	($$SELECT mig_define('h20_x', 'h20_t', '')$$),
	($$SELECT mig_define('h20_x', 'h20_t', E' \n\t ')$$),
	($$SELECT mig_define('h20_x', 'h20_t', ';')$$),
	($$SELECT mig_define('h20_x', 'h20_t', '-- nothing')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_t SET v = 1 WHERE id BETWEEN $1 AND $2; SELECT 1')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_t SET v = 1 WHERE id BETWEEN $1 AND $2; DROP TABLE h20_t')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'VACUUM h20_t')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'CREATE TABLE h20_created (id int)')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'BEGIN')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'COMMIT')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'EXPLAIN SELECT $1, $2')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'COPY h20_t TO STDOUT')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SET search_path = evil')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'CALL mig_run(''h20_ab'')')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT * INTO h20_copy FROM h20_t WHERE id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'DO $do$ BEGIN END $do$')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_t SET v = 1')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_t SET v = 1 WHERE id = $1')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_t SET v = 1 WHERE id <= $2')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_t SET v = 1 WHERE id BETWEEN $1 AND $3')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_t SET v = $3 WHERE id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_t SET v = 1 WHERE id::text BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_t SET v = $1::text WHERE id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_t SET nosuch = 1 WHERE id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_nosuch SET v = 1 WHERE id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_t SETT v = 1 WHERE id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT $1, $2, $3, $4')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2', 10, '{a,b}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2, $3', 10, '{a,b}')$$),
	($$SELECT mig_define('h20_x', 'h20_keys', 'SELECT $1, $2, $4', 10, '{a,b}')$$)
) AS c(call);
-- a syntax error points into the action, not into the calling statement
SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_t SETT v = 1 WHERE id BETWEEN $1 AND $2');
SELECT mig_define('h20_x', 'h20_t', 'UPDATE h20_t SET v = 1 WHERE id BETWEEN $1 AND $3');
SELECT h20_catalog() = :'before' AS catalog_unchanged;
-- batch_size and the options
SELECT call, h20_err(call) AS error FROM (VALUES
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT $1, $2', 0)$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT $1, $2', -1)$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT $1, $2', -2147483648)$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT $1, $2', 1000001)$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT $1, $2', 2147483647)$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT $1, $2', 10, batch_delay => '-1 ms')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT $1, $2', 10, lock_timeout => '-1 s')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT $1, $2', 10, statement_timeout => '1 month ago')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT $1, $2', 10, target_batch_time => '0')$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT $1, $2', 10, max_retries => -1)$$),
	($$SELECT mig_define('h20_x', 'h20_t', 'SELECT $1, $2', 10, max_retries => 1001)$$)
) AS c(call);
SELECT h20_catalog() = :'before' AS catalog_unchanged;
-- the bounds are inclusive
SELECT mig_define('h20_min', 'h20_t', 'SELECT $1, $2', 1) > 0 AS min_ok,
	   mig_define('h20_max', 'h20_t', 'SELECT $1, $2', 1000000) > 0 AS max_ok;
SELECT h20_catalog() AS before \gset
-- state errors of mig_run leave the catalog alone too
BEGIN;
CALL mig_run('h20_min');
ROLLBACK;
DO $$ BEGIN CALL mig_run('h20_min'); EXCEPTION WHEN OTHERS THEN RAISE NOTICE '%: %', SQLSTATE, SQLERRM; END $$;
SELECT mig_has_run('h20_min');
SELECT h20_catalog() = :'before' AS catalog_unchanged;
--
-- Names and texts with quotes, semicolons and SQL are data: stored and
-- reported literally, never executed.
--
SELECT mig_start($$h20_x'); DROP TABLE h20_t; --$$) > 0 AS started;
SELECT mig_start($$h20_"; DROP TABLE h20_t; --$$) > 0 AS started;
SELECT mig_start($$h20_$$ || chr(92) || $$'; SELECT pg_sleep(100); --$$) > 0 AS started;
SELECT mig_fail(id, $$it's $$ || chr(92) || $$ broken'); DROP TABLE h20_t; --$$)
  FROM migrations WHERE name = $$h20_x'); DROP TABLE h20_t; --$$;
SELECT mig_define($$h20_m'; DROP TABLE h20_t; --$$, 'h20_t',
	$$UPDATE h20_t SET v = v + 1 WHERE id BETWEEN $1 AND $2 -- '); DROP TABLE h20_t; $$, 4) > 0 AS defined;
CALL mig_run($$h20_m'; DROP TABLE h20_t; --$$);
-- the hints quote the name as a literal you can paste
SELECT mig_define($$h20_p'); DROP TABLE h20_t; --$$, 'h20_t', 'SELECT $1, $2') > 0 AS defined;
SELECT mig_pause($$h20_p'); DROP TABLE h20_t; --$$);
SELECT mig_cancel($$h20_p'); DROP TABLE h20_t; --$$);
CALL mig_run($$h20_p'); DROP TABLE h20_t; --$$);
SELECT mig_cancel($$h20_"; DROP TABLE h20_t; --$$);
SELECT mig_complete(id) FROM migrations WHERE name = $$h20_$$ || chr(92) || $$'; SELECT pg_sleep(100); --$$;
SELECT name, status, error, processed FROM migrations WHERE name LIKE 'h20\_%' AND relation IS NULL ORDER BY id;
SELECT name, status, processed, scanned, batches, cursor FROM migrations WHERE name LIKE 'h20\_m%' OR name LIKE 'h20\_p%' ORDER BY id;
SELECT count(*) AS rows, sum(v) AS updates FROM h20_t;
-- an action is one statement: a literal or a comment with SQL in it is fine,
-- but nothing after a semicolon sneaks in
SELECT h20_err($$SELECT mig_define('h20_y', 'h20_t', 'UPDATE h20_t SET v = v WHERE id BETWEEN $1 AND $2;DROP TABLE h20_t')$$) AS error;
SELECT count(*) FROM h20_t;
-- names are case and whitespace sensitive, and unique
SELECT mig_define('H20_T', 'h20_t', 'SELECT $1, $2') > 0 AS upper,
	   mig_define(' h20_t', 'h20_t', 'SELECT $1, $2') > 0 AS space;
SELECT count(*) FROM migrations WHERE lower(trim(name)) = 'h20_t';
-- clean up
DROP FOREIGN TABLE h20_foreign;
DROP SERVER h20_server;
DROP FOREIGN DATA WRAPPER h20_fdw;
DROP VIEW h20_view;
DROP MATERIALIZED VIEW h20_matview;
DROP SEQUENCE h20_seq;
DROP TYPE h20_composite;
DROP FUNCTION h20_err(text);
DROP FUNCTION h20_catalog();
