#!/usr/bin/env bash
# demo.sh: the README's demo command.  On a fresh Debian 12 (run as root) it
# installs what is missing, builds and installs migration_runner, starts a
# throw-away cluster with the background worker preloaded, fills a `users`
# table, defines the seed's example migration (examples/
# add_user_timestamps_v1.sql), starts it and shows its progress from
# mig_status until it is done, then checks that no row was left behind.
#
#   sudo bash scripts/demo.sh [ROWS] [--rows N] [--batch-size N] [--timeout S]
#
# Defaults: 1,000,000 rows, batch size 100 (10,000 batches), timeout 900 s.
# Environment: DEMO_ROWS, DEMO_BATCH_SIZE, DEMO_TIMEOUT set the same;
# DEMO_KEEP=1 keeps the cluster's data directory (the server is always
# stopped).  Exits non-zero unless the migration completed and every row was
# migrated.  Needs no terminal (CI=true, no stdin is fine).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MIGRATION=add_user_timestamps_v1
rows=${DEMO_ROWS:-1000000}
batch_size=${DEMO_BATCH_SIZE:-100}
timeout=${DEMO_TIMEOUT:-900}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
args=("$@")
while (($#)); do
	case $1 in
	--rows) rows=${2:?--rows needs a value}; shift ;;
	--rows=*) rows=${1#*=} ;;
	--batch-size) batch_size=${2:?--batch-size needs a value}; shift ;;
	--batch-size=*) batch_size=${1#*=} ;;
	--timeout) timeout=${2:?--timeout needs a value}; shift ;;
	--timeout=*) timeout=${1#*=} ;;
	-h | --help) usage ;;
	[0-9]*) rows=$1 ;;
	*) echo "demo.sh: unknown argument: $1" >&2; usage 2 >&2 ;;
	esac
	shift
done
rows=${rows//[,_]/}
for v in rows batch_size timeout; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || mr_die "$v must be a positive integer, not '${!v}'"
done

mr_setup "${args[@]}"
cd /
WORK=$(mr_mktemp mr-demo)

cleanup() {
	local rc=$?
	mr_cluster_stop
	if [[ ${DEMO_KEEP:-0} == 1 ]]; then
		echo "kept (DEMO_KEEP=1): $WORK  (start it again: runuser -u postgres --" \
			"$PG_BINDIR/pg_ctl -D $MR_PGDATA -l $MR_PGLOG start)"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

demo_sql() { mr_psql demo "$@"; }

mr_log "build and install migration_runner (build log: $WORK/build.log)"
mr_build_install "$WORK/build" "$WORK/build.log"

mr_log "throw-away cluster in $WORK (socket only, worker preloaded)"
mr_cluster_init "$WORK"
# every database is served (migration_runner.databases = '*'): no restart
mr_cluster_start
mr_psql postgres -c 'CREATE DATABASE demo'
echo "    psql -h $MR_SOCKDIR -p $MR_PGPORT -U postgres demo"

mr_log "users table with $rows rows"
t0=$SECONDS
demo_sql -v rows="$rows" <<'SQL'
CREATE EXTENSION migration_runner;
CREATE TABLE users (
	id          bigint PRIMARY KEY,
	email       text NOT NULL,
	inserted_at timestamptz NOT NULL,
	created_at  timestamptz,
	updated_at  timestamptz
);
INSERT INTO users (id, email, inserted_at)
SELECT g, 'user' || g || '@example.com',
	   timestamptz '2020-01-01 00:00:00+00' + g * interval '1 second'
  FROM generate_series(1, :rows) AS g;
ANALYZE users;
SQL
echo "    loaded in $((SECONDS - t0)) s"

mr_log "examples/$MIGRATION.sql (batch size $batch_size), then mig_start"
demo_sql -v batch_size="$batch_size" -f "$WORK/build/examples/$MIGRATION.sql"
demo_sql -c "SELECT mig_start('$MIGRATION')"

mr_log "progress (mig_status every 0.5 s, timeout $timeout s)"
progress_sql="
SELECT status,
	   format('%-9s processed %s/%s (%s%%)  %s rows/s  eta %s  batches %s',
			  status, processed, coalesce(total_estimate::text, '?'),
			  coalesce(percent::text, '?'), coalesce(rows_per_sec::text, '-'),
			  coalesce(eta::text, '-'), batches)
  FROM mig_status WHERE name = '$MIGRATION'"
start_us=${EPOCHREALTIME/./}
status=
while :; do
	if ! IFS='|' read -r status line < <(demo_sql -At -c "$progress_sql" 2>&1); then
		status=unknown line="(no row in mig_status)"
	fi
	tenths=$(((${EPOCHREALTIME/./} - start_us) / 100000))
	printf '  %4d.%ds  %s\n' $((tenths / 10)) $((tenths % 10)) "$line"
	case $status in completed | failed | cancelled) break ;; esac
	if ((tenths >= timeout * 10)); then
		echo "demo.sh: timed out after $timeout s with status '$status'" >&2
		break
	fi
	sleep 0.5
done

mr_log "final mig_status"
demo_sql -c '\x on' -c "SELECT * FROM mig_status WHERE name = '$MIGRATION'"

mr_log "verification"
left=$(demo_sql -At -c 'SELECT count(*) FROM users WHERE created_at IS NULL OR updated_at IS NULL')
demo_sql -c "SELECT count(*) AS users,
	   count(*) FILTER (WHERE created_at IS NULL) AS created_at_null,
	   count(*) FILTER (WHERE updated_at IS NULL) AS updated_at_null,
	   count(*) FILTER (WHERE created_at IS DISTINCT FROM inserted_at
						   OR updated_at IS DISTINCT FROM inserted_at) AS mismatched
  FROM users"

if [[ $status == completed && $left == 0 ]]; then
	mr_log "demo OK: $MIGRATION completed, $rows rows migrated"
else
	mr_log "demo FAILED: status '$status', $left row(s) not migrated"
	echo "---- last 30 lines of the server log"
	tail -n 30 "$MR_PGLOG"
	exit 1
fi
