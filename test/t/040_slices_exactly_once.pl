# Parallel slices, exactly once: kill -9 of the postmaster while 2 or 4
# slices run (int, ICU text, uuid and composite keys), and work stealing on
# a table whose first quarter is slow to migrate.
#
# The action increments a counter n: in the end every row must have n = 1
# and the catalog must say that every row was processed.  While slices run,
# one snapshot must show, for every slice, every row from its lower key to
# its cursor changed once and every row from its cursor to its upper key
# not changed yet: each slice's cursor commits with each of its batches.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;
use SliceTest;

my $node = mig_node('mrtap_slices',
	conf => "migration_runner.max_workers = 8\n"
	  . "migration_runner.history_size = 1000000\n");

# --- 1. kill -9 of the postmaster while slices run ------------------------

my $rows  = 20000;
my $batch = 100;
my $icu   = '"en-x-icu"';

# every batch sleeps 20 ms (unless the case says otherwise), so a slice of
# 50 to 100 batches is still running when the test crashes the server
sub slow_action
{
	my ($t, $where, $secs) = @_;
	$secs //= 0.02;
	return "WITH s AS (SELECT pg_sleep($secs)) UPDATE $t SET n = n + 1 FROM s WHERE $where";
}

my @crash = (
	{
		label    => 'int key, 2 slices',
		name     => 'crash_int2',
		table    => 'c_int2',
		parallel => 2,
		create   => "CREATE TABLE c_int2 (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
					 INSERT INTO c_int2 (id) SELECT g FROM generate_series(1, $rows) g",
		where => 'id BETWEEN $1 AND $2',
		key   => 'id',
		cast  => sub { "$_[0]\[1]::int" },
	},
	{
		label    => 'int key, 4 slices',
		name     => 'crash_int4',
		table    => 'c_int4',
		parallel => 4,
		# gaps in the keys: split points must come from the data, not from
		# the arithmetic of min and max
		create => "CREATE TABLE c_int4 (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
				   INSERT INTO c_int4 (id)
				   SELECT CASE WHEN g <= $rows / 2 THEN g ELSE g::bigint * 1000000 END
					 FROM generate_series(1, $rows) g",
		where => 'id BETWEEN $1 AND $2',
		key   => 'id',
		cast  => sub { "$_[0]\[1]::bigint" },
	},
	{
		label    => 'ICU text key, 4 slices',
		name     => 'crash_icu4',
		table    => 'c_icu4',
		parallel => 4,
		# prefixes whose order in "en-x-icu" differs from their byte order
		create => "CREATE TABLE c_icu4 (k text COLLATE $icu PRIMARY KEY, n int NOT NULL DEFAULT 0);
				   INSERT INTO c_icu4 (k)
				   SELECT (ARRAY['a', 'B', 'c', 'D', 'é', '_', 'Z', 'ß', 'Ä'])[g % 9 + 1]
						  || lpad((g * 7919 % $rows)::text, 6, '0')
						  || CASE WHEN g % 2 = 0 THEN 'x' ELSE 'X' END
					 FROM generate_series(1, $rows) g",
		where => 'k BETWEEN $1 AND $2',
		key   => 'k',
		cast  => sub { "($_[0]\[1] COLLATE $icu)" },
	},
	{
		label    => 'uuid key, 2 slices',
		name     => 'crash_uuid2',
		table    => 'c_uuid2',
		parallel => 2,
		create   => "CREATE TABLE c_uuid2 (id uuid PRIMARY KEY, n int NOT NULL DEFAULT 0);
					 INSERT INTO c_uuid2 (id) SELECT gen_random_uuid() FROM generate_series(1, $rows)",
		where => 'id BETWEEN $1 AND $2',
		key   => 'id',
		cast  => sub { "$_[0]\[1]::uuid" },
	},
	{
		label    => 'composite key (int, text), 4 slices',
		name     => 'crash_comp4',
		table    => 'c_comp4',
		parallel => 4,
		# five values of a: split points fall inside a group of a
		create => "CREATE TABLE c_comp4 (a int NOT NULL, b text NOT NULL, n int NOT NULL DEFAULT 0,
										 PRIMARY KEY (a, b));
				   INSERT INTO c_comp4 (a, b) SELECT g % 5, md5(g::text) FROM generate_series(1, $rows) g",
		where       => '(a, b) >= ($1, $2) AND (a, b) <= ($3, $4)',
		key         => '(a, b)',
		cast        => sub { "($_[0]\[1]::int, $_[0]\[2])" },
		key_columns => '{a,b}',
	},
	{
		# more keys than the split walks through the index (100000): the
		# split points come from a sample of the table
		label    => 'ICU text key, 150000 rows (sampled split), 4 slices',
		name     => 'crash_big4',
		table    => 'c_big4',
		parallel => 4,
		rows     => 150000,
		batch    => 2000,
		# 19 batches a slice: each sleeps long enough to be caught running
		sleep    => 0.2,
		create   => "CREATE TABLE c_big4 (k text COLLATE $icu PRIMARY KEY, n int NOT NULL DEFAULT 0);
				   INSERT INTO c_big4 (k)
				   SELECT (ARRAY['a', 'B', 'c', 'D', 'é', '_', 'Z', 'ß', 'Ä'])[g % 9 + 1]
						  || lpad((g::bigint * 7919 % 150000)::text, 6, '0')
					 FROM generate_series(1, 150000) g",
		where => 'k BETWEEN $1 AND $2',
		key   => 'k',
		cast  => sub { "($_[0]\[1] COLLATE $icu)" },
	});

for my $sc (@crash)
{
	my ($name, $t, $label) = @$sc{qw(name table label)};
	my $rows  = $sc->{rows}  // $rows;
	my $batch = $sc->{batch} // $batch;
	$node->safe_psql('postgres', "$sc->{create}; ANALYZE $t;");
	define_sliced($node, $name, $t, slow_action($t, $sc->{where}, $sc->{sleep}),
		batch_size   => $batch,
		batch_delay  => '5ms',
		lock_timeout => '5s',
		parallel     => $sc->{parallel},
		defined $sc->{key_columns} ? (key_columns => $sc->{key_columns}) : ());
	$node->safe_psql('postgres', 'SELECT mig_start(' . q_lit($name) . ')');

	# crash 1: as soon as every slice has committed a batch
	ok(wait_all_slices_busy($node, $name, $sc->{parallel}),
		"$label: $sc->{parallel} slices, each with a batch done");
	my $r = mig_row($node, $name, 'status');
	is($r->{status}, 'running', "$label: running at the first crash");
	note("$label: first crash at " . slices_of($node, $name));
	ok(crash_restart($node, 'kill9'), "$label: kill -9 and restart");
	like(mig_row($node, $name, 'status')->{status},
		qr/^(running|completed)$/, "$label: running or completed after the restart");
	sliced_consistent_ok($node, $sc, "$label, after crash 1");
	slice_invariants_ok($node, $sc, "$label, after crash 1");

	# crash 2: half way through (the launcher resumed the slices)
	my $half = int($rows / $batch / 2);
	ok( poll_true(
			$node,
			"SELECT batches >= $half OR status <> 'running' FROM mig_status WHERE name = '$name'"),
		"$label: half of the batches done after the restart");
	# On a loaded machine the slices may finish before the poll sees half of
	# the batches; the crash then hits a completed migration, which must
	# stay completed and exactly once, like a running one.
	$r = mig_row($node, $name, 'status');
	like($r->{status}, qr/^(running|completed)$/,
		"$label: running (or, on a loaded machine, completed) at the second crash");
	note("$label: the second crash hits a completed migration")
	  if $r->{status} eq 'completed';
	ok(crash_restart($node, 'kill9'), "$label: second kill -9 and restart");
	sliced_consistent_ok($node, $sc, "$label, after crash 2");
	slice_invariants_ok($node, $sc, "$label, after crash 2");

	is($node->safe_psql('postgres', "SELECT mig_wait('$name', '60s')"),
		'completed', "$label: completed after the crashes");
	note("$label: " . counter_counts($node, $t));
	exactly_once_ok($node, $t, $name, $rows, $label);
	history_ok($node, $sc, $rows, $label);
}

# --- 2. work stealing on a skewed table -----------------------------------
#
# Only the first quarter of the keys is slow (80 ms per batch, 4 s in all);
# the rest is fast.  With two slices, the slice of the upper half runs out
# of work long before the first one: it must take the upper half of what
# the first slice has left.  The history shows it: batches run by one slice inside the range
# that the other slice had at the start.  The server is killed (-9) right
# after the first steal.

# (every crash is a kill -9: the log is looked at after the last one)
my $log_offset;
{
	my $srows = 40000;
	my $sc    = int_key('steal_v1', 'sk', 2);
	my $label = 'skewed table';
	$node->safe_psql('postgres', qq{
		CREATE TABLE sk (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
		INSERT INTO sk (id) SELECT g FROM generate_series(1, $srows) g;
		ANALYZE sk;
	});
	my $q = $srows / 4;
	define_sliced($node, 'steal_v1', 'sk',
		"WITH s AS (SELECT pg_sleep(CASE WHEN \$1 <= $q THEN 0.08 ELSE 0 END)) "
		  . 'UPDATE sk SET n = n + 1 FROM s WHERE id BETWEEN $1 AND $2',
		batch_size  => 200,
		batch_delay => '2ms',
		parallel    => 2);
	$node->safe_psql('postgres', "SELECT mig_start('steal_v1')");

	# the layout of the slices as the run made it (the fast slice needs 100
	# batches before it can steal: this is read long before)
	my $layout = poll_value($node, q{
		SELECT string_agg(slice || ',' || coalesce(lower_key[1], '') || ',' || upper_key[1], ';'
						  ORDER BY slice)
		  FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
		 WHERE m.name = 'steal_v1' HAVING count(*) > 0}) // '';
	note("$label: slices at the start: $layout");
	my @orig = map { [ split /,/, $_, -1 ] } split /;/, $layout;
	is(scalar(@orig), 2, "$label: the run made 2 slices");
	my @sorted = sort { ($a->[1] eq '' ? -1 : $a->[1]) <=> ($b->[1] eq '' ? -1 : $b->[1]) } @orig;
	is(join(' ', map { $_->[1] } @sorted),
		join(' ', '', map { $_->[2] } @sorted[ 0 .. $#sorted - 1 ]),
		"$label: the slices' ranges are contiguous from the first key");
	is(@sorted ? $sorted[-1][2] : '<no slice>', $srows,
		"$label: the last slice ends at the last key");

	# kill -9 as soon as a steal committed: a slice's range is no longer
	# the one it had at the start
	my $orig_ranges = join(',',
		map { "'" . join(':', $_->[0], $_->[1], $_->[2]) . "'" } @orig) || "''";
	ok( poll_true($node, qq{
			SELECT (SELECT status FROM migrations WHERE name = 'steal_v1') <> 'running'
				OR EXISTS (SELECT FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
							WHERE m.name = 'steal_v1'
							  AND s.slice || ':' || coalesce(s.lower_key[1], '') || ':' || s.upper_key[1]
								  NOT IN ($orig_ranges))}),
		"$label: a steal committed");
	is(mig_row($node, 'steal_v1', 'status')->{status}, 'running',
		"$label: still running after the steal");
	ok(crash_restart($node, 'kill9'), "$label: kill -9 after a steal, and restart");
	$log_offset = -s $node->logfile;
	note("$label: after the crash: " . slices_of($node, 'steal_v1'));
	sliced_consistent_ok($node, $sc, "$label, after the crash");
	slice_invariants_ok($node, $sc, "$label, after the crash");

	is($node->safe_psql('postgres', "SELECT mig_wait('steal_v1', '60s')"),
		'completed', "$label: completed");
	exactly_once_ok($node, 'sk', 'steal_v1', $srows, $label);
	history_ok($node, $sc, $srows, $label);

	# batches run by a slice other than the one whose original range holds
	# their keys
	my $owner = join(' ',
		map {
			"WHEN b.first_key[1]::int > " . ($_->[1] eq '' ? '-2147483648' : $_->[1])
			  . " AND b.last_key[1]::int <= $_->[2] THEN $_->[0]"
		} @orig) || 'WHEN false THEN 0';
	my $id = mig_id($node, 'steal_v1');
	my $stolen = $node->safe_psql('postgres', qq{
		SELECT count(*) || '|' || coalesce(min(first_key[1]::int), 0) || '|' || coalesce(sum(keys), 0)
		  FROM (SELECT b.*, CASE $owner END AS orig_slice
				  FROM migration_batches b WHERE b.migration_id = $id) b
		 WHERE orig_slice IS DISTINCT FROM slice});
	my ($nstolen, $from, $skeys) = split /\|/, $stolen;
	note("$label: $nstolen batches ($skeys keys) ran outside their slice's "
		  . "original range, the lowest from key $from");
	cmp_ok($nstolen, '>', 0,
		"$label: a slice ran batches in the other slice's original range (work was stolen)");
	note("$label: per slice: "
		  . $node->safe_psql('postgres', qq{
			SELECT string_agg(slice || ': ' || n || ' batches, keys ' || lo || '..' || hi, '; ')
			  FROM (SELECT slice, count(*) n, min(first_key[1]::int) lo, max(last_key[1]::int) hi
					  FROM migration_batches WHERE migration_id = $id GROUP BY slice) x}));
}

log_has_no_crash($node, $log_offset, 'slices, work stealing');
$node->stop;
done_testing();
