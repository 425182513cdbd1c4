#!/usr/bin/env bash
#
# bench/unanalysed.sh: CALL mig_run on a table that was never ANALYZEd,
# beside the same table analysed, optionally for an older release too.
#
#   bash bench/unanalysed.sh [--no-build] [--against REV] [--rows N]
#                            [--batch N] [--runs N]          (as root)
#
#   --against REV  also build REV of this repository (git archive), e.g.
#                  4619733 (release 1.0), and run the same cases with it;
#                  each round installs REV, then this tree, so this tree's
#                  build is what stays installed
#   --rows N       rows in the table (default 400000)
#   --batch N      batch_size of the migration (default 1000)
#   --runs N       rounds of every case (default 3)
#   --random-page-cost X  the server's random_page_cost (default: PostgreSQL's
#                  own, 4; run.sh uses 1.1, which makes an index scan cheap
#                  enough that the planner picks it even without statistics)
#   --no-build     use the migration_runner already installed (no --against)
#
# Environment: MR_PG_BINDIR another (relocated) copy of the server to build
# against, install into and run (default /usr/lib/postgresql/15/bin);
# BENCH_KEEP=1 keeps the temporary directory (cluster and server log).
#
# A planner with no statistics on the table (pg_class.reltuples = -1, no
# pg_statistic rows) may answer the bounds query
#
#   SELECT id FROM ONLY t WHERE id > $1 AND id <= $2 ORDER BY id LIMIT n
#
# with a bitmap heap scan of the whole remaining range plus a sort, for
# every batch.  Both cases build the same table the same way:
#
#   CREATE TABLE (id bigint PRIMARY KEY, ...) WITH (autovacuum_enabled = off)
#   INSERT ... SELECT FROM generate_series(1, N)
#   (analysed only) ANALYZE
#   SELECT count(*)    -- sets the hint bits in both cases
#   CHECKPOINT
#
# No VACUUM in either case, so the visibility map is the same; the only
# difference is the statistics.  autovacuum_enabled = off keeps autovacuum
# from analysing the table during the run (autovacuum stays on for the rest
# of the cluster, as in run.sh); after every run the table's analyze counts
# and pg_statistic rows are checked and shown in the "stats" column.
#
# Every version runs in its own database with a fresh CREATE EXTENSION, so an
# older catalog never meets a newer library.  The figures come from the
# migration's row in migrations: total wall time of the CALL, and bounds_ms,
# action_ms, bookkeeping_ms, commit_ms.  It prints figures and ratios only:
# nothing here passes or fails on time.
#
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TREE="$(cd "$HERE/.." && pwd)"
NAME=unanalysed.sh
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

# ---------------------------------------------------------------- arguments
BUILD=1
AGAINST=""
ROWS=400000
BATCH=1000
RUNS=3
RPC=4
while [ $# -gt 0 ]; do
	case "$1" in
		--no-build) BUILD=0 ;;
		--against) AGAINST=${2:?--against needs a revision}; shift ;;
		--rows) ROWS=${2:?}; shift ;;
		--batch) BATCH=${2:?}; shift ;;
		--runs) RUNS=${2:?}; shift ;;
		--random-page-cost) RPC=${2:?}; shift ;;
		-h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;/^set -euo/d'; exit 0 ;;
		*) echo "unanalysed.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
for v in "$ROWS" "$BATCH" "$RUNS"; do
	case "$v" in ''|*[!0-9]*) echo "unanalysed.sh: not a number: '$v'" >&2; exit 2 ;; esac
done
if [ "$BUILD" = 0 ] && [ -n "$AGAINST" ]; then
	echo "unanalysed.sh: --against needs a build (drop --no-build)" >&2
	exit 2
fi

bench_begin
RESULTS="$WORK/results.tsv"
: > "$RESULTS"

VERSIONS=()
if [ -n "$AGAINST" ]; then
	say "building $AGAINST"
	build_tree ref "$AGAINST"
	VERSIONS+=(ref)
fi
if [ "$BUILD" = 1 ]; then
	say "building this tree"
	build_tree cur tree
fi
VERSIONS+=(cur)

# run.sh's settings, but random_page_cost as given (by default PostgreSQL's
# own): with run.sh's 1.1 an index scan is cheap enough that even a planner
# without statistics walks the index.
bench_initdb 54331 <<EOF
random_page_cost = $RPC
shared_preload_libraries = 'migration_runner'
migration_runner.history_size = 1000000
EOF

# Installs build $1 and (re)starts the server on it; the first time, makes
# the version's own database with a fresh CREATE EXTENSION.
use_build() {    # $1 = label
	if [ "$BUILD" = 1 ]; then install_build "$1"; fi
	bench_restart
	if [ -z "$(q postgres -c "SELECT 1 FROM pg_database WHERE datname = 'mr_$1'")" ]; then
		q postgres -c "CREATE DATABASE mr_$1"
		q "mr_$1" -c 'CREATE EXTENSION migration_runner'
	fi
}

build_table() {    # $1 = database, $2 = table, $3 = 1 to analyse
	bench_users_table "$2" "$ROWS" "$1"
	q "$1" <<EOF
$(if [ "$3" = 1 ]; then echo "ANALYZE $2;"; fi)
\\o /dev/null
SELECT count(*) FROM $2;
\\o
CHECKPOINT;
EOF
}

# The bounds query's plan as the planner makes it for the first batch (a
# custom plan: cursor below the first key, high water at the last), with the
# default settings and with the engine's (enable_seqscan, enable_bitmapscan,
# enable_sort off), on one line.
plan_line() {    # $1 = database, $2 = table, $3 = 1 for the engine's settings
	local sets=""
	[ "$3" = 1 ] && sets="SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off;"
	q "$1" <<EOF | sed 's/^ *//;s/^-> *//;s/  */ /g' | paste -sd'|' | sed 's/|/ | /g'
$sets
PREPARE b(bigint, bigint) AS
	SELECT id FROM ONLY $2 WHERE id > \$1 AND id <= \$2 ORDER BY id LIMIT $BATCH;
EXPLAIN (COSTS OFF) EXECUTE b(0, $ROWS);
EOF
}

# One timed CALL mig_run on table $2 of database $1; appends a result line.
run_case() {    # $1 = database, $2 = table, $3 = version label, $4 = case, $5 = round
	local db=$1 t=$2 name="u_${2}_$5" out secs
	q "$db" -c "SELECT mig_define('$name', '$t', \$a\$$(bench_action "$t")\$a\$, batch_size => $BATCH)" >/dev/null
	out=$(q "$db" <<EOF
\\o /dev/null
SELECT extract(epoch FROM clock_timestamp()) AS t0 \\gset
CALL mig_run('$name');
SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 3) AS secs \\gset
\\o
\\echo SECS :secs
EOF
	)
	secs=$(sed -n 's/^SECS //p' <<< "$out")
	# check: every row done, and the migration completed with all of them
	q "$db" -F $'\t' -c "
		SELECT m.batches, round(m.bounds_ms::numeric), round(m.action_ms::numeric),
			   round(m.bookkeeping_ms::numeric), round(m.commit_ms::numeric),
			   CASE WHEN m.status = 'completed' AND m.processed = $ROWS
					 AND NOT EXISTS (SELECT 1 FROM $t WHERE created_at IS DISTINCT FROM inserted_at)
					THEN 'OK' ELSE 'FAIL(' || m.status || ',' || m.processed || ')' END,
			   CASE WHEN s.n_analysed = 0 AND NOT EXISTS
						 (SELECT 1 FROM pg_statistic WHERE starelid = '$t'::regclass)
					THEN 'none' ELSE 'analysed' END
		  FROM migrations m,
			   (SELECT analyze_count + autoanalyze_count AS n_analysed
				  FROM pg_stat_user_tables WHERE relid = '$t'::regclass) s
		 WHERE m.name = '$name'" |
		while IFS=$'\t' read -r nb bo ac bk co chk st; do
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
				"$3" "$4" "$5" "$secs" "$nb" "$bo" "$ac" "$bk" "$co" "$chk" "$st"
		done >> "$RESULTS"
	say "  $3 $4 round $5: ${secs}s"
}

# ---------------------------------------------------------------- runs
# Odd rounds run the versions and the cases in one order, even rounds in the
# other, so that neither always comes first after a restart or last in a
# round; other load on the machine still skews single figures.
declare -A EXTVER
PLANS=""
for round in $(seq 1 "$RUNS"); do
	order=("${VERSIONS[@]}")
	cases=(analysed never)
	if [ $((round % 2)) = 0 ]; then
		order=(); for v in "${VERSIONS[@]}"; do order=("$v" "${order[@]}"); done
		cases=(never analysed)
	fi
	for v in "${order[@]}"; do
		say "round $round: $v"
		use_build "$v"
		db="mr_$v"
		EXTVER[$v]=$(q "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'migration_runner'")
		for c in "${cases[@]}"; do
			t="users_$c"
			build_table "$db" "$t" "$([ $c = analysed ] && echo 1 || echo 0)"
			if [ "$round" = 1 ] && [ "$v" = "${VERSIONS[0]}" ]; then
				PLANS+="$(printf '  %-8s default settings:   ' "$c")$(plan_line "$db" "$t" 0)"$'\n'
				PLANS+="$(printf '  %-8s engine'"'"'s settings:  ' "$c")$(plan_line "$db" "$t" 1)"$'\n'
			fi
			run_case "$db" "$t" "$v" "$c" "$round"
		done
	done
done

# ---------------------------------------------------------------- report
label() { if [ "$1" = ref ]; then echo "$AGAINST"; else echo "this tree"; fi; }
{
echo
echo "CALL mig_run on a table never ANALYZEd vs the same table analysed  ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, PostgreSQL $(q postgres -c 'SHOW server_version' | cut -d' ' -f1))"
echo "$ROWS rows, batch_size $BATCH, $RUNS rounds; run.sh's server settings but random_page_cost = $RPC; autovacuum off for the table (autovacuum_enabled = off)"
for v in "${VERSIONS[@]}"; do
	echo "  $v = $(label "$v") (extension version ${EXTVER[$v]})"
done
echo "table: CREATE TABLE with its primary key, INSERT, [ANALYZE,] SELECT count(*), CHECKPOINT; no VACUUM in either case"
echo "ms: migrations.bounds_ms / action_ms / bookkeeping_ms / commit_ms of the run; stats: none = no ANALYZE of any kind and no pg_statistic rows at the end"
echo
echo "bounds query plan for the first batch (EXPLAIN, COSTS OFF):"
printf '%s' "$PLANS"
echo
printf "%-5s %-9s %5s %8s %7s %10s %10s %13s %9s  %-6s %s\n" \
	version table round seconds batches bounds_ms action_ms bookkeeping_ms commit_ms check stats
awk -F'\t' '{ printf "%-5s %-9s %5s %8s %7s %10s %10s %13s %9s  %-6s %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }' "$RESULTS"
echo
echo "medians over the rounds, and ratios of the medians"
awk -F'\t' -v ref="${AGAINST:+ref}" '
	function median(key,   n, i, j, t, a) {
		n = split(vals[key], a, " ")
		for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
		return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
	}
	function r(x, y) { return (y > 0) ? sprintf("%.2fx", x / y) : "-" }
	{
		for (f = 4; f <= 9; f++) vals[$1 SUBSEP $2 SUBSEP f] = vals[$1 SUBSEP $2 SUBSEP f] " " $f
		seen[$1] = 1
	}
	END {
		split("seconds batches bounds_ms action_ms bookkeeping_ms commit_ms", col, " ")
		printf "  %-5s %-9s %8s %10s %10s %13s %9s\n", "", "", "seconds", "bounds_ms", "action_ms", "bookkeeping_ms", "commit_ms"
		for (v in seen) for (ci = 1; ci <= 2; ci++) {
			c = (ci == 1) ? "analysed" : "never"
			for (f = 4; f <= 9; f++) m[v, c, f] = median(v SUBSEP c SUBSEP f)
		}
		nv = (ref != "") ? 2 : 1
		for (vi = 1; vi <= nv; vi++) {
			v = (vi == 1 && ref != "") ? "ref" : "cur"
			for (ci = 1; ci <= 2; ci++) {
				c = (ci == 1) ? "analysed" : "never"
				printf "  %-5s %-9s %8.3f %10d %10d %13d %9d\n", v, c, m[v,c,4], m[v,c,6], m[v,c,7], m[v,c,8], m[v,c,9]
			}
		}
		print ""
		for (vi = 1; vi <= nv; vi++) {
			v = (vi == 1 && ref != "") ? "ref" : "cur"
			printf "  %s, never analysed / analysed:  seconds %s, bounds_ms %s\n", v,
				r(m[v,"never",4], m[v,"analysed",4]), r(m[v,"never",6], m[v,"analysed",6])
		}
		if (ref != "")
			for (ci = 1; ci <= 2; ci++) {
				c = (ci == 1) ? "analysed" : "never"
				printf "  %-8s table, cur / ref:  seconds %s, bounds_ms %s\n", c,
					r(m["cur",c,4], m["ref",c,4]), r(m["cur",c,6], m["ref",c,6])
			}
	}' "$RESULTS"
echo
bench_footer
}
