# Hostile cases for the features of issue 14 (on_error 'skip', verify
# queries, continue_from, after, mig_dry_run, mig_retry_skipped), beyond
# what 044, 050, 051 and 052 cover.  Every action increments a counter n:
# wherever rows are changed, each good row must end with n = 1.
#
# 1. skip mode with the worker while a table rewrite (ALTER COLUMN TYPE of a
#    non-key column, then VACUUM FULL) commits in the middle of narrowing;
# 2. skip mode under a server DateStyle 'SQL, DMY' and TimeZone
#    'Asia/Kolkata', with date and timestamptz keys: migration_skipped.key
#    is canonical ISO text, and mig_retry_skipped from a session with other
#    settings still finds and fixes the keys;
# 3. a lock timeout (transient) on one key is never skipped: max_retries 0
#    fails the migration; with retries it goes through once the lock goes;
#    a deadlock that aborts the worker's batch is not skipped either;
# 4. a per-batch verify query with skip: exactly the keys it reports are
#    skipped (23514), and their action's change is rolled back;
# 5. max_skipped 0 fails at the first poison key; continue_from with
#    max_skipped 1 skips one and fails at the next; a third version with a
#    larger max_skipped completes, carrying the skipped keys;
# 6. after: a prerequisite dropped while the dependent waits; a
#    prerequisite reset after the dependent started;
# 7. mig_dry_run by a member of the owning role and by another role while
#    the worker runs the migration in slices;
# 8. kill -9 of the server while mig_retry_skipped runs in a session.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;
use SliceTest;

my $node = mig_node('mrtap_beyond',
	conf => "migration_runner.max_workers = 6\n"
	  . "migration_runner.history_size = 1000000\n");

# "n:count ..." of table $t, grouped by n
sub n_groups
{
	my ($t, $where) = @_;
	$where = defined $where ? "WHERE $where" : '';
	return $node->safe_psql('postgres',
		"SELECT string_agg(n || ':' || c, ' ' ORDER BY n) FROM "
		  . "(SELECT n, count(*) AS c FROM $t $where GROUP BY n) x");
}

# the skipped keys of migration $name as "key|sqlstate" lines, by key text
sub skipped_of
{
	my ($name, $setup) = @_;
	return $node->safe_psql('postgres', ($setup // '') . qq{
		SELECT string_agg(s.key || '|' || s.sqlstate, ',' ORDER BY s.key)
		  FROM migration_skipped s JOIN migrations m ON m.id = s.migration_id
		 WHERE m.name = '$name'});
}

# --- 1. a table rewrite commits while the worker narrows ---------------------
{
	my $rows = 6000;
	my @poison = map { $_ * 250 + 7 } 0 .. 23;    # 24 keys, one every 250
	my $plist = join(',', @poison);
	$node->safe_psql('postgres', qq{
		CREATE TABLE t1 (id int PRIMARY KEY, raw text NOT NULL, v int,
						 pad int NOT NULL DEFAULT 0, n int NOT NULL DEFAULT 0);
		INSERT INTO t1 (id, raw) SELECT g, g::text FROM generate_series(1, $rows) g;
		UPDATE t1 SET raw = 'bad' WHERE id IN ($plist);
		ANALYZE t1;
		SELECT mig_define('rw_v1', 't1',
			'WITH s AS (SELECT pg_sleep(0.01)) UPDATE t1 SET v = raw::int, n = n + 1 FROM s WHERE id BETWEEN \$1 AND \$2',
			batch_size => 500, on_error => 'skip', max_retries => 20,
			lock_timeout => '200ms');
		SELECT mig_start('rw_v1');});
	ok(poll_true($node, "SELECT retries > 0 AND skipped < 20 FROM migrations WHERE name = 'rw_v1'"),
		'rewrite: the worker is narrowing (retries > 0, fewer than 20 skipped)');
	$node->safe_psql('postgres', 'ALTER TABLE t1 ALTER COLUMN pad TYPE bigint');
	my $after_alter = $node->safe_psql('postgres',
		"SELECT skipped || ' ' || status FROM migrations WHERE name = 'rw_v1'");
	ok(poll_true($node, "SELECT skipped > split_part('$after_alter', ' ', 1)::int "
		  . "OR status <> 'running' FROM migrations WHERE name = 'rw_v1'"),
		"rewrite: the run went on after ALTER COLUMN TYPE (at $after_alter)");
	$node->safe_psql('postgres', 'VACUUM FULL t1');
	is($node->safe_psql('postgres', "SELECT mig_wait('rw_v1', '120s')"),
		'completed', 'rewrite: completed');
	is(n_groups('t1'), '0:24 1:' . ($rows - 24),
		'rewrite: 24 rows untouched, every other row changed exactly once');
	is( $node->safe_psql('postgres',
			"SELECT string_agg(id::text, ',' ORDER BY id) FROM t1 WHERE n = 0"),
		$plist, 'rewrite: the untouched rows are the poison rows');
	is( $node->safe_psql('postgres', q{
			SELECT string_agg((s.key::text[])[1] || ':' || s.sqlstate, ',' ORDER BY (s.key::text[])[1]::int)
			  FROM migration_skipped s JOIN migrations m ON m.id = s.migration_id
			 WHERE m.name = 'rw_v1'}),
		join(',', map { "$_:22P02" } @poison),
		'rewrite: exactly the poison keys skipped, each with 22P02');
	my $r = mig_row($node, 'rw_v1', qw(processed skipped scanned));
	is("$r->{processed}/$r->{skipped}/$r->{scanned}", ($rows - 24) . "/24/$rows",
		'rewrite: processed, skipped and scanned add up');
	is($node->safe_psql('postgres',
		"SELECT format_type(atttypid, -1) FROM pg_attribute WHERE attrelid = 't1'::regclass AND attname = 'pad'"),
		'bigint', 'rewrite: the column was retyped');
}

# --- 2. odd DateStyle and TimeZone of the worker -----------------------------
{
	ok(set_server_guc($node, 'DateStyle', 'SQL, DMY'), 'settings: server DateStyle SQL, DMY');
	ok(set_server_guc($node, 'TimeZone', 'Asia/Kolkata'), 'settings: server TimeZone Asia/Kolkata');
	# poison days above 12 and Feb 29th: a DMY/MDY mix-up would be seen
	$node->safe_psql('postgres', q{
		CREATE TABLE t2d (d date PRIMARY KEY, raw text NOT NULL, v int, n int NOT NULL DEFAULT 0);
		INSERT INTO t2d (d, raw) SELECT date '2024-01-01' + g, g::text FROM generate_series(0, 999) g;
		UPDATE t2d SET raw = 'bad' WHERE d IN (date '2024-01-13', date '2024-02-29', date '2025-07-04',
											  date '2026-09-26');
		CREATE TABLE t2t (ts timestamptz PRIMARY KEY, raw text NOT NULL, v int, n int NOT NULL DEFAULT 0);
		INSERT INTO t2t (ts, raw)
			SELECT timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour', g::text
			  FROM generate_series(0, 999) g;
		UPDATE t2t SET raw = 'bad'
		 WHERE ts IN (timestamptz '2024-01-01 05:00:00+00', timestamptz '2024-01-13 20:30:00+00' - interval '30 min',
					  timestamptz '2024-02-11 15:00:00+00');
		SELECT mig_define('date_v1', 't2d',
			'UPDATE t2d SET v = raw::int, n = n + 1 WHERE d BETWEEN $1 AND $2',
			batch_size => 100, on_error => 'skip');
		SELECT mig_define('ts_v1', 't2t',
			'UPDATE t2t SET v = raw::int, n = n + 1 WHERE ts BETWEEN $1 AND $2',
			batch_size => 100, on_error => 'skip', parallel => 2);
		SELECT mig_start('date_v1'); SELECT mig_start('ts_v1');});
	is( $node->safe_psql('postgres',
			"SELECT string_agg(status, ',') FROM mig_wait_all(ARRAY['date_v1', 'ts_v1'], '60 s')"),
		'completed,completed', 'settings: both completed');
	is(skipped_of('date_v1'),
		'{2024-01-13}|22P02,{2024-02-29}|22P02,{2025-07-04}|22P02,{2026-09-26}|22P02',
		'settings: date keys skipped as canonical ISO text');
	is(skipped_of('ts_v1'),
		'{"2024-01-01 05:00:00+00"}|22P02,{"2024-01-13 20:00:00+00"}|22P02,{"2024-02-11 15:00:00+00"}|22P02',
		'settings: timestamptz keys skipped as canonical ISO text in UTC');
	is(n_groups('t2d'), '0:4 1:996', 'settings: date table: good rows once, poison untouched');
	is(n_groups('t2t'), '0:3 1:997', 'settings: timestamptz table: good rows once, poison untouched');

	# fixed, and retried from a session with yet other settings
	$node->safe_psql('postgres',
		"UPDATE t2d SET raw = '1' WHERE n = 0; UPDATE t2t SET raw = '1' WHERE n = 0");
	is( $node->safe_psql('postgres', q{
			SET DateStyle = 'German, MDY'; SET TimeZone = 'America/Los_Angeles';
			SET IntervalStyle = 'sql_standard';
			SELECT mig_retry_skipped('date_v1') || ',' || mig_retry_skipped('ts_v1')}),
		'4,3', 'settings: mig_retry_skipped under German/Los Angeles fixes every key');
	is(n_groups('t2d'), '1:1000', 'settings: date table: every row changed exactly once');
	is(n_groups('t2t'), '1:1000', 'settings: timestamptz table: every row changed exactly once');
	is( $node->safe_psql('postgres', q{
			SELECT string_agg(name || '=' || skipped || '/' || processed, ',' ORDER BY name)
			  FROM migrations WHERE name IN ('date_v1', 'ts_v1')}),
		'date_v1=0/1000,ts_v1=0/1000', 'settings: skipped counted off, processed counted');
	is(skipped_of('date_v1') . skipped_of('ts_v1'), '', 'settings: no skipped key left');
	$node->safe_psql('postgres',
		'ALTER SYSTEM RESET DateStyle; ALTER SYSTEM RESET TimeZone; SELECT pg_reload_conf()');
	ok(poll_true($node, "SELECT current_setting('DateStyle') = 'ISO, MDY'"),
		'settings: server settings back');
}

# --- 3. a lock timeout is transient: never skipped ----------------------------
{
	new_table($node, 't3', 200);
	$node->safe_psql('postgres', q{
		SELECT mig_define('lock_v1', 't3', 'UPDATE t3 SET n = n + 1 WHERE id BETWEEN $1 AND $2',
			batch_size => 50, on_error => 'skip', lock_timeout => '100ms', max_retries => 0)});
	my $holder = $node->background_psql('postgres', on_error_stop => 0);
	$holder->query_safe('BEGIN; SELECT id FROM t3 WHERE id = 120 FOR UPDATE');
	$node->safe_psql('postgres', "SELECT mig_start('lock_v1')");
	is(wait_not_running($node, 'lock_v1'), 'failed',
		'lock: max_retries 0: the lock timeout fails the migration');
	my $r = mig_row($node, 'lock_v1', qw(error skipped processed));
	like($r->{error}, qr/lock timeout/, 'lock: the error is the lock timeout');
	is("$r->{skipped}/$r->{processed}", '0/100', 'lock: nothing skipped, the two batches before it done');
	is(skipped_of('lock_v1'), '', 'lock: no key in migration_skipped');
	is(n_groups('t3'), '0:100 1:100', 'lock: rows up to 100 changed once, the rest not');

	# with retries: the lock goes while the worker retries, and it goes through
	$node->safe_psql('postgres',
		"SELECT mig_alter('lock_v1', max_retries => 1000); SELECT mig_start('lock_v1')");
	ok(poll_true($node, "SELECT retries >= 2 FROM migrations WHERE name = 'lock_v1'"),
		'lock: the worker retries the locked batch');
	is(mig_row($node, 'lock_v1', 'skipped')->{skipped}, '0', 'lock: still nothing skipped while it retries');
	$holder->query_safe('COMMIT');
	$holder->quit;
	is($node->safe_psql('postgres', "SELECT mig_wait('lock_v1', '60s')"),
		'completed', 'lock: completed once the lock is released');
	is(n_groups('t3'), '1:200', 'lock: every row changed exactly once');
	is(mig_row($node, 'lock_v1', 'skipped')->{skipped} . skipped_of('lock_v1'), '0',
		'lock: no key skipped');
}

# --- 3b. a deadlock is transient too: never skipped ---------------------------
{
	new_table($node, 't3d', 200);
	$node->safe_psql('postgres', q{
		SELECT mig_define('dl_v1', 't3d', 'UPDATE t3d SET n = n + 1 WHERE id BETWEEN $1 AND $2',
			batch_size => 50, on_error => 'skip', lock_timeout => '60s', max_retries => 0)});
	# the session waits longer than the worker before it looks for a
	# deadlock: the worker (1 s, the default) is the one aborted
	my $holder = $node->background_psql('postgres', on_error_stop => 0);
	my $hpid = $holder->query_safe(
		"SET deadlock_timeout = '60s'; BEGIN; SELECT id FROM t3d WHERE id = 120 FOR UPDATE; SELECT pg_backend_pid()");
	$hpid =~ s/.*\n//s;
	$node->safe_psql('postgres', "SELECT mig_start('dl_v1')");
	ok(poll_true($node, "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE $hpid = ANY (pg_blocking_pids(pid)))"),
		'deadlock: the worker waits for the row the session holds');
	# the session now wants the batch's first row, which the worker holds
	$holder->query_safe('SELECT id FROM t3d WHERE id = 101 FOR UPDATE');
	$holder->query_safe('COMMIT');
	$holder->quit;
	is(wait_not_running($node, 'dl_v1'), 'failed', 'deadlock: max_retries 0: the deadlock fails the migration');
	my $r = mig_row($node, 'dl_v1', qw(error skipped processed));
	like($r->{error}, qr/deadlock detected/, 'deadlock: the error is the deadlock');
	is("$r->{skipped}/$r->{processed}" . skipped_of('dl_v1'), '0/100', 'deadlock: nothing skipped');
	is(n_groups('t3d'), '0:100 1:100', 'deadlock: rows up to 100 changed once, the rest not');
	$node->safe_psql('postgres', "SELECT mig_start('dl_v1')");
	is($node->safe_psql('postgres', "SELECT mig_wait('dl_v1', '60s')"), 'completed',
		'deadlock: started again, completed');
	is(n_groups('t3d'), '1:200', 'deadlock: every row changed exactly once');
}

# --- 4. per-batch verify with skip -------------------------------------------
{
	my @bad = (1, 17, 333, 334, 999, 1500, 2000);
	my $blist = join(',', @bad);
	$node->safe_psql('postgres', qq{
		CREATE TABLE t4 (id int PRIMARY KEY, flag bool NOT NULL DEFAULT false, v int,
						 n int NOT NULL DEFAULT 0);
		INSERT INTO t4 (id) SELECT g FROM generate_series(1, 2000) g;
		UPDATE t4 SET flag = true WHERE id IN ($blist);
		SELECT mig_define('ver_v1', 't4',
			'UPDATE t4 SET v = id * 2, n = n + 1 WHERE id BETWEEN \$1 AND \$2',
			batch_size => 100, parallel => 2, on_error => 'skip',
			verify => 'SELECT id, v FROM t4 WHERE id BETWEEN \$1 AND \$2 AND flag');
		SELECT mig_start('ver_v1');});
	is($node->safe_psql('postgres', "SELECT mig_wait('ver_v1', '60s')"),
		'completed', 'verify+skip: completed');
	is( $node->safe_psql('postgres', q{
			SELECT string_agg((s.key::text[])[1] || ':' || s.sqlstate, ',' ORDER BY (s.key::text[])[1]::int)
			  FROM migration_skipped s JOIN migrations m ON m.id = s.migration_id
			 WHERE m.name = 'ver_v1'}),
		join(',', map { "$_:23514" } @bad),
		'verify+skip: exactly the keys the verify query reports are skipped, with 23514');
	like( $node->safe_psql('postgres', q{
			SELECT s.error FROM migration_skipped s JOIN migrations m ON m.id = s.migration_id
			 WHERE m.name = 'ver_v1' AND s.key = '{17}'}),
		qr/verify query returned 1 rows? for keys \(17\) to \(17\)/,
		'verify+skip: the skipped key keeps the verify error');
	is(n_groups('t4', 'flag'), '0:7', 'verify+skip: the action\'s change of a skipped key is rolled back (n)');
	is($node->safe_psql('postgres', 'SELECT count(*) FROM t4 WHERE flag AND v IS NOT NULL'),
		'0', 'verify+skip: ... and its v was not kept either');
	is(n_groups('t4', 'NOT flag'), '1:1993', 'verify+skip: every other row changed exactly once');
	is($node->safe_psql('postgres', 'SELECT count(*) FROM t4 WHERE NOT flag AND v <> id * 2'),
		'0', 'verify+skip: with the action\'s value');
	my $r = mig_row($node, 'ver_v1', qw(processed skipped));
	is("$r->{processed}/$r->{skipped}", '1993/7', 'verify+skip: processed and skipped');
}

# --- 5. max_skipped 0, then continue_from with more ---------------------------
{
	my @poison = (130, 260, 390);
	$node->safe_psql('postgres', q{
		CREATE TABLE t5 (id int PRIMARY KEY, raw text NOT NULL, v int, n int NOT NULL DEFAULT 0);
		INSERT INTO t5 (id, raw) SELECT g, g::text FROM generate_series(1, 500) g;
		UPDATE t5 SET raw = 'bad' WHERE id IN (130, 260, 390);
		SELECT mig_define('ms_v1', 't5', 'UPDATE t5 SET v = raw::int, n = n + 1 WHERE id BETWEEN $1 AND $2',
			batch_size => 50, on_error => 'skip', max_skipped => 0);
		SELECT mig_start('ms_v1');});
	is(wait_not_running($node, 'ms_v1'), 'failed', 'max_skipped 0: the first poison key fails the migration');
	my $r = mig_row($node, 'ms_v1', qw(error error_detail skipped));
	like($r->{error}, qr/migration "ms_v1" skipped more than max_skipped \(0\) keys/,
		'max_skipped 0: with the max_skipped message');
	like($r->{error_detail}, qr/invalid input syntax for type integer/,
		'max_skipped 0: the key\'s own error in error_detail');
	is($r->{skipped} . skipped_of('ms_v1'), '0', 'max_skipped 0: nothing recorded');
	is(n_groups('t5', 'id < 130'), '1:129', 'max_skipped 0: the keys before the poison key changed once');
	is(n_groups('t5', 'id >= 130'), '0:371', 'max_skipped 0: none from the poison key on');

	$node->safe_psql('postgres', q{
		SELECT mig_define('ms_v2', 't5', 'UPDATE t5 SET v = raw::int, n = n + 1 WHERE id BETWEEN $1 AND $2',
			batch_size => 50, on_error => 'skip', max_skipped => 1, continue_from => 'ms_v1');
		SELECT mig_start('ms_v2');});
	is(wait_not_running($node, 'ms_v2'), 'failed', 'max_skipped 1: fails at the second poison key');
	is(skipped_of('ms_v2'), '{130}|22P02', 'max_skipped 1: the first poison key skipped');
	is(n_groups('t5', 'id < 260 AND id <> 130'), '1:258', 'max_skipped 1: keys before 260 changed once');
	is(n_groups('t5', 'id >= 260 OR id = 130'), '0:242', 'max_skipped 1: the rest untouched');

	$node->safe_psql('postgres', q{
		SELECT mig_define('ms_v3', 't5', 'UPDATE t5 SET v = raw::int, n = n + 1 WHERE id BETWEEN $1 AND $2',
			batch_size => 50, on_error => 'skip', max_skipped => 10, continue_from => 'ms_v2');
		SELECT mig_start('ms_v3');});
	is($node->safe_psql('postgres', "SELECT mig_wait('ms_v3', '60s')"), 'completed',
		'continue_from with max_skipped 10: completed');
	is(skipped_of('ms_v3'), '{130}|22P02,{260}|22P02,{390}|22P02',
		'continue_from: the carried key and the two new ones are skipped');
	is(mig_row($node, 'ms_v3', 'skipped')->{skipped}, '3', 'continue_from: skipped = 3');
	is(n_groups('t5', 'id NOT IN (130, 260, 390)'), '1:497', 'continue_from: every good row changed exactly once');
	is(n_groups('t5', 'id IN (130, 260, 390)'), '0:3', 'continue_from: poison rows untouched');
	$node->safe_psql('postgres', "UPDATE t5 SET raw = '0' WHERE n = 0");
	is($node->safe_psql('postgres', "SELECT mig_retry_skipped('ms_v3')"), '3',
		'continue_from: mig_retry_skipped of the last version fixes the three');
	is(n_groups('t5'), '1:500', 'continue_from: then every row changed exactly once');
}

# --- 6. after: a prerequisite dropped, a prerequisite reset --------------------
{
	new_table($node, 't6a', 100);
	new_table($node, 't6b', 300);
	$node->safe_psql('postgres', q{
		SELECT mig_define('pre_v1', 't6a', 'UPDATE t6a SET n = n + 1 WHERE id BETWEEN $1 AND $2', batch_size => 50);
		SELECT mig_define('dep_v1', 't6b', 'UPDATE t6b SET n = n + 1 WHERE id BETWEEN $1 AND $2',
						  batch_size => 50, after => ARRAY['pre_v1']);
		SELECT mig_start('dep_v1');});
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT mig_drop('pre_v1')");
	is("$ret|$err", '0|', 'after: mig_drop of a prerequisite its dependent waits for is allowed');
	if ($ret == 0)
	{
		is( $node->safe_psql('postgres',
				"SELECT status || ' ' || waiting_for FROM mig_status WHERE name = 'dep_v1'"),
			'waiting pre_v1 (not defined)', 'after: dropped prerequisite: the dependent waits, "not defined"');
		is(n_groups('t6b'), '0:300', 'after: the dependent ran nothing');
		# the same name defined again and completed: the dependent runs
		$node->safe_psql('postgres', q{
			SELECT mig_define('pre_v1', 't6a', 'UPDATE t6a SET n = n + 1 WHERE id BETWEEN $1 AND $2', batch_size => 50)});
		$node->safe_psql('postgres', "CALL mig_run('pre_v1')");
		is($node->safe_psql('postgres', "SELECT mig_wait('dep_v1', '60s')"), 'completed',
			'after: the dependent completes once a migration of that name completed');
	}
	else
	{
		fail('after: mig_drop of a waited-for prerequisite is refused');
		$node->safe_psql('postgres', "CALL mig_run('pre_v1')");
		$node->safe_psql('postgres', "SELECT mig_wait('dep_v1', '60s')");
	}
	is(n_groups('t6a'), '1:100', 'after: prerequisite: every row once');
	is(n_groups('t6b'), '1:300', 'after: dependent: every row once');

	# reset of the prerequisite while the dependent runs
	new_table($node, 't6c', 100);
	new_table($node, 't6d', 3000);
	$node->safe_psql('postgres', q{
		SELECT mig_define('pre_v2', 't6c', 'UPDATE t6c SET n = n + 1 WHERE id BETWEEN $1 AND $2', batch_size => 50);
		SELECT mig_define('dep_v2', 't6d',
			'WITH s AS (SELECT pg_sleep(0.03)) UPDATE t6d SET n = n + 1 FROM s WHERE id BETWEEN $1 AND $2',
			batch_size => 25, after => ARRAY['pre_v2']);
		SELECT mig_start('dep_v2');
		CALL mig_run('pre_v2');});
	ok(defined wait_for_worker($node, 'dep_v2'), 'after/reset: the dependent\'s worker runs');
	ok(poll_true($node, "SELECT batches >= 3 FROM migrations WHERE name = 'dep_v2'"),
		'after/reset: the dependent has committed batches');
	$node->safe_psql('postgres', "SELECT mig_reset('pre_v2')");
	is($node->safe_psql('postgres', "SELECT status FROM migrations WHERE name = 'pre_v2'"),
		'pending', 'after/reset: the prerequisite is pending again');
	my $b1 = mig_row($node, 'dep_v2', 'batches')->{batches};
	ok(poll_true($node, "SELECT batches > $b1 + 2 FROM migrations WHERE name = 'dep_v2'"),
		'after/reset: a dependent already running goes on (the order is checked when a run starts)');
	is($node->safe_psql('postgres',
		"SELECT status || ' ' || coalesce(waiting_for, '-') FROM mig_status WHERE name = 'dep_v2'"),
		'running pre_v2 (pending)', 'after/reset: mig_status shows it running, with what it waits for');
	# its worker ends: the next run's setup sees the prerequisite pending
	my $pid = wait_for_worker($node, 'dep_v2');
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	ok(wait_pid_gone($node, $pid), 'after/reset: the dependent\'s worker is gone');
	ok(poll_true($node, "SELECT status = 'waiting' FROM mig_status WHERE name = 'dep_v2'"),
		'after/reset: restarted, the dependent waits for the reset prerequisite');
	my $b2 = mig_row($node, 'dep_v2', 'batches')->{batches};
	consistent_ok($node, 't6d', 'dep_v2', 'after/reset: while waiting');
	$node->safe_psql('postgres', "SELECT mig_start('pre_v2')");
	is( $node->safe_psql('postgres',
			"SELECT string_agg(status, ',') FROM mig_wait_all(ARRAY['pre_v2', 'dep_v2'], '120 s')"),
		'completed,completed', 'after/reset: both complete once the prerequisite completed again');
	is(n_groups('t6c'), '2:100', 'after/reset: the reset prerequisite ran twice, as asked');
	exactly_once_ok($node, 't6d', 'dep_v2', 3000, 'after/reset: dependent');
	cmp_ok(mig_row($node, 'dep_v2', 'batches')->{batches}, '>', $b2,
		'after/reset: the dependent went on from its cursor');
}

# --- 7. mig_dry_run by a member role and by another role, slices running -----
{
	$node->safe_psql('postgres', q{
		CREATE ROLE owner7 LOGIN; CREATE ROLE member7 LOGIN IN ROLE owner7; CREATE ROLE other7 LOGIN;
		GRANT CREATE ON SCHEMA public TO owner7;});
	$node->safe_psql('postgres', q{
		CREATE TABLE t7 (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
		INSERT INTO t7 (id) SELECT g FROM generate_series(1, 4000) g;
		SELECT mig_define('dry7', 't7',
			'WITH s AS (SELECT pg_sleep(0.02)) UPDATE t7 SET n = n + 1 FROM s WHERE id BETWEEN $1 AND $2 RETURNING id, n',
			batch_size => 40, parallel => 2);
		SELECT mig_start('dry7');}, extra_params => [ '-U', 'owner7' ]);
	ok(wait_all_slices_busy($node, 'dry7', 2), 'dry run: two slices run');
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT count(*) || ':' || bool_and(rows = 40) || ':' || bool_and((sample->0->>'n')::int >= 1)"
		  . " FROM mig_dry_run('dry7', 3)", extra_params => [ '-U', 'member7' ]);
	is("$ret|$err", '0|', 'dry run: a member of the owning role may dry-run');
	is($out, '3:true:true', 'dry run: three batches of 40, the sample showing the action\'s rows');
	($ret, $out, $err) = $node->psql('postgres', "SELECT * FROM mig_dry_run('dry7', 1)",
		extra_params => [ '-U', 'other7' ]);
	isnt($ret, 0, 'dry run: another role is refused');
	like($err, qr/must be owner of migration "dry7"/, 'dry run: with the owner error');
	note("dry run refused: $err");
	sliced_consistent_ok($node, int_key('dry7', 't7', 2), 'dry run: while the slices run');
	is($node->safe_psql('postgres', "SELECT mig_wait('dry7', '120s')"), 'completed',
		'dry run: the migration completed');
	exactly_once_ok($node, 't7', 'dry7', 4000, 'dry run');
}

# before case 8, which crashes the server on purpose
log_has_no_crash($node, 0, 'cases 1 to 7');

# --- 8. kill -9 while mig_retry_skipped runs -----------------------------------
{
	$node->safe_psql('postgres', q{
		CREATE TABLE delay8 (d float8 NOT NULL); INSERT INTO delay8 VALUES (0);
		CREATE TABLE t8 (id int PRIMARY KEY, raw text NOT NULL, v int, n int NOT NULL DEFAULT 0);
		INSERT INTO t8 (id, raw) SELECT g, g::text FROM generate_series(1, 1000) g;
		UPDATE t8 SET raw = 'bad' WHERE id % 50 = 3;
		SELECT mig_define('rs8', 't8',
			'WITH s AS (SELECT pg_sleep((SELECT d FROM delay8))) UPDATE t8 SET v = raw::int, n = n + 1 FROM s WHERE id BETWEEN $1 AND $2',
			batch_size => 100, on_error => 'skip');
		CALL mig_run('rs8');});
	is(mig_row($node, 'rs8', 'skipped')->{skipped}, '20', 'retry crash: 20 keys skipped');
	is(n_groups('t8'), '0:20 1:980', 'retry crash: good rows changed once');
	# fixed, and each retried key now takes 0.5 s
	$node->safe_psql('postgres', "UPDATE t8 SET raw = '5' WHERE n = 0; UPDATE delay8 SET d = 0.5");
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	$bg->query_until(qr/retry started/, "\\echo retry started\nSELECT mig_retry_skipped('rs8');\n");
	# well into the keys (a few retried, uncommitted) before the crash
	ok( poll_true($node, q{
			SELECT count(*) = 1 FROM pg_stat_activity
			 WHERE query LIKE 'SELECT mig_retry_skipped%' AND state = 'active'
			   AND now() - query_start > interval '1.5 s'}),
		'retry crash: mig_retry_skipped has run for more than 1.5 s');
	ok(crash_restart($node), 'retry crash: server killed (-9) and restarted');
	eval { $bg->quit; };
	my $out = $node->safe_psql('postgres', q{
		SELECT (SELECT skipped FROM migrations WHERE name = 'rs8') || '|' ||
			   (SELECT count(*) FROM migration_skipped s JOIN migrations m ON m.id = s.migration_id
				 WHERE m.name = 'rs8') || '|' ||
			   (SELECT processed FROM migrations WHERE name = 'rs8') || '|' ||
			   (SELECT string_agg(n || ':' || c, ' ' ORDER BY n)
				  FROM (SELECT n, count(*) c FROM t8 GROUP BY n) x)});
	ok($out eq '20|20|980|0:20 1:980' || $out eq '0|0|1000|1:1000',
		"retry crash: all keys retried or none (skipped|recorded|processed|n groups = $out)");
	is($out, '20|20|980|0:20 1:980', 'retry crash: the open transaction rolled back: none');
	$node->safe_psql('postgres', 'UPDATE delay8 SET d = 0');
	is($node->safe_psql('postgres', "SELECT mig_retry_skipped('rs8')"), '20',
		'retry crash: retried again, all 20 succeed');
	is(n_groups('t8'), '1:1000', 'retry crash: every row changed exactly once');
	my $r = mig_row($node, 'rs8', qw(skipped processed));
	is("$r->{skipped}/$r->{processed}", '0/1000', 'retry crash: counted once each');
}

done_testing();
