/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The dynamic background worker that runs one managed migration.
 *
 * The launcher starts it with the migration's id and owner.  It connects as
 * the owner, so the action runs with exactly that role's privileges, takes
 * the migration's runner lock (if CALL mig_run or another worker holds it,
 * it leaves quietly), and drives the batch engine until the migration
 * completes, is paused or cancelled, fails, or the extension is dropped.
 *
 * SIGTERM uses the core handler: the open batch is rolled back and the
 * process exits; the launcher resumes the migration from its cursor.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "migration_runner.h"
#include "worker.h"

static void
worker_commit_and_begin(void)
{
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
}

/* a dropped extension ends the worker quietly between batches */
static bool
worker_should_stop(void)
{
	return !OidIsValid(mr_extension_oid(true));
}

static const RunnerHooks worker_hooks = {
	worker_commit_and_begin,
	worker_should_stop
};

/*
 * Read the migration and decide whether this worker should run it.
 */
static Migration *
claim_migration(int64 id)
{
	Migration  *m = NULL;

	if (!OidIsValid(mr_extension_oid(true)))
		return NULL;
	if (!mr_try_lock_runner(id))
		return NULL;
	PushActiveSnapshot(GetTransactionSnapshot());
	m = mr_migration_by_id(id, false);
	PopActiveSnapshot();
	if (m == NULL || !MigrationIsManaged(m) ||
		strcmp(m->status, MR_STATUS_RUNNING) != 0)
		return NULL;
	return m;
}

void
mr_worker_main(Datum main_arg)
{
	MigrationWorkerArgs args;
	Migration  *m;
	RunOutcome	outcome;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* never InvalidOid: that would connect as the bootstrap superuser */
	if (!OidIsValid(args.owner))
		elog(FATAL, "migration_runner worker started without an owner");
	BackgroundWorkerInitializeConnectionByOid(args.database, args.owner,
											  MR_BGWORKER_CONNECT_FLAGS);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	m = claim_migration(args.migration_id);
	if (m == NULL)
	{
		CommitTransactionCommand();
		proc_exit(0);
	}
	pgstat_report_appname(psprintf("migration_runner: %s", m->name));

	outcome = mr_run_migration(m->id, &worker_hooks);
	CommitTransactionCommand();

	ereport(DEBUG1,
			(errmsg("migration_runner worker for \"%s\" finished: %s",
					m->name, mr_outcome_name(outcome))));
	proc_exit(0);
}
