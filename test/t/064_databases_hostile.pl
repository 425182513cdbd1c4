# Every database of the server, under hostile conditions:
#   1. kill -9 of the postmaster while migrations run in three databases made
#      after the start; after the restart all resume and complete, every row
#      changed exactly once, with no configuration but the preload
#   2. max_worker_processes too small for the schedulers and workers of three
#      busy databases (4 slots, max_workers = 4, no logical replication
#      launcher): nothing fails, the migrations wait for a slot and all
#      complete exactly once
#   3. a database whose extension is still 1.0 (the 1.0 script is shipped):
#      the other database's migration is unaffected; after ALTER EXTENSION
#      UPDATE it runs there too.  And the extension dropped in one database
#      while its migration runs in another: the other completes
#   4. an owner without CONNECT on a second database: that migration fails
#      with the reason, the other database's migration completes
#   5. ALTER DATABASE ... RENAME by the database's owner (not a superuser)
#      with a running migration: it completes under the new name.  Names in
#      migration_runner.databases are matched against pg_database.datname as
#      it is now: after a rename a list naming only the old name serves the
#      database no more (its migration stays running, untouched) until the
#      list names the new name
#   6. a streaming standby of a primary running migrations in two databases
#      runs no migration_runner process; after kill -9 of the primary and
#      promotion both complete exactly once
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use MigTest;
use DbTest;

my $RUNNER_SQL = q{SELECT count(*) FROM pg_stat_activity
				   WHERE backend_type IN ('migration_runner scheduler', 'migration_runner worker')};

sub batches_at_least
{
	my ($node, $db, $name, $n) = @_;
	return db_poll_true($node, $db,
		"SELECT batches >= $n FROM migrations WHERE name = " . q_lit($name));
}

# --- 1. kill -9 of the postmaster ----------------------------------------------------
{
	my $node = plain_node('mrtap_hostile_kill');
	my @dbs = qw(k1 k2 k3);
	for my $db (@dbs)
	{
		db_with_table($node, $db, 't', 3000);
		db_migration($node, $db, "${db}_v1", 't', 0.02, 30);
	}
	$node->safe_psql($_, "SELECT mig_start('${_}_v1')") for @dbs;
	ok(batches_at_least($node, $_, "${_}_v1", 3), "$_: a few batches done") for @dbs;
	ok(crash_node($node, 'kill9'), 'kill -9 of the postmaster, all its processes gone');
	$node->start;
	for my $db (@dbs)
	{
		is(db_wait_done($node, $db, "${db}_v1"), 'completed',
			"${db}_v1 completes after the crash");
		db_once_ok($node, $db, 't', "${db}_v1", 3000);
	}
	$node->stop;
}

# --- 2. too few background worker slots ---------------------------------------------
{
	my $node = PostgreSQL::Test::Cluster->new('mrtap_hostile_slots');
	$node->init;
	$node->append_conf('postgresql.conf', qq{
max_worker_processes = 4
max_logical_replication_workers = 0
max_parallel_workers = 0
log_min_messages = debug1
shared_preload_libraries = 'migration_runner'
migration_runner.max_workers = 4
});
	$node->start;
	my @dbs = qw(w1 w2 w3);
	for my $db (@dbs)
	{
		db_with_table($node, $db, 't', 600);
		db_with_table($node, $db, 'u', 600, exists => 1);
		db_migration($node, $db, "${db}_t", 't', 0.01, 30);
		db_migration($node, $db, "${db}_u", 'u', 0.01, 30);
	}
	my $offset = -s $node->logfile;
	$node->safe_psql($_, "SELECT mig_start('${_}_t'); SELECT mig_start('${_}_u')") for @dbs;

	my %throttled;
	my ($done, $most) = (0, 0);
	my $deadline = time() + 3 * $WAIT_SECS;
	while (time() < $deadline)
	{
		my $running = 0;
		for my $db (@dbs)
		{
			my $out = $node->safe_psql($db,
				"SELECT count(*) FILTER (WHERE status = 'running') || '|' || "
				  . "coalesce(string_agg(throttled, ';'), '') FROM migrations");
			my ($r, $th) = split /\|/, $out, 2;
			$running += $r;
			$throttled{$_} = 1 for grep { $_ ne '' } split /;/, $th // '';
		}
		my $procs = $node->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'migration_runner%'");
		$most = $procs if $procs > $most;
		if ($running == 0) { $done = 1; last; }
		usleep(50_000);
	}
	ok($done, 'with 4 worker slots the six migrations of three databases all ended');
	cmp_ok($most, '<=', 4, "never more than max_worker_processes runner processes ($most)");
	for my $db (@dbs)
	{
		for my $t (qw(t u))
		{
			is(db_status($node, $db, "${db}_$t"), 'completed', "${db}_$t completed");
			db_once_ok($node, $db, $t, "${db}_$t", 600);
		}
	}
	my @other = grep { !/worker slot/ } keys %throttled;
	ok(!@other, 'throttled said nothing but the wait for a worker slot')
	  or diag(join("\n", @other));
	note('throttled seen: ' . join(' / ', sort keys %throttled));
	log_has_no_crash($node, $offset, 'too few worker slots');
	$node->stop;
}

# --- 3. an extension still at 1.0, and one dropped, next to a busy database ------------
{
	my $node = plain_node('mrtap_hostile_ext', "migration_runner.max_workers = 4\n");
	db_with_table($node, 'busy', 't', 3000);
	db_migration($node, 'busy', 'busy_v1', 't', 0.02, 30);
	$node->safe_psql('postgres', 'CREATE DATABASE old10');
	my ($ret, $out, $err) = $node->psql('old10',
		"CREATE EXTENSION migration_runner VERSION '1.0'");
  SKIP:
	{
		skip "CREATE EXTENSION migration_runner VERSION '1.0' is not possible here: $err", 5
		  if $ret != 0;
		$node->safe_psql('old10',
			'CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);'
			  . 'INSERT INTO t (id) SELECT g FROM generate_series(1, 300) g');
		$node->safe_psql('busy', "SELECT mig_start('busy_v1')");
		ok(batches_at_least($node, 'busy', 'busy_v1', 3), 'busy_v1 runs');
		($ret, $out, $err) = $node->psql('old10',
			"SELECT mig_define(name => 'o_v1', relation => 't', action => "
			  . q_lit('UPDATE t SET n = n + 1 WHERE id BETWEEN $1 AND $2') . ')');
		like($err, qr/ALTER EXTENSION/,
			'in the 1.0 database a function of the new library says to update');
		is(db_wait_done($node, 'busy', 'busy_v1'), 'completed',
			'the busy database completes next to a 1.0 database');
		$node->safe_psql('old10', 'ALTER EXTENSION migration_runner UPDATE');
		db_migration($node, 'old10', 'o_v1', 't', 0, 50);
		$node->safe_psql('old10', "SELECT mig_start('o_v1')");
		is(db_wait_done($node, 'old10', 'o_v1'), 'completed',
			'after ALTER EXTENSION UPDATE its migration completes');
		db_once_ok($node, 'old10', 't', 'o_v1', 300);
	}
	db_once_ok($node, 'busy', 't', 'busy_v1', 3000) if $ret == 0;

	# the extension dropped in one database while its migration runs, next to another
	db_with_table($node, 'drop1', 't', 3000);
	db_with_table($node, 'keep1', 't', 3000);
	db_migration($node, 'drop1', 'd_v1', 't', 0.02, 30);
	db_migration($node, 'keep1', 'k_v1', 't', 0.02, 30);
	$node->safe_psql($_->[0], "SELECT mig_start('$_->[1]')") for [ 'drop1', 'd_v1' ], [ 'keep1', 'k_v1' ];
	ok(batches_at_least($node, 'drop1', 'd_v1', 3), 'd_v1 runs');
	ok(batches_at_least($node, 'keep1', 'k_v1', 3), 'k_v1 runs');
	$node->safe_psql('drop1', 'DROP EXTENSION migration_runner');
	is(db_wait_done($node, 'keep1', 'k_v1'), 'completed',
		'with the extension dropped in drop1, keep1 completes');
	db_once_ok($node, 'keep1', 't', 'k_v1', 3000);
	ok( poll_true($node,
			"SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = 'drop1'"),
		'nothing stays connected to drop1');
	log_has_no_crash($node, 0, 'extensions');
	$node->stop;
}

# --- 4. an owner without CONNECT in a second database -------------------------------
{
	my $node = plain_node('mrtap_hostile_connect', "migration_runner.max_workers = 4\n");
	db_with_table($node, 'open1', 't', 600);
	db_migration($node, 'open1', 'open_v1', 't', 0.01, 30);
	db_with_table($node, 'shut1', 't', 600);
	$node->safe_psql('shut1', q{
		CREATE ROLE nocon LOGIN;
		ALTER TABLE t OWNER TO nocon;
	});
	$node->safe_psql('shut1',
		"SELECT mig_define(name => 'shut_v1', relation => 't', action => "
		  . q_lit('UPDATE t SET n = n + 1 WHERE id BETWEEN $1 AND $2') . ')',
		extra_params => [ '-U', 'nocon' ]);
	$node->safe_psql('postgres', 'REVOKE CONNECT ON DATABASE shut1 FROM PUBLIC');
	$node->safe_psql('open1', "SELECT mig_start('open_v1')");
	$node->safe_psql('shut1', "SELECT mig_start('shut_v1')");
	is(db_wait_done($node, 'shut1', 'shut_v1'), 'failed',
		'the migration whose owner may not connect to shut1 fails');
	like($node->safe_psql('shut1', "SELECT error FROM migrations WHERE name = 'shut_v1'"),
		qr/owner role "nocon" has no CONNECT privilege on database "shut1"/,
		'its error names the owner and the database');
	is($node->safe_psql('shut1', 'SELECT count(*) FROM t WHERE n <> 0'),
		'0', 'no row of shut1 was changed');
	is(db_wait_done($node, 'open1', 'open_v1'), 'completed',
		'the other database completes');
	db_once_ok($node, 'open1', 't', 'open_v1', 600);
	log_has_no_crash($node, 0, 'owner without CONNECT');
	$node->stop;
}

# --- 5. RENAME by the owner, and the databases list -----------------------------------
{
	my $node = plain_node('mrtap_hostile_rename',
		"migration_runner.max_workers = 4\nmigration_runner.poll_interval = 200\n");
	$node->safe_psql('postgres', 'CREATE ROLE dbo LOGIN CREATEDB');
	$node->safe_psql('postgres', 'CREATE DATABASE r1 OWNER dbo');
	db_with_table($node, 'r1', 't', 3000, exists => 1);
	my $gated = '(SELECT CASE WHEN hold THEN 0.05 ELSE 0.01 END FROM gate)';
	$node->safe_psql('r1', 'CREATE TABLE gate (hold bool); INSERT INTO gate VALUES (true)');
	db_migration($node, 'r1', 'r_v1', 't', $gated, 30);
	$node->safe_psql('r1', "SELECT mig_start('r_v1')");
	ok(batches_at_least($node, 'r1', 'r_v1', 2), 'r_v1 runs in r1');
	my ($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE r1 RENAME TO r1x',
		extra_params => [ '-U', 'dbo' ]);
	is($ret, 0, 'the owner (not a superuser) renames r1 with a running migration')
	  or diag($err);
	$node->safe_psql('r1x', 'UPDATE gate SET hold = false');
	is(db_wait_done($node, 'r1x', 'r_v1'), 'completed', 'r_v1 completes under the new name');
	db_once_ok($node, 'r1x', 't', 'r_v1', 3000);

	# a list naming the database by the name it has now, then renamed
	db_with_table($node, 'r2', 't', 300);
	$node->safe_psql('postgres', "ALTER SYSTEM SET migration_runner.databases = 'r1x, r2'");
	$node->reload;
	ok( db_poll_true($node, 'r1x',
			"SELECT current_setting('migration_runner.databases') = 'r1x, r2'"),
		'the list names r1x and r2');
	$node->safe_psql('r1x', 'UPDATE t SET n = 0; UPDATE gate SET hold = true');
	db_migration($node, 'r1x', 'r_v2', 't', $gated, 30);
	$node->safe_psql('r1x', "SELECT mig_start('r_v2')");
	ok(batches_at_least($node, 'r1x', 'r_v2', 2), 'r_v2 runs in r1x, named by the list');
	($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE r1x RENAME TO r1y',
		extra_params => [ '-U', 'dbo' ]);
	is($ret, 0, 'r1x renamed to r1y, which the list does not name') or diag($err);
	$node->safe_psql('r1y', 'UPDATE gate SET hold = false');
	# the launcher is alive and serves r2: a migration there completes
	db_migration($node, 'r2', 'r2_v1', 't', 0, 50);
	$node->safe_psql('r2', "SELECT mig_start('r2_v1')");
	is(db_wait_done($node, 'r2', 'r2_v1'), 'completed', 'r2, named by the list, is served');
	db_once_ok($node, 'r2', 't', 'r2_v1', 300);
	my $before = $node->safe_psql('r1y', "SELECT batches FROM migrations WHERE name = 'r_v2'");
	# two more polls of the launcher (poll_interval = 200 ms) pass while r2_v2 runs
	db_migration($node, 'r2', 'r2_v2', 't', 0.05, 50);
	$node->safe_psql('r2', "SELECT mig_start('r2_v2')");
	is(db_wait_done($node, 'r2', 'r2_v2'), 'completed', 'another migration of r2 completes');
	# (worker_pid may still show the pid of the worker the rename stopped:
	# nothing clears it while the database is not served; it is no live
	# process)
	is($node->safe_psql('r1y',
			"SELECT status || ' ' || batches || ' ' || NOT EXISTS (SELECT FROM pg_stat_activity a "
			  . "WHERE a.pid = m.worker_pid) FROM migrations m WHERE name = 'r_v2'"),
		"running $before true",
		'r1y, whose old name only is listed, is not served: r_v2 stays running with no live worker and no new batch');
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE datname = 'r1y' AND backend_type LIKE 'migration_runner%'"),
		'0', 'no scheduler or worker connected to r1y');
	$node->safe_psql('postgres', "ALTER SYSTEM SET migration_runner.databases = 'r1y, r2'");
	$node->reload;
	is(db_wait_done($node, 'r1y', 'r_v2'), 'completed',
		'with the new name listed, r_v2 resumes and completes');
	db_once_ok($node, 'r1y', 't', 'r_v2', 3000);
	log_has_no_crash($node, 0, 'rename');
	$node->stop;
}

# --- 6. a streaming standby, then promotion ---------------------------------------------
{
	my $primary = PostgreSQL::Test::Cluster->new('mrtap_hostile_primary');
	$primary->init(allows_streaming => 1);
	$primary->append_conf('postgresql.conf', qq{
max_worker_processes = 24
log_min_messages = debug1
shared_preload_libraries = 'migration_runner'
});
	$primary->start;
	my @dbs = qw(p1 p2);
	for my $db (@dbs)
	{
		db_with_table($primary, $db, 't', 6000);
		db_migration($primary, $db, "${db}_v1", 't', 0.03, 30);
	}
	$primary->backup('b');
	my $standby = PostgreSQL::Test::Cluster->new('mrtap_hostile_standby');
	$standby->init_from_backup($primary, 'b', has_streaming => 1);
	$standby->start;
	$primary->safe_psql($_, "SELECT mig_start('${_}_v1')") for @dbs;
	ok(batches_at_least($standby, $_, "${_}_v1", 5),
		"$_: the standby has replayed batches of ${_}_v1") for @dbs;
	is($standby->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'migration_runner%'"),
		'0', 'no migration_runner launcher, scheduler or worker on the standby');
	ok(crash_node($primary, 'kill9'), 'kill -9 of the primary');
	$standby->promote;
	ok(poll_true($standby, 'SELECT NOT pg_is_in_recovery()'), 'the standby is promoted');
	for my $db (@dbs)
	{
		is(db_wait_done($standby, $db, "${db}_v1", 3 * $WAIT_SECS), 'completed',
			"${db}_v1 completes on the promoted server");
		db_once_ok($standby, $db, 't', "${db}_v1", 6000);
	}
	log_has_no_crash($standby, 0, 'promoted standby');
	$standby->stop;
}

done_testing();
