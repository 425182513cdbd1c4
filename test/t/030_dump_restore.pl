# pg_dump and restore of a database holding migrations in every state, as a
# DBA restores a backup on another server: the custom format through
# pg_restore and the plain format through psql, each into a new database of
# a new server whose launcher serves that database (roles first, as
# pg_dumpall --globals-only would bring them), in one transaction as the
# README says.
#
# After the restore every migration keeps its state, cursor, history and
# error (the extension's configuration tables, whatever they are, hold the
# same rows); completed ones stay completed; new migrations get new ids; the
# paused one resumes from its cursor there, and every row is changed exactly
# once across the two databases (rows done before the dump are not done
# again in the copy).  One migration runs while pg_dump reads the database:
# the dump holds its data and its cursor from the same snapshot, and the
# copy's launcher finishes it, every row changed exactly once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my %rows = (
	t_done      => 500,
	t_failed    => 1000,
	t_paused    => 3000,
	t_cancelled => 3000,
	t_pending   => 400,
	t_live      => 20000);

# ---------------------------------------------------------------------------
# the source: migrations in every state, run by the worker as role app

my $src = mig_node('mrtap_dump_src');
$src->safe_psql('postgres', 'CREATE ROLE app LOGIN');
for my $t (sort keys %rows)
{
	new_table($src, $t, $rows{$t});
	$src->safe_psql('postgres', "ALTER TABLE $t OWNER TO app");
}
# the batch holding id 450 fails, after four batches of 100 are done
$src->safe_psql('postgres',
	'ALTER TABLE t_failed ADD CONSTRAINT t_failed_450 CHECK (id <> 450 OR n = 0)');

sub as_app
{
	my ($node, $db, $sql) = @_;
	return $node->safe_psql($db, $sql, extra_params => [ '-U', 'app' ]);
}

sub no_runner_sql
{
	return q{SELECT count(*) = 0 FROM pg_stat_activity
			  WHERE backend_type = 'migration_runner worker'};
}

define_migration($src, 'done_v1', 't_done', undef,
	batch_size => 100, user => 'app');
define_migration($src, 'failed_v1', 't_failed', undef,
	batch_size => 100, user => 'app');
# slow enough (>= 30 ms a batch, 60 batches) to be paused or cancelled
# long before the end
for my $name ('paused_v1', 'cancelled_v1')
{
	(my $t = $name) =~ s/^(\w+)_v1$/t_$1/;
	define_migration($src, $name, $t, undef,
		batch_size  => 50,
		batch_delay => '20ms',
		slow        => 0.01,
		user        => 'app');
}
define_migration($src, 'pending_v1', 't_pending', undef,
	batch_size => 100, user => 'app');
# about 10 ms a batch, 200 batches: running while pg_dump reads
define_migration($src, 'live_v1', 't_live', undef,
	batch_size  => 100,
	batch_delay => '5ms',
	slow        => 0.005,
	user        => 'app');

as_app($src, 'postgres', "SELECT mig_start('done_v1'), mig_start('failed_v1')");
is($src->safe_psql('postgres', "SELECT mig_wait('done_v1', '60s')"),
	'completed', 'source: done_v1 completed');
is($src->safe_psql('postgres', "SELECT mig_wait('failed_v1', '60s')"),
	'failed', 'source: failed_v1 failed on id 450');

for my $p ([ 'paused_v1', 'mig_pause' ], [ 'cancelled_v1', 'mig_cancel' ])
{
	my ($name, $fn) = @$p;
	as_app($src, 'postgres', "SELECT mig_start('$name')");
	ok( poll_true(
			$src,
			"SELECT batches >= 3 FROM migrations WHERE name = '$name'"),
		"source: $name ran 3 batches");
	as_app($src, 'postgres', "SELECT $fn('$name')");
}
ok(poll_true($src, no_runner_sql()), 'source: no worker left');

# application-driven migrations: one still running, one completed, one failed
my $app_id = as_app($src, 'postgres', "SELECT mig_start('app_running')");
as_app($src, 'postgres', "SELECT mig_update_progress($app_id, 42)");
my $id = as_app($src, 'postgres', "SELECT mig_start('app_done')");
as_app($src, 'postgres',
	"SELECT mig_update_progress($id, 7); SELECT mig_complete($id)");
$id = as_app($src, 'postgres', "SELECT mig_start('app_failed')");
as_app($src, 'postgres', "SELECT mig_fail($id, 'the app gave up')");

is( $src->safe_psql(
		'postgres', "SELECT string_agg(name || '=' || status, ' ' ORDER BY name)
					   FROM migrations"),
	'app_done=completed app_failed=failed app_running=running '
	  . 'cancelled_v1=cancelled done_v1=completed failed_v1=failed '
	  . 'live_v1=pending paused_v1=paused pending_v1=pending',
	'source: one migration in each state');

my $paused = mig_row($src, 'paused_v1', qw(cursor batches processed));
my $cancelled = mig_row($src, 'cancelled_v1', qw(processed));
cmp_ok($paused->{processed}, '>', 0, 'source: paused_v1 did some rows');
cmp_ok($paused->{processed}, '<', $rows{t_paused},
	'source: paused_v1 stopped before the end');
cmp_ok($cancelled->{processed}, '<', $rows{t_cancelled},
	'source: cancelled_v1 stopped before the end');
# keys 1..n without gaps: the cursor is the number of rows done
my ($paused_cursor) = $paused->{cursor} =~ /^\{(\d+)\}$/;
is($paused_cursor, $paused->{processed}, 'source: paused_v1 cursor = rows done');
like(mig_row($src, 'failed_v1', 'error')->{error},
	qr/t_failed_450/, 'source: failed_v1 recorded the violated constraint');
is( $src->safe_psql(
		'postgres', q{SELECT count(*) FROM migration_batches b
						JOIN migrations m ON m.id = b.migration_id
					   WHERE m.name = 'failed_v1' AND b.error IS NOT NULL}),
	'1',
	'source: the failed batch is in the history');

my $max_id = $src->safe_psql('postgres', 'SELECT max(id) FROM migrations');
my $live_id = $src->safe_psql('postgres', "SELECT id FROM migrations WHERE name = 'live_v1'");

# The catalog as text without live_v1's rows, which change while it runs
# (here, and in the copies once their launcher takes it up).
sub state_but_live
{
	my ($node, $db) = @_;
	return join("\n",
		grep { !/"name": "live_v1"|"migration_id": $live_id\b/ }
		  split /\n/, extension_state($node, $db));
}
my $state = state_but_live($src, 'postgres');

# ---------------------------------------------------------------------------
# the dumps

as_app($src, 'postgres', "SELECT mig_start('live_v1')");
ok(poll_true($src, "SELECT batches >= 5 FROM migrations WHERE name = 'live_v1'"),
	'source: live_v1 runs');
my $dir = PostgreSQL::Test::Utils::tempdir;
my $src_conn = $src->connstr('postgres');
command_checks_all([ 'pg_dump', '-Fc', '-f', "$dir/db.dump", '-d', $src_conn ],
	0, [qr/^$/], [qr/^$/], 'pg_dump -Fc, no warning');
command_checks_all([ 'pg_dump', '-Fp', '-f', "$dir/db.sql", '-d', $src_conn ],
	0, [qr/^$/], [qr/^$/], 'pg_dump -Fp, no warning');
is(mig_row($src, 'live_v1', 'status')->{status}, 'running',
	'source: live_v1 was running all through the dumps');

# the dumps hold live_v1 as running, part of the way
for my $dump ([ 'custom', "$dir/db.dump" ], [ 'plain', "$dir/db.sql" ])
{
	my ($format, $file) = @$dump;
	my $sql =
	  $format eq 'plain'
	  ? slurp_file($file)
	  : `pg_restore --data-only --table=migrations -f - $file`;
	my ($cols) = $sql =~ /^COPY \S*migrations \(([^)]*)\) FROM stdin;$/m;
	my @cols = split /, /, $cols // '';
	my ($line) = grep { /\tlive_v1\t/ } split /\n/, $sql;
	my %r;
	@r{@cols} = split /\t/, $line // '';
	ok( ($r{status} // '') eq 'running'
		  && ($r{processed} // 0) > 0
		  && $r{processed} < $rows{t_live},
		"$format dump: live_v1 is running, part of the way (processed "
		  . ($r{processed} // '?') . ')');
}

# ---------------------------------------------------------------------------
# each restore: a new server whose launcher serves database restored

sub restore_and_check
{
	my ($format) = @_;
	my $node = PostgreSQL::Test::Cluster->new("mrtap_dump_$format");
	$node->init;
	$node->append_conf('postgresql.conf',
		    "max_worker_processes = 16\n"
		  . "shared_preload_libraries = 'migration_runner'\n"
		  . "migration_runner.databases = 'restored'\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');
	$node->safe_psql('postgres', 'CREATE DATABASE restored');
	# the launcher connects to restored at start
	$node->restart;
	my $conn = $node->connstr('restored');

	# in one transaction: the launcher sees the migrations only with their
	# tables' rows and indexes (README, "Backup and restore")
	if ($format eq 'custom')
	{
		command_checks_all(
			[
				'pg_restore', '--single-transaction', '--exit-on-error',
				'-d', $conn, "$dir/db.dump"
			],
			0, [qr/^$/], [qr/^$/], "$format: pg_restore, no warning");
	}
	else
	{
		command_checks_all(
			[
				'psql', '-X', '-q', '--single-transaction', '-v', 'ON_ERROR_STOP=1',
				'-o', '/dev/null', '-d', $conn, '-f', "$dir/db.sql"
			],
			0, [qr/^$/], [qr/^$/], "$format: psql -f, no error or warning");
	}

	my $q = sub { return $node->safe_psql('restored', $_[0]) };
	my $a = sub { return as_app($node, 'restored', $_[0]) };

	is(state_but_live($node, 'restored'), $state,
		"$format: every catalog row, the history and the id sequence as dumped");

	# completed stays completed
	# (asked by the owner: mig_has_run counts only the caller's own)
	is($a->("SELECT mig_has_run('done_v1')"), 't',
		"$format: mig_has_run(done_v1) is still true");
	my ($ret, $out, $err) = $node->psql('restored',
		"SELECT mig_start('done_v1')", extra_params => [ '-U', 'app' ]);
	like($err, qr/migration "done_v1" already completed/,
		"$format: mig_start of a completed migration is still refused");

	# new migrations get new ids
	my $new_app = $a->("SELECT mig_start('app_new')");
	cmp_ok($new_app, '>', $max_id,
		"$format: mig_start of a new name gets a new id ($new_app)");
	$q->(q{CREATE TABLE t_new (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
		   INSERT INTO t_new (id) SELECT g FROM generate_series(1, 300) g;
		   ALTER TABLE t_new OWNER TO app});
	my $new_managed = $a->(
		q{SELECT mig_define('new_v1', 't_new',
			'UPDATE t_new SET n = n + 1 WHERE id BETWEEN $1 AND $2', 100)});
	cmp_ok($new_managed, '>', $new_app,
		"$format: mig_define of a new name gets a new id ($new_managed)");

	# the paused one resumes after its cursor; the failed, cancelled and
	# pending ones run to the end
	$a->("SELECT mig_resume('paused_v1')");
	$q->('ALTER TABLE t_failed DROP CONSTRAINT t_failed_450');
	$a->("SELECT mig_start('$_')")
	  for qw(failed_v1 cancelled_v1 pending_v1 new_v1);
	for my $name (qw(live_v1 paused_v1 failed_v1 cancelled_v1 pending_v1 new_v1))
	{
		is($q->("SELECT mig_wait('$name', '${WAIT_SECS}s')"),
			'completed', "$format: $name completes in the restored database");
	}

	my %all = (%rows, t_new => 300);
	for my $t (sort keys %all)
	{
		(my $name = $t) =~ s/^t_(\w+)$/$1_v1/;
		is( $q->(
				"SELECT count(*) FILTER (WHERE n = 1) || '/' || count(*)
				   FROM $t"),
			"$all{$t}/$all{$t}",
			"$format: every row of $t changed exactly once");
		is( $q->(
				"SELECT processed FROM migrations WHERE name = '$name'"),
			$all{$t}, "$format: $name processed = $all{$t}");
	}
	# the resumed run started after the cursor: its batches begin above it,
	# and the batches done before the dump are still in the history
	my $hist = q{FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
				  WHERE m.name = 'paused_v1'};
	cmp_ok(
		$q->("SELECT min(b.first_key[1]::int) $hist AND b.batch > $paused->{batches}"),
		'>', $paused_cursor,
		"$format: paused_v1's resumed run began after its cursor");
	is($q->("SELECT count(*) $hist AND b.batch <= $paused->{batches}"),
		$paused->{batches},
		"$format: paused_v1's batches before the dump are still in the history");

	# the application-driven one goes on where the application left it
	$a->("SELECT mig_update_progress($app_id, 8); SELECT mig_complete($app_id)");
	is($a->("SELECT mig_has_run('app_running') || '/' || processed
			   FROM migrations WHERE id = $app_id"),
		'true/50', "$format: app_running completes with its progress kept");
	is($q->("SELECT status || '/' || error FROM migrations WHERE name = 'app_failed'"),
		'failed/the app gave up', "$format: app_failed keeps its error");

	log_has_no_crash($node, 0, $format);
	$node->stop;
	return;
}

restore_and_check('custom');
restore_and_check('plain');

# the source is untouched by all this: paused, with exactly the rows done
# before the dump changed; together with the copies, no row twice
is(mig_row($src, 'paused_v1', 'status')->{status}, 'paused',
	'source: paused_v1 is still paused');
is( $src->safe_psql(
		'postgres',
		"SELECT count(*) FILTER (WHERE n = 1 AND id <= $paused_cursor) || '/' ||
				count(*) FILTER (WHERE n = 0 AND id > $paused_cursor)
		   FROM t_paused"),
	"$paused_cursor/" . ($rows{t_paused} - $paused_cursor),
	'source: the rows up to the cursor changed once, the others not at all');

is($src->safe_psql('postgres', "SELECT mig_wait('live_v1', '${WAIT_SECS}s')"),
	'completed', 'source: live_v1 completes');
exactly_once_ok($src, 't_live', 'live_v1', $rows{t_live}, 'source: live_v1');

log_has_no_crash($src, 0, 'source');
$src->stop;
done_testing();
