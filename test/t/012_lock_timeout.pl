# A lock held by another session makes the batch wait for its lock_timeout
# (55P03, lock not available), which is transient: the batch is retried with
# backoff.  If the lock is never released the migration fails after
# max_retries with an error that says so; if it is released in time the
# migration completes, every row changed exactly once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_lock');
my $rows = 100;

# --- row locks held for good: fails after max_retries ----------------------
new_table($node, 'l', $rows);
define_migration($node, 'lock_fail_v1', 'l',
	'UPDATE l SET n = n + 1 WHERE id BETWEEN $1 AND $2',
	batch_size => 10, lock_timeout => '100ms', max_retries => 3);

my $holder = $node->background_psql('postgres');
$holder->set_query_timer_restart();
# rows 21..30 are batch 3
$holder->query_safe(
	'BEGIN; SELECT count(*) FROM (SELECT 1 FROM l WHERE id BETWEEN 21 AND 30 FOR UPDATE) s');

$node->safe_psql('postgres', "SELECT mig_start('lock_fail_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('lock_fail_v1', '60s')"),
	'failed', 'lock_fail_v1: fails while the rows stay locked');
my $r = mig_row($node, 'lock_fail_v1',
	qw(retries processed batches error throttled worker_pid));
note("error: $r->{error}");
like($r->{error}, qr/lock timeout/, 'the error says it was a lock timeout');
like($r->{error}, qr/SQLSTATE 55P03/, 'the error has SQLSTATE 55P03');
like($r->{error}, qr/batch 3\b/, 'the error names batch 3');
like($r->{error}, qr/\(21\) to \(30\)|after key \(20\)/, "the error gives the batch's bounds (21 to 30)");
like($r->{error}, qr/after 4 attempts/, 'the error says 4 attempts (1 + max_retries)');
is($r->{retries}, '3', 'retries = max_retries (3)');
is($r->{processed}, '20', 'the two batches before the lock count');
is($r->{batches}, '2', 'two batches committed');
is($r->{worker_pid}, '<null>', 'no runner recorded');
is( $node->safe_psql('postgres',
		'SELECT count(*) FILTER (WHERE n = 1 AND id <= 20) || \'/\' || count(*) FILTER (WHERE n <> 0 AND id > 20) FROM l'),
	'20/0', 'rows 1..20 changed, nothing after them');
$holder->query_safe('COMMIT');

# after the lock is gone, mig_start resumes after the last committed batch
$node->safe_psql('postgres', "SELECT mig_start('lock_fail_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('lock_fail_v1', '60s')"),
	'completed', 'lock_fail_v1: completes once restarted without the lock');
exactly_once_ok($node, 'l', 'lock_fail_v1', $rows, 'lock_fail_v1 resumed');

# --- a table lock released before the limit: completes ---------------------
# The worker takes its time (20 ms a batch), so the test can take an ACCESS
# EXCLUSIVE lock between two of its batches.
new_table($node, 'm', 2000);
define_migration($node, 'lock_ok_v1', 'm', undef,
	batch_size => 20, slow => 0.02, lock_timeout => '100ms',
	max_retries => 50);
$node->safe_psql('postgres', "SELECT mig_start('lock_ok_v1')");
ok(poll_true($node,
		"SELECT batches >= 3 FROM migrations WHERE name = 'lock_ok_v1'"),
	'lock_ok_v1 has done 3 batches (its plans are made)');

# the LOCK waits for the running batch to commit, then holds the table
$holder->query_safe('BEGIN; LOCK TABLE m IN ACCESS EXCLUSIVE MODE');
my $locked_at =
  mig_row($node, 'lock_ok_v1', qw(batches processed retries status));
is($locked_at->{status}, 'running', 'still running when the table is locked');
cmp_ok($locked_at->{processed}, '<', 2000, 'not done when the table is locked');

ok( poll_true(
		$node,
		"SELECT retries >= 2 AND throttled LIKE 'retrying batch%55P03%' FROM migrations WHERE name = 'lock_ok_v1'"
	),
	'the runner retries the blocked batch (retries >= 2, throttled says why)');
my $during = mig_row($node, 'lock_ok_v1', qw(batches processed status throttled));
note("throttled: $during->{throttled}");
is($during->{status}, 'running', 'still running while it retries');
is($during->{batches}, $locked_at->{batches},
	'no batch committed while the table is locked');
like($during->{throttled}, qr/lock timeout/,
	'throttled gives the lock timeout as the reason');

$holder->query_safe('COMMIT');
is($node->safe_psql('postgres', "SELECT mig_wait('lock_ok_v1', '60s')"),
	'completed', 'lock_ok_v1: completes after the lock is released');
exactly_once_ok($node, 'm', 'lock_ok_v1', 2000, 'lock_ok_v1');
$r = mig_row($node, 'lock_ok_v1', qw(retries throttled error));
cmp_ok($r->{retries}, '>=', 2, "retries recorded ($r->{retries})");
is($r->{throttled}, '<null>', 'throttled cleared');
is($r->{error}, '<null>', 'no error');
my $b = $node->safe_psql('postgres', q{
	SELECT batch || ':' || attempts FROM migration_batches b
	  JOIN migrations m ON m.id = b.migration_id
	 WHERE m.name = 'lock_ok_v1' AND attempts > 1});
my @retried = split /\n/, $b;
is(scalar(@retried), 1, 'exactly one batch needed more than one attempt');
my ($rb, $ra) = split /:/, ($retried[0] // '0:0');
is($rb, $locked_at->{batches} + 1,
	'it is the batch after the ones committed before the lock');
is($ra, $r->{retries} + 1, 'its attempts = retries + 1');

$holder->quit;
log_has_no_crash($node, 0, 'lock timeout');
$node->stop;
done_testing();
