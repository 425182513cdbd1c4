-- Catalog shape of 1.1's verify, skip, continue_from and after: the new
-- columns of migrations with their types, NOT NULLs, defaults and CHECK
-- constraints, the table migration_skipped (keys, cascade, privileges), and
-- what mig_status shows of them.
BEGIN;
SELECT plan(55);

SET LOCAL search_path = public;

-- ---------------------------------------------------------------------------
-- migrations: the new columns
SELECT col_type_is('migrations', col, typ)
  FROM (VALUES
	('verify', 'text'),
	('on_error', 'text'),
	('max_skipped', 'bigint'),
	('skipped', 'bigint'),
	('continued_from', 'bigint'),
	('run_after', 'text[]'),
	('verifying_since', 'timestamp with time zone')) AS c(col, typ);
SELECT col_not_null('migrations', col)
  FROM unnest(ARRAY['on_error', 'max_skipped', 'skipped']) AS col;
SELECT col_is_null('migrations', col)
  FROM unnest(ARRAY['verify', 'continued_from', 'run_after', 'verifying_since']) AS col;
SELECT col_default_is('migrations', 'on_error', 'fail');
SELECT col_default_is('migrations', 'max_skipped', '1000');
SELECT col_default_is('migrations', 'skipped', '0');

-- the CHECK constraints refuse what the C code would never write
CREATE TABLE tap_beyond (id int PRIMARY KEY, v int);
INSERT INTO tap_beyond SELECT g, 0 FROM generate_series(1, 10) g;
SELECT ok(mig_define('beyond_shape', 'tap_beyond',
					 'UPDATE tap_beyond SET v = 1 WHERE id BETWEEN $1 AND $2') > 0,
		  'a migration to test the constraints on');
SELECT throws_ok($$UPDATE migrations SET on_error = 'ignore' WHERE name = 'beyond_shape'$$,
				 '23514', NULL, 'on_error is fail or skip');
SELECT throws_ok($$UPDATE migrations SET max_skipped = -1 WHERE name = 'beyond_shape'$$,
				 '23514', NULL, 'max_skipped is not negative');
SELECT throws_ok($$UPDATE migrations SET skipped = -1 WHERE name = 'beyond_shape'$$,
				 '23514', NULL, 'skipped is not negative');

-- what mig_define stored
SELECT row_eq($$SELECT verify, on_error, max_skipped, skipped, continued_from, run_after,
					   verifying_since
				  FROM migrations WHERE name = 'beyond_shape'$$,
			  ROW(NULL::text, 'fail'::text, 1000::bigint, 0::bigint, NULL::bigint,
				  NULL::text[], NULL::timestamptz),
			  'a definition without the new arguments gets their defaults');
SELECT lives_ok(
	$$SELECT mig_define('beyond_skip', 'tap_beyond',
						'UPDATE tap_beyond SET v = 2 WHERE id BETWEEN $1 AND $2',
						verify => 'SELECT id FROM tap_beyond WHERE v <> 2',
						on_error => 'skip', max_skipped => 5)$$,
	'mig_define takes verify, on_error and max_skipped');
SELECT row_eq($$SELECT verify, on_error, max_skipped FROM migrations WHERE name = 'beyond_skip'$$,
			  ROW('SELECT id FROM tap_beyond WHERE v <> 2'::text, 'skip'::text, 5::bigint),
			  'verify, on_error and max_skipped are stored as given');
SELECT throws_ok(
	$$SELECT mig_define('beyond_bad', 'tap_beyond',
						'UPDATE tap_beyond SET v = 2 WHERE id BETWEEN $1 AND $2',
						on_error => 'ignore')$$,
	'22023', 'invalid value for on_error: "ignore"', 'an unknown on_error is refused');
SELECT throws_ok(
	$$SELECT mig_define('beyond_bad', 'tap_beyond',
						'UPDATE tap_beyond SET v = 2 WHERE id BETWEEN $1 AND $2',
						max_skipped => -1)$$,
	'22023', 'max_skipped must not be negative', 'a negative max_skipped is refused');
SELECT throws_ok(
	$$SELECT mig_define('beyond_bad', 'tap_beyond',
						'UPDATE tap_beyond SET v = 2 WHERE id BETWEEN $1 AND $2',
						verify => 'DELETE FROM tap_beyond')$$,
	'22023', 'verify query must be a SELECT statement', 'a verify query that writes is refused');
SELECT is_empty($$SELECT 1 FROM migrations WHERE name = 'beyond_bad'$$,
				'a refused definition leaves nothing behind');

-- ---------------------------------------------------------------------------
-- migration_skipped
SELECT has_table('migration_skipped');
SELECT columns_are('migration_skipped', ARRAY[
	'migration_id', 'key', 'sqlstate', 'error', 'error_detail', 'error_context',
	'slice', 'skipped_at']);
SELECT col_type_is('migration_skipped', col, typ)
  FROM (VALUES
	('migration_id', 'bigint'),
	('key', 'text'),
	('sqlstate', 'text'),
	('error', 'text'),
	('slice', 'integer'),
	('skipped_at', 'timestamp with time zone')) AS c(col, typ);
SELECT col_is_pk('migration_skipped', ARRAY['migration_id', 'key']);
SELECT fk_ok('migration_skipped', 'migration_id', 'migrations', 'id');
SELECT is((SELECT confdeltype FROM pg_constraint
			WHERE conrelid = 'migration_skipped'::regclass AND contype = 'f'),
		  'c'::"char", 'skipped keys go with their migration (ON DELETE CASCADE)');
SELECT isnt(obj_description('migration_skipped'::regclass, 'pg_class'), NULL,
			'migration_skipped has a comment');

-- users read it, never write it
SELECT ok(has_table_privilege('public', 'migration_skipped', 'SELECT'),
		  'PUBLIC may read migration_skipped');
SELECT ok(NOT has_table_privilege('public', 'migration_skipped', 'INSERT')
		  AND NOT has_table_privilege('public', 'migration_skipped', 'UPDATE')
		  AND NOT has_table_privilege('public', 'migration_skipped', 'DELETE')
		  AND NOT has_table_privilege('public', 'migration_skipped', 'TRUNCATE'),
		  'PUBLIC may not write migration_skipped');

CREATE ROLE mr_tap_beyond;
SET LOCAL ROLE mr_tap_beyond;
SELECT throws_ok($$INSERT INTO migration_skipped (migration_id, key, sqlstate, error)
				   SELECT id, '{1}', '22P02', 'forged' FROM migrations LIMIT 1$$,
				 '42501', NULL, 'a non-superuser cannot forge a skipped key');
SELECT throws_ok($$DELETE FROM migration_skipped$$,
				 '42501', NULL, 'a non-superuser cannot remove skipped keys');
RESET ROLE;

-- the cascade, and mig_status's count
INSERT INTO migration_skipped (migration_id, key, sqlstate, error)
SELECT id, '{3}', '22P02', 'invalid input syntax' FROM migrations WHERE name = 'beyond_skip';
UPDATE migrations SET skipped = 1 WHERE name = 'beyond_skip';
SELECT is((SELECT skipped FROM mig_status WHERE name = 'beyond_skip'), 1::bigint,
		  'mig_status shows the skipped count');
SELECT is((SELECT skipped_at IS NOT NULL AND slice = 0 FROM migration_skipped), true,
		  'a skipped key gets its time and slice 0 by default');
SELECT lives_ok($$SELECT mig_reset('beyond_skip')$$, 'mig_reset of a migration with a skipped key');
SELECT row_eq($$SELECT skipped, (SELECT count(*) FROM migration_skipped)
				  FROM migrations WHERE name = 'beyond_skip'$$,
			  ROW(0::bigint, 0::bigint),
			  'mig_reset forgets the skipped keys: the next run tries them with the rest');
INSERT INTO migration_skipped (migration_id, key, sqlstate, error)
SELECT id, '{3}', '22P02', 'invalid input syntax' FROM migrations WHERE name = 'beyond_skip';
DELETE FROM migrations WHERE name = 'beyond_skip';
SELECT is_empty($$SELECT 1 FROM migration_skipped$$,
				'the skipped keys of a deleted migration are gone');

-- ---------------------------------------------------------------------------
-- mig_status: verifying and waiting
UPDATE migrations SET status = 'running', started_at = now(), verifying_since = now()
 WHERE name = 'beyond_shape';
SELECT is((SELECT status FROM mig_status WHERE name = 'beyond_shape'), 'verifying',
		  'a running migration whose final check runs shows as verifying');
UPDATE migrations SET verifying_since = NULL, run_after = ARRAY['nowhere']
 WHERE name = 'beyond_shape';
SELECT row_eq($$SELECT status, waiting_for FROM mig_status WHERE name = 'beyond_shape'$$,
			  ROW('waiting'::text, 'nowhere (not defined)'::text),
			  'a running migration with a missing prerequisite waits, and says for what');
SELECT ok(mig_define('beyond_first', 'tap_beyond',
					 'UPDATE tap_beyond SET v = 3 WHERE id BETWEEN $1 AND $2') > 0,
		  'a prerequisite');
UPDATE migrations SET run_after = ARRAY['beyond_first'] WHERE name = 'beyond_shape';
SELECT is((SELECT waiting_for FROM mig_status WHERE name = 'beyond_shape'),
		  'beyond_first (pending)', 'waiting_for gives the prerequisite''s status');
UPDATE migrations SET status = 'completed', completed_at = now() WHERE name = 'beyond_first';
SELECT row_eq($$SELECT status, waiting_for FROM mig_status WHERE name = 'beyond_shape'$$,
			  ROW('running'::text, NULL::text),
			  'once every prerequisite is completed the migration shows as running');
UPDATE migrations SET status = 'paused', run_after = ARRAY['nowhere'] WHERE name = 'beyond_shape';
SELECT is((SELECT status FROM mig_status WHERE name = 'beyond_shape'), 'paused',
		  'only a running migration shows as waiting');

SELECT * FROM finish();
ROLLBACK;
