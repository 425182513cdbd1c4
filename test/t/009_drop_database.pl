# DROP DATABASE of another database is not blocked by the launcher or a
# running worker (PostgreSQL 15 waits for every backend to absorb a
# ProcSignalBarrier).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_dropdb');

sub drop_db_ok
{
	my ($db, $label) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my $timed_out = 0;
	my ($ret, $out, $err) = $node->psql('postgres', "DROP DATABASE $db",
		timeout => 20, timed_out => \$timed_out);
	ok(!$timed_out && $ret == 0, "$label: DROP DATABASE $db is not blocked")
	  or diag("ret=$ret timed_out=$timed_out err=$err");
	return;
}

drop_db_ok('other1', 'idle launcher');

new_table($node, 't', 4000);
define_migration($node, 'db_v1', 't', undef, batch_size => 50, slow => 0.02);
$node->safe_psql('postgres', "SELECT mig_start('db_v1')");
ok(poll_true($node, "SELECT batches >= 3 FROM migrations WHERE name = 'db_v1'"),
	'db_v1 has done 3 batches');
my $pid = wait_for_worker($node, 'db_v1');
ok(defined $pid, 'db_v1 has a worker');
drop_db_ok('other2', 'running worker');
is(mig_row($node, 'db_v1', 'status')->{status}, 'running',
	'the migration was still running when the database was dropped');

is($node->safe_psql('postgres', "SELECT mig_wait('db_v1', '60s')"),
	'completed', 'db_v1 completes');
exactly_once_ok($node, 't', 'db_v1', 4000, 'db_v1');
ok(!$node->log_contains(qr/still waiting for backend with PID/),
	'no backend was slow to absorb the ProcSignalBarrier');

log_has_no_crash($node, 0, 'drop database');
$node->stop;
done_testing();
