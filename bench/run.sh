#!/usr/bin/env bash
#
# bench/run.sh: how fast migration_runner backfills a table, compared with
# what people do by hand.
#
#   bash bench/run.sh [--quick] [--no-build] [SIZE ...]     (as root)
#
#   SIZE        rows in the seed table, one run per size
#               (default: 1000000 5000000; --quick: 200000)
#   --quick     a short run for development (200k rows, unless sizes given)
#   --no-build  use the migration_runner already installed (no make install)
#
# Environment: BENCH_BATCHES (default "1000 10000"), BENCH_METHODS (default
# "a b c d e f"), BENCH_LATENCY_RUNS (default 20), BENCH_RSS=0 turns off the
# sampling of the worker's memory, BENCH_KEEP=1 keeps the temporary directory
# (cluster and server log), MR_PG_BINDIR another (relocated) copy of the
# server to build against, install into and run (default
# /usr/lib/postgresql/15/bin).
#
# It builds and installs the extension from a copy of this tree, starts a
# throw-away cluster as postgres (Unix socket in a temporary directory, no
# TCP), and for every size times the same backfill of
#
#   users(id bigint PRIMARY KEY, email text NOT NULL, inserted_at timestamptz
#         NOT NULL, created_at timestamptz, updated_at timestamptz)
#
# (set created_at and updated_at from inserted_at) done six ways:
#   (a) one UPDATE statement;
#   (b) a PL/pgSQL keyset loop in a procedure, COMMIT per batch;
#   (c) the same with synchronous_commit = off;
#   (d) CALL mig_run() (the extension's batch engine in the session);
#   (e) the background worker: mig_start(), then mig_wait(name, '1 s') in a
#       DO loop that commits between the waits;
#   (f) the same, waited for by a single mig_wait(name), whose snapshot holds
#       back VACUUM for the whole run (the cost the README warns about).
# Before each method the table is rebuilt identically from a template, then
# VACUUM ANALYZE and CHECKPOINT, so every method starts from the same state.
# Every run is verified afterwards (no row left with created_at NULL or
# different from inserted_at); a failed check shows FAIL in the table.
#
# It then reports the worker's start-to-first-batch latency, per-batch time
# at the beginning and end of a long run, where the engine spends a batch's
# time, and the worker's memory at start and end.  It prints figures only:
# nothing here passes or fails on time.
#
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TREE="$(cd "$HERE/.." && pwd)"
# PGBIN, PATH, the locale, and the SQL of the methods (bench_*_sql); the
# cluster code below is run.sh's own
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

# ---------------------------------------------------------------- arguments
QUICK=0
BUILD=1
SIZES=()
for arg in "$@"; do
	case "$arg" in
		--quick) QUICK=1 ;;
		--no-build) BUILD=0 ;;
		-h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;/^set -euo/d'; exit 0 ;;
		''|*[!0-9]*) echo "run.sh: unknown argument '$arg'" >&2; exit 2 ;;
		*) SIZES+=("$arg") ;;
	esac
done
if [ ${#SIZES[@]} -eq 0 ]; then
	if [ "$QUICK" = 1 ]; then SIZES=(200000); else SIZES=(1000000 5000000); fi
fi
read -r -a BATCHES <<< "${BENCH_BATCHES:-1000 10000}"
LATENCY_RUNS="${BENCH_LATENCY_RUNS:-20}"
METHODS=" ${BENCH_METHODS:-a b c d e f} "
RSS="${BENCH_RSS:-1}"
want() { [[ "$METHODS" == *" $1 "* ]]; }

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: run as root (it installs the extension and runs the cluster as postgres)" >&2
	exit 2
fi

T_BEGIN=$(date +%s)
LOAD_BEGIN=$(cut -d' ' -f1-3 /proc/loadavg)
WORK="$(mktemp -d /tmp/mr-bench.XXXXXX)"
chown postgres: "$WORK"
chmod 755 "$WORK"
PGDATA="$WORK/data"
SOCK="$WORK/sock"
LOG="$WORK/server.log"
RESULTS="$WORK/results.tsv"     # size method batch secs status
PORT=54329
install -d -o postgres -g postgres "$SOCK"
: > "$RESULTS"
chmod 666 "$RESULTS"

as_pg() { runuser -u postgres -- env PATH="$PATH" LANG="$LANG" LC_ALL="$LC_ALL" "$@"; }
say() { printf '%s\n' "$*" >&2; }
elapsed() { echo $(( $(date +%s) - T_BEGIN )); }

cleanup() {
	local rc=$?
	[ -n "${POLLER_PID:-}" ] && kill "$POLLER_PID" 2>/dev/null || true
	if [ -f "$PGDATA/postmaster.pid" ]; then
		as_pg pg_ctl -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	if [ $rc -ne 0 ] && [ -f "$LOG" ]; then
		say "---- last lines of the server log ($LOG)"
		tail -n 30 "$LOG" >&2 || true
	fi
	if [ "${BENCH_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
		say "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- build
# The extension is optional for methods (a)-(c): if it does not build or
# install, they still run and (d)/(e) and the extension's sections are
# reported as skipped.
EXT_OK=0
EXT_WHY=""
build_extension() {
	local src="$WORK/src"
	install -d -o postgres -g postgres "$src"
	if [ -f "$TREE/scripts/lib.sh" ]; then
		# the project's shared helper: copy, make as postgres, make install
		(
			# shellcheck source=/dev/null
			. "$TREE/scripts/lib.sh"
			declare -F mr_build_install >/dev/null || exit 3
			mr_build_install "$src" "$WORK/build.log" >/dev/null
		)
		local rc=$?
		[ $rc -ne 3 ] && return $rc
	fi
	(cd "$TREE" && tar --exclude=./.git -cf - .) | tar -C "$src" -xf -
	chown -R postgres: "$src"
	as_pg make -C "$src" clean > "$WORK/build.log" 2>&1 || true
	as_pg make -C "$src" -j2 >> "$WORK/build.log" 2>&1 &&
		make -C "$src" install >> "$WORK/build.log" 2>&1
}
if [ "$BUILD" = 1 ]; then
	say "[$(elapsed)s] building and installing migration_runner"
	if build_extension; then
		EXT_OK=1
	else
		EXT_WHY="build failed"
		say "  build failed (methods (d) and (e) will be skipped); last lines of the log:"
		tail -n 8 "$WORK/build.log" | sed 's/^/    /' >&2
	fi
else
	EXT_OK=1
fi
if [ "$EXT_OK" = 1 ] && [ ! -f "$(pg_config --pkglibdir)/migration_runner.so" ]; then
	EXT_OK=0
	EXT_WHY="migration_runner.so not installed"
fi

# ---------------------------------------------------------------- cluster
say "[$(elapsed)s] starting a throw-away cluster in $PGDATA"
as_pg initdb -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$WORK/initdb.log" 2>&1 ||
	{ cat "$WORK/initdb.log" >&2; exit 1; }

# The same settings for every method: the sizes a DBA would give a machine
# with 24 GB and 2 cores for a bulk backfill.  Durability stays on
# (fsync, full_page_writes, synchronous_commit = on by default); method (c)
# turns synchronous_commit off in its session only.  Autovacuum stays on, as
# in production: batched methods leave it room to run, the single UPDATE does
# not.
cat >> "$PGDATA/postgresql.conf" <<EOF

# ---- bench/run.sh
listen_addresses = ''
port = $PORT
unix_socket_directories = '$SOCK'
shared_buffers = 1GB
max_wal_size = 4GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
wal_buffers = 16MB
wal_compression = off
work_mem = 64MB
maintenance_work_mem = 512MB
effective_cache_size = 16GB
random_page_cost = 1.1
jit = off
max_worker_processes = 16
logging_collector = off
log_min_messages = warning
log_checkpoints = off
log_autovacuum_min_duration = -1
EOF
if [ "$EXT_OK" = 1 ]; then
	cat >> "$PGDATA/postgresql.conf" <<EOF
shared_preload_libraries = 'migration_runner'
migration_runner.databases = 'bench'
# keep every batch of a bench run in migration_batches
migration_runner.history_size = 1000000
EOF
fi

pg_start() { as_pg pg_ctl -D "$PGDATA" -l "$LOG" -w -t 60 start >/dev/null; }
pg_restart() { as_pg pg_ctl -D "$PGDATA" -l "$LOG" -w -t 60 -m fast restart >/dev/null; }
if ! pg_start; then
	if [ "$EXT_OK" = 1 ]; then
		say "  the cluster does not start with migration_runner preloaded; retrying without it"
		sed -i '/^shared_preload_libraries = .migration_runner.$/d;/^migration_runner\./d' "$PGDATA/postgresql.conf"
		EXT_OK=0
		EXT_WHY="server does not start with the library preloaded"
		pg_start
	else
		exit 1
	fi
fi

export PGOPTIONS="-c client_min_messages=warning"
PSQL=(psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres)
q() { "${PSQL[@]}" -d bench "$@"; }

"${PSQL[@]}" -d postgres -c 'CREATE DATABASE bench'
if [ "$EXT_OK" = 1 ]; then
	if q -c 'CREATE EXTENSION migration_runner' 2>"$WORK/ext.err"; then
		# restart so that the launcher finds the database and the extension
		# at once instead of on its next retry
		pg_restart
	else
		EXT_OK=0
		EXT_WHY="CREATE EXTENSION failed: $(head -n 1 "$WORK/ext.err")"
	fi
fi
[ "$EXT_OK" = 1 ] || say "  migration_runner unavailable ($EXT_WHY): skipping (d), (e) and their sections"

SYNC_GUC="-"
HIST_GUC="-"
if [ "$EXT_OK" = 1 ]; then
	SYNC_GUC=$(q -c "SELECT current_setting('migration_runner.synchronous_commit', true)" || echo '?')
	HIST_GUC=$(q -c "SELECT current_setting('migration_runner.history_size', true)" || echo '?')
fi

# (b) and (c): the keyset loop people write by hand (bench/lib.sh)
bench_keyset_sql users | q

ACTION=$(bench_action users)

# ---------------------------------------------------------------- helpers
seed_template() {    # $1 = rows
	q <<EOF
DROP TABLE IF EXISTS users;
DROP TABLE IF EXISTS users_template;
CREATE TABLE users_template (
	id bigint PRIMARY KEY,
	email text NOT NULL,
	inserted_at timestamptz NOT NULL,
	created_at timestamptz,
	updated_at timestamptz) WITH (autovacuum_enabled = off);
INSERT INTO users_template (id, email, inserted_at)
SELECT g, 'user' || g || '@example.com',
	   timestamptz '2020-01-01 00:00:00+00' + g * interval '1 second'
  FROM generate_series(1, $1) g;
VACUUM ANALYZE users_template;
EOF
}

reset_users() { bench_reset_sql users users_template | q; }

# Times the psql lines in $2 inside one session, after the setup lines in $1;
# prints the seconds between clock_timestamp() before and after, then any
# values the body \echo'es with the prefix OUT.
timed() { bench_timed_sql "$1" "$2" | q; }

# Checks the backfill: prints OK or FAIL(<reason>).
verify() {    # $1 = rows, $2 = migration name or ''
	local bad
	bad=$(q -c "SELECT count(*) FILTER (WHERE created_at IS NULL) || ' ' ||
	                   count(*) FILTER (WHERE created_at IS DISTINCT FROM inserted_at
	                                       OR updated_at IS DISTINCT FROM inserted_at) || ' ' ||
	                   count(*)
	              FROM users")
	local nulls wrong total
	read -r nulls wrong total <<< "$bad"
	if [ "$nulls" != 0 ]; then echo "FAIL(${nulls} null)"; return; fi
	if [ "$wrong" != 0 ]; then echo "FAIL(${wrong} wrong)"; return; fi
	if [ "$total" != "$1" ]; then echo "FAIL(${total} rows)"; return; fi
	if [ -n "$2" ]; then
		local st
		st=$(q -c "SELECT status || ' ' || processed FROM migrations WHERE name = '$2'")
		if [ "$st" != "completed $1" ]; then echo "FAIL(${st// /,})"; return; fi
	fi
	echo OK
}

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RESULTS"; }

# The statement that waits for the worker (bench/lib.sh): (e) waits in 1 s
# slices that commit in between, as the README recommends; (f) is one
# mig_wait() for the whole run, whose snapshot keeps VACUUM (and HOT pruning
# of the catalog row) from cleaning up while it waits.
wait_sql() {
	if [ "$1" = f ]; then bench_wait_sql one "$2"; else bench_wait_sql slices "$2"; fi
}

# Runs a method; $1 size, $2 method key, $3 batch, $4 migration name or '',
# $5 setup lines, $6 timed lines.
run_method() {
	local size=$1 key=$2 batch=$3 name=$4 out secs status
	say "[$(elapsed)s]   $key batch=$batch: reset"
	reset_users
	say "[$(elapsed)s]   $key batch=$batch: run"
	if out=$(timed "$5" "$6" 2>"$WORK/err"); then
		secs=$(sed -n 's/^SECS //p' <<< "$out")
		status=$(verify "$size" "$name")
	else
		secs="-"
		status="ERROR($(head -n 1 "$WORK/err" | sed 's/^psql:[^:]*:[0-9]*: //' | cut -c1-60))"
		say "    $(cat "$WORK/err")"
	fi
	say "[$(elapsed)s]   $key batch=$batch: ${secs}s $status"
	record "$size" "$key" "$batch" "$secs" "$status"
}

# Samples the worker's memory while migration $1 runs, into $2 as lines
# "epoch VmRSS RssAnon" (kB), every 0.1 s from the moment its pid is known
# until the process is gone or $3 exists.  Once the pid is known it reads
# /proc with shell builtins only: a psql per sample would take a good part of
# a core from the worker on this 2-core machine.
rss_poller() {    # $1 = migration name, $2 = samples file, $3 = stop flag
	local name=$1 out=$2 stop=$3 pid="" i k v vm an
	: > "$out"
	for i in $(seq 1 1500); do
		[ -f "$stop" ] && return
		pid=$(q -c "SELECT coalesce(
			(SELECT worker_pid FROM migrations WHERE name = '$name'),
			(SELECT pid FROM pg_stat_activity
			  WHERE backend_type ILIKE 'migration_runner worker%'
			  ORDER BY backend_start DESC LIMIT 1))" 2>/dev/null || true)
		[ -n "$pid" ] && [ -r "/proc/$pid/status" ] && break
		pid=""
		sleep 0.02
	done
	[ -n "$pid" ] || return 0
	echo "pid $pid" >> "$out"
	while [ ! -f "$stop" ]; do
		vm=""
		an=""
		{ while read -r k v _; do
			case $k in VmRSS:) vm=$v ;; RssAnon:) an=$v ;; esac
		  done < "/proc/$pid/status"; } 2>/dev/null || break
		[ -n "$vm" ] || break
		echo "$EPOCHREALTIME $vm $an" >> "$out"
		sleep 0.1
	done
}

# Summarises the samples of rss_poller for migration $1 (file $2) into $3:
# "pid VmRSS0 RssAnon0 VmRSS1 RssAnon1 percent1": the first sample, and the
# last one taken before the migration's completed_at, with the percentage of
# the keys whose batches had finished by then.
rss_summary() {    # $1 = migration name, $2 = samples file, $3 = output
	local pid first last t pct
	pid=$(sed -n 's/^pid //p' "$2")
	first=$(grep -v '^pid' "$2" | head -n 1 || true)
	if [ -z "$pid" ] || [ -z "$first" ]; then echo "- - - - - -" > "$3"; return; fi
	local done_at
	done_at=$(q -c "SELECT extract(epoch FROM completed_at) FROM migrations WHERE name = '$1'")
	last=$(grep -v '^pid' "$2" | awk -v d="${done_at:-1e20}" '$1 < d {l=$0} END {print l}')
	[ -n "$last" ] || last="$first"
	t=${last%% *}
	pct=$(q -c "SELECT round(100.0 * coalesce(sum(b.keys), 0) / nullif(m.scanned, 0), 1)
	              FROM migrations m LEFT JOIN migration_batches b
	                ON b.migration_id = m.id AND b.error IS NULL
	               AND b.started_at + b.duration_ms * interval '1 ms' <= to_timestamp($t)
	             WHERE m.name = '$1' GROUP BY m.scanned")
	echo "$pid ${first#* } ${last#* } ${pct:--}" > "$3"
}

# ---------------------------------------------------------------- methods
for size in "${SIZES[@]}"; do
	say "[$(elapsed)s] size $size: seeding the template table"
	seed_template "$size"

	if want a; then
		run_method "$size" a - "" "" \
			"UPDATE users SET created_at = inserted_at, updated_at = inserted_at WHERE created_at IS NULL;"
	fi

	for batch in "${BATCHES[@]}"; do
		if want b; then
			run_method "$size" b "$batch" "" "" "CALL bench_keyset($batch);"
		fi
		if want c; then
			run_method "$size" c "$batch" "" "SET synchronous_commit = off;" "CALL bench_keyset($batch);"
		fi
	done

	for batch in "${BATCHES[@]}"; do
		for key in d e f; do
			if ! want "$key"; then continue; fi
			if [ "$EXT_OK" != 1 ]; then
				record "$size" "$key" "$batch" "-" "SKIP"
				continue
			fi
			name="bench_${key}_${size}_${batch}"
			if [ "$key" = d ]; then
				run_method "$size" d "$batch" "$name" \
					"SELECT mig_define('$name', 'users', \$act\$$ACTION\$act\$, batch_size => $batch);" \
					"CALL mig_run('$name');"
			else
				# the timed part is mig_start() (autocommit: it commits and
				# wakes the launcher) until mig_wait() returns completed.
				# mig_wait is a function, so its statement holds a snapshot
				# while it waits; waiting in 1 s slices from a DO block that
				# commits in between keeps the server's xmin moving, as the
				# README recommends for long waits
				rm -f "$WORK/rss.$name" "$WORK/stop.$name"
				POLLER_PID=""
				if [ "$RSS" = 1 ]; then
					(
						# start sampling once the definition exists
						for _ in $(seq 1 6000); do
							[ -f "$WORK/go.$name" ] && break
							[ -f "$WORK/stop.$name" ] && exit 0
							sleep 0.05
						done
						rss_poller "$name" "$WORK/samples.$name" "$WORK/stop.$name"
					) &
					POLLER_PID=$!
				fi
				run_method "$size" "$key" "$batch" "$name" \
					"SELECT mig_define('$name', 'users', \$act\$$ACTION\$act\$, batch_size => $batch);
\\! touch $WORK/go.$name" \
					"SELECT mig_start('$name');
$(wait_sql "$key" "$name")
SELECT status AS st FROM migrations WHERE name = '$name' \\gset
\\echo OUT :st"
				touch "$WORK/stop.$name"
				if [ -n "$POLLER_PID" ]; then
					wait "$POLLER_PID" 2>/dev/null || true
					rss_summary "$name" "$WORK/samples.$name" "$WORK/rss.$name" || true
				fi
				POLLER_PID=""
			fi
		done
	done
	q -c 'DROP TABLE IF EXISTS users' -c 'DROP TABLE IF EXISTS users_template'
done

# ---------------------------------------------------------------- latency
# Start-to-first-batch latency of the worker.  mig_start() wakes the launcher
# only when its transaction commits, so the clock starts at clock_timestamp()
# read as the last statement before COMMIT (a server-side clock, the same the
# worker uses), and stops at the first batch's started_at in
# migration_batches.  The figure therefore includes the commit itself (a
# fraction of a millisecond here), the launcher's wake-up, the start of the
# dynamic worker and its connection: what a user waits after COMMIT.  Each
# run defines a new migration on a 1000-row table (one batch) and waits for
# it to complete before the next.
if [ "$EXT_OK" = 1 ] && [ "$LATENCY_RUNS" -gt 0 ]; then
	say "[$(elapsed)s] start-to-first-batch latency, $LATENCY_RUNS starts"
	q -c "CREATE TABLE lat_users (id bigint PRIMARY KEY, email text NOT NULL,
		inserted_at timestamptz NOT NULL, created_at timestamptz, updated_at timestamptz)"
	q -c "TRUNCATE lat_users" -c "INSERT INTO lat_users (id, email, inserted_at)
		SELECT g, 'u' || g || '@example.com', now() FROM generate_series(1, 1000) g" -c "VACUUM ANALYZE lat_users"
	: > "$WORK/latency"
	for i in $(seq 1 "$LATENCY_RUNS"); do
		name="lat_$i"
		q -c "UPDATE lat_users SET created_at = NULL, updated_at = NULL" >/dev/null
		if ! q > "$WORK/lat.out" 2>"$WORK/err" <<EOF
\\o /dev/null
SELECT mig_define('$name', 'lat_users',
	\$act\$UPDATE lat_users SET created_at = inserted_at, updated_at = inserted_at WHERE id BETWEEN \$1 AND \$2 AND created_at IS NULL\$act\$,
	batch_size => 1000);
BEGIN;
SELECT mig_start('$name') AS id \\gset
SELECT clock_timestamp() AS t_commit \\gset
COMMIT;
SELECT mig_wait('$name', '60 s') AS st \\gset
SELECT round((extract(epoch FROM b.started_at - :'t_commit'::timestamptz) * 1000)::numeric, 2) AS ms
  FROM migration_batches b WHERE b.migration_id = :id ORDER BY b.batch LIMIT 1 \\gset
\\echo LAT :st :ms
EOF
		then
			say "    latency run $i failed: $(head -n 1 "$WORK/err")"
			continue
		fi
		sed -n 's/^LAT //p' "$WORK/lat.out" >> "$WORK/latency"
	done
fi

# ---------------------------------------------------------------- report
T_END=$(date +%s)
{
echo
echo "migration_runner benchmark  ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, PostgreSQL $(q -c 'SHOW server_version' | cut -d' ' -f1))"
echo "settings for every method: shared_buffers=1GB max_wal_size=4GB checkpoint_timeout=30min wal_buffers=16MB work_mem=64MB, fsync/full_page_writes on, autovacuum off for users"
echo "migration_runner.synchronous_commit=$SYNC_GUC  migration_runner.history_size=$HIST_GUC"
echo "methods: (a) one UPDATE   (b) PL/pgSQL keyset loop, COMMIT per batch   (c) (b) with synchronous_commit=off"
echo "         (d) CALL mig_run()   (e) worker: mig_start(), then mig_wait(name, '1 s') in a loop that commits"
echo "         (f) worker: mig_start(), then one mig_wait(name) (holds a snapshot for the whole run)"
echo "ratio: seconds of (a) / seconds of the method, same size (>1 = faster than one UPDATE)"
echo
awk -F'\t' '
	{ size[NR]=$1; m[NR]=$2; b[NR]=$3; s[NR]=$4; st[NR]=$5; if ($2=="a" && $5=="OK") base[$1]=$4 }
	END {
		name["a"]="(a) single UPDATE"; name["b"]="(b) plpgsql keyset"; name["c"]="(c) plpgsql, sync_commit=off"
		name["d"]="(d) CALL mig_run"; name["e"]="(e) worker, wait in slices"; name["f"]="(f) worker, one mig_wait"
		printf "%-9s  %-29s %6s %9s %10s %8s  %s\n", "size", "method", "batch", "seconds", "rows/s", "ratio", "check"
		for (i=1; i<=NR; i++) {
			if (s[i] == "-" || s[i] == "") { secs="-"; rate="-"; ratio="-" }
			else {
				secs=sprintf("%.2f", s[i]); rate=(s[i] > 0) ? sprintf("%d", size[i]/s[i]) : "-"
				ratio=(base[size[i]] != "" && s[i] > 0) ? sprintf("%.2fx", base[size[i]]/s[i]) : "-"
			}
			printf "%-9s  %-29s %6s %9s %10s %8s  %s\n", size[i], name[m[i]], b[i], secs, rate, ratio, st[i]
		}
	}' "$RESULTS"

if [ "$EXT_OK" != 1 ]; then
	echo
	echo "migration_runner unavailable ($EXT_WHY): (d), (e), latency, per-batch, breakdown and RSS skipped"
else
	echo
	echo "worker start -> first batch latency ($LATENCY_RUNS starts; from clock_timestamp() just before COMMIT of mig_start to the first batch's started_at)"
	if [ -s "$WORK/latency" ]; then
		awk '$1=="completed" && $2!="" {print $2} $1!="completed" {bad++} END{if (bad) print "not completed: " bad > "/dev/stderr"}' "$WORK/latency" |
			sort -n | awk '{v[NR]=$1} END {
				if (NR==0) { print "  no sample"; exit }
				med = (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2
				printf "  median %.1f ms   min %.1f ms   max %.1f ms   (n=%d)\n", med, v[1], v[NR], NR }'
	else
		echo "  no sample (see the messages above)"
	fi

	echo
	echo "per-batch time, first 10% vs last 10% of the batches (migration_batches.duration_ms)"
	printf "  %-26s %8s %12s %12s %8s\n" "migration" "batches" "first ms" "last ms" "last/first"
	q -F $'\t' -c "
		WITH b AS (
			SELECT m.name, m.batches AS nb, b.duration_ms,
				   ntile(10) OVER (PARTITION BY m.id ORDER BY b.batch) AS decile,
				   count(*) OVER (PARTITION BY m.id) AS kept
			  FROM migrations m JOIN migration_batches b ON b.migration_id = m.id
			 WHERE m.name LIKE 'bench\_%' AND b.error IS NULL)
		SELECT name, nb, kept,
			   round(avg(duration_ms) FILTER (WHERE decile = 1)::numeric, 2),
			   round(avg(duration_ms) FILTER (WHERE decile = 10)::numeric, 2),
			   round((avg(duration_ms) FILTER (WHERE decile = 10)
					  / nullif(avg(duration_ms) FILTER (WHERE decile = 1), 0))::numeric, 2)
		  FROM b GROUP BY name, nb, kept
		 ORDER BY split_part(name, '_', 3)::bigint, split_part(name, '_', 4)::int, name" |
		awk -F'\t' '{ note = ($2 != $3) ? sprintf(" (only %d kept)", $3) : ""
			printf "  %-26s %8s %12s %12s %7sx%s\n", $1, $2, $4, $5, $6, note }'

	echo
	echo "where the engine spends a batch (migrations.bounds_ms/action_ms/bookkeeping_ms/commit_ms; % of their sum, and the sum as % of wall time)"
	printf "  %-26s %7s %8s %8s %12s %8s %10s\n" "migration" "wall s" "bounds" "action" "bookkeeping" "commit" "sum/wall"
	q -F $'\t' -c "
		SELECT name,
			   round(extract(epoch FROM completed_at - started_at)::numeric, 2),
			   round((100 * bounds_ms / nullif(t, 0))::numeric, 1),
			   round((100 * action_ms / nullif(t, 0))::numeric, 1),
			   round((100 * bookkeeping_ms / nullif(t, 0))::numeric, 1),
			   round((100 * commit_ms / nullif(t, 0))::numeric, 1),
			   round((100 * t / 1000 / nullif(extract(epoch FROM completed_at - started_at), 0))::numeric, 1)
		  FROM migrations, LATERAL (SELECT bounds_ms + action_ms + bookkeeping_ms + commit_ms AS t) s
		 WHERE name LIKE 'bench\_%'
		 ORDER BY split_part(name, '_', 3)::bigint, split_part(name, '_', 4)::int, name" |
		awk -F'\t' '{ printf "  %-26s %7s %7s%% %7s%% %11s%% %7s%% %9s%%\n", $1, $2, $3, $4, $5, $6, $7 }'

	echo
	echo "worker memory (/proc/<pid>/status, kB): shortly after start and at the last sample before completion"
	echo "  (VmRSS counts the shared buffers the worker touched; RssAnon is its private memory)"
	printf "  %-26s %8s %10s %10s %10s %10s %8s\n" "migration" "pid" "VmRSS 0" "RssAnon 0" "VmRSS end" "RssAnon end" "at %"
	found=0
	for f in $(cd "$WORK" && ls rss.* 2>/dev/null | sort -t_ -k3,3n -k4,4n); do
		f="$WORK/$f"
		found=1
		read -r pid v0 a0 v1 a1 pct < "$f"
		printf "  %-26s %8s %10s %10s %10s %10s %8s\n" "${f##*/rss.}" "$pid" "$v0" "$a0" "$v1" "$a1" "$pct"
	done
	[ "$found" = 1 ] || echo "  no sample"
fi
echo
echo "total wall time: $(( T_END - T_BEGIN )) s  (sizes: ${SIZES[*]}; batches: ${BATCHES[*]})"
echo "load average at start: $LOAD_BEGIN, at end: $(cut -d' ' -f1-3 /proc/loadavg)  (other work on the machine skews the figures)"
}
