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
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
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
	return !mr_extension_is_current();
}

static const RunnerHooks worker_hooks = {
	worker_commit_and_begin,
	worker_should_stop,
	false
};

/*
 * Read the migration and decide whether this worker should run it.
 */
static Migration *
claim_migration(int64 id, int slice)
{
	Migration  *m = NULL;

	if (!mr_extension_is_current())
		return NULL;
	if (!mr_try_lock_runner(id, slice))
		return NULL;
	PushActiveSnapshot(GetTransactionSnapshot());
	m = mr_migration_by_id(id, false);
	PopActiveSnapshot();
	if (m == NULL || !MigrationIsManaged(m) ||
		strcmp(m->status, MR_STATUS_RUNNING) != 0)
		return NULL;
	return m;
}

/*
 * An error escaped the engine's guarded steps (the throttle queries, a
 * commit, recording a failure): the run cannot go on.  A cancel request
 * has already paused the migration; anything else marks it failed, so that
 * it is not restarted forever without a word.  Runs after the error was
 * reported and the transaction aborted.
 */
static void
fail_after_error(int64 id, const char *name, ErrorData *edata)
{
	Migration  *m;

	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
	{
		ereport(LOG,
				(errmsg("migration_runner: migration \"%s\" paused on a cancel request",
						name)));
		return;
	}
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	mr_pin_transaction();
	PushActiveSnapshot(GetTransactionSnapshot());
	m = mr_extension_is_current() ? mr_migration_by_id(id, true) : NULL;
	if (m != NULL && strcmp(m->status, MR_STATUS_RUNNING) == 0)
	{
		char	   *error = psprintf("%s (SQLSTATE %s) in the runner, outside a batch",
									 edata->message, unpack_sql_state(edata->sqlerrcode));

		mr_set_status(m, MR_STATUS_FAILED,
					  psprintf("error = %s, worker_pid = NULL, throttled = NULL",
							   quote_literal_cstr(error)));
		ereport(LOG,
				(errmsg("migration_runner: migration \"%s\" failed: %s", name, error)));
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* say in the server log how the run ended */
static void
log_outcome(const char *name, RunOutcome outcome)
{
	if (outcome == RUN_COMPLETED)
		ereport(LOG,
				(errmsg("migration_runner: migration \"%s\" completed", name)));
	else if (outcome == RUN_FAILED)
		ereport(LOG,
				(errmsg("migration_runner: migration \"%s\" failed", name),
				 errdetail("The error is in migrations.error.")));
	else
		ereport(DEBUG1,
				(errmsg("migration_runner: worker for migration \"%s\" stopped: %s",
						name, mr_outcome_name(outcome))));
}

void
mr_worker_main(Datum main_arg)
{
	MigrationWorkerArgs args;
	Migration  *m;
	RunOutcome	outcome = RUN_INTERRUPTED;
	int			sqlerrcode;
	char	   *name;
	MemoryContext workcxt;

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
	mr_pin_transaction();
	m = claim_migration(args.migration_id, args.slice);
	if (m == NULL)
	{
		CommitTransactionCommand();
		proc_exit(0);
	}
	/* the name outlives the transaction that read it */
	name = MemoryContextStrdup(TopMemoryContext, m->name);
	pgstat_report_appname(psprintf("migration_runner: %s", name));

	workcxt = CurrentMemoryContext;
	PG_TRY();
	{
		outcome = mr_run_migration(args.migration_id, args.slice, &worker_hooks, &sqlerrcode);
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(workcxt);
		fail_after_error(args.migration_id, name, edata);
		proc_exit(1);
	}
	PG_END_TRY();

	log_outcome(name, outcome);
	proc_exit(0);
}
