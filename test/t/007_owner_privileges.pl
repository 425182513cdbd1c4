# The worker runs a migration as its owner, never as a superuser: a
# non-superuser's action that touches a table she cannot read fails with
# 42501, and a harmless one runs in a worker whose session user is her.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_owner');
my @alice = (extra_params => [ '-U', 'alice' ]);

$node->safe_psql('postgres', q{
	CREATE ROLE alice LOGIN;
	CREATE TABLE secret (x int PRIMARY KEY);
	INSERT INTO secret VALUES (1);
	REVOKE ALL ON secret FROM PUBLIC;
});
new_table($node, 'at', 1000);
new_table($node, 'at2', 2000);
$node->safe_psql('postgres', q{
	ALTER TABLE at OWNER TO alice;
	ALTER TABLE at2 ADD COLUMN who text;
	ALTER TABLE at2 OWNER TO alice;
});

is($node->safe_psql('postgres', 'SELECT has_table_privilege(\'alice\', \'secret\', \'SELECT\')'),
	'f', 'alice cannot read secret');

# alice may not define a migration on a table she cannot update
my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT mig_define('alice_secret_v1', 'secret', 'UPDATE secret SET x = x WHERE x BETWEEN $1 AND $2')},
	@alice);
isnt($ret, 0, 'alice cannot define a migration on a table she cannot update');
like($err, qr/permission denied|must be|privilege/i, '... with a permission error');

# Her action reads secret.  She may read it while defining (in case
# mig_define checks privileges when it plans the action); then that right is
# taken away, so only a worker with more rights than hers could run it.
$node->safe_psql('postgres', 'GRANT SELECT ON secret TO alice');
define_migration($node, 'alice_bad_v1', 'at',
	'UPDATE at SET n = n + 1 WHERE id BETWEEN $1 AND $2 AND (SELECT count(*) FROM secret) >= 0',
	batch_size => 100, user => 'alice');
$node->safe_psql('postgres', 'REVOKE SELECT ON secret FROM alice');
is(mig_row($node, 'alice_bad_v1', 'owner')->{owner}, 'alice',
	'the migration is owned by alice');
$node->safe_psql('postgres', "SELECT mig_start('alice_bad_v1')", @alice);
is($node->safe_psql('postgres', "SELECT mig_wait('alice_bad_v1', '30s')", @alice),
	'failed', "alice's action on secret fails in the worker");
my $r = mig_row($node, 'alice_bad_v1', qw(error processed));
note("error: $r->{error}");
like($r->{error}, qr/42501/, 'error has SQLSTATE 42501');
like($r->{error}, qr/permission denied/, 'error says permission denied');
is($r->{processed}, '0', 'nothing processed');
is($node->safe_psql('postgres', 'SELECT count(*) FROM at WHERE n <> 0'),
	'0', 'no row of at changed');

# A harmless action: the worker's session is alice's.
define_migration($node, 'alice_ok_v1', 'at2',
	q{WITH s AS (SELECT pg_sleep(0.02)) UPDATE at2 SET n = n + 1, who = current_user || '/' || session_user FROM s WHERE id BETWEEN $1 AND $2},
	batch_size => 50, user => 'alice');
$node->safe_psql('postgres', "SELECT mig_start('alice_ok_v1')", @alice);
my $pid = wait_for_worker($node, 'alice_ok_v1');
ok(defined $pid, "alice's migration has a worker");
$pid //= 0;
is($node->safe_psql('postgres', "SELECT usename FROM pg_stat_activity WHERE pid = $pid"),
	'alice', "the worker's pg_stat_activity usename is alice");
is($node->safe_psql('postgres', "SELECT mig_wait('alice_ok_v1', '60s')", @alice),
	'completed', "alice's harmless migration completes");
exactly_once_ok($node, 'at2', 'alice_ok_v1', 2000, 'alice_ok_v1');
is($node->safe_psql('postgres', 'SELECT string_agg(DISTINCT who, \',\') FROM at2'),
	'alice/alice', 'the action ran with current_user = session_user = alice');

log_has_no_crash($node, 0, 'owner');
$node->stop;
done_testing();
