# SliceTest.pm: helpers shared by the Perl TAP tests of parallel slices
# (040, 042, 043), on top of MigTest.pm.
#
# A test describes a migration by a hash: name, table, parallel, and how to
# compare its key: key (the key as an expression of the table's row, e.g.
# 'id' or '(a, b)') and cast (a sub turning a text[] expression, as the
# catalog stores keys, into a value comparable with key).  The table has a
# counter n that the action increments.

package SliceTest;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

our @EXPORT = qw(
  define_sliced mig_id sliced_consistent_ok slice_invariants_ok history_ok
  wait_all_slices_busy worker_count slices_of int_key
);

# the hash describing a migration on a table with an int key "id"
sub int_key
{
	my ($name, $table, $parallel) = @_;
	return {
		name     => $name,
		table    => $table,
		parallel => $parallel,
		key      => 'id',
		cast     => sub { "$_[0]\[1]::int" },
	};
}

# mig_define with named arguments (every value passed as a literal);
# returns the id.
sub define_sliced
{
	my ($node, $name, $table, $action, %o) = @_;
	my @args = (
		'name => ' . q_lit($name),
		'relation => ' . q_lit($table),
		'action => ' . q_lit($action));
	push @args, "$_ => " . q_lit($o{$_}) for sort keys %o;
	my $id = $node->safe_psql('postgres',
		'SELECT mig_define(' . join(', ', @args) . ')');
	is( $node->safe_psql('postgres',
			"SELECT parallel FROM migrations WHERE name = " . q_lit($name)),
		$o{parallel} // 1,
		"$name: mig_define recorded parallel = " . ($o{parallel} // 1));
	return $id;
}

sub mig_id
{
	my ($node, $name) = @_;
	return $node->safe_psql('postgres',
		'SELECT id FROM migrations WHERE name = ' . q_lit($name));
}

# In one snapshot: the rows changed are as many as mig_status says were
# processed (the running slices included), and none was changed twice.
sub sliced_consistent_ok
{
	my ($node, $sc, $label) = @_;
	my $out = $node->safe_psql('postgres', qq{
		SELECT (SELECT processed FROM mig_status WHERE name = } . q_lit($sc->{name}) . qq{)
			   || '|' || count(*) FILTER (WHERE n = 1)
			   || '|' || count(*) FILTER (WHERE n > 1)
		  FROM $sc->{table}});
	my ($processed, $once, $twice) = split /\|/, $out;
	is("$once/$twice", "$processed/0",
		"$label: changed rows = mig_status processed ($processed), none twice");
	return;
}

# In one snapshot, for every slice of the migration: the rows in
# (lower_key, cursor] have n = 1; for a running slice, the rows in
# (cursor, upper_key] (or (lower_key, upper_key] before its first batch)
# have n = 0: each slice's cursor commits with each of its batches.
sub slice_invariants_ok
{
	my ($node, $sc, $label) = @_;
	my ($k, $c, $t) = ($sc->{key}, $sc->{cast}, $sc->{table});
	my $lower  = $c->('s.lower_key');
	my $cursor = $c->('s.cursor');
	my $upper  = $c->('s.upper_key');
	my $out    = $node->safe_psql('postgres', qq{
		WITH s AS (SELECT s.* FROM migration_slices s JOIN migrations m ON m.id = s.migration_id
					WHERE m.name = } . q_lit($sc->{name}) . qq{)
		SELECT (SELECT count(*) FROM s) || '|' ||
			   (SELECT count(*) FROM s, $t
				 WHERE s.cursor IS NOT NULL
				   AND (s.lower_key IS NULL OR $k > $lower)
				   AND $k <= $cursor AND n <> 1) || '|' ||
			   (SELECT count(*) FROM s, $t
				 WHERE s.status = 'running'
				   AND CASE WHEN s.cursor IS NOT NULL THEN $k > $cursor
							ELSE s.lower_key IS NULL OR $k > $lower END
				   AND $k <= $upper AND n <> 0)});
	my ($slices, $done_bad, $todo_bad) = split /\|/, $out;
	is("$done_bad/$todo_bad", '0/0',
		"$label: in each of the $slices slices, the rows up to the cursor are "
		  . "changed once and the rows after it not at all");
	return;
}

# After a completed run: the migration holds the sums and no slice row is
# left; the history (one row per batch, each slice numbering its own
# batches) covers every row once, no two batches overlapping.  Needs
# migration_runner.history_size above the number of batches.  With
# $sc->{piece_first}, the run began as one piece (slice 0) and was split
# later.
sub history_ok
{
	my ($node, $sc, $rows, $label) = @_;
	my $id = mig_id($node, $sc->{name});
	my $c  = $sc->{cast};
	my $r  = mig_row($node, $sc->{name}, qw(status scanned batches));
	is($r->{scanned}, $rows, "$label: scanned = $rows");
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM migration_slices WHERE migration_id = $id"),
		'0', "$label: the slice rows are gone once completed");
	my $h = $node->safe_psql('postgres', qq{
		SELECT count(*) || '|' || coalesce(sum(keys), 0) || '|' || coalesce(sum(rows), 0)
			   || '|' || count(*) FILTER (WHERE slice = 0)
			   || '|' || count(DISTINCT slice)
		  FROM migration_batches WHERE migration_id = $id AND error IS NULL});
	my ($nb, $keys, $hrows, $unsliced, $nslices) = split /\|/, $h;
	is("$keys/$hrows", "$rows/$rows",
		"$label: the history's batches hold $rows keys and $rows changed rows");
	is($nb, $r->{batches}, "$label: batches ($r->{batches}) = history rows");
	if ($sc->{piece_first})
	{
		cmp_ok($unsliced, '>', 0,
			"$label: batches ran as one piece (slice 0) before the split");
		$nslices-- if $unsliced > 0;
	}
	else
	{
		is($unsliced, '0', "$label: every batch ran in a slice (none with slice 0)");
	}
	cmp_ok($nslices, '>=', $sc->{parallel},
		"$label: batches of at least $sc->{parallel} slices");
	is( $node->safe_psql('postgres', qq{
			SELECT count(*) FROM (
				SELECT slice, count(*) AS n, min(batch) AS lo, max(batch) AS hi
				  FROM migration_batches WHERE migration_id = $id GROUP BY slice) x
			 WHERE lo <> 1 OR hi <> n}),
		'0', "$label: each slice numbers its own batches 1, 2, ...");
	my ($f1, $l1, $f2, $l2) =
	  map { $c->($_) } qw(b1.first_key b1.last_key b2.first_key b2.last_key);
	is( $node->safe_psql('postgres', qq{
			SELECT count(*) FROM migration_batches b1 JOIN migration_batches b2
				ON b2.migration_id = b1.migration_id
			   AND (b1.slice, b1.batch) < (b2.slice, b2.batch)
			 WHERE b1.migration_id = $id AND b1.error IS NULL AND b2.error IS NULL
			   AND $f1 <= $l2 AND $f2 <= $l1}),
		'0', "$label: no two batches of the history overlap");
	return;
}

# Wait until the migration runs in $p slices, each of which committed a
# batch; true if it did before the deadline.
sub wait_all_slices_busy
{
	my ($node, $name, $p) = @_;
	return poll_true($node, qq{
		SELECT count(*) = $p AND bool_and(batches > 0)
		  FROM mig_slices WHERE name = } . q_lit($name));
}

# How many migration_runner workers are connected right now (of any
# migration: a test runs one migration with workers at a time).
sub worker_count
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'migration_runner worker'");
}

# "slice:status:batches:cursor ..." of mig_slices, for the log and for
# comparing two moments
sub slices_of
{
	my ($node, $name) = @_;
	return $node->safe_psql('postgres', q{
		SELECT string_agg(slice || ':' || status || ':' || batches || ':' || processed
						  || ':' || coalesce(cursor, '-') || ':' || coalesce(lower_key, '-')
						  || ':' || upper_key, ' ' ORDER BY slice)
		  FROM mig_slices WHERE name = } . q_lit($name));
}

1;
