# Crash the server (kill -9 of the postmaster, immediate stop) at several
# points of a running migration: after each restart the launcher resumes it,
# and in the end every row was changed exactly once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $rows  = 30000;
my $batch = 100;
my $total = $rows / $batch;

my $node = mig_node('mrtap_crash');
new_table($node, 't', $rows);
# about 10 ms per batch: 5 ms of batch_delay and 5 ms of sleep in the action
define_migration($node, 'crash_v1', 't', undef,
	batch_size  => $batch,
	batch_delay => '5ms',
	slow        => 0.005);
$node->safe_psql('postgres', "SELECT mig_start('crash_v1')");

my @points = (
	[ 1,                   'kill9' ],
	[ int($total * 0.3),   'kill9' ],
	[ int($total * 0.6),   'kill9' ],
	[ int($total * 0.8),   'immediate' ]);

my $last = -1;
for my $p (@points)
{
	my ($k, $how) = @$p;
	ok( poll_true(
			$node,
			"SELECT batches >= $k FROM migrations WHERE name = 'crash_v1'"),
		"crash_v1 reached $k batches");
	my $r = mig_row($node, 'crash_v1', qw(status batches processed));
	is($r->{status}, 'running', "still running at $r->{batches} batches");
	cmp_ok($r->{batches}, '>', $last, 'progress since the last restart');
	$last = $r->{batches};
	note("crashing ($how) at batches=$r->{batches} processed=$r->{processed}");
	ok(crash_restart($node, $how), "$how and restart at ~$k batches");

	# what survived the crash is consistent: the committed progress matches
	# the committed data change
	my $s = mig_row($node, 'crash_v1', qw(status processed scanned));
	consistent_ok($node, 't', 'crash_v1', "after the $how");
	like($s->{status}, qr/^(running|completed)$/,
		"after the $how the migration is $s->{status}");
}

is($node->safe_psql('postgres', "SELECT mig_wait('crash_v1', '60s')"),
	'completed', 'crash_v1 completes after the crashes');
exactly_once_ok($node, 't', 'crash_v1', $rows, 'crash_v1');
my $r = mig_row($node, 'crash_v1', qw(scanned batches error));
is($r->{scanned}, $rows, "scanned = $rows");
cmp_ok($r->{batches}, '>=', $total, "batches >= $total");
is($r->{error}, '<null>', 'no error recorded');

$node->stop;
done_testing();
