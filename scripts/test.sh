#!/usr/bin/env bash
# test.sh: the README's test command.  Builds migration_runner and runs every
# kind of test the project has, then prints a per-suite table and, as its last
# line, `N passed, N failed`.  Exits non-zero on any failure.
#
#   sudo bash scripts/test.sh          (or, as root: bash scripts/test.sh)
#
# Steps (each kind runs even when an earlier one failed):
#   1. scripts/install-deps.sh, then copy the tree (without .git and build
#      products) to a temp dir owned by postgres, `make` there as postgres,
#      `make install` as root.
#      Then release 1.0 for the upgrade test (test/t/031_upgrade.pl): when
#      git and the repository's history are there, `git archive` of the
#      release commit is built and installed into a copy of the PostgreSQL
#      installation, whose bin directory goes to the TAP tests as
#      MR_PG10_BINDIR (else MR_PG10_UNAVAILABLE says why, and the test
#      skips).  A git clone of the repository goes to them as MR_GIT_CLONE
#      for `make dist` (test/t/033_packaging.pl).
#   2. pg_regress   sql/[0-9]*.sql vs expected/   make installcheck (REGRESS)
#   3. isolation    specs/*.spec                  make installcheck (ISOLATION)
#   4. Perl TAP     test/t/*.pl                   make installcheck (TAP_TESTS)
#      Before it, Citus (for test/t/citus_*.pl) is built from
#      ../shared/vendor/citus when it is not installed and that directory
#      exists; without Citus those files skip, and the summary's Citus row
#      says "skipped: Citus not available" (never counted as passed).
#      2-4 each run alone (the other two variables emptied on the make
#      command line), in the throw-away instances the Makefile configures.
#   5. pgTAP        test/pgtap/*.sql              pg_prove, see below
#   6. log scan     every server log of 2-5 (pg_regress: log/, output_iso/log/;
#      TAP: tmp_check/log/*.log but not regress_log_*) for PANIC, TRAP (failed
#      assertion), "terminated by signal" and "server process (PID n)" (a
#      backend that crashed).  The crash tests kill -9 the postmaster, which
#      logs nothing of the kind, so any such line is a real crash.  Counts
#      as one test.
# A kind with no test files yet is reported as skipped; a kind that has files
# but prints no summary counts as failed.
#
# pgTAP: one throw-away cluster (initdb as postgres, Unix socket in a temp dir,
# no TCP, a free port, the library preloaded, fsync off).  Every file gets a
# fresh database pgtap<n>_<file> in which `pgtap` and `migration_runner` are
# already created (files must not CREATE EXTENSION migration_runner again;
# use IF NOT EXISTS if needed), and the server is restarted with
# migration_runner.databases set to that database, so the background workers
# serve the file's database only and the files are independent of each other.
# Roles are cluster-wide: a file that commits a CREATE ROLE should drop it.
#
# Environment: MR_KEEP=1 keeps the temp dir (build copy, logs, clusters);
# MR_SUITE_TIMEOUT (default 1200 s) bounds each kind; PG_MAJOR (15).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mr_setup "$@"
cd /

MR_SUITE_TIMEOUT=${MR_SUITE_TIMEOUT:-1200}
WORK=$(mr_mktemp mr-test)
BUILD=$WORK/build
PGTAP_BASE=$WORK/pgtap

cleanup() {
	local rc=$? pidfile
	mr_cluster_stop
	# servers a timed-out or aborted suite left behind (only our own temp dir)
	while IFS= read -r pidfile; do
		mr_as_postgres pg_ctl -D "$(dirname "$pidfile")" -m immediate -w -t 30 stop \
			>/dev/null 2>&1 || true
	done < <(find "$WORK" -name postmaster.pid 2>/dev/null)
	[[ ${MR_KEEP:-0} == 1 ]] || rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# results: one row per suite
S_NAME=() S_PASS=() S_FAIL=() S_NOTE=()
record() { S_NAME+=("$1") S_PASS+=("$2") S_FAIL+=("$3") S_NOTE+=("$4"); }

# parse_pg_regress LOG: set P, F, NOTE from pg_regress' summary; 1 if none.
# Forms (PostgreSQL 15): " All N tests passed.", " P of T tests passed, I
# failed test(s) ignored.", " F of T tests failed.", " F of T tests failed,
# I of these failures ignored." (16+ prefixes "# ").
parse_pg_regress() {
	local line
	line=$(grep -E '^[# ]*(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests (passed|failed))' "$1" | tail -n 1) || true
	NOTE=
	if [[ $line =~ All\ ([0-9]+)\ tests\ passed ]]; then
		P=${BASH_REMATCH[1]} F=0
	elif [[ $line =~ ([0-9]+)\ of\ ([0-9]+)\ tests\ passed,\ ([0-9]+)\ failed ]]; then
		P=${BASH_REMATCH[1]} F=0 NOTE="${BASH_REMATCH[3]} failure(s) ignored"
	elif [[ $line =~ ([0-9]+)\ of\ ([0-9]+)\ tests\ failed,\ ([0-9]+)\ of\ these ]]; then
		P=$((BASH_REMATCH[2] - BASH_REMATCH[1]))
		F=$((BASH_REMATCH[1] - BASH_REMATCH[3]))
		NOTE="${BASH_REMATCH[3]} failure(s) ignored"
	elif [[ $line =~ ([0-9]+)\ of\ ([0-9]+)\ tests\ failed ]]; then
		P=$((BASH_REMATCH[2] - BASH_REMATCH[1])) F=${BASH_REMATCH[1]}
	else
		return 1
	fi
}

# parse_tap LOG: set P, F, NOTE and FAILED_FILES from a prove / pg_prove
# summary ("Files=n, Tests=N, ..." and "Result: PASS|FAIL"); 1 if none.
# F counts the failed subtests of each file listed in the Test Summary
# Report, and 1 for a listed file that failed without a failed subtest
# (died, bad plan, non-zero exit); files listed only for "TODO passed" are
# not failures.
parse_tap() {
	local tests result failed_sub counted
	tests=$(sed -nE 's/^Files=[0-9]+, Tests=([0-9]+).*/\1/p' "$1" | tail -n 1)
	result=$(sed -nE 's/^Result: ([A-Z]+).*/\1/p' "$1" | tail -n 1)
	[[ -n $tests && -n $result ]] || return 1
	NOTE='' FAILED_FILES=''
	if [[ $result == PASS ]]; then
		P=$tests F=0
		return 0
	fi
	read -r failed_sub counted FAILED_FILES < <(awk '
		function flush() {
			if (!open) return
			if (f > 0 || w != 0 || perr) {
				counted += (f > 0 ? f : 1); files = files " " name
			}
			sub_total += f; open = 0
		}
		/\(Wstat: [0-9]+.* Tests: [0-9]+ Failed: [0-9]+\)$/ {
			flush(); open = 1; perr = 0; name = $1
			match($0, /Wstat: [0-9]+/); w = substr($0, RSTART + 7, RLENGTH - 7) + 0
			match($0, /Failed: [0-9]+/); f = substr($0, RSTART + 8, RLENGTH - 8) + 0
			next
		}
		/^  Parse errors:/ { perr = 1 }
		/^Files=[0-9]+, Tests=/ { flush() }
		END { flush(); print sub_total + 0, counted + 0 files }' "$1")
	P=$((tests - failed_sub)) F=$counted
	((P >= 0)) || P=0
	((F > 0)) || F=1
	NOTE="Result: $result"
}

# show_tap_logs: the tails of the TAP logs of the failed files (all when
# the failed files are not known).
show_tap_logs() {
	local f logs=()
	for f in $FAILED_FILES; do
		f=${f##*/}
		logs+=("$BUILD/tmp_check/log/regress_log_${f%.pl}")
	done
	((${#logs[@]})) || logs=("$BUILD"/tmp_check/log/regress_log_*)
	for f in "${logs[@]}"; do
		[[ -f $f ]] || continue
		echo "---- last 80 lines of ${f#"$BUILD"/}"
		tail -n 80 "$f"
	done
}

# make_suite NAME PARSER LOG DIFFS VARS...: one make-driven kind: make
# installcheck as postgres in the build copy with the VARS overrides (output
# shown and kept in LOG), parsed by PARSER; on failure DIFFS (relative to
# the build copy) or the TAP logs are shown.
make_suite() {
	local name=$1 parser=$2 log=$3 diffs=$4 t0=$SECONDS
	shift 4
	echo
	mr_log "$name: make installcheck $*"
	set +e
	mr_as_postgres timeout -k 30 "$MR_SUITE_TIMEOUT" \
		make -C "$BUILD" --no-print-directory installcheck PG_CONFIG="$PG_CONFIG" "$@" 2>&1 |
		tee "$log"
	RC=${PIPESTATUS[0]}
	set -e
	FAILED_FILES=
	if $parser "$log"; then
		if ((RC != 0 && F == 0)); then
			F=1 NOTE="${NOTE:+$NOTE; }exit status $RC but no failure reported"
		fi
	else
		P=0 F=1 NOTE="no summary printed (exit status $RC)"
	fi
	if ((RC == 124 || RC == 137)); then
		NOTE="${NOTE:+$NOTE; }timed out after ${MR_SUITE_TIMEOUT}s"
	fi
	record "$name" "$P" "$F" "${NOTE:+$NOTE; }$((SECONDS - t0))s"
	((F > 0)) || return 0
	if [[ -n $diffs && -f $BUILD/$diffs ]]; then
		echo "---- $diffs (first 300 lines)"
		head -n 300 "$BUILD/$diffs"
	fi
	[[ $parser != parse_tap ]] || show_tap_logs
}

# pgtap_file FILE: set up the file's database, restart the server for it and
# run pg_prove; adds to TP, TF and NOTES.
pgtap_file() {
	local f=$1 base db log
	base=${f##*/}
	base=${base%.sql}
	PGTAP_N=$((PGTAP_N + 1))
	db=pgtap${PGTAP_N}_$(tr -c 'a-z0-9_\n' '_' <<<"${base,,}")
	db=${db:0:63}
	log=$PGTAP_BASE/$base.out
	if ! {
		mr_psql postgres -c "CREATE DATABASE \"$db\"" &&
			mr_psql "$db" -c 'CREATE EXTENSION pgtap' \
				-c 'CREATE EXTENSION migration_runner' &&
			mr_as_postgres pg_ctl -D "$MR_PGDATA" -m fast -w -t 60 stop &&
			mr_cluster_start -o "-c migration_runner.databases=$db"
	} >"$log" 2>&1; then
		cat "$log"
		TF=$((TF + 1)) NOTES+=("$base: set-up failed")
		return 0
	fi
	set +e
	mr_as_postgres timeout -k 30 "$MR_SUITE_TIMEOUT" \
		pg_prove -h "$MR_SOCKDIR" -p "$MR_PGPORT" -U postgres -d "$db" "$f" 2>&1 |
		sed "s|$BUILD/||" | tee "$log"
	RC=${PIPESTATUS[0]}
	set -e
	if parse_tap "$log"; then
		if ((RC != 0 && F == 0)); then
			F=1 NOTES+=("$base: exit status $RC")
		fi
	else
		P=0 F=1 NOTES+=("$base: no summary (exit status $RC)")
	fi
	TP=$((TP + P)) TF=$((TF + F))
}

# pgtap_suite FILES...: the pgTAP kind (see the header).
pgtap_suite() {
	local f t0=$SECONDS note
	TP=0 TF=0 NOTES=() PGTAP_N=0
	echo
	mr_log "pgTAP: pg_prove on $# file(s), a fresh database each"
	mr_as_postgres mkdir "$PGTAP_BASE"
	if mr_cluster_init "$PGTAP_BASE" "fsync = off" && mr_cluster_start; then
		for f in "$@"; do
			if [[ -f $MR_PGDATA/postmaster.pid ]] || mr_cluster_start; then
				pgtap_file "$f"
			else
				TF=$((TF + 1)) NOTES+=("${f##*/}: not run, server down")
			fi
		done
	else
		TF=1 NOTES+=("server did not start")
	fi
	if ((TF > 0)) && [[ -f $MR_PGLOG ]]; then
		echo "---- last 40 lines of the pgTAP server log"
		tail -n 40 "$MR_PGLOG"
	fi
	mr_cluster_stop
	note=$(IFS=';'; echo "${NOTES[*]:-}")
	record pgTAP "$TP" "$TF" "$# file(s)${note:+; $note}; $((SECONDS - t0))s"
}

# The commit of release 1.0 in this repository's history.
MR_RELEASE_10=4619733

# mr_git ARGS...: git on the source tree, whoever owns it (test.sh runs as
# root, a clone may belong to someone else).
mr_git() {
	git -c safe.directory='*' -C "$MR_ROOT" "$@"
}

# prepare_release_10: build release 1.0 from the git history into a copy of
# the PostgreSQL installation (Debian's layout: PREFIX/lib/postgresql/N and
# PREFIX/share/postgresql/N, relocatable) owned by postgres, and export
# MR_PG10_BINDIR; or export MR_PG10_UNAVAILABLE with the reason.  First it
# clones the repository for the packaging test (MR_GIT_CLONE), when the
# source tree is a git repository.  Returns 1 when the history is there but
# the build fails.
prepare_release_10() {
	local dest=$WORK/rel10 prefix sharedir log=$WORK/rel10.log
	if ! command -v git >/dev/null 2>&1; then
		export MR_PG10_UNAVAILABLE="git is not installed"
		return 0
	fi
	# for make dist; the test that needs it skips without it
	if mr_git clone -q --no-hardlinks "$MR_ROOT" "$WORK/clone" >/dev/null 2>&1; then
		chown -R postgres:postgres "$WORK/clone"
		export MR_GIT_CLONE=$WORK/clone
	fi
	if ! mr_git cat-file -e "$MR_RELEASE_10^{commit}" 2>/dev/null; then
		export MR_PG10_UNAVAILABLE="commit $MR_RELEASE_10 (release 1.0) is not in the history of $MR_ROOT (not a git clone, or a shallow one)"
		return 0
	fi
	prefix=${PG_BINDIR%/lib/postgresql/"$PG_MAJOR"/bin}
	sharedir=$("$PG_CONFIG" --sharedir)
	if [[ $prefix == "$PG_BINDIR" || $sharedir != "$prefix/share/postgresql/$PG_MAJOR" ]]; then
		export MR_PG10_UNAVAILABLE="the installation in $PG_BINDIR does not have Debian's layout"
		return 0
	fi
	mkdir -p "$dest/usr/lib/postgresql" "$dest/usr/share/postgresql" "$dest/usr/include" "$dest/src"
	cp -a "$prefix/lib/postgresql/$PG_MAJOR" "$dest/usr/lib/postgresql/"
	cp -a "$sharedir" "$dest/usr/share/postgresql/"
	ln -s "$(readlink -f "$prefix/include/postgresql")" "$dest/usr/include/postgresql"
	# the copy holds this build, installed a moment ago: take it out
	rm -rf "$dest/usr/lib/postgresql/$PG_MAJOR/lib/migration_runner.so" \
		"$dest/usr/lib/postgresql/$PG_MAJOR/lib/bitcode/migration_runner" \
		"$dest/usr/lib/postgresql/$PG_MAJOR/lib/bitcode/migration_runner.index.bc" \
		"$dest/usr/share/postgresql/$PG_MAJOR/extension/"migration_runner*
	mr_git archive "$MR_RELEASE_10" | tar -C "$dest/src" -xf -
	chown -R postgres:postgres "$dest"
	local pgc=$dest/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
	if ! mr_as_postgres make -C "$dest/src" -j"$(nproc)" PG_CONFIG="$pgc" >"$log" 2>&1 ||
		! mr_as_postgres make -C "$dest/src" install PG_CONFIG="$pgc" >>"$log" 2>&1; then
		echo "---- build of release 1.0 ($MR_RELEASE_10) failed; last lines of $log:"
		tail -n 30 "$log"
		export MR_PG10_UNAVAILABLE="the build of release 1.0 failed"
		return 1
	fi
	export MR_PG10_BINDIR=$dest/usr/lib/postgresql/$PG_MAJOR/bin
}

# prepare_citus: Citus for the TAP tests test/t/citus_*.pl.  When it is not
# installed in the PostgreSQL under test and ../shared/vendor/citus (beside
# the source tree) is there, build and install it from there (as root, about
# 1.5 minutes; a failed build is a failure); without either, those files
# skip themselves.  Sets CITUS_NOTE.
CITUS_NOTE=
prepare_citus() {
	local vendor log=$WORK/citus-build.log t0=$SECONDS
	vendor=$(cd "$MR_ROOT/.." && pwd)/shared/vendor/citus
	if [[ -f $("$PG_CONFIG" --sharedir)/extension/citus.control &&
		-f $("$PG_CONFIG" --pkglibdir)/citus.so ]]; then
		CITUS_NOTE="Citus installed"
		return 0
	fi
	if [[ ! -f $vendor/build.sh ]]; then
		CITUS_NOTE="Citus not installed and no $vendor"
		return 0
	fi
	echo
	mr_log "Citus: bash $vendor/build.sh $PG_CONFIG"
	if bash "$vendor/build.sh" "$PG_CONFIG" >"$log" 2>&1; then
		CITUS_NOTE="Citus built from $vendor in $((SECONDS - t0))s"
	else
		echo "---- Citus build failed; last lines of $log:"
		tail -n 30 "$log"
		CITUS_NOTE="Citus build from $vendor failed"
		record "Citus build" 0 1 "bash $vendor/build.sh failed, see above"
	fi
}

# record_citus LOG N: a row for the N Citus TAP files.  Their tests are
# counted by the perl TAP row when they ran; a file that skipped itself
# (plan skip_all, printed by prove as "... skipped: REASON") counts as
# neither passed nor failed, and the row says why.
record_citus() {
	local log=$1 n=$2 skipped reason
	skipped=$(grep -cE '^test/t/citus_[^ ]*\.pl \.+ skipped: ' "$log") || true
	if ((skipped > 0)); then
		reason=$(sed -nE 's/^test\/t\/citus_[^ ]*\.pl \.+ skipped: (.*)$/\1/p' "$log" | head -n 1)
		record Citus 0 0 "skipped: $reason ($skipped of $n file(s); $CITUS_NOTE)"
	else
		record Citus 0 0 "$n file(s) ran, counted in perl TAP; $CITUS_NOTE"
	fi
}

# scan_logs: the crash scan of every server log (one test).
scan_logs() {
	local f crashes logs=()
	while IFS= read -r f; do logs+=("$f"); done < <(
		find "$BUILD/log" "$BUILD/output_iso/log" "$BUILD/tmp_regress/log" \
			"$BUILD/tmp_check_iso/log" "$BUILD/tmp_check/log" "$PGTAP_BASE" -maxdepth 1 -type f \( -name '*.log' -o -name 'server.log' \) \
			! -name 'regress_log_*' ! -name 'initdb.log' 2>/dev/null | sort)
	crashes=$(
		for f in "${logs[@]}"; do
			awk -v f="${f#"$WORK"/}" '
				/PANIC:|TRAP:|terminated by signal|was terminated by exception|server process \(PID [0-9]+\)/ {
					print f ": " $0
				}' "$f"
		done
	)
	echo
	if [[ -n $crashes ]]; then
		mr_log "log scan: crash lines in server logs"
		printf '%s\n' "$crashes" | head -n 100
		record "log scan" 0 1 "${#logs[@]} log(s), $(wc -l <<<"$crashes") crash line(s)"
	else
		mr_log "log scan: ${#logs[@]} server log(s), no crash"
		record "log scan" 1 0 "${#logs[@]} log(s), no PANIC/TRAP/signal/crashed process"
	fi
}

# ---------------------------------------------------------------------------
shopt -s nullglob

mr_log "build in $BUILD (as postgres), make install (as root)"
t0=$SECONDS
if mr_build_install "$BUILD" "$WORK/build.log"; then
	record build 0 0 "ok, $((SECONDS - t0))s"

	files=("$BUILD"/sql/[0-9]*.sql)
	if ((${#files[@]})); then
		make_suite pg_regress parse_pg_regress "$WORK/regress.out" regression.diffs \
			ISOLATION= TAP_TESTS=
	else
		record pg_regress 0 0 "skipped: no sql/[0-9]*.sql"
	fi

	files=("$BUILD"/specs/*.spec)
	if ((${#files[@]})); then
		make_suite isolation parse_pg_regress "$WORK/isolation.out" output_iso/regression.diffs \
			REGRESS= TAP_TESTS=
	else
		record isolation 0 0 "skipped: no specs/*.spec"
	fi

	t0=$SECONDS
	if prepare_release_10; then
		record "release 1.0" 0 0 "${MR_PG10_BINDIR:+built from $MR_RELEASE_10}${MR_PG10_UNAVAILABLE:+skipped: $MR_PG10_UNAVAILABLE}; $((SECONDS - t0))s"
	else
		record "release 1.0" 0 1 "build from $MR_RELEASE_10 failed"
	fi

	files=("$BUILD"/test/t/*.pl)
	if ((${#files[@]})); then
		citus_files=("$BUILD"/test/t/citus_*.pl)
		((${#citus_files[@]} == 0)) || prepare_citus
		make_suite "perl TAP" parse_tap "$WORK/tap.out" "" REGRESS= ISOLATION=
		((${#citus_files[@]} == 0)) || record_citus "$WORK/tap.out" "${#citus_files[@]}"
	else
		record "perl TAP" 0 0 "skipped: no test/t/*.pl"
	fi

	files=("$BUILD"/test/pgtap/*.sql)
	if ((${#files[@]})); then
		pgtap_suite "${files[@]}"
	else
		record pgTAP 0 0 "skipped: no test/pgtap/*.sql"
	fi

	scan_logs
else
	record build 0 1 "make or make install failed"
fi

# ---------------------------------------------------------------------------
# summary: the table, then `N passed, N failed` as the last line
total_pass=0 total_fail=0
echo
if [[ ${MR_KEEP:-0} == 1 ]]; then
	echo "kept (MR_KEEP=1): $WORK"
	echo
fi
printf '%-11s %7s %7s  %s\n' suite passed failed note
printf '%-11s %7s %7s  %s\n' ----------- ------ ------ ----
for i in "${!S_NAME[@]}"; do
	printf '%-11s %7d %7d  %s\n' "${S_NAME[i]}" "${S_PASS[i]}" "${S_FAIL[i]}" "${S_NOTE[i]}"
	total_pass=$((total_pass + S_PASS[i])) total_fail=$((total_fail + S_FAIL[i]))
done
echo
echo "$total_pass passed, $total_fail failed"
((total_fail == 0))
