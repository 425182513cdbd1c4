# Citus, per-shard runs (issue 16):
#   a. the seed's users table, hash-distributed by id in 32 shards, keyed by
#      id: mig_define records per_shard, the run shows one slice per shard
#      (shard_id and the node that holds it) while it runs, mig_wait returns
#      'completed', every row is changed exactly once, and the node-local
#      migrations (one per shard, in each worker's own catalog) completed;
#   h. pause, resume and cancel from the coordinator, mig_wait, and the
#      NOTIFY of the completion to a session that LISTENs on the coordinator.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time usleep);
use MigTest;
use CitusTest;

my ($coord, @workers) = citus_cluster_or_skip(tag => 'sh');
my @worker_names = map { citus_node_name($_) } @workers;

my $rows = 32000;    # 1,000 a shard: 20 batches of 50

# --- a. 32 shards, every row once ----------------------------------------

my $listener = $coord->background_psql('postgres');
$listener->set_query_timer_restart();
$listener->query_safe('LISTEN migration_runner');

citus_users($coord, $rows);
my ($id, $notice) = citus_define($coord, 'shards_v1', 'users',
	batch_size => 50, batch_delay => '10ms');
like($notice, qr/will run shard by shard/, 'a. mig_define says the run goes shard by shard');
my $r = mig_row($coord, 'shards_v1',
	qw(distribution distribution_column per_shard colocation_id));
is("$r->{distribution}|$r->{distribution_column}|$r->{per_shard}",
	'hash|id|true', 'a. distribution hash, column id, per_shard');
is( $r->{colocation_id},
	citus_value($coord,
		"SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'users'::regclass"),
	'a. the colocation is recorded');

$coord->safe_psql('postgres', "SELECT mig_start('shards_v1')");
# one slice per shard, each on the node that holds it, while it runs
my $placements = citus_shard_nodes($coord, 'users');
ok( citus_poll($coord, q{
		SELECT count(*) = 32 FROM mig_slices
		 WHERE name = 'shards_v1' AND shard_id IS NOT NULL AND node IS NOT NULL}),
	'a. mig_slices shows 32 slices with a shard and a node');
is( $coord->safe_psql('postgres', q{
		SELECT shard_id || '|' || node FROM mig_slices
		 WHERE name = 'shards_v1' ORDER BY shard_id}),
	$placements, 'a. each slice is the shard on the node that holds it');
is( $coord->safe_psql('postgres', q{
		SELECT string_agg(DISTINCT node, ',' ORDER BY node) FROM mig_slices
		 WHERE name = 'shards_v1'}),
	join(',', sort @worker_names), 'a. the slices run on both workers');
is($coord->safe_psql('postgres', "SELECT status FROM mig_status WHERE name = 'shards_v1'"),
	'running', 'a. still running when the slices were looked at');

is($coord->safe_psql('postgres', "SELECT mig_wait('shards_v1', '5 min')"),
	'completed', 'a. mig_wait returns completed');
citus_once_ok($coord, 'users', 'shards_v1', $rows, 'a. 32 shards');
my $total = 0;
for my $w (@workers)
{
	my $node_name = citus_node_name($w);
	my @shards = map { (split /\|/)[0] }
	  grep { /\|\Q$node_name\E$/ } split /\n/, $placements;
	my $local = citus_local_migrations($w, $id);
	is($local, 'completed|' . scalar(@shards),
		'a. ' . $w->name . ': one node-local migration a shard it holds, all completed');
	$total += ($local =~ /\|(\d+)$/)[0] // 0;
	is( $w->safe_psql('postgres',
			"SELECT coalesce(sum(processed), 0) FROM migrations WHERE coordinator_id = $id"),
		citus_value($coord,
			"SELECT count(*) FROM users WHERE n = 1 AND "
			  . "get_shard_id_for_distribution_column('users', id) = ANY ('{"
			  . join(',', @shards) . "}')"),
		'a. ' . $w->name . ': its migrations processed the rows of its shards');
}
is($total, 32, 'a. 32 node-local migrations in all, one per shard');

# NOTIFY: the completion reached the listener on the coordinator
my @got;
my $deadline = time() + $WAIT_SECS;
while (time() < $deadline)
{
	for my $line (split /\n/, $listener->query_safe('SELECT 1'))
	{
		push @got, decode_json($1)
		  if $line =~ /^Asynchronous notification "migration_runner" with payload "(.*)" received/;
	}
	last if grep { $_->{name} eq 'shards_v1' && $_->{new_status} eq 'completed' } @got;
	usleep(50_000);
}
my ($done) = grep { $_->{name} eq 'shards_v1' && $_->{new_status} eq 'completed' } @got;
ok($done, 'h. LISTEN on the coordinator: the completion is notified');
is($done->{processed} // '', $rows, 'h. the notification says every row was processed');
$listener->quit;

# --- h. pause, resume and cancel from the coordinator ---------------------

citus_users($coord, $rows, table => 'users_pause');
citus_define($coord, 'shards_pause', 'users_pause', batch_size => 50, batch_delay => '10ms');
$coord->safe_psql('postgres', "SELECT mig_start('shards_pause')");
ok(citus_poll($coord, "SELECT processed > 2000 FROM mig_status WHERE name = 'shards_pause'"),
	'h. the run made progress');
$coord->safe_psql('postgres', "SELECT mig_pause('shards_pause')");
ok(citus_poll($coord, "SELECT status = 'paused' FROM mig_status WHERE name = 'shards_pause'"),
	'h. paused');
ok(citus_poll($coord, "SELECT worker_pid IS NULL FROM mig_status WHERE name = 'shards_pause'"),
	'h. the runner left');
my $changed = citus_value($coord, 'SELECT count(*) FROM users_pause WHERE n = 1');
ok($changed > 0 && $changed < $rows, "h. paused mid-run ($changed rows changed)");
is(citus_value($coord, 'SELECT count(*) FROM users_pause WHERE n > 1'), '0',
	'h. paused: no row changed twice');
is(citus_value($coord, "SELECT processed FROM mig_status WHERE name = 'shards_pause'"),
	$changed, 'h. paused: mig_status counts exactly what the nodes committed');
is(citus_value($coord, 'SELECT count(*) FROM users_pause WHERE n = 1'), $changed,
	'h. paused: nothing changes while paused');
$coord->safe_psql('postgres', "SELECT mig_resume('shards_pause')");
is($coord->safe_psql('postgres', "SELECT mig_wait('shards_pause', '5 min')"),
	'completed', 'h. resumed, mig_wait returns completed');
citus_once_ok($coord, 'users_pause', 'shards_pause', $rows, 'h. paused and resumed');

citus_users($coord, $rows, table => 'users_cancel');
citus_define($coord, 'shards_cancel', 'users_cancel', batch_size => 50, batch_delay => '10ms');
$coord->safe_psql('postgres', "SELECT mig_start('shards_cancel')");
ok(citus_poll($coord, "SELECT processed > 2000 FROM mig_status WHERE name = 'shards_cancel'"),
	'h. the run to cancel made progress');
$coord->safe_psql('postgres', "SELECT mig_cancel('shards_cancel')");
is($coord->safe_psql('postgres', "SELECT mig_wait('shards_cancel', '5 min')"),
	'cancelled', 'h. mig_wait returns cancelled');
ok(citus_poll($coord, "SELECT worker_pid IS NULL FROM mig_status WHERE name = 'shards_cancel'"),
	'h. the runner of the cancelled migration left');
$changed = citus_value($coord, 'SELECT count(*) FROM users_cancel WHERE n = 1');
ok($changed > 0 && $changed < $rows, "h. cancelled mid-run ($changed rows changed)");
is(citus_value($coord, 'SELECT count(*) FROM users_cancel WHERE n > 1'), '0',
	'h. cancelled: no row changed twice');
my $cancel_id = citus_value($coord, "SELECT id FROM migrations WHERE name = 'shards_cancel'");
my $completed_locals = 0;
for my $w (@workers)
{
	$completed_locals += $w->safe_psql('postgres',
		"SELECT count(*) FROM migrations WHERE coordinator_id = $cancel_id AND status = 'completed'");
}
cmp_ok($completed_locals, '<', 32, 'h. cancelled: not every shard completed on its node');

log_has_no_crash($_, 0, $_->name) for ($coord, @workers);

done_testing();
