--
-- 025_schema_change: the relation changes between two batches of a run.
--
-- Part A changes it from inside the run: the action calls h25_step, which
-- updates its batch and then, in the batch that holds key 7 (batch 2 of 5
-- keys), runs the DDL under test.  Batch 3 then meets the changed table.
-- Changes that make the run wrong (the table renamed, moved or dropped; a
-- key column dropped, renamed or retyped) fail the migration with a message
-- that says what changed, keeping the two committed batches.  Changes that
-- leave the key intact (a rewrite, a new column, CLUSTER, even dropping the
-- key's index: the bounds are still found, only more slowly) let it
-- complete, every row once.
--
-- Part B changes the table while a failed migration waits to be resumed.
--
CREATE TABLE h25_ddl (ddl text);
CREATE FUNCTION h25_step(tbl regclass, a int, b int) RETURNS SETOF int LANGUAGE plpgsql AS $$
DECLARE
	stmt text;
BEGIN
	RETURN QUERY EXECUTE format('UPDATE %s SET v = v + 1 WHERE id BETWEEN $1 AND $2 RETURNING id', tbl)
		USING a, b;
	IF 7 BETWEEN a AND b THEN
		FOR stmt IN SELECT ddl FROM h25_ddl LOOP
			EXECUTE stmt;
		END LOOP;
	END IF;
END $$;
-- a fresh table of 20 rows, a migration on it with batches of 5, and the DDL
CREATE FUNCTION h25_setup(tbl text, VARIADIC ddl text[]) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, w int)', tbl);
	EXECUTE format('INSERT INTO %I (id) SELECT generate_series(1, 20)', tbl);
	DELETE FROM h25_ddl;
	INSERT INTO h25_ddl SELECT unnest(ddl);
	RETURN mig_define(tbl, tbl::regclass, format('SELECT * FROM h25_step(%L, $1, $2)', tbl), 5) > 0;
END $$;
CREATE VIEW h25_result AS
SELECT name, status, processed, batches, cursor, error
  FROM migrations WHERE name LIKE 'h25\_%' ORDER BY id;
CREATE SCHEMA h25_elsewhere;
-- Part A: changes that fail the migration
SELECT h25_setup('h25_rename', 'ALTER TABLE h25_rename RENAME TO h25_renamed');
CALL mig_run('h25_rename');
SELECT h25_setup('h25_replace', 'ALTER TABLE h25_replace RENAME TO h25_replaced',
	'CREATE TABLE h25_replace (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, w int)',
	'INSERT INTO h25_replace (id) SELECT generate_series(1, 20)');
CALL mig_run('h25_replace');
SELECT h25_setup('h25_move', 'ALTER TABLE h25_move SET SCHEMA h25_elsewhere');
CALL mig_run('h25_move');
SELECT h25_setup('h25_drop', 'DROP TABLE h25_drop');
CALL mig_run('h25_drop');
SELECT h25_setup('h25_dropkey', 'ALTER TABLE h25_dropkey DROP COLUMN id');
CALL mig_run('h25_dropkey');
SELECT h25_setup('h25_renamekey', 'ALTER TABLE h25_renamekey RENAME COLUMN id TO key');
CALL mig_run('h25_renamekey');
SELECT h25_setup('h25_retype', 'ALTER TABLE h25_retype ALTER COLUMN id TYPE bigint');
CALL mig_run('h25_retype');
-- a column the action needs: the action's own error
SELECT h25_setup('h25_dropv', 'ALTER TABLE h25_dropv DROP COLUMN v');
CALL mig_run('h25_dropv');
-- Part A: changes that leave the key intact
SELECT h25_setup('h25_dropindex', 'ALTER TABLE h25_dropindex DROP CONSTRAINT h25_dropindex_pkey');
CALL mig_run('h25_dropindex');
SELECT h25_setup('h25_rewrite', 'ALTER TABLE h25_rewrite ALTER COLUMN w TYPE bigint');
CALL mig_run('h25_rewrite');
SELECT h25_setup('h25_addcol', 'ALTER TABLE h25_addcol ADD COLUMN z int NOT NULL DEFAULT 5');
CALL mig_run('h25_addcol');
SELECT h25_setup('h25_cluster', 'CLUSTER h25_cluster USING h25_cluster_pkey');
CALL mig_run('h25_cluster');
SELECT h25_setup('h25_keepname', 'ALTER TABLE h25_keepname RENAME TO h25_tmp',
	'ALTER TABLE h25_tmp RENAME TO h25_keepname');
CALL mig_run('h25_keepname');
SELECT * FROM h25_result;
-- every row of the completed ones changed exactly once; the failed ones kept
-- their two committed batches
SELECT 'h25_dropindex' AS t, v, count(*) FROM h25_dropindex GROUP BY v
UNION ALL SELECT 'h25_rewrite', v, count(*) FROM h25_rewrite GROUP BY v
UNION ALL SELECT 'h25_addcol', v, count(*) FROM h25_addcol GROUP BY v
UNION ALL SELECT 'h25_cluster', v, count(*) FROM h25_cluster GROUP BY v
UNION ALL SELECT 'h25_keepname', v, count(*) FROM h25_keepname GROUP BY v
UNION ALL SELECT 'h25_renamed', v, count(*) FROM h25_renamed GROUP BY v
UNION ALL SELECT 'h25_replaced', v, count(*) FROM h25_replaced GROUP BY v
UNION ALL SELECT 'h25_replace', v, count(*) FROM h25_replace GROUP BY v
UNION ALL SELECT 'h25_retype', v, count(*) FROM h25_retype GROUP BY v
ORDER BY 1, 2;
-- a failed migration resumes once the change is undone
ALTER TABLE h25_renamed RENAME TO h25_rename;
DELETE FROM h25_ddl;
CALL mig_run('h25_rename');
SELECT status, processed, batches, cursor, error FROM migrations WHERE name = 'h25_rename';
SELECT v, count(*) FROM h25_rename GROUP BY v;
--
-- Part B: the migration failed in batch 2 (its action raises on key 7) and
-- the table changes before it is run again.
--
CREATE TABLE h25_stop (at_key int);
CREATE FUNCTION h25_check(a int, b int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT FROM h25_stop WHERE at_key BETWEEN a AND b) THEN
		RAISE EXCEPTION 'stopped at key %', (SELECT at_key FROM h25_stop);
	END IF;
	RETURN true;
END $$;
CREATE FUNCTION h25_setup_b(tbl text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, w int)', tbl);
	EXECUTE format('INSERT INTO %I (id) SELECT generate_series(1, 20)', tbl);
	RETURN mig_define(tbl, tbl::regclass,
		format('UPDATE %I SET v = v + 1 WHERE id BETWEEN $1 AND $2 AND h25_check($1, $2)', tbl), 5) > 0;
END $$;
INSERT INTO h25_stop VALUES (7);
SELECT h25_setup_b('h25_b_vacuum'), h25_setup_b('h25_b_retype'), h25_setup_b('h25_b_drop'),
	   h25_setup_b('h25_b_rename'), h25_setup_b('h25_b_dropkey'), h25_setup_b('h25_b_swap');
CALL mig_run('h25_b_vacuum');
CALL mig_run('h25_b_retype');
CALL mig_run('h25_b_drop');
CALL mig_run('h25_b_rename');
CALL mig_run('h25_b_dropkey');
CALL mig_run('h25_b_swap');
SELECT * FROM h25_result WHERE name LIKE 'h25\_b\_%';
DELETE FROM h25_stop;
-- a rewrite with a new relfilenode is harmless: the run goes on after (5)
VACUUM FULL h25_b_vacuum;
CALL mig_run('h25_b_vacuum');
SELECT v, count(*) FROM h25_b_vacuum GROUP BY v;
-- the others fail again, each saying why
ALTER TABLE h25_b_retype ALTER COLUMN id TYPE numeric;
CALL mig_run('h25_b_retype');
DROP TABLE h25_b_drop;
CALL mig_run('h25_b_drop');
ALTER TABLE h25_b_rename RENAME TO h25_b_renamed;
CALL mig_run('h25_b_rename');
ALTER TABLE h25_b_dropkey DROP COLUMN id;
CALL mig_run('h25_b_dropkey');
-- renamed away and replaced by a new table of the same name and shape: the
-- keys would be walked on the old table and the action run on the new one,
-- so the run refuses, naming both
ALTER TABLE h25_b_swap RENAME TO h25_b_swapped;
CREATE TABLE h25_b_swap (LIKE h25_b_swapped INCLUDING ALL);
INSERT INTO h25_b_swap (id) SELECT generate_series(1, 20);
CALL mig_run('h25_b_swap');
SELECT 'h25_b_swap' AS tbl, v, count(*) FROM h25_b_swap GROUP BY v
UNION ALL SELECT 'h25_b_swapped', v, count(*) FROM h25_b_swapped GROUP BY v ORDER BY 1, 2;
SELECT * FROM h25_result WHERE name LIKE 'h25\_b\_%';
-- the catalog kept each one's progress: the first batch, and the failed
-- second one with its error (the later refusals happened before any batch)
SELECT name, count(*) AS batches_kept FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
 WHERE m.name LIKE 'h25\_b\_%' GROUP BY name ORDER BY name;
-- clean up
DELETE FROM migrations WHERE name LIKE 'h25\_%';
SET client_min_messages = warning;
DROP SCHEMA h25_elsewhere CASCADE;
RESET client_min_messages;
DROP VIEW h25_result;
DROP TABLE h25_ddl, h25_stop, h25_rename, h25_replace, h25_replaced, h25_dropkey, h25_renamekey,
	h25_retype, h25_dropv, h25_dropindex, h25_rewrite, h25_addcol, h25_cluster, h25_keepname,
	h25_b_vacuum, h25_b_retype, h25_b_renamed, h25_b_dropkey, h25_b_swap, h25_b_swapped;
DROP FUNCTION h25_step(regclass, int, int), h25_setup(text, text[]), h25_check(int, int), h25_setup_b(text);
