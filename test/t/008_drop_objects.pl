# DROP EXTENSION, and DROP TABLE of the target, while a worker runs: the
# worker stops cleanly, the server and the launcher stay alive.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_drop');

sub psql_within
{
	my ($sql, $secs) = @_;
	my $timed_out = 0;
	my ($ret, $out, $err) = $node->psql('postgres', $sql,
		timeout => $secs, timed_out => \$timed_out);
	diag("$sql: $err") if $ret;
	return (!$timed_out && $ret == 0);
}

sub start_slow
{
	my ($table, $name, $rows) = @_;
	new_table($node, $table, $rows);
	define_migration($node, $name, $table, undef, batch_size => 50, slow => 0.02);
	$node->safe_psql('postgres', "SELECT mig_start('$name')");
	ok( poll_true(
			$node, "SELECT batches >= 3 FROM migrations WHERE name = '$name'"),
		"$name has done 3 batches");
	my $pid = wait_for_worker($node, $name) // 0;
	ok($pid, "$name has a worker (pid $pid)");
	return $pid;
}

sub quick_migration_completes
{
	my ($table, $label) = @_;
	new_table($node, $table, 300);
	define_migration($node, "${table}_v1", $table,
		"UPDATE $table SET n = n + 1 WHERE id BETWEEN \$1 AND \$2",
		batch_size => 100);
	$node->safe_psql('postgres', "SELECT mig_start('${table}_v1')");
	is($node->safe_psql('postgres', "SELECT mig_wait('${table}_v1', '60s')"),
		'completed', "$label: a new migration completes (launcher alive)");
	exactly_once_ok($node, $table, "${table}_v1", 300, "${table}_v1");
	return;
}

# --- DROP EXTENSION while a worker runs -------------------------------------
my $pid = start_slow('d', 'd_v1', 4000);
ok(psql_within('DROP EXTENSION migration_runner', 30),
	'DROP EXTENSION succeeds while the worker runs');
ok(wait_pid_gone($node, $pid, 30), 'the worker stops after DROP EXTENSION');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server is alive');
is($node->safe_psql('postgres', 'SELECT count(*) FROM d WHERE n > 1'),
	'0', 'no row of d was changed twice');
ok( poll_true(
		$node,
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type ILIKE '%migration_runner%' OR application_name ILIKE '%migration_runner%'",
		30),
	'a migration_runner launcher is (still or again) connected');

$node->safe_psql('postgres', 'CREATE EXTENSION migration_runner');
quick_migration_completes('e', 'after DROP/CREATE EXTENSION');

# --- DROP TABLE of the target while a worker runs ---------------------------
$pid = start_slow('dt', 'dt_v1', 4000);
ok(psql_within('DROP TABLE dt', 30), 'DROP TABLE of the target succeeds');
ok(wait_pid_gone($node, $pid, 30), 'the worker stops after DROP TABLE');
ok( poll_true(
		$node, "SELECT status <> 'running' FROM migrations WHERE name = 'dt_v1'", 30),
	'the migration leaves running');
my $r = mig_row($node, 'dt_v1', qw(status error));
note("status $r->{status}, error: $r->{error}");
is($r->{status}, 'failed', 'the migration of a dropped table is failed');
isnt($r->{error}, '<null>', 'with an error message');
quick_migration_completes('e2', 'after DROP TABLE');

log_has_no_crash($node, 0, 'drop objects');
$node->stop;
done_testing();
