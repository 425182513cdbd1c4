-- Invariants of the catalog through the life of a migration, inside one
-- transaction (no batch runs here: CALL mig_run needs its own transactions,
-- see 05_run.sql).  After every operation the helper tap_invariants() checks
-- what must hold for every row whatever happened before.
BEGIN;
SELECT plan(143);

SET LOCAL search_path = public;
SET LOCAL client_min_messages = warning;

CREATE TABLE tap_users (id int PRIMARY KEY, email text, created_at timestamptz,
						inserted_at timestamptz NOT NULL DEFAULT now());
INSERT INTO tap_users (id, email) SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 20) g;
CREATE TABLE tap_pairs (a int NOT NULL, b text NOT NULL, v int, UNIQUE (a, b));
CREATE TABLE tap_nokey (a int, v int);

-- the invariants, as one row of booleans with a name each; 0 rows = all hold
CREATE TEMP VIEW tap_violations AS
SELECT name, inv FROM migrations m, LATERAL (VALUES
	('status is one of six', m.status IN ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')),
	('completed_at iff completed', (m.status = 'completed') = (m.completed_at IS NOT NULL)),
	('counters never negative', m.processed >= 0 AND m.scanned >= 0 AND m.batches >= 0 AND m.retries >= 0),
	('pending has not started', m.status <> 'pending' OR m.started_at IS NULL),
	('started unless pending', m.status = 'pending' OR m.started_at IS NOT NULL),
	('application-driven never pending', m.relation IS NOT NULL OR m.status <> 'pending'),
	('definition all or nothing',
	 (m.relation IS NULL) = (m.action IS NULL) AND (m.relation IS NULL) = (m.key_columns IS NULL)
	 AND (m.relation IS NULL) = (m.key_types IS NULL) AND (m.relation IS NULL) = (m.batch_size IS NULL)
	 AND (m.relation IS NULL) = (m.search_path IS NULL)),
	('one key type per key column', m.relation IS NULL OR cardinality(m.key_columns) = cardinality(m.key_types)),
	('cursor within the key', m.cursor IS NULL OR cardinality(m.cursor) = cardinality(m.key_columns)),
	('no cursor without a batch', m.cursor IS NULL OR m.batches > 0),
	('no runner outside a run', m.worker_pid IS NULL),
	('a failure has an error', m.status <> 'failed' OR m.error IS NOT NULL),
	('an owner that exists', EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = m.owner)),
	('defined_at not in the future', m.defined_at <= now()),
	('parallel between 1 and 64', m.parallel BETWEEN 1 AND 64),
	('slices only of managed migrations', m.relation IS NOT NULL
	 OR NOT EXISTS (SELECT 1 FROM migration_slices s WHERE s.migration_id = m.id)),
	('no slices before a run or after completion', m.status NOT IN ('pending', 'completed')
	 OR NOT EXISTS (SELECT 1 FROM migration_slices s WHERE s.migration_id = m.id))
) AS i(name_, ok), LATERAL (SELECT m.name || ': ' || i.name_ AS inv) x
WHERE i.ok IS NOT TRUE;

CREATE FUNCTION pg_temp.tap_invariants(after text) RETURNS text LANGUAGE sql AS $$
	SELECT is_empty('SELECT * FROM tap_violations', 'invariants hold after ' || after);
$$;

-- row_eq() cannot compare text columns in records here (no collation for
-- an anonymous record's fields): compare the rows' text forms instead
CREATE FUNCTION pg_temp.row_is(query text, want anyelement, description text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	have text;
BEGIN
	EXECUTE format('SELECT ROW(q.*)::text FROM (%s) q', query) INTO have;
	RETURN is(have, want::text, description);
END
$$;

SELECT pg_temp.tap_invariants('nothing');

-- ---------------------------------------------------------------------------
-- a managed migration: define
SELECT ok(mig_define('add_ts_v1', 'tap_users',
					 $$UPDATE tap_users SET created_at = inserted_at
					   WHERE id BETWEEN $1 AND $2 AND created_at IS NULL$$,
					 batch_size => 5) > 0, 'mig_define returns an id');
SELECT pg_temp.row_is(
	$$SELECT status, processed, scanned, batches, started_at, completed_at, error,
			 cursor, high_water, worker_pid, owner, relation, key_columns::text,
			 key_types::text, batch_size
		FROM migrations WHERE name = 'add_ts_v1'$$,
	ROW('pending'::text, 0::bigint, 0::bigint, 0::bigint, NULL::timestamptz,
		NULL::timestamptz, NULL::text, NULL::text[], NULL::text[], NULL::int,
		current_user::regrole, 'tap_users'::regclass, '{id}'::text, '{integer}'::text, 5),
	'a defined migration is pending, owned by the definer, keyed by the primary key');
SELECT is((SELECT search_path FROM migrations WHERE name = 'add_ts_v1'),
		  current_setting('search_path') || ', pg_temp',
		  'the definer''s search_path is recorded, with pg_temp last');
SELECT is((SELECT defined_at FROM migrations WHERE name = 'add_ts_v1'), now(),
		  'defined_at is the defining transaction''s time');
SELECT is(mig_has_run('add_ts_v1'), false, 'a pending migration has not run');
SELECT is(mig_has_run('no_such_migration'), false, 'an unknown migration has not run');
SELECT is((SELECT kind FROM mig_status WHERE name = 'add_ts_v1'), 'managed', 'mig_status: kind managed');
SELECT pg_temp.tap_invariants('mig_define');

-- defining it again
SELECT is(mig_define('add_ts_v1', 'tap_users',
					 $$UPDATE tap_users SET created_at = inserted_at
					   WHERE id BETWEEN $1 AND $2 AND created_at IS NULL$$,
					 batch_size => 5),
		  (SELECT id FROM migrations WHERE name = 'add_ts_v1'),
		  'the same definition again returns the same id');
SELECT throws_ok(
	$$SELECT mig_define('add_ts_v1', 'tap_users',
						'UPDATE tap_users SET created_at = now() WHERE id BETWEEN $1 AND $2')$$,
	'42710', 'migration "add_ts_v1" already exists with a different definition',
	'a different definition under the same name is refused');
SELECT is((SELECT count(*)::int FROM migrations), 1, 'still one migration');

-- definitions that are refused
SELECT throws_ok($$SELECT mig_define('', 'tap_users', 'SELECT $1, $2')$$,
				 '22023', 'migration name must not be empty', 'an empty name is refused');
SELECT throws_ok(format($$SELECT mig_define(%L, 'tap_users', 'SELECT $1, $2')$$, repeat('n', 201)),
				 '42622', 'migration name is too long', 'a name over 200 bytes is refused');
SELECT throws_ok($$SELECT mig_define('bs0', 'tap_users', 'SELECT $1, $2', batch_size => 0)$$,
				 '22023', NULL, 'batch_size 0 is refused');
SELECT throws_ok($$SELECT mig_define('bs_big', 'tap_users', 'SELECT $1, $2', batch_size => 1000001)$$,
				 '22023', NULL, 'batch_size over 1000000 is refused');
SELECT throws_ok($$SELECT mig_define('no_pk', 'tap_nokey', 'SELECT $1, $2')$$,
				 '42P17', NULL, 'a table without a primary key needs key_columns');
SELECT throws_ok($$SELECT mig_define('typo', 'tap_users', 'UPDATE tap_users SET nope = 1 WHERE id BETWEEN $1 AND $2')$$,
				 '42703', NULL, 'an action that does not analyze is refused at define time');
SELECT throws_ok($$SELECT mig_define('unbounded', 'tap_users', 'UPDATE tap_users SET email = email WHERE id >= $1')$$,
				 '22023', 'action does not use parameter $2', 'an action must use every bound');
SELECT throws_ok($$SELECT mig_define('two', 'tap_users', 'SELECT $1; SELECT $2')$$,
				 '22023', 'action must be exactly one SQL statement', 'an action is one statement');
SELECT throws_ok($$SELECT mig_define('neg', 'tap_users', 'SELECT $1, $2', batch_delay => '-1 s')$$,
				 '22023', NULL, 'a negative interval option is refused');
SELECT throws_ok($$SELECT mig_define('par0', 'tap_users', 'SELECT $1, $2', parallel => 0)$$,
				 '22023', 'parallel must be between 1 and 64', 'parallel 0 is refused');
SELECT throws_ok($$SELECT mig_define('par65', 'tap_users', 'SELECT $1, $2', parallel => 65)$$,
				 '22023', 'parallel must be between 1 and 64', 'parallel over 64 is refused');
SELECT is((SELECT count(*)::int FROM migrations), 1, 'refused definitions leave no row');
SELECT pg_temp.tap_invariants('refused definitions');

-- a composite key
SELECT ok(mig_define('pairs_v1', 'tap_pairs',
					 'UPDATE tap_pairs SET v = 1 WHERE (a, b) BETWEEN ($1, $2) AND ($3, $4)',
					 key_columns => ARRAY['a', 'b']) > 0,
		  'a two-column key from a unique index');
SELECT pg_temp.row_is($$SELECT key_columns::text, key_types::text FROM migrations WHERE name = 'pairs_v1'$$,
			  ROW('{a,b}'::text, '{integer,text}'::text), 'its key columns and types are recorded in index order');
SELECT throws_ok($$SELECT mig_define('pairs_ba', 'tap_pairs',
									 'UPDATE tap_pairs SET v = 1 WHERE (b, a) BETWEEN ($1, $2) AND ($3, $4)',
									 key_columns => ARRAY['b', 'a'])$$,
				 '42P17', NULL, 'key columns out of index order are refused');

-- ---------------------------------------------------------------------------
-- the life of a managed migration, status by status
SELECT ok(mig_start('add_ts_v1') = (SELECT id FROM migrations WHERE name = 'add_ts_v1'),
		  'mig_start returns the id');
SELECT pg_temp.row_is($$SELECT status, started_at, error, completed_at FROM migrations WHERE name = 'add_ts_v1'$$,
			  ROW('running'::text, now(), NULL::text, NULL::timestamptz), 'started: running since now');
SELECT pg_temp.tap_invariants('mig_start');
SELECT throws_ok($$SELECT mig_start('add_ts_v1')$$, '55000', 'migration "add_ts_v1" already running',
				 'starting a running migration is refused');
SELECT throws_ok($$SELECT mig_reset('add_ts_v1')$$, '55006', 'migration "add_ts_v1" is running',
				 'resetting a running migration is refused');
SELECT throws_ok($$SELECT mig_update_progress(id, 1) FROM migrations WHERE name = 'add_ts_v1'$$,
				 '42809', 'migration "add_ts_v1" is managed by migration_runner',
				 'the batch engine alone reports a managed migration''s progress');
SELECT throws_ok($$SELECT mig_complete(id) FROM migrations WHERE name = 'add_ts_v1'$$,
				 '42809', NULL, 'mig_complete refuses a managed migration');
SELECT throws_ok($$SELECT mig_fail(id, 'x') FROM migrations WHERE name = 'add_ts_v1'$$,
				 '42809', NULL, 'mig_fail refuses a managed migration');
SELECT lives_ok($$SELECT mig_resume('add_ts_v1')$$, 'resuming a running migration is a no-op');
SELECT lives_ok($$SELECT mig_alter('add_ts_v1', batch_size => 4, parallel => 3)$$,
				'mig_alter of a running migration');
SELECT pg_temp.row_is($$SELECT status, batch_size, parallel FROM migrations WHERE name = 'add_ts_v1'$$,
			  ROW('running'::text, 4, 3), 'altered while running, still running');
SELECT pg_temp.tap_invariants('mig_alter of a running migration');

SELECT lives_ok($$SELECT mig_pause('add_ts_v1')$$, 'mig_pause');
SELECT is((SELECT status FROM migrations WHERE name = 'add_ts_v1'), 'paused', 'paused');
SELECT pg_temp.tap_invariants('mig_pause');
SELECT lives_ok($$SELECT mig_pause('add_ts_v1')$$, 'pausing a paused migration is a no-op');
SELECT lives_ok($$SELECT mig_alter('add_ts_v1', batch_size => 5)$$, 'mig_alter of a paused migration');
SELECT throws_ok($$SELECT mig_alter('add_ts_v1', parallel => 65)$$, '22023',
				 'parallel must be between 1 and 64', 'mig_alter validates as mig_define does');
SELECT throws_ok($$SELECT mig_alter('add_ts_v1', batch_size => 6, max_retries => -1)$$, '22023',
				 'max_retries must be between 0 and 1000', 'an invalid option refuses the whole call');
SELECT pg_temp.row_is($$SELECT status, batch_size, parallel, max_retries FROM migrations WHERE name = 'add_ts_v1'$$,
			  ROW('paused'::text, 5, 3, NULL::int), 'a refused mig_alter changes nothing');
SELECT throws_ok($$SELECT mig_start('add_ts_v1')$$, '55000', 'migration "add_ts_v1" is paused',
				 'mig_start of a paused migration is refused (use mig_resume)');
SELECT is(mig_wait('add_ts_v1', '0'), 'paused', 'mig_wait with a zero timeout returns the status');
SELECT throws_ok($$SELECT mig_wait('add_ts_v1', '-1 s')$$, '22023', 'timeout must not be negative',
				 'mig_wait refuses a negative timeout');

SELECT lives_ok($$SELECT mig_resume('add_ts_v1')$$, 'mig_resume');
SELECT is((SELECT status FROM migrations WHERE name = 'add_ts_v1'), 'running', 'running again');
SELECT pg_temp.tap_invariants('mig_resume');

SELECT lives_ok($$SELECT mig_cancel('add_ts_v1')$$, 'mig_cancel');
SELECT is((SELECT status FROM migrations WHERE name = 'add_ts_v1'), 'cancelled', 'cancelled');
SELECT pg_temp.tap_invariants('mig_cancel');
SELECT lives_ok($$SELECT mig_cancel('add_ts_v1')$$, 'cancelling a cancelled migration is a no-op');
SELECT throws_ok($$SELECT mig_pause('add_ts_v1')$$, '55000', 'migration "add_ts_v1" is not running',
				 'a cancelled migration cannot be paused');
SELECT throws_ok($$SELECT mig_resume('add_ts_v1')$$, '55000', 'migration "add_ts_v1" is not paused',
				 'a cancelled migration cannot be resumed');
SELECT is(mig_wait('add_ts_v1'), 'cancelled', 'mig_wait returns at once for a cancelled migration');
SELECT lives_ok($$SELECT mig_alter('add_ts_v1', max_retries => 2)$$, 'mig_alter of a cancelled migration');

SELECT lives_ok($$SELECT mig_start('add_ts_v1')$$, 'a cancelled migration can be started again');
SELECT is((SELECT status FROM migrations WHERE name = 'add_ts_v1'), 'running', 'running again');
SELECT pg_temp.tap_invariants('mig_start of a cancelled migration');

SELECT lives_ok($$SELECT mig_pause('add_ts_v1')$$, 'paused before reset');
-- the slices a run would have left (written as the superuser this file runs as)
INSERT INTO migration_slices (migration_id, slice, lower_key, upper_key, cursor, processed, scanned, batches)
SELECT id, s, CASE WHEN s = 2 THEN '{10}'::text[] END, CASE s WHEN 1 THEN '{10}' ELSE '{20}' END::text[],
	   '{3}', 3, 3, 1
  FROM migrations, generate_series(1, 2) s WHERE name = 'add_ts_v1';
SELECT is((SELECT count(*)::int FROM mig_slices WHERE name = 'add_ts_v1'), 2, 'two slices');
SELECT is((SELECT processed FROM mig_status WHERE name = 'add_ts_v1'), 6::bigint,
		  'mig_status adds the slices'' progress');
SELECT pg_temp.tap_invariants('a paused migration with slices');
SELECT lives_ok($$SELECT mig_reset('add_ts_v1')$$, 'mig_reset of a paused migration');
SELECT is_empty($$SELECT 1 FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
				   WHERE m.name = 'add_ts_v1'$$, 'mig_reset removes the slices');
SELECT pg_temp.row_is($$SELECT batch_size, parallel, max_retries FROM migrations WHERE name = 'add_ts_v1'$$,
			  ROW(5, 3, 2), 'mig_reset keeps the options');
SELECT pg_temp.row_is(
	$$SELECT status, processed, scanned, batches, retries, started_at, completed_at, error,
			 cursor, high_water, current_batch_size, last_batch_at
		FROM migrations WHERE name = 'add_ts_v1'$$,
	ROW('pending'::text, 0::bigint, 0::bigint, 0::bigint, 0::bigint, NULL::timestamptz,
		NULL::timestamptz, NULL::text, NULL::text[], NULL::text[], NULL::int, NULL::timestamptz),
	'reset: pending, with progress, cursor and timing cleared');
SELECT pg_temp.tap_invariants('mig_reset');
SELECT throws_ok($$SELECT mig_pause('add_ts_v1')$$, '55000', NULL, 'a pending migration cannot be paused');
SELECT throws_ok($$SELECT mig_resume('add_ts_v1')$$, '55000', NULL, 'a pending migration cannot be resumed');
SELECT lives_ok($$SELECT mig_cancel('add_ts_v1')$$, 'a pending migration can be cancelled');
SELECT lives_ok($$SELECT mig_reset('add_ts_v1')$$, 'a cancelled migration can be reset');
SELECT is((SELECT status FROM migrations WHERE name = 'add_ts_v1'), 'pending', 'pending again');
SELECT pg_temp.tap_invariants('mig_cancel and mig_reset of a pending migration');

-- unknown names
SELECT throws_ok($$SELECT mig_pause('nope')$$, '42704', 'migration "nope" does not exist', 'mig_pause of an unknown name');
SELECT throws_ok($$SELECT mig_resume('nope')$$, '42704', 'migration "nope" does not exist', 'mig_resume of an unknown name');
SELECT throws_ok($$SELECT mig_cancel('nope')$$, '42704', 'migration "nope" does not exist', 'mig_cancel of an unknown name');
SELECT throws_ok($$SELECT mig_reset('nope')$$, '42704', 'migration "nope" does not exist', 'mig_reset of an unknown name');
SELECT throws_ok($$SELECT mig_wait('nope')$$, '42704', 'migration "nope" does not exist', 'mig_wait of an unknown name');
SELECT throws_ok($$SELECT mig_alter('nope', parallel => 2)$$, '42704', 'migration "nope" does not exist', 'mig_alter of an unknown name');
SELECT throws_ok($$SELECT mig_complete(-1)$$, '42704', NULL, 'mig_complete of an unknown id');
SELECT throws_ok($$SELECT mig_fail(-1, 'x')$$, '42704', NULL, 'mig_fail of an unknown id');
SELECT lives_ok($$SELECT mig_update_progress(-1, 5)$$, 'mig_update_progress of an unknown id is a no-op (as in the seed)');

-- ---------------------------------------------------------------------------
-- an application-driven migration (the seed's flow)
SELECT ok(mig_start('app_v1') > 0, 'mig_start of a new name returns an id');
SELECT pg_temp.row_is(
	$$SELECT status, processed, started_at, completed_at, error, relation, action, owner
		FROM migrations WHERE name = 'app_v1'$$,
	ROW('running'::text, 0::bigint, now(), NULL::timestamptz, NULL::text, NULL::regclass,
		NULL::text, current_user::regrole),
	'a new name is tracked as application-driven: running, processed 0, owned by the caller');
SELECT is((SELECT kind FROM mig_status WHERE name = 'app_v1'), 'application', 'mig_status: kind application');
SELECT pg_temp.tap_invariants('mig_start of a new name');
SELECT throws_ok($$SELECT mig_start('')$$, '22023', 'migration name must not be empty', 'mig_start of an empty name');
SELECT throws_ok(format($$SELECT mig_start(%L)$$, repeat('n', 201)), '42622', NULL, 'mig_start of a name over 200 bytes');

SELECT lives_ok($$SELECT mig_update_progress(id, 100) FROM migrations WHERE name = 'app_v1'$$, 'report 100');
SELECT lives_ok($$SELECT mig_update_progress(id, 0) FROM migrations WHERE name = 'app_v1'$$, 'report 0');
SELECT lives_ok($$SELECT mig_update_progress(id, 23) FROM migrations WHERE name = 'app_v1'$$, 'report 23');
SELECT is((SELECT processed FROM migrations WHERE name = 'app_v1'), 123::bigint, 'processed adds up');
SELECT throws_ok($$SELECT mig_update_progress(id, -1) FROM migrations WHERE name = 'app_v1'$$,
				 '22023', 'processed must not be negative', 'a negative report is refused');
SELECT throws_ok($$SELECT mig_update_progress(id, 9223372036854775807) FROM migrations WHERE name = 'app_v1'$$,
				 '22003', NULL, 'an overflowing report is refused');
SELECT is((SELECT processed FROM migrations WHERE name = 'app_v1'), 123::bigint, 'refused reports change nothing');
SELECT throws_ok($$SELECT mig_pause('app_v1')$$, '42809', 'migration "app_v1" is application-driven',
				 'mig_pause is for managed migrations');
SELECT throws_ok($$SELECT mig_reset('app_v1')$$, '42809', NULL, 'mig_reset is for managed migrations');
SELECT throws_ok($$SELECT mig_alter('app_v1', batch_size => 10)$$, '42809',
				 'migration "app_v1" is application-driven', 'mig_alter is for managed migrations');
SELECT throws_ok($$SELECT mig_define('app_v1', 'tap_users', 'SELECT $1, $2')$$, '42710', NULL,
				 'an application-driven name cannot be defined as managed');
SELECT pg_temp.tap_invariants('progress reports');

SELECT lives_ok($$SELECT mig_fail(id, 'boom at user 42') FROM migrations WHERE name = 'app_v1'$$, 'mig_fail');
SELECT pg_temp.row_is($$SELECT status, error, completed_at, processed FROM migrations WHERE name = 'app_v1'$$,
			  ROW('failed'::text, 'boom at user 42'::text, NULL::timestamptz, 123::bigint),
			  'failed with the message, progress kept');
SELECT is(mig_has_run('app_v1'), false, 'a failed migration has not run');
SELECT is(mig_wait('app_v1'), 'failed', 'mig_wait returns at once for a failed migration');
SELECT pg_temp.tap_invariants('mig_fail');

SELECT lives_ok($$SELECT mig_start('app_v1')$$, 'a failed migration starts again');
SELECT pg_temp.row_is($$SELECT status, error, processed, started_at FROM migrations WHERE name = 'app_v1'$$,
			  ROW('running'::text, NULL::text, 0::bigint, now()),
			  'restarted as the seed does: running, error cleared, processed 0');
SELECT pg_temp.tap_invariants('restart of a failed migration');

SELECT lives_ok($$SELECT mig_update_progress(id, 7) FROM migrations WHERE name = 'app_v1'$$, 'report 7');
SELECT lives_ok($$SELECT mig_complete(id) FROM migrations WHERE name = 'app_v1'$$, 'mig_complete');
SELECT pg_temp.row_is($$SELECT status, completed_at, processed FROM migrations WHERE name = 'app_v1'$$,
			  ROW('completed'::text, now(), 7::bigint), 'completed now, progress kept');
SELECT is(mig_has_run('app_v1'), true, 'a completed migration has run');
SELECT is(mig_wait('app_v1', '1 s'), 'completed', 'mig_wait returns at once for a completed migration');
SELECT is((SELECT percent FROM mig_status WHERE name = 'app_v1'), 100.0, 'mig_status: 100 percent');
SELECT pg_temp.tap_invariants('mig_complete');
SELECT throws_ok($$SELECT mig_start('app_v1')$$, '55000', 'migration "app_v1" already completed',
				 'a completed migration cannot be started again');
SELECT throws_ok($$SELECT mig_cancel('app_v1')$$, '55000', 'migration "app_v1" already completed',
				 'a completed migration cannot be cancelled');
SELECT is((SELECT status FROM migrations WHERE name = 'app_v1'), 'completed', 'still completed');

-- failing a completed application-driven migration clears completed_at
SELECT ok(mig_start('app_v2') > 0, 'another application-driven migration');
SELECT lives_ok($$SELECT mig_complete(id) FROM migrations WHERE name = 'app_v2'$$, 'completed');
SELECT lives_ok($$SELECT mig_fail(id, 'found a problem later') FROM migrations WHERE name = 'app_v2'$$,
				'mig_fail of a completed one');
SELECT pg_temp.row_is($$SELECT status, completed_at FROM migrations WHERE name = 'app_v2'$$,
			  ROW('failed'::text, NULL::timestamptz), 'failed, completed_at cleared');
SELECT pg_temp.tap_invariants('mig_fail of a completed migration');

-- cancelling an application-driven migration, and starting it again
SELECT ok(mig_start('app_v3') > 0, 'a third application-driven migration');
SELECT lives_ok($$SELECT mig_update_progress(id, 5) FROM migrations WHERE name = 'app_v3'$$, 'report 5');
SELECT lives_ok($$SELECT mig_cancel('app_v3')$$, 'mig_cancel of an application-driven migration');
SELECT is((SELECT status FROM migrations WHERE name = 'app_v3'), 'cancelled', 'cancelled');
SELECT lives_ok($$SELECT mig_start('app_v3')$$, 'started again');
SELECT pg_temp.row_is($$SELECT status, processed FROM migrations WHERE name = 'app_v3'$$,
			  ROW('running'::text, 0::bigint), 'running, processed back to 0');
SELECT pg_temp.tap_invariants('mig_cancel and restart of an application-driven migration');

-- a completed managed migration cannot be altered: its options are what ran
-- (completed here as the superuser, as its last batch would)
UPDATE migrations SET status = 'completed', started_at = now(), completed_at = now()
 WHERE name = 'pairs_v1';
SELECT throws_ok($$SELECT mig_alter('pairs_v1', parallel => 2)$$, '55000',
				 'cannot alter completed migration "pairs_v1"', 'mig_alter of a completed migration');
SELECT is((SELECT parallel FROM migrations WHERE name = 'pairs_v1'), 1, 'its parallel is unchanged');
SELECT pg_temp.tap_invariants('a refused mig_alter of a completed migration');

-- ---------------------------------------------------------------------------
-- mig_status has one row per migration, and agrees with the catalog
SELECT set_eq($$SELECT id, name, status, processed FROM mig_status$$,
			  $$SELECT id, name, status, processed FROM migrations$$,
			  'mig_status shows every migration as the catalog has it');
SELECT is_empty($$SELECT 1 FROM mig_status WHERE (kind = 'managed') <> (relation IS NOT NULL)$$,
				'kind is managed exactly for migrations with a relation');
SELECT is_empty($$SELECT 1 FROM migration_batches$$, 'no batch has run in this transaction');

SELECT * FROM finish();
ROLLBACK;
