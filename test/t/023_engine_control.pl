# A cancel request (pg_cancel_backend) pauses the migration wherever its
# runner is: in a batch, or between batches.
#
# Release 1.0 paused only on a cancel that arrived inside a batch.  A cancel
# during one of the runner's sleeps between transactions (the batch_delay,
# the backoff before a retry, a throttle wait) raised its error out of the
# engine and left the migration 'running': the CALL returned 57014 but the
# launcher then started a worker that took the migration over; a cancelled
# worker died and the launcher started it again.  And a cancel that came
# after a long wait for the migration's catalog row lock was taken for the
# batch's statement_timeout (1.0 timed the whole batch, lock wait
# included), so the batch was halved and retried instead of pausing.
#
# Every case here cancels the runner only while it provably waits where the
# case says: the cancel is sent by the same statement that sees the wait in
# pg_stat_activity (wait_event_type 'Extension' is the runner's own sleep:
# with batch_delay 0 and throttling off, only a retry's backoff sleeps;
# with batch_delay 0 and no failing action, only a throttle wait), or in
# pg_locks (waitstart older than the statement_timeout).
#
# "The launcher does not take it over" is a negative: it is watched for a
# window (WATCH_SECS) while the launcher polls every 200 ms
# (migration_runner.poll_interval) and restarts a worker that exited
# without finishing 1 s (its first backoff) after that worker started; then
# another migration is started and completed, which proves that the
# launcher has looked at the catalog since, and the migrations are checked
# again.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use MigTest;

my $WATCH_SECS = 3;

my $node = mig_node('mrtap_engine_control',
	conf => "migration_runner.poll_interval = '200ms'\n"
	  . "migration_runner.max_workers = 8\n"
	  . "migration_runner.throttle_sleep = '2s'\n");

# SQL: true while every migration of @names is paused with no runner
# recorded and no worker connected for it.
sub all_paused_sql
{
	my @names = @_;
	my $list = join(', ', map { q_lit($_) } @names);
	return
	    "SELECT count(*) = " . scalar(@names)
	  . " AND bool_and(m.status = 'paused' AND m.worker_pid IS NULL)"
	  . ' AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a'
	  . " WHERE a.application_name IN (SELECT 'migration_runner: ' || x"
	  . " FROM unnest(ARRAY[$list]) x))"
	  . " FROM migrations m WHERE m.name IN ($list)";
}

# Look at $sql every 50 ms for $secs; returns (1, looks) if it printed 't'
# every time, else (0, what it printed, the migrations' state).
sub stays_true
{
	my ($sql, $secs, @names) = @_;
	my $end   = time() + $secs;
	my $looks = 0;
	while (time() < $end)
	{
		my $v = $node->safe_psql('postgres', $sql);
		if ($v ne 't')
		{
			my $state = $node->safe_psql('postgres',
				"SELECT string_agg(name || ': ' || status || ' pid '"
				  . " || coalesce(worker_pid::text, 'NULL'), '; ')"
				  . ' FROM migrations WHERE name IN ('
				  . join(', ', map { q_lit($_) } @names) . ')');
			return (0, $looks, $state);
		}
		$looks++;
		usleep(50_000);
	}
	return (1, $looks, '');
}

# A short migration run to completion by the worker: proof that the
# launcher has looked at the catalog since it was started.
my $n_other = 0;
sub run_other_migration
{
	$n_other++;
	my $t = "other$n_other";
	new_table($node, $t, 100);
	define_migration($node, "${t}_v1", $t,
		"UPDATE $t SET n = n + 1 WHERE id BETWEEN \$1 AND \$2",
		batch_size => 50, batch_delay => '0');
	$node->safe_psql('postgres', "SELECT mig_start('${t}_v1')");
	return $node->safe_psql('postgres', "SELECT mig_wait('${t}_v1', '60s')");
}

# The action of the backoff cases fails with 40001 (a transient error,
# retried after a backoff) from the batch that starts after key 20 on, for
# as long as its row in fault says so.
$node->safe_psql('postgres', q{
	CREATE TABLE fault (tag text PRIMARY KEY, active boolean NOT NULL);
	CREATE FUNCTION flaky(tag text, first int) RETURNS int
	LANGUAGE plpgsql AS $f$
	BEGIN
		IF first > 20 AND EXISTS (SELECT 1 FROM fault f WHERE f.tag = flaky.tag AND f.active) THEN
			RAISE EXCEPTION 'injected serialization failure'
				USING ERRCODE = 'serialization_failure';
		END IF;
		RETURN 1;
	END $f$;
});

# What each kind of wait needs: options of the migration, its action, and
# the condition (on migrations m) that says the runner's sleep is that one.
my $ROWS = 60;
my %KIND = (
	delay => {
		opts   => { batch_size => 10, batch_delay => '2s' },
		action => 'UPDATE %T SET n = n + 1 WHERE id BETWEEN $1 AND $2',
		cond   => 'm.batches >= 1',
		what   => 'its batch_delay (2 s) sleep',
	},
	backoff => {
		opts   => { batch_size => 10, batch_delay => '0', max_retries => 50 },
		action => "WITH s AS (SELECT flaky('%T', \$1) AS g)"
		  . ' UPDATE %T SET n = n + s.g FROM s WHERE id BETWEEN $1 AND $2',
		cond => 'm.retries >= 4',
		what => 'a retry backoff (after 4 retries or more)',
	},
	# the WAL rate is measured over 50 ms at least: batches of 20 ms
	throttle => {
		opts   => { batch_size => 10, batch_delay => '0' },
		action => 'WITH s AS (SELECT pg_sleep(0.02))'
		  . ' UPDATE %T SET n = n + 1 FROM s WHERE id BETWEEN $1 AND $2',
		cond   => q{m.throttled LIKE '%max_wal_rate%'},
		what   => 'a throttle wait (max_wal_rate)',
	});

# Define the case's migration on a new table of $ROWS rows.
sub setup_case
{
	my ($kind, $table) = @_;
	my $k = $KIND{$kind};
	new_table($node, $table, $ROWS);
	(my $action = $k->{action}) =~ s/%T/$table/g;
	$node->safe_psql('postgres',
		'INSERT INTO fault VALUES (' . q_lit($table) . ', true)');
	define_migration($node, "${table}_v1", $table, $action, %{ $k->{opts} });
	return "${table}_v1";
}

# SQL that cancels the runner of $name ($runner_cond says which process
# that is) if, at this instant, it sleeps (wait_event_type Extension) and
# the case's condition holds; prints the pid it cancelled.  MATERIALIZED:
# the conditions are checked before pg_cancel_backend is called.
sub cancel_in_sleep_sql
{
	my ($name, $kind, $runner_cond) = @_;
	return
	    'WITH w AS MATERIALIZED (SELECT a.pid FROM pg_stat_activity a, migrations m'
	  . ' WHERE m.name = ' . q_lit($name)
	  . " AND $runner_cond AND a.wait_event_type = 'Extension'"
	  . " AND $KIND{$kind}{cond})"
	  . ' SELECT pid FROM w WHERE pg_cancel_backend(pid)';
}

my @cases;    # [ kind, how, table, name ]

# --- cancels of CALL mig_run and of the worker while they sleep -----------
sub cancel_case
{
	my ($kind, $how) = @_;
	my $table = "c_${kind}_$how";
	my $name  = setup_case($kind, $table);
	my $label = "$name: cancel of $how during $KIND{$kind}{what}";
	push @cases, [ $kind, $how, $table, $name ];

	if ($how eq 'call')
	{
		my ($bg, $pid) = call_bg($node, $name);
		my $got = poll_value($node,
			cancel_in_sleep_sql($name, $kind, "a.pid = $pid"));
		is($got, $pid, "$label: CALL session (pid $pid) cancelled in its sleep");
		my $stderr = call_end($bg, $label);
		note("$label: CALL stderr: $stderr");
		like($stderr,
			qr/ERROR:\s+57014: canceling statement due to user request/,
			"$label: CALL fails with 57014 canceling statement due to user request");
	}
	else
	{
		$node->safe_psql('postgres', "SELECT mig_start('$name')");
		my $got = poll_value($node,
			cancel_in_sleep_sql($name, $kind,
				"m.worker_pid = a.pid AND a.backend_type = 'migration_runner worker'"));
		ok(defined $got, "$label: worker (pid " . ($got // '?') . ') cancelled in its sleep');
		ok(wait_pid_gone($node, $got // 0, 30), "$label: the cancelled worker exits");
	}
	my $r = mig_row($node, $name, qw(status worker_pid throttled processed));
	note("$label: status $r->{status}, worker_pid $r->{worker_pid}, processed $r->{processed}");
	is($r->{status}, 'paused', "$label: the migration is paused");
	is($r->{worker_pid}, '<null>', "$label: worker_pid is NULL");
	is($r->{throttled}, '<null>', "$label: throttled is NULL");
	cmp_ok($r->{processed}, '<', $ROWS, "$label: paused before the end");
	consistent_ok($node, $table, $name, $label);
	return;
}

for my $how ('call', 'worker')
{
	cancel_case('delay',   $how);
	cancel_case('backoff', $how);
}
ok(set_server_guc($node, 'migration_runner.max_wal_rate', '1'),
	'max_wal_rate = 1 kB/s (every batch exceeds it)');
cancel_case('throttle', $_) for ('call', 'worker');
ok(set_server_guc($node, 'migration_runner.max_wal_rate', '0'), 'max_wal_rate off');

# --- nobody takes the paused migrations over --------------------------------
my @names = map { $_->[3] } @cases;
my ($held, $looks, $state) =
  stays_true(all_paused_sql(@names), $WATCH_SECS, @names);
ok($held,
	"all six stay paused, no worker, for ${WATCH_SECS}s after the last cancel "
	  . "($looks looks; launcher polls every 200 ms)")
  or diag("changed after $looks looks: $state");
is(run_other_migration(), 'completed',
	'another migration completes meanwhile (the launcher has looked since)');
is($node->safe_psql('postgres', all_paused_sql(@names)), 't',
	'all six are still paused, with no worker, after that');

# --- resume: each completes with every row exactly once ---------------------
$node->safe_psql('postgres', 'UPDATE fault SET active = false');
for my $c (@cases)
{
	my (undef, undef, $table, $name) = @$c;
	my ($ret, undef, $err) = $node->psql('postgres', "SELECT mig_resume('$name')");
	is($ret, 0, "$name: mig_resume succeeds") or diag($err);
}
for my $c (@cases)
{
	my ($kind, $how, $table, $name) = @$c;
	is($node->safe_psql('postgres', "SELECT mig_wait('$name', '60s')"),
		'completed', "$name: completes after mig_resume");
	exactly_once_ok($node, $table, $name, $ROWS, $name);
}

# --- a cancel after a long wait for the catalog row is not a timeout -------
#
# statement_timeout is 1 s; the CALL's next batch waits for the migration's
# catalog row, which another session holds, and is cancelled once it has
# waited 1.5 s.  The cancel must pause it: not halve the batch and retry.
{
	my ($table, $name) = ('c_rowlock', 'c_rowlock_v1');
	my $label = "$name: cancel after a 1.5 s catalog row lock wait";
	new_table($node, $table, 3000);
	define_migration($node, $name, $table, undef,
		batch_size        => 20,
		batch_delay       => '0',
		slow              => 0.01,
		statement_timeout => '1s',
		lock_timeout      => '60s',
		max_retries       => 5);
	my ($bg, $pid) = call_bg($node, $name);
	ok( poll_true(
			$node, "SELECT batches >= 3 FROM migrations WHERE name = '$name'"),
		"$label: 3 batches done");

	my $holder = $node->background_psql('postgres');
	$holder->set_query_timer_restart;
	my $holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
	$holder->query_safe(
		"BEGIN; SELECT 1 FROM migrations WHERE name = '$name' FOR UPDATE");
	my $before = mig_row($node, $name,
		qw(status batches retries current_batch_size processed));
	note("$label: row locked at batches $before->{batches}, "
		  . "current_batch_size $before->{current_batch_size}");

	my $got = poll_value($node,
		    'WITH w AS MATERIALIZED (SELECT DISTINCT pid FROM pg_locks'
		  . " WHERE pid = $pid AND NOT granted"
		  . " AND waitstart < clock_timestamp() - interval '1500 ms'"
		  . " AND $holder_pid = ANY (pg_blocking_pids(pid)))"
		  . ' SELECT pid FROM w WHERE pg_cancel_backend(pid)');
	is($got, $pid,
		"$label: the CALL waited 1.5 s for the row (statement_timeout 1 s), then was cancelled");
	$holder->query_safe('ROLLBACK');
	$holder->quit;

	my $stderr = call_end($bg, $label);
	note("$label: CALL stderr: $stderr");
	like($stderr,
		qr/ERROR:\s+57014: canceling statement due to user request/,
		"$label: CALL fails with 57014 canceling statement due to user request");
	unlike($stderr, qr/statement timeout/, "$label: not reported as a statement timeout");
	my $r = mig_row($node, $name,
		qw(status worker_pid batches retries current_batch_size throttled));
	is($r->{status},     'paused', "$label: the migration is paused");
	is($r->{worker_pid}, '<null>', "$label: worker_pid is NULL");
	is($r->{retries}, $before->{retries}, "$label: not retried (retries $r->{retries})");
	is($r->{current_batch_size}, $before->{current_batch_size},
		"$label: current_batch_size unchanged ($before->{current_batch_size})");
	is($r->{batches}, $before->{batches}, "$label: no batch committed after the cancel");
	is($r->{throttled}, '<null>', "$label: throttled is NULL (no retry recorded)");
	consistent_ok($node, $table, $name, $label);

	my ($ret, undef, $err) = $node->psql('postgres', "SELECT mig_resume('$name')");
	is($ret, 0, "$name: mig_resume succeeds") or diag($err);
	is($node->safe_psql('postgres', "SELECT mig_wait('$name', '60s')"),
		'completed', "$name: completes after mig_resume");
	exactly_once_ok($node, $table, $name, 3000, $name);
}

log_has_no_crash($node, 0, 'engine control');
$node->stop;
done_testing();
