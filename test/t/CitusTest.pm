# CitusTest.pm: a Citus cluster for the Perl TAP tests test/t/citus_*.pl:
# a coordinator and two workers made with PostgreSQL::Test::Cluster, each
# preloading citus and migration_runner, and helpers for the seed's users
# table distributed by id.
#
# Without Citus (no citus.control in `pg_config --sharedir`/extension) a
# file that calls citus_cluster_or_skip() is skipped as a whole
# (plan skip_all => 'Citus not available'): prove counts it as skipped,
# never as passed.  scripts/test.sh builds Citus from
# ../shared/vendor/citus before the TAP tests when that directory exists;
# this module tries the same build itself only when it runs as root.
# MR_NO_CITUS=1 makes every such file skip, as without Citus.
#
# Every wait here is a poll with a deadline (MigTest's $WAIT_SECS); nothing
# sleeps to synchronise.

package CitusTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use MigTest;

our @EXPORT = qw(
  citus_cluster_or_skip citus_users citus_define citus_poll citus_value
  citus_once_ok citus_counts citus_node_name citus_wait_status
  citus_local_migrations citus_shard_nodes $USERS_ACTION
);

# The seed's backfill, plus the counter n that the exactly-once checks read.
our $USERS_ACTION =
  'UPDATE users SET n = n + 1, created_at = inserted_at, updated_at = inserted_at '
  . 'WHERE id BETWEEN $1 AND $2';

# The directory holding Citus' vendored source (../shared/vendor/citus of
# the source tree), or undef.  MR_CITUS_VENDOR overrides it.
sub _vendor_dir
{
	return $ENV{MR_CITUS_VENDOR} if defined $ENV{MR_CITUS_VENDOR};
	my $root = abs_path(dirname(__FILE__) . '/../..');
	return undef unless defined $root;
	my $dir = "$root/../shared/vendor/citus";
	return -f "$dir/build.sh" ? $dir : undef;
}

# Is Citus installed in the PostgreSQL the tests run (pg_config in PATH)?
sub _citus_installed
{
	my $share = `pg_config --sharedir 2>/dev/null`;
	my $lib   = `pg_config --pkglibdir 2>/dev/null`;
	chomp($share, $lib);
	return 0 if $share eq '' || $lib eq '';
	return -f "$share/extension/citus.control" && -f "$lib/citus.so";
}

# Citus available, after building it when this runs as root and the vendor
# directory is there (the TAP tests normally run as postgres: then
# scripts/test.sh is the one that builds it).
sub citus_available
{
	# MR_NO_CITUS=1: behave as if Citus were not there (tests the skip)
	return 0 if $ENV{MR_NO_CITUS};
	return 1 if _citus_installed();
	my $vendor = _vendor_dir();
	if ($> == 0 && defined $vendor)
	{
		my $pgc = `command -v pg_config`;
		chomp $pgc;
		diag("Citus is not installed: bash $vendor/build.sh $pgc");
		system('bash', "$vendor/build.sh", $pgc);
		return _citus_installed();
	}
	return 0;
}

# 'host:port' of a node, as Citus and migration_slices.node name it.
sub citus_node_name
{
	my ($node) = @_;
	return $node->host . ':' . $node->port;
}

# One node of the cluster, started, with citus created.
sub _citus_node
{
	my ($name, $conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf',
		    "shared_preload_libraries = 'citus,migration_runner'\n"
		  . "migration_runner.databases = 'postgres'\n"
		  . "wal_level = logical\n"
		  . "max_worker_processes = 40\n"
		  . "max_replication_slots = 20\n"
		  . "max_wal_senders = 20\n"
		  . "max_connections = 200\n"
		  . "citus.shard_count = 32\n"
		  # shard moves connect to the node by this name (Unix sockets only)
		  . "citus.local_hostname = '" . $node->host . "'\n"
		  . "fsync = off\n"
		  . "log_min_messages = info\n"
		  . ($conf // ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION citus');
	return $node;
}

# Plan skip_all unless Citus is available; else a started cluster:
# ($coordinator, $worker1, $worker2), migration_runner created on the
# coordinator (and, through Citus, on the workers: checked here).
#   conf => '...'   more postgresql.conf lines for every node
sub citus_cluster_or_skip
{
	my (%o) = @_;
	plan skip_all => 'Citus not available' unless citus_available();

	my $coord = _citus_node("citus_coord_$o{tag}", $o{conf});
	my @workers = map { _citus_node("citus_w${_}_$o{tag}", $o{conf}) } (1, 2);
	$coord->safe_psql('postgres',
		    'SELECT citus_set_coordinator_host('
		  . q_lit($coord->host) . ', ' . $coord->port . ')');
	for my $w (@workers)
	{
		$coord->safe_psql('postgres',
			'SELECT citus_add_node(' . q_lit($w->host) . ', ' . $w->port . ')');
	}
	$coord->safe_psql('postgres', 'CREATE EXTENSION migration_runner');
	# Citus propagates CREATE EXTENSION to the nodes in its metadata
	for my $w (@workers)
	{
		is( $w->safe_psql('postgres',
				"SELECT extversion FROM pg_extension WHERE extname = 'migration_runner'"),
			$coord->safe_psql('postgres',
				"SELECT extversion FROM pg_extension WHERE extname = 'migration_runner'"),
			$w->name . ': Citus created migration_runner there too');
	}
	return ($coord, @workers);
}

# The seed's users table (plus the counter n) with ids 1..$rows, made
# distributed by id (hash, 32 shards), a reference table ('reference') or
# left local ('local').
sub citus_users
{
	my ($coord, $rows, %o) = @_;
	my $table = $o{table} // 'users';
	my $kind  = $o{kind}  // 'hash';
	$coord->safe_psql('postgres', qq{
		CREATE TABLE $table (
			id bigint PRIMARY KEY,
			email text NOT NULL,
			inserted_at timestamptz NOT NULL,
			created_at timestamptz,
			updated_at timestamptz,
			n int NOT NULL DEFAULT 0);
	});
	if ($kind eq 'hash')
	{
		$coord->safe_psql('postgres',
			"SELECT create_distributed_table('$table', 'id', shard_count => 32)");
	}
	elsif ($kind eq 'reference')
	{
		$coord->safe_psql('postgres', "SELECT create_reference_table('$table')");
	}
	$coord->safe_psql('postgres', qq{
		INSERT INTO $table (id, email, inserted_at)
		SELECT g, 'user' || g || '\@example.com',
			   timestamptz '2020-01-01 00:00:00+00' + g * interval '1 second'
		  FROM generate_series(1, $rows) g;
		ANALYZE $table;
	});
	return;
}

# mig_define on the coordinator with named options (SQL text as given,
# strings quoted here); returns the NOTICE text (stderr) and the id.
#   citus_define($coord, 'name', 'users', action => ..., batch_size => 20,
#                batch_delay => '10ms', key_columns => q{ARRAY['id']})
sub citus_define
{
	my ($coord, $name, $table, %o) = @_;
	my $action = $o{action} // $USERS_ACTION;
	$action =~ s/\busers\b/$table/g unless defined $o{action};
	my @args = (
		'name => ' . q_lit($name),
		'relation => ' . q_lit($table),
		'action => ' . q_lit($action));
	push @args, "batch_size => $o{batch_size}" if defined $o{batch_size};
	push @args, 'batch_delay => ' . q_lit($o{batch_delay}) if defined $o{batch_delay};
	push @args, "key_columns => $o{key_columns}" if defined $o{key_columns};
	my $setup = $o{setup} // '';
	my ($ret, $out, $err) = $coord->psql('postgres',
		$setup . 'SELECT mig_define(' . join(', ', @args) . ')');
	die "mig_define of $name failed: $err" if $ret != 0;
	return ($out, $err);
}

# Run $sql on $node until it prints 't'; true if it did in time.
sub citus_poll
{
	my ($node, $sql, $secs) = @_;
	return poll_true($node, $sql, $secs);
}

sub citus_value
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

# Wait until migration $name on $node is no longer running (or pending);
# its status ('running' at the deadline).
sub citus_wait_status
{
	my ($node, $name, $secs) = @_;
	my $st = poll_value($node,
		'SELECT status FROM migrations WHERE name = ' . q_lit($name)
		  . " AND status NOT IN ('running', 'pending')", $secs);
	$st //= 'running';
	diag("$name: " . $node->safe_psql('postgres',
			"SELECT status || ': ' || coalesce(error, '') FROM migrations WHERE name = "
			  . q_lit($name)))
	  if $st ne 'completed';
	return $st;
}

# "n=0: A, n=1: B, n>1: C" of $table, read through the coordinator.
sub citus_counts
{
	my ($coord, $table) = @_;
	return counter_counts($coord, $table // 'users');
}

# Every row of $table changed exactly once (n = 1), none lost, and the
# coordinator's mig_status says every row was processed.
sub citus_once_ok
{
	my ($coord, $table, $name, $rows, $label) = @_;
	is( $coord->safe_psql('postgres',
			"SELECT count(*) FILTER (WHERE n <> 1) || '/' || count(*) FROM $table"),
		"0/$rows",
		"$label: every row changed exactly once")
	  or diag(citus_counts($coord, $table) . "\nrows with n <> 1 by shard "
		  . "(shard|n|count|min id|max id):\n"
		  . $coord->safe_psql('postgres', qq{
			SELECT s || '|' || n || '|' || c || '|' || lo || '|' || hi
			  FROM (SELECT get_shard_id_for_distribution_column('$table', id) AS s, n,
						   count(*) AS c, min(id) AS lo, max(id) AS hi
					  FROM $table WHERE n <> 1 GROUP BY 1, 2) x
			 ORDER BY s, n LIMIT 20}));
	is( $coord->safe_psql('postgres',
			'SELECT processed FROM mig_status WHERE name = ' . q_lit($name)),
		$rows, "$label: mig_status processed = $rows");
	return;
}

# The node-local migrations on $worker that run shards of the
# coordinator's migration $id: "status|count" lines, sorted.
sub citus_local_migrations
{
	my ($worker, $id) = @_;
	return $worker->safe_psql('postgres',
		"SELECT status || '|' || count(*) FROM migrations"
		  . " WHERE coordinator_id = $id GROUP BY status ORDER BY status");
}

# 'host:port' of the node holding each shard of $table, as
# "shardid|host:port" lines (the coordinator's metadata).
sub citus_shard_nodes
{
	my ($coord, $table) = @_;
	return $coord->safe_psql('postgres', qq{
		SELECT s.shardid || '|' || n.nodename || ':' || n.nodeport
		  FROM pg_dist_shard s
		  JOIN pg_dist_placement p ON p.shardid = s.shardid
		  JOIN pg_dist_node n ON n.groupid = p.groupid
		 WHERE s.logicalrelid = '$table'::regclass
		 ORDER BY s.shardid});
}

1;
