# The coordinator's side of per-shard runs on Citus (citus_run.c): it
# splits a migration into one slice per shard, drives the nodes over libpq,
# mirrors their progress, and waits for a node that is down (or fails the
# migration once the node stays away past migration_runner.node_wait_limit,
# or at once when a node lacks migration_runner).  The main Citus suite is
# test/t/citus_*.pl with CitusTest.pm (moves, kill -9 of the coordinator,
# fallbacks); this one stays quick: a coordinator and 2 workers, small
# tables.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
if (!-e "$pkglibdir/citus.so")
{
	plan skip_all => 'skipped: Citus not available';
}

# a node of the cluster: Citus and migration_runner preloaded
sub citus_node
{
	my ($name) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'citus,migration_runner'
wal_level = logical
max_worker_processes = 32
migration_runner.databases = 'postgres'
citus.local_hostname = '@{[$node->host]}'
});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION citus');
	return $node;
}

my $coord = citus_node('coordinator');
my @workers = (citus_node('worker1'), citus_node('worker2'));
$coord->safe_psql('postgres',
	"SELECT citus_set_coordinator_host('" . $coord->host . "', " . $coord->port . ")");
$coord->safe_psql('postgres',
	"SELECT citus_add_node('" . $_->host . "', " . $_->port . ")")
  foreach @workers;
$coord->safe_psql('postgres', 'CREATE EXTENSION migration_runner');
is($workers[1]->safe_psql('postgres',
		"SELECT count(*) FROM pg_extension WHERE extname = 'migration_runner'"),
	'1', 'CREATE EXTENSION on the coordinator reached the workers');

# a distributed table of ids 1..rows and a per-shard migration of it
sub shard_table
{
	my ($table, $shards, $rows, $batch) = @_;
	$coord->safe_psql('postgres', qq{
		CREATE TABLE $table (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
		SELECT create_distributed_table('$table', 'id', shard_count => $shards);
		INSERT INTO $table SELECT g FROM generate_series(1, $rows) g;
		SELECT mig_define('$table', '$table',
			'UPDATE $table SET n = n + 1 WHERE id BETWEEN \$1 AND \$2',
			batch_size => $batch);
	});
}

sub once_ok
{
	my ($table, $rows, $what) = @_;
	is($coord->safe_psql('postgres',
			"SELECT count(*) || ' ' || count(*) FILTER (WHERE n = 1) FROM $table"),
		"$rows $rows", "$what: every row changed exactly once");
}

# 1. CALL mig_run: one slice per shard, the nodes run them, all complete
shard_table('t_call', 8, 20000, 500);
$coord->safe_psql('postgres', "CALL mig_run('t_call')");
is($coord->safe_psql('postgres',
		"SELECT status || ' ' || processed || ' ' || citus_run || ' ' || (worker_pid IS NULL) FROM migrations WHERE name = 't_call'"),
	'completed 20000 1 true', 'CALL mig_run completes a per-shard migration');
once_ok('t_call', 20000, 'CALL mig_run');
is($coord->safe_psql('postgres',
		"SELECT count(*) FROM migration_slices s JOIN migrations m ON m.id = s.migration_id WHERE m.name = 't_call'"),
	'0', 'the slices are folded into the migration and removed');
is($coord->safe_psql('postgres',
		"SELECT count(DISTINCT slice) FROM migration_batches b JOIN migrations m ON m.id = b.migration_id WHERE m.name = 't_call'"),
	'8', 'every shard left history on the coordinator');

# 2. the worker, and a worker node down in the middle of the run
shard_table('t_down', 8, 200000, 50);
$coord->safe_psql('postgres', "SELECT mig_start('t_down')");
poll_true($coord,
	"SELECT processed > 0 FROM mig_status WHERE name = 't_down'");
$workers[1]->stop('immediate');
my $node2 = $workers[1]->host . ':' . $workers[1]->port;
is(poll_value($coord,
		"SELECT waiting_for FROM mig_status WHERE name = 't_down' AND waiting_for IS NOT NULL"),
	"node $node2", 'mig_status says which node the migration waits for');
ok(poll_true($coord,
		"SELECT count(*) FILTER (WHERE node <> '$node2' AND status = 'done') > 0 FROM mig_slices WHERE name = 't_down'"),
	"the other node's shards go on");
$workers[1]->start;
is(wait_not_running($coord, 't_down'), 'completed', 'the migration completes once the node is back');
once_ok('t_down', 200000, 'node down mid-run');

# 3. a node away longer than node_wait_limit fails the migration; it resumes
shard_table('t_limit', 4, 100000, 50);
$coord->safe_psql('postgres', "ALTER SYSTEM SET migration_runner.node_wait_limit = '1s'; SELECT pg_reload_conf()");
$coord->safe_psql('postgres', "SELECT mig_start('t_limit')");
poll_true($coord, "SELECT processed > 0 FROM mig_status WHERE name = 't_limit'");
$workers[1]->stop('immediate');
is(wait_not_running($coord, 't_limit'), 'failed', 'a node away too long fails the migration');
like($coord->safe_psql('postgres', "SELECT error FROM migrations WHERE name = 't_limit'"),
	qr/^node \Q$node2\E could not be reached for longer than migration_runner.node_wait_limit/,
	'the error names the node');
$workers[1]->start;
$coord->safe_psql('postgres', "ALTER SYSTEM RESET migration_runner.node_wait_limit; SELECT pg_reload_conf()");
$coord->safe_psql('postgres', "SELECT mig_start('t_limit')");
is(wait_not_running($coord, 't_limit'), 'completed', 'started again, it completes');
once_ok('t_limit', 100000, 'failed on a node, then started again');

# 4. pause from the coordinator: the calls drain and the mirror is exact
shard_table('t_pause', 8, 200000, 50);
$coord->safe_psql('postgres', "SELECT mig_start('t_pause')");
poll_true($coord, "SELECT processed > 0 FROM mig_status WHERE name = 't_pause'");
$coord->safe_psql('postgres', "SELECT mig_pause('t_pause')");
poll_true($coord, "SELECT worker_pid IS NULL FROM mig_status WHERE name = 't_pause'");
my $changed = $coord->safe_psql('postgres', 'SELECT sum(n) FROM t_pause');
ok($changed > 0 && $changed < 200000, 'paused in the middle of the run');
is($coord->safe_psql('postgres', "SELECT processed FROM mig_status WHERE name = 't_pause'"),
	$changed, 'paused: the slices mirror exactly what the nodes committed');
$coord->safe_psql('postgres', "SELECT mig_resume('t_pause')");
is(wait_not_running($coord, 't_pause'), 'completed', 'resumed, it completes');
once_ok('t_pause', 200000, 'paused and resumed');

# 5. a node without migration_runner's functions: failed, with a hint
shard_table('t_missing', 4, 1000, 100);
$workers[0]->safe_psql('postgres', 'ALTER FUNCTION mig_shard_prepare RENAME TO mig_shard_prepare_gone');
my ($rc, $out, $err) = $coord->psql('postgres', "CALL mig_run('t_missing')");
like($err, qr/HINT:  migration_runner must be installed on every node/,
	'a node without migration_runner fails the migration with a hint');
like($coord->safe_psql('postgres', "SELECT error FROM migrations WHERE name = 't_missing'"),
	qr/^migration_runner is missing on node .*mig_shard_prepare/, 'the error names the node');
$workers[0]->safe_psql('postgres', 'ALTER FUNCTION mig_shard_prepare_gone RENAME TO mig_shard_prepare');

done_testing();
