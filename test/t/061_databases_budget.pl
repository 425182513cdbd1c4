# One worker budget for the whole server (migration_runner.max_workers = 2)
# shared fairly between databases:
#   - with three databases that have work, never more than 2 workers at once,
#     and every database makes progress
#   - a database that arrives while another fills the budget gets the next
#     free place, before that database's own next migration
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

# --- a newly arrived database goes first ---------------------------------------
# fa fills the budget with fa_long and fa_short; fa_next waits.  Then fc
# starts fc_one.  When fa_short ends, the free place goes to fc (no worker)
# rather than to fa (one worker already).
db_with_table($node, 'fa', 't', 2000);
db_with_table($node, 'fa', 'u', 200, exists => 1);
db_with_table($node, 'fa', 'v', 200, exists => 1);
db_with_table($node, 'fc', 't', 200);
db_migration($node, 'fa', 'fa_long', 't', 0.05, 20);
db_migration($node, 'fa', 'fa_short', 'u', 0.1, 10);
db_migration($node, 'fa', 'fa_next', 'v', 0, 50);
db_migration($node, 'fc', 'fc_one', 't', 0, 50);
$node->safe_psql('fa', "SELECT mig_start('fa_long')");
$node->safe_psql('fa', "SELECT mig_start('fa_short')");
ok( poll_true($node,
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'migration_runner worker' AND datname = 'fa'"),
	'fa runs two workers: the whole budget');
$node->safe_psql('fa', "SELECT mig_start('fa_next')");
$node->safe_psql('fc', "SELECT mig_start('fc_one')");
ok( poll_true($node,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'migration_runner scheduler' AND datname = 'fc'"),
	'fc has a scheduler waiting for a place');
is($node->safe_psql('fa', "SELECT status FROM migrations WHERE name = 'fa_short'"),
	'running', 'fa_short was still running when fc arrived');
is(db_wait_done($node, 'fc', 'fc_one'), 'completed', 'fc_one completes');
my $fc_first = $node->safe_psql('fc',
	"SELECT min(b.started_at) FROM migration_batches b JOIN migrations m ON m.id = b.migration_id WHERE m.name = 'fc_one'");
is(db_wait_done($node, 'fa', 'fa_next'), 'completed', 'fa_next completes');
my $fa_next_first = $node->safe_psql('fa',
	"SELECT min(b.started_at) FROM migration_batches b JOIN migrations m ON m.id = b.migration_id WHERE m.name = 'fa_next'");
ok( $node->safe_psql('postgres',
		"SELECT '$fc_first'::timestamptz < '$fa_next_first'::timestamptz") eq 't',
	"fc_one (first batch $fc_first) started before fa_next ($fa_next_first)");
is(db_wait_done($node, 'fa', 'fa_long'), 'completed', 'fa_long completes');
db_once_ok($node, 'fa', 't', 'fa_long', 2000);

log_has_no_crash($node, 0, 'budget');
$node->stop;
done_testing();
