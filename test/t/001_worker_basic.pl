# The background worker runs a started migration to completion with no client
# connected, shows itself in pg_stat_activity while it runs, and mig_wait
# reports the end.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_basic');

# --- a fast migration: started, then nobody waits in a session --------------
new_table($node, 'fast', 5000);
define_migration($node, 'fast_v1', 'fast',
	'UPDATE fast SET n = n + 1 WHERE id BETWEEN $1 AND $2',
	batch_size => 500);
is(mig_row($node, 'fast_v1', 'status')->{status},
	'pending', 'mig_define leaves the migration pending');

$node->safe_psql('postgres', "SELECT mig_start('fast_v1')");
# the session that started it is gone; only the worker can finish it
ok( poll_true(
		$node,
		"SELECT status = 'completed' FROM migrations WHERE name = 'fast_v1'"),
	'the worker completes a started migration with no client connected');
exactly_once_ok($node, 'fast', 'fast_v1', 5000, 'fast_v1');
my $r = mig_row($node, 'fast_v1',
	qw(scanned batches completed_at error cursor));
is($r->{scanned}, '5000', 'scanned = 5000');
cmp_ok($r->{batches}, '>=', 10, 'at least 10 batches of 500');
isnt($r->{completed_at}, '<null>', 'completed_at is set');
is($r->{error}, '<null>', 'no error');
ok($node->safe_psql('postgres', "SELECT mig_has_run('fast_v1')") eq 't',
	'mig_has_run is true');

# --- a slow migration: the worker is visible while it runs -----------------
new_table($node, 'slow', 3000);
define_migration($node, 'slow_v1', 'slow', undef,
	batch_size => 50, slow => 0.02);
$node->safe_psql('postgres', "SELECT mig_start('slow_v1')");

my $pid = wait_for_worker($node, 'slow_v1');
ok(defined $pid, 'the worker of a running migration is in pg_stat_activity');
$pid //= 0;
my $act = $node->safe_psql('postgres',
	"SELECT backend_type || '|' || coalesce(application_name, '') || '|' || datname || '|'"
	  . " || (usename = current_user)"
	  . " FROM pg_stat_activity WHERE pid = $pid");
note("worker row: $act");
like($act, qr/migration_runner/,
	'its backend_type or application_name names migration_runner');
like($act, qr/\|postgres\|true$/,
	'it is connected to the configured database as the owner (postgres)');
is( $node->safe_psql('postgres',
		"SELECT status FROM mig_status WHERE name = 'slow_v1'"),
	'running',
	'mig_status says running meanwhile');
is( $node->safe_psql('postgres',
		"SELECT worker_pid FROM mig_status WHERE name = 'slow_v1'"),
	$pid,
	'mig_status shows the worker pid');

is($node->safe_psql('postgres', "SELECT mig_wait('slow_v1', '30s')"),
	'completed', "mig_wait(name, '30s') returns completed");
exactly_once_ok($node, 'slow', 'slow_v1', 3000, 'slow_v1');
ok(wait_pid_gone($node, $pid, 30), 'the worker exits once it is done');
is( $node->safe_psql('postgres',
		"SELECT mig_wait('slow_v1', '1s')"),
	'completed', 'mig_wait on a completed migration returns at once');

log_has_no_crash($node, 0, 'basic');
$node->stop;
done_testing();
