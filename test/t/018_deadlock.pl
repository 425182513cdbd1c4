# A real deadlock between the runner's batch and another session: the
# deadlock detector picks the runner (40P01), its batch rolls back (releasing
# its locks, so the other session goes on), and the batch is retried; the
# migration completes with every row changed exactly once.
#
# Locks (advisory, so the order is exact):
#   S holds 102 and asks for 101;  the runner holds 101 and asks for 102.
# The runner is made to ask last, and S has a long deadlock_timeout, so the
# runner is the one whose deadlock check finds the cycle.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_deadlock', conf => "deadlock_timeout = '100ms'\n");

sub waiting_on
{
	my ($objid) = @_;
	return "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
	  . " AND classid = 0 AND objid = $objid AND objsubid = 1 AND NOT granted) = 1";
}

# batch 2 (first key 11): attempt 1 takes 101, waits for the gate 103 (held
# by the test), then asks for 102 (held by S); attempt 2 waits for 104 (held
# by the test) so the retry can be looked at, then goes on.
$node->safe_psql('postgres', q{
	CREATE SEQUENCE attempt_seq;
	CREATE FUNCTION gate(first int) RETURNS int LANGUAGE plpgsql AS $f$
	DECLARE
		a bigint;
	BEGIN
		IF first = 11 THEN
			a := nextval('attempt_seq');
			IF a = 1 THEN
				PERFORM pg_advisory_xact_lock(101);
				PERFORM pg_advisory_xact_lock_shared(103);
				PERFORM pg_advisory_xact_lock(102);
			ELSIF a = 2 THEN
				PERFORM pg_advisory_xact_lock_shared(104);
			END IF;
		END IF;
		RETURN 1;
	END $f$;
});
new_table($node, 'd', 100);
define_migration($node, 'deadlock_v1', 'd',
	'WITH s AS (SELECT gate($1) AS g) UPDATE d SET n = n + s.g FROM s WHERE id BETWEEN $1 AND $2',
	batch_size => 10, lock_timeout => '60s', max_retries => 3);

my $t = $node->background_psql('postgres');
$t->set_query_timer_restart();
$t->query_safe('SELECT pg_advisory_lock(103), pg_advisory_lock(104)');
my $s = $node->background_psql('postgres');
$s->set_query_timer_restart();
$s->query_safe(
	"SET deadlock_timeout = '60s'; BEGIN; SELECT pg_advisory_xact_lock(102)");

$node->safe_psql('postgres', "SELECT mig_start('deadlock_v1')");
ok(poll_true($node, waiting_on(103)), 'the runner holds 101 and waits at the gate');
$s->query_until(qr/asking/, "\\echo asking\nSELECT pg_advisory_xact_lock(101);\n");
ok(poll_true($node, waiting_on(101)), 'S waits for 101, held by the runner');
$t->query_safe('SELECT pg_advisory_unlock(103)');

ok( poll_true(
		$node,
		"SELECT retries = 1 AND throttled LIKE 'retrying batch 2 %40P01%deadlock detected%'"
		  . " FROM migrations WHERE name = 'deadlock_v1'"),
	'the runner got the deadlock (40P01) and retries batch 2');
ok(poll_true($node, waiting_on(104)), 'the retry of batch 2 is running');
is(mig_row($node, 'deadlock_v1', 'batches')->{batches}, '1',
	'only batch 1 committed so far');

# S got 101 when the runner's batch rolled back: its statement ends without
# an error (query_safe dies on one)
my $out = $s->query_safe('SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()'
	  . " AND locktype = 'advisory' AND granted");
like($out, qr/^2$/m, 'S holds both 101 and 102: it was not the deadlock victim');
$s->query_safe('COMMIT');
$t->query_safe('SELECT pg_advisory_unlock(104)');

is($node->safe_psql('postgres', "SELECT mig_wait('deadlock_v1', '60s')"),
	'completed', 'deadlock_v1 completed');
exactly_once_ok($node, 'd', 'deadlock_v1', 100, 'deadlock_v1');
my $r = mig_row($node, 'deadlock_v1', qw(retries throttled error));
is($r->{retries}, '1', 'retries = 1');
is($r->{throttled}, '<null>', 'throttled cleared');
is($r->{error}, '<null>', 'no error');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(batch || ':' || attempts, ',' ORDER BY batch)
		  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
		 WHERE m.name = 'deadlock_v1' AND batch <= 3}),
	'1:1,2:2,3:1', 'migration_batches: batch 2 took 2 attempts');

$s->quit;
$t->quit;
log_has_no_crash($node, 0, 'deadlock');
$node->stop;
done_testing();
