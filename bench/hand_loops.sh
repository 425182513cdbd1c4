#!/usr/bin/env bash
#
# bench/hand_loops.sh: what the machine itself allows when two sessions
# write one table, without migration_runner: one UPDATE, one hand-written
# keyset loop, and two such loops at once over the two halves of the keys.
# It is the yardstick for parallel.sh's slices: two slices cannot beat two
# hand loops on the same machine.
#
#   bash bench/hand_loops.sh [--rows N] [--batch N] [--rounds N]   (as root)
#
#   --rows N     rows in run.sh's users table (default 5000000)
#   --batch N    keys per batch of the loops (default 1000)
#   --rounds N   run every method N times (default 1); figures are medians
#
# Same cluster settings, table, reset and action as parallel.sh; the loops
# commit every batch with synchronous_commit = off, as parallel.sh's (c).
# Each run is checked: every row changed (created_at set), none missed.
# Prints figures only: nothing passes or fails on time.
#
set -euo pipefail

TREE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=hand_loops.sh
# shellcheck source=bench/lib.sh
source "$TREE/bench/lib.sh"

ROWS=5000000
BATCH=1000
ROUNDS=1
while [ $# -gt 0 ]; do
	case "$1" in
		--rows) ROWS=$2; shift 2 ;;
		--batch) BATCH=$2; shift 2 ;;
		--rounds) ROUNDS=$2; shift 2 ;;
		*) echo "hand_loops.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
done

bench_begin
bench_initdb 54335 </dev/null
bench_restart
q postgres -c 'CREATE DATABASE bench'
bench_users_table users_t "$ROWS" bench
q bench -c 'VACUUM ANALYZE users_t'

# the keyset loop of lib.sh, over (lo, hi] only
q bench <<'EOF'
CREATE PROCEDURE bench_keyset_range(lo bigint, hi_all bigint, batch integer)
LANGUAGE plpgsql AS $$
DECLARE
	cur bigint := lo;
	hi bigint;
BEGIN
	LOOP
		SELECT max(s.id) INTO hi
		  FROM (SELECT id FROM users WHERE id > cur AND id <= hi_all
				 ORDER BY id LIMIT batch) s;
		EXIT WHEN hi IS NULL;
		UPDATE users SET created_at = inserted_at, updated_at = inserted_at
		 WHERE id > cur AND id <= hi AND created_at IS NULL;
		cur := hi;
		COMMIT;
	END LOOP;
END
$$;
CREATE UNLOGGED TABLE bench_results (method text, secs numeric);
EOF

loop_sql() {    # $1 = lo, $2 = hi
	printf 'SET synchronous_commit = off;\nCALL bench_keyset_range(%s, %s, %s);\n' "$1" "$2" "$BATCH"
}

# run method $1 once: reset, time it from this shell, check
run_method() {
	local m=$1 t0 t1 half=$(( ROWS / 2 )) left
	bench_reset_sql users users_t | q bench
	t0=$(date +%s.%N)
	case "$m" in
		update) q bench -c 'UPDATE users SET created_at = inserted_at, updated_at = inserted_at WHERE created_at IS NULL' ;;
		one) loop_sql 0 "$ROWS" | q bench ;;
		two)
			loop_sql 0 "$half" | q bench &
			loop_sql "$half" "$ROWS" | q bench
			wait ;;
	esac
	t1=$(date +%s.%N)
	left=$(q bench -c 'SELECT count(*) FROM users WHERE created_at IS DISTINCT FROM inserted_at')
	[ "$left" = 0 ] || { echo "hand_loops.sh: $m left $left rows unchanged" >&2; exit 1; }
	q bench -c "INSERT INTO bench_results VALUES ('$m', $t1 - $t0)"
	say "$m $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')s OK"
}

for round in $(seq 1 "$ROUNDS"); do
	for m in update one two; do
		run_method "$m"
	done
done

echo
echo "hand loops  ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $ROWS rows, batch $BATCH, $ROUNDS round(s))"
q bench -F ' ' <<'EOF' | awk '{ printf "  %-36s %8s  %s\n", $1, $2, $3 }'
WITH r AS (SELECT method, percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) AS secs
			 FROM bench_results GROUP BY method)
SELECT CASE r.method WHEN 'update' THEN 'one_UPDATE' WHEN 'one' THEN 'one_keyset_loop'
					 ELSE 'two_keyset_loops_over_halves' END,
	   round(r.secs::numeric, 2),
	   round((u.secs / r.secs)::numeric, 2) || 'x_vs_UPDATE'
  FROM r, r u WHERE u.method = 'update'
 ORDER BY r.secs DESC;
EOF
bench_footer
