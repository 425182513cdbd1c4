-- Privileges: everyone may read the catalog and the status view, nobody but
-- a superuser may write the catalog directly, and the functions write it on
-- the caller's behalf only for migrations the caller owns (or whose owning
-- role the caller is a member of).
BEGIN;
SELECT plan(100);

SET LOCAL search_path = public;
SET LOCAL client_min_messages = warning;

-- roles exist only inside this transaction
CREATE ROLE mr_tap_alice;
CREATE ROLE mr_tap_bob;
CREATE ROLE mr_tap_carol IN ROLE mr_tap_alice;	-- a member of alice

CREATE TABLE tap_items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
INSERT INTO tap_items (id) SELECT generate_series(1, 5);
GRANT SELECT, UPDATE ON tap_items TO mr_tap_alice;
GRANT SELECT ON tap_items TO mr_tap_bob;

-- ---------------------------------------------------------------------------
-- what PUBLIC is granted: SELECT on the catalog and the view, nothing else
SELECT set_eq(
	format($$SELECT privilege_type FROM pg_class, aclexplode(relacl)
			  WHERE oid = %L::regclass AND grantee = 0$$, rel),
	ARRAY['SELECT'],
	format('PUBLIC has exactly SELECT on %s', rel))
  FROM unnest(ARRAY['migrations', 'migration_batches', 'migration_slices',
					'mig_status', 'mig_slices']) AS rel;
SELECT table_privs_are(rel, role, ARRAY['SELECT'])
  FROM unnest(ARRAY['migrations', 'migration_batches', 'migration_slices',
					'mig_status', 'mig_slices']) AS rel,
	   unnest(ARRAY['mr_tap_alice', 'mr_tap_bob']) AS role;
SELECT ok(NOT has_sequence_privilege('mr_tap_alice', 'migrations_id_seq', 'USAGE')
		  AND NOT has_sequence_privilege('mr_tap_alice', 'migrations_id_seq', 'UPDATE'),
		  'a non-superuser cannot draw ids from the catalog''s sequence');

-- EXECUTE on the functions is PUBLIC's: each checks ownership itself
SELECT function_privs_are(fn, args, 'mr_tap_bob', ARRAY['EXECUTE'])
  FROM (VALUES
	('mig_has_run', ARRAY['text']),
	('mig_start', ARRAY['text']),
	('mig_update_progress', ARRAY['bigint', 'bigint']),
	('mig_complete', ARRAY['bigint']),
	('mig_fail', ARRAY['bigint', 'text']),
	('mig_define', ARRAY['text', 'regclass', 'text', 'integer', 'text[]', 'interval',
						 'interval', 'interval', 'integer', 'interval', 'integer',
						 'text', 'text', 'bigint', 'text', 'text[]']),
	('mig_alter', ARRAY['text', 'integer', 'integer', 'interval', 'interval',
						'interval', 'integer', 'interval']),
	('mig_pause', ARRAY['text']),
	('mig_resume', ARRAY['text']),
	('mig_cancel', ARRAY['text']),
	('mig_reset', ARRAY['text']),
	('mig_run', ARRAY['text']),
	('mig_wait', ARRAY['text', 'interval']),
	('mig_wait_all', ARRAY['text[]', 'interval']),
	('mig_dry_run', ARRAY['text', 'integer']),
	('mig_retry_skipped', ARRAY['text']),
	('mig_drop', ARRAY['text']),
	-- the node side of a Citus per-shard run (07_citus): called on the node as
	-- the migration's owner, whoever that is
	('mig_shard_prepare', ARRAY['bigint', 'integer', 'bigint', 'bigint', 'text', 'text',
								'text[]', 'integer', 'text', 'text[]', 'interval',
								'interval', 'integer', 'interval', 'interval']),
	('mig_shard_batch', ARRAY['bigint', 'integer'])) AS f(fn, args);

-- ---------------------------------------------------------------------------
-- a non-superuser cannot write either table
SET LOCAL ROLE mr_tap_alice;
SELECT lives_ok($$SELECT * FROM migrations$$, 'a non-superuser can read migrations');
SELECT lives_ok($$SELECT * FROM migration_batches$$, 'a non-superuser can read migration_batches');
SELECT lives_ok($$SELECT * FROM mig_status$$, 'a non-superuser can read mig_status');
SELECT lives_ok($$SELECT * FROM migration_slices$$, 'a non-superuser can read migration_slices');
SELECT lives_ok($$SELECT * FROM mig_slices$$, 'a non-superuser can read mig_slices');
SELECT throws_ok(
	$$INSERT INTO migrations (name, owner) VALUES ('sneaky', 'mr_tap_alice')$$,
	'42501', NULL, 'a non-superuser cannot INSERT into migrations');
SELECT throws_ok($$UPDATE migrations SET status = 'completed'$$,
	'42501', NULL, 'a non-superuser cannot UPDATE migrations');
SELECT throws_ok($$UPDATE migrations SET action = 'SELECT 1' WHERE false$$,
	'42501', NULL, 'a non-superuser cannot UPDATE migrations, not even zero rows');
SELECT throws_ok($$DELETE FROM migrations$$,
	'42501', NULL, 'a non-superuser cannot DELETE from migrations');
SELECT throws_ok($$TRUNCATE migrations CASCADE$$,
	'42501', NULL, 'a non-superuser cannot TRUNCATE migrations');
SELECT throws_ok(
	$$INSERT INTO migration_batches (migration_id, batch, keys, rows, started_at,
									 duration_ms, bounds_ms, action_ms)
	  VALUES (1, 1, 1, 1, now(), 1, 1, 1)$$,
	'42501', NULL, 'a non-superuser cannot INSERT into migration_batches');
SELECT throws_ok($$UPDATE migration_batches SET rows = 0$$,
	'42501', NULL, 'a non-superuser cannot UPDATE migration_batches');
SELECT throws_ok($$DELETE FROM migration_batches$$,
	'42501', NULL, 'a non-superuser cannot DELETE from migration_batches');
SELECT throws_ok($$TRUNCATE migration_batches$$,
	'42501', NULL, 'a non-superuser cannot TRUNCATE migration_batches');
SELECT throws_ok(
	$$INSERT INTO migration_slices (migration_id, slice, upper_key) VALUES (1, 1, '{1}')$$,
	'42501', NULL, 'a non-superuser cannot INSERT into migration_slices');
SELECT throws_ok($$UPDATE migration_slices SET cursor = NULL$$,
	'42501', NULL, 'a non-superuser cannot UPDATE migration_slices');
SELECT throws_ok($$DELETE FROM migration_slices$$,
	'42501', NULL, 'a non-superuser cannot DELETE from migration_slices');
SELECT throws_ok($$TRUNCATE migration_slices$$,
	'42501', NULL, 'a non-superuser cannot TRUNCATE migration_slices');
SELECT throws_ok($$SELECT * FROM migrations FOR UPDATE$$,
	'42501', NULL, 'a non-superuser cannot lock catalog rows (SELECT ... FOR UPDATE)');
SELECT throws_ok($$LOCK TABLE migrations IN EXCLUSIVE MODE$$,
	'42501', NULL, 'a non-superuser cannot LOCK the catalog');
SELECT throws_ok($$ALTER TABLE migrations DROP CONSTRAINT migrations_status_check$$,
	'42501', NULL, 'a non-superuser cannot ALTER the catalog');

-- ... but the functions write it for her, and she owns what she creates
SELECT lives_ok($$SELECT mig_start('alice_app')$$,
	'a non-superuser can start an application-driven migration');
SELECT lives_ok(
	$$SELECT mig_define('alice_managed', 'tap_items',
						'UPDATE tap_items SET v = v + 1 WHERE id BETWEEN $1 AND $2')$$,
	'a non-superuser can define a migration on a table she may UPDATE');
SELECT lives_ok($$SELECT mig_start('alice_failed')$$, 'alice starts another one');
SELECT lives_ok($$SELECT mig_fail(id, 'boom') FROM migrations WHERE name = 'alice_failed'$$,
	'alice can fail her migration');
RESET ROLE;

SELECT results_eq(
	$$SELECT name, owner::text FROM migrations ORDER BY name$$,
	$$VALUES ('alice_app', 'mr_tap_alice'), ('alice_failed', 'mr_tap_alice'),
			 ('alice_managed', 'mr_tap_alice')$$,
	'the role that starts or defines a migration owns it');

-- ---------------------------------------------------------------------------
-- another role cannot change her migrations
SET LOCAL ROLE mr_tap_bob;
SELECT throws_ok($$SELECT mig_update_progress(id, 1) FROM migrations WHERE name = 'alice_app'$$,
	'42501', 'must be owner of migration "alice_app"',
	'mig_update_progress of another role''s migration is refused');
SELECT throws_ok($$SELECT mig_complete(id) FROM migrations WHERE name = 'alice_app'$$,
	'42501', 'must be owner of migration "alice_app"',
	'mig_complete of another role''s migration is refused');
SELECT throws_ok($$SELECT mig_fail(id, 'x') FROM migrations WHERE name = 'alice_app'$$,
	'42501', 'must be owner of migration "alice_app"',
	'mig_fail of another role''s migration is refused');
SELECT throws_ok($$SELECT mig_start('alice_failed')$$,
	'42501', 'must be owner of migration "alice_failed"',
	'mig_start of another role''s failed migration is refused');
SELECT throws_ok($$SELECT mig_cancel('alice_app')$$,
	'42501', 'must be owner of migration "alice_app"',
	'mig_cancel of another role''s migration is refused');
SELECT throws_ok($$SELECT mig_start('alice_managed')$$,
	'42501', 'must be owner of migration "alice_managed"',
	'mig_start of another role''s managed migration is refused');
SELECT throws_ok($$SELECT mig_reset('alice_managed')$$,
	'42501', 'must be owner of migration "alice_managed"',
	'mig_reset of another role''s migration is refused');
SELECT throws_ok($$SELECT mig_cancel('alice_managed')$$,
	'42501', 'must be owner of migration "alice_managed"',
	'mig_cancel of another role''s managed migration is refused');
SELECT throws_ok($$SELECT mig_alter('alice_managed', batch_size => 7, parallel => 2)$$,
	'42501', 'must be owner of migration "alice_managed"',
	'mig_alter of another role''s migration is refused');
SELECT throws_ok($$SELECT mig_alter('alice_managed')$$,
	'42501', 'must be owner of migration "alice_managed"',
	'mig_alter of another role''s migration is refused even with nothing to change');
SELECT throws_ok(
	$$SELECT mig_define('bob_managed', 'tap_items',
						'UPDATE tap_items SET v = v + 1 WHERE id BETWEEN $1 AND $2')$$,
	'42501', NULL, 'defining a migration needs UPDATE on the relation');
SELECT is((SELECT action FROM mig_status WHERE name = 'alice_managed'),
		  '<insufficient privilege>', 'mig_status hides another role''s action');
SELECT is((SELECT count(*)::int FROM mig_status), 3, 'mig_status shows every migration');
SELECT lives_ok($$SELECT mig_has_run('alice_app')$$, 'anyone may ask whether a migration has run');
RESET ROLE;

SELECT results_eq(
	$$SELECT name, status, processed FROM migrations ORDER BY name$$,
	$$VALUES ('alice_app', 'running', 0::bigint), ('alice_failed', 'failed', 0::bigint),
			 ('alice_managed', 'pending', 0::bigint)$$,
	'the refused calls changed nothing');
SELECT results_eq(
	$$SELECT batch_size, parallel FROM migrations WHERE name = 'alice_managed'$$,
	$$VALUES (1000, 1)$$,
	'the refused mig_alter changed no option');

-- a member of the owning role may manage it
SET LOCAL ROLE mr_tap_carol;
SELECT lives_ok($$SELECT mig_update_progress(id, 3) FROM migrations WHERE name = 'alice_app'$$,
	'a member of the owning role may report progress');
SELECT lives_ok($$SELECT mig_start('alice_managed')$$,
	'a member of the owning role may start a managed migration');
SELECT lives_ok($$SELECT mig_pause('alice_managed')$$,
	'a member of the owning role may pause it');
SELECT lives_ok($$SELECT mig_alter('alice_managed', parallel => 3)$$,
	'a member of the owning role may alter it');
SELECT is((SELECT action FROM mig_status WHERE name = 'alice_managed'),
		  'UPDATE tap_items SET v = v + 1 WHERE id BETWEEN $1 AND $2',
		  'a member of the owning role sees the action in mig_status');
RESET ROLE;
SELECT results_eq(
	$$SELECT name, status, processed, owner::text FROM migrations ORDER BY name$$,
	$$VALUES ('alice_app', 'running', 3::bigint, 'mr_tap_alice'),
			 ('alice_failed', 'failed', 0::bigint, 'mr_tap_alice'),
			 ('alice_managed', 'paused', 0::bigint, 'mr_tap_alice')$$,
	'a member acts for the owner, and the owner stays the same');

-- the superuser may manage anything and sees every action
SELECT lives_ok($$SELECT mig_cancel('alice_managed')$$, 'a superuser may cancel any migration');
SELECT lives_ok($$SELECT mig_alter('alice_managed', batch_size => 5)$$,
	'a superuser may alter any migration');
SELECT results_eq(
	$$SELECT batch_size, parallel, owner::text FROM migrations WHERE name = 'alice_managed'$$,
	$$VALUES (5, 3, 'mr_tap_alice')$$,
	'the member''s and the superuser''s changes are recorded, the owner stays');
SELECT is((SELECT action FROM mig_status WHERE name = 'alice_managed'),
		  'UPDATE tap_items SET v = v + 1 WHERE id BETWEEN $1 AND $2',
		  'a superuser sees every action');

-- ---------------------------------------------------------------------------
-- names cannot be squatted: a completed migration has run for its owner and
-- the members of the owning role only, so another role's migration of the
-- same name never makes an application skip its own; only the owner, a
-- member or a superuser may drop it
SET LOCAL ROLE mr_tap_alice;
SELECT lives_ok($$SELECT mig_complete(id) FROM migrations WHERE name = 'alice_app'$$,
	'alice completes her application-driven migration');
SELECT is(mig_has_run('alice_app'), true, 'it has run for alice');
SET LOCAL ROLE mr_tap_carol;
SELECT is(mig_has_run('alice_app'), true, 'and for a member of her role');
SET LOCAL ROLE mr_tap_bob;
SELECT is(mig_has_run('alice_app'), false, 'not for another role');
SELECT throws_ok($$SELECT mig_start('alice_app')$$,
	'42501', 'must be owner of migration "alice_app"',
	'another role''s mig_start of the name fails loudly');
SELECT throws_ok($$SELECT mig_drop('alice_app')$$,
	'42501', 'must be owner of migration "alice_app"',
	'mig_drop of another role''s migration is refused');
RESET ROLE;
SELECT is(mig_has_run('alice_app'), false,
	'nor for a superuser that is not a member of her role');
SELECT lives_ok($$SELECT mig_drop('alice_app')$$, 'a superuser may drop any migration');
SELECT is_empty($$SELECT 1 FROM migrations WHERE name = 'alice_app'$$, 'alice_app is gone');

-- ---------------------------------------------------------------------------
-- the functions find the real catalog whatever the caller's search_path
CREATE SCHEMA tap_decoy;
CREATE TABLE tap_decoy.migrations (LIKE migrations);
GRANT ALL ON SCHEMA tap_decoy TO mr_tap_alice;
GRANT ALL ON tap_decoy.migrations TO mr_tap_alice;
SET LOCAL ROLE mr_tap_alice;
SET LOCAL search_path = tap_decoy, public;
SELECT lives_ok($$SELECT mig_start('decoy_app')$$,
	'mig_start with a decoy migrations table first on the search_path');
SELECT lives_ok($$SELECT mig_update_progress(id, 2) FROM public.migrations WHERE name = 'decoy_app'$$,
	'mig_update_progress with the decoy on the search_path');
RESET ROLE;
SET LOCAL search_path = public;
SELECT is((SELECT processed FROM migrations WHERE name = 'decoy_app'), 2::bigint,
		  'the functions wrote the extension''s catalog');
SELECT is_empty($$SELECT 1 FROM tap_decoy.migrations$$, 'and not the decoy');

SELECT * FROM finish();
ROLLBACK;
