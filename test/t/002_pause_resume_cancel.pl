# Pause, resume and cancel a migration while its worker runs it.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use MigTest;

my $node = mig_node('mrtap_pause');

# A short migration run to completion: proof that the launcher has woken up
# and looked at the catalog since the moment we call it.
my $n_other = 0;
sub run_other_migration
{
	$n_other++;
	my $t = "other$n_other";
	new_table($node, $t, 200);
	define_migration($node, "${t}_v1", $t,
		"UPDATE $t SET n = n + 1 WHERE id BETWEEN \$1 AND \$2",
		batch_size => 50);
	$node->safe_psql('postgres', "SELECT mig_start('${t}_v1')");
	return $node->safe_psql('postgres', "SELECT mig_wait('${t}_v1', '30s')");
}

# --- pause and resume -------------------------------------------------------
new_table($node, 'p', 4000);
define_migration($node, 'pause_v1', 'p', undef, batch_size => 50, slow => 0.02);
$node->safe_psql('postgres', "SELECT mig_start('pause_v1')");
ok( poll_true(
		$node, "SELECT batches >= 5 FROM migrations WHERE name = 'pause_v1'"),
	'pause_v1 has done 5 batches');
my $pid = wait_for_worker($node, 'pause_v1') // 0;
ok($pid, "worker of pause_v1 is running (pid $pid)");

$node->safe_psql('postgres', "SELECT mig_pause('pause_v1')");
is(mig_row($node, 'pause_v1', 'status')->{status}, 'paused',
	'status is paused after mig_pause');
ok(wait_pid_gone($node, $pid, 30), 'the worker of a paused migration exits');
my $before = mig_row($node, 'pause_v1', qw(batches processed cursor));
cmp_ok($before->{processed}, '<', 4000, 'paused before the end');

my $t0 = time();
is($node->safe_psql('postgres', "SELECT mig_wait('pause_v1', '300ms')"),
	'paused', 'mig_wait with a short timeout on a paused migration returns paused');
cmp_ok(time() - $t0, '>=', 0.25, '... after waiting for the timeout');

is(run_other_migration(), 'completed',
	'another migration completes meanwhile (the launcher has run)');
my $after = mig_row($node, 'pause_v1', qw(status batches processed cursor));
is($after->{status}, 'paused', 'still paused');
is($after->{batches}, $before->{batches}, 'batches did not increase while paused');
is($after->{processed}, $before->{processed}, 'processed did not change while paused');
is($after->{cursor}, $before->{cursor}, 'cursor did not move while paused');
is($node->safe_psql('postgres', worker_pid_sql('pause_v1')),
	'', 'no worker for the paused migration');
is( $node->safe_psql('postgres',
		'SELECT count(*) FILTER (WHERE n = 1) || \'/\' || count(*) FILTER (WHERE n > 1) FROM p'),
	"$before->{processed}/0",
	'exactly the processed rows were changed, none twice');

$node->safe_psql('postgres', "SELECT mig_resume('pause_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('pause_v1', '60s')"),
	'completed', 'after mig_resume the worker completes it');
exactly_once_ok($node, 'p', 'pause_v1', 4000, 'pause_v1');

# --- cancel -----------------------------------------------------------------
new_table($node, 'c', 4000);
define_migration($node, 'cancel_v1', 'c', undef, batch_size => 50, slow => 0.02);
$node->safe_psql('postgres', "SELECT mig_start('cancel_v1')");
ok( poll_true(
		$node, "SELECT batches >= 5 FROM migrations WHERE name = 'cancel_v1'"),
	'cancel_v1 has done 5 batches');
$pid = wait_for_worker($node, 'cancel_v1') // 0;
ok($pid, "worker of cancel_v1 is running (pid $pid)");
$node->safe_psql('postgres', "SELECT mig_cancel('cancel_v1')");
is(mig_row($node, 'cancel_v1', 'status')->{status}, 'cancelled',
	'status is cancelled after mig_cancel');
ok(wait_pid_gone($node, $pid, 30), 'the worker of a cancelled migration exits');
$before = mig_row($node, 'cancel_v1', qw(batches processed));
is($node->safe_psql('postgres', "SELECT mig_wait('cancel_v1', '10s')"),
	'cancelled', 'mig_wait returns cancelled');
is(run_other_migration(), 'completed', 'another migration completes meanwhile');
$after = mig_row($node, 'cancel_v1', qw(status batches processed completed_at));
is($after->{status}, 'cancelled', 'still cancelled');
is($after->{batches}, $before->{batches}, 'batches did not increase after cancel');
is($after->{completed_at}, '<null>', 'a cancelled migration has no completed_at');
cmp_ok($after->{processed}, '<', 4000, 'cancelled before the end');
is( $node->safe_psql('postgres',
		'SELECT count(*) FILTER (WHERE n = 1) || \'/\' || count(*) FILTER (WHERE n > 1) FROM c'),
	"$after->{processed}/0",
	'exactly the processed rows were changed, none twice');

log_has_no_crash($node, 0, 'pause/cancel');
$node->stop;
done_testing();
