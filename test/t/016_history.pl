# migration_batches keeps the last migration_runner.history_size batches of
# each migration, never more, at any moment of the run; 0 keeps none; a
# smaller size on a later run trims what the earlier run left.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_history',
	conf => "migration_runner.history_size = 5\n");

# In one snapshot: batches committed, history rows, their batch range.
sub history_of
{
	my ($name) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT m.batches || '|' || count(b.batch) || '|'
			   || coalesce(min(b.batch)::text, '') || '|' || coalesce(max(b.batch)::text, '')
		  FROM migrations m LEFT JOIN migration_batches b ON b.migration_id = m.id
		 WHERE m.name = '$name' GROUP BY m.batches});
}

# --- the worker, history_size = 5 from the server configuration ------------
new_table($node, 'h', 1000);
define_migration($node, 'hist_v1', 'h', undef, batch_size => 10, slow => 0.01);
$node->safe_psql('postgres', "SELECT mig_start('hist_v1')");

# look at the history while the worker commits batches
my $violations = 0;
my $looks = 0;
my $seen_running = 0;
for my $threshold (5, 10, 20, 40, 60, 80)
{
	poll_true($node,
		"SELECT batches >= $threshold FROM migrations WHERE name = 'hist_v1'")
	  or last;
	my ($batches, $count, $min, $max) = split /\|/, history_of('hist_v1');
	$looks++;
	$seen_running++ if $batches < 100;
	my $want = $batches < 5 ? $batches : 5;
	if ($count != $want || $max != $batches || $min != $batches - $want + 1)
	{
		$violations++;
		diag("after $batches batches: $count history rows, $min..$max");
	}
}
is($looks, 6, 'looked at the history 6 times during the run');
cmp_ok($seen_running, '>=', 1, 'at least one look happened while it ran');
is($violations, 0,
	'during the run the history always held exactly the last 5 batches');
is($node->safe_psql('postgres', "SELECT mig_wait('hist_v1', '60s')"),
	'completed', 'hist_v1 completed');
exactly_once_ok($node, 'h', 'hist_v1', 1000, 'hist_v1');
is(history_of('hist_v1'), '100|5|96|100',
	'after 100 batches the history holds batches 96..100');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(first_key::text || last_key::text || keys || '/' || rows, ',' ORDER BY batch)
		  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
		 WHERE m.name = 'hist_v1'}),
	'{951}{960}10/10,{961}{970}10/10,{971}{980}10/10,{981}{990}10/10,{991}{1000}10/10',
	'the kept rows are the right batches with their keys and rows');

# --- history_size = 0 in the session (CALL mig_run): no history ------------
new_table($node, 'z', 300);
define_migration($node, 'hist_zero_v1', 'z',
	'UPDATE z SET n = n + 1 WHERE id BETWEEN $1 AND $2', batch_size => 10);
$node->safe_psql('postgres',
	"SET migration_runner.history_size = 0; CALL mig_run('hist_zero_v1')");
exactly_once_ok($node, 'z', 'hist_zero_v1', 300, 'hist_zero_v1');
is(history_of('hist_zero_v1'), '30|0||', 'history_size = 0 keeps no batch');

# --- a later run with a smaller size trims the earlier run's history -------
# The action fails once at key 205 (batch 21): a sequence remembers it, since
# nextval is not rolled back with the batch.
$node->safe_psql('postgres', q{
	CREATE SEQUENCE once_seq;
	CREATE FUNCTION fail_once(key int) RETURNS int LANGUAGE plpgsql AS $f$
	BEGIN
		IF key = 205 AND nextval('once_seq') = 1 THEN
			RAISE EXCEPTION 'failing once at key %', key;
		END IF;
		RETURN 1;
	END $f$;
});
new_table($node, 's', 300);
define_migration($node, 'hist_shrink_v1', 's',
	'UPDATE s SET n = n + fail_once(id) WHERE id BETWEEN $1 AND $2',
	batch_size => 10);
my ($ret, $out, $err) = $node->psql('postgres',
	"SET migration_runner.history_size = 12; CALL mig_run('hist_shrink_v1')");
isnt($ret, 0, 'the first run fails at key 205');
is(mig_row($node, 'hist_shrink_v1', 'status')->{status}, 'failed', 'failed');
is(history_of('hist_shrink_v1'), '20|12|10|21',
	'history_size 12: batches 10..21 kept after the first run (21 the failed one)');
is( $node->safe_psql('postgres', q{
		SELECT b.first_key::text || b.last_key::text || b.keys || '/' || b.rows || '/' || b.attempts || '/'
			   || (b.error LIKE 'failing once at key 205 (SQLSTATE P0001) in batch 21 %')
		  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
		 WHERE m.name = 'hist_shrink_v1' AND b.batch = 21}),
	'{201}{210}10/0/1/true',
	'the failed batch is kept with its keys, no rows and its error');
($ret, $out, $err) = $node->psql('postgres',
	"SET migration_runner.history_size = 3; CALL mig_run('hist_shrink_v1')");
is($ret, 0, 'the second run succeeds') or diag($err);
exactly_once_ok($node, 's', 'hist_shrink_v1', 300, 'hist_shrink_v1');
is(history_of('hist_shrink_v1'), '30|3|28|30',
	'history_size 3: only batches 28..30 left, the first run\'s rows trimmed');

# --- the size counts per migration -----------------------------------------
is( $node->safe_psql('postgres',
		'SELECT max(c) FROM (SELECT count(*) AS c FROM migration_batches GROUP BY migration_id) s'),
	'5', 'no migration holds more than its limit (the largest holds 5)');

log_has_no_crash($node, 0, 'history');
$node->stop;
done_testing();
