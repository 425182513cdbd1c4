# A table rewrite (ALTER TABLE ... TYPE, a volatile DEFAULT, SET UNLOGGED,
# TRUNCATE) committed while a migration runs must not make it skip rows.
#
# A rewrite puts every row into a new file, stamped with the rewriting
# transaction: a batch whose snapshot was taken before that transaction
# committed, and that then waits for the table's lock, finds the new file
# empty.  Release 1.0 took that for the end of the table and completed the
# migration with every row after the cursor untouched.  Each case here
# holds the rewrite's lock until the runner's next batch waits for it (no
# sleep: the test polls pg_locks), then commits, and checks that the
# migration completes with every row changed exactly once.
#
# The lock is held for a few poll rounds, far below the migration's
# lock_timeout (5 s), so the batch waits instead of being retried.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $rows     = 20000;
my $batch    = 500;
my $pause_at = 5;       # batches done before the rewrite

my $node = mig_node('mrtap_rewrite');

# A fresh c_rw-like table with ids 1..$rows and its migration, defined (not
# started): the action counts the visits of every row in n.
sub setup_case
{
	my ($table, $name) = @_;
	$node->safe_psql('postgres', qq{
		CREATE TABLE $table (id bigint PRIMARY KEY, pad text, n int NOT NULL DEFAULT 0);
		INSERT INTO $table SELECT i, 'x', 0 FROM generate_series(1, $rows) i;
		ANALYZE $table;
	});
	define_migration($node, $name, $table,
		"UPDATE $table SET n = n + 1 WHERE id BETWEEN \$1 AND \$2",
		batch_size   => $batch,
		batch_delay  => '50ms',
		lock_timeout => '5s');
	return;
}

# Start the migration with the worker (mig_start) or in a background
# session (CALL mig_run); returns that session, or undef.
sub start_run
{
	my ($name, $how) = @_;
	if ($how eq 'worker')
	{
		$node->safe_psql('postgres', 'SELECT mig_start(' . q_lit($name) . ')');
		return undef;
	}
	return call_start($node, $name);
}

# Wait until the run is over; return the migration's status.
sub finish_run
{
	my ($name, $how, $call) = @_;
	if ($how eq 'worker')
	{
		return $node->safe_psql('postgres',
			'SELECT mig_wait(' . q_lit($name) . ", '60s')");
	}
	my $stderr = call_finish($call);
	unlike($stderr, qr/ERROR/, "$name: CALL mig_run returned without an error")
	  or diag($stderr);
	return mig_row($node, $name, 'status')->{status};
}

# The end of every case: completed, every row exactly once.
sub check_exactly_once
{
	my ($table, $name, $label) = @_;
	my $r = mig_row($node, $name, qw(processed batches cursor));
	note("$label: processed $r->{processed}, batches $r->{batches}, "
		  . "cursor $r->{cursor}; " . counter_counts($node, $table));
	exactly_once_ok($node, $table, $name, $rows, $label);
	return;
}

# --- rewrites committed while the migration runs -----------------------------
#
# [table, migration, how it is run, the rewrite]
my @midrun = (
	[ 'c_rw_type', 'rw_type_v1', 'worker',
		'ALTER TABLE c_rw_type ALTER COLUMN pad TYPE varchar(200)' ],
	[ 'c_rw_type_call', 'rw_type_call_v1', 'call',
		'ALTER TABLE c_rw_type_call ALTER COLUMN pad TYPE varchar(200)' ],
	[ 'c_rw_default', 'rw_default_v1', 'worker',
		'ALTER TABLE c_rw_default ADD COLUMN x timestamptz DEFAULT clock_timestamp()' ],
	[ 'c_rw_unlogged', 'rw_unlogged_v1', 'worker',
		'ALTER TABLE c_rw_unlogged SET UNLOGGED' ],
	# the rewrite VACUUM FULL also does, in a transaction block
	[ 'c_rw_cluster', 'rw_cluster_v1', 'worker',
		'CLUSTER c_rw_cluster USING c_rw_cluster_pkey' ],
	# the counter itself changes type: the action is planned again, n = n + 1
	# still counts
	[ 'c_rw_ntype', 'rw_ntype_v1', 'worker',
		'ALTER TABLE c_rw_ntype ALTER COLUMN n TYPE bigint' ]);

for my $case (@midrun)
{
	my ($table, $name, $how, $rewrite) = @$case;
	my $label = "$name ($how)";
	setup_case($table, $name);
	my $call = start_run($name, $how);

	ok( poll_true(
			$node,
			"SELECT batches >= $pause_at FROM migrations WHERE name = '$name'"),
		"$label: $pause_at batches done before the rewrite");

	my $holder = $node->background_psql('postgres');
	$holder->set_query_timer_restart;
	# waits for the batch under way, if any, to commit
	$holder->query_safe("BEGIN; $rewrite");
	ok(wait_lock_waiter($node, $table),
		"$label: the next batch waits for the rewrite's lock");
	my $at = mig_row($node, $name, qw(status batches processed));
	is($at->{status}, 'running', "$label: still running at the rewrite");
	note("$label: rewrite commits after $at->{batches} batches, "
		  . "$at->{processed} rows");
	$holder->query_safe('COMMIT');
	$holder->quit;

	is(finish_run($name, $how, $call), 'completed', "$label: completed");
	check_exactly_once($table, $name, $label);
}

# --- TRUNCATE and the same rows inserted again, while the migration runs -----
#
# The truncating transaction puts all ids back with n = 0.  Let C be the
# cursor while it holds its lock (no batch can commit meanwhile: every batch
# reads the table first).  Then:
#   - ids > C are ahead of the cursor: each is changed exactly once (n = 1);
#     the migration must not complete with any of them untouched;
#   - ids <= C are rows inserted behind the cursor, the documented exception:
#     they need not be visited (the keyset walk does not), but none may be
#     changed twice;
#   - processed counts what the action changed: C rows before the TRUNCATE
#     plus the rows at n = 1 now ($rows when the rows behind are not visited).
{
	my ($table, $name) = ('c_rw_trunc', 'rw_trunc_v1');
	my $label = "$name (worker)";
	setup_case($table, $name);
	start_run($name, 'worker');
	ok( poll_true(
			$node,
			"SELECT batches >= $pause_at FROM migrations WHERE name = '$name'"),
		"$label: $pause_at batches done before the TRUNCATE");

	my $holder = $node->background_psql('postgres');
	$holder->set_query_timer_restart;
	$holder->query_safe("BEGIN; TRUNCATE $table");
	my $cursor = $holder->query_safe(
		"SELECT cursor[1] FROM migrations WHERE name = '$name'");
	$holder->query_safe(
		"INSERT INTO $table SELECT i, 'x', 0 FROM generate_series(1, $rows) i");
	ok(wait_lock_waiter($node, $table),
		"$label: the next batch waits for the TRUNCATE's lock");
	is(mig_row($node, $name, 'cursor')->{cursor}, "{$cursor}",
		"$label: the cursor did not move while the TRUNCATE held the table");
	$holder->query_safe('COMMIT');
	$holder->quit;
	like($cursor, qr/^\d+$/, "$label: cursor at the TRUNCATE is $cursor");
	cmp_ok($cursor, '<', $rows, "$label: the TRUNCATE came before the last batch");

	is(finish_run($name, 'worker'), 'completed', "$label: completed");
	note("$label: " . counter_counts($node, $table));
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM $table WHERE id > $cursor AND n <> 1"),
		'0',
		"$label: every row ahead of the cursor at the TRUNCATE (id > $cursor) changed exactly once");
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM $table WHERE id <= $cursor AND n > 1"),
		'0',
		"$label: no row put back behind the cursor (id <= $cursor) changed twice");
	is($node->safe_psql('postgres', "SELECT count(*) FROM $table"),
		$rows, "$label: no row lost");
	my $changed = $node->safe_psql('postgres',
		"SELECT count(*) FROM $table WHERE n = 1");
	is(mig_row($node, $name, 'processed')->{processed},
		$cursor + $changed,
		"$label: processed = $cursor before the TRUNCATE + $changed rows changed after");
}

# --- the rewrite's transaction is still open when the run starts ------------
#
# The run's setup waits for the lock (defining the migration needs the
# table too, so it is defined first); its snapshot is older than the
# rewrite.  1.0 read the high-water mark from the empty new file and
# completed at once with nothing processed.
for my $how ('worker', 'call')
{
	my $table = "c_rw_open_$how";
	my $name  = "rw_open_${how}_v1";
	my $label = "$name ($how)";
	setup_case($table, $name);

	my $holder = $node->background_psql('postgres');
	$holder->set_query_timer_restart;
	$holder->query_safe(
		"BEGIN; ALTER TABLE $table ALTER COLUMN pad TYPE varchar(200)");
	my $call = start_run($name, $how);
	ok(wait_lock_waiter($node, $table),
		"$label: the run's start waits for the rewrite's lock");
	$holder->query_safe('COMMIT');
	$holder->quit;

	is(finish_run($name, $how, $call), 'completed', "$label: completed");
	check_exactly_once($table, $name, $label);
}

# --- VACUUM FULL while the migration runs ------------------------------------
#
# VACUUM FULL cannot run in a transaction block, so its lock cannot be held
# until a batch waits for it: it runs three times at points where batches
# are done (polled), each rewriting the table under the worker.  Wherever it
# lands, every row must be changed exactly once.
{
	my ($table, $name) = ('c_rw_vacfull', 'rw_vacfull_v1');
	setup_case($table, $name);
	start_run($name, 'worker');
	for my $at ($pause_at, 2 * $pause_at, 3 * $pause_at)
	{
		ok( poll_true(
				$node,
				"SELECT batches >= $at FROM migrations WHERE name = '$name'"),
			"$name: $at batches done before VACUUM FULL");
		$node->safe_psql('postgres', "VACUUM FULL $table");
	}
	is(finish_run($name, 'worker'), 'completed', "$name: completed");
	check_exactly_once($table, $name, "$name (worker, VACUUM FULL x3)");
}

log_has_no_crash($node, 0, 'rewrite');
$node->stop;
done_testing();
