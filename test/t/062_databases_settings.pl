# Which databases are served:
#   - migration_runner.databases = 'sa,sb' serves only those: a migration in
#     sc stays running and unprocessed, and mig_start there warns; once the
#     setting names sc too (a reload), it runs
#   - the deprecated migration_runner.database still works, with a WARNING
#     in the log, and mig_start elsewhere says so
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use MigTest;
use DbTest;

# Does $sql print 't' at every look (every 50 ms) for $secs?
sub holds_for
{
	my ($node, $db, $sql, $secs) = @_;
	my $end = time() + $secs;
	while (time() < $end)
	{
		return 0 if $node->safe_psql($db, $sql) ne 't';
		usleep(50_000);
	}
	return 1;
}

# --- a list of databases -----------------------------------------------------------
my $node = plain_node('mrtap_db_list',
	"migration_runner.databases = 'sa,sb'\nmigration_runner.poll_interval = 200\n");
for my $db (qw(sa sb sc))
{
	db_with_table($node, $db, 't', 200);
	db_migration($node, $db, "${db}_v1", 't', 0, 50);
}
my ($ret, $out, $err) = $node->psql('sc', "SELECT mig_start('sc_v1')");
is($ret, 0, 'mig_start in sc succeeds');
like($err, qr/WARNING:  no background worker will run migration "sc_v1"/,
	'mig_start in sc warns that no worker will run it');
like($err,
	qr/runs migrations in the databases that migration_runner\.databases names only: sa,sb/,
	'... because migration_runner.databases does not name sc');
for my $db (qw(sa sb))
{
	($ret, $out, $err) = $node->psql($db, "SELECT mig_start('${db}_v1')");
	unlike($err, qr/no background worker/, "mig_start in $db does not warn");
	is(db_wait_done($node, $db, "${db}_v1"), 'completed', "${db}_v1 completes");
}
# five polls of the launcher at least
ok( holds_for($node, 'sc',
		"SELECT status = 'running' AND batches = 0 FROM migrations WHERE name = 'sc_v1'", 1.0),
	'sc_v1 stays running and unprocessed (sc is not served)');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE datname = 'sc' AND backend_type LIKE 'migration_runner%'"),
	'0', 'no scheduler or worker connects to sc');

$node->safe_psql('postgres', "ALTER SYSTEM SET migration_runner.databases = 'sa, sb, sc'");
$node->reload;
is(db_wait_done($node, 'sc', 'sc_v1'), 'completed',
	'once the setting names sc (reload), sc_v1 completes');
db_once_ok($node, 'sc', 't', 'sc_v1', 200);
log_has_no_crash($node, 0, 'list');
$node->stop;

# --- the deprecated setting ----------------------------------------------------------
my $old = plain_node('mrtap_db_legacy',
	"migration_runner.database = 'legacy'\nmigration_runner.poll_interval = 200\n");
ok( wait_log($old, 0, qr/WARNING:  migration_runner\.database is deprecated/),
	'the log warns that migration_runner.database is deprecated');
is($old->safe_psql('postgres', 'SHOW migration_runner.databases'), '*',
	'migration_runner.databases is left at its default');
for my $db (qw(legacy other))
{
	db_with_table($old, $db, 't', 200);
	db_migration($old, $db, "${db}_v1", 't', 0, 50);
}
($ret, $out, $err) = $old->psql('other', "SELECT mig_start('other_v1')");
like($err,
	qr/The launcher runs migrations in database "legacy" only\./,
	'mig_start in another database warns, naming the database of the deprecated setting');
($ret, $out, $err) = $old->psql('legacy', "SELECT mig_start('legacy_v1')");
unlike($err, qr/no background worker/, 'mig_start in legacy does not warn');
is(db_wait_done($old, 'legacy', 'legacy_v1'), 'completed',
	'the database named by migration_runner.database is served');
db_once_ok($old, 'legacy', 't', 'legacy_v1', 200);
ok( holds_for($old, 'other',
		"SELECT status = 'running' AND batches = 0 FROM migrations WHERE name = 'other_v1'", 1.0),
	'another database is not served');
is(scalar(() = slurp_file($old->logfile) =~ /migration_runner\.database is deprecated/g),
	1, 'the deprecation is logged once');
log_has_no_crash($old, 0, 'legacy');
$old->stop;
done_testing();
