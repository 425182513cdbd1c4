--
-- 050_define_checks: what mig_define learns from the analyzed action and
-- checks before anything runs: the search_path it pins (pg_temp last), the
-- table the action writes to, key columns the action must not change, the
-- privileges the action needs, redefinitions compared by meaning, and key
-- columns compared one by one with the batch bounds.
--
-- d50_err(sql) runs one statement and returns "SQLSTATE: message" plus the
-- DETAIL and HINT; d50_catalog() fingerprints the catalog, to show that a
-- refused definition leaves it as it was (with a fixed search_path, since
-- how a regclass is printed depends on it).
--
CREATE FUNCTION d50_err(q text) RETURNS text LANGUAGE plpgsql AS $$
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
CREATE FUNCTION d50_catalog() RETURNS text LANGUAGE sql
SET search_path = public, pg_catalog, pg_temp AS $$
	SELECT (SELECT count(*) FROM migrations) || ' migrations, '
		|| (SELECT md5(coalesce(string_agg(m::text, '|' ORDER BY m.id), ''))
			  FROM migrations m)
$$;

-- ---------------------------------------------------------------------------
-- 1. The search_path is recorded with pg_temp explicitly last, so that a
-- temporary table of the same name cannot capture an unqualified action.
CREATE TABLE d50_tt (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO d50_tt (id) SELECT generate_series(1, 10);
SHOW search_path;
SELECT mig_define('d50_pinned', 'd50_tt',
	'UPDATE d50_tt SET n = n + 1 WHERE id BETWEEN $1 AND $2', 3) > 0 AS defined;
SELECT search_path, action_target FROM migrations WHERE name = 'd50_pinned';
-- a temporary table of the same name, created after the definition
CREATE TEMP TABLE d50_tt (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO d50_tt (id) SELECT generate_series(1, 10);
SELECT 'd50_tt'::regclass = 'pg_temp.d50_tt'::regclass AS temp_comes_first;
CALL mig_run('d50_pinned');
SELECT status, processed, batches FROM migrations WHERE name = 'd50_pinned';
-- the real table is migrated, every row once; the temporary one is untouched
SELECT n, count(*) FROM public.d50_tt GROUP BY n ORDER BY n;
SELECT n, count(*) FROM pg_temp.d50_tt GROUP BY n ORDER BY n;

-- every pg_temp entry (and pg_temp_N, some session's temporary schema) is
-- removed, pg_temp goes last, and the path is normalized (names quoted as
-- needed, one separator)
SET search_path = pg_temp, public;
SELECT mig_define('d50_path_1', 'public.d50_tt', 'SELECT $1, $2') > 0 AS defined;
SET search_path = "$user",PUBLIC,  pg_temp, pg_catalog;
SELECT mig_define('d50_path_2', 'public.d50_tt', 'SELECT $1, $2') > 0 AS defined;
SET search_path = '';
SELECT public.mig_define('d50_path_3', 'public.d50_tt', 'SELECT $1, $2') > 0 AS defined;
SET search_path = "Mixed Case", public, pg_temp, pg_temp_99, pg_temp;
SELECT mig_define('d50_path_4', 'public.d50_tt', 'SELECT $1, $2') > 0 AS defined;
RESET search_path;
SELECT name, search_path FROM migrations WHERE name LIKE 'd50\_path\_%' ORDER BY name;

-- ---------------------------------------------------------------------------
-- 2. The table the action writes to is recorded as action_target: the
-- migration's relation, another table the action names on purpose, or NULL
-- for an action that writes nothing.
CREATE TABLE d50_archive (id int PRIMARY KEY, n int);
SELECT mig_define('d50_archive', 'public.d50_tt',
	$$INSERT INTO d50_archive SELECT * FROM public.d50_tt WHERE id BETWEEN $1 AND $2$$, 4) > 0 AS defined;
SELECT mig_define('d50_read', 'public.d50_tt',
	$$SELECT count(*) FROM public.d50_tt WHERE id BETWEEN $1 AND $2$$) > 0 AS defined;
-- a SELECT that writes in a WITH query writes that table; an INSERT that
-- moves rows out of the relation writes the archive
SELECT mig_define('d50_cte_update', 'public.d50_tt',
	$$WITH u AS (UPDATE public.d50_tt SET n = n + 1 WHERE id BETWEEN $1 AND $2 RETURNING id)
	  SELECT count(*) FROM u$$) > 0 AS defined;
SELECT mig_define('d50_cte_move', 'public.d50_tt',
	$$WITH d AS (DELETE FROM public.d50_tt WHERE id BETWEEN $1 AND $2 RETURNING *)
	  INSERT INTO d50_archive SELECT * FROM d$$) > 0 AS defined;
SELECT name, action_target FROM migrations
 WHERE name IN ('d50_pinned', 'd50_archive', 'd50_read', 'd50_cte_update', 'd50_cte_move')
 ORDER BY name;
CALL mig_run('d50_archive');
SELECT status, processed FROM migrations WHERE name = 'd50_archive';
SELECT count(*), sum(n) FROM d50_archive;

SELECT d50_catalog() AS before \gset
-- a temporary table is never a target: a worker cannot see it.  That is
-- so whether the action names it with pg_temp, reaches it through pg_temp
-- at the end of the path (no permanent table has its name), or it is the
-- migration's relation itself
CREATE TEMP TABLE d50_temp_log (id int, n int);
SELECT call, d50_err(call) AS error FROM (VALUES
	($$SELECT mig_define('d50_x', 'public.d50_tt', 'INSERT INTO pg_temp.d50_temp_log SELECT * FROM public.d50_tt WHERE id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('d50_x', 'public.d50_tt', 'INSERT INTO d50_temp_log SELECT * FROM public.d50_tt WHERE id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('d50_x', 'pg_temp.d50_tt', 'UPDATE pg_temp.d50_tt SET n = 1 WHERE id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('d50_x', 'public.d50_tt', 'WITH l AS (INSERT INTO d50_temp_log VALUES ($1, $2) RETURNING 1) SELECT count(*) FROM l')$$)
) AS c(call);
-- a table of the same name as the migration's relation but another one: the
-- temporary table, which 'd50_tt' names while it exists ...
SELECT mig_define('d50_x', 'd50_tt',
	'UPDATE d50_tt SET n = n + 1 WHERE id BETWEEN $1 AND $2');
DROP TABLE pg_temp.d50_tt, pg_temp.d50_temp_log;
-- ... or a table in a schema earlier on the path
CREATE SCHEMA d50_s;
CREATE TABLE d50_s.d50_tt (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
SET search_path = d50_s, public;
SELECT mig_define('d50_x', 'public.d50_tt',
	'UPDATE d50_tt SET n = n + 1 WHERE id BETWEEN $1 AND $2');
-- qualified, as the hint says, it is fine
SELECT mig_define('d50_qualified', 'public.d50_tt',
	'UPDATE public.d50_tt SET n = n + 1 WHERE id BETWEEN $1 AND $2') > 0 AS defined;
RESET search_path;
DELETE FROM migrations WHERE name = 'd50_qualified';
SELECT d50_catalog() = :'before' AS catalog_unchanged;

-- ---------------------------------------------------------------------------
-- 3. An action must not change a key column of the migration's relation: a
-- row whose key moves forward would be visited again by a later batch, and
-- one whose key moves backward never.  (1.0 ran the first action below to
-- completion with 20 of the 1000 rows updated twice.)
CREATE TABLE d50_a (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, note text);
INSERT INTO d50_a (id) SELECT g * 10 FROM generate_series(1, 1000) g;
SELECT d50_catalog() AS before \gset
SELECT mig_define('d50_move', 'd50_a',
	'UPDATE d50_a SET id = id + 1, n = n + 1 WHERE id BETWEEN $1 AND $2', 50);
-- in every statement that can assign a column
SELECT call, d50_err(call) AS error FROM (VALUES
	($$SELECT mig_define('d50_x', 'd50_a', 'UPDATE d50_a SET (n, id) = (n + 1, -id) WHERE id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('d50_x', 'd50_a', 'UPDATE d50_a AS a SET id = a.id WHERE a.id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('d50_x', 'd50_a', 'MERGE INTO d50_a a USING (SELECT generate_series($1, $2) AS id) s ON a.id = s.id WHEN MATCHED THEN UPDATE SET id = a.id + 1')$$),
	($$SELECT mig_define('d50_x', 'd50_a', 'INSERT INTO d50_a (id) SELECT id FROM d50_a WHERE id BETWEEN $1 AND $2 ON CONFLICT (id) DO UPDATE SET id = excluded.id + 1')$$),
	($$SELECT mig_define('d50_x', 'd50_a', 'WITH u AS (UPDATE d50_a SET id = id + 1 WHERE id BETWEEN $1 AND $2 RETURNING 1) SELECT count(*) FROM u')$$)
) AS c(call);
SELECT d50_catalog() = :'before' AS catalog_unchanged;
SELECT n, count(*) FROM d50_a GROUP BY n ORDER BY n;
-- other columns, an upsert that sets other columns, and the key columns of
-- another table are fine
SELECT mig_define('d50_bump', 'd50_a',
	'UPDATE d50_a SET n = n + 1 WHERE id BETWEEN $1 AND $2', 50) > 0 AS defined;
SELECT mig_define('d50_upsert', 'd50_a',
	$$INSERT INTO d50_a (id) SELECT id FROM d50_a WHERE id BETWEEN $1 AND $2
	  ON CONFLICT (id) DO UPDATE SET note = 'seen'$$, 50) > 0 AS defined;
SELECT mig_define('d50_renumber_archive', 'd50_a',
	'UPDATE d50_archive SET id = id + 1000 WHERE id BETWEEN $1 AND $2', 50) > 0 AS defined;
CALL mig_run('d50_bump');
SELECT status, processed, batches FROM migrations WHERE name = 'd50_bump';
SELECT n, count(*) FROM d50_a GROUP BY n ORDER BY n;

-- a partitioned relation: the key is the parent's, and a partition's
-- columns may have other numbers (here n of the partition is number 1, as id
-- of the parent is), so columns are matched by name
CREATE TABLE d50_p (id int NOT NULL, v int, n int NOT NULL DEFAULT 0, PRIMARY KEY (id))
	PARTITION BY RANGE (id);
CREATE TABLE d50_p_1 (n int NOT NULL DEFAULT 0, v int, id int NOT NULL);
ALTER TABLE d50_p ATTACH PARTITION d50_p_1 FOR VALUES FROM (0) TO (100);
SELECT attname, attnum FROM pg_attribute
 WHERE attrelid IN ('d50_p'::regclass, 'd50_p_1'::regclass) AND attnum > 0
 ORDER BY attrelid::regclass::text, attnum;
SELECT call, d50_err(call) AS error FROM (VALUES
	($$SELECT mig_define('d50_x', 'd50_p', 'UPDATE d50_p SET id = id + 1 WHERE id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('d50_x', 'd50_p', 'UPDATE d50_p_1 SET id = id + 1 WHERE id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('d50_x', 'd50_p', 'UPDATE d50_p_1 SET n = n + 1 WHERE id BETWEEN $1 AND $2')$$)
) AS c(call);
SELECT action_target FROM migrations WHERE name = 'd50_x';
DELETE FROM migrations WHERE name = 'd50_x';

-- ---------------------------------------------------------------------------
-- 4. Privileges: the caller, who becomes the owner, must be able to read the
-- key and must hold every privilege the action needs, as the executor checks
-- them; UPDATE on the relation is no longer required as such.
CREATE ROLE regress_mr_d50_cleaner;
CREATE ROLE regress_mr_d50_narrow;
CREATE TABLE d50_logs (id int PRIMARY KEY, ts timestamptz NOT NULL);
INSERT INTO d50_logs
	SELECT g, CASE WHEN g % 2 = 0 THEN now() - interval '2 days' ELSE now() END
	  FROM generate_series(1, 20) g;
GRANT SELECT, DELETE ON d50_logs TO regress_mr_d50_cleaner;
CREATE TABLE d50_r (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO d50_r (id) SELECT generate_series(1, 10);
CREATE TABLE d50_secret (id int PRIMARY KEY);
GRANT UPDATE, SELECT (id) ON d50_r TO regress_mr_d50_narrow;
-- SELECT and DELETE are what a DELETE with a condition on ts needs
SET ROLE regress_mr_d50_cleaner;
SELECT mig_define('d50_cleanup', 'd50_logs',
	$$DELETE FROM d50_logs WHERE id BETWEEN $1 AND $2 AND ts < now() - '1 day'::interval$$, 6) > 0 AS defined;
CALL mig_run('d50_cleanup');
SELECT status, processed, batches FROM migrations WHERE name = 'd50_cleanup';
RESET ROLE;
SELECT count(*) AS left_over, count(*) FILTER (WHERE ts < now() - interval '1 day') AS old
  FROM d50_logs;
SELECT d50_catalog() AS before \gset
-- UPDATE and SELECT (id) do not cover reading n: refused at define time with
-- the executor's error (1.0 accepted it, then failed batch 1)
SET ROLE regress_mr_d50_narrow;
SELECT mig_define('d50_narrow', 'd50_r',
	'UPDATE d50_r SET n = n + 1 WHERE id BETWEEN $1 AND $2');
SELECT call, d50_err(call) AS error FROM (VALUES
	($$SELECT mig_define('d50_narrow', 'd50_r', 'UPDATE d50_r SET n = 1 WHERE id BETWEEN $1 AND $2 AND n = 0')$$),
	($$SELECT mig_define('d50_narrow', 'd50_r', 'UPDATE d50_r SET n = 1 WHERE id BETWEEN $1 AND $2 AND id IN (SELECT id FROM d50_secret)')$$),
	($$SELECT mig_define('d50_narrow', 'd50_r', 'WITH s AS (SELECT id FROM d50_secret) UPDATE d50_r SET n = 1 FROM s WHERE d50_r.id = s.id AND d50_r.id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('d50_narrow', 'd50_r', 'DELETE FROM d50_r WHERE id BETWEEN $1 AND $2')$$),
	($$SELECT mig_define('d50_narrow', 'd50_logs', 'SELECT $1, $2')$$)
) AS c(call);
-- what the role may do, it may define
SELECT mig_define('d50_narrow', 'd50_r',
	'UPDATE d50_r SET n = 1 WHERE id BETWEEN $1 AND $2') > 0 AS defined;
RESET ROLE;
SELECT name, owner FROM migrations WHERE owner = 'regress_mr_d50_narrow'::regrole;
DELETE FROM migrations WHERE name = 'd50_narrow';
SELECT d50_catalog() = :'before' AS catalog_unchanged;

-- ---------------------------------------------------------------------------
-- 5. Defining a name again compares the analyzed actions: the same statement
-- written differently is the same definition, and so is the same path
-- written differently.
CREATE TABLE d50_same (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, extra int);
SELECT mig_define('d50_same', 'd50_same',
	'UPDATE d50_same SET n = n + 1 WHERE id BETWEEN $1 AND $2') AS id \gset d50_
SELECT mig_define('d50_same', 'd50_same', E'UPDATE  d50_same\n   SET n = n+1\n WHERE id BETWEEN $1 AND $2') = :d50_id AS spaces_and_newlines,
	   mig_define('d50_same', 'd50_same', 'UPDATE d50_same SET n = n + 1 WHERE id BETWEEN $1 AND $2;') = :d50_id AS trailing_semicolon,
	   mig_define('d50_same', 'd50_same', E'-- bump\nUPDATE d50_same SET n = n + 1 /* the batch */ WHERE id BETWEEN $1 AND $2') = :d50_id AS comments,
	   mig_define('d50_same', 'd50_same', 'update D50_SAME set N = n + 1 where ID between $1 and $2') = :d50_id AS keyword_case;
SET search_path = pg_temp, "$user", public;
SELECT mig_define('d50_same', 'd50_same',
	'UPDATE d50_same SET n = n + 1 WHERE id BETWEEN $1 AND $2') = :d50_id AS same_pinned_path;
RESET search_path;
-- a row defined by 1.0 holds the caller's path as it was: it is compared
-- pinned
UPDATE migrations SET search_path = '"$user", public' WHERE name = 'd50_same';
SELECT mig_define('d50_same', 'd50_same',
	'UPDATE d50_same SET n = n + 1 WHERE id BETWEEN $1 AND $2') = :d50_id AS same_as_1_0_row;
SELECT d50_catalog() AS before \gset
-- another meaning, or another search_path, is another definition
SELECT mig_define('d50_same', 'd50_same',
	'UPDATE d50_same SET n = n + 2 WHERE id BETWEEN $1 AND $2');
SELECT mig_define('d50_same', 'd50_same',
	'UPDATE d50_same SET n = n + 1 WHERE id BETWEEN $1 AND $2 AND n >= 0');
SET search_path = public;
SELECT mig_define('d50_same', 'd50_same',
	'UPDATE d50_same SET n = n + 1 WHERE id BETWEEN $1 AND $2');
RESET search_path;
-- an existing action that no longer analyzes is compared as text
SELECT mig_define('d50_gone', 'd50_same',
	'UPDATE d50_same SET extra = 1 WHERE id BETWEEN $1 AND $2') > 0 AS defined;
ALTER TABLE d50_same DROP COLUMN extra;
SELECT d50_catalog() AS before \gset
SELECT mig_define('d50_gone', 'd50_same',
	'UPDATE d50_same SET n = 1 WHERE id BETWEEN $1 AND $2');
SELECT d50_catalog() = :'before' AS catalog_unchanged;

-- ---------------------------------------------------------------------------
-- 6. A key of several columns is a range of whole keys: comparing a later
-- key column on its own with its bounds skips rows.  That is a WARNING (the
-- migration is still defined); the row comparison is the right form.
CREATE TABLE d50_orders (
	tenant_id int NOT NULL,
	id int NOT NULL,
	n int NOT NULL DEFAULT 0,
	PRIMARY KEY (tenant_id, id)
);
INSERT INTO d50_orders (tenant_id, id)
	SELECT t, i FROM generate_series(1, 5) t, generate_series(1, 1000) i;
SELECT mig_define('d50_per_column', 'd50_orders',
	$$UPDATE d50_orders SET n = n + 1
	   WHERE tenant_id BETWEEN $1 AND $3 AND id BETWEEN $2 AND $4$$, 300) > 0 AS defined;
-- also with one bound, or the bound on the left
SELECT mig_define('d50_one_bound', 'd50_orders',
	$$UPDATE d50_orders SET n = n + 1
	   WHERE (tenant_id, id) <= ($3, $4) AND tenant_id >= $1 AND $2 <= id$$, 300) > 0 AS defined;
-- the leading column alone, and later columns compared with something else
-- than their own bounds, are no such comparison
SELECT mig_define('d50_leading', 'd50_orders',
	$$UPDATE d50_orders SET n = n + 1
	   WHERE tenant_id BETWEEN $1 AND $3 AND (tenant_id, id) BETWEEN ($1, $2) AND ($3, $4)
	     AND id > 0 AND id <> $2$$, 300) > 0 AS defined;
SELECT mig_define('d50_row', 'd50_orders',
	$$UPDATE d50_orders SET n = n + 1
	   WHERE (tenant_id, id) BETWEEN ($1, $2) AND ($3, $4)$$, 300) > 0 AS defined;
-- run as defined, the column-wise form skips every batch that spans tenants
CALL mig_run('d50_per_column');
SELECT status, processed, scanned FROM migrations WHERE name = 'd50_per_column';
SELECT n, count(*) FROM d50_orders GROUP BY n ORDER BY n;
-- the row form migrates every row exactly once
UPDATE d50_orders SET n = 0;
CALL mig_run('d50_row');
SELECT status, processed, scanned FROM migrations WHERE name = 'd50_row';
SELECT n, count(*) FROM d50_orders GROUP BY n ORDER BY n;

-- clean up
DELETE FROM migrations WHERE name LIKE 'd50\_%';
DROP TABLE d50_tt, d50_archive, d50_a, d50_p, d50_logs, d50_r, d50_secret,
	d50_same, d50_orders;
DROP SCHEMA d50_s CASCADE;
DROP ROLE regress_mr_d50_cleaner, regress_mr_d50_narrow;
DROP FUNCTION d50_err(text);
DROP FUNCTION d50_catalog();
