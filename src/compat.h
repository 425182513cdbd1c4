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

#include "executor/spi.h"
#include "utils/guc.h"

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

#endif							/* MIGRATION_RUNNER_COMPAT_H */
