# The background worker and a final verify query (one without the key
# parameters): it runs once, when no key is left, while mig_status says
# 'verifying'; with parallel slices it runs once, after the last slice; a
# kill -9 of the postmaster while it runs leaves the migration verifying,
# and the worker started after the restart runs the check again before it
# completes the migration.  A check that finds rows fails the migration;
# mig_start after the data is fixed checks again and completes it.
#
# The verify query calls gate(tag), which waits while a row (tag) is in
# table gates, so the test holds the check open for as long as it needs and
# sees 'verifying' for certain; gate logs each check it lets through.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_verify',
	conf => "migration_runner.max_workers = 4\n"
	  . "migration_runner.poll_interval = '100ms'\n");

$node->safe_psql('postgres', q{
	CREATE TABLE gates (tag text PRIMARY KEY);
	CREATE FUNCTION gate(t text) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		WHILE EXISTS (SELECT FROM gates WHERE tag = t) LOOP
			PERFORM pg_sleep(0.02);
		END LOOP;
		RAISE LOG 'verify gate passed: %', t;
		RETURN true;
	END $$;
});

# mig_define with a final verify query on $table (n must be 1 everywhere),
# held by gate($tag)
sub define_verified
{
	my ($name, $table, $tag, %o) = @_;
	my $action = "UPDATE $table SET n = n + 1 WHERE id BETWEEN \$1 AND \$2";
	$action = "WITH s AS (SELECT pg_sleep($o{slow})) UPDATE $table SET n = n + 1 FROM s "
	  . "WHERE id BETWEEN \$1 AND \$2"
	  if $o{slow};
	my $verify = "SELECT id, n FROM $table WHERE n <> 1 "
	  . "UNION ALL SELECT NULL, NULL WHERE NOT gate(" . q_lit($tag) . ")";
	return $node->safe_psql('postgres',
		    'SELECT mig_define(' . q_lit($name) . ', ' . q_lit($table) . ', '
		  . q_lit($action) . ", batch_size => $o{batch}, parallel => "
		  . ($o{parallel} // 1)
		  . ", statement_timeout => '10min', verify => " . q_lit($verify) . ')');
}

sub view_status
{
	my ($name) = @_;
	return $node->safe_psql('postgres',
		'SELECT status FROM mig_status WHERE name = ' . q_lit($name));
}

sub wait_verifying
{
	my ($name) = @_;
	return poll_true($node,
		"SELECT status = 'verifying' FROM mig_status WHERE name = " . q_lit($name));
}

sub gate_passes
{
	my ($tag, $offset) = @_;
	my @n = slurp_file($node->logfile, $offset) =~ /verify gate passed: \Q$tag\E\b/g;
	return scalar @n;
}

# --- 1. the worker: verifying, then completed --------------------------------

new_table($node, 'v1', 200);
$node->safe_psql('postgres', "INSERT INTO gates VALUES ('v1')");
my $offset = -s $node->logfile;
define_verified('v1_mig', 'v1', 'v1', batch => 20);
$node->safe_psql('postgres', "SELECT mig_start('v1_mig')");

ok(wait_verifying('v1_mig'), 'whole: mig_status says verifying while the check runs');
my $row = mig_row($node, 'v1_mig', qw(status verifying_since worker_pid completed_at processed));
is($row->{status}, 'running', 'whole: the catalog status stays running');
isnt($row->{verifying_since}, '<null>', 'whole: verifying_since is set');
isnt($row->{worker_pid}, '<null>', 'whole: the worker is named as the runner');
is($row->{completed_at}, '<null>', 'whole: not completed before the check');
is($row->{processed}, '200', 'whole: every batch is done before the check');
is(gate_passes('v1', $offset), 0, 'whole: the check has not passed the gate yet');

$node->safe_psql('postgres', "DELETE FROM gates WHERE tag = 'v1'");
is(wait_not_running($node, 'v1_mig'), 'completed', 'whole: completed once the check passed');
exactly_once_ok($node, 'v1', 'v1_mig', 200, 'whole');
$row = mig_row($node, 'v1_mig', qw(verifying_since worker_pid error));
is($row->{verifying_since}, '<null>', 'whole: verifying_since cleared');
is($row->{worker_pid}, '<null>', 'whole: no runner left');
is(view_status('v1_mig'), 'completed', 'whole: mig_status says completed');
is(gate_passes('v1', $offset), 1, 'whole: the check ran exactly once');

# --- 2. parallel slices: one check, after the last slice ---------------------

new_table($node, 'v2', 600);
$node->safe_psql('postgres', "INSERT INTO gates VALUES ('v2')");
$offset = -s $node->logfile;
define_verified('v2_mig', 'v2', 'v2', batch => 20, parallel => 2, slow => 0.01);
$node->safe_psql('postgres', "SELECT mig_start('v2_mig')");

ok(wait_verifying('v2_mig'), 'slices: mig_status says verifying while the check runs');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM migration_slices s JOIN migrations m ON m.id = s.migration_id "
		  . "WHERE m.name = 'v2_mig'"),
	'0',
	'slices: the slices are folded into the migration before the check');
is( $node->safe_psql('postgres',
		"SELECT count(DISTINCT b.slice) FROM migration_batches b "
		  . "JOIN migrations m ON m.id = b.migration_id WHERE m.name = 'v2_mig'"),
	'2',
	'slices: both slices ran batches');
is(mig_row($node, 'v2_mig', 'processed')->{processed}, '600',
	'slices: the slices\' counters are the migration\'s');
$node->safe_psql('postgres', "DELETE FROM gates WHERE tag = 'v2'");
is(wait_not_running($node, 'v2_mig'), 'completed', 'slices: completed once the check passed');
exactly_once_ok($node, 'v2', 'v2_mig', 600, 'slices');
is(gate_passes('v2', $offset), 1, 'slices: the check ran exactly once');

# --- 3. kill -9 while verifying: the check runs again after the restart ------

new_table($node, 'v3', 100);
$node->safe_psql('postgres', "INSERT INTO gates VALUES ('v3')");
define_verified('v3_mig', 'v3', 'v3', batch => 30);
$node->safe_psql('postgres', "SELECT mig_start('v3_mig')");
ok(wait_verifying('v3_mig'), 'crash: verifying before the crash');
my $pid_before = mig_row($node, 'v3_mig', 'worker_pid')->{worker_pid};

# a row the check must find, committed while the check waits at the gate
$node->safe_psql('postgres', 'UPDATE v3 SET n = 7 WHERE id = 42');
ok(crash_restart($node), 'crash: the server was killed and restarted');
$offset = -s $node->logfile;

ok(poll_true($node,
		"SELECT status = 'verifying' AND worker_pid IS NOT NULL AND worker_pid <> $pid_before "
		  . "FROM mig_status WHERE name = 'v3_mig'"),
	'crash: a new worker verifies again after the restart');
is(mig_row($node, 'v3_mig', 'completed_at')->{completed_at}, '<null>',
	'crash: not completed without the check');
$node->safe_psql('postgres', "DELETE FROM gates WHERE tag = 'v3'");
is(wait_not_running($node, 'v3_mig'), 'failed', 'crash: the check after the restart found the row');
$row = mig_row($node, 'v3_mig', qw(error error_detail verifying_since batches));
is($row->{error}, 'verify query returned 1 row', 'crash: the error counts the rows');
is($row->{error_detail}, 'First row: id=42, n=7', 'crash: the detail is the first row');
is($row->{verifying_since}, '<null>', 'crash: verifying_since cleared on failure');
is(gate_passes('v3', $offset), 1, 'crash: the check ran once after the restart');

# fix the data and start it again: the worker checks again, and completes it
# without running a batch again
$node->safe_psql('postgres', 'UPDATE v3 SET n = 1 WHERE id = 42');
$offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT mig_start('v3_mig')");
is(wait_not_running($node, 'v3_mig'), 'completed', 'restart after the fix: completed');
is(mig_row($node, 'v3_mig', 'batches')->{batches}, $row->{batches},
	'restart after the fix: no batch ran again');
exactly_once_ok($node, 'v3', 'v3_mig', 100, 'restart after the fix');
is(gate_passes('v3', $offset), 1, 'restart after the fix: the check ran once');

# --- 4. mig_pause while verifying: no wait for the check; resume checks again

new_table($node, 'v4', 50);
$node->safe_psql('postgres', "INSERT INTO gates VALUES ('v4')");
$offset = -s $node->logfile;
define_verified('v4_mig', 'v4', 'v4', batch => 20);
$node->safe_psql('postgres', "SELECT mig_start('v4_mig')");
ok(wait_verifying('v4_mig'), 'pause: verifying');
# the check holds no lock on the migration's row: mig_pause returns at once
$node->safe_psql('postgres', "SET lock_timeout = '5s'; SELECT mig_pause('v4_mig')");
is(view_status('v4_mig'), 'paused', 'pause: paused while the check runs');
$node->safe_psql('postgres', "DELETE FROM gates WHERE tag = 'v4'");
ok(poll_true($node, "SELECT worker_pid IS NULL FROM migrations WHERE name = 'v4_mig'"),
	'pause: the worker stops after its check');
is(gate_passes('v4', $offset), 1, 'pause: that check ran');
$row = mig_row($node, 'v4_mig', qw(status completed_at));
is("$row->{status} $row->{completed_at}", 'paused <null>',
	'pause: a check that ended after the pause does not complete the migration');
$node->safe_psql('postgres', "INSERT INTO gates VALUES ('v4')");
$node->safe_psql('postgres', "SELECT mig_resume('v4_mig')");
ok(poll_true($node,
		"SELECT s.status = 'verifying' AND m.worker_pid IS NOT NULL FROM mig_status s "
		  . "JOIN migrations m USING (id) WHERE m.name = 'v4_mig'"),
	'resume: verifying again');
$node->safe_psql('postgres', "DELETE FROM gates WHERE tag = 'v4'");
is(wait_not_running($node, 'v4_mig'), 'completed', 'resume: completed after the second check');
is(gate_passes('v4', $offset), 2, 'resume: the check ran again');
exactly_once_ok($node, 'v4', 'v4_mig', 50, 'pause and resume');

log_has_no_crash($node, $offset, 'verify');
$node->stop;
done_testing();
