# An action that fails in batch 3 (division by zero at id 25) marks the
# migration failed with SQLSTATE and bounds; the committed batches stay, the
# failed one is rolled back, and the launcher still runs other migrations.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_fail');

new_table($node, 'f', 1000);
define_migration($node, 'fail_v1', 'f',
	'UPDATE f SET n = n + 1 / (CASE WHEN id = 25 THEN 0 ELSE 1 END) WHERE id BETWEEN $1 AND $2',
	batch_size => 10);
$node->safe_psql('postgres', "SELECT mig_start('fail_v1')");

is($node->safe_psql('postgres', "SELECT mig_wait('fail_v1', '30s')"),
	'failed', 'mig_wait returns failed');
my $r = mig_row($node, 'fail_v1', qw(status error processed completed_at));
is($r->{status}, 'failed', 'status is failed');
note("error: $r->{error}");
like($r->{error}, qr/22012/, 'error has SQLSTATE 22012');
like($r->{error}, qr/division by zero/, 'error has the message');
like($r->{error}, qr/\b21\b.*\b30\b/s, 'error has the bounds of batch 3 (21 .. 30)');
is($r->{processed}, '20', 'the two committed batches count, the failed one not');
is($r->{completed_at}, '<null>', 'no completed_at');
is( $node->safe_psql('postgres',
		"SELECT string_agg(x, ',' ORDER BY x) FROM (SELECT DISTINCT n::text || ':' || (id <= 20)::text AS x FROM f) s"),
	'0:false,1:true',
	'rows 1..20 changed once, the failed batch rolled back, the rest untouched');
is($node->safe_psql('postgres', "SELECT mig_has_run('fail_v1')"),
	'f', 'mig_has_run is false');
is( $node->safe_psql('postgres',
		"SELECT error IS NOT NULL FROM mig_status WHERE name = 'fail_v1'"),
	't', 'mig_status shows the error');
ok(poll_true($node, 'SELECT count(*) = 0 FROM (' . worker_pid_sql('fail_v1') . ') w', 30),
	'no worker left on the failed migration');

# the launcher is alive: a migration started afterwards completes
new_table($node, 'g', 500);
define_migration($node, 'after_v1', 'g',
	'UPDATE g SET n = n + 1 WHERE id BETWEEN $1 AND $2', batch_size => 100);
$node->safe_psql('postgres', "SELECT mig_start('after_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('after_v1', '30s')"),
	'completed', 'a migration started after the failure completes');
exactly_once_ok($node, 'g', 'after_v1', 500, 'after_v1');
is(mig_row($node, 'fail_v1', 'status')->{status}, 'failed',
	'the failed migration stays failed (not retried by the launcher)');

log_has_no_crash($node, 0, 'failure');
$node->stop;
done_testing();
