# A cursor written by one process and read back by another with different
# session settings must still name the same key: otherwise the reader
# resumes somewhere else and skips rows or changes some twice.
#
# Release 1.0 kept the cursor (and the high-water mark) as the key type's
# text output under the writer's settings, and read it back with the
# reader's:
#   - timestamptz under TimeZone = 'Asia/Kolkata' is written with the
#     abbreviation IST, which input reads as Israel Standard Time;
#   - date and timestamptz under DateStyle = 'SQL, DMY' are read back as
#     month/day by a process with the default MDY;
#   - float8 under extra_float_digits = 0 loses digits;
#   - interval under IntervalStyle = 'sql_standard' with a negative day and
#     time ("-3 4:00:00", minus 3 days 4 hours) is read back as
#     minus 3 days plus 4 hours;
#   - bytea under bytea_output = 'escape' reads back right, but is not the
#     canonical form.
#
# The cases: the background worker under server-wide settings, killed three
# times mid-run (each new worker reads the cursor); and CALL mig_run under
# session settings, paused mid-run, then resumed and finished by the worker
# under the server's defaults.  Each ends with every row changed exactly
# once.
#
# Separately, each case checks that the stored cursor is canonical: the text
# a session with DateStyle = ISO, TimeZone = UTC, IntervalStyle = postgres,
# extra_float_digits = 3 and bytea_output = hex prints for the last key
# done, whatever the settings of the process that wrote it.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MigTest;

# the server's defaults, spelled out: the worker reads keys with these
my $node = mig_node('mrtap_settings', conf => <<'EOF');
datestyle = 'iso, mdy'
timezone = 'UTC'
intervalstyle = 'postgres'
extra_float_digits = 1
bytea_output = 'hex'
EOF

my $CANONICAL =
    "SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; "
  . "SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; "
  . "SET bytea_output = 'hex';";

# A table keyed by k of $type, filled by $fill (SQL run after $fill_setup
# in the same session), and its migration; returns the row count.
sub setup_case
{
	my ($table, $name, $type, $fill, %o) = @_;
	$node->safe_psql('postgres', qq{
		CREATE TABLE $table (k $type PRIMARY KEY, n int NOT NULL DEFAULT 0);
		} . ($o{fill_setup} // '') . qq{
		INSERT INTO $table (k) $fill;
		ANALYZE $table;
	});
	define_migration($node, $name, $table,
		"UPDATE $table SET n = n + 1 WHERE k BETWEEN \$1 AND \$2",
		batch_size  => $o{batch_size},
		batch_delay => '20ms');
	return $node->safe_psql('postgres', "SELECT count(*) FROM $table");
}

# The canonical-cursor check: in a session with the canonical settings,
# migrations.cursor[1] is the text of the last key done (the largest key
# with n >= 1: batches go in key order; no max() for bytea).  The key is
# qualified in ORDER BY: a bare k would name the text output column.
sub canonical_cursor_ok
{
	my ($table, $name, $label) = @_;
	my $cursor = $node->safe_psql('postgres',
		"$CANONICAL SELECT cursor[1] FROM migrations WHERE name = " . q_lit($name));
	my $last = $node->safe_psql('postgres',
		"$CANONICAL SELECT t.k::text FROM $table t WHERE t.n >= 1 ORDER BY t.k DESC LIMIT 1");
	is($cursor, $last,
		"$label: canonical cursor: migrations.cursor[1] is the last key done "
		  . "as written with DateStyle ISO, TimeZone UTC, IntervalStyle postgres, "
		  . "extra_float_digits 3, bytea_output hex");
	return;
}

# exactly_once_ok, after a note of where the rows stand (for the log)
sub exactly_once_report_ok
{
	my ($table, $name, $rows, $label) = @_;
	my $r = mig_row($node, $name, qw(processed batches cursor high_water));
	note("$label: processed $r->{processed}, batches $r->{batches}, "
		  . "cursor $r->{cursor}, high_water $r->{high_water}; "
		  . counter_counts($node, $table));
	exactly_once_ok($node, $table, $name, $rows, $label);
	return;
}

# --- the worker under DateStyle = 'SQL, DMY', TimeZone = 'Asia/Kolkata' -----
{
	my ($table, $name) = ('s_tz', 'tz_worker_v1');
	my $label = "$name (worker, Asia/Kolkata)";

	$node->safe_psql('postgres', q{
		ALTER SYSTEM SET DateStyle = 'SQL, DMY';
		ALTER SYSTEM SET TimeZone = 'Asia/Kolkata';
		SELECT pg_reload_conf();
	});
	ok( poll_true(
			$node,
			"SELECT current_setting('TimeZone') = 'Asia/Kolkata' "
			  . "AND current_setting('DateStyle') = 'SQL, DMY'"),
		'new sessions run with DateStyle SQL, DMY and TimeZone Asia/Kolkata');

	# one row per minute for three days
	my $rows = setup_case($table, $name, 'timestamptz',
		"SELECT generate_series(timestamptz '2024-03-01 00:00:00+00', "
		  . "timestamptz '2024-03-03 23:59:00+00', interval '1 minute')",
		batch_size => 30);
	is($rows, 4320, "$label: 4320 rows");
	$node->safe_psql('postgres', "SELECT mig_start('$name')");

	my $old = 0;
	for my $k (10, 40, 70)
	{
		ok( poll_true(
				$node,
				"SELECT batches >= $k FROM migrations WHERE name = '$name'"),
			"$label: reached $k batches");
		my $pid = poll_value($node, worker_pid_sql($name) . " AND a.pid <> $old")
		  // 0;
		ok($pid, "$label: a new worker runs it (pid $pid)");
		is(mig_row($node, $name, 'status')->{status},
			'running', "$label: still running at $k batches");
		is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"),
			't', "$label: worker terminated at $k batches");
		ok(wait_pid_gone($node, $pid), "$label: the terminated worker exits");
		$old = $pid;
	}

	is($node->safe_psql('postgres', "SELECT mig_wait('$name', '60s')"),
		'completed', "$label: completed after three new workers");
	exactly_once_report_ok($table, $name, $rows, $label);
	canonical_cursor_ok($table, $name, $label);

	$node->safe_psql('postgres', q{
		ALTER SYSTEM RESET DateStyle;
		ALTER SYSTEM RESET TimeZone;
		SELECT pg_reload_conf();
	});
	ok( poll_true(
			$node,
			"SELECT current_setting('TimeZone') = 'UTC' "
			  . "AND current_setting('DateStyle') = 'ISO, MDY'"),
		'new sessions run with the defaults again');
}

# --- CALL mig_run under session settings, paused, finished by the worker ----
#
# [table, migration, key type, rows (INSERT's query), SQL before it in the
#  same session, the CALL session's settings, batch size, pause after]
#
# Date keys: only days 1 to 12 that differ from the month, so whatever
# batch the pause follows, its last key reads back as another date when
# day and month swap.  Float keys: only values whose 15-digit text form
# reads back lower than the value, so the cursor read back falls before
# the last key done.  Interval keys: a negative day and time part each.
my @call_cases = (
	[ 'd_date', 'date_call_v1', 'date',
		"SELECT d::date FROM generate_series(date '2020-01-01', date '2025-12-31', "
		  . "interval '1 day') d WHERE extract(day FROM d) <= 12 "
		  . "AND extract(day FROM d) <> extract(month FROM d)",
		'', "SET DateStyle = 'SQL, DMY'", 10, 20 ],
	[ 'd_tstz', 'tstz_call_v1', 'timestamptz',
		"SELECT d + h * interval '6 hours' FROM generate_series("
		  . "timestamptz '2024-01-01 00:00:00+00', timestamptz '2025-12-31 00:00:00+00', "
		  . "interval '1 day') d, generate_series(0, 3) h "
		  . "WHERE extract(day FROM d) <= 12 "
		  . "AND extract(day FROM d) <> extract(month FROM d)",
		'', "SET DateStyle = 'SQL, DMY'", 20, 15 ],
	[ 'f_float', 'float_call_v1', 'float8',
		"SELECT k FROM (SELECT i * float8 '0.1' + float8 '1e-9' AS k "
		  . "FROM generate_series(1, 10000) i) s WHERE k::text::float8 < k",
		'SET extra_float_digits = 0;', 'SET extra_float_digits = 0', 40, 10 ],
	[ 'b_bytea', 'bytea_call_v1', 'bytea',
		"SELECT int4send(i * 7919) || '\\x5c80'::bytea FROM generate_series(1, 800) i",
		'', "SET bytea_output = 'escape'", 20, 10 ],
	[ 'i_interval', 'interval_call_v1', 'interval',
		"SELECT make_interval(days => -d, hours => -h) "
		  . "FROM generate_series(1, 40) d, generate_series(1, 23) h",
		'', "SET IntervalStyle = 'sql_standard'", 20, 10 ]);

for my $case (@call_cases)
{
	my ($table, $name, $type, $fill, $fill_setup, $settings, $batch, $pause_at)
	  = @$case;
	my $label = "$name (CALL under $settings)";
	my $rows = setup_case($table, $name, $type, $fill,
		fill_setup => $fill_setup,
		batch_size => $batch);
	cmp_ok($rows, '>', 2 * $batch * $pause_at,
		"$label: $rows rows, the pause comes before the middle");

	my $call = call_start($node, $name, $settings);
	ok( poll_true(
			$node,
			"SELECT batches >= $pause_at FROM migrations WHERE name = '$name'"),
		"$label: reached $pause_at batches");
	$node->safe_psql('postgres', "SELECT mig_pause('$name')");
	my $stderr = call_finish($call);
	like($stderr, qr/NOTICE:  migration "$name" stopped because it is now paused/,
		"$label: CALL mig_run returned with a NOTICE after mig_pause");
	unlike($stderr, qr/ERROR/, "$label: and without an error") or diag($stderr);
	my $r = mig_row($node, $name, qw(status batches cursor));
	is($r->{status}, 'paused', "$label: paused");
	note("$label: paused after $r->{batches} batches, cursor $r->{cursor}");

	canonical_cursor_ok($table, $name, $label);

	$node->safe_psql('postgres', "SELECT mig_resume('$name')");
	is($node->safe_psql('postgres', "SELECT mig_wait('$name', '60s')"),
		'completed', "$label: the worker (server defaults) completes it");
	exactly_once_report_ok($table, $name, $rows, $label);
}

log_has_no_crash($node, 0, 'settings');
$node->stop;
done_testing();
