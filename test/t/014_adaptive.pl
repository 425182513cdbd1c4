# Adaptive batch size: with target_batch_time the runner resizes each batch
# so that batches take about that long.  The action sleeps 1 ms per key, so
# with a target of 200 ms the size that hits the target is about 200 keys.
# Starting far below (20) and far above (1000) it, the last full batches must
# be within +-30 % of 200 keys and of 200 ms.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_adaptive');
my $rows = 4000;
my $per_key_ms = 1;
my $target_ms = 200;
my $ideal = $target_ms / $per_key_ms;            # 200 keys
my ($lo, $hi) = (0.7 * $ideal, 1.3 * $ideal);    # tolerance: +-30 %

my %start = (grow => 20, shrink => 1000);
for my $t (sort keys %start)
{
	new_table($node, $t, $rows);
	# ids are contiguous, so $2 - $1 + 1 is the number of keys in the batch
	my $action =
	    'WITH s AS (SELECT pg_sleep(' . ($per_key_ms / 1000) . ' * ($2 - $1 + 1)))'
	  . " UPDATE $t SET n = n + 1 FROM s WHERE id BETWEEN \$1 AND \$2";
	$node->safe_psql('postgres',
		    "SELECT mig_define(name => 'adapt_${t}_v1', relation => '$t', action => "
		  . q_lit($action)
		  . ", batch_size => $start{$t}, target_batch_time => '${target_ms}ms')");
}
# both run at once, one worker each
$node->safe_psql('postgres',
	"SELECT mig_start('adapt_grow_v1'), mig_start('adapt_shrink_v1')");

for my $t (sort keys %start)
{
	my $name = "adapt_${t}_v1";
	is($node->safe_psql('postgres', "SELECT mig_wait('$name', '60s')"),
		'completed', "$name: completed");
	exactly_once_ok($node, $t, $name, $rows, $name);

	my $hist = $node->safe_psql('postgres', qq{
		SELECT batch || ':' || keys || ':' || round(duration_ms)
		  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
		 WHERE m.name = '$name' ORDER BY batch});
	my @b = map { [ split /:/ ] } split /\n/, $hist;
	note("$name batches (batch:keys:ms): " . join(' ', map { join(':', @$_) } @b));
	is($b[0][1], $start{$t}, "$name: the first batch has the defined size $start{$t}");

	# every step is bounded to x0.5 .. x1.2 (plus rounding down to two
	# significant digits)
	my $steps_ok = 1;
	for my $i (1 .. $#b - 1)
	{
		my ($prev, $cur) = ($b[ $i - 1 ][1], $b[$i][1]);
		$steps_ok = 0 if $cur > 1.2 * $prev + 1 || $cur < 0.5 * $prev * 0.9 - 1;
	}
	ok($steps_ok, "$name: each resize is within x0.5 .. x1.2");

	# the last six full batches (the very last one may be short: the end of
	# the table)
	my @last = @b[ -7 .. -2 ];
	ok(scalar(@b) >= 10, "$name: enough batches to converge (" . scalar(@b) . ")");
	my @bad = grep { $_->[1] < $lo || $_->[1] > $hi } @last;
	ok(!@bad,
		"$name: the last 6 full batches have $lo..$hi keys (200 +-30 %): "
		  . join(',', map { $_->[1] } @last));
	my @durations = sort { $a <=> $b } map { $_->[2] } @last;
	my $median = ($durations[2] + $durations[3]) / 2;
	ok($median >= 0.7 * $target_ms && $median <= 1.3 * $target_ms,
		"$name: their median duration ($median ms) is within 30 % of the target ($target_ms ms)");
	is(mig_row($node, $name, 'batch_size')->{batch_size},
		$start{$t}, "$name: the defined batch_size is unchanged");
}

log_has_no_crash($node, 0, 'adaptive');
$node->stop;
done_testing();
