# Every database of the server, with no configuration but the preload:
#   - three databases created after the server started, each with the
#     extension and a migration, run at the same time and complete, every
#     row changed exactly once
#   - a database created after start gets its first batch within 1 s of
#     mig_start's commit
#   - a database without running migrations has no scheduler and no worker
#     connected (nothing holds it)
#   - the extension dropped while a migration runs, and created again
#   - a restart of the server resumes the migrations of every database
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

my $node = plain_node('mrtap_databases', "migration_runner.max_workers = 4\n");

is($node->safe_psql('postgres', 'SHOW migration_runner.databases'),
	'*', 'migration_runner.databases is * by default');
ok( poll_true($node,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'migration_runner launcher' AND datid IS NULL"),
	'the launcher runs, connected to no database');

# --- three databases at once ---------------------------------------------------
my @dbs = qw(db1 db2 db3);
for my $db (@dbs)
{
	db_with_table($node, $db, 't', 1500);
	db_migration($node, $db, "${db}_v1", 't', 0.01, 50);
}
$node->safe_psql($_, "SELECT mig_start('${_}_v1')") for @dbs;

# all three have a worker at the same moment
my ($together, $seen) = (0, '');
my $deadline = time() + $WAIT_SECS;
while (time() < $deadline)
{
	my ($total, $per) = split /\|/, $node->safe_psql('postgres', worker_counts_sql());
	$seen = $per if $per ne '';
	if ($per =~ /db1:/ && $per =~ /db2:/ && $per =~ /db3:/) { $together = 1; last; }
	usleep(20_000);
}
ok($together, "the three databases have workers at the same time ($seen)");
for my $db (@dbs)
{
	is(db_wait_done($node, $db, "${db}_v1"), 'completed', "${db}_v1 completes");
	db_once_ok($node, $db, 't', "${db}_v1", 1500);
}

# --- nothing stays connected to a database without work ------------------------
ok( poll_true($node,
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type IN "
		  . "('migration_runner scheduler', 'migration_runner worker')"),
	'with every migration done, no scheduler or worker stays connected');

# --- the first batch within 1 s --------------------------------------------------
db_with_table($node, 'fresh', 't', 200);
db_migration($node, 'fresh', 'fresh_v1', 't', 0, 50);
my $started = $node->safe_psql('fresh',
	"SELECT mig_start('fresh_v1'); SELECT now()");
$started = (split /\n/, $started)[-1];
ok( db_poll_true($node, 'fresh',
		"SELECT EXISTS (SELECT FROM migration_batches WHERE batch = 1)"),
	'fresh_v1 has done its first batch');
my $lag = $node->safe_psql('fresh',
	"SELECT extract(epoch FROM b.started_at - '$started'::timestamptz) "
	  . 'FROM migration_batches b WHERE b.batch = 1');
cmp_ok($lag, '<', 1.0,
	"the first batch of a database made after start began ${lag}s after mig_start");
is(db_wait_done($node, 'fresh', 'fresh_v1'), 'completed', 'fresh_v1 completes');

# --- the extension dropped while a migration runs, and created again ------------
db_migration($node, 'db1', 'db1_v2', 't', 0.02, 10);
$node->safe_psql('db1', "SELECT mig_start('db1_v2')");
ok(db_poll_true($node, 'db1', "SELECT batches >= 2 FROM migrations WHERE name = 'db1_v2'"),
	'db1_v2 runs');
$node->safe_psql('db1', 'DROP EXTENSION migration_runner');
ok( poll_true($node,
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = 'db1' AND backend_type IN "
		  . "('migration_runner scheduler', 'migration_runner worker')"),
	'with the extension dropped, db1 has no scheduler or worker left');
$node->safe_psql('db1', 'DROP TABLE t');
db_with_table($node, 'db1', 't', 300, exists => 1);
db_migration($node, 'db1', 'db1_v3', 't', 0, 50);
$node->safe_psql('db1', "SELECT mig_start('db1_v3')");
is(db_wait_done($node, 'db1', 'db1_v3'), 'completed',
	'with the extension created again, a migration of db1 completes');
db_once_ok($node, 'db1', 't', 'db1_v3', 300);

# --- a restart resumes the migrations of every database --------------------------
for my $db (qw(db2 db3))
{
	db_migration($node, $db, "${db}_v2", 't', 0.02, 20);
	$node->safe_psql($db, "SELECT mig_start('${db}_v2')");
	ok(db_poll_true($node, $db, "SELECT batches >= 3 FROM migrations WHERE name = '${db}_v2'"),
		"${db}_v2 has done a few batches");
}
$node->restart;
for my $db (qw(db2 db3))
{
	is(db_wait_done($node, $db, "${db}_v2"), 'completed',
		"${db}_v2 completes after the restart");
	is($node->safe_psql($db, "SELECT count(*) FILTER (WHERE n <> 2) FROM t"),
		'0', "$db: every row changed exactly once more by ${db}_v2");
}

log_has_no_crash($node, 0, 'databases');
$node->stop;
done_testing();
