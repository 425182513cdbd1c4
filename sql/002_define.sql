--
-- 002_define: mig_define registers a managed migration as pending, with all
-- its options; defining the same name again returns the same id when the
-- definition is the same and is an error (with a hint to version the name)
-- when it differs; the key and the action are checked at define time.
--
CREATE TABLE s02_users (
	id			bigint PRIMARY KEY,
	email		text NOT NULL,
	inserted_at	timestamptz NOT NULL DEFAULT '2024-01-01',
	created_at	timestamptz,
	updated_at	timestamptz
);
CREATE UNIQUE INDEX s02_users_email ON s02_users (email);

-- the definition and the state of a migration, without ids or timestamps
CREATE FUNCTION s02_def(n text)
RETURNS TABLE (status text, own boolean, relation regclass, key_columns name[],
			   key_types regtype[], batch_size int, batch_delay interval,
			   lock_timeout interval, statement_timeout interval,
			   max_retries int, target_batch_time interval)
LANGUAGE sql AS $$
	SELECT status, owner::oid = (SELECT oid FROM pg_roles WHERE rolname = current_user),
		   relation, key_columns, key_types, batch_size, batch_delay,
		   lock_timeout, statement_timeout, max_retries, target_batch_time
	  FROM migrations WHERE name = n
$$;

-- ---------------------------------------------------------------------------
-- the README's example, with the defaults: the primary key, batch_size 1000,
-- every option NULL (the GUC's value is used at run time)
SELECT mig_define(name => 's02_add_user_timestamps_v1', relation => 's02_users',
  action => $$UPDATE s02_users SET created_at = inserted_at, updated_at = inserted_at
             WHERE id BETWEEN $1 AND $2 AND created_at IS NULL$$) AS id \gset s02_ts_
SELECT :s02_ts_id > 0 AS id_positive;
SELECT * FROM s02_def('s02_add_user_timestamps_v1');
SELECT action, search_path, processed, scanned, batches, cursor, high_water,
	   started_at IS NULL AS not_started, completed_at IS NULL AS not_completed,
	   error, worker_pid, current_batch_size, defined_at IS NOT NULL AS has_defined_at
  FROM migrations WHERE id = :s02_ts_id;
SELECT mig_has_run('s02_add_user_timestamps_v1') AS has_run_pending;
-- a pending migration has no history
SELECT count(*) AS history FROM migration_batches WHERE migration_id = :s02_ts_id;

-- the same definition again: the same id, no second row
SELECT mig_define(name => 's02_add_user_timestamps_v1', relation => 's02_users',
  action => $$UPDATE s02_users SET created_at = inserted_at, updated_at = inserted_at
             WHERE id BETWEEN $1 AND $2 AND created_at IS NULL$$) = :s02_ts_id AS same_id;
-- ... also when the defaults are spelled out
SELECT mig_define('s02_add_user_timestamps_v1', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at, updated_at = inserted_at
             WHERE id BETWEEN $1 AND $2 AND created_at IS NULL$$,
  1000, NULL, NULL, NULL, NULL, NULL, NULL) = :s02_ts_id AS same_id_defaults_spelled_out;
-- ... and when the primary key is named explicitly
SELECT mig_define('s02_add_user_timestamps_v1', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at, updated_at = inserted_at
             WHERE id BETWEEN $1 AND $2 AND created_at IS NULL$$,
  key_columns => '{id}') = :s02_ts_id AS same_id_explicit_pk;
SELECT count(*) AS rows_of_that_name FROM migrations WHERE name = 's02_add_user_timestamps_v1';

-- a different definition under the same name: an error that says what
-- differs and hints at a new version of the name
SELECT mig_define('s02_add_user_timestamps_v1', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at WHERE id BETWEEN $1 AND $2$$);
SELECT mig_define('s02_add_user_timestamps_v1', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at, updated_at = inserted_at
             WHERE id BETWEEN $1 AND $2 AND created_at IS NULL$$, batch_size => 100);
SELECT mig_define('s02_add_user_timestamps_v1', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at, updated_at = inserted_at
             WHERE id BETWEEN $1 AND $2 AND created_at IS NULL$$, lock_timeout => '1s');
SELECT mig_define('s02_add_user_timestamps_v1', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at, updated_at = inserted_at
             WHERE email BETWEEN $1 AND $2 AND created_at IS NULL$$, key_columns => '{email}');
CREATE TABLE s02_other (id bigint PRIMARY KEY, created_at timestamptz);
SELECT mig_define('s02_add_user_timestamps_v1', 's02_other',
  $$UPDATE s02_other SET created_at = now() WHERE id BETWEEN $1 AND $2$$);
-- the first definition is unchanged
SELECT * FROM s02_def('s02_add_user_timestamps_v1');

-- the hinted new version defines fine
SELECT mig_define('s02_add_user_timestamps_v2', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at WHERE id BETWEEN $1 AND $2$$)
  <> :s02_ts_id AS new_id;

-- a name without a version gets the hint "_v2"; "_v9" becomes "_v10"
SELECT mig_define('s02_plain', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at WHERE id BETWEEN $1 AND $2$$) > 0 AS defined;
SELECT mig_define('s02_plain', 's02_users',
  $$UPDATE s02_users SET updated_at = inserted_at WHERE id BETWEEN $1 AND $2$$);
SELECT mig_define('s02_plain_v9', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at WHERE id BETWEEN $1 AND $2$$) > 0 AS defined;
SELECT mig_define('s02_plain_v9', 's02_users',
  $$UPDATE s02_users SET updated_at = inserted_at WHERE id BETWEEN $1 AND $2$$);

-- the name of an application-driven migration cannot be defined
SET client_min_messages = warning;
SELECT mig_start('s02_app_v1') > 0 AS started;
RESET client_min_messages;
SELECT mig_define('s02_app_v1', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at WHERE id BETWEEN $1 AND $2$$);

-- ---------------------------------------------------------------------------
-- every option, recorded as given
SELECT mig_define('s02_all_options_v1', 's02_users',
  $$UPDATE s02_users SET updated_at = now() WHERE email BETWEEN $1 AND $2$$,
  batch_size => 250, key_columns => ARRAY['email'], batch_delay => '50 ms',
  lock_timeout => '1s', statement_timeout => '5 min', max_retries => 3,
  target_batch_time => '200ms') AS id \gset s02_opt_
SELECT * FROM s02_def('s02_all_options_v1');
-- the same options again (in other spellings of the same intervals): same id
SELECT mig_define('s02_all_options_v1', 's02_users',
  $$UPDATE s02_users SET updated_at = now() WHERE email BETWEEN $1 AND $2$$,
  batch_size => 250, key_columns => ARRAY['email'], batch_delay => '0.05s',
  lock_timeout => '1000 ms', statement_timeout => '300s', max_retries => 3,
  target_batch_time => '0.2 s') = :s02_opt_id AS same_id;
-- any option changed: different
SELECT mig_define('s02_all_options_v1', 's02_users',
  $$UPDATE s02_users SET updated_at = now() WHERE email BETWEEN $1 AND $2$$,
  batch_size => 250, key_columns => ARRAY['email'], batch_delay => '50 ms',
  lock_timeout => '1s', statement_timeout => '5 min', max_retries => 4,
  target_batch_time => '200ms');
SELECT mig_define('s02_all_options_v1', 's02_users',
  $$UPDATE s02_users SET updated_at = now() WHERE email BETWEEN $1 AND $2$$,
  batch_size => 250, key_columns => ARRAY['email'], batch_delay => '50 ms',
  lock_timeout => '1s', statement_timeout => '5 min', max_retries => 3);

-- zero is a valid delay and timeout (0 disables a timeout); the limits of
-- batch_size are 1 and 1,000,000
SELECT mig_define('s02_limits_low_v1', 's02_users',
  $$UPDATE s02_users SET updated_at = now() WHERE id BETWEEN $1 AND $2$$,
  batch_size => 1, batch_delay => '0', lock_timeout => '0', statement_timeout => '0',
  max_retries => 0) > 0 AS defined;
SELECT mig_define('s02_limits_high_v1', 's02_users',
  $$UPDATE s02_users SET updated_at = now() WHERE id BETWEEN $1 AND $2$$,
  batch_size => 1000000, batch_delay => '1 hour', max_retries => 1000,
  target_batch_time => '1 hour') > 0 AS defined;
SELECT name, batch_size, batch_delay, lock_timeout, statement_timeout, max_retries,
	   target_batch_time
  FROM migrations WHERE name LIKE 's02_limits%' ORDER BY name;

-- ---------------------------------------------------------------------------
-- the key: a two-column primary key gives four parameters, typed as the key
CREATE TABLE s02_orders (
	tenant_id	int NOT NULL,
	order_no	bigint NOT NULL,
	total		numeric,
	PRIMARY KEY (tenant_id, order_no)
);
SELECT mig_define('s02_orders_total_v1', 's02_orders',
  $$UPDATE s02_orders SET total = coalesce(total, 0)
     WHERE (tenant_id, order_no) BETWEEN ($1, $2) AND ($3, $4)$$,
  batch_size => 500) > 0 AS defined;
SELECT * FROM s02_def('s02_orders_total_v1');
-- a composite key must use all four parameters
SELECT mig_define('s02_orders_total_v2', 's02_orders',
  $$UPDATE s02_orders SET total = 0 WHERE tenant_id BETWEEN $1 AND $3$$);
-- key_columns in another order than the index's are not the index's key
SELECT mig_define('s02_orders_total_v2', 's02_orders',
  $$UPDATE s02_orders SET total = 0
     WHERE (order_no, tenant_id) BETWEEN ($1, $2) AND ($3, $4)$$,
  key_columns => '{order_no,tenant_id}');

-- the key's parameters are typed as the key: text here
SELECT mig_define('s02_email_v1', 's02_users',
  $$SELECT count(*) FROM s02_users WHERE email >= $1 AND email <= $2 AND $1 || $2 <> ''$$,
  key_columns => '{email}') > 0 AS defined_select_with_text_key;

-- INSERT, DELETE and MERGE actions are accepted too
CREATE TABLE s02_archive (id bigint PRIMARY KEY, email text);
SELECT mig_define('s02_insert_v1', 's02_users',
  $$INSERT INTO s02_archive SELECT id, email FROM s02_users WHERE id BETWEEN $1 AND $2
    ON CONFLICT DO NOTHING$$) > 0 AS defined_insert;
SELECT mig_define('s02_delete_v1', 's02_users',
  $$DELETE FROM s02_users WHERE id BETWEEN $1 AND $2 AND email = ''$$) > 0 AS defined_delete;
SELECT mig_define('s02_merge_v1', 's02_users',
  $$MERGE INTO s02_archive a USING (SELECT id, email FROM s02_users
     WHERE id BETWEEN $1 AND $2) u ON a.id = u.id
    WHEN MATCHED THEN UPDATE SET email = u.email
    WHEN NOT MATCHED THEN INSERT VALUES (u.id, u.email)$$) > 0 AS defined_merge;

-- a partitioned table can be migrated
CREATE TABLE s02_events (id int PRIMARY KEY, seen boolean) PARTITION BY RANGE (id);
CREATE TABLE s02_events_1 PARTITION OF s02_events FOR VALUES FROM (1) TO (1000);
SELECT mig_define('s02_events_v1', 's02_events',
  $$UPDATE s02_events SET seen = true WHERE id BETWEEN $1 AND $2$$) > 0 AS defined_partitioned;

-- ---------------------------------------------------------------------------
-- the search_path in force at define time is recorded with the definition
CREATE SCHEMA s02_app;
CREATE TABLE s02_app.accounts (id int PRIMARY KEY, flag boolean);
SET search_path = s02_app, public;
SELECT mig_define('s02_accounts_v1', 'accounts',
  $$UPDATE accounts SET flag = true WHERE id BETWEEN $1 AND $2$$) > 0 AS defined;
RESET search_path;
SELECT relation, search_path FROM migrations WHERE name = 's02_accounts_v1';
-- the action is analyzed with the caller's search_path, where "accounts"
-- does not resolve: an error at define time
SELECT mig_define('s02_accounts_v1', 's02_app.accounts',
  $$UPDATE accounts SET flag = true WHERE id BETWEEN $1 AND $2$$);

-- ---------------------------------------------------------------------------
-- everything is checked at define time, and nothing is recorded on error
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at WHERE id BETWEEN $1 AND $2$$, batch_size => 0);
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at WHERE id BETWEEN $1 AND $2$$, batch_size => 1000001);
SELECT mig_define('s02_bad', 's02_users', '   ');
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at$$);
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at WHERE id >= $1$$);
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = inserted_at WHERE id BETWEEN $1 AND $2 AND $3 > 0$$);
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET creatd_at = inserted_at WHERE id BETWEEN $1 AND $2$$);
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2; SELECT 1$$);
SELECT mig_define('s02_bad', 's02_users', $$VACUUM s02_users$$);
-- the parameters have the key's type: text for the email key, not bigint
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$, key_columns => '{email}');
SELECT mig_define('s02_bad', 'no_such_table',
  $$UPDATE no_such_table SET x = 1 WHERE id BETWEEN $1 AND $2$$);
CREATE VIEW s02_users_view AS SELECT * FROM s02_users;
SELECT mig_define('s02_bad', 's02_users_view',
  $$UPDATE s02_users_view SET created_at = now() WHERE id BETWEEN $1 AND $2$$);
CREATE TABLE s02_nopk (id int NOT NULL, v int, u int, w int NOT NULL, d int NOT NULL);
CREATE UNIQUE INDEX s02_nopk_u ON s02_nopk (u);
CREATE UNIQUE INDEX s02_nopk_partial ON s02_nopk (id) WHERE v > 0;
CREATE UNIQUE INDEX s02_nopk_desc ON s02_nopk (w DESC);
CREATE UNIQUE INDEX s02_nopk_expr ON s02_nopk ((id + 1));
ALTER TABLE s02_nopk ADD CONSTRAINT s02_nopk_d UNIQUE (d) DEFERRABLE;
SELECT mig_define('s02_bad', 's02_nopk',
  $$UPDATE s02_nopk SET v = 1 WHERE id BETWEEN $1 AND $2$$);
SELECT mig_define('s02_bad', 's02_nopk',
  $$UPDATE s02_nopk SET v = 1 WHERE u BETWEEN $1 AND $2$$, key_columns => '{u}');
SELECT mig_define('s02_bad', 's02_nopk',
  $$UPDATE s02_nopk SET v = 1 WHERE id BETWEEN $1 AND $2$$, key_columns => '{id}');
SELECT mig_define('s02_bad', 's02_nopk',
  $$UPDATE s02_nopk SET v = 1 WHERE w BETWEEN $1 AND $2$$, key_columns => '{w}');
SELECT mig_define('s02_bad', 's02_nopk',
  $$UPDATE s02_nopk SET v = 1 WHERE d BETWEEN $1 AND $2$$, key_columns => '{d}');
SELECT mig_define('s02_bad', 's02_nopk',
  $$UPDATE s02_nopk SET v = 1 WHERE v BETWEEN $1 AND $2$$, key_columns => '{v}');
SELECT mig_define('s02_bad', 's02_nopk',
  $$UPDATE s02_nopk SET v = 1 WHERE v BETWEEN $1 AND $2$$, key_columns => '{nope}');
SELECT mig_define('s02_bad', 's02_nopk',
  $$UPDATE s02_nopk SET v = 1 WHERE v BETWEEN $1 AND $2$$, key_columns => '{}');
SELECT mig_define('s02_bad', 's02_nopk',
  $$UPDATE s02_nopk SET v = 1 WHERE v BETWEEN $1 AND $2$$, key_columns => ARRAY[NULL]::text[]);
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$, batch_delay => '-1s');
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$, lock_timeout => '-1 ms');
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$, statement_timeout => '-1 day');
-- a negative interval below one millisecond is still negative, and a huge
-- one is out of range (it does not wrap around into range)
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$, batch_delay => '-500 microseconds');
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$, lock_timeout => '-300000 years');
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$, statement_timeout => '300000 years');
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$, batch_delay => '1 hour 1 ms');
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$, target_batch_time => '0');
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$, max_retries => -1);
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$, max_retries => 1001);
SELECT mig_define('', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$);
SELECT mig_define(repeat('n', 201), 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$);
-- NULL arguments
SELECT mig_define(NULL, 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$);
SELECT mig_define('s02_bad', NULL,
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$);
SELECT mig_define('s02_bad', 's02_users', NULL);
SELECT mig_define('s02_bad', 's02_users',
  $$UPDATE s02_users SET created_at = now() WHERE id BETWEEN $1 AND $2$$, batch_size => NULL);
SELECT count(*) AS nothing_recorded FROM migrations WHERE name = 's02_bad';

-- the migrations of this file
SELECT name, status, relation, key_columns, batch_size
  FROM migrations WHERE name LIKE 's02\_%' ORDER BY name;

-- clean up
DELETE FROM migrations WHERE name LIKE 's02\_%';
DROP TABLE s02_users, s02_other, s02_orders, s02_archive, s02_events, s02_nopk CASCADE;
DROP SCHEMA s02_app CASCADE;
DROP FUNCTION s02_def(text);
