# One worker budget for the whole server (migration_runner.max_workers = 2)
# shared fairly between databases:
#   - with three databases that have work, never more than 2 workers at once,
#     and every database makes progress
#   - a database that arrives while another fills the budget gets a place at
#     once: the other's newest worker stops after its batch (no crash, its
#     migration stays running and completes later, exactly once)
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use MigTest;
use DbTest;

my $node = plain_node('mrtap_db_budget', "migration_runner.max_workers = 2\n");

# --- three databases, two places -----------------------------------------------
my @dbs = qw(ba bb bc);
for my $db (@dbs)
{
	db_with_table($node, $db, 't', 600);
	db_with_table($node, $db, 'u', 600, exists => 1);
	db_migration($node, $db, "${db}_t", 't', 0.03, 30);
	db_migration($node, $db, "${db}_u", 'u', 0.03, 30);
}
$node->safe_psql($_, "SELECT mig_start('${_}_t'); SELECT mig_start('${_}_u')") for @dbs;

my ($max_seen, $most, $samples, %had_worker) = (0, '', 0);
my $deadline = time() + $WAIT_SECS;
my $all_done = 0;
while (time() < $deadline)
{
	my ($total, $per) = split /\|/, $node->safe_psql('postgres', worker_counts_sql());
	if ($total > $max_seen) { $max_seen = $total; $most = $per; }
	for my $p (split /,/, $per // '')
	{
		my ($d) = split /:/, $p;
		$had_worker{$d} = 1;
	}
	# look at the migrations every tenth sample only: sample the workers often
	next if ++$samples % 10 != 0;
	my $running = 0;
	$running += $node->safe_psql($_,
		"SELECT count(*) FROM migrations WHERE status = 'running'") for @dbs;
	if ($running == 0) { $all_done = 1; last; }
}
ok($all_done, 'the six migrations of three databases ended');
cmp_ok($max_seen, '<=', 2,
	"never more than max_workers = 2 workers in the server (most: $most)");
is(join(',', sort keys %had_worker), 'ba,bb,bc', 'each database had a worker');
for my $db (@dbs)
{
	for my $t (qw(t u))
	{
		is(db_status($node, $db, "${db}_$t"), 'completed', "${db}_$t completed");
		db_once_ok($node, $db, $t, "${db}_$t", 600);
	}
}

# --- a newly arrived database gets a place at once ---------------------------------
# fa fills the budget with fa_long1 and fa_long2, whose batches go slowly
# while fa.gate holds; fa_next waits.  Then fc starts fc_one: fa runs two
# workers, fc none, so fa's newest worker stops after its batch (its
# migration stays running) and fc_one runs and completes while both long
# migrations are still running.  fa_next gets no place before fc_one.
db_with_table($node, 'fa', 't', 2000);
db_with_table($node, 'fa', 'u', 2000, exists => 1);
db_with_table($node, 'fa', 'v', 200, exists => 1);
$node->safe_psql('fa', 'CREATE TABLE gate (hold bool); INSERT INTO gate VALUES (true)');
db_with_table($node, 'fc', 't', 200);
my $gated = '(SELECT CASE WHEN hold THEN 0.05 ELSE 0 END FROM gate)';
db_migration($node, 'fa', 'fa_long1', 't', $gated, 10);
db_migration($node, 'fa', 'fa_long2', 'u', $gated, 10);
db_migration($node, 'fa', 'fa_next', 'v', 0, 50);
db_migration($node, 'fc', 'fc_one', 't', 0.01, 10);
my $offset = -s $node->logfile;
$node->safe_psql('fa', "SELECT mig_start('fa_long1')");
$node->safe_psql('fa', "SELECT mig_start('fa_long2')");
ok( poll_true($node,
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'migration_runner worker' AND datname = 'fa'"),
	'fa runs two workers: the whole budget');
$node->safe_psql('fa', "SELECT mig_start('fa_next')");
$node->safe_psql('fc', "SELECT mig_start('fc_one')");

($max_seen, $most) = (0, '');
my $fc_done = 0;
$deadline = time() + $WAIT_SECS;
while (time() < $deadline)
{
	my ($total, $per) = split /\|/, $node->safe_psql('postgres', worker_counts_sql());
	if ($total > $max_seen) { $max_seen = $total; $most = $per; }
	if (db_status($node, 'fc', 'fc_one') ne 'running') { $fc_done = 1; last; }
	usleep(20_000);
}
ok($fc_done, 'fc_one ended');
is(db_status($node, 'fc', 'fc_one'), 'completed', 'fc_one completed');
db_once_ok($node, 'fc', 't', 'fc_one', 200);
is( $node->safe_psql('fa',
		"SELECT string_agg(name || ' ' || status, ', ' ORDER BY name) FROM migrations"),
	'fa_long1 running, fa_long2 running, fa_next running',
	'meanwhile the migrations of fa were all still running');
cmp_ok($max_seen, '<=', 2, "never more than 2 workers meanwhile (most: $most)");
ok( $node->log_contains(
		qr/asking worker \d+ of database "fa" to stop after its batch for a database that waits for a worker/,
		$offset),
	'the log says fa gave a worker back');

$node->safe_psql('fa', 'UPDATE gate SET hold = false');
for my $name (qw(fa_long1 fa_long2 fa_next))
{
	is(db_wait_done($node, 'fa', $name), 'completed', "$name completes");
}
db_once_ok($node, 'fa', 't', 'fa_long1', 2000);
db_once_ok($node, 'fa', 'u', 'fa_long2', 2000);
db_once_ok($node, 'fa', 'v', 'fa_next', 200);
my $fc_first = $node->safe_psql('fc',
	"SELECT min(b.started_at) FROM migration_batches b JOIN migrations m ON m.id = b.migration_id WHERE m.name = 'fc_one'");
my $fa_next_first = $node->safe_psql('fa',
	"SELECT min(b.started_at) FROM migration_batches b JOIN migrations m ON m.id = b.migration_id WHERE m.name = 'fa_next'");
ok( $node->safe_psql('postgres',
		"SELECT '$fc_first'::timestamptz < '$fa_next_first'::timestamptz") eq 't',
	"fc_one (first batch $fc_first) started before fa_next ($fa_next_first)");
ok(!$node->log_contains(qr/exited before it finished/, $offset),
	'the worker that gave its place back did not count as a crash');

log_has_no_crash($node, 0, 'budget');
$node->stop;
done_testing();
