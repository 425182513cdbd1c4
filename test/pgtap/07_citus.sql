-- Citus per-shard runs (issue 16), what holds on a server without Citus:
-- the catalog columns a per-shard run records (types, NOT NULLs, defaults,
-- CHECK constraints), that users read them but only the extension's
-- functions write them, the GUCs, the node functions' refusals, mig_define
-- of a local table, and how mig_status and mig_slices show a node being
-- waited for (slice rows inserted by hand, as the coordinator's runner
-- would write them).  The runs themselves need a Citus cluster
-- (test/t/citus_*.pl).
--
-- CALL mig_shard_batch refuses a transaction block before it looks at its
-- arguments, so its other refusals are tested at top level (psql's
-- SQLSTATE, as in 05_run).  Everything else runs in one transaction that
-- removes what it made before it commits: the server's worker never sees a
-- row made up here.
\set VERBOSITY terse
SET client_min_messages = warning;
SET search_path = public;
SELECT plan(123);

BEGIN;
CREATE ROLE mr_tap_c_alice;
CREATE TABLE tap_c_items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO tap_c_items (id) SELECT generate_series(1, 5);
GRANT SELECT, UPDATE ON tap_c_items TO mr_tap_c_alice;

-- ---------------------------------------------------------------------------
-- migrations: how the relation is distributed, and (on a node) which
-- coordinator's migration and shard placement a node-local migration runs
SELECT col_type_is('migrations', col, typ)
  FROM (VALUES
	('distribution', 'text'),
	('distribution_column', 'text'),
	('colocation_id', 'integer'),
	('per_shard', 'boolean'),
	('citus_run', 'integer'),
	('coordinator_id', 'bigint'),
	('shard_id', 'bigint'),
	('placement_id', 'bigint')) AS c(col, typ);
SELECT col_not_null('migrations', col)
  FROM unnest(ARRAY['per_shard', 'citus_run']) AS col;
SELECT col_is_null('migrations', col)
  FROM unnest(ARRAY['distribution', 'distribution_column', 'colocation_id',
					'coordinator_id', 'shard_id', 'placement_id']) AS col;
SELECT col_default_is('migrations', 'per_shard', 'false');
SELECT col_default_is('migrations', 'citus_run', '0');
SELECT col_hasnt_default('migrations', col)
  FROM unnest(ARRAY['distribution', 'distribution_column', 'colocation_id',
					'coordinator_id', 'shard_id', 'placement_id']) AS col;

-- migration_slices: a slice that is a shard, the node running it, and the
-- wait for a node that cannot be reached
SELECT col_type_is('migration_slices', col, typ)
  FROM (VALUES
	('shard_id', 'bigint'),
	('placement_id', 'bigint'),
	('node', 'text'),
	('local_id', 'bigint'),
	('base_processed', 'bigint'),
	('base_batches', 'bigint'),
	('waiting_since', 'timestamp with time zone'),
	('wait_error', 'text')) AS c(col, typ);
SELECT col_not_null('migration_slices', col)
  FROM unnest(ARRAY['base_processed', 'base_batches']) AS col;
SELECT col_is_null('migration_slices', col)
  FROM unnest(ARRAY['shard_id', 'placement_id', 'node', 'local_id',
					'waiting_since', 'wait_error']) AS col;
SELECT col_default_is('migration_slices', col, '0')
  FROM unnest(ARRAY['base_processed', 'base_batches']) AS col;
SELECT col_hasnt_default('migration_slices', col)
  FROM unnest(ARRAY['shard_id', 'placement_id', 'node', 'local_id',
					'waiting_since', 'wait_error']) AS col;

-- the views
SELECT col_type_is('mig_slices', col, typ)
  FROM (VALUES
	('shard_id', 'bigint'),
	('node', 'text'),
	('waiting_since', 'timestamp with time zone'),
	('wait_error', 'text')) AS c(col, typ);
SELECT col_type_is('mig_status', 'waiting_for', 'text');

-- ---------------------------------------------------------------------------
-- CHECK constraints (as superuser, inside this transaction)
SELECT col_has_check('migrations', 'distribution');
SELECT col_has_check('migration_slices', ARRAY['slice', 'shard_id']);
SELECT lives_ok(
	$$INSERT INTO migrations (name, owner, distribution)
	  SELECT 'tap_c_d_' || coalesce(d, 'local'), current_user::regrole, d
		FROM unnest(ARRAY['hash', 'range', 'append', 'reference', 'single', NULL]) AS d$$,
	'distribution is hash, range, append, reference, single or NULL (not distributed)');
SELECT throws_ok(
	format($$INSERT INTO migrations (name, owner, distribution)
			 VALUES ('tap_c_bad', current_user::regrole, %L)$$, d),
	'23514', NULL, format('distribution %L is rejected', d))
  FROM unnest(ARRAY['HASH', 'local', 'citus', '']) AS d;
SELECT throws_ok(
	$$UPDATE migrations SET distribution = 'distributed' WHERE name = 'tap_c_d_hash'$$,
	'23514', NULL, 'an UPDATE to a bad distribution is rejected');

-- a shard-by-shard run has one slice per shard, so more than 64 of them
INSERT INTO migrations (name, owner, status, started_at, distribution, distribution_column,
						colocation_id, per_shard, citus_run)
VALUES ('tap_c_run', current_user::regrole, 'running', now(), 'hash', 'id', 1, true, 1);
SELECT lives_ok(
	$$INSERT INTO migration_slices (migration_id, slice, lower_key, upper_key, shard_id,
									placement_id, node, local_id)
	  SELECT id, s, ARRAY[lo::text], ARRAY[hi::text], shard, shard + 100, node, s
		FROM migrations,
			 (VALUES (1, -2147483648, -2080374785, 102008, 'w1:5432'),
					 (64, 2080374784, 2147483647, 102071, 'w2:5433'),
					 (65, -2147483648, -2113929217, 102072, 'w1:5432'),
					 (1000, -2113929216, -2080374785, 103007, 'w3:5434'))
			 AS v(s, lo, hi, shard, node)
	   WHERE name = 'tap_c_run'$$,
	'the slices of shards are accepted, numbered beyond 64 too');
SELECT results_eq(
	$$SELECT slice, base_processed, base_batches FROM migration_slices s
		JOIN migrations m ON m.id = s.migration_id
	   WHERE m.name = 'tap_c_run' ORDER BY slice$$,
	$$VALUES (1, 0::bigint, 0::bigint), (64, 0, 0), (65, 0, 0), (1000, 0, 0)$$,
	'a new shard slice has done nothing on earlier placements');
SELECT throws_ok(
	$$INSERT INTO migration_slices (migration_id, slice, upper_key)
	  SELECT id, 66, '{5}' FROM migrations WHERE name = 'tap_c_run'$$,
	'23514', NULL, 'a slice beyond 64 without a shard is rejected');
SELECT throws_ok(
	$$INSERT INTO migration_slices (migration_id, slice, upper_key, shard_id)
	  SELECT id, 0, '{5}', 102099 FROM migrations WHERE name = 'tap_c_run'$$,
	'23514', NULL, 'shard slices are numbered from 1 too');
SELECT throws_ok(
	$$INSERT INTO migration_slices (migration_id, slice, upper_key, shard_id)
	  SELECT id, -1, '{5}', 102099 FROM migrations WHERE name = 'tap_c_run'$$,
	'23514', NULL, 'a shard slice is never negative');
SELECT throws_ok(
	$$UPDATE migration_slices SET shard_id = NULL WHERE slice = 65$$,
	'23514', NULL, 'a slice beyond 64 cannot lose its shard');
SELECT lives_ok(
	$$UPDATE migration_slices SET shard_id = NULL WHERE slice = 64 AND shard_id = 102071$$,
	'a slice up to 64 may have no shard');
UPDATE migration_slices SET shard_id = 102071 WHERE slice = 64 AND placement_id = 102171;

-- ---------------------------------------------------------------------------
-- waiting for a node: mig_status.waiting_for names each node that a slice
-- waits for, once; the migration stays running
SELECT is((SELECT waiting_for FROM mig_status WHERE name = 'tap_c_run'), NULL,
		  'no node awaited: waiting_for is NULL');
UPDATE migration_slices SET waiting_since = now() - interval '1 min',
							wait_error = 'connection to w1:5432 refused'
 WHERE node = 'w1:5432';
SELECT is((SELECT waiting_for FROM mig_status WHERE name = 'tap_c_run'), 'node w1:5432',
		  'waiting_for names the node that two slices wait for, once');
SELECT is((SELECT status FROM mig_status WHERE name = 'tap_c_run'), 'running',
		  'a migration waiting for a node is running (not waiting for prerequisites)');
UPDATE migration_slices SET waiting_since = now(), wait_error = 'timeout expired'
 WHERE node = 'w3:5434';
SELECT is((SELECT waiting_for FROM mig_status WHERE name = 'tap_c_run'),
		  'node w1:5432, node w3:5434', 'waiting_for names every node awaited');
SELECT results_eq(
	$$SELECT slice, shard_id, node, waiting_since IS NOT NULL, wait_error
		FROM mig_slices WHERE name = 'tap_c_run' ORDER BY slice$$,
	$$VALUES (1, 102008::bigint, 'w1:5432', true, 'connection to w1:5432 refused'),
			 (64, 102071, 'w2:5433', false, NULL),
			 (65, 102072, 'w1:5432', true, 'connection to w1:5432 refused'),
			 (1000, 103007, 'w3:5434', true, 'timeout expired')$$,
	'mig_slices shows each slice''s shard, node and wait');
UPDATE migration_slices SET waiting_since = NULL, wait_error = NULL WHERE node = 'w1:5432';
SELECT is((SELECT waiting_for FROM mig_status WHERE name = 'tap_c_run'), 'node w3:5434',
		  'a node reached again leaves waiting_for');
SELECT is((SELECT waiting_for FROM mig_status WHERE name = 'tap_c_d_hash'), NULL,
		  'a migration without slices waits for no node');

-- ---------------------------------------------------------------------------
-- users read these columns; only the extension's functions write them
SELECT ok(has_column_privilege('mr_tap_c_alice', tbl::regclass, col, 'SELECT')
		  AND NOT has_column_privilege('mr_tap_c_alice', tbl::regclass, col, 'INSERT')
		  AND NOT has_column_privilege('mr_tap_c_alice', tbl::regclass, col, 'UPDATE'),
		  format('a non-superuser may read %s.%s but not write it', tbl, col))
  FROM (SELECT 'migrations' AS tbl, col
		  FROM unnest(ARRAY['distribution', 'distribution_column', 'colocation_id',
							'per_shard', 'citus_run', 'coordinator_id', 'shard_id',
							'placement_id']) AS col
		UNION ALL
		SELECT 'migration_slices', col
		  FROM unnest(ARRAY['shard_id', 'placement_id', 'node', 'local_id',
							'base_processed', 'base_batches', 'waiting_since',
							'wait_error']) AS col) AS c;
SET LOCAL ROLE mr_tap_c_alice;
SELECT lives_ok(
	$$SELECT distribution, distribution_column, colocation_id, per_shard, citus_run,
			 coordinator_id, shard_id, placement_id FROM migrations$$,
	'a non-superuser can read the distribution columns of migrations');
SELECT lives_ok(
	$$SELECT shard_id, placement_id, node, local_id, base_processed, base_batches,
			 waiting_since, wait_error FROM migration_slices$$,
	'a non-superuser can read the shard columns of migration_slices');
SELECT throws_ok($$UPDATE migrations SET per_shard = true WHERE name = 'tap_c_d_hash'$$,
	'42501', NULL, 'a non-superuser cannot turn a migration into a per-shard run');
SELECT throws_ok(
	$$UPDATE migrations SET distribution = 'hash', distribution_column = 'id' WHERE false$$,
	'42501', NULL, 'a non-superuser cannot UPDATE the distribution, not even zero rows');
SELECT throws_ok(
	$$INSERT INTO migrations (name, owner, coordinator_id, shard_id, placement_id)
	  VALUES ('tap_c_fake_node', 'mr_tap_c_alice', 1, 102008, 1)$$,
	'42501', NULL, 'a non-superuser cannot INSERT a node-local shard migration');
SELECT throws_ok($$UPDATE migration_slices SET waiting_since = NULL, wait_error = NULL$$,
	'42501', NULL, 'a non-superuser cannot clear a node wait');
SELECT throws_ok($$UPDATE migration_slices SET node = 'elsewhere:5432', local_id = 1$$,
	'42501', NULL, 'a non-superuser cannot send a slice to another node');
SELECT throws_ok(
	$$UPDATE migration_slices SET base_processed = 0, base_batches = 0 WHERE false$$,
	'42501', NULL, 'a non-superuser cannot rewrite what earlier placements did');
-- ... but mig_define writes them for her
SELECT lives_ok(
	$$SELECT mig_define('tap_c_alice', 'tap_c_items',
						'UPDATE tap_c_items SET v = v + 1 WHERE id BETWEEN $1 AND $2')$$,
	'a non-superuser defines a migration of a local table');
SELECT throws_ok(
	$$SELECT mig_shard_prepare(1, 1, 102008, 1, 'public.tap_c_items',
							   'UPDATE tap_c_items SET v = v + 1 WHERE id BETWEEN $1 AND $2',
							   '{id}', 100, 'public', NULL)$$,
	'55000', 'mig_shard_prepare needs Citus',
	'a non-superuser may call mig_shard_prepare, and is told it needs Citus');
RESET ROLE;
SELECT is(
	(SELECT ROW(owner, distribution, distribution_column, colocation_id, per_shard, citus_run,
				coordinator_id, shard_id, placement_id)::text
	   FROM migrations WHERE name = 'tap_c_alice'),
	'(mr_tap_c_alice,,,,f,0,,,)',
	'mig_define recorded her migration as not distributed, not per shard');

-- ---------------------------------------------------------------------------
-- the GUCs
SELECT results_eq(
	$$SELECT name::text, vartype::text, boot_val::text, context::text, unit::text
		FROM pg_settings
	   WHERE name IN ('migration_runner.citus_shards', 'migration_runner.node_wait_limit')
	   ORDER BY name$$,
	$$VALUES ('migration_runner.citus_shards', 'bool', 'on', 'user', NULL),
			 ('migration_runner.node_wait_limit', 'integer', '300000', 'sighup', 'ms')$$,
	'citus_shards: a user setting, on by default; node_wait_limit: sighup, 5 min');
SELECT is(current_setting('migration_runner.citus_shards'), 'on', 'citus_shards is on');
SELECT is(current_setting('migration_runner.node_wait_limit'), '5min', 'node_wait_limit is 5min');
SELECT throws_ok($$SET LOCAL migration_runner.node_wait_limit = '1min'$$,
	'55P02', NULL, 'node_wait_limit is set in the server''s configuration, not by SET');

-- ---------------------------------------------------------------------------
-- mig_define of a local table records no distribution, whatever citus_shards
SELECT lives_ok(
	$$SELECT mig_define('tap_c_on', 'tap_c_items',
						'UPDATE tap_c_items SET v = v + 1 WHERE id BETWEEN $1 AND $2')$$,
	'mig_define with citus_shards on');
SELECT lives_ok(
	$$SELECT mig_define('tap_c_par', 'tap_c_items',
						'UPDATE tap_c_items SET v = v + 1 WHERE id BETWEEN $1 AND $2',
						key_columns => '{id}', parallel => 4)$$,
	'mig_define with citus_shards on, an explicit key and parallel slices');
SET LOCAL migration_runner.citus_shards = off;
SELECT lives_ok(
	$$SELECT mig_define('tap_c_off', 'tap_c_items',
						'UPDATE tap_c_items SET v = v + 1 WHERE id BETWEEN $1 AND $2')$$,
	'mig_define with citus_shards off');
SET LOCAL migration_runner.citus_shards = on;
SELECT is(
	(SELECT ROW(distribution, distribution_column, colocation_id, per_shard, citus_run,
				coordinator_id, shard_id, placement_id)::text
	   FROM migrations WHERE name = n),
	'(,,,f,0,,,)',
	n || ': distribution NULL, per_shard false, no run split into shards, not a node''s')
  FROM unnest(ARRAY['tap_c_on', 'tap_c_par', 'tap_c_off']) AS n;

-- ---------------------------------------------------------------------------
-- mig_shard_prepare needs Citus, and defines nothing without it
SELECT throws_ok(
	$$SELECT mig_shard_prepare(1, 1, 102008, 1, 'public.tap_c_items',
							   'UPDATE tap_c_items SET v = v + 1 WHERE id BETWEEN $1 AND $2',
							   '{id}', 100, 'public', '{3}', '1 s', '1 min', 3, '200 ms', '0')$$,
	'55000', 'mig_shard_prepare needs Citus', 'mig_shard_prepare refuses without Citus');
SELECT is_empty(
	$$SELECT 1 FROM migrations
	   WHERE coordinator_id IS NOT NULL OR shard_id IS NOT NULL OR placement_id IS NOT NULL$$,
	'a refused mig_shard_prepare defined no node-local migration');

-- keep one plain migration for the CALLs below; remove the rest
DELETE FROM migrations WHERE name LIKE 'tap\_c\_%' AND name <> 'tap_c_on';
REVOKE ALL ON tap_c_items FROM mr_tap_c_alice;
DROP ROLE mr_tap_c_alice;
COMMIT;

-- ---------------------------------------------------------------------------
-- CALL mig_shard_batch (at top level, outside a transaction block) runs
-- only a node's migration of a shard placement
SELECT id AS tap_c_on_id FROM migrations WHERE name = 'tap_c_on' \gset
\set ON_ERROR_STOP 0
CALL mig_shard_batch(:tap_c_on_id, 100, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
\set ON_ERROR_STOP 1
SELECT is(:'SQLSTATE'::text, '22023', 'mig_shard_batch of a migration that runs no shard is refused (22023)');
SELECT is(:'LAST_ERROR_MESSAGE'::text, 'migration "tap_c_on" does not run a shard of a Citus table',
		  'the refusal names the migration');
\set ON_ERROR_STOP 0
CALL mig_shard_batch(-1, 100, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
\set ON_ERROR_STOP 1
SELECT is(:'SQLSTATE'::text, '42704', 'mig_shard_batch of an unknown id is refused (42704)');
SELECT is(:'LAST_ERROR_MESSAGE'::text, 'migration -1 does not exist', 'the refusal names the id');
\set ON_ERROR_STOP 0
CALL mig_shard_batch(:tap_c_on_id + 1000000, 100, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
\set ON_ERROR_STOP 1
SELECT is(:'SQLSTATE'::text, '42704', 'mig_shard_batch of an id never used is refused (42704)');
SELECT results_eq(
	$$SELECT status, processed, scanned, batches, cursor, started_at, worker_pid
		FROM migrations WHERE name = 'tap_c_on'$$,
	$$VALUES ('pending', 0::bigint, 0::bigint, 0::bigint, NULL::text[], NULL::timestamptz,
			  NULL::int)$$,
	'the refused calls changed nothing');
SELECT is((SELECT sum(v)::int FROM tap_c_items), 0, 'and ran no action');

SELECT lives_ok($$SELECT mig_drop('tap_c_on')$$, 'drop the last migration made here');
DROP TABLE tap_c_items;
SELECT is_empty($$SELECT 1 FROM migrations WHERE name LIKE 'tap\_c\_%'$$,
				'nothing made here is left');

SELECT * FROM finish();
