# Every state change sends NOTIFY migration_runner with a JSON payload at
# commit.  A session that LISTENs sees, in order, for a migration going
# pending -> running -> paused -> running -> completed, exactly these four
# changes with the right processed counts; a failure and a cancel are
# announced too.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time usleep);
use MigTest;

my $node = mig_node('mrtap_notify');

my $listener = $node->background_psql('postgres');
$listener->set_query_timer_restart();
$listener->query_safe('LISTEN migration_runner');

# psql prints the notifications that arrived when it next talks to the
# server; keep asking until $want notifications of migration $name arrived.
my @received;    # [ pid, decoded payload ] of every notification, in order
sub pump_notifications
{
	my ($name, $want) = @_;
	my $deadline = time() + $WAIT_SECS;
	while (1)
	{
		my $out = $listener->query_safe('SELECT 1');
		for my $line (split /\n/, $out)
		{
			next
			  unless $line =~
			  /^Asynchronous notification "migration_runner" with payload "(.*)" received from server process with PID (\d+)\.$/;
			my ($payload, $pid) = ($1, $2);
			my $json = eval { decode_json($payload) };
			ok(0, "payload is JSON: $payload") unless defined $json;
			push @received, [ $pid, $json // {} ];
		}
		my @mine = grep { ($_->[1]{name} // '') eq $name } @received;
		return @mine if @mine >= $want || time() > $deadline;
		usleep(50_000);
	}
}

# --- running -> paused -> running -> completed ------------------------------
new_table($node, 'n', 3000);
define_migration($node, 'notify_v1', 'n', undef, batch_size => 50, slow => 0.02);
my $session_pid = $node->safe_psql('postgres',
	"SELECT pg_backend_pid() FROM (SELECT mig_start('notify_v1')) s");
ok(poll_true($node, "SELECT batches >= 3 FROM migrations WHERE name = 'notify_v1'"),
	'notify_v1 has done 3 batches');
my $wpid = wait_for_worker($node, 'notify_v1') // 0;
$node->safe_psql('postgres', "SELECT mig_pause('notify_v1')");
ok(wait_pid_gone($node, $wpid, 30), 'the worker exits on pause');
my $paused_processed = mig_row($node, 'notify_v1', 'processed')->{processed};
cmp_ok($paused_processed, '>', 0, "paused after $paused_processed rows");
cmp_ok($paused_processed, '<', 3000, 'paused before the end');
$node->safe_psql('postgres', "SELECT mig_resume('notify_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('notify_v1', '60s')"),
	'completed', 'notify_v1 completed');

my @n = pump_notifications('notify_v1', 4);
# give a fifth (unexpected) notification the chance to show up: a state
# change of another migration, committed after all of these, must arrive
# after any stray one of notify_v1
new_table($node, 'other', 10);
define_migration($node, 'other_v1', 'other',
	'UPDATE other SET n = n + 1 WHERE id BETWEEN $1 AND $2');
$node->safe_psql('postgres', "CALL mig_run('other_v1')");
pump_notifications('other_v1', 2);
@n = grep { $_->[1]{name} eq 'notify_v1' } @received;

is( join(', ', map { "$_->[1]{old_status}->$_->[1]{new_status}" } @n),
	'pending->running, running->paused, paused->running, running->completed',
	'the four state changes arrive, in order, and nothing else');
is_deeply(
	[ map { $_->[1]{processed} } @n ],
	[ 0, $paused_processed, $paused_processed, 3000 ],
	'processed: 0 at start, the paused count at pause and resume, 3000 at the end');
is_deeply([ sort keys %{ $n[0][1] } ],
	[qw(name new_status old_status processed)], 'payload keys');
is($n[0][0], $session_pid, 'the start is announced by the session that started it');
isnt($n[3][0], $session_pid, 'the completion is announced by the worker');
is( join(', ', map { "$_->[1]{old_status}->$_->[1]{new_status}" }
		  grep { $_->[1]{name} eq 'other_v1' } @received),
	'pending->running, running->completed',
	'CALL mig_run announces its start and its completion');

# --- failed and cancelled ----------------------------------------------------
new_table($node, 'f', 100);
define_migration($node, 'notify_fail_v1', 'f',
	'UPDATE f SET n = n + 1 / (CASE WHEN id = 55 THEN 0 ELSE 1 END) WHERE id BETWEEN $1 AND $2',
	batch_size => 10);
$node->safe_psql('postgres', "SELECT mig_start('notify_fail_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('notify_fail_v1', '60s')"),
	'failed', 'notify_fail_v1 failed');
@n = pump_notifications('notify_fail_v1', 2);
is( join(', ', map { "$_->[1]{old_status}->$_->[1]{new_status}:$_->[1]{processed}" } @n),
	'pending->running:0, running->failed:50',
	'the failure is announced with the rows processed before it');

new_table($node, 'c', 100);
define_migration($node, 'notify_cancel_v1', 'c',
	'UPDATE c SET n = n + 1 WHERE id BETWEEN $1 AND $2');
$node->safe_psql('postgres', "SELECT mig_cancel('notify_cancel_v1')");
@n = pump_notifications('notify_cancel_v1', 1);
is( join(', ', map { "$_->[1]{old_status}->$_->[1]{new_status}" } @n),
	'pending->cancelled', 'a cancel is announced');

# a name that needs escaping stays valid JSON
new_table($node, 'q', 10);
my $odd = qq{odd "name" \\ with\ttab};
define_migration($node, $odd, 'q',
	'UPDATE q SET n = n + 1 WHERE id BETWEEN $1 AND $2');
$node->safe_psql('postgres', 'CALL mig_run(' . q_lit($odd) . ')');
@n = pump_notifications($odd, 2);
is(scalar(@n), 2, 'a name with quotes, a backslash and a tab round-trips through the JSON');

# a NOTIFY is sent at commit only: a rolled back start sends nothing
new_table($node, 'r', 10);
define_migration($node, 'notify_rollback_v1', 'r',
	'UPDATE r SET n = n + 1 WHERE id BETWEEN $1 AND $2');
$node->safe_psql('postgres',
	"BEGIN; SELECT mig_start('notify_rollback_v1'); ROLLBACK;");
$node->safe_psql('postgres', "SELECT mig_cancel('notify_rollback_v1')");
@n = pump_notifications('notify_rollback_v1', 1);
is( join(', ', map { "$_->[1]{old_status}->$_->[1]{new_status}" } @n),
	'pending->cancelled', 'the rolled back start was not announced');

$listener->quit;
log_has_no_crash($node, 0, 'notify');
$node->stop;
done_testing();
