# A lock on the table when a run starts: preparing the run's plans needs a
# lock on the relation, so it waits at most the migration's lock_timeout and
# is retried like a batch (55P03 is transient).  Held for good, the
# migration fails after max_retries with an error that says so; released,
# the run completes.  Both through CALL mig_run, which starts the run in the
# caller's session.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $node = mig_node('mrtap_setup_lock');
my $rows = 100;

new_table($node, 's', $rows);
define_migration($node, 'setup_lock_v1', 's',
	'UPDATE s SET n = n + 1 WHERE id BETWEEN $1 AND $2',
	batch_size => 10, lock_timeout => '100ms', max_retries => 3);

# defined now: defining prepares the action, which needs the table
define_migration($node, 'setup_lock_slow_v1', 's',
	'UPDATE s SET n = n + 1 WHERE id BETWEEN $1 AND $2',
	batch_size => 10, lock_timeout => '200ms', max_retries => 50);

my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN; LOCK TABLE s IN ACCESS EXCLUSIVE MODE');

# the session's own lock_timeout is off: only the migration's applies
my ($ret, $out, $err) = $node->psql('postgres',
	"SET lock_timeout = 0; CALL mig_run('setup_lock_v1')");
isnt($ret, 0, 'CALL mig_run fails while the table stays locked');
like($err, qr/migration "setup_lock_v1" failed/, 'it says the migration failed');

my $r = mig_row($node, 'setup_lock_v1', qw(status processed batches error));
note("error: $r->{error}");
is($r->{status}, 'failed', 'status is failed');
like($r->{error}, qr/lock timeout \(SQLSTATE 55P03\)/,
	'the error is the lock timeout, with its SQLSTATE');
like($r->{error}, qr/after 4 attempts/,
	'it was retried max_retries (3) times before failing');
is($r->{processed} . '/' . $r->{batches}, '0/0', 'nothing was processed');

# released before the retries run out: the run goes on
my $runner = $node->background_psql('postgres');
# (the table lock is still held: the rows cannot be read yet)
$runner->query_until(qr/started/,
	"\\echo started\nCALL mig_run('setup_lock_slow_v1');\n\\echo done\n");
# the runner is waiting for the table lock held by $holder
ok( poll_true(
		$node,
		"SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
		  . "WHERE c.relname = 's' AND NOT l.granted)"),
	'the run waits for the table lock');
$holder->query_safe('COMMIT');
$runner->query_until(qr/done/, '');
is($node->safe_psql('postgres',
		"SELECT status FROM migrations WHERE name = 'setup_lock_slow_v1'"),
	'completed', 'after the lock is released the run completes');
is($node->safe_psql('postgres', 'SELECT count(*) FILTER (WHERE n = 1) FROM s'),
	$rows, 'every row changed exactly once');

$runner->quit;
$holder->quit;
log_has_no_crash($node);
done_testing();
