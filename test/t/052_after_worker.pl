# after and continue_from with the background worker: a migration started
# before its prerequisite runs only once the prerequisite completed, and
# starts at once then (also when CALL mig_run completed it, which no worker
# exit announces); a failed prerequisite leaves it waiting; a new version
# defined with continue_from after a cancel mid-run changes every row
# exactly once over both versions, also when they run in slices.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

# a long poll interval: only a wake-up can start a dependent within seconds
my $node = mig_node('mrtap_after',
	conf => "migration_runner.poll_interval = '60s'\n");

sub incr { my ($t) = @_; return "UPDATE $t SET n = n + 1 WHERE id BETWEEN \$1 AND \$2"; }

# --- B after A: B is started first, and runs only after A completed ----------
new_table($node, 'a', 2000);
new_table($node, 'b', 500);
define_migration($node, 'a_v1', 'a', undef, batch_size => 50, slow => 0.01);
$node->safe_psql('postgres', q{
	SELECT mig_define('b_v1', 'b', 'UPDATE b SET n = n + 1 WHERE id BETWEEN $1 AND $2',
					  batch_size => 50, after => ARRAY['a_v1'])});
$node->safe_psql('postgres', "SELECT mig_start('b_v1')");
is( $node->safe_psql('postgres',
		"SELECT status || ' ' || waiting_for FROM mig_status WHERE name = 'b_v1'"),
	'waiting a_v1 (pending)', 'b_v1 started before a_v1: waiting for it');
$node->safe_psql('postgres', "SELECT mig_start('a_v1')");
ok( poll_true(
		$node, "SELECT batches >= 5 FROM migrations WHERE name = 'a_v1'"),
	'a_v1 has done 5 batches');
is( $node->safe_psql('postgres',
		"SELECT batches || ' ' || (started_at IS NULL) FROM migrations WHERE name = 'b_v1'"),
	'0 true', 'b_v1 has run no batch and has not started while a_v1 runs');
is($node->safe_psql('postgres', worker_pid_sql('b_v1')), '', 'no worker for b_v1');
is( $node->safe_psql('postgres',
		"SELECT string_agg(name || '=' || status, ',' ORDER BY name) "
		  . "FROM mig_wait_all(ARRAY['b_v1', 'a_v1'], '60 s')"),
	'a_v1=completed,b_v1=completed', 'mig_wait_all: both completed');
is( $node->safe_psql('postgres', q{
		SELECT b.started_at >= a.completed_at
		   AND (SELECT min(started_at) FROM migration_batches WHERE migration_id = b.id) >= a.completed_at
		  FROM migrations a, migrations b WHERE a.name = 'a_v1' AND b.name = 'b_v1'}),
	't', "b_v1 started, and ran its first batch, after a_v1 completed");
exactly_once_ok($node, 'a', 'a_v1', 2000, 'a_v1');
exactly_once_ok($node, 'b', 'b_v1', 500, 'b_v1');

# --- completed by CALL mig_run: the completion itself wakes the launcher -----
new_table($node, 'c', 300);
new_table($node, 'd', 300);
define_migration($node, 'c_v1', 'c', incr('c'), batch_size => 50);
$node->safe_psql('postgres', q{
	SELECT mig_define('d_v1', 'd', 'UPDATE d SET n = n + 1 WHERE id BETWEEN $1 AND $2',
					  batch_size => 50, after => ARRAY['c_v1'])});
$node->safe_psql('postgres', "SELECT mig_start('d_v1')");
$node->safe_psql('postgres', "CALL mig_run('c_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('d_v1', '60 s')"),
	'completed', 'd_v1 completes after CALL mig_run completed c_v1');
# the launcher polls every 60 s: a start within 5 s is the wake-up's
is( $node->safe_psql('postgres', q{
		SELECT d.started_at - c.completed_at < interval '5 s'
		  FROM migrations c, migrations d WHERE c.name = 'c_v1' AND d.name = 'd_v1'}),
	't', 'd_v1 started within seconds of c_v1\'s completion');
exactly_once_ok($node, 'd', 'd_v1', 300, 'd_v1');

# --- a failed prerequisite leaves the dependent waiting ----------------------
$node->safe_psql('postgres', q{
	CREATE TABLE f (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, d int NOT NULL DEFAULT 1);
	INSERT INTO f (id) SELECT g FROM generate_series(1, 200) g;
	UPDATE f SET d = 0 WHERE id = 120;
	SELECT mig_define('f_v1', 'f', 'UPDATE f SET n = n + 1 + 0 * (1 / d) WHERE id BETWEEN $1 AND $2',
					  batch_size => 50);});
new_table($node, 'g', 200);
$node->safe_psql('postgres', q{
	SELECT mig_define('g_v1', 'g', 'UPDATE g SET n = n + 1 WHERE id BETWEEN $1 AND $2',
					  batch_size => 50, after => ARRAY['f_v1'])});
$node->safe_psql('postgres', "SELECT mig_start('g_v1')");
$node->safe_psql('postgres', "SELECT mig_start('f_v1')");
is(wait_not_running($node, 'f_v1'), 'failed', 'f_v1 failed');
# a migration started after the failure completes: the launcher has looked
new_table($node, 'h', 100);
define_migration($node, 'h_v1', 'h', incr('h'), batch_size => 50);
$node->safe_psql('postgres', "SELECT mig_start('h_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('h_v1', '60 s')"),
	'completed', 'another migration completes meanwhile');
is( $node->safe_psql('postgres',
		"SELECT status || ' ' || waiting_for FROM mig_status WHERE name = 'g_v1'"),
	'waiting f_v1 (failed)', 'g_v1 waits for the failed f_v1');
is( $node->safe_psql('postgres',
		"SELECT batches || ' ' || (started_at IS NULL) || ' ' || status FROM migrations WHERE name = 'g_v1'"),
	'0 true running', 'g_v1 ran nothing');
is($node->safe_psql('postgres', "SELECT count(*) FROM g WHERE n <> 0"), '0',
	'no row of g changed');
# fixed and started again, f_v1 completes, and g_v1 runs
$node->safe_psql('postgres', "UPDATE f SET d = 1 WHERE id = 120");
$node->safe_psql('postgres', "SELECT mig_start('f_v1')");
is( $node->safe_psql('postgres',
		"SELECT string_agg(status, ',') FROM mig_wait_all(ARRAY['f_v1', 'g_v1'], '60 s')"),
	'completed,completed', 'once f_v1 completes, g_v1 runs to completion');
exactly_once_ok($node, 'g', 'g_v1', 200, 'g_v1');

# --- continue_from after a cancel mid-run -----------------------------------
sub continue_after_cancel
{
	my ($t, $parallel) = @_;
	new_table($node, $t, 4000);
	my $slow = $SLOW_ACTION;
	$slow =~ s/%S/0.01/g;
	$slow =~ s/%T/$t/g;
	$node->safe_psql('postgres',
		"SELECT mig_define('${t}_v1', '$t', " . q_lit($slow)
		  . ", batch_size => 50, parallel => $parallel)");
	$node->safe_psql('postgres', "SELECT mig_start('${t}_v1')");
	ok( poll_true(
			$node,
			"SELECT batches >= 10 FROM mig_status WHERE name = '${t}_v1'"),
		"${t}_v1 has done 10 batches");
	$node->safe_psql('postgres', "SELECT mig_cancel('${t}_v1')");
	# its workers finish their batches and leave: no runner lock is held
	# (advisory, objsubid 0x4D52 + slice)
	ok( poll_true(
			$node,
			"SELECT count(*) = 0 FROM pg_locks l, migrations m "
			  . "WHERE m.name = '${t}_v1' AND l.locktype = 'advisory' "
			  . "AND l.objid = m.id AND l.objsubid BETWEEN 19794 AND 19794 + 64"),
		"the runners of ${t}_v1 have left");
	my $done = $node->safe_psql('postgres',
		"SELECT processed FROM mig_status WHERE name = '${t}_v1'");
	cmp_ok($done, '<', 4000, "${t}_v1 cancelled mid-run ($done rows)");
	$node->safe_psql('postgres',
		"SELECT mig_define('${t}_v2', '$t', " . q_lit(incr($t))
		  . ", batch_size => 50, parallel => $parallel, continue_from => '${t}_v1')");
	is( $node->safe_psql('postgres',
			"SELECT status || ' ' || error FROM migrations WHERE name = '${t}_v1'"),
		"cancelled continued by migration \"${t}_v2\"",
		"${t}_v1 is cancelled with a note");
	$node->safe_psql('postgres', "SELECT mig_start('${t}_v2')");
	is($node->safe_psql('postgres', "SELECT mig_wait('${t}_v2', '60 s')"),
		'completed', "${t}_v2 completes");
	is( $node->safe_psql('postgres',
			"SELECT count(*) FILTER (WHERE n = 1) || '/' || count(*) FROM $t"),
		'4000/4000', "$t: every row changed exactly once over both versions");
	is( $node->safe_psql('postgres',
			"SELECT sum(processed) FROM mig_status WHERE name IN ('${t}_v1', '${t}_v2')"),
		'4000', "$t: the versions' processed add up to every row");
	return;
}

continue_after_cancel('cc', 1);
continue_after_cancel('cs', 3);

log_has_no_crash($node, 0, 'after and continue_from');
$node->stop;
done_testing();
