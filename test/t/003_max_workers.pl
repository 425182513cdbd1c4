# With migration_runner.max_workers = 1, three started migrations all
# complete, one after the other, never two workers at once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use MigTest;

my $node = mig_node('mrtap_maxw', conf => "migration_runner.max_workers = 1\n");

# Every batch records, inside its transaction, a time window in which it was
# certainly running (20 ms of sleep).  Two migrations run at once would
# overlap in these windows.
$node->safe_psql('postgres', q{
	CREATE TABLE probe_log (mig text, pid int, t0 timestamptz, t1 timestamptz);
	CREATE FUNCTION probe(m text) RETURNS int LANGUAGE plpgsql AS $$
	DECLARE t0 timestamptz := clock_timestamp();
	BEGIN
		PERFORM pg_sleep(0.02);
		INSERT INTO probe_log VALUES (m, pg_backend_pid(), t0, clock_timestamp());
		RETURN 1;
	END $$;
});

my @migs = qw(a b c);
for my $m (@migs)
{
	new_table($node, $m, 1000);
	define_migration($node, "${m}_v1", $m,
		"WITH s AS (SELECT probe('$m') AS x) UPDATE $m SET n = n + 1 FROM s WHERE id BETWEEN \$1 AND \$2",
		batch_size => 50);
}
$node->safe_psql('postgres',
	join('; ', map { "SELECT mig_start('${_}_v1')" } @migs));

# Sample the connected workers of the three migrations until all are done.
my $names = join(', ', map { "'${_}_v1'" } @migs);
my $max_seen = 0;
my $done = 0;
my $deadline = time() + $WAIT_SECS;
while (time() < $deadline)
{
	my $out = $node->safe_psql('postgres', qq{
		SELECT (SELECT count(DISTINCT a.pid) FROM pg_stat_activity a
				  JOIN migrations m ON m.worker_pid = a.pid
				 WHERE m.name IN ($names)) || '|' ||
			   (SELECT count(*) FROM migrations
				 WHERE name IN ($names) AND status NOT IN ('running', 'pending'))});
	my ($workers, $finished) = split /\|/, $out;
	$max_seen = $workers if $workers > $max_seen;
	if ($finished == 3) { $done = 1; last; }
	usleep(20_000);
}
ok($done, 'all three migrations reached an end state');
cmp_ok($max_seen, '<=', 1, 'never more than one worker seen in pg_stat_activity');

for my $m (@migs)
{
	is($node->safe_psql('postgres', "SELECT mig_wait('${m}_v1', '10s')"),
		'completed', "${m}_v1 completed");
	exactly_once_ok($node, $m, "${m}_v1", 1000, "${m}_v1");
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM probe_log WHERE mig = '$m'"),
		'20', "${m}_v1 committed 20 batches, each once");
}

is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM probe_log x JOIN probe_log y
	    ON x.mig < y.mig AND tstzrange(x.t0, x.t1) && tstzrange(y.t0, y.t1)}),
	'0', 'no two batches of different migrations ran at the same time (probe)');

my $hist = $node->safe_psql('postgres',
	"SELECT count(*) FROM migration_batches b JOIN migrations m ON m.id = b.migration_id WHERE m.name IN ($names)");
cmp_ok($hist, '>', 0, 'migration_batches has the batches');
is( $node->safe_psql('postgres', qq{
	WITH b AS (
		SELECT b.migration_id AS mid,
			   tstzrange(b.started_at, b.started_at + b.duration_ms * interval '1 ms') AS r
		  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
		 WHERE m.name IN ($names))
	SELECT count(*) FROM b x JOIN b y ON x.mid < y.mid AND x.r && y.r}),
	'0', 'batch intervals of different migrations do not overlap (migration_batches)');

log_has_no_crash($node, 0, 'max_workers');
$node->stop;
done_testing();
