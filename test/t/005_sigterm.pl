# pg_terminate_backend of a worker: it ends between (or aborts the current)
# batch, the launcher starts a new one, and every row is changed exactly once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $rows = 10000;
my $node = mig_node('mrtap_sigterm');
new_table($node, 't', $rows);
define_migration($node, 'term_v1', 't', undef, batch_size => 100, slow => 0.01);
$node->safe_psql('postgres', "SELECT mig_start('term_v1')");

my %seen;
for my $k (10, 40)
{
	ok( poll_true(
			$node, "SELECT batches >= $k FROM migrations WHERE name = 'term_v1'"),
		"term_v1 reached $k batches");
	my $pid = wait_for_worker($node, 'term_v1') // 0;
	ok($pid, "worker of term_v1 is running (pid $pid)");
	ok(!$seen{$pid}, 'it is a new worker process') if %seen;
	$seen{$pid} = 1;
	is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"),
		't', 'pg_terminate_backend on the worker');
	ok(wait_pid_gone($node, $pid, 30), 'the terminated worker exits');
	my $s = mig_row($node, 'term_v1', qw(status processed));
	is($s->{status}, 'running',
		'the migration stays running after SIGTERM of its worker');
	consistent_ok($node, 't', 'term_v1', 'after SIGTERM');
}

is($node->safe_psql('postgres', "SELECT mig_wait('term_v1', '60s')"),
	'completed', 'the launcher resumes it and it completes');
exactly_once_ok($node, 't', 'term_v1', $rows, 'term_v1');
ok($node->safe_psql('postgres', "SELECT 1") eq '1', 'server alive');

log_has_no_crash($node, 0, 'sigterm');
$node->stop;
done_testing();
