/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  What the launcher passes to a migration worker in bgw_extra, and how
 *	  the launcher and the schedulers describe the dynamic workers they
 *	  start.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATION_RUNNER_WORKER_H
#define MIGRATION_RUNNER_WORKER_H

#include "postmaster/bgworker.h"

typedef struct MigrationWorkerArgs
{
	Oid			database;
	Oid			owner;
	int64		migration_id;
	int32		slice;			/* 0: the migration as one piece */
} MigrationWorkerArgs;

StaticAssertDecl(sizeof(MigrationWorkerArgs) <= BGW_EXTRALEN,
				 "MigrationWorkerArgs must fit in bgw_extra");

extern void mr_describe_dynamic_worker(BackgroundWorker *worker,
									   const char *function_name,
									   const char *type);

#endif							/* MIGRATION_RUNNER_WORKER_H */
