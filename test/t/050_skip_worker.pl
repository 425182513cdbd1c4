# on_error 'skip' run by the background worker: 30 poison rows scattered
# over a table of 100,000 (the first and the last key, two adjacent keys,
# three in one batch), batches of 1000.  Half of them make the action fail
# with a cast error (22P02), half with a CHECK violation (23514, whose
# DETAIL names the row).  The action increments a counter n: in the end
# every good row must have n = 1, every poison row n = 0, and exactly the
# poison keys must be in migration_skipped with their SQLSTATE and DETAIL.
#
# 1. one worker;  2. two slices (parallel => 2);  3. kill -9 of the server
# while the run narrows a failed batch down (once as one piece, once in two
# slices), twice each: after each restart nothing is lost and nothing is
# done twice, since the cursor, the data and each skip commit together.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $rows  = 100000;
my $batch = 1000;

my $node = mig_node('mrtap_skip',
	conf => "migration_runner.max_workers = 6\n"
	  . "migration_runner.history_size = 1000000\n");

# the poison keys: fixed, some at the edges of the key range and of batches
my %poison;
$poison{$_} = 1 for (1, 50000, 50001, 70001, 70500, 70999, $rows);
for (my $k = 1; keys(%poison) < 30; $k++)
{
	$poison{ ($k * 7919 * 13) % $rows + 1 } = 1;
}
my @poison = sort { $a <=> $b } keys %poison;
is(scalar(@poison), 30, '30 poison keys');
# odd positions: not a number (22P02); even: negative, against the CHECK (23514)
my %state;
my $i = 0;
$state{$_} = ($i++ % 2 == 0) ? '22P02' : '23514' for @poison;
my $poison_list = join(',', @poison);

# the table $t with its poison rows
sub poison_table
{
	my ($t) = @_;
	my $bad = join(',', grep { $state{$_} eq '22P02' } @poison);
	my $neg = join(',', grep { $state{$_} eq '23514' } @poison);
	$node->safe_psql('postgres', qq{
		CREATE TABLE $t (id int PRIMARY KEY, raw text NOT NULL, v int CHECK (v >= 0),
						 n int NOT NULL DEFAULT 0);
		INSERT INTO $t (id, raw) SELECT g, g::text FROM generate_series(1, $rows) g;
		UPDATE $t SET raw = 'bad' WHERE id IN ($bad);
		UPDATE $t SET raw = '-1' WHERE id IN ($neg);
		ANALYZE $t;
	});
	return;
}

sub define_skip
{
	my ($name, $t, %o) = @_;
	my $opts = join('', map { ", $_ => " . q_lit($o{$_}) } sort keys %o);
	$node->safe_psql('postgres',
		"SELECT mig_define('$name', '$t', "
		  . q_lit("UPDATE $t SET v = raw::int, n = n + 1 WHERE id BETWEEN \$1 AND \$2")
		  . ", batch_size => $batch, on_error => 'skip'$opts)");
	return;
}

# In one snapshot, also while the migration runs: the rows changed are as
# many as mig_status says were processed, none twice, no poison row changed,
# and the skipped keys are poison keys, counted by migrations.skipped.
sub consistent_skip_ok
{
	my ($name, $t, $label) = @_;
	my $out = $node->safe_psql('postgres', qq{
		SELECT (SELECT processed FROM mig_status WHERE name = '$name')
			   || '|' || (SELECT count(*) FILTER (WHERE n = 1) || '|' || count(*) FILTER (WHERE n > 1)
							  || '|' || count(*) FILTER (WHERE n <> 0 AND id IN ($poison_list))
						 FROM $t)
			   || '|' || (SELECT count(*) || '|' || count(*) FILTER (WHERE (s.key::text[])[1]::int IN ($poison_list))
						 FROM migration_skipped s JOIN migrations m ON m.id = s.migration_id
						WHERE m.name = '$name')
			   || '|' || (SELECT skipped FROM migrations WHERE name = '$name')});
	my ($processed, $once, $twice, $poison_changed, $nskipped, $skipped_poison, $counted) =
	  split /\|/, $out;
	is("$once/$twice/$poison_changed", "$processed/0/0",
		"$label: changed rows = processed ($processed), none twice, no poison row changed");
	is("$skipped_poison/$counted", "$nskipped/$nskipped",
		"$label: $nskipped keys skipped, all poison, all counted in migrations.skipped");
	return;
}

# After completion: exactly the poison keys skipped, each with its error.
sub completed_ok
{
	my ($name, $t, $label) = @_;
	is($node->safe_psql('postgres', "SELECT mig_wait('$name', '180s')"),
		'completed', "$label: completed");
	my $r = mig_row($node, $name, qw(processed scanned skipped error));
	is($r->{processed}, $rows - 30, "$label: processed = " . ($rows - 30));
	is($r->{scanned}, $rows, "$label: every key walked");
	is($r->{skipped}, 30, "$label: skipped = 30");
	is($r->{error}, '<null>', "$label: no error");
	is( $node->safe_psql('postgres',
			"SELECT n || ':' || count(*) FROM $t GROUP BY n ORDER BY n"),
		"0:30\n1:" . ($rows - 30),
		"$label: 30 rows untouched, every other row changed exactly once");
	is( $node->safe_psql('postgres',
			"SELECT string_agg(id::text, ',' ORDER BY id) FROM $t WHERE n = 0"),
		$poison_list, "$label: the untouched rows are the poison rows");

	# every skipped key with the SQLSTATE and DETAIL of its own error
	my $expect = join("\n",
		map {
			$state{$_} eq '22P02'
			  ? "{$_}|22P02|invalid input syntax for type integer: \"bad\"|"
			  : "{$_}|23514|new row for relation \"$t\" violates check constraint \"${t}_v_check\""
			  . "|Failing row contains ($_, -1, -1, 1)."
		} @poison);
	is( $node->safe_psql('postgres', qq{
			SELECT s.key || '|' || s.sqlstate || '|' || s.error || '|' || coalesce(s.error_detail, '')
			  FROM migration_skipped s JOIN migrations m ON m.id = s.migration_id
			 WHERE m.name = '$name' ORDER BY (s.key::text[])[1]::int}),
		$expect, "$label: exactly the poison keys skipped, with their SQLSTATE and DETAIL");
	return;
}

# --- 1. one worker ---------------------------------------------------------
{
	my $log_offset = -s $node->logfile;
	poison_table('s1');
	define_skip('skip_one', 's1');
	$node->safe_psql('postgres', "SELECT mig_start('skip_one')");
	completed_ok('skip_one', 's1', 'one worker');
	is( $node->safe_psql('postgres', q{
			SELECT count(DISTINCT s.slice) || ':' || min(s.slice)
			  FROM migration_skipped s JOIN migrations m ON m.id = s.migration_id
			 WHERE m.name = 'skip_one'}),
		'1:0', 'one worker: the skips are of the migration as one piece (slice 0)');
	cmp_ok(mig_row($node, 'skip_one', 'retries')->{retries}, '>', 0,
		'one worker: narrowing counted as retries');
	ok(wait_log($node, $log_offset, qr/skipped key \(\Q$poison[-1]\E\)/),
		'one worker: the server log names the skipped keys');
	my $logged = () = slurp_file($node->logfile, $log_offset)
	  =~ /migration "skip_one" skipped key/g;
	is($logged, 30, 'one worker: 30 skips logged, one per key');
}

# --- 2. two slices ---------------------------------------------------------
{
	poison_table('s2');
	define_skip('skip_two', 's2', parallel => 2);
	$node->safe_psql('postgres', "SELECT mig_start('skip_two')");
	completed_ok('skip_two', 's2', 'two slices');
	# the slices are gone once completed; the history says who ran what
	my $id = $node->safe_psql('postgres', "SELECT id FROM migrations WHERE name = 'skip_two'");
	is( $node->safe_psql('postgres', qq{
			SELECT count(*) FROM migration_skipped s
			 WHERE s.migration_id = $id AND s.slice NOT IN (1, 2)}),
		'0', 'two slices: every skip was made by slice 1 or 2');
	is( $node->safe_psql('postgres', qq{
			SELECT count(DISTINCT slice) FROM migration_skipped WHERE migration_id = $id}),
		'2', 'two slices: both slices skipped keys');
	# each skip is in the history of the slice that made it, as a batch of its key
	is( $node->safe_psql('postgres', qq{
			SELECT count(*) FROM migration_skipped s
			 WHERE s.migration_id = $id AND NOT EXISTS (
				SELECT FROM migration_batches b
				 WHERE b.migration_id = $id AND b.slice = s.slice
				   AND b.first_key::text = s.key AND b.last_key::text = s.key
				   AND b.keys = 1 AND b.rows = 0 AND b.error LIKE 'skipped: %')}),
		'0', 'two slices: each skip is a batch of its key in its slice\'s history');
}

log_has_no_crash($node, 0, 'one worker and two slices');

# --- 3. kill -9 while narrowing --------------------------------------------
#
# A batch delay of 10 ms makes the ~600 narrowing batches take seconds: the
# test crashes the server as soon as the run is seen narrowing (a batch size
# below 1000 recorded after a failed batch), twice.
my $log_offset;
for my $case ([ 'skip_crash1', 's3', 1 ], [ 'skip_crash2', 's4', 2 ])
{
	my ($name, $t, $parallel) = @$case;
	my $label = "kill -9 while narrowing, parallel $parallel";
	poison_table($t);
	define_skip($name, $t, parallel => $parallel, batch_delay => '10ms');
	$node->safe_psql('postgres', "SELECT mig_start('$name')");
	for my $crash (1, 2)
	{
		ok( poll_true(
				$node, qq{
				SELECT m.status <> 'running'
					OR (m.retries > 0 AND (m.current_batch_size < $batch
						OR EXISTS (SELECT FROM migration_slices s
								   WHERE s.migration_id = m.id AND s.status = 'running'
									 AND s.current_batch_size < $batch)))
				  FROM migrations m WHERE m.name = '$name'}),
			"$label: narrowing seen before crash $crash");
		my $r = mig_row($node, $name, qw(status retries skipped));
		is($r->{status}, 'running', "$label: still running at crash $crash");
		note("$label: crash $crash at retries=$r->{retries} skipped=$r->{skipped}");
		ok(crash_restart($node, 'kill9'), "$label: kill -9 and restart ($crash)");
		$log_offset = -s $node->logfile;
		consistent_skip_ok($name, $t, "$label, after crash $crash");
	}
	completed_ok($name, $t, $label);
	consistent_skip_ok($name, $t, "$label, completed");
}

# (every crash is a kill -9: the log is looked at after the last one)
log_has_no_crash($node, $log_offset, 'after the last kill -9');
$node->stop;
done_testing();
