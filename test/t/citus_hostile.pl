# Citus, per-shard runs attacked (issue 16): what broke 1.0 on a single
# server, tried on a distributed table.
#   i.  another role: the table's owner, not a superuser, defines the
#       migration; its role settings put DateStyle 'SQL, DMY' and an odd
#       TimeZone in every session it opens, also in the coordinator's
#       connections to the nodes, and the key (tenant, day) has a date in
#       it.  Every row is changed once, by that role, and the node-local
#       migrations are the role's.
#   j.  DDL mid-run: the table is rewritten (ALTER COLUMN ... TYPE, on every
#       shard) and then VACUUM FULL'd while the shards run.
#   k.  a racing session: on a worker, another session keeps calling
#       mig_shard_batch on that node's shard migrations while the
#       coordinator drives them too;
#   l.  one node under strain (its WAL rate over max_wal_rate): its shards
#       wait, mig_status on the coordinator names the node and the reason,
#       the other node's shards go on.
# In each case every row is changed exactly once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;
use CitusTest;

my ($coord, @workers) = citus_cluster_or_skip(tag => 'ho');

# --- i. another role, odd settings, a date in the key -----------------------

$coord->safe_psql('postgres', q{
	CREATE ROLE app LOGIN;
	CREATE TABLE events (
		tenant int NOT NULL,
		day date NOT NULL,
		n int NOT NULL DEFAULT 0,
		who text,
		PRIMARY KEY (tenant, day));
	SELECT create_distributed_table('events', 'tenant', shard_count => 32);
	INSERT INTO events (tenant, day)
	SELECT t, date '2020-01-01' + d FROM generate_series(1, 64) t, generate_series(0, 299) d;
	ANALYZE events;
	ALTER TABLE events OWNER TO app;
	ALTER ROLE app SET DateStyle = 'SQL, DMY';
	ALTER ROLE app SET TimeZone = 'Asia/Kathmandu';
});
my $event_rows = 64 * 300;
for my $w (@workers)
{
	is( $w->safe_psql('postgres', q{
			SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting
			 WHERE setrole = 'app'::regrole AND setdatabase = 0}),
		'DateStyle=SQL, DMY,TimeZone=Asia/Kathmandu',
		'i. ' . $w->name . ': the role settings reached the node');
}
my ($id, $notice) = citus_define($coord, 'events_v1', 'events',
	setup => 'SET ROLE app; ',
	key_columns => q{ARRAY['tenant', 'day']},
	batch_size => 20, batch_delay => '10ms',
	action => 'UPDATE events SET n = n + 1, who = current_user '
	  . 'WHERE (tenant, day) BETWEEN ($1, $2) AND ($3, $4)');
like($notice, qr/will run shard by shard/, 'i. the key (tenant, day) runs shard by shard');
# about 30 batches a shard, 10 ms apart: more than one call of the
# coordinator's (200 ms), so each shard goes on from a cursor it read back
$coord->safe_psql('postgres', "SET ROLE app; SELECT mig_start('events_v1')");
is($coord->safe_psql('postgres', "SELECT mig_wait('events_v1', '5 min')"),
	'completed', 'i. the migration completes');
citus_once_ok($coord, 'events', 'events_v1', $event_rows, 'i. DateStyle SQL, DMY');
is($coord->safe_psql('postgres', q{SELECT string_agg(DISTINCT coalesce(who, '-'), ',') FROM events}),
	'app', 'i. every row was changed by the owner, not a superuser');
for my $w (@workers)
{
	is( $w->safe_psql('postgres',
			"SELECT string_agg(DISTINCT owner::text, ',') || '|' || bool_and(status = 'completed')"
			  . " FROM migrations WHERE coordinator_id = $id"),
		'app|true', 'i. ' . $w->name . ': its shard migrations are the owner\'s, all completed');
}

# --- j. a table rewrite and a VACUUM FULL mid-run ---------------------------

my $rows = 32000;
citus_users($coord, $rows, table => 'users_dd');
citus_define($coord, 'ddl_v1', 'users_dd', batch_size => 50, batch_delay => '20ms');
$coord->safe_psql('postgres', "SELECT mig_start('ddl_v1')");
ok( citus_poll($coord,
		"SELECT count(*) FILTER (WHERE processed > 0) >= 8 FROM mig_slices WHERE name = 'ddl_v1'"),
	'j. the shards are under way');
$coord->safe_psql('postgres', 'ALTER TABLE users_dd ALTER COLUMN n TYPE bigint');
my $mid = citus_value($coord, "SELECT processed FROM mig_status WHERE name = 'ddl_v1'");
ok($mid < $rows, "j. the table was rewritten mid-run ($mid of $rows rows done)");
ok( citus_poll($coord,
		"SELECT processed > $mid FROM mig_status WHERE name = 'ddl_v1'"),
	'j. the run goes on after the rewrite');
$coord->safe_psql('postgres', 'VACUUM FULL users_dd');
$mid = citus_value($coord, "SELECT processed FROM mig_status WHERE name = 'ddl_v1'");
ok($mid < $rows, "j. VACUUM FULL ran mid-run too ($mid of $rows rows done after it)");
is($coord->safe_psql('postgres', "SELECT mig_wait('ddl_v1', '5 min')"),
	'completed', 'j. the migration completes');
citus_once_ok($coord, 'users_dd', 'ddl_v1', $rows, 'j. ALTER TYPE and VACUUM FULL mid-run');

# --- k. a second session calling the shard batches itself -------------------

citus_users($coord, $rows, table => 'users_race');
($id) = citus_define($coord, 'race_v1', 'users_race', batch_size => 50, batch_delay => '10ms');
$coord->safe_psql('postgres', "SELECT mig_start('race_v1')");
my $racer = $workers[0];
ok( citus_poll($racer,
		"SELECT count(*) > 0 FROM migrations WHERE coordinator_id = $id AND status = 'running'"),
	'k. ' . $racer->name . ' runs shard migrations');
my ($calls, $raced) = (0, 0);
while (citus_value($coord, "SELECT status FROM migrations WHERE id = $id") eq 'running')
{
	my @local = split /\n/, $racer->safe_psql('postgres',
		"SELECT id FROM migrations WHERE coordinator_id = $id AND status = 'running'");
	last unless @local;
	for my $l (@local)
	{
		my ($ret, $out) = $racer->psql('postgres',
			"CALL mig_shard_batch($l, 30, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)");
		$calls++;
		$raced++ if $ret == 0 && $out =~ /^running\|/;
	}
}
note("k. $calls calls by hand, $raced of them ran batches");
ok($raced > 0, "k. the racing session ran batches itself ($raced of $calls calls)");
is($coord->safe_psql('postgres', "SELECT mig_wait('race_v1', '5 min')"),
	'completed', 'k. the migration completes');
citus_once_ok($coord, 'users_race', 'race_v1', $rows, 'k. a racing session on a node');

# --- l. one node's health holds its shards back -----------------------------

citus_users($coord, $rows, table => 'users_th');
citus_define($coord, 'throttle_v1', 'users_th', batch_size => 50);
my ($strained, $healthy) = map { citus_node_name($_) } @workers;
# any WAL at all is too much there, and another session keeps writing some
# (80 kB/s of logical messages) until noise.stop is set: the node's shards
# wait until then
$workers[0]->safe_psql('postgres', q{
	ALTER SYSTEM SET migration_runner.max_wal_rate = 1;
	ALTER SYSTEM SET migration_runner.throttle_sleep = '200ms';
	SELECT pg_reload_conf();
});
$workers[0]->safe_psql('postgres',
	'CREATE TABLE noise (stop bool NOT NULL); INSERT INTO noise VALUES (false)');
my $noise = $workers[0]->background_psql('postgres');
$noise->query_until(qr/noise/, q{\echo noise
DO $$ BEGIN LOOP
	EXIT WHEN (SELECT stop FROM noise);
	PERFORM pg_logical_emit_message(false, 'mr-test', repeat('x', 4000));
	PERFORM pg_sleep(0.05);
END LOOP; END $$;
});
$coord->safe_psql('postgres', "SELECT mig_start('throttle_v1')");
ok( citus_poll($coord,
		'SELECT throttled LIKE '
		  . q_lit("node $strained: WAL is written at % kB/s, more than migration_runner.max_wal_rate (1 kB/s)")
		  . " FROM mig_status WHERE name = 'throttle_v1'"),
	'l. mig_status on the coordinator names the node under strain and why');
ok( citus_poll($coord, qq{
		SELECT bool_and(status = 'done') FILTER (WHERE node = '$healthy')
		   AND NOT bool_and(status = 'done') FILTER (WHERE node = '$strained')
		  FROM mig_slices WHERE name = 'throttle_v1'}),
	'l. the other node\'s shards completed while the strained node\'s waited');
$workers[0]->safe_psql('postgres', 'UPDATE noise SET stop = true');
$noise->quit;
$workers[0]->safe_psql('postgres', q{
	ALTER SYSTEM RESET migration_runner.max_wal_rate;
	ALTER SYSTEM RESET migration_runner.throttle_sleep;
	SELECT pg_reload_conf();
});
is($coord->safe_psql('postgres', "SELECT mig_wait('throttle_v1', '5 min')"),
	'completed', 'l. once the node is healthy again, the migration completes');
citus_once_ok($coord, 'users_th', 'throttle_v1', $rows, 'l. a node under strain');
is($coord->safe_psql('postgres', "SELECT throttled IS NULL FROM mig_status WHERE name = 'throttle_v1'"),
	't', 'l. completed, it no longer says it is throttled');

log_has_no_crash($_, 0, $_->name) for ($coord, @workers);

done_testing();
