# Packaging, the way packagers and PGXN use the tree.
#
# 1. META.json is valid PGXN metadata whose version matches the control
#    file's default_version.
# 2. make dist (from a git clone, MR_GIT_CLONE, which scripts/test.sh makes)
#    produces migration_runner-<version>.zip with the committed tree under
#    one directory; that tree builds, and make install DESTDIR=... puts every
#    file under DESTDIR and nothing into the installation.
# 3. make installcheck EXISTING_SERVER=1 runs pg_regress and the isolation
#    specs against a running server that preloads the library with
#    test/preload.conf's settings, and runs again on the same server.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use Cwd qw(getcwd);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use IO::Uncompress::Unzip qw($UnzipError);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

# prove runs in the source tree (the build copy of scripts/test.sh)
my $src = getcwd();

# the make that runs this test passes its command line (REGRESS=, ...) down
# through the environment: the makes run here are a packager's, not its
delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES)};

sub pg_config_dir
{
	my ($what) = @_;
	my $dir = `pg_config --$what`;
	die "pg_config --$what failed" if $? != 0;
	chomp $dir;
	return $dir;
}

# ---------------------------------------------------------------------------
# 1. META.json

my $meta = decode_json(slurp_file("$src/META.json"));
my ($control_version) =
  slurp_file("$src/migration_runner.control") =~ /^default_version = '([^']+)'/m;
is($meta->{name}, 'migration_runner', 'META.json: name');
is($meta->{version}, "$control_version.0",
	"META.json: version is the control file's default_version $control_version");
is($meta->{provides}{migration_runner}{version}, $meta->{version},
	'META.json: provides migration_runner at the same version');
ok(-f "$src/$meta->{provides}{migration_runner}{file}",
	'META.json: the file it provides exists');
is($meta->{prereqs}{runtime}{requires}{PostgreSQL}, '13.0.0',
	'META.json: requires PostgreSQL 13 or later');
is($meta->{'meta-spec'}{version}, '1.0.0', 'META.json: meta-spec 1.0.0');
like($meta->{license}, qr/^\w+$/, "META.json: license $meta->{license}");
ok(length($meta->{abstract}) > 0 && @{ $meta->{maintainer} } > 0,
	'META.json: abstract and maintainer');

my $version = $meta->{version};
my $tmp = PostgreSQL::Test::Utils::tempdir;

# ---------------------------------------------------------------------------
# 2. make dist, build from the zip, make install DESTDIR

# Unpack a zip under $to; returns the names it held.
sub unzip_to
{
	my ($zip, $to) = @_;
	my @names;
	my $u = IO::Uncompress::Unzip->new($zip) or die "unzip $zip: $UnzipError";
	my $status = 1;
	while ($status > 0)
	{
		my $name = $u->getHeaderInfo()->{Name};
		push @names, $name;
		if ($name !~ m{/$})
		{
			make_path(dirname("$to/$name"));
			open(my $fh, '>', "$to/$name") or die "$to/$name: $!";
			binmode $fh;
			my $buf;
			while (($status = $u->read($buf)) > 0) { print $fh $buf; }
			close $fh;
			die "unzip $name: $UnzipError" if $status < 0;
		}
		$status = $u->nextStream();
	}
	die "unzip: $UnzipError" if $status < 0;
	return @names;
}

my $tree = $src;
SKIP:
{
	skip 'make dist needs a git clone (MR_GIT_CLONE, made by scripts/test.sh '
	  . 'when git and the history are there)', 6
	  unless $ENV{MR_GIT_CLONE} && -d "$ENV{MR_GIT_CLONE}/.git";
	my $clone = $ENV{MR_GIT_CLONE};
	my $zip = "$clone/migration_runner-$version.zip";
	unlink $zip;
	command_ok([ 'make', '-s', '-C', $clone, 'dist', 'PG_CONFIG=pg_config' ],
		'make dist');
	ok(-f $zip, "make dist made migration_runner-$version.zip");
	my @names = unzip_to($zip, "$tmp/unzipped");
	is_deeply([ grep { !m{^migration_runner-\Q$version\E/} } @names ],
		[], "every file of the zip is under migration_runner-$version/");
	my %have = map { $_ => 1 } @names;
	is_deeply(
		[
			grep { !$have{"migration_runner-$version/$_"} }
			  qw(META.json README.md Makefile migration_runner.control
			  sql/migration_runner--1.0.sql sql/migration_runner--1.0--1.1.sql
			  src/migration_runner.c)
		],
		[],
		'the zip holds the metadata, the build files, the scripts and the sources');
	ok(!grep({ m{/\.git/} } @names), 'the zip holds no .git');
	# build what the zip holds (as a packager does), not the test's tree
	$tree = "$tmp/unzipped/migration_runner-$version";
	command_ok([ 'make', '-s', '-C', $tree, '-j2', 'PG_CONFIG=pg_config' ],
		'the tree in the zip builds');
}

my $pkglibdir = pg_config_dir('pkglibdir');
my $sharedir = pg_config_dir('sharedir');
my $installed_so = "$pkglibdir/migration_runner.so";
my @stat_before = stat($installed_so);
my $dest = "$tmp/destdir";
command_ok(
	[ 'make', '-s', '-C', $tree, 'install', "DESTDIR=$dest", 'PG_CONFIG=pg_config' ],
	'make install DESTDIR=...');
my @expected = (
	"$pkglibdir/migration_runner.so",
	map { "$sharedir/extension/$_" } qw(
	  migration_runner.control migration_runner--1.0.sql
	  migration_runner--1.0--1.1.sql migration_runner--1.1.sql));
is_deeply([ grep { !-f "$dest$_" } @expected ],
	[], 'make install DESTDIR put the library and the scripts under DESTDIR');
is(join(',', (stat($installed_so))[ 1, 9 ]),
	join(',', @stat_before[ 1, 9 ]),
	'make install DESTDIR left the installed library alone');

# ---------------------------------------------------------------------------
# 3. make installcheck EXISTING_SERVER=1 against a running server

my $node = PostgreSQL::Test::Cluster->new('mrtap_existing');
$node->init;
$node->append_conf('postgresql.conf', slurp_file("$src/test/preload.conf"));
$node->start;

# a copy of what the suites need, so that results/ stay out of the tree
my $check = "$tmp/check";
make_path("$check/test");
system('cp', '-a', "$src/Makefile", "$src/META.json", "$src/migration_runner.control",
	"$src/sql", "$src/expected", "$src/specs", $check) == 0
  or die 'cp failed';
system('cp', "$src/test/preload.conf", "$check/test/") == 0 or die 'cp failed';
my $n_regress = () = glob("$src/sql/[0-9]*.sql");
my $n_iso = () = glob("$src/specs/*.spec");

sub installcheck
{
	my ($label, @vars) = @_;
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	local $ENV{PGUSER} = 'postgres';
	my ($stdout, $stderr);
	my $ok = IPC::Run::run(
		[
			'make', '-C', $check, 'installcheck', 'EXISTING_SERVER=1',
			'TAP_TESTS=', 'PG_CONFIG=pg_config', @vars
		],
		'>', \$stdout, '2>', \$stderr);
	ok($ok, "$label: exit status 0")
	  or diag("stdout:\n$stdout\nstderr:\n$stderr\n"
		  . (-f "$check/regression.diffs" ? slurp_file("$check/regression.diffs") : ''));
	return $stdout;
}

my $out = installcheck('installcheck against the server');
like($out, qr/All $n_regress tests passed/,
	"pg_regress: all $n_regress files passed on the existing server");
like($out, qr/All $n_iso tests passed/,
	"isolation: all $n_iso specs passed on the existing server");
$out = installcheck('installcheck again on the same server', 'ISOLATION=');
like($out, qr/All $n_regress tests passed/,
	'pg_regress passes again on the same server (its database re-created)');

log_has_no_crash($node, 0, 'existing server');
$node->stop;
done_testing();
