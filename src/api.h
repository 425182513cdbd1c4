/*-------------------------------------------------------------------------
 *
 * api.h
 *	  Declarations shared by the files of the SQL-callable functions:
 *	  api.c (argument and lookup helpers, mig_define), seed.c (the seed's
 *	  functions), control.c (pause, resume, cancel, reset, drop, wait),
 *	  alter.c (mig_alter), mig_run.c (CALL mig_run) and status.c (the legal status transitions).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATION_RUNNER_API_H
#define MIGRATION_RUNNER_API_H

#include "fmgr.h"

#include "migration_runner.h"

#define STATUS_IS(m, s) (strcmp((m)->status, (s)) == 0)

/* api.c */
extern char *mr_name_arg(FunctionCallInfo fcinfo, int argno);
extern Migration *mr_existing_migration(const char *name, bool for_update);
extern Migration *mr_existing_migration_by_id(int64 id);
extern void mr_require_managed(Migration *m, const char *function);
extern void mr_require_application_driven(Migration *m, const char *function);
extern void mr_warn_if_no_worker(Migration *m);

/*
 * status.c: what each operation of the SQL API may do to a migration in
 * each status.  The operations are those that change a migration's status
 * (or remove it); see the table in status.c.
 */
typedef enum MigOperation
{
	MIG_OP_START,
	MIG_OP_PAUSE,
	MIG_OP_RESUME,
	MIG_OP_CANCEL,
	MIG_OP_RESET,
	MIG_OP_RUN,
	MIG_OP_COMPLETE,
	MIG_OP_FAIL,
	MIG_OP_DROP
} MigOperation;

#define MIG_NUM_OPERATIONS (MIG_OP_DROP + 1)

extern bool mr_transition(Migration *m, MigOperation op, const char **to);

#endif							/* MIGRATION_RUNNER_API_H */
