/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Guards for the differences between the PostgreSQL versions that
 *	  migration_runner builds against (13 to 18).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATION_RUNNER_COMPAT_H
#define MIGRATION_RUNNER_COMPAT_H

#include "executor/executor.h"
#include "executor/spi.h"
#include "nodes/plannodes.h"
#include "utils/guc.h"
#include "utils/plancache.h"

/*
 * Shared memory must be requested from shmem_request_hook from 15 on; before
 * that, RequestAddinShmemSpace is called directly from _PG_init.
 */
#if PG_VERSION_NUM >= 150000
#define MR_HAVE_SHMEM_REQUEST_HOOK 1
#endif

/* MarkGUCPrefixReserved replaced EmitWarningsOnPlaceholders in 15 */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/*
 * From 15 on SPI_commit starts the next transaction itself; before, the
 * caller had to call SPI_start_transaction.
 */
#if PG_VERSION_NUM >= 150000
#define mr_spi_commit() SPI_commit()
#else
#define mr_spi_commit() (SPI_commit(), SPI_start_transaction())
#endif

/*
 * 17 lets a background worker connect as a role without LOGIN, which is
 * exactly what migration owners often are.
 */
#if PG_VERSION_NUM >= 170000
#define MR_BGWORKER_CONNECT_FLAGS BGWORKER_BYPASS_ROLELOGINCHECK
#define MR_WORKER_NEEDS_LOGIN false
#else
#define MR_BGWORKER_CONNECT_FLAGS 0
#define MR_WORKER_NEEDS_LOGIN true
#endif

/* 14 added the QueryEnvironment argument to raw_parser's mode */
#if PG_VERSION_NUM >= 140000
#define mr_raw_parser(str) raw_parser((str), RAW_PARSE_DEFAULT)
#else
#define mr_raw_parser(str) raw_parser(str)
#endif

/* 16 added the Datum conversions of ItemPointer (tid) to itemptr.h */
#if PG_VERSION_NUM < 160000
#define DatumGetItemPointer(X) ((ItemPointer) DatumGetPointer(X))
#define ItemPointerGetDatum(X) PointerGetDatum(X)
#endif

/* MERGE is new in 15 */
#if PG_VERSION_NUM >= 150000
#define MR_HAVE_MERGE 1
#endif

/*
 * The executor's permission check of a planned statement: 16 moved the
 * permissions out of the range table into permInfos.
 */
#if PG_VERSION_NUM >= 160000
#define mr_check_plan_permissions(stmt) \
	((void) ExecCheckPermissions((stmt)->rtable, (stmt)->permInfos, true))
#else
#define mr_check_plan_permissions(stmt) \
	((void) ExecCheckRTPerms((stmt)->rtable, true))
#endif

/*
 * Releasing a cached plan that SPI_plan_get_cached_plan returned for a plan
 * that was not saved (so not tracked by a resource owner): 14 replaced the
 * flag by the owner.
 */
#if PG_VERSION_NUM >= 140000
#define mr_release_unsaved_plan(cplan) ReleaseCachedPlan((cplan), NULL)
#else
#define mr_release_unsaved_plan(cplan) ReleaseCachedPlan((cplan), false)
#endif

/* 16 replaced the per-object ACL checks with object_aclcheck */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_database.h"
#define mr_database_aclcheck(db, role, mode) \
	object_aclcheck(DatabaseRelationId, (db), (role), (mode))
#define mr_database_ownercheck(db, role) \
	object_ownercheck(DatabaseRelationId, (db), (role))
#else
#define mr_database_ownercheck(db, role) pg_database_ownercheck((db), (role))
#define mr_database_aclcheck(db, role, mode) \
	pg_database_aclcheck((db), (role), (mode))
#endif

/* 17 renamed the lookup of a backend's status by its (1-based) index */
#if PG_VERSION_NUM >= 170000
#define mr_local_beentry(i) pgstat_get_local_beentry_by_index(i)
#else
#define mr_local_beentry(i) pgstat_fetch_stat_local_beentry(i)
#endif

/*
 * Per-shard runs on Citus turn the action into a statement on the shard
 * table by deparsing its analysed tree: pg_get_querydef and
 * parse_analyze_fixedparams are new in 15.  Older servers run distributed
 * tables over the global key range.
 */
#if PG_VERSION_NUM >= 150000
#define MR_HAVE_QUERYDEF 1
#endif

#endif							/* MIGRATION_RUNNER_COMPAT_H */
