# MigTest.pm: helpers shared by the Perl TAP tests of migration_runner.
#
# Every wait here is a poll with a deadline: the tests never sleep to
# synchronise with the background worker.

package MigTest;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(
  mig_node new_table define_migration mig_row mig_scalar poll_value
  poll_true worker_pid_sql wait_for_worker wait_pid_gone crash_restart
  exactly_once_ok consistent_ok log_has_no_crash q_lit $SLOW_ACTION $WAIT_SECS
  set_server_guc call_bg call_end
  call_start call_finish wait_lock_waiter counter_counts crash_node
  extension_state wait_not_running wait_log
);

# how long any single wait may take before the test fails (seconds)
our $WAIT_SECS = $ENV{MIG_TEST_WAIT} // 60;

# Shorten poll_query_until's own limit (180 s by default) so that a broken
# build fails in minutes, not hours.
$PostgreSQL::Test::Utils::timeout_default = $WAIT_SECS
  unless defined $ENV{PG_TEST_TIMEOUT_DEFAULT}
  && $ENV{PG_TEST_TIMEOUT_DEFAULT} ne '';

# An action that takes a little time per batch (the CTE is evaluated once per
# batch: pg_sleep is volatile, so it is not inlined), so a migration is still
# running when the test looks at it.  %T is replaced by the table, %S by the
# sleep in seconds.
our $SLOW_ACTION =
  'WITH s AS (SELECT pg_sleep(%S)) UPDATE %T SET n = n + 1 FROM s WHERE id BETWEEN $1 AND $2';

# Quote a string as an SQL literal.
sub q_lit
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

# A started node with the extension created in database postgres.
#   preload => 0       no shared_preload_libraries
#   conf => '...'      more postgresql.conf lines
sub mig_node
{
	my ($name, %opts) = @_;
	my $preload = $opts{preload} // 1;

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $conf = "max_worker_processes = 16\n"
	  . "log_statement = none\n"
	  . "log_min_messages = debug1\n";
	$conf .=
	    "shared_preload_libraries = 'migration_runner'\n"
	  . "migration_runner.databases = 'postgres'\n"
	  if $preload;
	$conf .= $opts{conf} if defined $opts{conf};
	$node->append_conf('postgresql.conf', $conf);
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION migration_runner');
	return $node;
}

# A table (id int primary key, n int: the counter an action increments) with
# ids 1..rows, all n = 0.
sub new_table
{
	my ($node, $table, $rows, $db) = @_;
	$node->safe_psql($db // 'postgres', qq{
		CREATE TABLE $table (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
		INSERT INTO $table (id) SELECT g FROM generate_series(1, $rows) g;
		ANALYZE $table;
	});
	return;
}

# mig_define with named arguments; returns the id.
#   define_migration($node, name, table, action,
#       batch_size => 100, batch_delay => '5ms', user => 'alice', slow => 0.02)
# With slow => secs and no action, the action is $SLOW_ACTION on table.
sub define_migration
{
	my ($node, $name, $table, $action, %o) = @_;
	if (!defined $action)
	{
		my $secs = $o{slow} // 0;
		$action = $SLOW_ACTION;
		$action =~ s/%S/$secs/g;
		$action =~ s/%T/$table/g;
	}
	my @args = (
		'name => ' . q_lit($name),
		'relation => ' . q_lit($table),
		'action => ' . q_lit($action));
	for my $opt (qw(batch_size batch_delay lock_timeout statement_timeout
		max_retries))
	{
		push @args, "$opt => " . q_lit($o{$opt}) if defined $o{$opt};
	}
	my @extra = defined $o{user} ? (extra_params => [ '-U', $o{user} ]) : ();
	return $node->safe_psql('postgres',
		'SELECT mig_define(' . join(', ', @args) . ')', @extra);
}

# One catalog row as a hash of the columns asked for.
sub mig_row
{
	my ($node, $name, @cols) = @_;
	my $out = $node->safe_psql('postgres',
		    'SELECT '
		  . join(', ', map { "coalesce($_\::text, '<null>')" } @cols)
		  . ' FROM migrations WHERE name = '
		  . q_lit($name));
	my @vals = split /\|/, $out, -1;
	my %h;
	@h{@cols} = @vals;
	return \%h;
}

sub mig_scalar
{
	my ($node, $sql, @extra) = @_;
	return $node->safe_psql('postgres', $sql, @extra);
}

# Run $sql until $accept->($stdout) holds (and the query had no error);
# returns that stdout, or undef (with a diagnostic) at the deadline.
sub poll_query
{
	my ($node, $sql, $accept, $secs, $what) = @_;
	$secs //= $WAIT_SECS;
	my $deadline = time() + $secs;
	my ($ret, $out, $err);
	while (1)
	{
		($ret, $out, $err) = $node->psql('postgres', $sql);
		return $out if $ret == 0 && defined $out && $err eq '' && $accept->($out);
		last if time() > $deadline;
		usleep(50_000);
	}
	diag("$what timed out after ${secs}s: $sql\nlast stdout: "
		  . ($out // '') . "\nlast stderr: " . ($err // ''));
	return undef;
}

# Run $sql until it prints something non-empty (and no error); return that.
# Returns undef (and prints a diagnostic) at the deadline.
sub poll_value
{
	my ($node, $sql, $secs) = @_;
	return poll_query($node, $sql, sub { $_[0] ne '' }, $secs, 'poll_value');
}

# Wait until migration $name is no longer running; its status, or 'running'
# at the deadline.  (Not mig_wait: under a database default of repeatable
# read, its own snapshot is not what callers assert.)
sub wait_not_running
{
	my ($node, $name, $secs) = @_;
	my $st = poll_value($node,
		'SELECT status FROM migrations WHERE name = ' . q_lit($name)
		  . " AND status <> 'running'", $secs);
	return $st // 'running';
}

# Wait until $node's server log, from byte $offset on, matches $re.
sub wait_log
{
	my ($node, $offset, $re, $secs) = @_;
	my $deadline = time() + ($secs // $WAIT_SECS);
	while (1)
	{
		return 1 if slurp_file($node->logfile, $offset) =~ $re;
		return 0 if time() > $deadline;
		usleep(50_000);
	}
}

# Run $sql until it prints 't'; true if it did before the deadline.
sub poll_true
{
	my ($node, $sql, $secs) = @_;
	return defined(poll_query($node, $sql, sub { $_[0] eq 't' }, $secs, 'poll_true')) ? 1 : 0;
}

# SQL printing the pid of the connected background worker that the catalog
# names as running migration $name (nothing when there is none).
sub worker_pid_sql
{
	my ($name) = @_;
	return
	    'SELECT a.pid FROM pg_stat_activity a JOIN migrations m'
	  . ' ON m.worker_pid = a.pid WHERE m.name = '
	  . q_lit($name)
	  . " AND (a.backend_type ILIKE '%migration_runner%'"
	  . " OR a.application_name ILIKE '%migration_runner%')";
}

# Wait until the worker of $name is connected; return its pid (or undef).
sub wait_for_worker
{
	my ($node, $name, $secs) = @_;
	return poll_value($node, worker_pid_sql($name), $secs);
}

# Wait until process $pid has left pg_stat_activity.
sub wait_pid_gone
{
	my ($node, $pid, $secs) = @_;
	return poll_true($node,
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid", $secs);
}

# Pids of the processes whose title says they belong to cluster $name
# (PostgreSQL::Test::Cluster starts the postmaster with --cluster-name).
sub _cluster_pids
{
	my ($name) = @_;
	my @pids;
	opendir(my $dh, '/proc') or return ();
	for my $p (grep { /^\d+$/ } readdir $dh)
	{
		open(my $fh, '<', "/proc/$p/cmdline") or next;
		local $/;
		my $cmd = <$fh> // '';
		close $fh;
		push @pids, $p if $cmd =~ /^postgres: \Q$name\E: /;
	}
	closedir $dh;
	return @pids;
}

# Crash the node: kill -9 of the postmaster ('kill9') or an immediate stop
# ('immediate'), and wait until the postmaster and every one of its children
# are gone (a start fails while any of them still holds the shared memory).
# True if they were gone before the deadline.
sub crash_node
{
	my ($node, $how) = @_;
	$how //= 'kill9';
	my $pm = $node->{_pid};
	if ($how eq 'immediate')
	{
		$node->stop('immediate');
	}
	else
	{
		$node->kill9;
	}
	my $deadline = time() + $WAIT_SECS;
	my @left;
	while (1)
	{
		@left = _cluster_pids($node->name);
		push @left, $pm if defined $pm && kill(0, $pm);
		last unless @left;
		if (time() > $deadline)
		{
			diag("processes of the crashed node still alive after "
				  . "${WAIT_SECS}s: @left");
			for my $p (@left)
			{
				open(my $fh, '<', "/proc/$p/cmdline") or next;
				local $/;
				my $c = <$fh> // '';
				diag("  $p: $c");
			}
			return 0;
		}
		usleep(50_000);
	}
	return 1;
}

# crash_node, then start the node again.
sub crash_restart
{
	my ($node, $how) = @_;
	crash_node($node, $how) or return 0;
	$node->start;
	return 1;
}

# Everything the extension keeps in database $db, as text: the rows of each
# of its configuration tables and the position of each of its configuration
# sequences (pg_extension.extconfig, so a table a later release adds is
# included without a change here), one line per row (as jsonb, without the
# columns named in @except), sorted.  Two databases holding the same
# migrations print the same text.
sub extension_state
{
	my ($node, $db, @except) = @_;
	my $minus = join('', map { ' - ' . q_lit($_) } @except);
	my $rels = $node->safe_psql($db, q{
		SELECT c.oid::regclass, c.relkind
		  FROM pg_extension e, unnest(e.extconfig) AS x(oid)
		  JOIN pg_class c ON c.oid = x.oid
		 WHERE e.extname = 'migration_runner'
		 ORDER BY c.oid::regclass::text COLLATE "C"});
	my @out;
	for my $line (split /\n/, $rels)
	{
		my ($rel, $kind) = split /\|/, $line;
		my $sql =
		  $kind eq 'S'
		  ? "SELECT '$rel: ' || last_value || ' ' || is_called FROM $rel"
		  : "SELECT '$rel: ' || (to_jsonb(r)$minus)::text FROM $rel r ORDER BY 1";
		my $rows = $node->safe_psql($db, $sql);
		push @out, $rows eq '' ? "$rel: (no rows)" : $rows;
	}
	return join("\n", @out);
}

# The action incremented n: every row of $table must have n = 1, and the
# catalog must say that every row was processed.
sub exactly_once_ok
{
	my ($node, $table, $name, $rows, $label) = @_;
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM $table WHERE n <> 1"),
		'0',
		"$label: every row changed exactly once (no row with n <> 1)");
	is($node->safe_psql('postgres', "SELECT count(*) FROM $table"),
		$rows, "$label: no row lost");
	is(mig_row($node, $name, 'processed')->{processed},
		$rows, "$label: processed = $rows");
	return;
}

# In one snapshot (one statement): the rows the action changed are exactly
# as many as the catalog's processed, and no row was changed twice.  Safe to
# call while a worker commits batches.
sub consistent_ok
{
	my ($node, $table, $name, $label) = @_;
	my $out = $node->safe_psql('postgres', qq{
		SELECT (SELECT processed FROM migrations WHERE name = } . q_lit($name) . qq{)
			   || '|' || count(*) FILTER (WHERE n = 1)
			   || '|' || count(*) FILTER (WHERE n > 1)
		  FROM $table});
	my ($processed, $once, $twice) = split /\|/, $out;
	is("$once/$twice", "$processed/0",
		"$label: changed rows = processed ($processed), none twice");
	return;
}

# No backend died of a signal and nothing PANICked since log offset $offset.
sub log_has_no_crash
{
	my ($node, $offset, $label) = @_;
	my $log = slurp_file($node->logfile, $offset // 0);
	my @bad = grep { /terminated by signal|PANIC:|TRAP:|server process .* was terminated/ }
	  split /\n/, $log;
	ok(!@bad, "$label: no crashed process in the server log")
	  or diag(join("\n", @bad));
	return;
}

# Start CALL mig_run($name) in a background psql session, after the SQL in
# $setup (SET commands, say); returns the session, whose CALL goes on while
# the test does other things.  call_finish waits for it to return.
sub call_start
{
	my ($node, $name, $setup) = @_;
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	# every wait of the session gets the whole $WAIT_SECS, not the sum of them
	$bg->set_query_timer_restart;
	$bg->query_safe($setup) if defined $setup && $setup ne '';
	$bg->query_until(qr/call started/,
		"\\echo call started\nCALL mig_run(" . q_lit($name) . ");\n\\echo call done\n");
	return $bg;
}

# Wait until the CALL begun by call_start returns (dies after $WAIT_SECS);
# returns what it printed on stderr (NOTICE, WARNING, ERROR) and closes the
# session.
sub call_finish
{
	my ($bg) = @_;
	$bg->query_until(qr/call done/, '');
	my $stderr = $bg->{stderr};
	$bg->quit;
	return $stderr;
}

# Wait until some session waits for a lock on relation $table (an
# unqualified name).  True if one did before the deadline.
sub wait_lock_waiter
{
	my ($node, $table, $secs) = @_;
	return poll_true($node,
		    'SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c'
		  . " ON c.oid = l.relation WHERE l.locktype = 'relation'"
		  . ' AND NOT l.granted AND c.relname = '
		  . q_lit($table) . ')', $secs);
}

# "n=0: A, n=1: B, n>1: C" for a table with the counter n: what a failing
# exactly-once check found, for the log.
sub counter_counts
{
	my ($node, $table) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE n = 0) || '|' || count(*) FILTER (WHERE n = 1)"
		  . " || '|' || count(*) FILTER (WHERE n > 1) FROM $table");
	my ($zero, $one, $more) = split /\|/, $out;
	return "n=0: $zero, n=1: $one, n>1: $more";
}


# Set a server-wide GUC with ALTER SYSTEM and a reload; return once a new
# backend (forked by the postmaster after it reloaded) sees the value.
sub set_server_guc
{
	my ($node, $name, $value) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET $name = " . q_lit($value) . '; SELECT pg_reload_conf()');
	return poll_true($node,
		"SELECT current_setting('$name') = " . q_lit($value));
}

# A psql session that runs CALL mig_run($name) (as $user, if given), with
# VERBOSITY verbose so that an error shows its SQLSTATE; returns the
# session and its backend pid.
sub call_bg
{
	my ($node, $name, $user) = @_;
	my $bg = $node->background_psql('postgres', on_error_stop => 0,
		defined $user ? (extra_params => [ '-U', $user ]) : ());
	$bg->set_query_timer_restart;
	my $pid = $bg->query_safe('SELECT pg_backend_pid()');
	$bg->query_until(qr/call started/,
		    "\\set VERBOSITY verbose\n\\echo call started\n"
		  . 'CALL mig_run(' . q_lit($name) . ");\n");
	return ($bg, $pid);
}

# Wait until the CALL of call_bg returns; return its stderr and close the
# session.  A CALL that does not return within the deadline is a failed
# test, not the end of the file.
sub call_end
{
	my ($bg, $label) = @_;
	# psql reads its input in order: this query runs once the CALL returned
	my $ok = eval { $bg->query("SELECT 'call returned'"); 1 };
	if (!$ok)
	{
		fail("$label: CALL mig_run returned within the deadline");
		diag($@);
		return '<CALL did not return>';
	}
	my $stderr = $bg->{stderr};
	$bg->quit;
	return $stderr;
}

1;
