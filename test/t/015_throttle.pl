# Health throttling between batches: the runner waits, saying why in
# migrations.throttled, while
#   * the last batch blocked more than migration_runner.max_lock_waiters
#     sessions (one throttle_sleep per such batch), and
#   * the server writes WAL faster than migration_runner.max_wal_rate;
# it goes on once the condition is gone (the WAL limit raised with a reload),
# and a pause is honoured while it is throttled.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_throttle',
	conf => "migration_runner.max_lock_waiters = 1\n"
	  . "migration_runner.throttle_sleep = '3s'\n");

sub advisory_waiters
{
	my ($objid) = @_;
	return "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
	  . " AND classid = 0 AND objid = $objid AND objsubid = 1 AND NOT granted)";
}

# --- max_lock_waiters -------------------------------------------------------
# In the batch that starts at key 51 (batch 6) the action takes advisory
# lock 2 and then waits for lock 1, which the test holds.  Two sessions then
# queue for lock 2 behind the runner; the test releases lock 1, and at the end
# of the batch the runner counts 2 waiters > max_lock_waiters (1).
$node->safe_psql('postgres', q{
	CREATE FUNCTION gate(first int) RETURNS int LANGUAGE plpgsql AS $f$
	BEGIN
		IF first = 51 THEN
			PERFORM pg_advisory_xact_lock(2);
			PERFORM pg_advisory_xact_lock_shared(1);
		END IF;
		RETURN 1;
	END $f$;
});
new_table($node, 'w', 200);
define_migration($node, 'waiters_v1', 'w',
	'WITH s AS (SELECT gate($1) AS g) UPDATE w SET n = n + s.g FROM s WHERE id BETWEEN $1 AND $2',
	batch_size => 10, lock_timeout => '60s', statement_timeout => '60s');

my $holder = $node->background_psql('postgres');
$holder->set_query_timer_restart();
$holder->query_safe('SELECT pg_advisory_lock(1)');
$node->safe_psql('postgres', "SELECT mig_start('waiters_v1')");
ok(poll_true($node, advisory_waiters(1) . ' = 1'),
	'the runner waits for lock 1 inside batch 6');

my @waiters;
for my $i (1 .. 2)
{
	my $s = $node->background_psql('postgres');
	$s->set_query_timer_restart();
	$s->query_until(qr/queued/, "\\echo queued\nSELECT pg_advisory_xact_lock(2);\n");
	push @waiters, $s;
}
ok(poll_true($node, advisory_waiters(2) . ' = 2'),
	'two sessions wait for lock 2, held by the runner');
is(mig_row($node, 'waiters_v1', 'batches')->{batches}, '5',
	'5 batches committed before the blocking one');
$holder->query_safe('SELECT pg_advisory_unlock(1)');

my $reason = poll_value($node,
	"SELECT throttled FROM migrations WHERE name = 'waiters_v1' AND throttled LIKE '%max_lock_waiters%'");
ok(defined $reason, 'the runner throttles after the batch that blocked 2 sessions');
note('throttled: ' . ($reason // '<none>'));
like($reason // '', qr/^2 sessions waited on the runner's locks.*max_lock_waiters \(1\)/,
	'throttled says 2 sessions waited, more than max_lock_waiters (1)');
is(mig_row($node, 'waiters_v1', 'batches')->{batches}, '6',
	'batch 6 committed; the next waits for the throttle');
$_->quit for @waiters;

is($node->safe_psql('postgres', "SELECT mig_wait('waiters_v1', '60s')"),
	'completed', 'waiters_v1: completes after one throttle sleep');
exactly_once_ok($node, 'w', 'waiters_v1', 200, 'waiters_v1');
is(mig_row($node, 'waiters_v1', 'throttled')->{throttled}, '<null>',
	'throttled cleared');
my $gap = $node->safe_psql('postgres', q{
	SELECT extract(epoch FROM b7.started_at
		- (b6.started_at + b6.duration_ms * interval '1 ms'))
	  FROM migration_batches b6
	  JOIN migration_batches b7 ON b7.migration_id = b6.migration_id
	  JOIN migrations m ON m.id = b6.migration_id
	 WHERE m.name = 'waiters_v1' AND b6.batch = 6 AND b7.batch = 7});
cmp_ok($gap, '>=', 2.9, "batch 7 started a throttle_sleep (3 s) after batch 6 ($gap s)");
my $maxgap = $node->safe_psql('postgres', q{
	SELECT max(extract(epoch FROM b2.started_at
		- (b1.started_at + b1.duration_ms * interval '1 ms')))
	  FROM migration_batches b1
	  JOIN migration_batches b2 ON b2.migration_id = b1.migration_id
		AND b2.batch = b1.batch + 1
	  JOIN migrations m ON m.id = b1.migration_id
	 WHERE m.name = 'waiters_v1' AND b1.batch >= 7});
cmp_ok($maxgap, '<', 2.5, "no throttle after batches that blocked nobody ($maxgap s)");
$holder->quit;

# --- max_wal_rate: engages, and releases when the limit is raised ----------
ok(set_server_guc($node, 'migration_runner.max_lock_waiters', '0'), 'max_lock_waiters off');
ok(set_server_guc($node, 'migration_runner.throttle_sleep', '100ms'), 'throttle_sleep 100ms');
ok(set_server_guc($node, 'migration_runner.max_wal_rate', '1'), 'max_wal_rate = 1 kB/s');

for my $t (qw(wal walp))
{
	new_table($node, $t, 10000);
	define_migration($node, "${t}_v1", $t, undef, batch_size => 50, slow => 0.01);
}

$node->safe_psql('postgres', "SELECT mig_start('wal_v1')");
$reason = poll_value($node,
	"SELECT throttled FROM migrations WHERE name = 'wal_v1' AND throttled LIKE '%max_wal_rate%'");
ok(defined $reason, 'wal_v1: throttled on the WAL rate');
note('throttled: ' . ($reason // '<none>'));
like($reason // '', qr/^WAL is written at \d+ kB\/s, more than migration_runner.max_wal_rate \(1 kB\/s\)/,
	'throttled gives the rate and the limit');
my $r = mig_row($node, 'wal_v1', qw(status processed));
is($r->{status}, 'running', 'wal_v1 is running while throttled');
cmp_ok($r->{processed}, '<', 10000, 'wal_v1 is not done while throttled');

ok(set_server_guc($node, 'migration_runner.max_wal_rate', '0'), 'max_wal_rate off (reload)');
is($node->safe_psql('postgres', "SELECT mig_wait('wal_v1', '60s')"),
	'completed', 'wal_v1: released by the reload, completes');
exactly_once_ok($node, 'wal', 'wal_v1', 10000, 'wal_v1');
is(mig_row($node, 'wal_v1', 'throttled')->{throttled}, '<null>',
	'throttled cleared');

# --- a pause while throttled --------------------------------------------------
ok(set_server_guc($node, 'migration_runner.max_wal_rate', '1'), 'max_wal_rate = 1 kB/s again');
$node->safe_psql('postgres', "SELECT mig_start('walp_v1')");
ok( poll_true(
		$node,
		"SELECT throttled LIKE '%max_wal_rate%' FROM migrations WHERE name = 'walp_v1'"),
	'walp_v1: throttled on the WAL rate');
my $pid = wait_for_worker($node, 'walp_v1') // 0;
$node->safe_psql('postgres', "SELECT mig_pause('walp_v1')");
ok(wait_pid_gone($node, $pid, 30), 'the throttled worker exits on pause');
$r = mig_row($node, 'walp_v1', qw(status throttled worker_pid processed));
is($r->{status}, 'paused', 'walp_v1 paused');
is($r->{throttled}, '<null>', 'a paused migration is not shown as throttled');
is($r->{worker_pid}, '<null>', 'no runner recorded');
is( $node->safe_psql('postgres',
		'SELECT count(*) FILTER (WHERE n = 1) || \'/\' || count(*) FILTER (WHERE n > 1) FROM walp'),
	"$r->{processed}/0", 'exactly the processed rows were changed');
ok(set_server_guc($node, 'migration_runner.max_wal_rate', '0'), 'max_wal_rate off');
$node->safe_psql('postgres', "SELECT mig_resume('walp_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('walp_v1', '60s')"),
	'completed', 'walp_v1: completes after resume');
exactly_once_ok($node, 'walp', 'walp_v1', 10000, 'walp_v1');

log_has_no_crash($node, 0, 'throttle');
$node->stop;
done_testing();
