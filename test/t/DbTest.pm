# DbTest.pm: helpers for the TAP tests of several databases (060-063):
# databases made after the server started, each with the extension, a
# table with a counter column and migrations of it.
#
# Every wait here is a poll with a deadline, as in MigTest.

package DbTest;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use MigTest;

our @EXPORT = qw(
  plain_node db_with_table db_migration db_poll_true db_status
  db_wait_done db_once_ok worker_counts_sql
);

# A started node with the library preloaded and no migration_runner setting
# but those in $conf.
sub plain_node
{
	my ($name, $conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf',
		    "max_worker_processes = 24\n"
		  . "log_min_messages = debug1\n"
		  . "shared_preload_libraries = 'migration_runner'\n"
		  . ($conf // ''));
	$node->start;
	return $node;
}

# CREATE DATABASE $db (unless $opts{exists}), the extension, and table $t
# (id, n counter) of $rows rows.
sub db_with_table
{
	my ($node, $db, $t, $rows, %opts) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db") unless $opts{exists};
	$node->safe_psql($db, 'CREATE EXTENSION IF NOT EXISTS migration_runner');
	$node->safe_psql($db, qq{
		CREATE TABLE $t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
		INSERT INTO $t (id) SELECT g FROM generate_series(1, $rows) g;
		ANALYZE $t;
	});
	return;
}

# mig_define of a migration of table $t in $db that increments n, sleeping
# $secs per batch.
sub db_migration
{
	my ($node, $db, $name, $t, $secs, $batch) = @_;
	$batch //= 50;
	my $action = "WITH s AS (SELECT pg_sleep($secs)) UPDATE $t SET n = n + 1 "
	  . 'FROM s WHERE id BETWEEN $1 AND $2';
	return $node->safe_psql($db,
		'SELECT mig_define(name => ' . q_lit($name)
		  . ', relation => ' . q_lit($t)
		  . ', action => ' . q_lit($action)
		  . ", batch_size => $batch, batch_delay => '0')");
}

# Run $sql in $db until it prints 't'.
sub db_poll_true
{
	my ($node, $db, $sql, $secs) = @_;
	my $deadline = time() + ($secs // $WAIT_SECS);
	while (1)
	{
		my ($ret, $out, $err) = $node->psql($db, $sql);
		return 1 if $ret == 0 && defined $out && $out eq 't';
		if (time() > $deadline)
		{
			diag("db_poll_true in $db timed out: $sql\nstdout: "
				  . ($out // '') . "\nstderr: " . ($err // ''));
			return 0;
		}
		usleep(50_000);
	}
}

sub db_status
{
	my ($node, $db, $name) = @_;
	return $node->safe_psql($db,
		'SELECT status FROM migrations WHERE name = ' . q_lit($name));
}

# Wait until $name in $db is no longer running; its status.
sub db_wait_done
{
	my ($node, $db, $name, $secs) = @_;
	db_poll_true($node, $db,
		'SELECT status <> ' . q_lit('running')
		  . ' FROM migrations WHERE name = ' . q_lit($name), $secs);
	return db_status($node, $db, $name);
}

# Every row of $t in $db changed exactly once, and processed says so.
sub db_once_ok
{
	my ($node, $db, $t, $name, $rows) = @_;
	is( $node->safe_psql($db,
			"SELECT count(*) FILTER (WHERE n <> 1) || '/' || count(*) FROM $t"),
		"0/$rows", "$db.$t: every row changed exactly once");
	is( $node->safe_psql($db,
			'SELECT processed FROM migrations WHERE name = ' . q_lit($name)),
		$rows, "$db: $name processed = $rows");
	return;
}

# SQL printing "total|db:count,db:count" of the migration workers now.
sub worker_counts_sql
{
	return q{SELECT coalesce(sum(c), 0) || '|'
			   || coalesce(string_agg(datname || ':' || c, ',' ORDER BY datname), '')
			   FROM (SELECT datname, count(*) AS c FROM pg_stat_activity
					  WHERE backend_type = 'migration_runner worker'
					  GROUP BY datname) w};
}

1;
