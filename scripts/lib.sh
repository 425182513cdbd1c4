# shellcheck shell=bash
# lib.sh: shared pieces of scripts/test.sh and scripts/demo.sh (sourced, not
# run).  Both scripts run as root: packages and `make install` need root,
# while initdb refuses it and pg_regress writes into the build tree, so
# everything else runs as the `postgres` user in a copy of the source tree
# that it owns.
#
# Provides:
#   mr_setup          root check, PATH/locale, install-deps.sh
#   mr_as_postgres    run a command as postgres with the same environment
#   mr_build_install  copy the tree to a temp dir, build there, make install
#   mr_cluster_*      a throw-away cluster on a Unix socket in a temp dir
#   mr_psql           psql as postgres against that cluster
#
# Settings (environment): PG_MAJOR (15), MR_TMPDIR (/tmp) where temp dirs go.

MR_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=${PG_MAJOR:-15}
# MR_PG_BINDIR: another (relocated) copy of the server, for parallel work
PG_BINDIR=${MR_PG_BINDIR:-/usr/lib/postgresql/$PG_MAJOR/bin}
PG_CONFIG=$PG_BINDIR/pg_config
MR_TMPDIR=${MR_TMPDIR:-/tmp}

mr_log() { printf '==> %s\n' "$*"; }
mr_die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# mr_setup: be root (re-run through sudo when possible), install the
# packages, and set up an environment that works from a stock PATH.
mr_setup() {
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 ||
			mr_die "run as root: sudo bash scripts/${0##*/}"
		exec sudo -- bash "$0" "$@"
	fi
	bash "$MR_ROOT/scripts/install-deps.sh"
	[[ -x $PG_CONFIG ]] || mr_die "$PG_CONFIG not found"
	id postgres >/dev/null 2>&1 || mr_die "no postgres user (is postgresql-$PG_MAJOR installed?)"

	export PATH="$PG_BINDIR:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	export LANG=C.UTF-8 LC_ALL=C.UTF-8
	# connection settings of the caller must not leak into the test servers
	unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGPASSWORD PGSERVICE \
		PGOPTIONS PGDATA PGSSLMODE TEMP_CONFIG PG_REGRESS PROVE_FLAGS \
		PROVE_TESTS REGRESS_OPTS EXTRA_REGRESS_OPTS
}

# mr_as_postgres CMD...: run CMD as postgres, keeping PATH and locale, with
# postgres' own HOME (psql/perl may write there).
mr_as_postgres() {
	runuser -u postgres -- env HOME=/var/lib/postgresql PATH="$PATH" \
		LANG="$LANG" LC_ALL="$LC_ALL" "$@"
}

# mr_mktemp PREFIX: a new directory owned by postgres (mode 700); prints it.
mr_mktemp() {
	local dir
	dir=$(mktemp -d "$MR_TMPDIR/$1.XXXXXX")
	chown postgres:postgres "$dir"
	printf '%s\n' "$dir"
}

# mr_copy_tree DEST: copy the source tree without .git and build products to
# DEST (created if needed) and give it to postgres.
mr_copy_tree() {
	local dest=$1
	mkdir -p "$dest"
	tar -C "$MR_ROOT" -cf - \
		--exclude=./.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude=.deps --exclude=./results \
		--exclude=./output_iso --exclude=./tmp_check --exclude=./tmp_check_iso \
		--exclude=./tmp_regress --exclude=./log \
		--exclude=./regression.diffs --exclude=./regression.out . |
		tar -C "$dest" -xf -
	chown -R postgres:postgres "$dest"
}

# mr_build_install DEST LOGFILE: copy the tree to DEST, build it as postgres
# (the Makefile adds -Wall -Werror) and install it as root.  Output goes to
# LOGFILE; on failure its tail is printed and 1 returned.
mr_build_install() {
	local dest=$1 logfile=$2
	mr_copy_tree "$dest"
	: >"$logfile"
	chown postgres:postgres "$logfile"
	if ! mr_as_postgres make -C "$dest" -j"$(nproc)" PG_CONFIG="$PG_CONFIG" >>"$logfile" 2>&1; then
		echo "---- build failed (make as postgres in $dest); last lines of $logfile:"
		grep -vE '^(gcc|cc|clang|/usr/bin/clang[-0-9]*) ' "$logfile" | tail -n 60
		return 1
	fi
	if ! make -C "$dest" install PG_CONFIG="$PG_CONFIG" >>"$logfile" 2>&1; then
		echo "---- make install failed; last lines of $logfile:"
		tail -n 30 "$logfile"
		return 1
	fi
}

# mr_free_port: print a TCP port that no server on this machine uses (the
# port also names the Unix socket and the shared memory key).
mr_free_port() {
	local port _
	for _ in $(seq 1 200); do
		port=$((20000 + RANDOM % 30000))
		[[ -e /tmp/.s.PGSQL.$port || -e /var/run/postgresql/.s.PGSQL.$port ]] && continue
		# a refused connection means nobody listens there
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			printf '%s\n' "$port"
			return 0
		fi
	done
	mr_die "no free port found"
}

# Cluster state, set by mr_cluster_init.
MR_PGDATA=
MR_SOCKDIR=
MR_PGPORT=
MR_PGLOG=

# mr_cluster_init BASEDIR [CONF_LINE...]: initdb a throw-away cluster as
# postgres in BASEDIR/data (BASEDIR must be postgres' and short enough for a
# Unix socket path), listening only on a socket in BASEDIR/sock, on a free
# port, with the extension preloaded and the given extra postgresql.conf
# lines.  The server log is BASEDIR/server.log.  Returns 1 if initdb fails.
mr_cluster_init() {
	local base=$1 line
	shift
	MR_PGDATA=$base/data
	MR_SOCKDIR=$base/sock
	MR_PGLOG=$base/server.log
	MR_PGPORT=$(mr_free_port)
	mr_as_postgres mkdir -p "$MR_SOCKDIR"
	if ! mr_as_postgres initdb -D "$MR_PGDATA" -U postgres --auth=trust \
		--encoding=UTF8 --locale=C.UTF-8 >"$base/initdb.log" 2>&1; then
		echo "---- initdb failed:"
		cat "$base/initdb.log"
		return 1
	fi
	{
		echo "# added by scripts/lib.sh"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$MR_SOCKDIR'"
		echo "port = $MR_PGPORT"
		echo "shared_preload_libraries = 'migration_runner'"
		echo "max_worker_processes = 16"
		for line in "$@"; do echo "$line"; done
	} >>"$MR_PGDATA/postgresql.conf"
}

# mr_cluster_start [PG_CTL_OPTIONS...]: start the cluster and wait for it.
mr_cluster_start() {
	if ! mr_as_postgres pg_ctl -D "$MR_PGDATA" -l "$MR_PGLOG" -w -t 60 "$@" start >/dev/null; then
		echo "---- server did not start; last lines of $MR_PGLOG:"
		tail -n 30 "$MR_PGLOG" 2>/dev/null || true
		return 1
	fi
}

# mr_cluster_stop: stop the cluster if it runs (fast, then immediate).
mr_cluster_stop() {
	[[ -n $MR_PGDATA && -f $MR_PGDATA/postmaster.pid ]] || return 0
	mr_as_postgres pg_ctl -D "$MR_PGDATA" -m fast -w -t 30 stop >/dev/null 2>&1 ||
		mr_as_postgres pg_ctl -D "$MR_PGDATA" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
		true
}

# mr_psql DB [PSQL_ARGS...]: psql as postgres on the cluster, stopping at the
# first error, without reading ~/.psqlrc.
mr_psql() {
	local db=$1
	shift
	mr_as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$MR_SOCKDIR" -p "$MR_PGPORT" \
		-U postgres -d "$db" "$@"
}
