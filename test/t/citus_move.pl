# Citus, per-shard runs while shards move (issue 16): a shard in the middle
# of its run is moved to the other worker (citus_move_shard_placement, with
# shard_transfer_mode 'force_logical' and then 'block_writes'), or split in
# two (citus_split_shard_by_split_points).  The run follows the shard and
# completes; every row is changed exactly once.
#
# The shard to move is made slow (its rows sleep 5 ms each in the action,
# about 5 s for the shard) so that it is still in the middle of its run
# when the move or split cuts over, and the node-local migrations show it:
# the one on the old node stopped ('cancelled', as a moved node-local
# migration ends) after some of the shard's rows, and the new placements'
# migrations did the rest, and the coordinator's action_ms counts both.
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

my $rows = 32000;

# n counts the changes; the rows with delay > 0 sleep that long each
sub slow_action
{
	my ($t) = @_;
	return "UPDATE $t SET n = n + 1, created_at = inserted_at, updated_at = inserted_at "
	  . 'WHERE id BETWEEN $1 AND $2 AND (delay = 0 OR (SELECT true FROM pg_sleep(delay)))';
}

# "status|processed" of the node-local migrations of $shard of migration
# $id on $worker
sub local_of
{
	my ($worker, $id, $shard) = @_;
	return $worker->safe_psql('postgres',
		"SELECT status || '|' || processed FROM migrations"
		  . " WHERE coordinator_id = $id AND shard_id = $shard");
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
	my $t = $c->{table};
	citus_users($coord, $rows, table => $t);
	$coord->safe_psql('postgres',
		"ALTER TABLE $t ADD COLUMN delay float8 NOT NULL DEFAULT 0");
	# the slow shard: the first one of the table
	my ($shard, $src) = split /\|/, (split /\n/, citus_shard_nodes($coord, $t))[0];
	my ($dst) = grep { $_ ne $src } keys %by_name;
	# (a distributed UPDATE may not call a volatile function in WHERE)
	my $ids = citus_value($coord,
		"SELECT string_agg(id::text, ',') FROM $t"
		  . " WHERE get_shard_id_for_distribution_column('$t', id) = $shard");
	my $shard_rows = $coord->safe_psql('postgres',
		"UPDATE $t SET delay = 0.005 WHERE id = ANY ('{$ids}'::bigint[]) RETURNING 1")
	  =~ tr/\n// + 1;

	# the placements an earlier case left to be dropped later: gone now
	$coord->safe_psql('postgres', 'CALL citus_cleanup_orphaned_resources()');
	my ($id) = citus_define($coord, $c->{name}, $t,
		action => slow_action($t), batch_size => 20);
	$coord->safe_psql('postgres', 'SELECT mig_start(' . q_lit($c->{name}) . ')');
	ok( citus_poll($coord,
			'SELECT processed BETWEEN 100 AND ' . ($shard_rows - 400)
			  . ' FROM mig_slices WHERE name = ' . q_lit($c->{name})
			  . " AND shard_id = $shard"),
		"$c->{label}: shard $shard ($shard_rows rows) is in the middle of its run");

	my ($src_host, $src_port) = $src =~ /^(.*):(\d+)$/;
	my ($dst_host, $dst_port) = $dst =~ /^(.*):(\d+)$/;
	my @children;
	if ($c->{op} eq 'move')
	{
		$coord->safe_psql('postgres',
			"SELECT citus_move_shard_placement($shard, "
			  . q_lit($src_host) . ", $src_port, "
			  . q_lit($dst_host) . ", $dst_port, "
			  . "shard_transfer_mode => '$c->{mode}')");
		is( citus_value($coord,
				"SELECT nodename || ':' || nodeport FROM pg_dist_placement p"
				  . " JOIN pg_dist_node n USING (groupid) WHERE p.shardid = $shard"),
			$dst, "$c->{label}: shard $shard moved to the other worker");
	}
	else
	{
		# split at the middle of the shard's hash range: the lower half
		# stays, the upper half goes to the other worker
		my $point = citus_value($coord,
			"SELECT ((shardminvalue::bigint + shardmaxvalue::bigint) / 2)::text"
			  . " FROM pg_dist_shard WHERE shardid = $shard");
		my ($src_id, $dst_id) = map {
			my ($h, $p) = /^(.*):(\d+)$/;
			citus_value($coord, 'SELECT nodeid FROM pg_dist_node WHERE nodename = '
				  . q_lit($h) . " AND nodeport = $p")
		} ($src, $dst);
		my $before = citus_value($coord,
			"SELECT coalesce(max(shardid), 0) FROM pg_dist_shard WHERE logicalrelid = '$t'::regclass");
		$coord->safe_psql('postgres',
			"SELECT citus_split_shard_by_split_points($shard, ARRAY['$point'], "
			  . "ARRAY[$src_id, $dst_id], shard_transfer_mode => '$c->{mode}')");
		is( citus_value($coord,
				"SELECT count(*) FILTER (WHERE shardid = $shard) || '|' || count(*)"
				  . " FROM pg_dist_shard WHERE logicalrelid = '$t'::regclass"),
			'0|33', "$c->{label}: shard $shard split in two");
		@children = split /\n/, citus_value($coord,
			"SELECT shardid FROM pg_dist_shard WHERE logicalrelid = '$t'::regclass"
			  . " AND shardid > $before ORDER BY shardid");
	}
	is($coord->safe_psql('postgres', 'SELECT mig_wait(' . q_lit($c->{name}) . ", '5 min')"),
		'completed', "$c->{label}: the run completes");
	citus_once_ok($coord, $t, $c->{name}, $rows, $c->{label});
	# for a failure: the rows left unchanged, as the old placement (not
	# dropped yet: Citus drops it later) has them
	my $lost = citus_value($coord, "SELECT string_agg(id::text, ',') FROM $t WHERE n = 0");
	if ($lost ne '')
	{
		my ($ret, $out, $err) = $by_name{$src}->psql('postgres',
			"SET citus.override_table_visibility = off; "
			  . "SELECT string_agg(DISTINCT n::text, ',') FROM $t\_$shard WHERE id IN ($lost)");
		diag("$c->{label}: on the old placement $t\_$shard, the unchanged rows have n = "
			  . "$out $err");
	}

	# the old placement's migration stopped in the middle; the new
	# placements did the rest, so the shard's rows were split between them
	note("$c->{label}: node-local migrations of shard $shard and its children "
		  . '(node|id|shard|status|processed|batches|cursor):');
	for my $w (@workers)
	{
		note($w->safe_psql('postgres',
			"SELECT '" . $w->name . "|' || id || '|' || shard_id || '|' || status || '|' || processed"
			  . " || '|' || batches || '|' || coalesce(cursor::text, '-') FROM migrations"
			  . " WHERE coordinator_id = $id AND (shard_id = $shard OR shard_id IN ("
			  . join(',', @children, 0) . ')) ORDER BY id'));
	}
	my ($old_status, $old_done) = split /\|/, local_of($by_name{$src}, $id, $shard);
	is($old_status, 'cancelled',
		"$c->{label}: the migration of the old placement stopped when the shard left");
	ok($old_done > 0 && $old_done < $shard_rows,
		"$c->{label}: it had done part of the shard ($old_done of $shard_rows rows)");
	my $rest = 0;
	my @new =
	  $c->{op} eq 'move'
	  ? ([ $by_name{$dst}, $shard ])
	  : map { my $s = $_; map { [ $_, $s ] } @workers } @children;
	for my $n (@new)
	{
		my $l = local_of(@$n[0], $id, $n->[1]);
		next if $l eq '';
		like($l, qr/^completed\|/,
			"$c->{label}: shard $n->[1] on " . $n->[0]->name . ' completed');
		$rest += (split /\|/, $l)[1];
	}
	is($old_done + $rest, $shard_rows,
		"$c->{label}: old and new placements together did each row of the shard once");

	# the coordinator's time split counts every placement's batches, also
	# those of the placement the shard left (the slow shard's rows sleep
	# 5 ms each: a second or more of action time on the old node)
	my $coord_ms = citus_value($coord,
		"SELECT round(action_ms) FROM migrations WHERE id = $id");
	my $nodes_ms = 0;
	$nodes_ms += citus_value($_,
		"SELECT round(coalesce(sum(action_ms), 0)) FROM migrations WHERE coordinator_id = $id")
	  for @workers;
	cmp_ok(abs($coord_ms - $nodes_ms), '<=', 50 + $nodes_ms / 50,
		"$c->{label}: the migration's action_ms ($coord_ms) is the nodes' sum ($nodes_ms)");
}

log_has_no_crash($_, 0, $_->name) for ($coord, @workers);

done_testing();
