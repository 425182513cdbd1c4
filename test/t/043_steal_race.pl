# A steal racing with the owner's batch.
#
# Two slices.  A session holds a row lock on a key in the second slice's
# range, so the second slice's batch that reaches that key stays in flight,
# blocked in its action.  The first slice runs out of keys meanwhile; with
# no slice left without a runner, its runner must steal the upper half of
# what the second slice has left.  It must wait for the owner's batch (the
# slice's row is locked by that batch's transaction) and, once that batch
# committed, split only what is left after it: no key of the batch that was
# in flight may go to the thief, and every row is changed exactly once.
#
# (This is not an isolation spec: in the isolation suite's database no
# worker runs, and a second CALL mig_run is refused while a first one runs
# any slice, so two runners of one migration exist only with workers.)
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;
use SliceTest;

my $rows  = 20000;
my $batch = 100;
my $held  = 15000;    # the key whose row lock blocks the owner's batch

my $node = mig_node('mrtap_stealrace',
	conf => "migration_runner.max_workers = 8\n"
	  . "migration_runner.history_size = 1000000\n");

new_table($node, 'sr', $rows);
my $sc = int_key('race_v1', 'sr', 2);
# no lock_timeout nor statement_timeout: the blocked batch waits as long as
# the row is held, and is not retried
define_sliced($node, 'race_v1', 'sr',
	'UPDATE sr SET n = n + 1 WHERE id BETWEEN $1 AND $2',
	batch_size        => $batch,
	batch_delay       => '5ms',
	lock_timeout      => '0',
	statement_timeout => '0',
	parallel          => 2);

my $locker = $node->background_psql('postgres');
$locker->set_query_timer_restart;
my $locker_pid = $locker->query_safe('SELECT pg_backend_pid()');
$locker->query_safe("BEGIN; SELECT id FROM sr WHERE id = $held FOR UPDATE");

$node->safe_psql('postgres', "SELECT mig_start('race_v1')");

# the layout as the run made it: the owner is the slice whose range holds
# the locked key
my $layout = poll_value($node, q{
	SELECT string_agg(slice || ',' || coalesce(lower_key[1], '') || ',' || upper_key[1], ';'
					  ORDER BY slice)
	  FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
	 WHERE m.name = 'race_v1' HAVING count(*) > 0}) // '';
note("slices at the start: $layout");
my @orig = map { [ split /,/, $_, -1 ] } split /;/, $layout;
is(scalar(@orig), 2, 'the run made 2 slices');
my ($owner) = grep { ($_->[1] eq '' || $_->[1] < $held) && $held <= $_->[2] } @orig;
ok(defined $owner, "a slice holds key $held");
$owner //= [ 0, '', 0 ];
my ($oslice, $olower, $oupper) = @$owner;
cmp_ok($oupper - $held, '>=', 8 * $batch,
	"the owner (slice $oslice) has at least 8 batches after key $held");

# the owner's batch is blocked by the locker, and the thief by the owner
ok( poll_true($node, qq{
		SELECT EXISTS (SELECT 1 FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
						WHERE m.name = 'race_v1' AND s.slice = $oslice
						  AND $locker_pid = ANY (pg_blocking_pids(s.worker_pid)))}),
	"the owner's batch waits for the row lock on key $held");
my $thief_wait = poll_value($node, qq{
	SELECT a.pid FROM pg_stat_activity a, migration_slices s JOIN migrations m ON m.id = s.migration_id
	 WHERE m.name = 'race_v1' AND s.slice = $oslice
	   AND a.backend_type = 'migration_runner worker' AND a.pid <> s.worker_pid
	   AND s.worker_pid = ANY (pg_blocking_pids(a.pid))});
ok(defined $thief_wait,
	'the other slice\'s runner, out of keys, waits for the owner\'s batch');
$thief_wait //= 0;

my $at_wait = slices_of($node, 'race_v1');
note("while the thief waits: $at_wait");
my $ocursor = $node->safe_psql('postgres', qq{
	SELECT coalesce(s.cursor[1], '') FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
	 WHERE m.name = 'race_v1' AND s.slice = $oslice});
cmp_ok($ocursor eq '' ? 0 : $ocursor, '<', $held,
	"the owner's committed cursor ($ocursor) is before the blocked batch");
is( $node->safe_psql('postgres', qq{
		SELECT upper_key[1] FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
		 WHERE m.name = 'race_v1' AND s.slice = $oslice}),
	$oupper, "the owner's range is not cut while its batch is in flight");
sliced_consistent_ok($node, $sc, 'while the thief waits');
slice_invariants_ok($node, $sc, 'while the thief waits');

$locker->query_safe('COMMIT');
$locker->quit;

is($node->safe_psql('postgres', "SELECT mig_wait('race_v1', '60s')"),
	'completed', 'completed');
exactly_once_ok($node, 'sr', 'race_v1', $rows, 'steal race');
history_ok($node, $sc, $rows, 'steal race');

my $id = mig_id($node, 'race_v1');
# the batch that was blocked: run by the owner, in full
my $blocked = $node->safe_psql('postgres', qq{
	SELECT slice || '|' || first_key[1] || '|' || last_key[1] || '|' || keys
	  FROM migration_batches
	 WHERE migration_id = $id AND first_key[1]::int <= $held AND last_key[1]::int >= $held});
my ($bslice, $bfirst, $blast, $bkeys) = split /\|/, $blocked;
is($bslice, $oslice, "the batch holding key $held was run by the owner (slice $oslice)");
is($bkeys, $batch, "... in full ($bfirst..$blast, $bkeys keys)");

# what other slices ran in the owner's original range: only keys after the
# blocked batch, and (about) the upper half of what was left after it
my $stolen = $node->safe_psql('postgres', qq{
	SELECT count(*) || '|' || coalesce(min(first_key[1]::int), 0)
	  FROM migration_batches
	 WHERE migration_id = $id AND slice <> $oslice
	   AND last_key[1]::int > } . ($olower eq '' ? 0 : $olower) . qq{
	   AND first_key[1]::int <= $oupper});
my ($nstolen, $from) = split /\|/, $stolen;
note("stolen: $nstolen batches from key $from");
cmp_ok($nstolen, '>', 0, 'the thief ran batches in the owner\'s range');
cmp_ok($from, '>', $blast,
	"the thief took only keys after the owner's blocked batch (from $from, after $blast)");
my $left = $oupper - $blast;
cmp_ok($from, '>=', $blast + int($left / 4),
	"the thief took about the upper half of what was left ($blast..$oupper)");
cmp_ok($from, '<=', $blast + int(3 * $left / 4),
	'... not just a sliver of its end');

log_has_no_crash($node, 0, 'steal race');
$node->stop;
done_testing();
