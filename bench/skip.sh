#!/usr/bin/env bash
#
# bench/skip.sh: what on_error => 'skip' costs.  The seed's backfill, with
# one more column to fill from text (n = raw::int), on a users table in
# which some rows hold text that is not a number (the poison keys, spread
# evenly over the keys).  Timed side by side, in one run:
#
#   one_UPDATE       one UPDATE of the table without poison rows
#   clean_fail       CALL mig_run, on_error 'fail', no poison row
#   clean_skip       CALL mig_run, on_error 'skip', no poison row
#   skip_P           CALL mig_run, on_error 'skip', P poison rows
#
# Each poison key costs the batch it is in a bisection: about 2 log2(batch)
# failed and narrowed attempts, each its own transaction.
#
#   bash bench/skip.sh [--rows N] [--batch N] [--poison "10 100 1000"]
#                      [--rounds N]   (as root)
#
# Every run is checked: each good row changed once, exactly the poison keys
# skipped.  Prints figures only: nothing passes or fails on time.
#
set -euo pipefail

TREE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=skip.sh
# shellcheck source=bench/lib.sh
source "$TREE/bench/lib.sh"

ROWS=1000000
BATCH=1000
POISON="10 100 1000"
ROUNDS=1
while [ $# -gt 0 ]; do
	case "$1" in
		--rows) ROWS=$2; shift 2 ;;
		--batch) BATCH=$2; shift 2 ;;
		--poison) POISON=$2; shift 2 ;;
		--rounds) ROUNDS=$2; shift 2 ;;
		*) echo "skip.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
done

bench_begin
build_tree cur tree
install_build cur
bench_initdb 54337 </dev/null
bench_restart
q postgres -c 'CREATE DATABASE bench'
q bench -c 'CREATE EXTENSION migration_runner'
bench_users_table users_t "$ROWS" bench
q bench <<'EOF'
ALTER TABLE users_t ADD COLUMN raw text, ADD COLUMN n int;
UPDATE users_t SET raw = id::text;
VACUUM ANALYZE users_t;
CREATE UNLOGGED TABLE bench_results (method text, secs numeric);
EOF

# the table with P poison keys, evenly spread: id = k * (ROWS / P)
reset_table() {    # $1 = poison rows
	bench_reset_sql users users_t | q bench
	if [ "$1" -gt 0 ]; then
		q bench -c "UPDATE users SET raw = 'poison' WHERE id % ($ROWS / $1) = 0"
		q bench -c 'VACUUM ANALYZE users'
	fi
}

ACTION='UPDATE users SET created_at = inserted_at, n = raw::int WHERE id BETWEEN $1 AND $2'

# run method $1 (one_UPDATE, clean_fail, clean_skip, skip_P) once and check it
run_method() {
	local m=$1 poison=0 on_error=skip t0 t1 bad
	case "$m" in
		skip_*) poison=${m#skip_} ;;
		clean_fail) on_error=fail ;;
	esac
	reset_table "$poison"
	q bench -c "SELECT mig_drop(name) FROM migrations" >/dev/null
	q bench -c "SELECT mig_define('m', 'users', \$a\$$ACTION\$a\$, batch_size => $BATCH,
				on_error => '$on_error', max_skipped => $(( poison + 1 )))" >/dev/null
	t0=$(date +%s.%N)
	if [ "$m" = one_UPDATE ]; then
		q bench -c 'UPDATE users SET created_at = inserted_at, n = raw::int'
	else
		q bench -c "SET synchronous_commit = off" -c "CALL mig_run('m')"
	fi
	t1=$(date +%s.%N)
	bad=$(q bench <<EOF
SELECT (SELECT count(*) FROM users WHERE raw <> 'poison' AND n IS DISTINCT FROM id)
	 + (SELECT count(*) FROM users WHERE raw = 'poison' AND n IS NOT NULL)
	 + abs((SELECT count(*) FROM users WHERE raw = 'poison')
		   - CASE WHEN '$m' = 'one_UPDATE' THEN 0
				  ELSE (SELECT count(*) FROM migration_skipped) END)
	 + abs($poison - (SELECT count(*) FROM users WHERE raw = 'poison'))
EOF
)
	[ "$bad" = 0 ] || { echo "skip.sh: $m: $bad rows or keys wrong" >&2; exit 1; }
	q bench -c "INSERT INTO bench_results VALUES ('$m', $t1 - $t0)"
	say "$m $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')s OK"
}

METHODS="one_UPDATE clean_fail clean_skip"
for p in $POISON; do METHODS="$METHODS skip_$p"; done
for round in $(seq 1 "$ROUNDS"); do
	for m in $METHODS; do
		run_method "$m"
	done
done

echo
echo "skip  ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $ROWS rows, batch $BATCH, $ROUNDS round(s), CALL mig_run, synchronous_commit off)"
q bench -F ' ' <<'EOF' | awk '{ printf "  %-14s %8s s  %-18s %s\n", $1, $2, $3, $4 }'
WITH r AS (SELECT method, percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) AS secs
			 FROM bench_results GROUP BY method)
SELECT r.method, round(r.secs::numeric, 2),
	   round((u.secs / r.secs)::numeric, 2) || 'x_vs_UPDATE',
	   round((r.secs / c.secs)::numeric, 2) || 'x_the_time_of_clean_fail'
  FROM r, r u, r c WHERE u.method = 'one_UPDATE' AND c.method = 'clean_fail'
 ORDER BY r.secs;
EOF
bench_footer
