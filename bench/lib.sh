# shellcheck shell=bash
# bench/lib.sh: what the scripts in bench/ share (sourced, not run): a
# temporary directory, builds of this tree or of a git revision installed
# into the server copy, a throw-away cluster with run.sh's settings on a
# Unix socket, run as postgres, and the SQL of the methods that several
# scripts time (the hand-written keyset loop, the table reset, the wait for
# the worker).  run.sh sources it for that SQL only and keeps its own
# cluster code.
#
# The caller sets TREE (the repository) and NAME (its own name, for messages
# and the temporary directory), then calls bench_begin.  Afterwards:
#   PGBIN  the server's bin directory (MR_PG_BINDIR, else the system's)
#   WORK   the temporary directory, removed at exit unless BENCH_KEEP=1 or
#          the script failed
#   q DB [PSQL_ARGS...]  psql as postgres, unaligned, stopping at errors

PGBIN=${MR_PG_BINDIR:-/usr/lib/postgresql/15/bin}
export PATH="$PGBIN:$PATH"
export LANG=C.UTF-8 LC_ALL=C.UTF-8

as_pg() { runuser -u postgres -- env PATH="$PATH" LANG="$LANG" LC_ALL="$LC_ALL" "$@"; }
say() { printf '[%ss] %s\n' "$(( $(date +%s) - T_BEGIN ))" "$*" >&2; }

bench_begin() {
	if [ "$(id -u)" != 0 ]; then
		echo "$NAME: run as root (it installs the extension and runs the cluster as postgres)" >&2
		exit 2
	fi
	T_BEGIN=$(date +%s)
	LOAD_BEGIN=$(cut -d' ' -f1-3 /proc/loadavg)
	WORK="$(mktemp -d "/tmp/mr-bench-${NAME%.sh}.XXXXXX")"
	chown postgres: "$WORK"
	chmod 755 "$WORK"
	PGDATA="$WORK/data"
	SOCK="$WORK/sock"
	LOG="$WORK/server.log"
	install -d -o postgres -g postgres "$SOCK"
	INSTALLED=""
	trap bench_cleanup EXIT
}

# A build is a copy of a tree in $WORK/build-<label>, made as postgres;
# installing it is `make install` as root.  INSTALLED names the build
# installed last.
build_tree() {    # $1 = label, $2 = "tree" or a git revision
	local dir="$WORK/build-$1"
	mkdir -p "$dir"
	if [ "$2" = tree ]; then
		(cd "$TREE" && tar --exclude=./.git --exclude='*.o' --exclude='*.so' \
			--exclude='*.bc' --exclude=./tmp_check --exclude=./tmp_regress -cf - .) |
			tar -C "$dir" -xf -
	else
		git -C "$TREE" archive "$2" | tar -C "$dir" -xf -
	fi
	chown -R postgres: "$dir"
	if ! as_pg make -C "$dir" -j2 PG_CONFIG="$PGBIN/pg_config" > "$WORK/build-$1.log" 2>&1; then
		tail -n 20 "$WORK/build-$1.log" >&2
		return 1
	fi
}
install_build() {    # $1 = label
	[ "$INSTALLED" = "$1" ] && return 0
	make -C "$WORK/build-$1" install PG_CONFIG="$PGBIN/pg_config" >> "$WORK/build-$1.log" 2>&1
	INSTALLED=$1
}

bench_cleanup() {
	local rc=$?
	if [ -f "$PGDATA/postmaster.pid" ]; then
		as_pg pg_ctl -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	# leave this tree's build installed, whatever happened
	if [ -n "$INSTALLED" ] && [ "$INSTALLED" != cur ] && [ -d "$WORK/build-cur" ]; then
		install_build cur || say "could not reinstall this tree's build"
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

# initdb, with run.sh's settings on socket $SOCK and port $1, plus the
# lines on stdin.  The launcher watches the postgres database, which has no
# extension: only CALL mig_run runs in these clusters, unless the lines on
# stdin (later lines win) name the database in which the caller installs it
# (parallel.sh does).
bench_initdb() {    # $1 = port
	PORT=$1
	as_pg initdb -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$WORK/initdb.log" 2>&1 ||
		{ cat "$WORK/initdb.log" >&2; exit 1; }
	{
		cat <<EOF

# ---- bench/$NAME
listen_addresses = ''
port = $PORT
unix_socket_directories = '$SOCK'
shared_buffers = 1GB
max_wal_size = 4GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
wal_buffers = 16MB
work_mem = 64MB
maintenance_work_mem = 512MB
effective_cache_size = 16GB
jit = off
max_worker_processes = 16
log_min_messages = warning
migration_runner.databases = 'postgres'
EOF
		cat
	} >> "$PGDATA/postgresql.conf"
	export PGOPTIONS="-c client_min_messages=warning"
	PSQL=(psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres)
}

# (re)start the server: a preloaded library is read at postmaster start only
bench_restart() {
	if [ -f "$PGDATA/postmaster.pid" ]; then
		as_pg pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	fi
	as_pg pg_ctl -D "$PGDATA" -l "$LOG" -w -t 60 start >/dev/null
}

q() { local db=$1; shift; as_pg "${PSQL[@]}" -d "$db" "$@"; }

# The users table of run.sh, $2 rows, as table $1 of database $3; with
# autovacuum off for it, so that no vacuum or analyze lands in one run
# and not another.  Loaded only: the caller analyses, vacuums, checkpoints.
bench_users_table() {    # $1 = table, $2 = rows, $3 = database
	q "$3" <<EOF
DROP TABLE IF EXISTS $1;
CREATE TABLE $1 (
	id bigint PRIMARY KEY,
	email text NOT NULL,
	inserted_at timestamptz NOT NULL,
	created_at timestamptz,
	updated_at timestamptz) WITH (autovacuum_enabled = off);
INSERT INTO $1 (id, email, inserted_at)
SELECT g, 'user' || g || '@example.com',
	   timestamptz '2020-01-01 00:00:00+00' + g * interval '1 second'
  FROM generate_series(1, $2) g;
EOF
}

# the seed's backfill as a migration action on table $1
bench_action() {
	printf 'UPDATE %s SET created_at = inserted_at, updated_at = inserted_at WHERE id BETWEEN $1 AND $2 AND created_at IS NULL' "$1"
}

# The SQL of a method or a step, printed for the caller's own psql (run.sh's
# q takes no database argument, lib.sh's does).

# Procedure bench_keyset(batch): the keyset loop people write by hand over
# table $1 (run.sh's (b) and (c)).  A batch's last key is found by keyset
# over the primary key (never OFFSET), the UPDATE covers (cursor, last] and
# each batch commits.  The ids here are positive, so the cursor starts at
# min(id) - 1.
bench_keyset_sql() {    # $1 = table
	cat <<EOF
CREATE PROCEDURE bench_keyset(batch integer)
LANGUAGE plpgsql AS \$\$
DECLARE
	cur bigint;
	hi bigint;
BEGIN
	SELECT min(id) - 1 INTO cur FROM $1;
	LOOP
		SELECT max(s.id) INTO hi
		  FROM (SELECT id FROM $1 WHERE id > cur ORDER BY id LIMIT batch) s;
		EXIT WHEN hi IS NULL;
		UPDATE $1 SET created_at = inserted_at, updated_at = inserted_at
		 WHERE id > cur AND id <= hi AND created_at IS NULL;
		cur := hi;
		COMMIT;
	END LOOP;
END
\$\$;
EOF
}

# Rebuilds table $1 as a fresh copy of $2 before a method runs, so that
# every method starts from the same state: same rows, no dead tuples, fresh
# statistics and visibility map, nothing dirty in shared buffers.
bench_reset_sql() {    # $1 = table, $2 = template
	cat <<EOF
DROP TABLE IF EXISTS $1;
CREATE TABLE $1 (LIKE $2 INCLUDING ALL) WITH (autovacuum_enabled = off);
INSERT INTO $1 SELECT * FROM $2;
VACUUM ANALYZE $1;
CHECKPOINT;
EOF
}

# psql lines that time the lines in $2 inside one session, after the setup
# lines in $1: they print "SECS <seconds>" between clock_timestamp() before
# and after, and whatever the body \echo'es.
bench_timed_sql() {    # $1 = setup lines, $2 = timed lines
	cat <<EOF
\\o /dev/null
$1
SELECT extract(epoch FROM clock_timestamp()) AS t0 \\gset
$2
SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 3) AS secs \\gset
\\echo SECS :secs
EOF
}

# The statement that waits for the worker to finish migration $2.  "slices"
# waits in 1 s slices that commit in between, as the README recommends, so
# the waiting session holds no snapshot for long; "one" is a single
# mig_wait() for the whole run, whose snapshot keeps VACUUM (and HOT pruning
# of the catalog row) from cleaning up while it waits.  With $3 the wait
# gives up with an error after that many seconds.
bench_wait_sql() {    # $1 = slices | one, $2 = migration name, [$3 = seconds]
	if [ "$1" = one ]; then
		echo "SELECT mig_wait('$2');"
	elif [ -z "${3:-}" ]; then
		echo "DO \$w\$ BEGIN WHILE mig_wait('$2', '1 s') = 'running' LOOP COMMIT; END LOOP; END \$w\$;"
	else
		echo "DO \$w\$ DECLARE t_end timestamptz := clock_timestamp() + interval '$3 s'; BEGIN
	WHILE mig_wait('$2', '1 s') = 'running' LOOP
		IF clock_timestamp() > t_end THEN
			RAISE EXCEPTION 'migration % still running after $3 s', '$2';
		END IF;
		COMMIT;
	END LOOP; END \$w\$;"
	fi
}

bench_footer() {
	echo "total wall time: $(( $(date +%s) - T_BEGIN )) s"
	echo "load average at start: $LOAD_BEGIN, at end: $(cut -d' ' -f1-3 /proc/loadavg)  (other work on the machine skews the figures)"
}
