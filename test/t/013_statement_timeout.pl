# A batch that runs into its statement_timeout (57014) is retried with the
# batch halved, never below migration_runner.min_batch_size; past max_retries
# the migration fails with the SQLSTATE and the size it got down to.
#
# The action sleeps (longer than the timeout) only when the batch holds more
# than 40 keys, so the size must come down from 100 to 50 to 25.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_stmt');
my $rows = 1000;

# --- halving until the batch fits (worker) ----------------------------------
new_table($node, 'h', $rows);
define_migration($node, 'halve_v1', 'h',
	'WITH s AS (SELECT pg_sleep(CASE WHEN $2 - $1 + 1 > 40 THEN 10 ELSE 0 END))'
	  . ' UPDATE h SET n = n + 1 FROM s WHERE id BETWEEN $1 AND $2',
	batch_size => 100, statement_timeout => '300ms', max_retries => 5);
$node->safe_psql('postgres', "SELECT mig_start('halve_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('halve_v1', '60s')"),
	'completed', 'halve_v1: completes with a smaller batch');
exactly_once_ok($node, 'h', 'halve_v1', $rows, 'halve_v1');
my $r = mig_row($node, 'halve_v1',
	qw(batch_size current_batch_size retries batches throttled error));
is($r->{retries}, '2', 'two timeouts: 100 -> 50 -> 25');
is($r->{current_batch_size}, '25', 'current_batch_size is 25');
is($r->{batch_size}, '100', 'the defined batch_size is unchanged');
is($r->{batches}, '40', '1000 rows in 40 batches of 25');
is($r->{throttled}, '<null>', 'throttled cleared');
is($r->{error}, '<null>', 'no error');
is( $node->safe_psql('postgres', q{
		SELECT keys || ':' || attempts || ':' || first_key::text || last_key::text
		  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
		 WHERE m.name = 'halve_v1' AND batch = 1}),
	'25:3:{1}{25}',
	'batch 1: 25 keys (1..25), after 3 attempts');
is( $node->safe_psql('postgres', q{
		SELECT min(keys) || '/' || max(keys) || '/' || max(attempts)
		  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
		 WHERE m.name = 'halve_v1' AND batch > 1}),
	'25/25/1', 'every later batch has 25 keys at the first attempt');

# --- never fits: halves down to min_batch_size, then fails (CALL mig_run) --
# 100 -> 50 -> 25 -> 12 -> 10 (min) -> 10, then max_retries (5) are used up.
new_table($node, 'f', $rows);
define_migration($node, 'halve_fail_v1', 'f',
	'WITH s AS (SELECT pg_sleep(10)) UPDATE f SET n = n + 1 FROM s WHERE id BETWEEN $1 AND $2',
	batch_size => 100, statement_timeout => '200ms', max_retries => 5);
my ($ret, $out, $err) = $node->psql('postgres',
	"SET migration_runner.min_batch_size = 10; CALL mig_run('halve_fail_v1')");
isnt($ret, 0, 'CALL mig_run raises an error when the migration fails');
note("stderr: $err");
like($err, qr/57014|statement timeout/, 'the error of CALL mig_run names the timeout');
$r = mig_row($node, 'halve_fail_v1',
	qw(status retries current_batch_size processed error));
is($r->{status}, 'failed', 'halve_fail_v1: failed');
note("error: $r->{error}");
like($r->{error}, qr/statement timeout/, 'error: canceling statement due to statement timeout');
like($r->{error}, qr/SQLSTATE 57014/, 'error has SQLSTATE 57014');
like($r->{error}, qr/batch size 10\b/, 'error has the smallest size tried (10)');
like($r->{error}, qr/after 6 attempts/, 'error says 6 attempts');
is($r->{retries}, '5', 'retries = 5');
is($r->{current_batch_size}, '10', 'current_batch_size stopped at min_batch_size');
is($r->{processed}, '0', 'nothing processed');
is($node->safe_psql('postgres', 'SELECT count(*) FROM f WHERE n <> 0'),
	'0', 'every timed-out batch rolled back');

log_has_no_crash($node, 0, 'statement timeout');
$node->stop;
done_testing();
