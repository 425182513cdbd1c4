# Citus, per-shard runs under failure (issue 16):
#   b. kill -9 of a worker node in the middle of the run: mig_status says
#      the migration waits for that node, the other node's shards go on,
#      and once the node is started again the run completes, every row
#      changed exactly once;
#   c. kill -9 of the coordinator in the middle of the run: started again,
#      its launcher resumes the run, which completes, every row once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;
use CitusTest;

my ($coord, @workers) = citus_cluster_or_skip(tag => 'cr');

# 1,000 rows a shard, 20 batches of 50 each 20 ms apart: about 8 s a node
my $rows = 32000;

# the rows processed by the slices on $node_name, as the coordinator
# mirrors them
sub node_processed
{
	my ($name, $node_name) = @_;
	return citus_value($coord,
		'SELECT coalesce(sum(processed), 0) FROM mig_slices WHERE name = '
		  . q_lit($name) . ' AND node = ' . q_lit($node_name));
}

# --- b. kill -9 of a worker node -------------------------------------------

my ($w1, $w2) = @workers;
my $w2_name = citus_node_name($w2);
citus_users($coord, $rows, table => 'users_b');
my ($id_b) = citus_define($coord, 'crash_worker', 'users_b',
	batch_size => 50, batch_delay => '20ms');
$coord->safe_psql('postgres', "SELECT mig_start('crash_worker')");
ok( citus_poll($coord,
		"SELECT processed > 2000 FROM mig_status WHERE name = 'crash_worker'"),
	'b. the run made progress');
ok(crash_node($w2, 'kill9'), 'b. worker 2 killed with kill -9');
is( poll_value($coord,
		"SELECT waiting_for FROM mig_status WHERE name = 'crash_worker'"
		  . ' AND waiting_for IS NOT NULL'),
	"node $w2_name", 'b. mig_status: waiting_for names the node that is down');
my $w1_then = node_processed('crash_worker', citus_node_name($w1));
ok( citus_poll($coord,
		    "SELECT coalesce(sum(processed), 0) > $w1_then FROM mig_slices"
		  . " WHERE name = 'crash_worker' AND node = " . q_lit(citus_node_name($w1))),
	"b. worker 1's shards go on while worker 2 is down");
is($coord->safe_psql('postgres', "SELECT status FROM migrations WHERE name = 'crash_worker'"),
	'running', 'b. the migration did not fail');
$w2->start;
is($coord->safe_psql('postgres', "SELECT mig_wait('crash_worker', '5 min')"),
	'completed', 'b. worker 2 started again: the run completes');
citus_once_ok($coord, 'users_b', 'crash_worker', $rows, 'b. kill -9 of a worker');
is( join(',', map { citus_local_migrations($_, $id_b) =~ s/\|\d+//r } @workers),
	'completed,completed', 'b. every node-local migration completed');

# --- c. kill -9 of the coordinator ----------------------------------------

citus_users($coord, $rows, table => 'users_c');
citus_define($coord, 'crash_coord', 'users_c', batch_size => 50, batch_delay => '20ms');
$coord->safe_psql('postgres', "SELECT mig_start('crash_coord')");
ok( citus_poll($coord,
		"SELECT processed > 4000 FROM mig_status WHERE name = 'crash_coord'"),
	'c. the run made progress');
ok(crash_node($coord, 'kill9'), 'c. coordinator killed with kill -9');
$coord->start;
is(citus_wait_status($coord, 'crash_coord', 300), 'completed',
	'c. coordinator started again: the run completes');
citus_once_ok($coord, 'users_c', 'crash_coord', $rows, 'c. kill -9 of the coordinator');

log_has_no_crash($w1, 0, $w1->name);

done_testing();
