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
# Then the same with kill -9 while the thief waits: after the restart, the
# slice left must again get a second runner.
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

# --- kill -9 while the thief waits --------------------------------------
#
# The same race, but the server is killed while the thief waits for the
# owner's batch: neither commits.  After the restart the owner's slice
# still has dozens of slow batches to do and the other slice is done.  With
# parallel 2, a second runner must take part of it again (a runner whose
# slice is done steals), as it was about to before the crash: the
# migration must not finish on one runner.
{
	my $t     = 'sr2';
	my $name  = 'race2_v1';
	my $held2 = 2000;
	my $label = 'crash while the thief waits';
	new_table($node, $t, $rows);
	my $sc2 = int_key($name, $t, 2);
	my $q   = $rows / 2;
	define_sliced($node, $name, $t,
		"WITH s AS (SELECT pg_sleep(CASE WHEN \$1 <= $q THEN 0.05 ELSE 0 END)) "
		  . "UPDATE $t SET n = n + 1 FROM s WHERE id BETWEEN \$1 AND \$2",
		batch_size        => $batch,
		batch_delay       => '5ms',
		lock_timeout      => '0',
		statement_timeout => '0',
		parallel          => 2);
	my $lk = $node->background_psql('postgres');
	$lk->set_query_timer_restart;
	my $lk_pid = $lk->query_safe('SELECT pg_backend_pid()');
	$lk->query_safe("BEGIN; SELECT id FROM $t WHERE id = $held2 FOR UPDATE");
	$node->safe_psql('postgres', "SELECT mig_start('$name')");

	my $lay = poll_value($node, qq{
		SELECT string_agg(slice || ',' || coalesce(lower_key[1], '') || ',' || upper_key[1], ';'
						  ORDER BY slice)
		  FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
		 WHERE m.name = '$name' HAVING count(*) > 0}) // '';
	note("$label: slices at the start: $lay");
	my ($own) = grep { ($_->[1] eq '' || $_->[1] < $held2) && $held2 <= $_->[2] }
	  map { [ split /,/, $_, -1 ] } split /;/, $lay;
	$own //= [ 0, '', 0 ];
	my ($os) = @$own;
	ok($os > 0, "$label: slice $os holds key $held2");
	ok( poll_true($node, qq{
			SELECT EXISTS (SELECT 1 FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
							WHERE m.name = '$name' AND s.slice = $os
							  AND $lk_pid = ANY (pg_blocking_pids(s.worker_pid)))}),
		"$label: the owner's batch waits for the row lock on key $held2");
	ok( defined poll_value($node, qq{
			SELECT a.pid FROM pg_stat_activity a, migration_slices s JOIN migrations m ON m.id = s.migration_id
			 WHERE m.name = '$name' AND s.slice = $os
			   AND a.backend_type = 'migration_runner worker' AND a.pid <> s.worker_pid
			   AND s.worker_pid = ANY (pg_blocking_pids(a.pid))}),
		"$label: the other slice's runner waits for the owner's batch");
	# the owner's rest at the crash: (cursor, upper]
	my ($c, $u) = split /\|/, $node->safe_psql('postgres', qq{
		SELECT coalesce(s.cursor[1], '0') || '|' || s.upper_key[1]
		  FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
		 WHERE m.name = '$name' AND s.slice = $os});
	note("$label: crash at " . slices_of($node, $name));
	# batches commit asynchronously: make what committed durable, so that
	# the done slice stays done through the crash (a lost last batch would
	# be redone by a worker for that slice, and hide what is tested here)
	$node->safe_psql('postgres', 'CHECKPOINT');
	is( $node->safe_psql('postgres', qq{
			SELECT count(*) FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
			 WHERE m.name = '$name' AND s.status = 'done'}),
		'1', "$label: the other slice is done before the crash");

	ok(crash_node($node, 'kill9'), "$label: kill -9");
	eval { $lk->quit; };
	$node->start;
	my $offset = -s $node->logfile;
	slice_invariants_ok($node, $sc2, "$label, after the restart");

	is($node->safe_psql('postgres', "SELECT mig_wait('$name', '60s')"),
		'completed', "$label: completed");
	exactly_once_ok($node, $t, $name, $rows, $label);
	history_ok($node, $sc2, $rows, $label);
	my $id2 = mig_id($node, $name);
	note("$label: per slice: "
		  . $node->safe_psql('postgres', qq{
			SELECT string_agg(slice || ': ' || n || ' batches, keys ' || lo || '..' || hi, '; ')
			  FROM (SELECT slice, count(*) n, min(first_key[1]::int) lo, max(last_key[1]::int) hi
					  FROM migration_batches WHERE migration_id = $id2 GROUP BY slice) x}));
	cmp_ok( $node->safe_psql('postgres', qq{
			SELECT count(*) FROM migration_batches
			 WHERE migration_id = $id2 AND slice <> $os
			   AND first_key[1]::int > $c AND last_key[1]::int <= $u}),
		'>', 0,
		"$label: after the restart another runner took part of slice ${os}'s "
		  . "rest ($c..$u)");
	log_has_no_crash($node, $offset, $label);
}

$node->stop;
done_testing();
