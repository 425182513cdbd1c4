# mig_dry_run of a migration that a background worker is running right now.
# A dry run takes no runner lock and locks no catalog row: it runs while the
# worker commits batch after batch, without stopping it, and rolls back all
# it ran; the worker still changes every row exactly once and counts each
# once.  (In pg_regress no migration is left running, so this needs a
# worker.)
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_dry_run');
my $rows = 3000;

new_table($node, 'dry', $rows);
# 60 batches of about 50 ms: the worker runs for seconds
define_migration($node, 'dry_v1', 'dry', undef, batch_size => 50, slow => 0.05);
$node->safe_psql('postgres', "SELECT mig_start('dry_v1')");
ok(defined wait_for_worker($node, 'dry_v1'), 'the worker runs the migration');
ok(poll_true($node, "SELECT batches >= 2 FROM migrations WHERE name = 'dry_v1'"),
	'the worker has committed batches');

# three dry batches, while the worker holds its runner lock
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT count(*), bool_and(rows = 50), bool_and(sample IS NULL)"
	  . " FROM mig_dry_run('dry_v1', 3)");
is($ret, 0, 'mig_dry_run runs while the worker runs the migration');
is($err, '', 'with no error');
is($out, '3|t|t', 'three batches of 50 rows, no sample (the action returns nothing)');
is( $node->safe_psql('postgres',
		"SELECT status FROM migrations WHERE name = 'dry_v1'"),
	'running',
	'the migration is still running after the dry run');
ok( $node->safe_psql('postgres', "SELECT batches < 60 FROM migrations WHERE name = 'dry_v1'")
	  eq 't',
	'the dry run came before the worker had finished');

is(wait_not_running($node, 'dry_v1'), 'completed', 'the worker completes the migration');
exactly_once_ok($node, 'dry', 'dry_v1', $rows, 'after a dry run during the run');
is( $node->safe_psql('postgres',
		"SELECT sum(b.rows) FROM migration_batches b JOIN migrations m"
		  . " ON m.id = b.migration_id WHERE m.name = 'dry_v1' AND b.error IS NULL"),
	$rows,
	'the history counts every row once: no dry batch in it');

$node->stop;
done_testing();
