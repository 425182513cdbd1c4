# Citus, per-shard runs while shards move (issue 16): a shard in the middle
# of its run is moved to the other worker (citus_move_shard_placement, with
# shard_transfer_mode 'force_logical' and then 'block_writes'), or split in
# two (citus_split_shard_by_split_points).  The run follows the shard and
# completes; every row is changed exactly once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;
use CitusTest;

my ($coord, @workers) = citus_cluster_or_skip(tag => 'mv');
my %by_name = map { citus_node_name($_) => $_ } @workers;

# 1,000 rows a shard, 50 batches of 20 each 20 ms apart: a shard takes
# about a second, long enough to move it in the middle of its run
my $rows = 32000;

# Wait until a slice of $name is in the middle of its shard; its
# "shard_id|node|processed".
sub shard_in_progress
{
	my ($name) = @_;
	return poll_value($coord, q{
		SELECT shard_id || '|' || node || '|' || processed FROM mig_slices
		 WHERE name = } . q_lit($name) . q{ AND status = 'running'
		   AND processed BETWEEN 100 AND 500
		 ORDER BY shard_id LIMIT 1});
}

my @cases = (
	{ label => 'd. move, force_logical', name => 'move_logical', table => 'users_ml',
	  op => 'move', mode => 'force_logical' },
	{ label => 'd. move, block_writes', name => 'move_block', table => 'users_mb',
	  op => 'move', mode => 'block_writes' },
	{ label => 'd. split', name => 'split', table => 'users_sp',
	  op => 'split', mode => 'block_writes' });

for my $c (@cases)
{
	citus_users($coord, $rows, table => $c->{table});
	my ($id) = citus_define($coord, $c->{name}, $c->{table},
		batch_size => 20, batch_delay => '20ms');
	$coord->safe_psql('postgres', 'SELECT mig_start(' . q_lit($c->{name}) . ')');
	my $at = shard_in_progress($c->{name});
	ok(defined $at, "$c->{label}: a shard is in the middle of its run");
	my ($shard, $src, $done) = split /\|/, $at // '0||0';
	my ($dst) = grep { $_ ne $src } keys %by_name;
	my ($src_host, $src_port) = $src =~ /^(.*):(\d+)$/;
	my ($dst_host, $dst_port) = $dst =~ /^(.*):(\d+)$/;
	if ($c->{op} eq 'move')
	{
		$coord->safe_psql('postgres',
			"SELECT citus_move_shard_placement($shard, "
			  . q_lit($src_host) . ", $src_port, "
			  . q_lit($dst_host) . ", $dst_port, "
			  . "shard_transfer_mode => '$c->{mode}')");
		is(citus_value($coord, "SELECT nodename || ':' || nodeport FROM pg_dist_placement p"
			  . " JOIN pg_dist_node n USING (groupid) WHERE p.shardid = $shard"),
			$dst, "$c->{label}: shard $shard moved from $src to $dst ($done rows done before)");
	}
	else
	{
		# split at the middle of the shard's hash range, the lower half
		# staying, the upper half going to the other node
		my $point = citus_value($coord,
			"SELECT ((shardminvalue::bigint + shardmaxvalue::bigint) / 2)::text"
			  . " FROM pg_dist_shard WHERE shardid = $shard");
		my $src_id = citus_value($coord,
			"SELECT nodeid FROM pg_dist_node WHERE nodename = " . q_lit($src_host)
			  . " AND nodeport = $src_port");
		my $dst_id = citus_value($coord,
			"SELECT nodeid FROM pg_dist_node WHERE nodename = " . q_lit($dst_host)
			  . " AND nodeport = $dst_port");
		$coord->safe_psql('postgres',
			"SELECT citus_split_shard_by_split_points($shard, ARRAY['$point'], "
			  . "ARRAY[$src_id, $dst_id], shard_transfer_mode => '$c->{mode}')");
		is(citus_value($coord, "SELECT count(*) FROM pg_dist_shard WHERE shardid = $shard"
			  . " OR logicalrelid = '$c->{table}'::regclass"),
			'33', "$c->{label}: shard $shard split in two ($done rows done before)");
	}
	is($coord->safe_psql('postgres', 'SELECT mig_wait(' . q_lit($c->{name}) . ", '5 min')"),
		'completed', "$c->{label}: the run completes");
	citus_once_ok($coord, $c->{table}, $c->{name}, $rows, $c->{label});
}

log_has_no_crash($_, 0, $_->name) for ($coord, @workers);

done_testing();
