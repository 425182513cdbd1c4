#!/usr/bin/env bash
#
# bench/citus.sh: a distributed table on Citus, backfilled three ways side by
# side on a 3-node cluster: one plain distributed UPDATE, the 1.0-style
# global key range through the coordinator, and per-shard slices.
#
#   bash bench/citus.sh [--batch N] [--shards N] [--cases LIST]
#                       [--global-via worker|call] [--no-build] [ROWS ...]   (as root)
#
#   ROWS           sizes of the users table (default 500000 2000000)
#   --batch N      batch size of the migrations (default 5000)
#   --shards N     shards of the distributed table (default 32)
#   --cases L      methods, in this order (default "update global shards")
#   --global-via   how (2) runs: the background worker (default: mig_start,
#                  then mig_wait until completed, like (3)) or CALL mig_run
#   --no-build     use the migration_runner already installed
#
# Environment: MR_PG_BINDIR another (relocated) copy of the server to build
# against, install into and run (default /usr/lib/postgresql/15/bin; it
# needs Citus: when Citus is not installed there, ../shared/vendor/citus/
# build.sh builds it into that server); BENCH_TIMEOUT (seconds a migration
# may take, default 1800); BENCH_KEEP=1 keeps the temporary directory.
#
# The cluster: a coordinator without shards and 2 workers, initdb'd as
# postgres in the temporary directory, listening on Unix sockets in one
# directory ($WORK/sock, which is also the nodes' host name for Citus),
# shared_preload_libraries = 'citus,migration_runner', wal_level = logical,
# fsync = off.  The table is run.sh's users (id bigint PRIMARY KEY, email,
# inserted_at, created_at, updated_at) distributed by id, hash, --shards
# shards; its template users_t is colocated with it, and before every method
# users is dropped, created, distributed and filled from users_t (pushed down
# to the shards), then VACUUM ANALYZE and a CHECKPOINT on every node.
#
# Methods (the seed's backfill, created_at = updated_at = inserted_at):
#   update   one UPDATE users ... WHERE created_at IS NULL on the coordinator
#   global   mig_define with SET migration_runner.citus_shards = off: the key
#            range of the whole table, batch by batch through the coordinator
#            (multi-shard statements, two-phase commits)
#   shards   mig_define with migration_runner.citus_shards = on (the default):
#            one slice per shard, run on the node that holds it
# A migration is timed from mig_start (or CALL mig_run) to its completion,
# seen by mig_wait(name, '1 s') in a loop that commits, in the same session.
#
# The check after every run: no row left (created_at NULL), every row with the
# right values, the row count unchanged, the rows the run reports changed
# (UPDATE's row count, or the migration's processed) equal to the rows, and
# the row updates the shards' statistics count (pg_stat_user_tables.n_tup_upd,
# which counts aborted attempts too) equal to the rows: every row was
# changed, and no more updates than rows were made, so each row exactly once.
#
# The time split: for the global range the coordinator's migrations row
# (bounds_ms, action_ms, bookkeeping_ms, commit_ms); for per-shard slices the
# node-local migrations in each worker's catalog (coordinator_id = the
# coordinator's migration), summed per node; the coordinator's row holds
# their sums.  Figures only: nothing here passes
# or fails on time.
#
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TREE="$(cd "$HERE/.." && pwd)"
NAME=citus.sh
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

BUILD=1
BATCH=5000
SHARDS=32
CASES="update global shards"
VIA=worker
SIZES=()
while [ $# -gt 0 ]; do
	case "$1" in
		--no-build) BUILD=0 ;;
		--batch) BATCH=${2:?}; shift ;;
		--shards) SHARDS=${2:?}; shift ;;
		--cases) CASES=${2:?}; shift ;;
		--global-via) VIA=${2:?}; shift ;;
		-h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;/^set -euo/d'; exit 0 ;;
		-*) echo "citus.sh: unknown argument '$1'" >&2; exit 2 ;;
		*) SIZES+=("$1") ;;
	esac
	shift
done
[ ${#SIZES[@]} -gt 0 ] || SIZES=(500000 2000000)
TIMEOUT=${BENCH_TIMEOUT:-1800}
for v in "$BATCH" "$SHARDS" "$TIMEOUT" "${SIZES[@]}"; do
	case "$v" in ''|*[!0-9]*|0) echo "citus.sh: not a positive number: '$v'" >&2; exit 2 ;; esac
done
case "$VIA" in worker|call) ;; *) echo "citus.sh: --global-via worker or call" >&2; exit 2 ;; esac
read -r -a CASE_LIST <<< "$CASES"
for c in "${CASE_LIST[@]}"; do
	case "$c" in update|global|shards) ;;
		*) echo "citus.sh: unknown case '$c' (update, global, shards)" >&2; exit 2 ;; esac
done

bench_begin
PORTS=(54350 54351 54352)
NODES=(coordinator worker1 worker2)
PGDATA="$WORK/n0"     # lib.sh's cleanup stops this one; citus_cleanup the others
LOG="$WORK/n0.log"

# the coordinator first (its maintenance daemon would complain about the
# workers), then the workers; lib.sh's bench_cleanup does the rest
citus_cleanup() {
	local rc=$?
	for i in 0 1 2; do
		if [ -f "$WORK/n$i/postmaster.pid" ]; then
			as_pg pg_ctl -D "$WORK/n$i" -m immediate -w stop >/dev/null 2>&1 || true
		fi
	done
	if [ $rc -ne 0 ]; then
		for i in 1 2; do
			[ -f "$WORK/n$i.log" ] && { say "---- last lines of $WORK/n$i.log"; tail -n 15 "$WORK/n$i.log" >&2; }
		done
	fi
	(exit $rc)
	bench_cleanup
}
trap citus_cleanup EXIT

# ---------------------------------------------------------------- software
if ! [ -f "$("$PGBIN/pg_config" --sharedir)/extension/citus.control" ] ||
   ! [ -f "$("$PGBIN/pg_config" --pkglibdir)/citus.so" ]; then
	build_sh="$TREE/../shared/vendor/citus/build.sh"
	[ -f "$build_sh" ] || { echo "citus.sh: Citus is not installed and $build_sh is missing" >&2; exit 1; }
	say "building Citus into $PGBIN (about 1.5 minutes)"
	bash "$build_sh" "$PGBIN/pg_config" >&2
fi
if [ "$BUILD" = 1 ]; then
	say "building this tree"
	build_tree cur tree
	install_build cur
fi

# ---------------------------------------------------------------- cluster
export PGOPTIONS="-c client_min_messages=warning"
qn() { local n=$1; shift; as_pg psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "${PORTS[$n]}" -U postgres -d postgres "$@"; }
q0() { qn 0 "$@"; }

for i in 0 1 2; do
	# run.sh's settings (lib.sh), then the nodes' own: later lines win
	PGDATA="$WORK/n$i" bench_initdb "${PORTS[$i]}" <<EOF
# ---- node $i (${NODES[$i]})
shared_preload_libraries = 'citus,migration_runner'
wal_level = logical
fsync = off
shared_buffers = 512MB
effective_cache_size = 4GB
random_page_cost = 1.1
max_connections = 200
max_worker_processes = 32
log_checkpoints = off
log_autovacuum_min_duration = -1
citus.shard_count = $SHARDS
citus.local_hostname = '$SOCK'
EOF
	as_pg pg_ctl -D "$WORK/n$i" -l "$WORK/n$i.log" -w -t 60 start >/dev/null
	qn "$i" -c 'CREATE EXTENSION citus'
done
q0 >/dev/null <<EOF
SELECT citus_set_coordinator_host('$SOCK', ${PORTS[0]});
SELECT citus_add_node('$SOCK', ${PORTS[1]});
SELECT citus_add_node('$SOCK', ${PORTS[2]});
CREATE EXTENSION migration_runner;
EOF
for i in 1 2; do
	[ "$(qn "$i" -c "SELECT count(*) FROM pg_extension WHERE extname = 'migration_runner'")" = 1 ] ||
		{ echo "citus.sh: CREATE EXTENSION migration_runner did not reach node $i" >&2; exit 1; }
done
HAS_SHARDS=$(q0 -c "SELECT count(*) FROM pg_proc WHERE proname = 'mig_shard_batch'")
CITUS_VERSION=$(q0 -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'")

ACTION=$(bench_action users)
DDL="CREATE TABLE %s (
	id bigint PRIMARY KEY,
	email text NOT NULL,
	inserted_at timestamptz NOT NULL,
	created_at timestamptz,
	updated_at timestamptz) WITH (autovacuum_enabled = off);"

# the results: one line per run, and the time split lines
RES="$WORK/results.tsv"
SPLIT="$WORK/split.tsv"
: > "$RES"
: > "$SPLIT"

# users_t: the template of $1 rows, distributed, $SHARDS shards
make_template() {
	q0 <<EOF
DROP TABLE IF EXISTS users, users_t;
$(printf "$DDL" users_t)
SELECT create_distributed_table('users_t', 'id', shard_count => $SHARDS, colocate_with => 'none');
INSERT INTO users_t (id, email, inserted_at)
SELECT g, 'user' || g || '@example.com',
	   timestamptz '2020-01-01 00:00:00+00' + g * interval '1 second'
  FROM generate_series(1, $1) g;
VACUUM ANALYZE users_t;
EOF
}

reset_users() {
	q0 >/dev/null <<EOF
DROP TABLE IF EXISTS users;
$(printf "$DDL" users)
SELECT create_distributed_table('users', 'id', colocate_with => 'users_t');
INSERT INTO users SELECT * FROM users_t;
VACUUM ANALYZE users;
EOF
	for i in 0 1 2; do qn "$i" -c CHECKPOINT; done
}

# Row updates on the shards of users, by the shards' statistics.  A backend
# sends its counts some time after its transaction (at most ~10 s when idle),
# so wait until they reach $1 rows, or 20 s ($2 = 1: one look only).
shard_updates() {
	local want=$1 n=0 i
	for i in $(seq 1 $(( ${2:-0} == 1 ? 1 : 40 ))); do
		n=$(q0 -c "SELECT coalesce(sum(result::bigint), 0) FROM run_command_on_shards('users',
			\$c\$SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = '%s'::regclass\$c\$)")
		[ "$n" -ge "$want" ] && break
		sleep 0.5
	done
	echo "$n"
}

# The check of one run (see the header): OK or FAIL(reasons).
verify() {    # $1 = rows, $2 = rows the run says it changed
	local rows=$1 changed=$2 total nulls wrong upd bad=""
	read -r total nulls wrong <<< "$(q0 -F ' ' -c "
		SELECT count(*),
			   count(*) FILTER (WHERE created_at IS NULL),
			   count(*) FILTER (WHERE created_at IS DISTINCT FROM inserted_at
								   OR updated_at IS DISTINCT FROM inserted_at)
		  FROM users")"
	upd=$(shard_updates "$rows" $(( nulls > 0 )))
	[ "$total" = "$rows" ] || bad+=" ${total}_rows"
	[ "$nulls" = 0 ] || bad+=" ${nulls}_left"
	[ "$wrong" = 0 ] || bad+=" ${wrong}_wrong"
	[ "$changed" = "$rows" ] || bad+=" reported_${changed:-none}"
	[ "$upd" = "$rows" ] || bad+=" ${upd}_row_updates"
	if [ -z "$bad" ]; then echo "OK: $rows rows, each changed once ($upd row updates)"
	else bad=${bad# }; echo "FAIL(${bad// /,})"; fi
}

# One method on $1 rows.
run_case() {    # $1 = rows, $2 = method
	local rows=$1 m=$2 name="cb_${2}_$1" setup body how out secs status changed load id st=""
	case "$m" in
		update)
			how="one UPDATE"
			setup=""
			body="UPDATE users SET created_at = inserted_at, updated_at = inserted_at WHERE created_at IS NULL;
\\echo CHANGED :ROW_COUNT" ;;
		global|shards)
			if [ "$m" = global ]; then
				setup="SET migration_runner.citus_shards = off;"
			else
				setup="SET migration_runner.citus_shards = on;"
			fi
			setup+="
SELECT mig_define('$name', 'users', \$act\$$ACTION\$act\$, batch_size => $BATCH);
SELECT per_shard AS per_shard FROM migrations WHERE name = '$name' \\gset
\\echo PER_SHARD :per_shard"
			if [ "$m" = global ] && [ "$VIA" = call ]; then
				how="CALL mig_run"
				body="CALL mig_run('$name');"
			else
				how="worker"
				body="SELECT mig_start('$name');
$(bench_wait_sql slices "$name" "$TIMEOUT")"
			fi ;;
	esac
	say "$rows rows  $m: reset"
	reset_users
	load=$(cut -d' ' -f1 /proc/loadavg)
	say "$rows rows  $m: run (load $load)"
	if out=$(bench_timed_sql "$setup" "$body" | q0 2>"$WORK/err"); then
		secs=$(sed -n 's/^SECS //p' <<< "$out")
	else
		secs=""
		say "    $(cat "$WORK/err")"
	fi
	if [ "$m" != update ]; then
		if [ "$(sed -n 's/^PER_SHARD //p' <<< "$out")" = "$( [ "$m" = shards ] && echo t || echo f)" ]; then :
		else how+=" (per_shard=$(sed -n 's/^PER_SHARD //p' <<< "$out"))"; fi
		id=$(q0 -c "SELECT id FROM migrations WHERE name = '$name'")
		changed=$(q0 -c "SELECT processed FROM mig_status WHERE name = '$name'")
		st=$(q0 -c "SELECT status || coalesce(': ' || error, '') FROM migrations WHERE name = '$name'")
		[ "${st%%:*}" = completed ] || { say "    migration: $st"; q0 -c "SELECT mig_cancel('$name')" >/dev/null 2>&1 || true; }
	else
		changed=$(sed -n 's/^CHANGED //p' <<< "$out")
	fi
	if [ -z "$secs" ]; then
		status="ERROR($(head -n 1 "$WORK/err" | sed 's/^psql:[^:]*:[0-9]*: //' | cut -c1-80))"
	else
		status=$(verify "$rows" "$changed")
	fi
	[ -n "$st" ] && [ "${st%%:*}" != completed ] && status+=" migration $st"
	say "$rows rows  $m: ${secs:-?} s  $status"
	local split="-	-	-	-	-"
	if [ "$m" = shards ]; then
		# the nodes' sums: the coordinator's row has no bookkeeping time
		shard_split "$rows" "$id" "${secs:-0}"
		split=$(tail -n 2 "$SPLIT" | awk -F'\t' '{ b += $5; t1 += $6; t2 += $7; t3 += $8; t4 += $9 }
			END { printf "%d\t%.2f\t%.2f\t%.2f\t%.2f", b, t1, t2, t3, t4 }')
	elif [ "$m" != update ]; then
		split=$(q0 -F $'\t' -c "SELECT batches, round((bounds_ms / 1000)::numeric, 2),
			round((action_ms / 1000)::numeric, 2), round((bookkeeping_ms / 1000)::numeric, 2),
			round((commit_ms / 1000)::numeric, 2) FROM migrations WHERE id = $id")
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rows" "$m" "$how" "${secs:--}" "$load" "$split" "$status" >> "$RES"
	return 0
}

# The per-node split of per-shard run $2: the node-local migrations in each
# worker's catalog.  (The coordinator's mirror, migration_slices, is gone
# once the run completed; its migrations row holds the sums over the nodes.)
shard_split() {    # $1 = rows, $2 = the coordinator's migration id, $3 = seconds
	local i
	for i in 1 2; do
		qn "$i" -F $'\t' -c "
			SELECT $1, '${NODES[$i]}', count(*), sum(processed), sum(batches),
				   round((sum(bounds_ms) / 1000)::numeric, 2), round((sum(action_ms) / 1000)::numeric, 2),
				   round((sum(bookkeeping_ms) / 1000)::numeric, 2), round((sum(commit_ms) / 1000)::numeric, 2),
				   round((sum(bounds_ms + action_ms + bookkeeping_ms + commit_ms) / 1000)::numeric, 2),
				   coalesce(round((100 * sum(bounds_ms + action_ms + bookkeeping_ms + commit_ms) / 1000
								   / nullif($3, 0))::numeric) || '%', '-'),
				   coalesce(round(extract(epoch FROM max(completed_at) - min(started_at))::numeric, 2)::text, '-'),
				   string_agg(DISTINCT status, ',')
			  FROM migrations WHERE coordinator_id = $2" >> "$SPLIT"
	done
}

for rows in "${SIZES[@]}"; do
	say "$rows rows: the template users_t ($SHARDS shards)"
	make_template "$rows"
	for m in "${CASE_LIST[@]}"; do
		if [ "$m" = shards ] && [ "$HAS_SHARDS" = 0 ]; then
			printf '%s\tshards\tnot in this build\t-\t-\t-\t-\t-\t-\t-\tskipped\n' "$rows" >> "$RES"
			continue
		fi
		run_case "$rows" "$m"
	done
done

# ---------------------------------------------------------------- report
echo
echo "migration_runner on Citus  ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, PostgreSQL $(q0 -c 'SHOW server_version' | cut -d' ' -f1), Citus $CITUS_VERSION)"
echo "3 nodes on this machine (a coordinator without shards, 2 workers), Unix sockets in one directory;" \
	"users distributed by id, hash, $SHARDS shards; batch $BATCH"
echo "settings per node: fsync=off shared_buffers=512MB wal_level=logical max_wal_size=4GB," \
	"autovacuum off for users, migration_runner.synchronous_commit=$(q0 -c 'SHOW migration_runner.synchronous_commit')"
echo "methods: (1) update: one distributed UPDATE ... WHERE created_at IS NULL"
echo "         (2) global: migration_runner.citus_shards = off, the key range of the whole table through the coordinator"
echo "         (3) shards: migration_runner.citus_shards = on, one slice per shard on the node that holds it"
echo "         migrations are timed from mig_start (or CALL mig_run) to completion; vs update = update's seconds / the method's (>1: faster)"
echo "load: the 1-minute load average just before the run"
echo "time split (seconds): (2) the migration's row in the coordinator's catalog; (3) the sums of the nodes' (per node below)"
echo
awk -F'\t' '
	BEGIN { printf "  %-8s %-7s %-13s %8s %9s %5s %8s %8s %8s %8s %8s  %s\n",
			"rows", "method", "how", "seconds", "vs update", "load", "batches", "bounds s", "action s", "bookk s", "commit s", "check" }
	{ r[NR] = $0; if ($2 == "update" && $11 ~ /^OK/) u[$1] = $4 }
	END {
		for (i = 1; i <= NR; i++) {
			split(r[i], f, "\t")
			ratio = (f[11] ~ /^OK/ && f[4] > 0 && (f[1] in u)) ? sprintf("%.2fx", u[f[1]] / f[4]) : "-"
			printf "  %-8s %-7s %-13s %8s %9s %5s %8s %8s %8s %8s %8s  %s\n",
				f[1], f[2], f[3], f[4], ratio, f[5], f[6], f[7], f[8], f[9], f[10], f[11]
		}
	}' "$RES"
if [ -s "$SPLIT" ]; then
	echo
	echo "per-shard runs, time split per node (the node-local migrations in each worker's catalog, summed;"
	echo "busy = their bounds+action+bookkeeping+commit / the run's seconds: near 100% when the node ran batches all the time;"
	echo "span = from the first shard's start to the last shard's completion on that node)"
	awk -F'\t' '
		BEGIN { printf "  %-8s %-8s %6s %9s %8s %8s %8s %8s %8s %8s %6s %7s  %s\n",
				"rows", "node", "shards", "processed", "batches", "bounds s", "action s", "bookk s", "commit s", "sum s", "busy", "span s", "status" }
		{ printf "  %-8s %-8s %6s %9s %8s %8s %8s %8s %8s %8s %6s %7s  %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 }' "$SPLIT"
fi
echo
bench_footer
