#!/usr/bin/env bash
#
# bench/bookkeeping.sh: what the engine's bookkeeping costs per batch, and
# in which of its statements, under the history settings a run can have.
#
#   bash bench/bookkeeping.sh [--no-build] [--rows N] [--batch N]   (as root)
#
#   --rows N     rows in the users table (default 1000000)
#   --batch N    batch_size (default 1000)
#   --no-build   use the migration_runner already installed
#
# Environment: MR_PG_BINDIR another (relocated) copy of the server to build
# against, install into and run (default /usr/lib/postgresql/15/bin);
# BENCH_CASES (default "keep default none snapshot"); BENCH_KEEP=1 keeps the
# temporary directory.
#
# Every case is one CALL mig_run of run.sh's backfill on a fresh copy of
# run.sh's users table (VACUUM ANALYZE, CHECKPOINT), with
#
#   keep      migration_runner.history_size = 1000000: every batch kept, as
#             run.sh runs (its per-batch figures need all of them)
#   default   history_size = 1000, the extension's default: from batch 1001
#             on, each batch also deletes the history row that falls out
#   none      history_size = 0: no history row at all
#   snapshot  history_size = 1000 while another session holds a snapshot
#             (an open REPEATABLE READ transaction) for the whole run, as a
#             long mig_wait, pg_dump or idle transaction does
#
# For each case it prints the migration's bounds/action/bookkeeping/commit
# split (migrations.*_ms, as in run.sh), and, from pg_stat_statements with
# track = all and track_planning = on, every statement the engine ran per
# batch: calls per batch, microseconds per call (planning + execution),
# plans made, WAL bytes and shared buffers per call.  "outside statements"
# is bookkeeping_ms minus the bookkeeping statements' time: the engine's own
# code, SPI, GUC and snapshot handling between them.  pg_stat_statements adds
# a little to every statement; compare cases within one output.  It prints
# figures only: nothing here passes or fails on time.
#
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TREE="$(cd "$HERE/.." && pwd)"
NAME=bookkeeping.sh
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

BUILD=1
ROWS=1000000
BATCH=1000
while [ $# -gt 0 ]; do
	case "$1" in
		--no-build) BUILD=0 ;;
		--rows) ROWS=${2:?}; shift ;;
		--batch) BATCH=${2:?}; shift ;;
		-h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;/^set -euo/d'; exit 0 ;;
		*) echo "bookkeeping.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
for v in "$ROWS" "$BATCH"; do
	case "$v" in ''|*[!0-9]*) echo "bookkeeping.sh: not a number: '$v'" >&2; exit 2 ;; esac
done
read -r -a CASES <<< "${BENCH_CASES:-keep default none snapshot}"

bench_begin
if [ ! -f "$("$PGBIN/pg_config" --pkglibdir)/pg_stat_statements.so" ]; then
	echo "bookkeeping.sh: pg_stat_statements is not installed in $("$PGBIN/pg_config" --pkglibdir)" >&2
	exit 1
fi
if [ "$BUILD" = 1 ]; then
	say "building this tree"
	build_tree cur tree
	install_build cur
fi
bench_initdb 54332 <<EOF
random_page_cost = 1.1
shared_preload_libraries = 'migration_runner, pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.track_planning = on
pg_stat_statements.max = 5000
EOF
bench_restart
q postgres -c 'CREATE DATABASE bench'
q bench -c 'CREATE EXTENSION migration_runner' -c 'CREATE EXTENSION pg_stat_statements'

say "seeding $ROWS rows"
bench_users_table users_template "$ROWS" bench
q bench -c 'VACUUM ANALYZE users_template'

HOLDER_PID=""
stop_holder() {
	if [ -n "$HOLDER_PID" ]; then
		q bench -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		             WHERE application_name = 'bench_snapshot_holder'" >/dev/null || true
		wait "$HOLDER_PID" 2>/dev/null || true
		HOLDER_PID=""
	fi
}

# A session that takes a snapshot and keeps it until terminated.
start_holder() {
	as_pg env PGAPPNAME=bench_snapshot_holder "${PSQL[@]}" -d bench \
		-c 'BEGIN ISOLATION LEVEL REPEATABLE READ' -c 'SELECT count(*) FROM migrations' \
		-c 'SELECT pg_sleep(86400)' >/dev/null 2>&1 &
	HOLDER_PID=$!
	for _ in $(seq 1 200); do
		[ -n "$(q bench -c "SELECT 1 FROM pg_stat_activity WHERE application_name =
		                      'bench_snapshot_holder' AND backend_xmin IS NOT NULL")" ] && return 0
		sleep 0.05
	done
	echo "bookkeeping.sh: the snapshot holder did not start" >&2
	exit 1
}

# One case: a fresh users table, then CALL mig_run with the case's history
# size, pg_stat_statements reset just before.  Writes $WORK/case.<name>.
run_case() {    # $1 = case
	local c=$1 hist name="bk_$1"
	case "$c" in
		keep) hist=1000000 ;;
		default|snapshot) hist=1000 ;;
		none) hist=0 ;;
		*) echo "bookkeeping.sh: unknown case '$c'" >&2; exit 2 ;;
	esac
	say "case $c: reset"
	q bench <<EOF
DROP TABLE IF EXISTS users;
CREATE TABLE users (LIKE users_template INCLUDING ALL) WITH (autovacuum_enabled = off);
INSERT INTO users SELECT * FROM users_template;
VACUUM ANALYZE users;
CHECKPOINT;
\\o /dev/null
SELECT mig_define('$name', 'users', \$a\$$(bench_action users)\$a\$, batch_size => $BATCH);
EOF
	if [ "$c" = snapshot ]; then start_holder; fi
	say "case $c: run"
	q bench <<EOF
\\o /dev/null
SELECT pg_stat_statements_reset();
SET migration_runner.history_size = $hist;
CALL mig_run('$name');
EOF
	stop_holder
	report_case "$c" "$hist" "$name" > "$WORK/case.$c"
}

report_case() {    # $1 = case, $2 = history size, $3 = migration name
	local m
	m=$(q bench -F ' ' -c "
		SELECT batches, round(extract(epoch FROM completed_at - started_at)::numeric, 2),
			   round((100 * bounds_ms / t)::numeric, 1), round((100 * action_ms / t)::numeric, 1),
			   round((100 * bookkeeping_ms / t)::numeric, 1), round((100 * commit_ms / t)::numeric, 1),
			   round((1000 * bookkeeping_ms / batches)::numeric, 1), status
		  FROM migrations, LATERAL (SELECT bounds_ms + action_ms + bookkeeping_ms + commit_ms AS t) s
		 WHERE name = '$3'")
	local nb wall bo ac bk co bk_us st
	read -r nb wall bo ac bk co bk_us st <<< "$m"
	echo "case $1 (history_size = $2): $nb batches, ${wall} s, $st"
	echo "  bounds $bo %   action $ac %   bookkeeping $bk %   commit $co %   (bookkeeping ${bk_us} us per batch)"
	printf "  %-38s %9s %9s %7s %9s %8s\n" statement "per batch" "us/call" plans "WAL B" buffers
	# the engine's statements, by what they are; the FK check runs inside
	# the history INSERT and is counted there too
	q bench -F $'\t' -c "
		WITH s AS (
			SELECT CASE
				WHEN query LIKE 'SELECT status, ctid FROM %' THEN '1 lock row (FOR NO KEY UPDATE)'
				WHEN query LIKE 'UPDATE %migrations SET processed%' THEN '2 progress UPDATE'
				WHEN query LIKE 'INSERT INTO %migration_batches%' THEN '3 history INSERT (with FK check)'
				WHEN query LIKE '%FOR KEY SHARE OF x%' THEN '4   FK check (inside the INSERT)'
				WHEN query LIKE 'DELETE FROM %migration_batches%' THEN '5 history prune DELETE'
				WHEN query LIKE 'SELECT id FROM ONLY %' THEN '7 (bounds query)'
				WHEN query LIKE 'UPDATE users %' THEN '8 (action)'
				ELSE NULL END AS what,
				   calls, plans, total_exec_time + total_plan_time AS ms, wal_bytes,
				   shared_blks_hit + shared_blks_read AS bufs
			  FROM pg_stat_statements)
		SELECT substr(what, 3), round(sum(calls)::numeric / $nb, 2),
			   round((1000 * sum(ms) / sum(calls))::numeric, 1), sum(plans),
			   round(sum(wal_bytes) / sum(calls)), round(sum(bufs)::numeric / sum(calls), 1)
		  FROM s WHERE what IS NOT NULL GROUP BY what ORDER BY what" |
		awk -F'\t' '{ printf "  %-38s %9s %9s %7s %9s %8s\n", $1, $2, $3, $4, $5, $6 }'
	q bench -c "
		SELECT '  outside statements: ' ||
			   round(((1000 * m.bookkeeping_ms - 1000 * coalesce(sum(p.total_exec_time + p.total_plan_time), 0))
					  / m.batches)::numeric, 1) || ' us per batch'
		  FROM migrations m, pg_stat_statements p
		 WHERE m.name = '$3'
		   AND (p.query LIKE 'SELECT status, ctid FROM %' OR p.query LIKE 'UPDATE %migrations SET processed%'
				OR p.query LIKE 'INSERT INTO %migration_batches%' OR p.query LIKE 'DELETE FROM %migration_batches%')
		 GROUP BY m.bookkeeping_ms, m.batches"
}

for c in "${CASES[@]}"; do
	run_case "$c"
done

{
echo
echo "engine bookkeeping per batch  ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, PostgreSQL $(q postgres -c 'SHOW server_version' | cut -d' ' -f1))"
echo "CALL mig_run, $ROWS rows, batch_size $BATCH, run.sh's settings, pg_stat_statements (track = all) loaded"
for c in "${CASES[@]}"; do
	echo
	cat "$WORK/case.$c"
done
echo
bench_footer
}
