# Citus, the fallback: migrations that run over the whole table's key range
# through the coordinator, as 1.0 did, instead of shard by shard:
#   e. a reference table (create_reference_table);
#   f. a hash-distributed table whose key (a unique index on email, allowed
#      by citus.allow_unsafe_constraints) lacks the distribution column id;
#   g. a hash-distributed table keyed by id, defined while
#      migration_runner.citus_shards is off.
# Each is recorded with per_shard false and the table's distribution, runs
# to completion, changes every row exactly once, and leaves no node-local
# migration on the workers.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;
use CitusTest;

my ($coord, @workers) = citus_cluster_or_skip(tag => 'fb');

my $rows = 2000;

# name, table, how the table is made, define options, expected
# distribution|distribution_column|per_shard, and the NOTICE's reason
my @cases = (
	{
		label  => 'e. reference table',
		name   => 'fb_reference',
		table  => 'users_ref',
		kind   => 'reference',
		define => {},
		expect => 'reference|<null>|false',
		reason => qr/reference table/,
	},
	{
		label  => 'f. key without the distribution column',
		name   => 'fb_email_key',
		table  => 'users_email',
		kind   => 'hash',
		after  => 'SET citus.allow_unsafe_constraints = on; '
		  . 'CREATE UNIQUE INDEX users_email_email ON users_email (email)',
		define => {
			key_columns => q{ARRAY['email']},
			action => 'UPDATE users_email SET n = n + 1, created_at = inserted_at, '
			  . 'updated_at = inserted_at WHERE email BETWEEN $1 AND $2'
		},
		expect => 'hash|id|false',
		reason => qr/key does not contain the distribution column "id"/,
	},
	{
		label  => 'g. citus_shards off at define',
		name   => 'fb_guc_off',
		table  => 'users_off',
		kind   => 'hash',
		define => { setup => 'SET migration_runner.citus_shards = off; ' },
		expect => 'hash|id|false',
		reason => qr/citus_shards is off/,
	});

for my $c (@cases)
{
	citus_users($coord, $rows, table => $c->{table}, kind => $c->{kind});
	$coord->safe_psql('postgres', $c->{after}) if $c->{after};
	my ($id, $notice) = citus_define($coord, $c->{name}, $c->{table},
		batch_size => 150, %{ $c->{define} });
	like($notice, qr/will run over the whole distributed table/,
		"$c->{label}: mig_define says the run goes over the whole table");
	like($notice, $c->{reason}, "$c->{label}: and why");
	my $r = mig_row($coord, $c->{name},
		qw(distribution distribution_column per_shard));
	is("$r->{distribution}|$r->{distribution_column}|$r->{per_shard}",
		$c->{expect}, "$c->{label}: distribution, column and per_shard recorded");

	$coord->safe_psql('postgres', 'SELECT mig_start(' . q_lit($c->{name}) . ')');
	is(citus_wait_status($coord, $c->{name}), 'completed',
		"$c->{label}: the migration completes");
	citus_once_ok($coord, $c->{table}, $c->{name}, $rows, $c->{label});
	is( $coord->safe_psql('postgres',
			'SELECT count(*) FROM migration_slices s JOIN migrations m ON m.id = s.migration_id'
			  . ' WHERE m.name = ' . q_lit($c->{name}) . ' AND s.shard_id IS NOT NULL'),
		'0', "$c->{label}: no per-shard slice");
	for my $w (@workers)
	{
		is(citus_local_migrations($w, $id), '',
			"$c->{label}: no node-local migration on " . $w->name);
	}
}

# the slices' statement was a distributed one: the coordinator's log has
# no crash, nor do the workers'
log_has_no_crash($_, 0, $_->name) for ($coord, @workers);

done_testing();
