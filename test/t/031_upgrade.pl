# The real upgrade from release 1.0, done as a DBA does it.
#
# A server runs the library of release 1.0 (built by scripts/test.sh from
# the git history into a copy of the PostgreSQL installation; its bin
# directory is MR_PG10_BINDIR).  CREATE EXTENSION ... VERSION '1.0' and
# migrations in every state, with cursors of several key types: pending,
# running (held by the test in the middle of a run when the server stops),
# paused, completed, failed, cancelled and application-driven.  Then:
# install this build's library and scripts into that installation (while
# the server runs, as a package does: until the restart it keeps the old
# library, and ALTER EXTENSION UPDATE fails, changing nothing), restart the
# server.  Until ALTER EXTENSION UPDATE the functions refuse with a message
# that says to run it, and the launcher starts nothing and changes nothing.  After the update every migration behaves as before: the
# running one resumes by itself and changes every row exactly once, the
# others resume, complete or refuse as their state says.
#
# The same test compares the upgraded schema with a fresh 1.1 install in
# another database through the catalog (columns, constraints, indexes,
# triggers, functions, privileges, views, sequences, comments, extconfig):
# whatever the upgrade script gains later, the two must stay equal.
#
# By hand: build release 1.0 into a copy of the server as scripts/test.sh
# does (prepare_release_10) and set MR_PG10_BINDIR to its bin directory.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use File::Basename qw(dirname);
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

my $bin10 = $ENV{MR_PG10_BINDIR} // '';
if ($bin10 eq '' || !-x "$bin10/pg_config")
{
	plan skip_all => 'release 1.0 is not available: '
	  . ($ENV{MR_PG10_UNAVAILABLE}
		  // 'MR_PG10_BINDIR is not set (scripts/test.sh builds release 1.0 '
		  . 'from the git history and sets it)');
}

# ---------------------------------------------------------------------------
# a private copy of the 1.0 installation: the test installs the new library
# into it, as a DBA installs a new package over the old one

sub pg_config_dir
{
	my ($pg_config, $what) = @_;
	my $dir = `$pg_config --$what`;
	die "$pg_config --$what failed" if $? != 0;
	chomp $dir;
	return $dir;
}

# the longest common directory of some paths
sub common_dir
{
	my @parts = map { [ split m{/}, $_ ] } @_;
	my @common;
	for (my $i = 0;; $i++)
	{
		my $p = $parts[0][$i];
		last if !defined $p || grep { !defined $_->[$i] || $_->[$i] ne $p } @parts;
		push @common, $p;
	}
	return join('/', @common);
}

my %dir10 = map { $_ => pg_config_dir("$bin10/pg_config", $_) }
  qw(bindir pkglibdir sharedir);
my $prefix10 = common_dir(values %dir10);
my $copy = PostgreSQL::Test::Utils::tempdir . '/pg10';
for my $d (dirname($dir10{bindir}), $dir10{sharedir}, $dir10{pkglibdir})
{
	my $to = $copy . substr($d, length $prefix10);
	next if -d $to;
	make_path(dirname($to));
	system('cp', '-a', $d, $to) == 0 or die "cp -a $d $to failed";
}
my $inst = $copy . substr(dirname($dir10{bindir}), length $prefix10);
my %dir = map { $_ => pg_config_dir("$inst/bin/pg_config", $_) }
  qw(pkglibdir sharedir);
like($dir{pkglibdir}, qr/^\Q$copy\E/, 'the copy of the 1.0 installation finds its own library directory');

# this build's installation (scripts/test.sh put it first on PATH)
my %new = map { $_ => pg_config_dir('pg_config', $_) } qw(pkglibdir sharedir);

# ---------------------------------------------------------------------------
# release 1.0: migrations in every state

my $node = PostgreSQL::Test::Cluster->new('mrtap_upgrade', install_path => $inst);
$node->init;
# a server time zone other than UTC: 1.0 wrote timestamptz cursors in it,
# and the upgrade turns them into 1.1's canonical form
$node->append_conf('postgresql.conf', qq{
max_worker_processes = 16
log_min_messages = debug1
shared_preload_libraries = 'migration_runner'
migration_runner.databases = 'postgres'
migration_runner.max_workers = 4
migration_runner.poll_interval = '200ms'
timezone = 'America/New_York'
});
$node->start;
$node->safe_psql('postgres', "CREATE EXTENSION migration_runner VERSION '1.0'");
is($node->safe_psql('postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'migration_runner'"),
	'1.0', 'release 1.0 installed');

my %rows = (
	t_run    => 20000,
	t_ts     => 3000,
	t_text   => 2000,
	t_pair   => 3000,
	t_done   => 500,
	t_pend   => 400);
$node->safe_psql('postgres', qq{
	CREATE TABLE t_run (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
	INSERT INTO t_run (id) SELECT g FROM generate_series(1, $rows{t_run}) g;
	-- a timestamptz key that crosses a daylight saving change of the zone
	CREATE TABLE t_ts (ts timestamptz PRIMARY KEY, n int NOT NULL DEFAULT 0);
	INSERT INTO t_ts (ts) SELECT timestamptz '2024-03-09 00:00:00+00' + g * interval '37 minutes'
	  FROM generate_series(1, $rows{t_ts}) g;
	CREATE TABLE t_text (k text PRIMARY KEY, n int NOT NULL DEFAULT 0,
	  CONSTRAINT t_text_450 CHECK (k <> 'key-00450' OR n = 0));
	INSERT INTO t_text (k) SELECT 'key-' || lpad(g::text, 5, '0')
	  FROM generate_series(1, $rows{t_text}) g;
	CREATE TABLE t_pair (region text, id bigint, n int NOT NULL DEFAULT 0,
	  PRIMARY KEY (region, id));
	INSERT INTO t_pair (region, id) SELECT r, g
	  FROM unnest(ARRAY['eu', 'us', 'ap']) r, generate_series(1, $rows{t_pair} / 3) g;
	CREATE TABLE t_done (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
	INSERT INTO t_done (id) SELECT g FROM generate_series(1, $rows{t_done}) g;
	CREATE TABLE t_pend (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
	INSERT INTO t_pend (id) SELECT g FROM generate_series(1, $rows{t_pend}) g;
	ANALYZE;
});

my %mig = (
	running_v1   => 't_run',
	paused_v1    => 't_ts',
	failed_v1    => 't_text',
	cancelled_v1 => 't_pair',
	completed_v1 => 't_done',
	pending_v1   => 't_pend');
my $slow =
  q{WITH s AS (SELECT pg_sleep(0.01)) UPDATE %s SET n = n + 1 FROM s WHERE %s};
my %where = (
	t_run  => 'id BETWEEN $1 AND $2',
	t_ts   => 'ts BETWEEN $1 AND $2',
	t_text => 'k BETWEEN $1 AND $2',
	t_pair => '(region, id) BETWEEN ($1, $2) AND ($3, $4)',
	t_done => 'id BETWEEN $1 AND $2',
	t_pend => 'id BETWEEN $1 AND $2');
for my $name (sort keys %mig)
{
	my $t = $mig{$name};
	my $action =
	  $name =~ /^(paused|cancelled)/
	  ? sprintf($slow, $t, $where{$t})
	  : "UPDATE $t SET n = n + 1 WHERE $where{$t}";
	my $opts = {
		running_v1   => q{batch_size => 100, lock_timeout => '5min', statement_timeout => '5min'},
		paused_v1    => q{batch_size => 50, batch_delay => '20ms'},
		cancelled_v1 => q{batch_size => 50, batch_delay => '20ms'},
	  }->{$name}
	  // 'batch_size => 100';
	$node->safe_psql('postgres',
		"SELECT mig_define('$name', '$t', " . q_lit($action) . ", $opts)");
}

sub runners_gone
{
	return poll_true($node, q{SELECT count(*) = 0 FROM pg_stat_activity
							  WHERE backend_type = 'migration_runner worker'});
}

# completed, failed (in the batch holding key-00450)
$node->safe_psql('postgres', "SELECT mig_start('completed_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('completed_v1', '${WAIT_SECS}s')"),
	'completed', '1.0: completed_v1 completed');
$node->safe_psql('postgres', "SELECT mig_start('failed_v1')");
is($node->safe_psql('postgres', "SELECT mig_wait('failed_v1', '${WAIT_SECS}s')"),
	'failed', '1.0: failed_v1 failed');

# paused and cancelled in the middle of their runs
for my $p ([ 'paused_v1', 'mig_pause' ], [ 'cancelled_v1', 'mig_cancel' ])
{
	my ($name, $fn) = @$p;
	$node->safe_psql('postgres', "SELECT mig_start('$name')");
	ok( poll_true(
			$node, "SELECT batches >= 3 FROM migrations WHERE name = '$name'"),
		"1.0: $name ran 3 batches");
	$node->safe_psql('postgres', "SELECT $fn('$name')");
	ok(runners_gone(), "1.0: $name stopped");
}

# application-driven
my $app_id = $node->safe_psql('postgres', "SELECT mig_start('app_running')");
$node->safe_psql('postgres', "SELECT mig_update_progress($app_id, 42)");
my $id = $node->safe_psql('postgres', "SELECT mig_start('app_done')");
$node->safe_psql('postgres', "SELECT mig_complete($id)");
$id = $node->safe_psql('postgres', "SELECT mig_start('app_failed')");
$node->safe_psql('postgres', "SELECT mig_fail($id, 'the app gave up')");

# ---------------------------------------------------------------------------
# the DBA installs the new library and scripts, as a package does, while
# the server runs

# Copy $from to directory $to under a new name and rename it into place, as
# make install and package managers do: the running server's mapped
# library is never written to.
sub install_file
{
	my ($from, $to) = @_;
	(my $base = $from) =~ s{.*/}{};
	system('cp', '-a', $from, "$to/.$base.new") == 0 or die "cp $from failed";
	system('rm', '-rf', "$to/$base") == 0 or die "rm $to/$base failed";
	rename("$to/.$base.new", "$to/$base") or die "rename to $to/$base: $!";
	return;
}

install_file($_, "$dir{sharedir}/extension")
  for glob("$new{sharedir}/extension/migration_runner*");
install_file("$new{pkglibdir}/migration_runner.so", $dir{pkglibdir});
# the JIT's bitcode of the library, when there is some
install_file($_, "$dir{pkglibdir}/bitcode")
  for grep { -e $_ } map { "$new{pkglibdir}/bitcode/$_" }
  qw(migration_runner migration_runner.index.bc);

# until the restart the server goes on with the library it loaded at start:
# sessions work as before (and the worker started below is 1.0's too), and
# the update cannot run (its script needs the new library) and changes
# nothing.  (Done while no batch is open: the update alters the catalog
# tables, so it would first wait for the batch.)
is($node->safe_psql('postgres', "SELECT mig_has_run('completed_v1')"),
	't', 'new files installed, not restarted: a new session still works with 1.0');
my $state_installed = catalog_state();
my ($ret, $out, $err) =
  $node->psql('postgres', 'ALTER EXTENSION migration_runner UPDATE');
like($err, qr/could not find function "mr_canonical_keys"/,
	'new files installed, not restarted: ALTER EXTENSION UPDATE fails');
is($node->safe_psql('postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'migration_runner'"),
	'1.0', '... and leaves the extension at 1.0');
is(catalog_state(), $state_installed, '... and the catalog as it was');

# running (by a worker of the library the server loaded at start, 1.0's):
# the test holds a row of the 51st batch, so the worker is inside that
# batch, 50 batches done, when the server stops
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN; SELECT 1 FROM t_run WHERE id = 5001 FOR UPDATE');
$node->safe_psql('postgres', "SELECT mig_start('running_v1')");
ok( poll_true(
		$node, q{SELECT count(*) = 1 FROM pg_stat_activity
				  WHERE backend_type = 'migration_runner worker'
					AND wait_event_type = 'Lock'}),
	'1.0: running_v1 waits for the held row in its 51st batch');
is_deeply(
	mig_row($node, 'running_v1', qw(status cursor batches processed)),
	{ status => 'running', cursor => '{5000}', batches => 50, processed => 5000 },
	'1.0: running_v1 is running with 50 batches committed');

is( $node->safe_psql(
		'postgres', "SELECT string_agg(name || '=' || status, ' ' ORDER BY name)
					   FROM migrations"),
	'app_done=completed app_failed=failed app_running=running '
	  . 'cancelled_v1=cancelled completed_v1=completed failed_v1=failed '
	  . 'paused_v1=paused pending_v1=pending running_v1=running',
	'1.0: one migration in each state');

my %before;
for my $name (qw(paused_v1 cancelled_v1 failed_v1))
{
	$before{$name} = mig_row($node, $name, qw(cursor batches processed));
}
like($before{paused_v1}{cursor}, qr/-0[45]"?\}$/,
	'1.0: the timestamptz cursor is in the text form of the server\'s zone');
is($before{failed_v1}{cursor}, '{key-00400}', '1.0: failed_v1 stopped after key-00400');
cmp_ok($before{paused_v1}{processed}, '<', $rows{t_ts}, '1.0: paused_v1 stopped before the end');
cmp_ok($before{cancelled_v1}{processed}, '<', $rows{t_pair}, '1.0: cancelled_v1 stopped before the end');
my $max_id = $node->safe_psql('postgres', 'SELECT max(id) FROM migrations');

# what the catalog holds, but for worker_pid, which only says which process
# runs a migration right now
sub catalog_state
{
	return extension_state($node, 'postgres', 'worker_pid');
}

my $state10 = catalog_state();

# ---------------------------------------------------------------------------
# the restart

$node->stop('fast');
$holder->quit;
my $log_offset = -s $node->logfile;
$node->start;

# ---------------------------------------------------------------------------
# the new library, the 1.0 catalog

is($node->safe_psql('postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'migration_runner'"),
	'1.0', 'new library loaded, the database still has the 1.0 catalog');
is( $node->safe_psql(
		'postgres', q{SELECT default_version FROM pg_available_extensions
					  WHERE name = 'migration_runner'}),
	'1.1', 'the new scripts are installed (default version 1.1)');

for my $sql (
	"SELECT mig_start('pending_v1')",
	"SELECT mig_start('brand_new')",
	"SELECT mig_has_run('completed_v1')",
	"SELECT mig_resume('paused_v1')",
	"SELECT mig_update_progress($app_id, 1)",
	"CALL mig_run('running_v1')")
{
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	ok( $ret != 0
		  && $err =~ /ERROR:  extension "migration_runner" must be updated to version 1\.1/
		  && $err =~ /HINT:  Run ALTER EXTENSION migration_runner UPDATE\./,
		"before the update, $sql refuses and says to update the extension")
	  or diag("exit $ret, stderr: $err");
}
# the 1.0 view is plain SQL over the 1.0 catalog: it still reads
is( $node->safe_psql(
		'postgres', "SELECT status || '/' || processed FROM mig_status
					 WHERE name = 'running_v1'"),
	'running/5000', 'before the update, mig_status still shows the 1.0 catalog');

# the launcher looks for work at least twice (poll_interval 200 ms), and
# starts nothing
my $launcher_sql = q{SELECT query_start FROM pg_stat_activity
					  WHERE backend_type = 'migration_runner launcher'};
ok(defined poll_value($node, $launcher_sql), 'the new launcher runs');
for my $round (1, 2)
{
	my $t = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
	ok( poll_true(
			$node, qq{SELECT query_start > '$t' AND state = 'idle'
					   FROM pg_stat_activity
					  WHERE backend_type = 'migration_runner launcher'}),
		"the launcher looked for running migrations again ($round)");
}
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM pg_stat_activity
					  WHERE backend_type = 'migration_runner worker'}),
	'0', 'before the update, no worker runs');
unlike(
	slurp_file($node->logfile, $log_offset),
	qr/starting background worker process "migration_runner worker/,
	'before the update, no worker was started');
is(catalog_state(), $state10,
	'before the update, the catalog is exactly as 1.0 left it (worker_pid aside)');

# ---------------------------------------------------------------------------
# ALTER EXTENSION UPDATE

$node->safe_psql('postgres', 'ALTER EXTENSION migration_runner UPDATE');
is($node->safe_psql('postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'migration_runner'"),
	'1.1', 'ALTER EXTENSION migration_runner UPDATE: now 1.1');

# the running migration resumes by itself, after key 5000
is($node->safe_psql('postgres', "SELECT mig_wait('running_v1', '${WAIT_SECS}s')"),
	'completed', 'running_v1 resumes after the update and completes');

# the others as their state says
is($node->safe_psql('postgres', "SELECT mig_has_run('completed_v1')"),
	't', 'completed_v1: mig_has_run is true');
($ret, $out, $err) = $node->psql('postgres', "SELECT mig_start('completed_v1')");
like($err, qr/migration "completed_v1" already completed/,
	'completed_v1: mig_start is refused');
$node->safe_psql('postgres', "SELECT mig_resume('paused_v1')");
$node->safe_psql('postgres', 'ALTER TABLE t_text DROP CONSTRAINT t_text_450');
$node->safe_psql('postgres', "SELECT mig_start('$_')")
  for qw(failed_v1 cancelled_v1 pending_v1);
for my $name (qw(paused_v1 failed_v1 cancelled_v1 pending_v1))
{
	is($node->safe_psql('postgres', "SELECT mig_wait('$name', '${WAIT_SECS}s')"),
		'completed', "$name completes after the update");
}

for my $name (sort keys %mig)
{
	my $t = $mig{$name};
	is( $node->safe_psql(
			'postgres', "SELECT count(*) FILTER (WHERE n = 1) || '/' || count(*) FROM $t"),
		"$rows{$t}/$rows{$t}",
		"$name: every row of $t changed exactly once");
	is(mig_row($node, $name, 'processed')->{processed},
		$rows{$t}, "$name: processed = $rows{$t}");
}

# the resumed runs began at the first key after their 1.0 cursors: the
# cursors were converted, not lost or shifted
my %key_type = (running_v1 => 'bigint', paused_v1 => 'timestamptz',
	failed_v1 => 'text');
for my $name (sort keys %key_type)
{
	my $kt = $key_type{$name};
	my ($col) = $where{ $mig{$name} } =~ /^(\w+)/;
	my $old =
	  $name eq 'running_v1' ? { cursor => '{5000}', batches => 50 } : $before{$name};
	my ($cursor) = $old->{cursor} =~ /^\{"?(.*?)"?\}$/;
	is( $node->safe_psql(
			'postgres', qq{
		SELECT (SELECT b.first_key[1]::$kt FROM migration_batches b
				  JOIN migrations m ON m.id = b.migration_id
				 WHERE m.name = '$name' AND b.batch = $old->{batches} + 1)
			 = (SELECT min($col) FROM $mig{$name} WHERE $col > '$cursor'::$kt)}),
		't',
		"$name ($kt key): the first batch after the update began at the key after the 1.0 cursor");
}
is( $node->safe_psql(
		'postgres', q{SELECT cursor[1] FROM migrations WHERE name = 'paused_v1'}),
	$node->safe_psql(
		'postgres', q{SET TimeZone = 'UTC'; SELECT max(ts)::text FROM t_ts}),
	'paused_v1 ends with its cursor in the canonical (UTC) form');

# application-driven ones
$node->safe_psql('postgres',
	"SELECT mig_update_progress($app_id, 8); SELECT mig_complete($app_id)");
is( $node->safe_psql(
		'postgres', "SELECT mig_has_run('app_running') || '/' || processed
					   FROM migrations WHERE id = $app_id"),
	'true/50', 'app_running completes with its progress kept');
is( $node->safe_psql(
		'postgres', "SELECT status || '/' || error FROM migrations WHERE name = 'app_failed'"),
	'failed/the app gave up', 'app_failed keeps its error');
is($node->safe_psql('postgres', "SELECT mig_has_run('app_done')"),
	't', 'app_done stays completed');

# new migrations
my $new_id = $node->safe_psql('postgres', "SELECT mig_start('app_new')");
cmp_ok($new_id, '>', $max_id, "a new migration gets a new id ($new_id)");
$node->safe_psql('postgres', q{
	CREATE TABLE t_new (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
	INSERT INTO t_new (id) SELECT g FROM generate_series(1, 300) g;
	SELECT mig_define('new_v1', 't_new', 'UPDATE t_new SET n = n + 1 WHERE id BETWEEN $1 AND $2', 100);
	SELECT mig_start('new_v1');
});
is($node->safe_psql('postgres', "SELECT mig_wait('new_v1', '${WAIT_SECS}s')"),
	'completed', 'a migration defined after the update runs');

# ---------------------------------------------------------------------------
# the upgraded schema against a fresh 1.1 install

# Lines describing the extension's objects in $db, through the catalog, one
# line per object.  Nothing depends on OIDs, column positions or the order
# of ACL items.
sub schema_lines
{
	my ($db) = @_;
	my $sql = q{
WITH ext AS (
	SELECT oid FROM pg_extension WHERE extname = 'migration_runner'),
member AS (
	SELECT d.classid, d.objid, d.objsubid FROM pg_depend d, ext
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid
	   AND d.deptype = 'e'),
tbl AS (
	SELECT c.oid FROM pg_class c JOIN member m
	    ON m.classid = 'pg_class'::regclass AND m.objid = c.oid),
rel AS (
	-- member relations, their indexes, and the sequences they own
	SELECT oid FROM tbl
	UNION SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT oid FROM tbl)
	UNION SELECT d.objid FROM pg_depend d
	 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
	   AND d.refobjid IN (SELECT oid FROM tbl) AND d.deptype IN ('a', 'i')
	   AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S')
SELECT 'member ' || pg_describe_object(classid, objid, objsubid) FROM member
UNION ALL
SELECT format('relation %s kind %s persistence %s options %s rls %s/%s owner %s acl %s comment %s',
			  c.relname, c.relkind, c.relpersistence, c.reloptions,
			  c.relrowsecurity, c.relforcerowsecurity, c.relowner::regrole,
			  (SELECT string_agg(a::text, ',' ORDER BY a::text)
				 FROM unnest(coalesce(c.relacl, acldefault(
					CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a),
			  obj_description(c.oid, 'pg_class'))
  FROM pg_class c WHERE c.oid IN (SELECT oid FROM rel)
UNION ALL
SELECT format('column %s.%s type %s not null %s default %s identity %s generated %s collation %s acl %s comment %s',
			  c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
			  a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid), a.attidentity,
			  a.attgenerated, a.attcollation::regcollation,
			  (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a.attacl) x),
			  col_description(c.oid, a.attnum))
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 WHERE c.oid IN (SELECT oid FROM rel) AND c.relkind <> 'S'
UNION ALL
SELECT format('constraint %s on %s: %s', co.conname, co.conrelid::regclass,
			  pg_get_constraintdef(co.oid))
  FROM pg_constraint co WHERE co.conrelid IN (SELECT oid FROM rel)
UNION ALL
SELECT format('index %s', pg_get_indexdef(i.indexrelid))
  FROM pg_index i WHERE i.indrelid IN (SELECT oid FROM rel)
UNION ALL
SELECT format('trigger %s', pg_get_triggerdef(t.oid))
  FROM pg_trigger t WHERE t.tgrelid IN (SELECT oid FROM rel) AND NOT t.tgisinternal
UNION ALL
SELECT format('policy %s on %s: %s %s using %s check %s', p.polname, p.polrelid::regclass,
			  p.polcmd, p.polroles::regrole[], pg_get_expr(p.polqual, p.polrelid),
			  pg_get_expr(p.polwithcheck, p.polrelid))
  FROM pg_policy p WHERE p.polrelid IN (SELECT oid FROM rel)
UNION ALL
SELECT format('view %s: %s', c.relname,
			  regexp_replace(pg_get_viewdef(c.oid, true), '\s+', ' ', 'g'))
  FROM pg_class c WHERE c.oid IN (SELECT oid FROM rel) AND c.relkind IN ('v', 'm')
UNION ALL
SELECT format('sequence %s type %s start %s increment %s min %s max %s cache %s cycle %s',
			  s.seqrelid::regclass, s.seqtypid::regtype, s.seqstart, s.seqincrement,
			  s.seqmin, s.seqmax, s.seqcache, s.seqcycle)
  FROM pg_sequence s WHERE s.seqrelid IN (SELECT oid FROM rel)
UNION ALL
SELECT format('function %s(%s) returns %s kind %s volatility %s strict %s security definer %s '
			  'parallel %s leakproof %s cost %s rows %s config %s language %s source %s '
			  'library %s owner %s acl %s comment %s',
			  p.proname, pg_get_function_arguments(p.oid),
			  coalesce(pg_get_function_result(p.oid), '-'), p.prokind, p.provolatile,
			  p.proisstrict, p.prosecdef, p.proparallel, p.proleakproof, p.procost,
			  p.prorows, p.proconfig, l.lanname, p.prosrc, p.probin, p.proowner::regrole,
			  (SELECT string_agg(a::text, ',' ORDER BY a::text)
				 FROM unnest(coalesce(p.proacl, acldefault('f', p.proowner))) a),
			  obj_description(p.oid, 'pg_proc'))
  FROM pg_proc p JOIN member m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
  JOIN pg_language l ON l.oid = p.prolang
UNION ALL
SELECT format('type %s: %s', t.oid::regtype, t.typtype)
  FROM pg_type t JOIN member m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
UNION ALL
SELECT format('extension schema %s owner %s relocatable %s config %s condition %s',
			  e.extnamespace::regnamespace, e.extowner::regrole, e.extrelocatable,
			  (SELECT string_agg(format('%s[%s]', x.c::regclass, x.cond), ', ' ORDER BY x.c::regclass::text)
				 FROM unnest(e.extconfig, e.extcondition) AS x(c, cond)),
			  cardinality(e.extconfig))
  FROM pg_extension e JOIN ext ON ext.oid = e.oid
ORDER BY 1};
	return split /\n/, $node->safe_psql($db, $sql);
}

# the differences between two schemas, as text ('' when equal)
sub schema_diff
{
	my ($a, $b, $a_name, $b_name) = @_;
	my (%a, %b);
	@a{@$a} = ();
	@b{@$b} = ();
	my @only_a = grep { !exists $b{$_} } @$a;
	my @only_b = grep { !exists $a{$_} } @$b;
	my $diff = '';
	$diff .= "only in $a_name:\n" . join('', map { "  $_\n" } @only_a) if @only_a;
	$diff .= "only in $b_name:\n" . join('', map { "  $_\n" } @only_b) if @only_b;
	return $diff;
}

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION migration_runner');
my @upgraded = schema_lines('postgres');
my @fresh = schema_lines('fresh');
my $diff = schema_diff(\@upgraded, \@fresh, 'the upgraded 1.0', 'a fresh 1.1');
is($diff, '', 'the upgraded schema equals a fresh 1.1 install')
  or diag($diff);

# the comparison sees what it must: each kind of object is there ...
for my $kind ('member', 'relation', 'column', 'constraint', 'index',
	'view', 'sequence', 'function', 'extension')
{
	cmp_ok(scalar(grep { /^\Q$kind\E / } @fresh), '>', 0,
		"the schema comparison covers ${kind}s");
}
# ... and a change of a default, a privilege, a volatility or a view is a
# difference it reports
$node->safe_psql('postgres', 'CREATE DATABASE tampered');
$node->safe_psql('tampered', q{
	CREATE EXTENSION migration_runner;
	ALTER TABLE migrations ALTER COLUMN processed SET DEFAULT 1;
	REVOKE SELECT ON migration_batches FROM PUBLIC;
	ALTER FUNCTION mig_has_run(text) VOLATILE;
	DO $$ BEGIN
		EXECUTE 'CREATE OR REPLACE VIEW mig_status AS '
			 || rtrim(pg_get_viewdef('mig_status'), '; ') || ' LIMIT 1000';
	END $$;
});
my @tampered = schema_lines('tampered');
my $tdiff = schema_diff(\@tampered, \@fresh, 'tampered', 'fresh');
my @changed = sort map { /^  (\w+ [\w.]+)/ ? $1 : () } split /\n/, $tdiff;
is_deeply(
	\@changed,
	[
		'column migrations.processed', 'column migrations.processed',
		'function mig_has_run',        'function mig_has_run',
		'relation migration_batches',  'relation migration_batches',
		'view mig_status',             'view mig_status'
	],
	'the schema comparison reports a changed default, privilege, volatility and view'
) or diag($tdiff);

log_has_no_crash($node, 0, 'upgrade');
$node->stop;
done_testing();
