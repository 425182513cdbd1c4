# Commands that need nobody connected to a database, with the launcher
# probing every 100 ms:
#   - DROP DATABASE and CREATE DATABASE ... TEMPLATE of an idle database with
#     the extension are never blocked, while another database runs a
#     migration; databases made and dropped again and again while the
#     launcher probes them leave it alive
#   - for a database with a running migration, DROP DATABASE, ALTER DATABASE
#     ... RENAME TO, ... SET TABLESPACE and CREATE DATABASE ... TEMPLATE stop
#     its scheduler and workers first and succeed; the migration resumes
#     afterwards (in the copy too) and changes every row exactly once, woken
#     at once (the launcher no longer polls by then)
#   - someone who does not own the database cannot stop its workers that way
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

my $node = plain_node('mrtap_db_ddl',
	"migration_runner.poll_interval = 100\nmigration_runner.max_workers = 8\n");
my $LAUNCHER_SQL =
  "SELECT pid FROM pg_stat_activity WHERE backend_type = 'migration_runner launcher'";

# $sql in database postgres does not hang (20 s at most) and succeeds
sub quick_ok
{
	my ($sql, $label) = @_;
	my $timed_out = 0;
	my $t0 = time();
	my ($ret, $out, $err) = $node->psql('postgres', $sql,
		timeout => 20, timed_out => \$timed_out);
	ok(!$timed_out && $ret == 0, sprintf('%s (%.1fs)', $label, time() - $t0))
	  or diag("ret=$ret timed_out=$timed_out err=$err");
	return;
}

# a database whose migration runs until the test is done with it
sub busy_database
{
	my ($db, $rows) = @_;
	db_with_table($node, $db, 't', $rows);
	db_migration($node, $db, "${db}_v1", 't', 0.02, 10);
	$node->safe_psql($db, "SELECT mig_start('${db}_v1')");
	ok( db_poll_true($node, $db,
			"SELECT batches >= 3 AND worker_pid IS NOT NULL FROM migrations WHERE name = '${db}_v1'"),
		"${db}_v1 runs in a worker");
	return;
}

my $launcher = poll_value($node, $LAUNCHER_SQL);

# keep_v1 runs throughout: its batches sleep while keep.gate says hold
db_with_table($node, 'keep', 't', 20000);
$node->safe_psql('keep', 'CREATE TABLE gate (hold bool); INSERT INTO gate VALUES (true)');
db_migration($node, 'keep', 'keep_v1', 't', '(SELECT CASE WHEN hold THEN 0.05 ELSE 0 END FROM gate)', 10);
$node->safe_psql('keep', "SELECT mig_start('keep_v1')");
ok( db_poll_true($node, 'keep',
		"SELECT batches >= 3 AND worker_pid IS NOT NULL FROM migrations WHERE name = 'keep_v1'"),
	"keep_v1 runs in a worker");

# --- idle databases ------------------------------------------------------------------
for my $db (qw(idle1 idle2))
{
	db_with_table($node, $db, 't', 10);
}
quick_ok('DROP DATABASE idle1', 'DROP DATABASE of an idle database with the extension');
quick_ok('CREATE DATABASE idle2copy TEMPLATE idle2',
	'CREATE DATABASE ... TEMPLATE an idle database with the extension');
quick_ok('DROP DATABASE idle2copy', 'DROP DATABASE of the copy');
for my $i (1 .. 10)
{
	$node->safe_psql('postgres', "CREATE DATABASE churn$i");
	$node->safe_psql("churn$i", 'CREATE EXTENSION migration_runner') if $i % 2;
	quick_ok("DROP DATABASE churn$i", "churn$i dropped while the launcher probes");
}
is($node->safe_psql('postgres', $LAUNCHER_SQL), $launcher,
	'the launcher survived databases dropped under its probes');

# --- a running migration ------------------------------------------------------------
# From here on the launcher does not poll: what follows must be woken.
$node->safe_psql('postgres', "ALTER SYSTEM SET migration_runner.poll_interval = '1h'");
$node->reload;
busy_database('busy1', 3000);
my $offset = -s $node->logfile;
quick_ok('DROP DATABASE busy1', 'DROP DATABASE of a database with a running migration');
ok( $node->log_contains(
		qr/stopping the scheduler and workers of database "busy1" for DROP DATABASE/, $offset),
	'the log says its workers were stopped');

busy_database('busy2', 1000);
quick_ok('ALTER DATABASE busy2 RENAME TO busy2r',
	'ALTER DATABASE ... RENAME TO of a database with a running migration');
my $tsdir = PostgreSQL::Test::Utils::tempdir();
$node->safe_psql('postgres', "CREATE TABLESPACE ts LOCATION '$tsdir'");
ok(db_poll_true($node, 'busy2r',
		"SELECT worker_pid IS NOT NULL FROM migrations WHERE name = 'busy2_v1'"),
	'the renamed database has a worker again');
quick_ok('ALTER DATABASE busy2r SET TABLESPACE ts',
	'ALTER DATABASE ... SET TABLESPACE of a database with a running migration');
is(db_wait_done($node, 'busy2r', 'busy2_v1'), 'completed',
	'its migration resumes and completes');
db_once_ok($node, 'busy2r', 't', 'busy2_v1', 1000);

busy_database('busy3', 1000);
quick_ok('CREATE DATABASE busy3copy TEMPLATE busy3',
	'CREATE DATABASE ... TEMPLATE a database with a running migration');
for my $db (qw(busy3 busy3copy))
{
	is(db_wait_done($node, $db, 'busy3_v1'), 'completed',
		"busy3_v1 completes in $db");
	db_once_ok($node, $db, 't', 'busy3_v1', 1000);
}

# --- not the owner --------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE ROLE mallory LOGIN CREATEDB');
my $pid = $node->safe_psql('keep',
	"SELECT worker_pid FROM migrations WHERE name = 'keep_v1'");
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE keep',
	extra_params => [ '-U', 'mallory' ]);
like($err, qr/must be owner of database keep/, 'mallory may not drop keep');
($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE keep RENAME TO kept',
	extra_params => [ '-U', 'mallory' ]);
like($err, qr/must be owner of database keep/, 'nor rename it');
is($node->safe_psql('keep', "SELECT status || ' ' || worker_pid FROM migrations WHERE name = 'keep_v1'"),
	"running $pid", 'the worker of keep was not stopped by them');
$node->safe_psql('keep', 'UPDATE gate SET hold = false');

is(db_wait_done($node, 'keep', 'keep_v1'), 'completed',
	'the migration of the other database completed meanwhile');
db_once_ok($node, 'keep', 't', 'keep_v1', 20000);
ok(!$node->log_contains(qr/still waiting for backend with PID/),
	'no backend was slow to absorb the ProcSignalBarrier');
log_has_no_crash($node, 0, 'ddl');
$node->stop;
done_testing();
