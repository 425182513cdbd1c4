# Parallel slices under control: mig_alter of parallel and batch_size while
# slices run, pause / resume / cancel of a migration running in 4 slices, a
# table rewrite and VACUUM FULL under 2 slices, and a second session's
# CALL mig_run against slices run by workers (and the other way round).
#
# The action increments a counter n: every row must end with n = 1 and the
# catalog must say that every row was processed.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use MigTest;
use SliceTest;

my $node = mig_node('mrtap_slicectl',
	conf => "migration_runner.max_workers = 8\n"
	  . "migration_runner.history_size = 1000000\n");

# the mig_alter case needs time to see 4 workers, then 1; the others less
my $rows  = 40000;
my $small = 20000;

# the action: $secs of sleep per batch, then n = n + 1 for the batch's keys
sub slow
{
	my ($t, $secs) = @_;
	my $a = $SLOW_ACTION;
	$a =~ s/%S/$secs/g;
	$a =~ s/%T/$t/g;
	return $a;
}

# A short migration in one piece run to completion by a worker: proof that
# the launcher has looked at the catalog since the moment it is called.
my $n_other = 0;
sub run_other_migration
{
	$n_other++;
	my $t = "other$n_other";
	new_table($node, $t, 200);
	define_sliced($node, "${t}_v1", $t,
		"UPDATE $t SET n = n + 1 WHERE id BETWEEN \$1 AND \$2",
		batch_size => 50);
	$node->safe_psql('postgres', "SELECT mig_start('${t}_v1')");
	return $node->safe_psql('postgres', "SELECT mig_wait('${t}_v1', '30s')");
}

sub no_worker_left
{
	return poll_true($node,
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'migration_runner worker'",
		30);
}

# For every slice that was running at $before (slices_of output) with a
# cursor, its next batch in the history (if it ran one) starts at the first
# key after that cursor: the slice went on from its cursor.
sub continued_from_cursors_ok
{
	my ($sc, $before, $label) = @_;
	my $id = mig_id($node, $sc->{name});
	my @bad;
	my $checked = 0;
	for my $s (split / /, $before)
	{
		my ($slice, $status, $batches, $processed, $cursor) = split /:/, $s;
		next unless $status eq 'running' && $cursor ne '-';
		$cursor =~ s/[{}]//g;
		my $out = $node->safe_psql('postgres', qq{
			SELECT b.first_key[1]::int || '|' || (SELECT min(id) FROM $sc->{table} WHERE id > $cursor)
			  FROM migration_batches b
			 WHERE b.migration_id = $id AND b.slice = $slice AND b.batch = $batches + 1});
		next if $out eq '';
		$checked++;
		my ($first, $expect) = split /\|/, $out;
		push @bad, "slice $slice: cursor $cursor, next batch from $first (expected $expect)"
		  if $first ne $expect;
	}
	ok(!@bad, "$label: each of the $checked slices went on from its cursor")
	  or diag(join("\n", @bad));
	return;
}

# --- 3. mig_alter: parallel 2 -> 4 -> 1, batch_size, while slices run ----
{
	my $sc    = int_key('alter_v1', 'al', 4);
	my $label = 'mig_alter';
	new_table($node, 'al', $rows);
	# about 8 s at parallel 2: new workers must come long before (mig_alter
	# wakes the launcher, as mig_start does; its poll is only a safety net)
	define_sliced($node, 'alter_v1', 'al', slow('al', 0.03),
		batch_size  => 100,
		batch_delay => '5ms',
		parallel    => 2);
	$node->safe_psql('postgres', "SELECT mig_start('alter_v1')");
	ok(wait_all_slices_busy($node, 'alter_v1', 2),
		"$label: 2 slices, each with a batch done");
	ok( poll_true($node,
			"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'migration_runner worker'"),
		"$label: one worker per slice (2)");

	$node->safe_psql('postgres', "SELECT mig_alter('alter_v1', parallel => 4)");
	is(mig_row($node, 'alter_v1', 'parallel')->{parallel}, '4',
		"$label: parallel is 4 in the catalog");
	ok( poll_true($node,
			"SELECT count(*) >= 4 FROM pg_stat_activity WHERE backend_type = 'migration_runner worker'"),
		"$label: after parallel => 4, 4 workers run");
	ok( poll_true($node,
			"SELECT count(*) FILTER (WHERE status = 'running' AND worker_pid IS NOT NULL) >= 4 "
			  . "FROM mig_slices WHERE name = 'alter_v1'"),
		"$label: after parallel => 4, 4 slices run, each with its worker");
	note("$label: slices at 4: " . slices_of($node, 'alter_v1'));
	cmp_ok(worker_count($node), '<=', 4, "$label: no more than 4 workers");
	sliced_consistent_ok($node, $sc, "$label, at 4");
	slice_invariants_ok($node, $sc, "$label, at 4");

	# batch_size: running slices take it at their next batch
	$node->safe_psql('postgres', "SELECT mig_alter('alter_v1', batch_size => 37)");
	my $t_small = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
	my $id = mig_id($node, 'alter_v1');
	ok( poll_true($node,
			"SELECT count(DISTINCT slice) >= 4 FROM migration_batches "
			  . "WHERE migration_id = $id AND keys = 37"),
		"$label: 4 slices ran batches of the new batch_size 37");

	# down to one runner, with bigger batches to finish sooner
	my $t_big = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
	$node->safe_psql('postgres',
		"SELECT mig_alter('alter_v1', parallel => 1, batch_size => 400)");
	ok( poll_true($node,
			"SELECT count(*) <= 1 FROM pg_stat_activity WHERE backend_type = 'migration_runner worker'"),
		"$label: after parallel => 1 and the batches in flight, at most 1 worker");

	# from now on until the end, never more than one worker and never more
	# than one slice with a runner
	my ($max_workers, $max_runners, $samples) = (0, 0, 0);
	my $deadline = time() + $WAIT_SECS;
	my $status;
	while (1)
	{
		my $out = $node->safe_psql('postgres', q{
			SELECT (SELECT count(*) FROM pg_stat_activity
					 WHERE backend_type = 'migration_runner worker') || '|' ||
				   (SELECT count(*) FROM mig_slices s JOIN pg_stat_activity a ON a.pid = s.worker_pid
					 WHERE s.name = 'alter_v1' AND s.status = 'running') || '|' ||
				   (SELECT status FROM migrations WHERE name = 'alter_v1')});
		my ($w, $r, $st) = split /\|/, $out;
		$samples++;
		$max_workers = $w if $w > $max_workers;
		$max_runners = $r if $r > $max_runners;
		$status = $st;
		last if $st ne 'running' || time() > $deadline;
		usleep(20_000);
	}
	is($status, 'completed', "$label: completed with parallel 1");
	cmp_ok($max_workers, '<=', 1,
		"$label: with parallel 1, at most one worker ($samples samples)");
	cmp_ok($max_runners, '<=', 1,
		"$label: with parallel 1, at most one slice with a runner");
	exactly_once_ok($node, 'al', 'alter_v1', $rows, $label);
	history_ok($node, $sc, $rows, $label);
	my $big = $node->safe_psql('postgres', qq{
		SELECT string_agg(slice || ':' || batch || ' (' || keys || ')', ' ')
		  FROM (SELECT slice, batch, keys,
					   row_number() OVER (PARTITION BY slice ORDER BY batch) AS nth
				  FROM migration_batches
				 WHERE migration_id = $id AND keys > 37
				   AND started_at > '$t_small' AND started_at < '$t_big') x
		 WHERE nth > 1});
	is($big, '',
		"$label: after batch_size => 37, no slice ran more than one batch of the old size");
}

# --- 3b. parallel 1 -> 4 while the migration runs as one piece -----------
#
# The keys left are split into slices at the next batch; the batches done
# as one piece stay done.
{
	my $sc    = int_key('split_late_v1', 'sl', 4);
	$sc->{piece_first} = 1;
	my $label = 'parallel raised while one piece';
	new_table($node, 'sl', $small);
	define_sliced($node, 'split_late_v1', 'sl', slow('sl', 0.01),
		batch_size  => 100,
		batch_delay => '5ms');
	$node->safe_psql('postgres', "SELECT mig_start('split_late_v1')");
	ok( poll_true($node,
			"SELECT batches >= 20 FROM migrations WHERE name = 'split_late_v1'"),
		"$label: 20 batches done as one piece");
	$node->safe_psql('postgres', "SELECT mig_alter('split_late_v1', parallel => 4)");
	ok( poll_true($node,
			"SELECT count(*) >= 2 FROM mig_slices WHERE name = 'split_late_v1'"),
		"$label: the keys left are split into slices");
	note("$label: " . slices_of($node, 'split_late_v1'));
	sliced_consistent_ok($node, $sc, "$label, split");
	slice_invariants_ok($node, $sc, "$label, split");
	is($node->safe_psql('postgres', "SELECT mig_wait('split_late_v1', '60s')"),
		'completed', "$label: completed");
	exactly_once_ok($node, 'sl', 'split_late_v1', $small, $label);
	history_ok($node, $sc, $small, $label);
}

# --- 4a. pause and resume with 4 slices ------------------------------------
{
	my $sc    = int_key('pause_v1', 'pz', 4);
	my $label = 'pause 4 slices';
	new_table($node, 'pz', $small);
	define_sliced($node, 'pause_v1', 'pz', slow('pz', 0.01),
		batch_size  => 100,
		batch_delay => '5ms',
		parallel    => 4);
	$node->safe_psql('postgres', "SELECT mig_start('pause_v1')");
	ok(wait_all_slices_busy($node, 'pause_v1', 4),
		"$label: 4 slices, each with a batch done");

	$node->safe_psql('postgres', "SELECT mig_pause('pause_v1')");
	is(mig_row($node, 'pause_v1', 'status')->{status}, 'paused',
		"$label: status is paused");
	ok(no_worker_left(), "$label: every worker exits");
	my $before = slices_of($node, 'pause_v1');
	note("$label: slices when paused: $before");
	sliced_consistent_ok($node, $sc, "$label, paused");
	slice_invariants_ok($node, $sc, "$label, paused");
	my $st = $node->safe_psql('postgres',
		"SELECT processed || '/' || batches FROM mig_status WHERE name = 'pause_v1'");
	my ($processed) = split m{/}, $st;
	cmp_ok($processed, '<', $small, "$label: paused before the end");

	is(run_other_migration(), 'completed',
		"$label: another migration completes meanwhile (the launcher has run)");
	ok(no_worker_left(), "$label: no worker after the other migration");
	is(slices_of($node, 'pause_v1'), $before,
		"$label: no slice moved while paused");
	is( $node->safe_psql('postgres',
			"SELECT processed || '/' || batches FROM mig_status WHERE name = 'pause_v1'"),
		$st, "$label: processed and batches did not change while paused");
	is(mig_row($node, 'pause_v1', 'status')->{status}, 'paused',
		"$label: still paused");

	$node->safe_psql('postgres', "SELECT mig_resume('pause_v1')");
	is($node->safe_psql('postgres', "SELECT mig_wait('pause_v1', '60s')"),
		'completed', "$label: completed after mig_resume");
	exactly_once_ok($node, 'pz', 'pause_v1', $small, $label);
	history_ok($node, $sc, $small, $label);
	continued_from_cursors_ok($sc, $before, $label);
}

# --- 4b. cancel with 4 slices, then mig_start resumes it -------------------
{
	my $sc    = int_key('cancel_v1', 'cz', 4);
	my $label = 'cancel 4 slices';
	new_table($node, 'cz', $small);
	define_sliced($node, 'cancel_v1', 'cz', slow('cz', 0.01),
		batch_size  => 100,
		batch_delay => '5ms',
		parallel    => 4);
	$node->safe_psql('postgres', "SELECT mig_start('cancel_v1')");
	ok(wait_all_slices_busy($node, 'cancel_v1', 4),
		"$label: 4 slices, each with a batch done");

	$node->safe_psql('postgres', "SELECT mig_cancel('cancel_v1')");
	is(mig_row($node, 'cancel_v1', 'status')->{status}, 'cancelled',
		"$label: status is cancelled");
	ok(no_worker_left(), "$label: every worker exits");
	is($node->safe_psql('postgres', "SELECT mig_wait('cancel_v1', '10s')"),
		'cancelled', "$label: mig_wait returns cancelled");
	my $before = slices_of($node, 'cancel_v1');
	note("$label: slices when cancelled: $before");
	sliced_consistent_ok($node, $sc, "$label, cancelled");
	slice_invariants_ok($node, $sc, "$label, cancelled");
	my $st = $node->safe_psql('postgres',
		"SELECT processed || '/' || batches FROM mig_status WHERE name = 'cancel_v1'");
	my ($processed) = split m{/}, $st;
	cmp_ok($processed, '<', $small, "$label: cancelled before the end");

	is(run_other_migration(), 'completed',
		"$label: another migration completes meanwhile");
	ok(no_worker_left(), "$label: no worker after the other migration");
	is(slices_of($node, 'cancel_v1'), $before,
		"$label: no slice moved after the cancel");
	is( $node->safe_psql('postgres',
			"SELECT processed || '/' || batches FROM mig_status WHERE name = 'cancel_v1'"),
		$st, "$label: processed and batches did not change after the cancel");
	is( mig_row($node, 'cancel_v1', 'completed_at')->{completed_at},
		'<null>', "$label: no completed_at");

	# a cancelled managed migration started again keeps its progress and
	# goes on from its cursors
	$node->safe_psql('postgres', "SELECT mig_start('cancel_v1')");
	is($node->safe_psql('postgres', "SELECT mig_wait('cancel_v1', '60s')"),
		'completed', "$label: mig_start after the cancel completes it");
	exactly_once_ok($node, 'cz', 'cancel_v1', $small, "$label, started again");
	history_ok($node, $sc, $small, "$label, started again");
}

# --- 4b'. a batch of one slice fails while the others run -----------------
#
# The action fails (division by zero) on the batch holding key 16050, in the
# last of 4 slices: the migration is failed with that error, every runner
# stops, and what committed is consistent.  Once the cause is gone,
# mig_start resumes every slice from its cursor: exactly once in the end.
{
	my $sc    = int_key('fail_v1', 'fz', 4);
	my $label = 'failure in a slice';
	new_table($node, 'fz', $small);
	$node->safe_psql('postgres',
		'CREATE TABLE bad (id int); INSERT INTO bad VALUES (16050)');
	define_sliced($node, 'fail_v1', 'fz',
		'WITH s AS (SELECT pg_sleep(0.01)), '
		  . 'b AS (SELECT 1 / CASE WHEN EXISTS (SELECT FROM bad WHERE bad.id BETWEEN $1 AND $2) '
		  . 'THEN 0 ELSE 1 END AS x) '
		  . 'UPDATE fz SET n = n + b.x FROM s, b WHERE id BETWEEN $1 AND $2',
		batch_size  => 100,
		batch_delay => '5ms',
		parallel    => 4);
	$node->safe_psql('postgres', "SELECT mig_start('fail_v1')");
	is($node->safe_psql('postgres', "SELECT mig_wait('fail_v1', '60s')"),
		'failed', "$label: the migration failed");
	like(mig_row($node, 'fail_v1', 'error')->{error},
		qr/division by zero/, "$label: with the action's error");
	ok(no_worker_left(), "$label: every worker exits");
	my $before = slices_of($node, 'fail_v1');
	note("$label: slices when failed: $before");
	sliced_consistent_ok($node, $sc, "$label, failed");
	slice_invariants_ok($node, $sc, "$label, failed");
	is($node->safe_psql('postgres', 'SELECT n FROM fz WHERE id = 16050'),
		'0', "$label: the failed batch was rolled back");

	$node->safe_psql('postgres', 'DELETE FROM bad');
	$node->safe_psql('postgres', "SELECT mig_start('fail_v1')");
	is($node->safe_psql('postgres', "SELECT mig_wait('fail_v1', '60s')"),
		'completed', "$label: mig_start after the fix completes it");
	exactly_once_ok($node, 'fz', 'fail_v1', $small, $label);
	history_ok($node, $sc, $small, $label);
	continued_from_cursors_ok($sc, $before, $label);
}

# --- 4c. mig_reset of a migration stopped half way through its slices ----
#
# mig_reset starts over from the first key: no slice of the old run may
# survive it (their cursors would skip keys, their counters would add to
# processed).  Run with CALL mig_run, which runs the slices one after
# another: the first slices are done, the next one half way, when it is
# paused and reset.  Run again, every row is changed once more: twice the
# rows the first run did, once the others.
{
	my $sc    = int_key('reset_v1', 'rz', 4);
	my $label = 'reset of slices';
	new_table($node, 'rz', $small);
	define_sliced($node, 'reset_v1', 'rz', slow('rz', 0.005),
		batch_size  => 100,
		batch_delay => '1ms',
		parallel    => 4);
	my ($bg) = call_bg($node, 'reset_v1');
	ok( poll_true($node,
			"SELECT batches >= 75 FROM mig_status WHERE name = 'reset_v1'"),
		"$label: 75 batches done by the CALL");
	$node->safe_psql('postgres', "SELECT mig_pause('reset_v1')");
	call_end($bg, $label);
	note("$label: slices when paused: " . slices_of($node, 'reset_v1'));
	my $first = $node->safe_psql('postgres', 'SELECT count(*) FROM rz WHERE n = 1');
	is( $node->safe_psql('postgres',
			"SELECT processed FROM mig_status WHERE name = 'reset_v1'"),
		$first, "$label: the first run changed $first rows, as processed says");

	$node->safe_psql('postgres', "SELECT mig_reset('reset_v1')");
	is( $node->safe_psql('postgres',
			"SELECT status || '/' || processed || '/' || batches FROM mig_status WHERE name = 'reset_v1'"),
		'pending/0/0', "$label: after mig_reset, pending with nothing processed");
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM mig_slices WHERE name = 'reset_v1'"),
		'0', "$label: after mig_reset, no slice of the old run is left");

	($bg) = call_bg($node, 'reset_v1');
	my $stderr = call_end($bg, $label);
	unlike($stderr, qr/ERROR/, "$label: the second CALL returned without an error");
	is(mig_row($node, 'reset_v1', 'status')->{status}, 'completed',
		"$label: completed after the reset");
	is( $node->safe_psql('postgres',
			"SELECT count(*) FILTER (WHERE n = 0) || '/' || count(*) FILTER (WHERE n = 1)"
			  . " || '/' || count(*) FILTER (WHERE n = 2) || '/' || count(*) FILTER (WHERE n > 2) FROM rz"),
		'0/' . ($small - $first) . "/$first/0",
		"$label: every row changed once by the run after the reset");
	is(mig_row($node, 'reset_v1', 'processed')->{processed},
		$small, "$label: processed = $small");
	history_ok($node, $sc, $small, "$label, run after the reset");
}

# --- 5. a rewrite of the table and VACUUM FULL under 2 slices -------------
#
# As in 020_rewrite_midrun: the rewrite's lock is held until a batch waits
# for it (polled in pg_locks), then committed; VACUUM FULL runs at three
# points where batches are done.  Wherever they land, every row is changed
# exactly once.
{
	my $drows = 20000;
	my @cases = (
		[ 'd_type', 'ALTER TABLE d_type ALTER COLUMN pad TYPE varchar(200)' ],
		[ 'd_ntype', 'ALTER TABLE d_ntype ALTER COLUMN n TYPE bigint' ],
		[ 'd_vacfull', undef ]);
	for my $case (@cases)
	{
		my ($t, $rewrite) = @$case;
		my $name  = "${t}_v1";
		my $label = "$name (2 slices, " . ($rewrite // 'VACUUM FULL x3') . ')';
		my $sc    = {
			name     => $name,
			table    => $t,
			parallel => 2,
			key      => 'id',
			cast     => sub { "$_[0]\[1]::bigint" },
		};
		$node->safe_psql('postgres', qq{
			CREATE TABLE $t (id bigint PRIMARY KEY, pad text, n int NOT NULL DEFAULT 0);
			INSERT INTO $t SELECT i, 'x', 0 FROM generate_series(1, $drows) i;
			ANALYZE $t;
		});
		define_sliced($node, $name, $t,
			"UPDATE $t SET n = n + 1 WHERE id BETWEEN \$1 AND \$2",
			batch_size   => 250,
			batch_delay  => '50ms',
			lock_timeout => '5s',
			parallel     => 2);
		$node->safe_psql('postgres', "SELECT mig_start('$name')");
		ok(wait_all_slices_busy($node, $name, 2),
			"$label: 2 slices, each with a batch done");
		if (defined $rewrite)
		{
			my $holder = $node->background_psql('postgres');
			$holder->set_query_timer_restart;
			$holder->query_safe("BEGIN; $rewrite");
			ok(wait_lock_waiter($node, $t),
				"$label: a batch waits for the rewrite's lock");
			is(mig_row($node, $name, 'status')->{status},
				'running', "$label: still running at the rewrite");
			note("$label: rewrite commits at " . slices_of($node, $name));
			$holder->query_safe('COMMIT');
			$holder->quit;
		}
		else
		{
			for my $at (6, 12, 18)
			{
				ok( poll_true(
						$node,
						"SELECT batches >= $at FROM mig_status WHERE name = '$name'"),
					"$label: $at batches done before VACUUM FULL");
				$node->safe_psql('postgres', "VACUUM FULL $t");
			}
		}
		is($node->safe_psql('postgres', "SELECT mig_wait('$name', '60s')"),
			'completed', "$label: completed");
		note("$label: " . counter_counts($node, $t));
		exactly_once_ok($node, $t, $name, $drows, $label);
		history_ok($node, $sc, $drows, $label);
	}
}

# --- 6a. CALL mig_run while workers run the slices -------------------------
{
	my $sc    = int_key('hostile_v1', 'hc', 4);
	my $label = 'CALL against workers';
	new_table($node, 'hc', $small);
	define_sliced($node, 'hostile_v1', 'hc', slow('hc', 0.01),
		batch_size  => 100,
		batch_delay => '5ms',
		parallel    => 4);
	$node->safe_psql('postgres', "SELECT mig_start('hostile_v1')");
	ok(wait_all_slices_busy($node, 'hostile_v1', 4),
		"$label: 4 slices, each with a batch done");
	my ($bg) = call_bg($node, 'hostile_v1');
	my $stderr = call_end($bg, $label);
	note("$label: the CALL said: $stderr");
	if ($stderr =~ /ERROR/)
	{
		like($stderr, qr/is being run by another process/,
			"$label: the CALL is refused because workers run the slices");
	}
	else
	{
		is(mig_row($node, 'hostile_v1', 'status')->{status},
			'completed', "$label: the CALL ran without error and the migration is completed");
	}
	is($node->safe_psql('postgres', "SELECT mig_wait('hostile_v1', '60s')"),
		'completed', "$label: completed");
	exactly_once_ok($node, 'hc', 'hostile_v1', $small, $label);
	history_ok($node, $sc, $small, $label);
}

# --- 6b. CALL mig_run of a pending migration in 4 slices, launcher running --
#
# The CALL marks the migration running; the launcher must not start workers
# for the slices the CALL has not reached yet (never two runners on one
# migration), and the CALL runs them all, one after another.
{
	my $sc    = int_key('callrun_v1', 'cr', 4);
	my $label = 'CALL runs the slices';
	new_table($node, 'cr', $small);
	define_sliced($node, 'callrun_v1', 'cr', slow('cr', 0.005),
		batch_size  => 200,
		batch_delay => '1ms',
		parallel    => 4);
	my ($bg, $callpid) = call_bg($node, 'callrun_v1');
	my ($max_workers, $max_others, $samples) = (0, 0, 0);
	my $deadline = time() + $WAIT_SECS;
	my $status;
	while (1)
	{
		my $out = $node->safe_psql('postgres', qq{
			SELECT (SELECT count(*) FROM pg_stat_activity
					 WHERE backend_type = 'migration_runner worker') || '|' ||
				   (SELECT count(*) FROM mig_slices
					 WHERE name = 'callrun_v1' AND worker_pid <> $callpid) || '|' ||
				   (SELECT status FROM migrations WHERE name = 'callrun_v1')});
		my ($w, $o, $st) = split /\|/, $out;
		$samples++;
		$max_workers = $w if $w > $max_workers;
		$max_others  = $o if $o > $max_others;
		$status = $st;
		last if $st ne 'running' && $st ne 'pending';
		last if time() > $deadline;
		usleep(20_000);
	}
	my $stderr = call_end($bg, $label);
	unlike($stderr, qr/ERROR/, "$label: the CALL returned without an error")
	  or diag($stderr);
	is($status, 'completed', "$label: completed");
	is("$max_workers/$max_others", '0/0',
		"$label: no worker ran, no slice had another runner than the CALL "
		  . "($samples samples)");
	exactly_once_ok($node, 'cr', 'callrun_v1', $small, $label);
	history_ok($node, $sc, $small, $label);
}

# --- 6c. CALL mig_run paused half way, resumed by workers -----------------
{
	my $sc    = int_key('handover_v1', 'ho', 4);
	my $label = 'CALL then workers';
	new_table($node, 'ho', $small);
	define_sliced($node, 'handover_v1', 'ho', slow('ho', 0.01),
		batch_size  => 100,
		batch_delay => '5ms',
		parallel    => 4);
	my ($bg) = call_bg($node, 'handover_v1');
	ok( poll_true($node,
			"SELECT batches >= 30 FROM mig_status WHERE name = 'handover_v1'"),
		"$label: 30 batches done by the CALL");
	$node->safe_psql('postgres', "SELECT mig_pause('handover_v1')");
	my $stderr = call_end($bg, $label);
	like($stderr, qr/stopped because it is now paused/,
		"$label: the CALL stops because the migration is paused");
	unlike($stderr, qr/ERROR/, "$label: ... without an error");
	my $before = slices_of($node, 'handover_v1');
	note("$label: slices when paused: $before");
	sliced_consistent_ok($node, $sc, "$label, paused");
	slice_invariants_ok($node, $sc, "$label, paused");
	$node->safe_psql('postgres', "SELECT mig_resume('handover_v1')");
	ok( poll_true($node,
			"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'migration_runner worker'"
			  . " OR (SELECT status FROM migrations WHERE name = 'handover_v1') = 'completed'"),
		"$label: workers take over after mig_resume");
	is($node->safe_psql('postgres', "SELECT mig_wait('handover_v1', '60s')"),
		'completed', "$label: completed by the workers");
	exactly_once_ok($node, 'ho', 'handover_v1', $small, $label);
	history_ok($node, $sc, $small, $label);
	continued_from_cursors_ok($sc, $before, $label);
}

log_has_no_crash($node, 0, 'slice control');
$node->stop;
done_testing();
