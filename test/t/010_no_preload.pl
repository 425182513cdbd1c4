# Without shared_preload_libraries: mig_start warns that no worker will run
# the migration, and CALL mig_run runs it in the session.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_nopreload', preload => 0);
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
	'the library is not preloaded');

new_table($node, 't', 1000);
define_migration($node, 'np_v1', 't',
	'UPDATE t SET n = n + 1 WHERE id BETWEEN $1 AND $2', batch_size => 100);
my ($ret, $out, $err) = $node->psql('postgres', "SELECT mig_start('np_v1')");
is($ret, 0, 'mig_start succeeds');
note("stderr: $err");
like($err, qr/WARNING:.*worker/i, 'mig_start warns that no worker will run it');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type ILIKE '%migration_runner%'"),
	'0', 'no migration_runner process exists');

($ret, $out, $err) = $node->psql('postgres', "CALL mig_run('np_v1')");
is($ret, 0, 'CALL mig_run on the started migration succeeds') or diag($err);
is(mig_row($node, 'np_v1', 'status')->{status}, 'completed', 'it is completed');
exactly_once_ok($node, 't', 'np_v1', 1000, 'np_v1');

# a pending migration is started and run by CALL mig_run
new_table($node, 'u', 500);
define_migration($node, 'np_v2', 'u',
	'UPDATE u SET n = n + 1 WHERE id BETWEEN $1 AND $2', batch_size => 100);
$node->safe_psql('postgres', "CALL mig_run('np_v2')");
is($node->safe_psql('postgres', "SELECT mig_wait('np_v2', '5s')"),
	'completed', 'CALL mig_run runs a pending migration to completion');
exactly_once_ok($node, 'u', 'np_v2', 500, 'np_v2');

$node->stop;
done_testing();
