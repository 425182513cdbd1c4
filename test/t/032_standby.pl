# Streaming replication and failover, and pg_upgrade.
#
# 1. A hot standby serves mig_status and shows a migration's progress as
#    the primary's worker commits batches; no migration_runner process runs
#    there.  The primary is killed (kill -9) in the middle of the run and the
#    standby promoted: the promoted server's launcher resumes the migration
#    from the last batch that reached the standby, and every row is changed
#    exactly once.
# 2. pg_upgrade between two PostgreSQL clusters of this version, with one
#    migration paused and one stopped in the middle of its run: nothing is
#    started in binary-upgrade mode (the server log pg_upgrade keeps shows
#    no worker start, and the catalog is unchanged), and after the upgrade
#    the running one resumes by itself and the paused one on mig_resume,
#    each changing every row exactly once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use Cwd qw(getcwd);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $conf = qq{
max_worker_processes = 16
log_min_messages = debug1
shared_preload_libraries = 'migration_runner'
migration_runner.databases = 'postgres'
};

my $runner_sql = q{SELECT count(*) FROM pg_stat_activity
					WHERE backend_type LIKE 'migration_runner%'
					   OR application_name LIKE 'migration_runner%'};

# ---------------------------------------------------------------------------
# 1. standby, kill -9 of the primary, promotion

my $rows = 30000;
my $primary = PostgreSQL::Test::Cluster->new('mrtap_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', $conf);
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION migration_runner');
new_table($primary, 't', $rows);
# about 10 ms a batch, 300 batches
define_migration($primary, 'failover_v1', 't', undef,
	batch_size  => 100,
	batch_delay => '5ms',
	slow        => 0.005);

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('mrtap_standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;

$primary->safe_psql('postgres', "SELECT mig_start('failover_v1')");

my $progress = q{SELECT scanned FROM mig_status
				  WHERE name = 'failover_v1' AND status = 'running' AND scanned > %d};
my $seen = poll_value($standby, sprintf($progress, 0));
ok(defined $seen, "the standby's mig_status shows the running migration ($seen keys)");
my $later = poll_value($standby, sprintf($progress, $seen // 0));
ok(defined $later,
	"the standby's mig_status follows its progress ($seen, then $later keys)");
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery');

# the README's postgres_exporter query works on the standby: its metrics
# are the columns it returns, all but the labels are numbers, and it shows
# the running migration
my ($yaml) = slurp_file('README.md') =~ /^### Monitoring\n.*?^```yaml\n(.*?)^```/ms;
my ($query) = ($yaml // '') =~ /^  query: \|\n((?:    .*\n)+)/m;
$query //= '';
$query =~ s/^    //mg;
my %usage = ($yaml // '') =~ /^    - (\w+):\n\s+usage: "(\w+)"/mg;
ok($query ne '' && %usage, 'README: the postgres_exporter query and its metrics');
is( $standby->safe_psql(
		'postgres', "SELECT string_agg(k, ',' ORDER BY k)
					   FROM (SELECT DISTINCT jsonb_object_keys(to_jsonb(q)) k
							   FROM ($query) q) s"),
	join(',', sort keys %usage),
	'README: the metrics are the columns the query returns');
my @numbers = sort grep { $usage{$_} ne 'LABEL' } keys %usage;
like(
	$standby->safe_psql(
		'postgres', 'SELECT name, status, '
		  . join(', ', map { "$_\::float8 >= 0" } @numbers)
		  . " FROM ($query) q"),
	qr/^failover_v1\|running(\|t)+$/m,
	'README: the exporter query shows the running migration on the standby, '
	  . 'every metric a number');
is($standby->safe_psql('postgres', $runner_sql),
	'0', 'no migration_runner process runs on the standby');
is($standby->safe_psql('postgres', "SELECT mig_has_run('failover_v1')"),
	'f', 'mig_has_run reads on the standby');
my ($ret, $out, $err) =
  $standby->psql('postgres', "SELECT mig_start('another_v1')");
like($err, qr/read-only transaction/, 'mig_start on the standby is refused');

ok( poll_true(
		$primary, "SELECT batches >= 60 FROM migrations WHERE name = 'failover_v1'"),
	'the primary ran 60 batches');
my $at_kill = mig_row($primary, 'failover_v1', qw(status batches));
is($at_kill->{status}, 'running', "still running at $at_kill->{batches} batches");
ok(crash_node($primary, 'kill9'), 'kill -9 of the primary, all its processes gone');

unlike(slurp_file($standby->logfile),
	qr/starting background worker process "migration_runner/,
	'no migration_runner worker was ever started on the standby');

$standby->promote;
ok(poll_true($standby, 'SELECT NOT pg_is_in_recovery()'), 'the standby is promoted');
ok( poll_true(
		$standby, q{SELECT count(*) = 1 FROM pg_stat_activity
					 WHERE backend_type = 'migration_runner launcher'}),
	'the launcher runs on the promoted server');
my $r = mig_row($standby, 'failover_v1', qw(status processed));
is($r->{status}, 'running', "after promotion failover_v1 is running ($r->{processed} rows done)");
cmp_ok($r->{processed}, '<', $rows, 'the promoted server has work left');
consistent_ok($standby, 't', 'failover_v1', 'at promotion');
is($standby->safe_psql('postgres', "SELECT mig_wait('failover_v1', '${WAIT_SECS}s')"),
	'completed', 'the promoted server finishes failover_v1');
exactly_once_ok($standby, 't', 'failover_v1', $rows, 'after failover');
log_has_no_crash($standby, 0, 'promoted standby');
$standby->stop;

# ---------------------------------------------------------------------------
# 2. pg_upgrade

my %rows = (t_paused => 3000, t_running => 20000);
my $old = PostgreSQL::Test::Cluster->new('mrtap_pgu_old');
$old->init;
$old->append_conf('postgresql.conf', $conf);
$old->start;
$old->safe_psql('postgres', 'CREATE EXTENSION migration_runner');
new_table($old, $_, $rows{$_}) for sort keys %rows;
define_migration($old, 'paused_v1', 't_paused', undef,
	batch_size  => 50,
	batch_delay => '20ms',
	slow        => 0.01);
define_migration($old, 'running_v1', 't_running', undef,
	batch_size        => 100,
	lock_timeout      => '5min',
	statement_timeout => '5min');

$old->safe_psql('postgres', "SELECT mig_start('paused_v1')");
ok(poll_true($old, "SELECT batches >= 3 FROM migrations WHERE name = 'paused_v1'"),
	'old cluster: paused_v1 ran 3 batches');
$old->safe_psql('postgres', "SELECT mig_pause('paused_v1')");
ok( poll_true(
		$old, q{SELECT count(*) = 0 FROM pg_stat_activity
				 WHERE backend_type = 'migration_runner worker'}),
	'old cluster: paused_v1 stopped');

# the test holds a row of running_v1's 51st batch when the server stops
my $holder = $old->background_psql('postgres');
$holder->query_safe('BEGIN; SELECT 1 FROM t_running WHERE id = 5001 FOR UPDATE');
$old->safe_psql('postgres', "SELECT mig_start('running_v1')");
ok( poll_true(
		$old, q{SELECT count(*) = 1 FROM pg_stat_activity
				 WHERE backend_type = 'migration_runner worker'
				   AND wait_event_type = 'Lock'}),
	'old cluster: running_v1 waits in its 51st batch');
my $paused = mig_row($old, 'paused_v1', qw(status cursor processed));
is($paused->{status}, 'paused', 'old cluster: paused_v1 is paused');
cmp_ok($paused->{processed}, '<', $rows{t_paused}, 'old cluster: paused_v1 stopped before the end');
my $max_id = $old->safe_psql('postgres', 'SELECT max(id) FROM migrations');
my $state = extension_state($old, 'postgres', 'worker_pid');
$old->stop('fast');
$holder->quit;

my $new = PostgreSQL::Test::Cluster->new('mrtap_pgu_new');
$new->init;
$new->append_conf('postgresql.conf', $conf);

my $bindir = `pg_config --bindir`;
chomp $bindir;
my $cwd = getcwd();
chdir(PostgreSQL::Test::Utils::tempdir) or die "chdir: $!";
command_ok(
	[
		'pg_upgrade', '--no-sync', '--retain',
		'-d', $old->data_dir, '-D', $new->data_dir,
		'-b', $bindir, '-B', $bindir,
		'-s', $new->host, '-p', $old->port, '-P', $new->port
	],
	'pg_upgrade');
chdir($cwd) or die "chdir: $!";

my @logs = glob($new->data_dir . '/pg_upgrade_output.d/*/log/pg_upgrade_server.log');
is(scalar(@logs), 1, 'pg_upgrade kept its server log');
my $upgrade_log = @logs ? slurp_file($logs[0]) : '';
like($upgrade_log, qr/DEBUG:  /, 'the servers pg_upgrade ran logged at debug1');
unlike($upgrade_log, qr/background worker (process )?"migration_runner/,
	'in binary-upgrade mode no migration_runner process was registered or started');

# first look with the launcher off: the catalog came over unchanged
$new->append_conf('postgresql.conf', "migration_runner.enabled = off\n");
$new->start;
is(extension_state($new, 'postgres', 'worker_pid'), $state,
	'after pg_upgrade the catalog is as the old cluster left it');

# then let the launcher work
$new->safe_psql('postgres',
	'ALTER SYSTEM SET migration_runner.enabled = on; SELECT pg_reload_conf()');
is($new->safe_psql('postgres', "SELECT mig_wait('running_v1', '${WAIT_SECS}s')"),
	'completed', 'after pg_upgrade running_v1 resumes by itself and completes');
is(mig_row($new, 'paused_v1', 'status')->{status}, 'paused', 'paused_v1 is still paused');
$new->safe_psql('postgres', "SELECT mig_resume('paused_v1')");
is($new->safe_psql('postgres', "SELECT mig_wait('paused_v1', '${WAIT_SECS}s')"),
	'completed', 'after pg_upgrade paused_v1 resumes and completes');
exactly_once_ok($new, $_, { t_paused => 'paused_v1', t_running => 'running_v1' }->{$_},
	$rows{$_}, "$_ after pg_upgrade")
  for sort keys %rows;
is( $new->safe_psql(
		'postgres', q{SELECT min(b.first_key[1]::int) FROM migration_batches b
						JOIN migrations m ON m.id = b.migration_id
					   WHERE m.name = 'running_v1' AND b.batch > 50}),
	'5001', 'running_v1 resumed at the key after its cursor');
my $new_id = $new->safe_psql('postgres', "SELECT mig_start('after_upgrade')");
cmp_ok($new_id, '>', $max_id, "a new migration gets a new id ($new_id)");
log_has_no_crash($new, 0, 'after pg_upgrade');
$new->stop;

done_testing();
