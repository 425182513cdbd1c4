/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  What the launcher passes to a migration worker in bgw_extra.
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

#endif							/* MIGRATION_RUNNER_WORKER_H */
