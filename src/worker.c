/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The dynamic background worker that runs one managed migration, or one
 *	  slice of a migration that runs in slices.
 *
 * The launcher starts it with the migration's id, owner and slice (0: the
 * migration as one piece).  It connects as the owner, so the action runs
 * with exactly that role's privileges, takes the runner lock of its slice
 * (if CALL mig_run or another worker holds it, it leaves quietly), and
 * drives the batch engine until the migration completes, is paused or
 * cancelled, fails, its slice is done, or the extension is dropped.  A
 * worker whose slice was done before it got to it leaves quietly too,
 * unless a slice beyond a lowered parallel waits for a runner to adopt it.
 *
 * SIGTERM uses the core handler: the open batch is rolled back and the
 * process exits; the launcher resumes the migration (or the slice) from its
 * cursor.  An error outside the engine's guarded steps (a failed commit,
 * say) is recorded in the catalog (run_end.c) before the worker exits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
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

/* whether an error now comes from a commit (run_end.c says so) */
static bool committing = false;

static void
worker_commit_and_begin(void)
{
	committing = true;
	CommitTransactionCommand();
	committing = false;
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

/*
 * A dropped extension ends the worker quietly between batches, and so does
 * its scheduler's request to give its place to another database (budget.c).
 */
static bool
worker_should_stop(void)
{
	return !mr_extension_is_current() || mr_worker_must_yield();
}

static const RunnerHooks worker_hooks = {
	worker_commit_and_begin,
	worker_should_stop,
	false
};

/*
 * Is there no work for the runner of slice k?  Its row is done, and no
 * slice beyond parallel is left without a runner to adopt.  A missing row
 * is work: the runner of slice k makes it by taking work from the largest
 * slice.
 */
static bool
slice_has_no_work(int64 id, int slice)
{
	CatalogAccess access;
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		args[2];
	bool		done;
	bool		orphan = false;
	uint64		i;

	args[0] = Int64GetDatum(id);
	args[1] = Int32GetDatum(slice);
	mr_catalog_enter(&access);
	SPI_connect();
	if (SPI_execute_with_args(psprintf("SELECT FROM %s WHERE migration_id = $1 "
									   "AND slice = $2 AND status = 'done'",
									   mr_catalog_table("migration_slices")),
							  2, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read slice %d of migration " INT64_FORMAT,
			 slice, id);
	done = SPI_processed > 0;
	if (done &&
		SPI_execute_with_args(psprintf("SELECT s.slice FROM %s s JOIN %s m ON m.id = s.migration_id "
									   "WHERE s.migration_id = $1 AND s.slice > m.parallel "
									   "AND s.status = 'running'",
									   mr_catalog_table("migration_slices"),
									   mr_catalog_table("migrations")),
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the slices of migration " INT64_FORMAT, id);
	for (i = 0; done && i < SPI_processed && !orphan; i++)
	{
		bool		isnull;
		int			other = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 1,
														&isnull));

		orphan = !mr_slice_runner_is_active(id, other);
	}
	SPI_finish();
	mr_catalog_leave(&access);
	return done && !orphan;
}

/*
 * Read the migration and decide whether this worker should run it (or its
 * slice).
 */
static Migration *
claim_migration(int64 id, int slice)
{
	Migration  *m = NULL;
	bool		done = false;

	if (!mr_extension_is_current())
		return NULL;
	if (!mr_try_lock_runner(id, slice))
		return NULL;
	PushActiveSnapshot(GetTransactionSnapshot());
	m = mr_migration_by_id(id, false);
	if (m != NULL && slice > 0)
		done = slice_has_no_work(id, slice);
	PopActiveSnapshot();
	if (m == NULL || !MigrationIsManaged(m) ||
		strcmp(m->status, MR_STATUS_RUNNING) != 0 || done)
		return NULL;
	return m;
}

/* "migration "x"" or "slice k of migration "x"", for the log */
static char *
runner_name(const char *name, int slice)
{
	if (slice == 0)
		return psprintf("migration \"%s\"", name);
	return psprintf("slice %d of migration \"%s\"", slice, name);
}

/*
 * Say in the server log how the run ended: the runner that finished last
 * completed the migration; a slice's runner that found no work left says
 * so, the others finish the migration.
 */
static void
log_outcome(const char *name, int slice, RunOutcome outcome)
{
	if (outcome == RUN_COMPLETED)
		ereport(LOG,
				(errmsg("migration_runner: migration \"%s\" completed", name),
				 slice > 0 ? errdetail("The worker started for slice %d finished last.", slice) : 0));
	else if (outcome == RUN_SLICES_LEFT)
		ereport(LOG,
				(errmsg("migration_runner: worker for %s found no work left; other runners finish the migration",
						runner_name(name, slice))));
	else if (outcome == RUN_FAILED)
		ereport(LOG,
				(errmsg("migration_runner: migration \"%s\" failed", name),
				 slice > 0 ?
				 errdetail("The worker started for slice %d stopped on the error; it is in migrations.error.",
						   slice) :
				 errdetail("The error is in migrations.error.")));
	else
		ereport(DEBUG1,
				(errmsg("migration_runner: worker for %s stopped: %s",
						runner_name(name, slice), mr_outcome_name(outcome))));
}

void
mr_worker_main(Datum main_arg)
{
	MigrationWorkerArgs args;
	Migration  *m;
	RunOutcome	outcome = RUN_INTERRUPTED;
	int			sqlerrcode;
	char	   *name;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* never InvalidOid: that would connect as the bootstrap superuser */
	if (!OidIsValid(args.owner))
		elog(FATAL, "migration_runner worker started without an owner");
	BackgroundWorkerInitializeConnectionByOid(args.database, args.owner,
											  MR_BGWORKER_CONNECT_FLAGS);
	/* DROP DATABASE or the like is about to run there: keep away */
	if (mr_database_blocked(MyDatabaseId))
		proc_exit(0);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	mr_pin_transaction();
	m = claim_migration(args.migration_id, args.slice);
	if (m == NULL)
	{
		ereport(DEBUG1,
				(errmsg("migration_runner: worker for migration " INT64_FORMAT " slice %d has nothing to do",
						args.migration_id, args.slice)));
		CommitTransactionCommand();
		proc_exit(0);
	}
	/* the name outlives the transaction that read it */
	name = MemoryContextStrdup(TopMemoryContext, m->name);
	if (args.slice == 0)
		pgstat_report_appname(psprintf("migration_runner: %s", name));
	else
		pgstat_report_appname(psprintf("migration_runner: %s slice %d",
									   name, args.slice));

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
		(void) mr_end_run_after_error(args.migration_id, args.slice, edata, committing);
		proc_exit(1);
	}
	PG_END_TRY();

	log_outcome(name, args.slice, outcome);
	proc_exit(0);
}

/*
 * Fill in what every dynamic worker of ours has in common: a database
 * connection, started after recovery, never restarted by the postmaster
 * (whoever starts it judges its exit), reporting to the caller.
 */
void
mr_describe_dynamic_worker(BackgroundWorker *worker, const char *function_name,
						   const char *type)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "migration_runner");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function_name);
	snprintf(worker->bgw_type, BGW_MAXLEN, "%s", type);
	worker->bgw_notify_pid = MyProcPid;
}
