# The launcher's workers for the slices of a migration that runs in parallel:
#   (a) parallel 4 with migration_runner.max_workers = 2: two slices run at
#       a time, never more, and every row is changed exactly once
#   (b) pg_terminate_backend of one slice's worker: that slice gets a new
#       worker after its backoff, the other slices keep theirs, and the
#       migration completes exactly once
#   (c) a migration run by CALL mig_run gets no worker for any of its
#       slices: the CALL runs them one after another itself
#   (d) parallel lowered below a running slice (an orphan): while the
#       orphan has a runner, the done slices get no worker (and are not
#       started again and again); once it has none, a done slice's worker
#       starts again and adopts it
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use MigTest;

my $node = mig_node('mrtap_slice_workers',
	conf => "migration_runner.max_workers = 2\n");

# Every batch's action calls probe(m, secs): it waits while the gate is
# closed (polling, in READ COMMITTED, so that it sees the gate open), then
# sleeps secs and records, inside the batch's transaction, the process that
# ran the batch and a time window in which the batch certainly ran.  Only
# committed batches leave a row.
$node->safe_psql('postgres', q{
	CREATE TABLE gate (open bool NOT NULL);
	INSERT INTO gate VALUES (true);
	CREATE TABLE probe_log (mig text, pid int, t0 timestamptz, t1 timestamptz);
	CREATE FUNCTION probe(m text, secs float8) RETURNS int LANGUAGE plpgsql AS $$
	DECLARE t0 timestamptz;
	BEGIN
		WHILE NOT (SELECT open FROM gate) LOOP
			PERFORM pg_sleep(0.01);
		END LOOP;
		t0 := clock_timestamp();
		PERFORM pg_sleep(secs);
		INSERT INTO probe_log VALUES (m, pg_backend_pid(), t0, clock_timestamp());
		RETURN 1;
	END $$;
});

sub set_gate
{
	my ($open) = @_;
	$node->safe_psql('postgres', "UPDATE gate SET open = $open");
	return;
}

# A table $t of $rows rows and migration ${t}_v1 over it in $parallel
# slices, whose batches go through probe('$t', $secs).
sub define_sliced
{
	my ($t, $rows, $parallel, $batch, $secs) = @_;
	new_table($node, $t, $rows);
	my $action =
	  "WITH p AS (SELECT probe('$t', $secs) AS x) UPDATE $t SET n = n + 1 FROM p WHERE id BETWEEN \$1 AND \$2";
	$node->safe_psql('postgres',
		    "SELECT mig_define(name => '${t}_v1', relation => '$t', action => "
		  . q_lit($action)
		  . ", batch_size => $batch, parallel => $parallel, statement_timeout => '120s')");
	is(mig_row($node, "${t}_v1", 'parallel')->{parallel},
		$parallel, "mig_define recorded parallel = $parallel for ${t}_v1");
	return;
}

my $WORKERS_SQL =
  "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'migration_runner worker'";

# --- (a) parallel 4, max_workers 2 ---------------------------------------------
define_sliced('a', 20000, 4, 50, 0.01);
$node->safe_psql('postgres', "SELECT mig_start('a_v1')");

my ($max_seen, $done) = (0, 0);
my $deadline = time() + 2 * $WAIT_SECS;
while (time() < $deadline)
{
	my ($workers, $status) = split /\|/, $node->safe_psql('postgres',
		"SELECT ($WORKERS_SQL) || '|' || status FROM migrations WHERE name = 'a_v1'");
	$max_seen = $workers if $workers > $max_seen;
	if ($status ne 'running') { $done = 1; last; }
	usleep(20_000);
}
ok($done, 'a_v1 ended');
cmp_ok($max_seen, '<=', 2,
	'never more than max_workers = 2 workers in pg_stat_activity');
is($max_seen, 2, 'two workers ran side by side (parallel 4 needs more than one)');
is($node->safe_psql('postgres', "SELECT mig_wait('a_v1', '10s')"),
	'completed', 'a_v1 completed');
exactly_once_ok($node, 'a', 'a_v1', 20000, 'a_v1');

# the batches' own windows: how many ran at once, and in how many processes
my $overlap = $node->safe_psql('postgres', q{
	SELECT max(c) FROM (
		SELECT sum(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS c
		  FROM (SELECT t0 AS t, 1 AS d FROM probe_log WHERE mig = 'a'
				UNION ALL
				SELECT t1, -1 FROM probe_log WHERE mig = 'a') e) s});
is($overlap, 2, 'at most two batches of a_v1 ran at any time, and two did (probe windows)');
cmp_ok(
	$node->safe_psql('postgres', q{
		SELECT count(DISTINCT b.slice) FROM migration_batches b
		  JOIN migrations m ON m.id = b.migration_id
		 WHERE m.name = 'a_v1' AND b.slice > 0}),
	'>=', 2, 'batches of at least two slices are in the history');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM mig_slices WHERE name = 'a_v1'"),
	'0', 'the slices are gone once a_v1 completed');

# --- (b) one slice's worker is terminated ----------------------------------------
ok(set_server_guc($node, 'migration_runner.max_workers', '4'),
	'max_workers is 4 now');
set_gate('false');
define_sliced('b', 3000, 3, 50, 0);
$node->safe_psql('postgres', "SELECT mig_start('b_v1')");

# every slice has a worker of its own, each waiting at the gate in its
# first batch
my $LIVE_SLICES_SQL = q{
	SELECT count(*) >= 2 AND count(*) = count(DISTINCT a.pid)
	  FROM mig_slices s
	  LEFT JOIN pg_stat_activity a
		ON a.pid = s.worker_pid AND a.backend_type = 'migration_runner worker'
	 WHERE s.name = 'b_v1' AND s.status = 'running'};
ok(poll_true($node, $LIVE_SLICES_SQL),
	'every slice of b_v1 has a live worker of its own');
sub slice_pids
{
	return map { split /\|/ } split /\n/, $node->safe_psql('postgres',
		"SELECT slice, worker_pid FROM mig_slices WHERE name = 'b_v1' ORDER BY slice");
}
my %pid_of = slice_pids();
my @slices = sort { $a <=> $b } keys %pid_of;
note('workers of b_v1: ' . join(', ', map { "slice $_: $pid_of{$_}" } @slices));

# The last slice's worker was started for it by the launcher; the first
# slice's is most likely the worker that split the migration as one piece
# and went on to run slice 1.  Terminate each in turn.
for my $victim ($slices[-1], $slices[0])
{
	my $dead = $pid_of{$victim};
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($dead)");
	ok(wait_pid_gone($node, $dead, 30),
		"the worker of slice $victim (pid $dead) is gone");
	my $next = poll_value($node, qq{
		SELECT s.worker_pid FROM mig_slices s
		  JOIN pg_stat_activity a
			ON a.pid = s.worker_pid AND a.backend_type = 'migration_runner worker'
		 WHERE s.name = 'b_v1' AND s.slice = $victim AND s.worker_pid <> $dead}) // 0;
	ok($next, "slice $victim has a new worker (pid $next)");
	ok( $node->log_contains(
			qr/worker for slice $victim of migration "b_v1" exited before the slice was done; starting it again in \d+ ms/,
			$offset),
		"the log names slice $victim, whose worker died, and the backoff");
	my @judged = grep { /worker for .* exited before/ }
	  split /\n/, slurp_file($node->logfile, $offset);
	is(scalar(@judged), 1, 'only that slice was judged a crash')
	  or diag(join("\n", @judged));
	my %after = slice_pids();
	for my $s (grep { $_ != $victim } @slices)
	{
		is($after{$s}, $pid_of{$s}, "slice $s keeps its worker (pid $pid_of{$s})");
		is( $node->safe_psql('postgres',
				"SELECT count(*) FROM pg_stat_activity WHERE pid = $pid_of{$s}"),
			'1', "... which is still alive");
	}
	$pid_of{$victim} = $next;
}
is($node->safe_psql('postgres', "SELECT status FROM migrations WHERE name = 'b_v1'"),
	'running', 'b_v1 is still running (every batch waits at the gate)');

set_gate('true');
is($node->safe_psql('postgres', "SELECT mig_wait('b_v1', '60s')"),
	'completed', 'b_v1 completes');
exactly_once_ok($node, 'b', 'b_v1', 3000, 'b_v1');

# --- (c) CALL mig_run runs the slices itself -------------------------------------
set_gate('false');
define_sliced('c', 2000, 3, 50, 0);
my ($bg, $call_pid) = call_bg($node, 'c_v1');
ok( poll_true(
		$node, qq{
		SELECT count(*) >= 2 FROM mig_slices WHERE name = 'c_v1'}),
	'the CALL split c_v1 into slices');
ok( poll_true(
		$node, qq{
		SELECT wait_event = 'PgSleep' FROM pg_stat_activity WHERE pid = $call_pid}),
	'the CALL waits at the gate in its first batch');

# Wake the launcher: the look that starts w_v1's worker sees c_v1's slices.
new_table($node, 'w', 100);
define_migration($node, 'w_v1', 'w',
	'UPDATE w SET n = n + 1 WHERE id BETWEEN $1 AND $2', batch_size => 10);
$node->safe_psql('postgres', "SELECT mig_start('w_v1')");
my $C_WORKERS_SQL = q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE backend_type = 'migration_runner worker'
	   AND application_name LIKE 'migration_runner: c_v1%'};
my $c_workers = 0;
$deadline = time() + $WAIT_SECS;
while (time() < $deadline)
{
	$c_workers += $node->safe_psql('postgres', $C_WORKERS_SQL);
	last if mig_row($node, 'w_v1', 'status')->{status} eq 'completed';
	usleep(20_000);
}
is(mig_row($node, 'w_v1', 'status')->{status},
	'completed', 'w_v1 was started and completed meanwhile');
# and a second more: the launcher looks again within one
my $until = time() + 1.5;
while (time() < $until)
{
	$c_workers += $node->safe_psql('postgres', $C_WORKERS_SQL);
	usleep(50_000);
}
is($c_workers, 0, 'no worker was seen for c_v1 while the CALL ran it');
is( $node->safe_psql('postgres', qq{
	SELECT count(*) FROM mig_slices
	 WHERE name = 'c_v1' AND worker_pid IS NOT NULL AND worker_pid <> $call_pid}),
	'0', 'no slice of c_v1 names a runner other than the CALL');

set_gate('true');
my $stderr = call_end($bg, 'c_v1');
unlike($stderr, qr/ERROR/, 'the CALL returned without an error') or diag($stderr);
is(mig_row($node, 'c_v1', 'status')->{status}, 'completed', 'c_v1 completed');
exactly_once_ok($node, 'c', 'c_v1', 2000, 'c_v1');
is( $node->safe_psql('postgres',
		"SELECT string_agg(DISTINCT pid::text, ',') FROM probe_log WHERE mig = 'c'"),
	$call_pid, 'every batch of c_v1 ran in the CALL\'s session');

# --- (d) a slice beyond a lowered parallel -----------------------------------------
# The batches of d_v1 wait while their first key is above gate_upto.
$node->safe_psql('postgres', q{
	CREATE TABLE key_gate (upto int NOT NULL);
	INSERT INTO key_gate VALUES (0);
	CREATE FUNCTION key_wait(k int) RETURNS int LANGUAGE plpgsql AS $$
	BEGIN
		WHILE k > (SELECT upto FROM key_gate) LOOP
			PERFORM pg_sleep(0.01);
		END LOOP;
		RETURN 1;
	END $$;
});
new_table($node, 'd', 2000);
$node->safe_psql('postgres',
	    "SELECT mig_define(name => 'd_v1', relation => 'd', action => "
	  . q_lit('WITH g AS (SELECT key_wait($1) AS x) UPDATE d SET n = n + 1 FROM g WHERE id BETWEEN $1 AND $2')
	  . ", batch_size => 50, parallel => 2, statement_timeout => '120s')");
$node->safe_psql('postgres', "SELECT mig_start('d_v1')");
ok( poll_true(
		$node, q{
		SELECT count(*) = 2 AND count(a.pid) = 2 FROM mig_slices s
		  LEFT JOIN pg_stat_activity a ON a.pid = s.worker_pid
		 WHERE s.name = 'd_v1' AND s.status = 'running'}),
	'd_v1 runs in two slices, each with its worker waiting at the key gate');
my %d_pid = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
	"SELECT slice, worker_pid FROM mig_slices WHERE name = 'd_v1'");
my $upper1 = $node->safe_psql('postgres',
	"SELECT (upper_key::text[])[1] FROM mig_slices WHERE name = 'd_v1' AND slice = 1");

# slice 2 is beyond parallel now; slice 1 runs to its end, then its runner
# waits to take half of slice 2, whose batch waits at the gate
$node->safe_psql('postgres', "SELECT mig_alter('d_v1', parallel => 1)");
$node->safe_psql('postgres', "UPDATE key_gate SET upto = $upper1");
ok( poll_true(
		$node, qq{
		SELECT s.status = 'done' AND a.wait_event_type = 'Lock'
		  FROM mig_slices s, pg_stat_activity a
		 WHERE s.name = 'd_v1' AND s.slice = 1 AND a.pid = $d_pid{1}}),
	'slice 1 is done and its runner waits to take work from slice 2');
my $offset_d = -s $node->logfile;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($d_pid{1})");
ok(wait_pid_gone($node, $d_pid{1}, 30), "slice 1's runner (pid $d_pid{1}) is gone");

# slice 2 still has its runner: no worker for the done slice 1, for longer
# than the backoff of the terminated one
my $until_d = time() + 2.5;
my $d_workers = 0;
while (time() < $until_d)
{
	my $seen = $node->safe_psql('postgres', q{
		SELECT count(*) FROM pg_stat_activity
		 WHERE application_name LIKE 'migration_runner: d_v1%'});
	$d_workers = $seen if $seen > $d_workers;
	usleep(50_000);
}
my @d_starts = grep { /DEBUG:  registering background worker "migration_runner worker for d_v1/ }
  split /\n/, slurp_file($node->logfile, $offset_d);
is(scalar(@d_starts), 0, 'no worker was started for d_v1 while slice 2 had its runner')
  or diag(join("\n", @d_starts));
is($d_workers, 1, "only slice 2's worker was seen meanwhile");

# slice 2 loses its runner: a worker of the done slice 1 adopts it
$node->safe_psql('postgres', "SELECT pg_terminate_backend($d_pid{2})");
ok(wait_pid_gone($node, $d_pid{2}, 30), "slice 2's runner (pid $d_pid{2}) is gone");
my $adopter = poll_value($node, qq{
	SELECT s.worker_pid FROM mig_slices s
	  JOIN pg_stat_activity a ON a.pid = s.worker_pid
	 WHERE s.name = 'd_v1' AND s.slice = 2 AND s.worker_pid <> $d_pid{2}
	   AND a.application_name = 'migration_runner: d_v1 slice 1'}) // 0;
ok($adopter, "a worker started for slice 1 adopted slice 2 (pid $adopter)");
$node->safe_psql('postgres', 'UPDATE key_gate SET upto = 2147483647');
is($node->safe_psql('postgres', "SELECT mig_wait('d_v1', '60s')"),
	'completed', 'd_v1 completes');
exactly_once_ok($node, 'd', 'd_v1', 2000, 'd_v1');

log_has_no_crash($node, 0, 'slice workers');
$node->stop;
done_testing();
