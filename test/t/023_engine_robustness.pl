# The batch engine against hostile surroundings: a long run with keys passed
# by reference, owners and databases whose default transactions are
# read-only, serializable or repeatable read, failures whose detail is all
# that identifies the bad row, and errors outside any batch.
#
# Release 1.0:
#   - copied the batch's text/uuid/numeric keys into the run's memory once
#     per batch, so a worker grew by about 1 kB per batch of 300-byte keys;
#   - ran its transactions with the owner's or the database's defaults: a
#     read-only owner's worker died on its first write (the lock of its
#     catalog row) and was started again and again, its migration
#     'running'; under serializable or repeatable read a batch that met a
#     concurrent update failed with 40001 where READ COMMITTED waits and
#     goes on;
#   - kept only the message of a failed batch (no DETAIL, HINT, CONTEXT),
#     and CALL mig_run raised 38000 instead of the batch's SQLSTATE; the
#     worker logged how a run ended only at DEBUG1;
#   - let an error outside a batch (a throttle step, say) kill the worker
#     and leave the migration 'running', to be started again forever.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use MigTest;

my $node = mig_node('mrtap_engine_robust',
	conf => "migration_runner.poll_interval = '200ms'\n"
	  . "migration_runner.max_workers = 8\n"
	  . "migration_runner.throttle_sleep = '200ms'\n");

# mig_row, but a query error (a column 1.0 does not have) makes every
# column '<error: ...>' instead of ending the file.
sub cat_row
{
	my ($name, @cols) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		    'SELECT '
		  . join(', ', map { "coalesce($_\::text, '<null>')" } @cols)
		  . ' FROM migrations WHERE name = ' . q_lit($name));
	my %h;
	if ($ret != 0)
	{
		chomp $err;
		@h{@cols} = ("<error: $err>") x @cols;
		return \%h;
	}
	my @vals = split /\|/, $out, -1;
	@h{@cols} = @vals;
	return \%h;
}

# CALL mig_run($name) as $user (or the superuser), VERBOSITY verbose; waits
# for it and returns its stderr, or '<CALL did not return>' at the deadline.
sub call_run
{
	my ($name, $user) = @_;
	my ($ret, $out, $err, $timed_out);
	($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nCALL mig_run(" . q_lit($name) . ');',
		timeout   => $MigTest::WAIT_SECS,
		timed_out => \$timed_out,
		defined $user ? (extra_params => [ '-U', $user ]) : ());
	return '<CALL did not return>' if $timed_out;
	return $err // '';
}

# ===========================================================================
# 1. Memory stays flat over thousands of batches of 300-byte text keys
# ===========================================================================
#
# batch_size 1, 6000 rows keyed by 300-byte text.  The action waits for an
# advisory lock the test holds in batch 500 and in batch 5500: there the
# worker's RssAnon is read, with 5000 batches in between.  1.0 grew by
# about 1 kB per batch here (some 5 MB); the bound is 1 MB.
{
	my $rows = 6000;
	my ($g1, $g2) = (500, 5500);
	$node->safe_psql('postgres', qq{
		CREATE TABLE mem (k text PRIMARY KEY, n int NOT NULL DEFAULT 0);
		INSERT INTO mem (k)
			SELECT repeat('k', 290) || lpad(g::text, 10, '0')
			  FROM generate_series(1, $rows) g;
		ANALYZE mem;
		CREATE FUNCTION mem_gate(k text) RETURNS int LANGUAGE plpgsql AS \$f\$
		BEGIN
			IF substr(k, 291)::int = $g1 THEN
				PERFORM pg_advisory_xact_lock_shared(101);
			ELSIF substr(k, 291)::int = $g2 THEN
				PERFORM pg_advisory_xact_lock_shared(102);
			END IF;
			RETURN 1;
		END \$f\$;
	});
	is($node->safe_psql('postgres', 'SELECT min(octet_length(k)) FROM mem'),
		'300', 'mem: keys are 300-byte text');
	define_migration($node, 'mem_v1', 'mem',
		'WITH s AS (SELECT mem_gate($1) AS g)'
		  . ' UPDATE mem SET n = n + s.g FROM s WHERE k BETWEEN $1 AND $2',
		batch_size        => 1,
		batch_delay       => '0',
		lock_timeout      => '5min',
		statement_timeout => '5min');

	my $holder = $node->background_psql('postgres');
	$holder->set_query_timer_restart;
	$holder->query_safe('SELECT pg_advisory_lock(101), pg_advisory_lock(102)');
	$node->safe_psql('postgres', "SELECT mig_start('mem_v1')");

	my $gate_sql = sub {
		my ($objid) = @_;
		return "SELECT l.pid FROM pg_locks l JOIN migrations m ON m.worker_pid = l.pid"
		  . " WHERE m.name = 'mem_v1' AND l.locktype = 'advisory' AND l.objid = $objid"
		  . ' AND NOT l.granted';
	};
	my $rss = sub {
		my ($pid) = @_;
		open(my $fh, '<', "/proc/$pid/status") or return undef;
		local $/;
		my $s = <$fh>;
		close $fh;
		return $s =~ /^RssAnon:\s+(\d+) kB/m ? $1 : undef;
	};

	my $pid1 = poll_value($node, $gate_sql->(101)) // 0;
	ok($pid1, "mem_v1: the worker (pid $pid1) waits in batch $g1");
	my $rss1 = $rss->($pid1) // -1;
	my $b1   = mig_row($node, 'mem_v1', 'batches')->{batches};
	is($b1, $g1 - 1, "mem_v1: $b1 batches committed before the first reading");
	$holder->query_safe('SELECT pg_advisory_unlock(101)');

	my $pid2 = poll_value($node, $gate_sql->(102)) // 0;
	is($pid2, $pid1, "mem_v1: the same worker (pid $pid2) waits in batch $g2");
	my $rss2 = $rss->($pid2) // -1;
	my $b2   = mig_row($node, 'mem_v1', 'batches')->{batches};
	is($b2, $g2 - 1, "mem_v1: $b2 batches committed before the second reading");
	$holder->query_safe('SELECT pg_advisory_unlock(102)');
	$holder->quit;

	my $growth = $rss2 - $rss1;
	ok($rss1 > 0 && $rss2 > 0, "mem_v1: RssAnon read ($rss1 kB, then $rss2 kB)");
	cmp_ok($growth, '<', 1024,
		"mem_v1: RssAnon grew by $growth kB over "
		  . ($b2 - $b1) . " batches ($rss1 kB -> $rss2 kB), less than 1 MB");
	is($node->safe_psql('postgres', "SELECT mig_wait('mem_v1', '120s')"),
		'completed', 'mem_v1: completes');
	exactly_once_ok($node, 'mem', 'mem_v1', $rows, 'mem_v1');
}

# ===========================================================================
# 2. Owners and databases with other transaction defaults
# ===========================================================================
#
# Each migration's table has a row (id 55) that another session updates
# (another column) and keeps locked until the batch that reaches it waits
# for it; then that session commits.  Under READ COMMITTED the batch goes on
# with the new row version; under repeatable read or serializable it fails
# with 40001 (could not serialize access due to concurrent update), and
# max_retries is 0.  With default_transaction_read_only, any write fails.
#
# The runner pins every transaction to READ COMMITTED, read-write, so each
# migration must complete with every row changed exactly once, through the
# worker and through CALL mig_run run by the owner.
my $ROWS = 200;

sub settings_case
{
	my ($owner, $how) = @_;
	my $table = "s_${owner}_$how";
	my $name  = "${table}_v1";
	my $label = "$name (owner $owner, $how)";
	$node->safe_psql('postgres', qq{
		CREATE TABLE $table (id int PRIMARY KEY, n int NOT NULL DEFAULT 0,
			touched int NOT NULL DEFAULT 0);
		INSERT INTO $table (id) SELECT g FROM generate_series(1, $ROWS) g;
		ALTER TABLE $table OWNER TO $owner;
	});
	# defined by the owner before its defaults are changed
	define_migration($node, $name, $table,
		"UPDATE $table SET n = n + 1 WHERE id BETWEEN \$1 AND \$2",
		batch_size   => 10,
		batch_delay  => '0',
		lock_timeout => '60s',
		max_retries  => 0,
		user         => $owner);
	return ($table, $name, $label);
}

sub run_settings_case
{
	my ($owner, $how, $table, $name, $label) = @_;
	my $holder = $node->background_psql('postgres');
	$holder->set_query_timer_restart;
	my $holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
	$holder->query_safe(
		"BEGIN; UPDATE $table SET touched = touched + 1 WHERE id = 55");

	my ($bg, $pid);
	if ($how eq 'call')
	{
		($bg, $pid) = call_bg($node, $name, $owner);
	}
	else
	{
		$node->safe_psql('postgres', "SELECT mig_start('$name')");
	}
	# 'waiting' once the runner waits for the holder; 'ended' if the run
	# ended before (so that a failure does not wait for the deadline)
	my $ended = $how eq 'call'
	  ? "(SELECT state FROM pg_stat_activity WHERE pid = $pid) <> 'active'"
	  : "(SELECT status FROM migrations WHERE name = '$name') <> 'running'";
	my $seen = poll_value($node,
		"SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted"
		  . " AND $holder_pid = ANY (pg_blocking_pids(pid))) THEN 'waiting'"
		  . " WHEN $ended THEN 'ended' END", 30);
	is($seen // 'neither', 'waiting',
		"$label: the batch with id 55 waits for the concurrent update");
	$holder->query_safe('COMMIT');
	$holder->quit;

	if ($how eq 'call')
	{
		my $stderr = call_end($bg, $label);
		unlike($stderr, qr/ERROR/, "$label: CALL mig_run returns without an error")
		  or diag($stderr);
	}
	my $status = wait_not_running($node, $name);
	my $r = cat_row($name, qw(error processed));
	note("$label: status $status, error $r->{error}; " . counter_counts($node, $table));
	is($status, 'completed', "$label: completed");
	exactly_once_ok($node, $table, $name, $ROWS, $label);
	is($node->safe_psql('postgres', "SELECT count(*) FROM $table WHERE touched <> (id = 55)::int"),
		'0', "$label: the concurrent update is kept");
	return;
}

$node->safe_psql('postgres', q{
	CREATE ROLE ro_owner LOGIN;
	CREATE ROLE ser_owner LOGIN;
	CREATE ROLE db_owner LOGIN;
});
my %settings_cases;
for my $owner (qw(ro_owner ser_owner db_owner))
{
	$settings_cases{"$owner/$_"} = [ settings_case($owner, $_) ] for qw(worker call);
}
$node->safe_psql('postgres', q{
	ALTER ROLE ro_owner SET default_transaction_read_only = on;
	ALTER ROLE ser_owner SET default_transaction_isolation = 'serializable';
});
is( $node->safe_psql('postgres', 'SHOW default_transaction_read_only',
		extra_params => [ '-U', 'ro_owner' ]),
	'on', 'ro_owner sessions are read-only by default');
is( $node->safe_psql('postgres', 'SHOW default_transaction_isolation',
		extra_params => [ '-U', 'ser_owner' ]),
	'serializable', 'ser_owner sessions are serializable by default');
for my $owner (qw(ro_owner ser_owner))
{
	run_settings_case($owner, $_, @{ $settings_cases{"$owner/$_"} }) for qw(worker call);
}

# the whole database at repeatable read, for every session including the
# launcher's and the workers'
$node->safe_psql('postgres',
	"ALTER DATABASE postgres SET default_transaction_isolation = 'repeatable read'");
is( $node->safe_psql('postgres', 'SHOW default_transaction_isolation',
		extra_params => [ '-U', 'db_owner' ]),
	'repeatable read', 'sessions of database postgres are repeatable read by default');
run_settings_case('db_owner', $_, @{ $settings_cases{"db_owner/$_"} }) for qw(worker call);
$node->safe_psql('postgres',
	'ALTER DATABASE postgres RESET default_transaction_isolation');

# ===========================================================================
# 3. A failure keeps what identifies the bad row
# ===========================================================================
#
# Unique violation: the action copies lower(email) to a unique column, and
# ids 37 and 38 both give 'dup@x'.  RAISE with DETAIL and HINT: a function
# the action calls raises for id 42.  Through the worker (the catalog and
# the server log) and through CALL mig_run (its error).
$node->safe_psql('postgres', q{
	CREATE FUNCTION check_row(id int) RETURNS int LANGUAGE plpgsql AS $f$
	BEGIN
		IF id = 42 THEN
			RAISE EXCEPTION 'row % is bad', id USING DETAIL = 'd1', HINT = 'h1';
		END IF;
		RETURN 1;
	END $f$;
});

sub unique_case
{
	my ($table) = @_;
	$node->safe_psql('postgres', qq{
		CREATE TABLE $table (id int PRIMARY KEY, email text NOT NULL,
			email_norm text UNIQUE, n int NOT NULL DEFAULT 0);
		INSERT INTO $table (id, email)
			SELECT g, CASE g WHEN 37 THEN 'dup\@x' WHEN 38 THEN 'DUP\@x'
				ELSE 'user' || g || '\@x' END
			  FROM generate_series(1, 100) g;
	});
	define_migration($node, "${table}_v1", $table,
		"UPDATE $table SET email_norm = lower(email), n = n + 1 WHERE id BETWEEN \$1 AND \$2",
		batch_size => 10, batch_delay => '0');
	return "${table}_v1";
}

sub raise_case
{
	my ($table) = @_;
	new_table($node, $table, 100);
	define_migration($node, "${table}_v1", $table,
		"UPDATE $table SET n = n + check_row(id) WHERE id BETWEEN \$1 AND \$2",
		batch_size => 10, batch_delay => '0');
	return "${table}_v1";
}

# the catalog after a batch failed at ids 31..40 or 41..50
sub failed_ok
{
	my ($name, $table, $label, $processed, %want) = @_;
	# the columns 1.0 has, then those 1.1 added
	my $r = cat_row($name, qw(status error processed));
	my $d = cat_row($name, qw(error_detail error_hint error_context));
	@$r{ keys %$d } = values %$d;
	note("$label: $_: $r->{$_}") for qw(status error error_detail error_hint error_context);
	is($r->{status}, 'failed', "$label: failed");
	like($r->{error}, $want{error}, "$label: error has the message and SQLSTATE");
	like($r->{error_detail}, $want{detail}, "$label: error_detail is the error's DETAIL");
	like($r->{error_hint}, $want{hint}, "$label: error_hint is the error's HINT");
	like($r->{error_context}, $want{context}, "$label: error_context is the error's CONTEXT");
	is($r->{processed}, $processed, "$label: the batches before the bad one committed");
	is($node->safe_psql('postgres', "SELECT count(*) FROM $table WHERE n <> (id <= $processed)::int"),
		'0', "$label: exactly the first $processed rows changed once");
	return;
}

my %UV = (
	error   => qr/duplicate key value violates unique constraint .*SQLSTATE 23505/,
	detail  => qr/^Key \(email_norm\)=\(dup\@x\) already exists\.?$/,
	hint    => qr/^<null>$/,
	context => qr/^(?!<null>|<error).+/s);
my %RZ = (
	error   => qr/row 42 is bad \(SQLSTATE P0001\)/,
	detail  => qr/^d1$/,
	hint    => qr/^h1$/,
	context => qr/check_row/);

# --- through the worker: catalog and server log ------------------------------
{
	my $off  = -s $node->logfile;
	my $name = unique_case('uv_w');
	$node->safe_psql('postgres', "SELECT mig_start('$name')");
	is(wait_not_running($node, $name), 'failed', "$name: the worker ends it failed");
	failed_ok($name, 'uv_w', "$name (worker, unique violation)", 30, %UV);
	ok(wait_log($node, $off, qr/LOG:\s+[^\n]*"\Q$name\E"[^\n]*\bfailed\b/),
		"$name: the worker logs a LOG line naming the migration that failed");

	$name = raise_case('rz_w');
	$node->safe_psql('postgres', "SELECT mig_start('$name')");
	is(wait_not_running($node, $name), 'failed', "$name: the worker ends it failed");
	failed_ok($name, 'rz_w', "$name (worker, RAISE with DETAIL and HINT)", 40, %RZ);

	$off = -s $node->logfile;
	new_table($node, 'okw', 100);
	define_migration($node, 'okw_v1', 'okw',
		'UPDATE okw SET n = n + 1 WHERE id BETWEEN $1 AND $2', batch_size => 30);
	$node->safe_psql('postgres', "SELECT mig_start('okw_v1')");
	is(wait_not_running($node, 'okw_v1'), 'completed', 'okw_v1: completes');
	ok(wait_log($node, $off, qr/LOG:\s+[^\n]*"okw_v1"[^\n]*\bcompleted\b/),
		'okw_v1: the worker logs a LOG line naming the migration it completed');
}

# --- through CALL mig_run: the error raised ------------------------------------
{
	my $name   = unique_case('uv_c');
	my $stderr = call_run($name);
	note("$name: CALL stderr: $stderr");
	like($stderr, qr/ERROR:\s+23505:/,
		"$name: CALL mig_run fails with the batch's SQLSTATE 23505");
	unlike($stderr, qr/38000/, "$name: not with 38000");
	like($stderr, qr/Key \(email_norm\)=\(dup\@x\) already exists/,
		"$name: the CALL's error shows the key that collides");
	failed_ok($name, 'uv_c', "$name (CALL, unique violation)", 30, %UV);

	$name   = raise_case('rz_c');
	$stderr = call_run($name);
	note("$name: CALL stderr: $stderr");
	like($stderr, qr/ERROR:\s+P0001:/,
		"$name: CALL mig_run fails with the batch's SQLSTATE P0001");
	like($stderr, qr/^DETAIL:.*?^d1$/ms, "$name: the CALL's error has DETAIL d1");
	like($stderr, qr/^HINT:\s+h1$/m, "$name: the CALL's error has HINT h1");
	failed_ok($name, 'rz_c', "$name (CALL, RAISE with DETAIL and HINT)", 40, %RZ);
}

# ===========================================================================
# 4. Errors outside a batch end the run failed, never 'running' forever
# ===========================================================================

# --- the relation is dropped mid-run -----------------------------------------
for my $how (qw(worker call))
{
	my $table = "drop_$how";
	my $name  = "${table}_v1";
	new_table($node, $table, 5000);
	define_migration($node, $name, $table, undef,
		batch_size => 20, batch_delay => '0', slow => 0.01);
	my ($bg, $pid);
	if ($how eq 'call') { ($bg, $pid) = call_bg($node, $name); }
	else { $node->safe_psql('postgres', "SELECT mig_start('$name')"); }
	ok( poll_true(
			$node, "SELECT batches >= 3 FROM migrations WHERE name = '$name'"),
		"$name: 3 batches done");
	$node->safe_psql('postgres', "DROP TABLE $table");
	if ($how eq 'call')
	{
		my $stderr = call_end($bg, $name);
		note("$name: CALL stderr: $stderr");
		like($stderr, qr/ERROR:.*\b$table\b/s,
			"$name: CALL mig_run fails, its error naming $table");
	}
	is(wait_not_running($node, $name), 'failed', "$name: failed after DROP TABLE $table ($how)");
	my $r = cat_row($name, qw(error worker_pid));
	note("$name: error: $r->{error}");
	like($r->{error}, qr/\b$table\b/, "$name: the error names the table $table");
	is($r->{worker_pid}, '<null>', "$name: worker_pid is NULL");
}

# --- the throttle step's catalog write fails ------------------------------------
#
# No honest way makes the throttle's own queries fail (they read
# pg_stat_activity and pg_stat_replication), so a superuser's trigger on the
# catalog stands in for any error of its write (a full disk, a lock
# timeout): it raises when throttled is set to a max_wal_rate reason for
# the migrations named tf_*.  That write happens between batches, outside
# the batch's guarded step.
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.inject_throttle_failure() RETURNS trigger
	LANGUAGE plpgsql AS $f$
	BEGIN
		RAISE EXCEPTION 'injected failure of the throttle write';
	END $f$;
	CREATE TRIGGER inject_throttle_failure BEFORE UPDATE ON migrations
		FOR EACH ROW WHEN (NEW.name LIKE 'tf\_%'
			AND NEW.throttled LIKE '%max_wal_rate%')
		EXECUTE FUNCTION public.inject_throttle_failure();
});
for my $how (qw(worker call))
{
	my $table = "tf_$how";
	my $name  = "${table}_v1";
	new_table($node, $table, 2000);
	define_migration($node, $name, $table, undef,
		batch_size => 20, batch_delay => '0', slow => 0.02);
}
ok(set_server_guc($node, 'migration_runner.max_wal_rate', '1'), 'max_wal_rate = 1 kB/s');
{
	my $name = 'tf_worker_v1';
	my $off  = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT mig_start('$name')");
	is(wait_not_running($node, $name, 30), 'failed',
		"$name: an error in the worker's throttle step ends the migration failed");
	my $r = cat_row($name, qw(error worker_pid processed));
	note("$name: error: $r->{error}");
	like($r->{error}, qr/injected failure of the throttle write/,
		"$name: the error is the throttle write's");
	is($r->{worker_pid}, '<null>', "$name: worker_pid is NULL");
	ok(wait_log($node, $off, qr/LOG:\s+[^\n]*"\Q$name\E"[^\n]*\bfailed\b/),
		"$name: the worker logs a LOG line naming the migration that failed");
	is($node->safe_psql('postgres', worker_pid_sql($name)), '',
		"$name: no worker runs it");
	consistent_ok($node, 'tf_worker', $name, $name);
}
{
	# no worker may take the migration over meanwhile: what is looked at is
	# what the CALL itself left
	ok(set_server_guc($node, 'migration_runner.enabled', 'off'), 'launcher disabled');
	my $name   = 'tf_call_v1';
	my $stderr = call_run($name);
	note("$name: CALL stderr: $stderr");
	like($stderr, qr/ERROR:\s+(?:P0001:\s+)?migration "\Q$name\E" failed.*DETAIL:\s+injected failure of the throttle write/s,
		"$name: CALL mig_run fails, its DETAIL the throttle write's error");
	my $r = cat_row($name, qw(status error worker_pid));
	note("$name: status $r->{status}, worker_pid $r->{worker_pid}, error $r->{error}");
	isnt($r->{status}, 'running',
		"$name: an error in the CALL's throttle step does not leave the migration running");
	is($r->{worker_pid}, '<null>', "$name: worker_pid is NULL");
	consistent_ok($node, 'tf_call', $name, $name);
	ok(set_server_guc($node, 'migration_runner.enabled', 'on'), 'launcher enabled');
}
ok(set_server_guc($node, 'migration_runner.max_wal_rate', '0'), 'max_wal_rate off');

log_has_no_crash($node, 0, 'engine robustness');
$node->stop;
done_testing();
