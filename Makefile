# migration_runner: PGXS build.
#
#   make                      build (warnings are errors)
#   make install              install into the PostgreSQL found by pg_config
#   make installcheck         pg_regress + isolation + Perl TAP, each in a
#                             throw-away instance with the worker preloaded
#   make installcheck EXISTING_SERVER=1
#                             pg_regress + isolation against the running
#                             server that PGHOST/PGPORT/PGUSER name, which
#                             must preload the library with the settings of
#                             test/preload.conf (README, "Operating it");
#                             Perl TAP still makes its own instances
#   make install DESTDIR=/x   install under /x (for packages)
#   make dist                 migration_runner-<version>.zip for PGXN, made
#                             by git archive from the committed tree (HEAD)
#
# The README's test command (scripts/test.sh) drives all of these plus pgTAP.

EXTENSION = migration_runner
MODULE_big = migration_runner
OBJS = \
	src/migration_runner.o \
	src/guc.o \
	src/shmem.o \
	src/catalog.o \
	src/define.o \
	src/citus_define.o \
	src/keys.o \
	src/plans.o \
	src/throttle.o \
	src/key_index.o \
	src/action.o \
	src/action_checks.o \
	src/batch.o \
	src/retry.o \
	src/run.o \
	src/run_state.o \
	src/shard.o \
	src/shard_action.o \
	src/shard_batch.o \
	src/citus_run.o \
	src/citus_nodes.o \
	src/citus_slices.o \
	src/dry_run.o \
	src/skip.o \
	src/skip_retry.o \
	src/run_end.o \
	src/split.o \
	src/slices.o \
	src/verify.o \
	src/runlock.o \
	src/api.o \
	src/status.o \
	src/seed.o \
	src/control.o \
	src/chain.o \
	src/alter.o \
	src/mig_run.o \
	src/dbstate.o \
	src/budget.o \
	src/cluster_launcher.o \
	src/scheduler.o \
	src/launcher.o \
	src/launcher_track.o \
	src/launcher_checks.o \
	src/utility.o \
	src/worker.o

# 1.0 as released, the 1.0 -> 1.1 upgrade, and the 1.1 install script, which
# is made from those two so that a fresh 1.1 and an upgraded 1.0 are the same
# schema by construction.
DATA = sql/migration_runner--1.0.sql sql/migration_runner--1.0--1.1.sql
DATA_built = sql/migration_runner--1.1.sql

REGRESS = $(basename $(notdir $(wildcard sql/[0-9]*.sql)))
ISOLATION = $(basename $(notdir $(wildcard specs/*.spec)))
ifeq ($(EXISTING_SERVER),)
REGRESS_OPTS = --temp-instance=./tmp_regress \
	--temp-config=./test/preload.conf --load-extension=migration_runner
ISOLATION_OPTS = --temp-instance=./tmp_check_iso \
	--temp-config=./test/preload.conf --load-extension=migration_runner
else
REGRESS_OPTS = --load-extension=migration_runner
ISOLATION_OPTS = --load-extension=migration_runner
# pg_regress drops and re-creates its database, to which the workers of a
# migration left running by an earlier run may be connected: drop it first,
# WITH (FORCE), so that the suite can run again and again.
REGRESS_PREP = existing-server-prep
endif

TAP_TESTS = 1
PROVE_TESTS = $(wildcard test/t/*.pl)

# per-shard runs on Citus talk to the nodes through libpq (citus_nodes.c),
# as contrib/dblink does
PG_CPPFLAGS = -I$(srcdir)/src -I$(libpq_srcdir)
SHLIB_LINK_INTERNAL = $(libpq)
PG_CFLAGS = -Wall -Werror -Wmissing-prototypes -Wdeclaration-after-statement

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on every header (PGXS tracks no header dependencies
# unless the server was configured with --enable-depend)
$(OBJS): $(wildcard src/*.h)

sql/migration_runner--1.1.sql: sql/migration_runner--1.0.sql sql/migration_runner--1.0--1.1.sql
	cat $^ > $@

.PHONY: existing-server-prep dist

existing-server-prep:
	$(bindir)/psql -X -q -v ON_ERROR_STOP=1 -d postgres \
		-c 'DROP DATABASE IF EXISTS $(CONTRIB_TESTDB) WITH (FORCE)'

# The release's version, from META.json (its first "version", the
# distribution's own).
DISTVERSION = $(shell sed -n 's/^   "version": *"\([^"]*\)".*/\1/p' $(srcdir)/META.json | head -n 1)
DISTNAME = $(EXTENSION)-$(DISTVERSION)

dist:
	git -C $(srcdir) archive --format=zip --prefix=$(DISTNAME)/ -o $(abspath $(DISTNAME).zip) HEAD

EXTRA_CLEAN = tmp_regress tmp_check_iso output_iso results regression.diffs regression.out \
	$(DISTNAME).zip
