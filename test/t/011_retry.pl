# Transient errors (serialization failure 40001, deadlock 40P01) raised in
# batch 2 are retried: the batch is rolled back and run again, the migration
# completes, every row is changed exactly once, and the retry shows in
# migrations.retries and migration_batches.attempts.  A transient error that
# never goes away fails the migration after max_retries.
#
# The error is injected by a function that raises it the first time it sees a
# given key.  "The first time" is remembered in a sequence: nextval is not
# rolled back with the batch, a side table would be.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_retry');

# inject(seq, key, at, code): 1, but raise SQLSTATE code the first time
# (per sequence) that key = at.  Only the rows of the batch reach the SET
# list, so only the batch that holds key "at" can raise.
$node->safe_psql('postgres', q{
	CREATE FUNCTION inject(seq regclass, key int, at int, code text)
	RETURNS int LANGUAGE plpgsql AS $f$
	BEGIN
		IF key = at AND nextval(seq) = 1 THEN
			RAISE EXCEPTION 'injected % at key %', code, key
				USING ERRCODE = code;
		END IF;
		RETURN 1;
	END $f$;
	-- always raises at key "at"
	CREATE FUNCTION inject_always(seq regclass, key int, at int, code text)
	RETURNS int LANGUAGE plpgsql AS $f$
	BEGIN
		IF key = at THEN
			PERFORM nextval(seq);
			RAISE EXCEPTION 'injected % at key %', code, key
				USING ERRCODE = code;
		END IF;
		RETURN 1;
	END $f$;
});

my $rows = 100;

for my $case (
	[ 'ser',  '40001', 'worker' ],
	[ 'dead', '40P01', 'worker' ],
	[ 'serc', '40001', 'call' ])
{
	my ($t, $code, $how) = @$case;
	my $name = "retry_${t}_v1";
	new_table($node, $t, $rows);
	$node->safe_psql('postgres', "CREATE SEQUENCE ${t}_seq");
	# batch_size 10: key 15 is in batch 2
	define_migration($node, $name, $t,
		"UPDATE $t SET n = n + inject('${t}_seq', id, 15, '$code') WHERE id BETWEEN \$1 AND \$2",
		batch_size => 10, max_retries => 3);

	if ($how eq 'worker')
	{
		$node->safe_psql('postgres', "SELECT mig_start('$name')");
		is($node->safe_psql('postgres', "SELECT mig_wait('$name', '60s')"),
			'completed', "$name ($code, worker): completed after the retry");
	}
	else
	{
		my ($ret, $out, $err) =
		  $node->psql('postgres', "CALL mig_run('$name')");
		is($ret, 0, "$name ($code, CALL mig_run): the call succeeds")
		  or diag($err);
		is(mig_row($node, $name, 'status')->{status},
			'completed', "$name: completed");
	}

	is($node->safe_psql('postgres', "SELECT last_value FROM ${t}_seq"),
		'2', "$name: the injection fired once, and the retry passed key 15 again");
	exactly_once_ok($node, $t, $name, $rows, $name);

	my $r = mig_row($node, $name, qw(retries batches throttled error));
	is($r->{retries}, '1', "$name: migrations.retries = 1");
	is($r->{batches}, '10', "$name: 10 batches committed");
	is($r->{throttled}, '<null>', "$name: throttled cleared after the retry");
	is($r->{error}, '<null>', "$name: no error recorded");
	is( $node->safe_psql('postgres', qq{
			SELECT string_agg(batch || ':' || attempts, ',' ORDER BY batch)
			  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
			 WHERE m.name = '$name' AND batch <= 3}),
		'1:1,2:2,3:1',
		"$name: migration_batches shows 2 attempts for batch 2 only");
	is( $node->safe_psql('postgres', qq{
			SELECT first_key::text || last_key::text || keys || '/' || rows
			  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
			 WHERE m.name = '$name' AND batch = 2}),
		'{11}{20}10/10',
		"$name: the retried batch 2 covers keys 11..20, 10 rows");
}

# --- a transient error that never goes away ---------------------------------
new_table($node, 'stuck', $rows);
$node->safe_psql('postgres', 'CREATE SEQUENCE stuck_seq');
define_migration($node, 'retry_stuck_v1', 'stuck',
	"UPDATE stuck SET n = n + inject_always('stuck_seq', id, 15, '40001') WHERE id BETWEEN \$1 AND \$2",
	batch_size => 10, max_retries => 2);
$node->safe_psql('postgres', "SELECT mig_start('retry_stuck_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('retry_stuck_v1', '60s')"),
	'failed', 'retry_stuck_v1: fails once the retries are used up');
my $r = mig_row($node, 'retry_stuck_v1',
	qw(retries processed batches error throttled worker_pid));
note("error: $r->{error}");
is($node->safe_psql('postgres', 'SELECT last_value FROM stuck_seq'),
	'3', 'retry_stuck_v1: batch 2 was tried 1 + max_retries (2) times');
is($r->{retries}, '2', 'retry_stuck_v1: retries = 2');
like($r->{error}, qr/injected 40001 at key 15/, 'the error has the message');
like($r->{error}, qr/SQLSTATE 40001/, 'the error has the SQLSTATE');
like($r->{error}, qr/batch 2\b/, 'the error names batch 2');
like($r->{error}, qr/after 3 attempts/, 'the error says how many attempts');
is($r->{processed}, '10', 'only batch 1 counts');
is($r->{batches}, '1', 'one batch committed');
is($r->{worker_pid}, '<null>', 'no runner recorded');
is($r->{throttled}, '<null>', 'a failed migration is not shown as throttled (nothing waits)');
is( $node->safe_psql('postgres',
		'SELECT count(*) FILTER (WHERE n = 1 AND id <= 10) || \'/\' || count(*) FILTER (WHERE n <> 0 AND id > 10) FROM stuck'),
	'10/0', 'rows 1..10 changed, the failed batch rolled back');

log_has_no_crash($node, 0, 'retry');
$node->stop;
done_testing();
