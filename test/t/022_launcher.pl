# The launcher: how it restarts workers, counts them and copes with what it
# cannot do.
#   - with max_worker_processes exhausted the migrations wait, say so in
#     migrations.throttled, the log says so once, and they complete once a
#     slot frees
#   - pg_cancel_backend does not stop the launcher
#   - a pause and a resume are not a crash: the next batch starts at once,
#     however often it happens; a worker that dies mid-run is started again
#     after a backoff, and the catalog does not show its dead pid meanwhile
#   - a launcher restarted after pg_terminate_backend counts the workers it
#     inherited against migration_runner.max_workers
#   - an owner without CONNECT on the database fails the migration with a
#     reason (instead of a worker that cannot connect, restarted forever)
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use MigTest;

# A gate the actions of some migrations wait on (polling, in READ COMMITTED,
# so that they see it open): their workers stay in their first batch until
# the test opens it.  Each batch then takes 20 ms more, so that the runs
# last long enough to be seen running side by side.
sub create_gate
{
	my ($node) = @_;
	$node->safe_psql('postgres', q{
		CREATE TABLE gate (open bool NOT NULL);
		INSERT INTO gate VALUES (false);
		CREATE FUNCTION gate_wait() RETURNS int LANGUAGE plpgsql AS $$
		BEGIN
			WHILE NOT (SELECT open FROM gate) LOOP
				PERFORM pg_sleep(0.01);
			END LOOP;
			PERFORM pg_sleep(0.02);
			RETURN 1;
		END $$;
	});
	return;
}

sub set_gate
{
	my ($node, $open) = @_;
	$node->safe_psql('postgres', "UPDATE gate SET open = $open");
	return;
}

# A migration of table $t ($rows rows) whose batches wait for the gate.
sub define_gated
{
	my ($node, $name, $t, $rows) = @_;
	new_table($node, $t, $rows);
	define_migration($node, $name, $t,
		"WITH g AS (SELECT gate_wait() AS x) UPDATE $t SET n = n + 1 FROM g WHERE id BETWEEN \$1 AND \$2",
		batch_size => 20, statement_timeout => '120s');
	return;
}

my $WORKERS_SQL =
  "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'migration_runner worker'";
my $LAUNCHER_SQL =
  "SELECT pid FROM pg_stat_activity WHERE backend_type = 'migration_runner launcher'";

# --- no free background worker slot ------------------------------------------------
# Three slots: the launcher's, the scheduler's of database postgres and one
# for a worker (no logical replication launcher, no parallel workers to take
# one).
my $slots = mig_node('mrtap_launcher_slots', conf => qq{
max_worker_processes = 3
max_logical_replication_workers = 0
max_parallel_workers = 0
migration_runner.max_workers = 4
log_error_verbosity = verbose
});
create_gate($slots);
my @waiting = qw(s1 s2 s3);
define_gated($slots, "${_}_v1", $_, 200) for @waiting;
my $offset = -s $slots->logfile;
$slots->safe_psql('postgres', "SELECT mig_start('s1_v1')");
ok(poll_true($slots, "SELECT ($WORKERS_SQL) = 1"), 's1_v1 has the only free slot');

my $msg = 'waiting for a free background worker slot (max_worker_processes)';
for my $t (qw(s2 s3))
{
	$slots->safe_psql('postgres', "SELECT mig_start('${t}_v1')");
	ok( poll_true(
			$slots,
			"SELECT throttled = '$msg' FROM migrations WHERE name = '${t}_v1'",
			10),
		"${t}_v1 says it waits for a background worker slot");
	is(mig_row($slots, "${t}_v1", 'status')->{status},
		'running', "${t}_v1 stays running meanwhile");
}

# count the launcher's lines about the missing slot
sub slot_lines
{
	my @lines = grep { /no (?:free )?background worker slot/ }
	  split /\n/, slurp_file($slots->logfile, $offset);
	return @lines;
}
my @lines = slot_lines();
is(scalar(@lines), 1, 'the missing slot is logged once')
  or diag(join("\n", @lines));
like($lines[0] // '', qr/LOG:  53000: /,
	'... as insufficient resources (SQLSTATE 53000)');

set_gate($slots, 'true');
for my $t (@waiting)
{
	is($slots->safe_psql('postgres', "SELECT mig_wait('${t}_v1', '60s')"),
		'completed', "${t}_v1 completes once a slot is free");
	exactly_once_ok($slots, $t, "${t}_v1", 200, "${t}_v1");
}
is( $slots->safe_psql('postgres',
		"SELECT count(*) FROM migrations WHERE throttled IS NOT NULL"),
	'0', 'no migration says it is waiting any more');
@lines = slot_lines();
is(scalar(@lines), 1, 'still one line about the missing slot after they ran')
  or diag(join("\n", @lines));

log_has_no_crash($slots, 0, 'slots');
$slots->stop;

my $node = mig_node('mrtap_launcher', conf => "migration_runner.max_workers = 2\n");
create_gate($node);

# --- pg_cancel_backend does not stop the launcher ------------------------------
my $launcher = poll_value($node, $LAUNCHER_SQL) // 0;
ok($launcher, "the launcher is connected (pid $launcher)");
is($node->safe_psql('postgres', "SELECT pg_cancel_backend($launcher)"),
	't', 'pg_cancel_backend of the launcher returns true');
new_table($node, 'sigint', 100);
define_migration($node, 'sigint_v1', 'sigint',
	'UPDATE sigint SET n = n + 1 WHERE id BETWEEN $1 AND $2', batch_size => 10);
$node->safe_psql('postgres', "SELECT mig_start('sigint_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('sigint_v1', '3s')"),
	'completed', 'after the cancel request a started migration completes at once');
is($node->safe_psql('postgres', $LAUNCHER_SQL),
	$launcher, 'the launcher survived the cancel request (same pid)');
# (before the fix the launcher died: wait for its successor, so that what
# follows tests what it is meant to test)
poll_value($node, $LAUNCHER_SQL);

# --- pause and resume are not a crash --------------------------------------------
new_table($node, 'pr', 6000);
define_migration($node, 'pr_v1', 'pr', undef, batch_size => 10, slow => 0.02);
$node->safe_psql('postgres', "SELECT mig_start('pr_v1')");

# Seconds from $since (a timestamptz literal) to the start of the first batch
# of pr_v1 after it, as the server's clocks say.
sub first_batch_after
{
	my ($since) = @_;
	return poll_value($node, qq{
		SELECT round(extract(epoch FROM min(b.started_at) - '$since')::numeric, 3)
		  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
		 WHERE m.name = 'pr_v1' AND b.started_at > '$since'
		HAVING count(*) > 0});
}

ok(poll_true($node, "SELECT batches > 0 FROM migrations WHERE name = 'pr_v1'"),
	'pr_v1 ran a batch');
for my $cycle (1 .. 5)
{
	my $pid = wait_for_worker($node, 'pr_v1') // 0;
	$node->safe_psql('postgres', "SELECT mig_pause('pr_v1')");
	ok(wait_pid_gone($node, $pid, 30), "cycle $cycle: the worker of the paused pr_v1 exits");
	# the time just after mig_resume committed (the last line printed)
	my ($resumed) = reverse split /\n/, $node->safe_psql('postgres',
		"SELECT mig_resume('pr_v1'); SELECT clock_timestamp()");
	my $delay = first_batch_after($resumed) // 'none';
	ok($delay ne 'none' && $delay < 1.0,
		"cycle $cycle: the first batch after mig_resume starts within 1 s (took $delay s)");
}

# A worker that dies mid-run is a crash: started again after a backoff, and
# meanwhile the catalog names no worker.
$offset = -s $node->logfile;
my $dead = wait_for_worker($node, 'pr_v1') // 0;
ok($dead, "pr_v1 has a worker (pid $dead)");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($dead)");
ok( poll_true(
		$node,
		"SELECT worker_pid IS NULL AND status = 'running' FROM migrations WHERE name = 'pr_v1'",
		10),
	'after its worker died, pr_v1 is running with worker_pid NULL during the backoff');
ok( $node->log_contains(
		qr/worker for migration "pr_v1" exited before it finished; starting it again in \d+ ms/,
		$offset),
	'the log names the migration whose worker died and the backoff');
my $next = wait_for_worker($node, 'pr_v1') // 0;
ok($next && $next != $dead, "a new worker runs pr_v1 after the backoff (pid $next)");
is($node->safe_psql('postgres', "SELECT mig_wait('pr_v1', '120s')"),
	'completed', 'pr_v1 completes');
exactly_once_ok($node, 'pr', 'pr_v1', 6000, 'pr_v1');

# --- a restarted launcher counts the workers it inherited -------------------------
my @gated = qw(g1 g2 g3 g4);
define_gated($node, "${_}_v1", $_, 400) for @gated;
$node->safe_psql('postgres', join('; ', map { "SELECT mig_start('${_}_v1')" } @gated));
ok(poll_true($node, "SELECT ($WORKERS_SQL) = 2"), 'two workers run (max_workers = 2)');
$launcher = $node->safe_psql('postgres', $LAUNCHER_SQL);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
my $successor = poll_value($node,
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'migration_runner launcher'"
	  . " AND pid <> $launcher AND state = 'idle'") // 0;
ok($successor, "a new launcher (pid $successor) has looked at the migrations");

# Open the gate and sample the workers of the server until all four are done.
set_gate($node, 'true');
my $gated_names = join(', ', map { "'${_}_v1'" } @gated);
my ($max_seen, $done) = (0, 0);
my $deadline = time() + $WAIT_SECS;
while (time() < $deadline)
{
	my ($workers, $finished) = split /\|/, $node->safe_psql('postgres', qq{
		SELECT ($WORKERS_SQL) || '|' ||
			   (SELECT count(*) FROM migrations
				 WHERE name IN ($gated_names) AND status <> 'running')});
	$max_seen = $workers if $workers > $max_seen;
	if ($finished == 4) { $done = 1; last; }
	usleep(20_000);
}
ok($done, 'the four gated migrations ended');
cmp_ok($max_seen, '<=', 2,
	'never more than max_workers = 2 workers after the launcher restarted');
for my $t (@gated)
{
	is($node->safe_psql('postgres', "SELECT mig_wait('${t}_v1', '30s')"),
		'completed', "${t}_v1 completed");
	exactly_once_ok($node, $t, "${t}_v1", 400, "${t}_v1");
}
set_gate($node, 'false');

# --- an owner who may not connect ---------------------------------------------------
$node->safe_psql('postgres', q{
	CREATE ROLE nocon LOGIN;
	CREATE TABLE nc (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
	INSERT INTO nc (id) SELECT g FROM generate_series(1, 100) g;
	ALTER TABLE nc OWNER TO nocon;
});
define_migration($node, 'nc_v1', 'nc',
	'UPDATE nc SET n = n + 1 WHERE id BETWEEN $1 AND $2', user => 'nocon');
$node->safe_psql('postgres', 'REVOKE CONNECT ON DATABASE postgres FROM PUBLIC');
$offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT mig_start('nc_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('nc_v1', '10s')"),
	'failed', 'a migration whose owner may not connect fails');
like(mig_row($node, 'nc_v1', 'error')->{error},
	qr/owner role "nocon" has no CONNECT privilege on database "postgres"/,
	'its error says that the owner may not connect');
ok( $node->log_contains(
		qr/migration "nc_v1" cannot be run: owner role "nocon" has no CONNECT privilege/,
		$offset),
	'the log names the migration and the reason');
is($node->safe_psql('postgres', 'SELECT count(*) FROM nc WHERE n <> 0'),
	'0', 'no row of nc was changed');
$node->safe_psql('postgres', 'GRANT CONNECT ON DATABASE postgres TO PUBLIC');
$node->safe_psql('postgres', "SELECT mig_start('nc_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('nc_v1', '30s')"),
	'completed', 'with CONNECT granted again it completes');

log_has_no_crash($node, 0, 'launcher');
$node->stop;

done_testing();
