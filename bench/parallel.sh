#!/usr/bin/env bash
#
# bench/parallel.sh: what parallel slices (mig_define(..., parallel => N))
# buy, next to one UPDATE, the hand-written keyset loop and the worker with
# one slice, on run.sh's users table.
#
#   bash bench/parallel.sh [--rows N] [--batch N] [--rounds N] [--cases LIST]
#                          [--no-build]                           (as root)
#
#   --rows N     rows in the users table (default 5000000)
#   --batch N    batch size of every batched method (default 1000)
#   --rounds N   run every case N times (default 1); even rounds run the
#                cases in reverse order, and the figures are medians
#   --cases L    table:method pairs (default below)
#   --no-build   use the migration_runner already installed
#
# Environment: MR_PG_BINDIR another (relocated) copy of the server to build
# against, install into and run (default /usr/lib/postgresql/15/bin);
# BENCH_CASES (same as --cases); BENCH_WAITS=0 turns off the sampling of
# wait events; BENCH_AUTOVACUUM=1 leaves autovacuum on for the users table;
# BENCH_TIMEOUT (seconds a worker run may take, default 3600); BENCH_KEEP=1
# keeps the temporary directory.
#
# Tables (both rebuilt from their template before every case, as run.sh
# does: fresh copy, VACUUM ANALYZE, CHECKPOINT):
#   uniform   every row needs the backfill (created_at NULL)
#   skewed    only the first quarter of the ids needs it; the other rows
#             already have created_at = updated_at = inserted_at, so the
#             action's "AND created_at IS NULL" leaves them alone.  A split
#             by key gives one slice all the work: only taking over part of
#             another slice (stealing) keeps the second runner busy.
# Methods (the action is run.sh's, batch --batch):
#   a    one UPDATE ... WHERE created_at IS NULL
#   c    the PL/pgSQL keyset loop, COMMIT per batch, synchronous_commit = off
#   e    the background worker with one slice (parallel => 1)
#   gN   the background worker with parallel => N
# A worker run is timed from mig_start() to the end of a wait on the catalog
# in the same session: mig_wait(name, '1 s') in a loop that commits.
# Default cases: uniform:a uniform:c uniform:e uniform:g2 uniform:g4
#                skewed:e skewed:g2 skewed:g4
#
# Every run is checked once afterwards; the table shows FAIL(...) unless
# every row that needed the backfill was changed and has the right values,
# no other row was changed (its xmin is still the load's), and, for the
# worker, the migration is completed with processed = the rows that needed
# work, scanned = every row, and its batches (migration_batches, every one
# kept) cover disjoint key ranges holding every row once.
#
# It prints seconds, ratios, the machine's busy cores during each run and,
# for the worker runs, batches per slice, time per batch, how busy the
# runners were and what they waited on.  Figures only: nothing here passes
# or fails on time.
#
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TREE="$(cd "$HERE/.." && pwd)"
NAME=parallel.sh
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

BUILD=1
ROWS=5000000
BATCH=1000
ROUNDS=1
CASES="${BENCH_CASES:-uniform:a uniform:c uniform:e uniform:g2 uniform:g4 skewed:e skewed:g2 skewed:g4}"
while [ $# -gt 0 ]; do
	case "$1" in
		--no-build) BUILD=0 ;;
		--rows) ROWS=${2:?}; shift ;;
		--batch) BATCH=${2:?}; shift ;;
		--rounds) ROUNDS=${2:?}; shift ;;
		--cases) CASES=${2:?}; shift ;;
		-h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;/^set -euo/d'; exit 0 ;;
		*) echo "parallel.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
for v in "$ROWS" "$BATCH" "$ROUNDS" "${BENCH_TIMEOUT:-3600}"; do
	case "$v" in ''|*[!0-9]*|0) echo "parallel.sh: not a positive number: '$v'" >&2; exit 2 ;; esac
done
[ "$ROWS" -ge 4 ] || { echo "parallel.sh: --rows must be at least 4" >&2; exit 2; }
TIMEOUT=${BENCH_TIMEOUT:-3600}
WAITS=${BENCH_WAITS:-1}
read -r -a CASE_LIST <<< "$CASES"
MAXPAR=1
for c in "${CASE_LIST[@]}"; do
	case "$c" in
		uniform:a|uniform:c|uniform:e|skewed:a|skewed:c|skewed:e) ;;
		uniform:g[1-9]|uniform:g[1-9][0-9]|skewed:g[1-9]|skewed:g[1-9][0-9])
			n=${c#*:g}
			[ "$n" -le 64 ] || { echo "parallel.sh: at most 64 slices: '$c'" >&2; exit 2; }
			[ "$n" -gt "$MAXPAR" ] && MAXPAR=$n ;;
		*) echo "parallel.sh: unknown case '$c' (table uniform|skewed, method a|c|e|gN)" >&2; exit 2 ;;
	esac
done
# one worker per running slice: enough for the widest case, and at least 4
MAXW=$(( MAXPAR > 4 ? MAXPAR : 4 ))
SKEW_ROWS=$(( ROWS / 4 ))     # rows of the skewed table that need work

bench_begin
if [ "$BUILD" = 1 ]; then
	say "building this tree"
	build_tree cur tree
	install_build cur
fi
bench_initdb 54334 <<EOF
random_page_cost = 1.1
wal_compression = off
log_checkpoints = off
log_autovacuum_min_duration = -1
max_worker_processes = $(( MAXW + 12 ))
shared_preload_libraries = 'migration_runner'
migration_runner.databases = 'bench'
migration_runner.max_workers = $MAXW
# keep every batch: the check reads their key ranges
migration_runner.history_size = 1000000
EOF
bench_restart
q postgres -c 'CREATE DATABASE bench'
q bench -c 'CREATE EXTENSION migration_runner'
# so that the launcher finds the database and the extension at once
bench_restart
if [ -z "$(q bench -c "SELECT 1 FROM pg_proc WHERE proname = 'mig_define'
                         AND 'parallel' = ANY (proargnames)")" ]; then
	echo "parallel.sh: this migration_runner's mig_define has no parallel argument" >&2
	exit 1
fi

ACTION=$(bench_action users)
bench_keyset_sql users | q bench

# Results, and the sampler of wait events: while run $1 is listed in
# bench_sampling, every 50 ms, the wait event of each worker ($2) or of the
# timed session (application_name bench_timed, while active).  No wait event
# is "CPU": running, or waiting for a core.  It commits every sample, so it
# holds no snapshot for longer than one.
q bench <<'EOF'
CREATE UNLOGGED TABLE bench_results (
	ord serial, round int, tbl text, method text, parallel int, name text,
	secs numeric, cores numeric, iowait numeric, ok boolean, status text);
CREATE UNLOGGED TABLE bench_sampling (run text PRIMARY KEY);
CREATE UNLOGGED TABLE bench_waits (run text, sample int, pid int, wait text);
CREATE PROCEDURE bench_sample(p_run text, p_workers boolean)
LANGUAGE plpgsql AS $$
DECLARE
	n integer := 0;
BEGIN
	WHILE EXISTS (SELECT 1 FROM bench_sampling WHERE run = p_run) LOOP
		n := n + 1;
		INSERT INTO bench_waits
		SELECT p_run, n, a.pid,
			   coalesce(a.wait_event_type || ':' || a.wait_event,
						CASE WHEN a.state IS NULL OR a.state = 'active' THEN 'CPU' ELSE a.state END)
		  FROM pg_stat_activity a
		 WHERE CASE WHEN p_workers THEN a.backend_type = 'migration_runner worker'
					ELSE a.application_name = 'bench_timed' AND a.state = 'active' END;
		COMMIT;
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;
EOF

say "seeding the templates ($ROWS rows; skewed: ids 1..$SKEW_ROWS need work)"
bench_users_table users_uniform_t "$ROWS" bench
q bench <<EOF
CREATE TABLE users_skewed_t (LIKE users_uniform_t INCLUDING ALL) WITH (autovacuum_enabled = off);
INSERT INTO users_skewed_t
SELECT id, email, inserted_at,
	   CASE WHEN id > $SKEW_ROWS THEN inserted_at END,
	   CASE WHEN id > $SKEW_ROWS THEN inserted_at END
  FROM users_uniform_t ORDER BY id;
VACUUM ANALYZE users_uniform_t;
VACUUM ANALYZE users_skewed_t;
EOF

# "busy total iowait" jiffies of the whole machine, from a /proc/stat line
cpu_fields() { awk '{ print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9, $6 }' "$1"; }

# The check of one run (see the header): prints OK or FAIL(<reasons>).
verify() {    # $1 = work rows, $2 = xmin of the load, $3 = migration name or ''
	local w=$1 x=$2 name=$3 total nulls wrong unchanged other bad=""
	read -r total nulls wrong unchanged other <<< "$(q bench -F ' ' -c "
		SELECT count(*),
			   count(*) FILTER (WHERE created_at IS NULL),
			   count(*) FILTER (WHERE created_at IS DISTINCT FROM inserted_at
								   OR updated_at IS DISTINCT FROM inserted_at),
			   count(*) FILTER (WHERE id <= $w AND xmin::text = '$x'),
			   count(*) FILTER (WHERE id > $w AND xmin::text <> '$x')
		  FROM users")"
	[ "$total" = "$ROWS" ] || bad+=" ${total}_rows"
	[ "$nulls" = 0 ] || bad+=" ${nulls}_left"
	[ "$wrong" = 0 ] || bad+=" ${wrong}_wrong"
	[ "$unchanged" = 0 ] || bad+=" ${unchanged}_unchanged"
	[ "$other" = 0 ] || bad+=" ${other}_changed_without_need"
	if [ -n "$name" ]; then
		local st processed scanned nb sumkeys overlaps
		read -r st processed scanned <<< "$(q bench -F ' ' -c "
			SELECT status, processed, scanned FROM mig_status WHERE name = '$name'")"
		read -r nb sumkeys overlaps <<< "$(q bench -F ' ' -c "
			WITH b AS (
				SELECT b.first_key[1]::bigint AS f, b.last_key[1]::bigint AS l, b.keys
				  FROM migration_batches b JOIN migrations m ON m.id = b.migration_id
				 WHERE m.name = '$name' AND b.error IS NULL AND b.keys > 0)
			SELECT count(*), coalesce(sum(keys), 0),
				   (SELECT count(*) FROM (SELECT f, l, lag(l) OVER (ORDER BY f, l) AS prev FROM b) o
					 WHERE o.f > o.l OR o.prev >= o.f)
			  FROM b")"
		[ "$st" = completed ] || bad+=" status_${st:-none}"
		[ "$processed" = "$w" ] || bad+=" processed_$processed"
		[ "$scanned" = "$ROWS" ] || bad+=" scanned_$scanned"
		[ "$sumkeys" = "$ROWS" ] || bad+=" batch_keys_$sumkeys"
		[ "$overlaps" = 0 ] || bad+=" ${overlaps}_overlapping_batches"
		[ "$nb" -gt 0 ] || bad+=" no_batch_history"
	fi
	if [ -z "$bad" ]; then echo OK; else bad=${bad# }; echo "FAIL(${bad// /,})"; fi
}

# One case of one round: reset, time, check, record.
run_case() {    # $1 = round, $2 = table, $3 = method
	local round=$1 tbl=$2 m=$3 w par=0 name setup body workers=false
	local out secs status ok cores=NULL iow=NULL sampler="" b0 t0 i0 b1 t1 i1
	if [ "$tbl" = skewed ]; then w=$SKEW_ROWS; else w=$ROWS; fi
	name="par_${tbl}_${m}_r${round}"
	case "$m" in
		a) setup=""
		   body="UPDATE users SET created_at = inserted_at, updated_at = inserted_at WHERE created_at IS NULL;" ;;
		c) setup="SET synchronous_commit = off;"
		   body="CALL bench_keyset($BATCH);" ;;
		*) if [ "$m" = e ]; then par=1; else par=${m#g}; fi
		   workers=true
		   setup="SELECT mig_define('$name', 'users', \$act\$$ACTION\$act\$,
				batch_size => $BATCH, parallel => $par);"
		   body="SELECT mig_start('$name');
$(bench_wait_sql slices "$name" "$TIMEOUT")" ;;
	esac
	say "round $round  $tbl:$m  reset"
	bench_reset_sql users "users_${tbl}_t" | q bench
	if [ "${BENCH_AUTOVACUUM:-0}" = 1 ]; then
		q bench -c 'ALTER TABLE users RESET (autovacuum_enabled)'
	fi
	local xmin0
	xmin0=$(q bench -c "SELECT xmin FROM users WHERE id = $ROWS")
	if [ "$WAITS" = 1 ]; then
		q bench -c "INSERT INTO bench_sampling VALUES ('$name')"
		q bench -c "CALL bench_sample('$name', $workers)" &
		sampler=$!
	fi
	say "round $round  $tbl:$m  run"
	rm -f "$WORK/cpu0" "$WORK/cpu1"
	# /proc/stat is read by the timed session itself, next to its clock
	if out=$(bench_timed_sql "$setup
\\! head -n 1 /proc/stat > $WORK/cpu0" "$body
\\! head -n 1 /proc/stat > $WORK/cpu1" | PGAPPNAME=bench_timed q bench 2>"$WORK/err"); then
		secs=$(sed -n 's/^SECS //p' <<< "$out")
		read -r b0 t0 i0 <<< "$(cpu_fields "$WORK/cpu0")"
		read -r b1 t1 i1 <<< "$(cpu_fields "$WORK/cpu1")"
		if [ "$t1" -gt "$t0" ]; then
			cores=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v n="$(nproc)" 'BEGIN { printf "%.2f", n * b / t }')
			iow=$(awk -v i=$((i1 - i0)) -v t=$((t1 - t0)) -v n="$(nproc)" 'BEGIN { printf "%.2f", n * i / t }')
		fi
	else
		secs=NULL
	fi
	if [ -n "$sampler" ]; then
		q bench -c "DELETE FROM bench_sampling WHERE run = '$name'"
		wait "$sampler" || say "    the wait-event sampler failed"
	fi
	if [ "$secs" = NULL ]; then
		status="ERROR($(head -n 1 "$WORK/err" | sed 's/^psql:[^:]*:[0-9]*: //' | cut -c1-70))"
		say "    $(cat "$WORK/err")"
		# a worker still at it would hold the table the next reset drops
		[ "$workers" = true ] && { q bench -c "SELECT mig_cancel('$name')" >/dev/null 2>&1 || true; }
	elif [ "$workers" = true ]; then
		status=$(verify "$w" "$xmin0" "$name")
	else
		status=$(verify "$w" "$xmin0" "")
	fi
	if [ "$status" = OK ]; then ok=true; else ok=false; fi
	if [ "$ok" = false ] && [ "$workers" = true ]; then
		say "    migration: $(q bench -c "SELECT status || ': ' || coalesce(error, '') FROM migrations WHERE name = '$name'")"
	fi
	say "round $round  $tbl:$m  ${secs}s $status"
	q bench -c "INSERT INTO bench_results (round, tbl, method, parallel, name, secs, cores, iowait, ok, status)
	            VALUES ($round, '$tbl', '$m', $par, '$name', $secs, $cores, $iow, $ok, \$s\$$status\$s\$)"
}

for round in $(seq 1 "$ROUNDS"); do
	if [ $(( round % 2 )) = 1 ]; then
		order=("${CASE_LIST[@]}")
	else
		order=()
		for (( i = ${#CASE_LIST[@]} - 1; i >= 0; i-- )); do order+=("${CASE_LIST[$i]}"); done
	fi
	for c in "${order[@]}"; do
		run_case "$round" "${c%%:*}" "${c#*:}"
	done
done

# ---------------------------------------------------------------- report
# Medians over the runs that passed their check; a ratio is the baseline's
# seconds / the method's (>1: the method is faster), from the medians, with
# the range of the same ratio taken within each round.
q bench -c "DROP TABLE IF EXISTS users" >/dev/null
{
echo
echo "migration_runner parallel slices  ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, PostgreSQL $(q bench -c 'SHOW server_version' | cut -d' ' -f1))"
echo "$ROWS rows; skewed: ids 1..$SKEW_ROWS need work; batch $BATCH; $ROUNDS round(s)"
echo "settings: shared_buffers=1GB max_wal_size=4GB wal_buffers=16MB, fsync/full_page_writes on," \
	"autovacuum $( [ "${BENCH_AUTOVACUUM:-0}" = 1 ] && echo on || echo off) for users," \
	"migration_runner.max_workers=$(q bench -c 'SHOW migration_runner.max_workers')" \
	"max_worker_processes=$(q bench -c 'SHOW max_worker_processes')" \
	"migration_runner.synchronous_commit=$(q bench -c 'SHOW migration_runner.synchronous_commit')"
echo "methods: (a) one UPDATE   (c) keyset loop, COMMIT per batch, synchronous_commit=off"
echo "         (e) worker, parallel => 1   (g) worker, parallel => N; worker runs timed from mig_start to completion"
echo "cores: the machine's busy CPUs during the run (of $(nproc)), whoever used them"
echo
q bench -F $'\t' <<'EOF' | awk -F'\t' '
	$1 != last {
		if (NR > 1) print ""
		print $1
		printf "  %-34s %8s  %-22s %7s %7s %6s  %s\n", "method", "seconds", "each round", "vs (a)", "vs (e)", "cores", "check"
		last = $1
	}
	{ printf "  %-34s %8s  %-22s %7s %7s %6s  %s\n", $2, $3, $4, $5, $6, $7, $8 }'
WITH r AS (
	SELECT tbl, method, parallel,
		   percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) FILTER (WHERE ok) AS secs,
		   percentile_cont(0.5) WITHIN GROUP (ORDER BY cores) FILTER (WHERE ok) AS cores,
		   string_agg(coalesce(secs::text, '-'), ' ' ORDER BY round) AS each,
		   CASE WHEN bool_and(ok) THEN 'OK'
				ELSE string_agg(DISTINCT status, ' ') FILTER (WHERE NOT ok) END AS checks,
		   min(ord) AS ord
	  FROM bench_results GROUP BY tbl, method, parallel)
SELECT CASE r.tbl WHEN 'uniform' THEN 'uniform: every row needs work'
				  ELSE 'skewed: the first quarter of the ids needs work' END,
	   CASE r.method WHEN 'a' THEN '(a) one UPDATE'
					 WHEN 'c' THEN '(c) keyset loop, sync_commit off'
					 WHEN 'e' THEN '(e) worker, 1 slice'
					 ELSE '(g) worker, ' || r.parallel || ' slices' END,
	   coalesce(round(r.secs::numeric, 2)::text, '-'),
	   r.each,
	   coalesce(round((a.secs / r.secs)::numeric, 2) || 'x', '-'),
	   coalesce(round((e.secs / r.secs)::numeric, 2) || 'x', '-'),
	   coalesce(round(r.cores::numeric, 2)::text, '-'),
	   r.checks
  FROM r
  LEFT JOIN r a ON a.tbl = r.tbl AND a.method = 'a'
  LEFT JOIN r e ON e.tbl = r.tbl AND e.method = 'e'
 ORDER BY r.tbl DESC, CASE r.method WHEN 'a' THEN 0 WHEN 'c' THEN 1 ELSE 2 + r.parallel END;
EOF

echo
echo "ratios: seconds of the baseline / seconds with slices (>1: slices faster); median, and the range of the per-round ratios"
q bench -F $'\t' <<'EOF' | awk -F'\t' '{ printf "  %-8s %-30s %8s   %s\n", $1, $2, $3, $4 }'
WITH m AS (
	SELECT tbl, method, parallel,
		   percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) FILTER (WHERE ok) AS secs
	  FROM bench_results GROUP BY tbl, method, parallel),
p AS (
	SELECT g.tbl, g.parallel, b.method AS base,
		   (SELECT b2.secs / g2.secs FROM bench_results b2, bench_results g2
			 WHERE b2.round = g2.round AND b2.tbl = g.tbl AND g2.tbl = g.tbl
			   AND b2.method = b.method AND g2.method = g.method AND b2.ok AND g2.ok
			 ORDER BY 1 LIMIT 1) AS lo,
		   (SELECT b2.secs / g2.secs FROM bench_results b2, bench_results g2
			 WHERE b2.round = g2.round AND b2.tbl = g.tbl AND g2.tbl = g.tbl
			   AND b2.method = b.method AND g2.method = g.method AND b2.ok AND g2.ok
			 ORDER BY 1 DESC LIMIT 1) AS hi,
		   b.secs / g.secs AS med
	  FROM m g JOIN m b ON b.tbl = g.tbl AND b.method IN ('a', 'e')
	 WHERE g.method LIKE 'g%')
SELECT tbl,
	   g.parallel || CASE WHEN parallel = 1 THEN ' slice' ELSE ' slices' END
	   || CASE base WHEN 'a' THEN ' vs one UPDATE' ELSE ' vs 1 slice' END,
	   coalesce(round(med::numeric, 2) || 'x', '-'),
	   CASE WHEN lo IS NOT NULL AND lo <> hi
			THEN '(' || round(lo::numeric, 2) || '-' || round(hi::numeric, 2) || 'x)' ELSE '' END
  FROM p g
 ORDER BY tbl DESC, base, parallel;
EOF

echo
echo "worker runs: batches per slice (slice:batches; 0 = ran as one piece), ms per batch, busy = the batches' time / (seconds x slices),"
echo "most concurrent workers seen, and the share of the workers' samples per wait event (CPU = no wait: running or waiting for a core)"
q bench -F $'\t' <<'EOF' | awk -F'\t' '{ printf "  %-24s %-26s %8s %6s %4s  %s\n", $1, $2, $3, $4, $5, $6 }'
SELECT 'run', 'batches per slice', 'ms/batch', 'busy', 'max', 'waits'
UNION ALL
SELECT * FROM (
	SELECT r.tbl || ':' || r.method || ' r' || r.round,
		   coalesce((SELECT string_agg(slice || ':' || n, ' ' ORDER BY slice)
					   FROM (SELECT b.slice, count(*) AS n FROM migration_batches b
							  WHERE b.migration_id = mg.id AND b.error IS NULL AND b.keys > 0
							  GROUP BY b.slice ORDER BY b.slice LIMIT 8) s), '-'),
		   coalesce((SELECT round(avg(b.duration_ms)::numeric, 2)::text FROM migration_batches b
					  WHERE b.migration_id = mg.id AND b.error IS NULL AND b.keys > 0), '-'),
		   coalesce((SELECT round(100 * sum(b.duration_ms) / 1000 / (r.secs * r.parallel))::text || '%'
					   FROM migration_batches b
					  WHERE b.migration_id = mg.id AND b.error IS NULL), '-'),
		   coalesce((SELECT max(n)::text FROM (SELECT count(*) AS n FROM bench_waits w
												WHERE w.run = r.name GROUP BY sample) s), '-'),
		   coalesce((SELECT string_agg(wait || ' ' || pct || '%', ', ' ORDER BY n DESC, wait)
					   FROM (SELECT wait, count(*) AS n,
									round(100.0 * count(*) / sum(count(*)) OVER ())::text AS pct
							   FROM bench_waits w WHERE w.run = r.name
							  GROUP BY wait ORDER BY n DESC, wait LIMIT 5) x), '-')
	  FROM bench_results r JOIN migrations mg ON mg.name = r.name
	 WHERE r.parallel > 0
	 ORDER BY r.tbl DESC, r.parallel, r.round) x;
EOF
q bench -c "
	SELECT 'note: ' || r.tbl || ':' || r.method || ' r' || r.round || ' (parallel => ' || r.parallel
		   || ', migrations.parallel = ' || mg.parallel
		   || ') ran as one piece: its figure is not one of slices'
	  FROM bench_results r JOIN migrations mg ON mg.name = r.name
	 WHERE r.parallel > 1 AND NOT EXISTS (SELECT 1 FROM migration_batches b
											WHERE b.migration_id = mg.id AND b.slice > 0)
	 ORDER BY r.ord" | sed 's/^/  /'
if [ "$WAITS" = 1 ]; then
	echo
	echo "(a) and (c): the timed session's samples per wait event"
	q bench -F $'\t' <<'EOF' | awk -F'\t' '{ printf "  %-24s %s\n", $1, $2 }'
SELECT r.tbl || ':' || r.method || ' r' || r.round,
	   coalesce((SELECT string_agg(wait || ' ' || pct || '%', ', ' ORDER BY n DESC, wait)
				   FROM (SELECT wait, count(*) AS n,
								round(100.0 * count(*) / sum(count(*)) OVER ())::text AS pct
						   FROM bench_waits w WHERE w.run = r.name
						  GROUP BY wait ORDER BY n DESC, wait LIMIT 5) x), '-')
  FROM bench_results r
 WHERE r.parallel = 0
 ORDER BY r.tbl DESC, r.method, r.round;
EOF
fi
echo
bench_footer
}
