# Errors that no guarded step of the engine catches: a commit that fails
# (postgres_fdw commits the remote transaction of what the action wrote
# there, or a deferred trigger fires), a cancel request that arrives during
# a commit, and the runner's own writes when a run ends (the pause on a
# cancel request, forgetting its pid).  Whoever runs the migration, CALL
# mig_run or the worker, such an error must leave it failed with the error
# (paused, for a cancel request; as it was, when someone had already
# stopped it) and worker_pid NULL.
#
# Before this:
#   - CALL mig_run let every one of these errors out of the CALL and left
#     the migration 'running' with worker_pid = the session's pid (or, when
#     someone had paused it, paused with that pid); the launcher later took
#     a running one over and failed it, or ran it to completion;
#   - a worker cancelled during a commit logged "paused on a cancel request"
#     but left the migration 'running', so the launcher started it again;
#   - a worker kept only the message of such an error (no DETAIL, HINT,
#     CONTEXT), said "outside a batch" of a batch's own commit, and left
#     worker_pid set when its forget-pid write failed.
#
# The runner's catalog writes are made to fail by a superuser's trigger on
# the catalog, standing in for any error of those writes (a lock timeout,
# a full disk), as test 023_engine_robustness does for the throttle's.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use MigTest;

my $node = mig_node('mrtap_run_end_errors',
	conf => "migration_runner.poll_interval = '200ms'\n"
	  . "migration_runner.max_workers = 8\n");

my $ROWS = 100;    # batches of 10; the bad row 55 is in batch 6

# CALL mig_run($name), VERBOSITY verbose; waits for it and returns its
# stderr, or '<CALL did not return>' at the deadline.
sub call_run
{
	my ($name) = @_;
	my ($timed_out, $err);
	(undef, undef, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nCALL mig_run(" . q_lit($name) . ');',
		timeout   => $MigTest::WAIT_SECS,
		timed_out => \$timed_out);
	return '<CALL did not return>' if $timed_out;
	return $err // '';
}

# Start the migration with $how: 'worker' (mig_start) or 'call' (CALL
# mig_run in a background session).  Returns the session (undef for the
# worker) and, for a CALL, its pid.
sub start_run
{
	my ($name, $how) = @_;
	return call_bg($node, $name) if $how eq 'call';
	$node->safe_psql('postgres', "SELECT mig_start('$name')");
	return (undef, undef);
}

# SQL naming the runner process of $name in pg_stat_activity a (joined
# with migrations m): the CALL's session, or the worker the catalog names.
sub runner_cond
{
	my ($how, $pid) = @_;
	return $how eq 'call'
	  ? "a.pid = $pid"
	  : "m.worker_pid = a.pid AND a.backend_type = 'migration_runner worker'";
}

# ===========================================================================
# 1. A commit that fails: the migration fails with the error
# ===========================================================================
#
# The action runs as a security-restricted operation, in which PostgreSQL
# refuses to queue a deferred trigger (42501, inside the batch): a deferred
# constraint of the migrated table cannot fail at the batch's commit.  What
# does fail there:
#   fdw  the action archives the rows into a postgres_fdw foreign table
#        whose remote table has a deferred unique constraint, which row 55
#        violates: postgres_fdw commits the remote transaction in the local
#        commit's pre-commit step, so the batch's commit fails with 23505;
#   cat  a superuser's deferred constraint trigger on the catalog raises
#        (23514, with DETAIL and HINT) at the commit of the migration's
#        batch 6, standing in for any other error at commit (another
#        extension's pre-commit callback, a NOTIFY queue that is full).
# Either way the 5 batches before stay committed and batch 6 is rolled
# back, data and catalog together.
$node->safe_psql('postgres', q{
	CREATE TABLE public.commit_faults (name text PRIMARY KEY, kind text NOT NULL);
	CREATE FUNCTION public.commit_fault() RETURNS trigger
	LANGUAGE plpgsql AS $f$
	DECLARE
		k text;
	BEGIN
		SELECT kind INTO k FROM public.commit_faults WHERE name = NEW.name;
		IF k = 'fail' THEN
			RAISE EXCEPTION 'injected failure at the commit of batch %', NEW.batches
				USING ERRCODE = 'check_violation',
					  DETAIL = 'raised by a deferred trigger',
					  HINT = 'delete the row of commit_faults';
		ELSIF k = 'wait' THEN
			PERFORM pg_advisory_xact_lock_shared(4242);
		END IF;
		RETURN NULL;
	END $f$;
	CREATE CONSTRAINT TRIGGER commit_fault AFTER UPDATE ON migrations
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
		WHEN (NEW.batches = 6 AND OLD.batches = 5)
		EXECUTE FUNCTION public.commit_fault();
});

my $have_fdw = $node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_available_extensions WHERE name = 'postgres_fdw'});
if ($have_fdw)
{
	$node->safe_psql('postgres', 'CREATE EXTENSION postgres_fdw;'
		  . ' CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS ('
		  . 'host ' . q_lit($node->host) . ', port ' . q_lit($node->port)
		  . q{, dbname 'postgres');}
		  . ' CREATE USER MAPPING FOR PUBLIC SERVER loopback;');
}

my %COMMIT = (
	fdw => {
		setup => 'CREATE TABLE arch_%T (id int, n int,'
		  . ' UNIQUE (id) DEFERRABLE INITIALLY DEFERRED);'
		  . ' INSERT INTO arch_%T VALUES (55, -1);'
		  . ' CREATE FOREIGN TABLE arch_%T_ft (id int, n int)'
		  . q{ SERVER loopback OPTIONS (table_name 'arch_%T')},
		action => 'WITH u AS (UPDATE %T SET n = n + 1 WHERE id BETWEEN $1 AND $2'
		  . ' RETURNING id, n) INSERT INTO arch_%T_ft SELECT id, n FROM u',
		state   => '23505',
		message => 'duplicate key value violates unique constraint',
		detail  => qr/^Key \(id\)=\(55\) already exists\.$/,
		hint    => qr/^<null>$/,
		undo    => 'DELETE FROM arch_%T WHERE n = -1',
	},
	cat => {
		setup  => q{INSERT INTO commit_faults VALUES ('%T_v1', 'fail')},
		action => 'UPDATE %T SET n = n + 1 WHERE id BETWEEN $1 AND $2',
		state   => '23514',
		message => 'injected failure at the commit of batch 6',
		detail  => qr/^raised by a deferred trigger$/,
		hint    => qr/^delete the row of commit_faults$/,
		undo    => q{DELETE FROM commit_faults WHERE name = '%T_v1'},
	});

sub commit_case
{
	my ($kind, $how) = @_;
	my $k     = $COMMIT{$kind};
	my $table = "${kind}_$how";
	my $name  = "${table}_v1";
	my $label = "$name ($how; the commit of batch 6 fails)";
	new_table($node, $table, $ROWS);
	(my $setup  = $k->{setup})  =~ s/%T/$table/g;
	(my $action = $k->{action}) =~ s/%T/$table/g;
	$node->safe_psql('postgres', $setup);
	define_migration($node, $name, $table, $action,
		batch_size => 10, batch_delay => '0');

	my $off = -s $node->logfile;
	if ($how eq 'call')
	{
		my $stderr = call_run($name);
		note("$label: CALL stderr: $stderr");
		like($stderr,
			qr/ERROR:\s+$k->{state}:\s+migration "\Q$name\E" failed/,
			"$label: CALL fails with SQLSTATE $k->{state}, naming the migration");
		like($stderr, qr/DETAIL:.*\Q$k->{message}\E/s,
			"$label: the CALL's DETAIL has the error");
	}
	else
	{
		start_run($name, 'worker');
	}
	is(wait_not_running($node, $name), 'failed', "$label: the migration is failed");
	my $r = mig_row($node, $name,
		qw(error error_detail error_hint worker_pid processed batches));
	note("$label: error: $r->{error}; detail: $r->{error_detail}");
	like($r->{error}, qr/\Q$k->{message}\E.*\(SQLSTATE $k->{state}\) at commit/,
		"$label: error has the message, SQLSTATE $k->{state} and 'at commit'");
	like($r->{error_detail}, $k->{detail}, "$label: error_detail is the error's DETAIL");
	like($r->{error_hint}, $k->{hint}, "$label: error_hint is the error's HINT");
	is($r->{worker_pid}, '<null>', "$label: worker_pid is NULL");
	is("$r->{processed}/$r->{batches}", '50/5',
		"$label: the 5 batches before stay committed, batch 6 is rolled back");
	consistent_ok($node, $table, $name, $label);
	ok(wait_log($node, $off, qr/LOG:\s+migration_runner: migration "\Q$name\E" failed/),
		"$label: a LOG line names the failed migration");

	# fix the cause: the run resumes after batch 5 and completes
	(my $undo = $k->{undo}) =~ s/%T/$table/g;
	$node->safe_psql('postgres', $undo);
	if ($how eq 'call')
	{
		my $stderr = call_run($name);
		unlike($stderr, qr/ERROR/, "$label: CALL mig_run again succeeds")
		  or diag($stderr);
	}
	else
	{
		$node->safe_psql('postgres', "SELECT mig_start('$name')");
	}
	is($node->safe_psql('postgres', "SELECT mig_wait('$name', '60s')"),
		'completed', "$label: completes once the cause is fixed");
	exactly_once_ok($node, $table, $name, $ROWS, $label);
	return;
}

my @kinds = $have_fdw ? qw(fdw cat) : qw(cat);
note('postgres_fdw is not available: its cases are skipped') unless $have_fdw;
commit_case($_, 'worker') for @kinds;

# the CALL's cases with the launcher off, so that what is looked at is what
# the CALL left, not what a worker that took the migration over did
ok(set_server_guc($node, 'migration_runner.enabled', 'off'), 'launcher disabled');
commit_case($_, 'call') for @kinds;
ok(set_server_guc($node, 'migration_runner.enabled', 'on'), 'launcher enabled');

# ===========================================================================
# 2. A cancel request during a commit pauses the migration
# ===========================================================================
#
# The catalog's deferred trigger waits, at the commit of batch 6, for an
# advisory lock the test holds: the runner is cancelled while it waits
# there.
sub cancel_at_commit_case
{
	my ($how) = @_;
	my $table = "gate_$how";
	my $name  = "${table}_v1";
	my $label = "$name ($how; cancelled during the commit of batch 6)";
	new_table($node, $table, $ROWS);
	$node->safe_psql('postgres', "INSERT INTO commit_faults VALUES ('$name', 'wait')");
	define_migration($node, $name, $table,
		"UPDATE $table SET n = n + 1 WHERE id BETWEEN \$1 AND \$2",
		batch_size => 10, batch_delay => '0', lock_timeout => '5min');

	my $holder = $node->background_psql('postgres');
	$holder->set_query_timer_restart;
	$holder->query_safe('SELECT pg_advisory_lock(4242)');
	my ($bg, $pid) = start_run($name, $how);
	my $got = poll_value($node,
		    'WITH w AS MATERIALIZED (SELECT DISTINCT a.pid'
		  . ' FROM pg_stat_activity a, migrations m, pg_locks l'
		  . ' WHERE m.name = ' . q_lit($name) . ' AND ' . runner_cond($how, $pid)
		  . " AND l.pid = a.pid AND l.locktype = 'advisory' AND l.objid = 4242"
		  . ' AND NOT l.granted)'
		  . ' SELECT pid FROM w WHERE pg_cancel_backend(pid)');
	ok(defined $got, "$label: the runner waits in the commit and is cancelled");
	if ($how eq 'call')
	{
		my $stderr = call_end($bg, $label);
		note("$label: CALL stderr: $stderr");
		like($stderr,
			qr/ERROR:\s+57014: canceling statement due to user request/,
			"$label: CALL fails with 57014 canceling statement due to user request");
	}
	else
	{
		ok(wait_pid_gone($node, $got // 0, 30), "$label: the cancelled worker exits");
	}
	$node->safe_psql('postgres', "DELETE FROM commit_faults WHERE name = '$name'");
	$holder->query_safe('SELECT pg_advisory_unlock(4242)');
	$holder->quit;

	is(wait_not_running($node, $name, 20), 'paused', "$label: the migration is paused");
	my $r = mig_row($node, $name, qw(worker_pid processed batches));
	is($r->{worker_pid}, '<null>', "$label: worker_pid is NULL");
	is("$r->{processed}/$r->{batches}", '50/5', "$label: batch 6 was rolled back");
	consistent_ok($node, $table, $name, $label);
	return $name;
}

my @paused = (cancel_at_commit_case('worker'));
ok(set_server_guc($node, 'migration_runner.enabled', 'off'), 'launcher disabled');
push @paused, cancel_at_commit_case('call');
ok(set_server_guc($node, 'migration_runner.enabled', 'on'), 'launcher enabled');
# a paused migration stays paused: another migration run to completion
# since proves the launcher has looked at the catalog meanwhile
new_table($node, 'other', 50);
define_migration($node, 'other_v1', 'other',
	'UPDATE other SET n = n + 1 WHERE id BETWEEN $1 AND $2', batch_size => 10);
$node->safe_psql('postgres', "SELECT mig_start('other_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('other_v1', '60s')"),
	'completed', 'another migration completes meanwhile');
for my $name (@paused)
{
	is(mig_row($node, $name, 'status')->{status}, 'paused',
		"$name: still paused, nobody took it over");
	$node->psql('postgres', "SELECT mig_resume('$name')");
	is($node->safe_psql('postgres', "SELECT mig_wait('$name', '60s')"),
		'completed', "$name: completes after mig_resume");
	(my $table = $name) =~ s/_v1$//;
	exactly_once_ok($node, $table, $name, $ROWS, $name);
}

# ===========================================================================
# 3. The runner's own writes at the end of a run fail
# ===========================================================================
#
# pw_*: the pause that a cancel request asks for cannot be written (every
# time): the migration fails with that error instead.
# fp_*: the write that clears worker_pid after someone paused the
# migration fails once: the pause stands, and worker_pid is cleared.
$node->safe_psql('postgres', q{
	CREATE SEQUENCE public.forget_failures;
	CREATE FUNCTION inject_pause_failure() RETURNS trigger
	LANGUAGE plpgsql AS $f$
	BEGIN
		RAISE EXCEPTION 'injected failure of the pause write';
	END $f$;
	CREATE TRIGGER inject_pause_failure BEFORE UPDATE ON migrations
		FOR EACH ROW WHEN (NEW.name LIKE 'pw\_%'
			AND OLD.status = 'running' AND NEW.status = 'paused')
		EXECUTE FUNCTION inject_pause_failure();
	CREATE FUNCTION inject_forget_failure() RETURNS trigger
	LANGUAGE plpgsql AS $f$
	BEGIN
		IF nextval('public.forget_failures') = 1 THEN
			RAISE EXCEPTION 'injected failure of the forget write';
		END IF;
		RETURN NEW;
	END $f$;
	CREATE TRIGGER inject_forget_failure BEFORE UPDATE ON migrations
		FOR EACH ROW WHEN (NEW.name LIKE 'fp\_%'
			AND OLD.status = 'paused' AND NEW.status = 'paused'
			AND OLD.worker_pid IS NOT NULL AND NEW.worker_pid IS NULL)
		EXECUTE FUNCTION inject_forget_failure();
});

sub pause_write_case
{
	my ($how) = @_;
	my $table = "pw_$how";
	my $name  = "${table}_v1";
	my $label = "$name ($how; cancelled, its pause write fails)";
	new_table($node, $table, $ROWS);
	define_migration($node, $name, $table,
		"UPDATE $table SET n = n + 1 WHERE id BETWEEN \$1 AND \$2",
		batch_size => 10, batch_delay => '1h');
	my ($bg, $pid) = start_run($name, $how);
	# cancelled in its batch_delay sleep: the runner then writes the pause
	my $got = poll_value($node,
		    'WITH w AS MATERIALIZED (SELECT a.pid FROM pg_stat_activity a, migrations m'
		  . ' WHERE m.name = ' . q_lit($name) . ' AND ' . runner_cond($how, $pid)
		  . " AND a.wait_event_type = 'Extension' AND m.batches >= 1)"
		  . ' SELECT pid FROM w WHERE pg_cancel_backend(pid)');
	ok(defined $got, "$label: the runner is cancelled in its batch_delay sleep");
	if ($how eq 'call')
	{
		my $stderr = call_end($bg, $label);
		note("$label: CALL stderr: $stderr");
		like($stderr,
			qr/ERROR:\s+P0001:\s+migration "\Q$name\E" failed.*DETAIL:\s+injected failure of the pause write/s,
			"$label: CALL fails with P0001, naming the migration, its DETAIL the pause write's error");
	}
	is(wait_not_running($node, $name), 'failed', "$label: the migration is failed");
	my $r = mig_row($node, $name, qw(error worker_pid processed));
	note("$label: error: $r->{error}");
	like($r->{error}, qr/injected failure of the pause write \(SQLSTATE P0001\)/,
		"$label: the error is the pause write's");
	is($r->{worker_pid}, '<null>', "$label: worker_pid is NULL");
	consistent_ok($node, $table, $name, $label);
	return;
}

sub forget_write_case
{
	my ($how) = @_;
	my $table = "fp_$how";
	my $name  = "${table}_v1";
	my $label = "$name ($how; paused, its forget-pid write fails once)";
	new_table($node, $table, 3000);
	define_migration($node, $name, $table, undef,
		batch_size => 10, batch_delay => '0', slow => 0.01);
	$node->safe_psql('postgres', "SELECT setval('forget_failures', 1, false)");
	my ($bg, $pid) = start_run($name, $how);
	ok(poll_true($node, "SELECT batches >= 3 FROM migrations WHERE name = '$name'"),
		"$label: 3 batches done");
	my $runner = $how eq 'call' ? $pid : wait_for_worker($node, $name);
	$node->safe_psql('postgres', "SELECT mig_pause('$name')");
	if ($how eq 'call')
	{
		my $stderr = call_end($bg, $label);
		note("$label: CALL stderr: $stderr");
		like($stderr, qr/ERROR:\s+P0001:\s+injected failure of the forget write/,
			"$label: CALL fails with the forget write's error");
		like($stderr, qr/CONTEXT:.*migration "\Q$name\E"/s,
			"$label: the CALL's error names the migration");
	}
	else
	{
		ok(wait_pid_gone($node, $runner // 0, 30), "$label: the worker exits");
	}
	is($node->safe_psql('postgres', 'SELECT last_value FROM forget_failures'),
		'2', "$label: the forget write failed once, then was done again");
	my $r = mig_row($node, $name, qw(status worker_pid));
	is($r->{status},     'paused', "$label: the migration stays paused");
	is($r->{worker_pid}, '<null>', "$label: worker_pid is NULL");
	consistent_ok($node, $table, $name, $label);
	return;
}

pause_write_case('worker');
forget_write_case('worker');
ok(set_server_guc($node, 'migration_runner.enabled', 'off'), 'launcher disabled');
pause_write_case('call');
forget_write_case('call');
ok(set_server_guc($node, 'migration_runner.enabled', 'on'), 'launcher enabled');

log_has_no_crash($node, 0, 'run end errors');
$node->stop;
done_testing();
