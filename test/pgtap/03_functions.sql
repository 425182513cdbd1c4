-- Signatures of the SQL API: every function and procedure, with exact
-- argument types, argument names, defaults, return types, language,
-- volatility and strictness.
BEGIN;
SELECT plan(159);

SET LOCAL search_path = public;

-- name, argument types, return type, volatility
CREATE TEMP TABLE api (fn name, args name[], returns text, volatility text, ord int);
INSERT INTO api VALUES
	('mig_has_run',         '{text}',          'boolean', 'stable',   1),
	('mig_start',           '{text}',          'bigint',  'volatile', 2),
	('mig_update_progress', '{bigint,bigint}', 'void',    'volatile', 3),
	('mig_complete',        '{bigint}',        'void',    'volatile', 4),
	('mig_fail',            '{bigint,text}',   'void',    'volatile', 5),
	('mig_define',          '{text,regclass,text,integer,text[],interval,interval,interval,integer,interval,integer,text,text,bigint,text,text[]}',
							'bigint',  'volatile', 6),
	('mig_pause',           '{text}',          'void',    'volatile', 7),
	('mig_resume',          '{text}',          'void',    'volatile', 8),
	('mig_cancel',          '{text}',          'void',    'volatile', 9),
	('mig_reset',           '{text}',          'void',    'volatile', 10),
	('mig_wait',            '{text,interval}', 'text',    'volatile', 11),
	('mig_drop',            '{text}',          'void',    'volatile', 12),
	('mig_alter',           '{text,integer,integer,interval,interval,interval,integer,interval}',
							'void',    'volatile', 13),
	('mig_shard_prepare',   '{bigint,integer,bigint,bigint,text,text,text[],integer,text,text[],interval,interval,integer,interval,interval}',
							'bigint',  'volatile', 14);

SELECT has_function('public', fn, args) FROM api ORDER BY ord;
SELECT function_returns('public', fn, args, returns) FROM api ORDER BY ord;
SELECT isnt_procedure('public', fn, args) FROM api ORDER BY ord;
SELECT volatility_is('public', fn, args, volatility) FROM api ORDER BY ord;
SELECT function_lang_is('public', fn, args, 'c') FROM api ORDER BY ord;
-- not STRICT: a NULL argument is an error that names it, never a silent NULL
SELECT isnt_strict('public', fn, args) FROM api ORDER BY ord;

-- the procedure
SELECT has_function('public', 'mig_run', ARRAY['text']);
SELECT is_procedure('public', 'mig_run', ARRAY['text']);
SELECT function_lang_is('public', 'mig_run', ARRAY['text'], 'c');
SELECT isnt_strict('public', 'mig_run', ARRAY['text']);

-- the procedure a coordinator's per-shard run calls on a node (07_citus)
SELECT has_function('public', 'mig_shard_batch', ARRAY['bigint', 'integer']);
SELECT is_procedure('public', 'mig_shard_batch', ARRAY['bigint', 'integer']);
SELECT function_lang_is('public', 'mig_shard_batch', ARRAY['bigint', 'integer'], 'c');
SELECT isnt_strict('public', 'mig_shard_batch', ARRAY['bigint', 'integer']);

-- mig_wait_all returns a table (name, status), mig_dry_run a table of
-- batches: sets; mig_retry_skipped a count
SELECT has_function('public', 'mig_wait_all', ARRAY['text[]', 'interval']);
SELECT isnt_strict('public', 'mig_wait_all', ARRAY['text[]', 'interval']);
SELECT has_function('public', 'mig_dry_run', ARRAY['text', 'integer']);
SELECT isnt_strict('public', 'mig_dry_run', ARRAY['text', 'integer']);
SELECT function_returns('public', 'mig_dry_run', ARRAY['text', 'integer'], 'setof record');
SELECT is(pg_get_function_result('mig_dry_run(text,integer)'::regprocedure),
		  'TABLE(batch integer, first_key text, last_key text, rows bigint, ms double precision, sample jsonb)',
		  'mig_dry_run returns one row per batch');
SELECT is(pg_get_function_arguments('mig_dry_run(text,integer)'::regprocedure),
		  'name text, batches integer DEFAULT 1', 'arguments of mig_dry_run');
SELECT has_function('public', 'mig_retry_skipped', ARRAY['text']);
SELECT isnt_strict('public', 'mig_retry_skipped', ARRAY['text']);
SELECT function_returns('public', 'mig_retry_skipped', ARRAY['text'], 'bigint');
SELECT function_lang_is('public', 'mig_retry_skipped', ARRAY['text'], 'c');
SELECT volatility_is('public', 'mig_retry_skipped', ARRAY['text'], 'volatile');

-- no other overloads of the API's names
SELECT is((SELECT count(*)::int FROM pg_proc
			WHERE pronamespace = 'public'::regnamespace AND proname LIKE 'mig\_%'),
		  19, 'the API has exactly nineteen routines, none overloaded');

-- argument names and defaults, as callers see them (named notation)
SELECT is(pg_get_function_arguments(p::regprocedure), args, 'arguments of ' || p)
  FROM (VALUES
	('mig_has_run(text)', 'name text'),
	('mig_start(text)', 'name text'),
	('mig_update_progress(bigint,bigint)', 'id bigint, processed bigint'),
	('mig_complete(bigint)', 'id bigint'),
	('mig_fail(bigint,text)', 'id bigint, error text'),
	('mig_define(text,regclass,text,integer,text[],interval,interval,interval,integer,interval,integer,text,text,bigint,text,text[])',
	 'name text, relation regclass, action text, batch_size integer DEFAULT 1000, '
	 'key_columns text[] DEFAULT NULL::text[], batch_delay interval DEFAULT NULL::interval, '
	 'lock_timeout interval DEFAULT NULL::interval, '
	 'statement_timeout interval DEFAULT NULL::interval, '
	 'max_retries integer DEFAULT NULL::integer, '
	 'target_batch_time interval DEFAULT NULL::interval, '
	 'parallel integer DEFAULT 1, verify text DEFAULT NULL::text, '
	 'on_error text DEFAULT ''fail''::text, max_skipped bigint DEFAULT 1000, '
	 'continue_from text DEFAULT NULL::text, after text[] DEFAULT NULL::text[]'),
	('mig_alter(text,integer,integer,interval,interval,interval,integer,interval)',
	 'name text, batch_size integer DEFAULT NULL::integer, '
	 'parallel integer DEFAULT NULL::integer, batch_delay interval DEFAULT NULL::interval, '
	 'lock_timeout interval DEFAULT NULL::interval, '
	 'statement_timeout interval DEFAULT NULL::interval, '
	 'max_retries integer DEFAULT NULL::integer, '
	 'target_batch_time interval DEFAULT NULL::interval'),
	('mig_pause(text)', 'name text'),
	('mig_resume(text)', 'name text'),
	('mig_cancel(text)', 'name text'),
	('mig_reset(text)', 'name text'),
	('mig_run(text)', 'IN name text'),
	('mig_wait(text,interval)', 'name text, timeout interval DEFAULT NULL::interval'),
	('mig_drop(text)', 'name text'),
	('mig_shard_prepare(bigint,integer,bigint,bigint,text,text,text[],integer,text,text[],interval,interval,integer,interval,interval)',
	 'coordinator_id bigint, run integer, shard_id bigint, placement_id bigint, '
	 'relation text, action text, key_columns text[], batch_size integer, '
	 'search_path text, cursor text[], lock_timeout interval DEFAULT NULL::interval, '
	 'statement_timeout interval DEFAULT NULL::interval, '
	 'max_retries integer DEFAULT NULL::integer, '
	 'target_batch_time interval DEFAULT NULL::interval, '
	 'batch_delay interval DEFAULT NULL::interval'),
	('mig_shard_batch(bigint,integer)',
	 'IN local_id bigint, IN budget_ms integer, OUT status text, OUT processed bigint, '
	 'OUT batches bigint, OUT cursor text[], OUT bounds_ms double precision, '
	 'OUT action_ms double precision, OUT commit_ms double precision, OUT error text, '
	 'OUT sqlstate text, OUT throttled text')) AS f(p, args);
SELECT is((SELECT pronargdefaults::int FROM pg_proc WHERE oid = p::regprocedure), n,
		  p || ' has ' || n || ' default(s)')
  FROM (VALUES
	('mig_define(text,regclass,text,integer,text[],interval,interval,interval,integer,interval,integer,text,text,bigint,text,text[])', 13),
	('mig_alter(text,integer,integer,interval,interval,interval,integer,interval)', 7),
	('mig_wait(text,interval)', 1),
	('mig_shard_prepare(bigint,integer,bigint,bigint,text,text,text[],integer,text,text[],interval,interval,integer,interval,interval)', 5)) AS f(p, n);

-- callable with named arguments and defaults, as in the README (on a plain
-- table: an action may not write to a temporary one)
CREATE TABLE tap_sig (id int PRIMARY KEY, v int);
SELECT lives_ok(
	$$SELECT mig_define(name => 'sig_named', relation => 'tap_sig',
						action => 'UPDATE tap_sig SET v = 1 WHERE id BETWEEN $1 AND $2')$$,
	'mig_define with named arguments and every default');
SELECT is((SELECT batch_size FROM migrations WHERE name = 'sig_named'), 1000,
		  'the default batch_size is 1000');
SELECT is((SELECT key_columns::text FROM migrations WHERE name = 'sig_named'), '{id}',
		  'key_columns NULL means the primary key');
SELECT ok((SELECT batch_delay IS NULL AND lock_timeout IS NULL AND statement_timeout IS NULL
				   AND max_retries IS NULL AND target_batch_time IS NULL
			  FROM migrations WHERE name = 'sig_named'),
		  'options left at their defaults are NULL (the GUCs apply)');
SELECT is((SELECT parallel FROM migrations WHERE name = 'sig_named'), 1,
		  'the default parallel is 1');
SELECT lives_ok(
	$$SELECT mig_define(name => 'sig_all', relation => 'tap_sig',
						action => 'UPDATE tap_sig SET v = 1 WHERE id BETWEEN $1 AND $2',
						batch_size => 10, key_columns => ARRAY['id'],
						batch_delay => '10 ms', lock_timeout => '1 s',
						statement_timeout => '1 min', max_retries => 3,
						target_batch_time => '200 ms', parallel => 4)$$,
	'mig_define with every argument named');
SELECT row_eq(
	$$SELECT batch_size, key_columns::text COLLATE "C", batch_delay, lock_timeout,
			 statement_timeout, max_retries, target_batch_time, parallel
		FROM migrations WHERE name = 'sig_all'$$,
	ROW(10, '{id}'::text COLLATE "C", interval '10 ms', interval '1 s', interval '1 min', 3,
		interval '200 ms', 4),
	'every option is recorded');
SELECT lives_ok(
	$$SELECT mig_alter(name => 'sig_all', batch_size => 20, parallel => 2,
					   batch_delay => '20 ms', lock_timeout => '2 s',
					   statement_timeout => '2 min', max_retries => 6,
					   target_batch_time => '400 ms')$$,
	'mig_alter with every argument named');
SELECT row_eq(
	$$SELECT batch_size, batch_delay, lock_timeout, statement_timeout, max_retries,
			 target_batch_time, parallel
		FROM migrations WHERE name = 'sig_all'$$,
	ROW(20, interval '20 ms', interval '2 s', interval '2 min', 6, interval '400 ms', 2),
	'mig_alter records every option');
SELECT lives_ok($$SELECT mig_alter(name => 'sig_all', parallel => 3)$$,
	'mig_alter with one option named');
SELECT row_eq(
	$$SELECT batch_size, batch_delay, max_retries, parallel FROM migrations WHERE name = 'sig_all'$$,
	ROW(20, interval '20 ms', 6, 3),
	'the options left out (NULL by default) are unchanged');
SELECT is(mig_wait(name => 'sig_all', timeout => '0'), 'pending',
		  'mig_wait with named arguments returns the status at the timeout');

-- NULL arguments are errors that name the argument
SELECT throws_ok($$SELECT mig_has_run(NULL)$$, '22004', 'argument "name" must not be null',
				 'mig_has_run(NULL)');
SELECT throws_ok($$SELECT mig_start(NULL)$$, '22004', 'argument "name" must not be null',
				 'mig_start(NULL)');
SELECT throws_ok($$SELECT mig_update_progress(NULL, 1)$$, '22004', 'argument "id" must not be null',
				 'mig_update_progress(NULL, n)');
SELECT throws_ok($$SELECT mig_update_progress(1, NULL)$$, '22004',
				 'argument "processed" must not be null', 'mig_update_progress(id, NULL)');
SELECT throws_ok($$SELECT mig_complete(NULL)$$, '22004', 'argument "id" must not be null',
				 'mig_complete(NULL)');
SELECT throws_ok($$SELECT mig_fail(NULL, 'x')$$, '22004', 'argument "id" must not be null',
				 'mig_fail(NULL, error)');
SELECT throws_ok($$SELECT mig_define(NULL, 'tap_sig', 'SELECT $1, $2')$$, '22004',
				 'argument "name" must not be null', 'mig_define(NULL, ...)');
SELECT throws_ok($$SELECT mig_define('x', NULL, 'SELECT $1, $2')$$, '22004',
				 'argument "relation" must not be null', 'mig_define(name, NULL, ...)');
SELECT throws_ok($$SELECT mig_define('x', 'tap_sig', NULL)$$, '22004',
				 'argument "action" must not be null', 'mig_define(name, relation, NULL)');
SELECT throws_ok($$SELECT mig_define('x', 'tap_sig', 'SELECT $1, $2', NULL)$$, '22004',
				 'argument "batch_size" must not be null', 'mig_define(..., batch_size => NULL)');
SELECT throws_ok($$SELECT mig_define('x', 'tap_sig', 'SELECT $1, $2', parallel => NULL)$$, '22004',
				 'argument "parallel" must not be null', 'mig_define(..., parallel => NULL)');
SELECT throws_ok($$SELECT mig_alter(NULL, batch_size => 10)$$, '22004',
				 'argument "name" must not be null', 'mig_alter(NULL, ...)');
SELECT throws_ok($$SELECT mig_pause(NULL)$$, '22004', 'argument "name" must not be null',
				 'mig_pause(NULL)');
SELECT throws_ok($$SELECT mig_resume(NULL)$$, '22004', 'argument "name" must not be null',
				 'mig_resume(NULL)');
SELECT throws_ok($$SELECT mig_cancel(NULL)$$, '22004', 'argument "name" must not be null',
				 'mig_cancel(NULL)');
SELECT throws_ok($$SELECT mig_reset(NULL)$$, '22004', 'argument "name" must not be null',
				 'mig_reset(NULL)');
SELECT throws_ok($$SELECT mig_wait(NULL)$$, '22004', 'argument "name" must not be null',
				 'mig_wait(NULL)');
SELECT throws_ok($$SELECT mig_drop(NULL)$$, '22004', 'argument "name" must not be null',
				 'mig_drop(NULL)');
-- mig_shard_prepare: the first nine arguments are required (cursor NULL
-- means from the first key); checked before whether Citus is there
SELECT throws_ok($$SELECT mig_shard_prepare(NULL, 1, 1, 1, 'public.tap_sig', 'SELECT $1, $2',
											 '{id}', 10, 'public', NULL)$$, '22004',
				 'argument "coordinator_id" must not be null', 'mig_shard_prepare(NULL, ...)');
SELECT throws_ok($$SELECT mig_shard_prepare(1, 1, 1, 1, 'public.tap_sig', 'SELECT $1, $2',
											 '{id}', 10, NULL, NULL)$$, '22004',
				 'argument "search_path" must not be null',
				 'mig_shard_prepare(..., search_path => NULL, ...)');
-- CALL inside a transaction block is refused before anything else
SELECT throws_ok($$CALL mig_run('sig_all')$$, '25001',
				 'mig_run cannot run inside a transaction block',
				 'CALL mig_run inside a transaction block is refused');
SELECT throws_ok($$CALL mig_shard_batch(NULL, 100, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)$$,
				 '25001', 'mig_shard_batch cannot run inside a transaction block',
				 'CALL mig_shard_batch inside a transaction block is refused');

SELECT * FROM finish();
ROLLBACK;
