/*-------------------------------------------------------------------------
 *
 * run_end.c
 *	  A run that an error ended outside the engine's guarded steps, for
 *	  both runners: CALL mig_run and the background worker.
 *
 * The engine catches the errors of a run's steps (the setup, a batch, the
 * throttle's look at the server) and records them.  Some errors come from
 * outside those steps: a commit that fails (postgres_fdw commits there the
 * remote transaction of what the action wrote through it; deferred
 * triggers fire there, though none that the action queued, which
 * PostgreSQL refuses in the action's security-restricted operation), a
 * cancel request that arrives during a commit, or the runner's own catalog
 * writes as a run ends (recording a failure, the pause on a cancel
 * request, forgetting its pid).  They leave the run's transaction aborted and the
 * catalog saying the migration is running, by this process.  Left so, the
 * launcher would start the migration again and again, without a word of
 * why; so the runner records what happened here before it gives up.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "migration_runner.h"

/* a string as an SQL literal, or NULL */
static char *
literal_or_null(const char *s)
{
	return s ? quote_literal_cstr(s) : "NULL";
}

/*
 * Mark the still-running migration failed with the error: its message and
 * SQLSTATE, and what identifies the row or object behind it (the error's
 * DETAIL, HINT and CONTEXT), as a failed batch does.
 */
static void
record_failure(Migration *m, int slice, ErrorData *edata, bool at_commit)
{
	char	   *error;

	error = psprintf("%s (SQLSTATE %s) %s", edata->message,
					 unpack_sql_state(edata->sqlerrcode),
					 at_commit ? "at commit" : "in the runner, outside a batch");
	mr_set_status(m, MR_STATUS_FAILED,
				  psprintf("error = %s, error_detail = %s, error_hint = %s, "
						   "error_context = %s, worker_pid = NULL, throttled = NULL",
						   quote_literal_cstr(error), literal_or_null(edata->detail),
						   literal_or_null(edata->hint), literal_or_null(edata->context)));
	ereport(LOG,
			(errmsg("migration_runner: migration \"%s\" failed: %s", m->name, error),
			 slice > 0 ? errdetail("The error ended the runner of slice %d.", slice) : 0));
}

/*
 * The catalog no longer names this process as the runner of the migration,
 * nor of any of its slices (unless the extension went away meanwhile).
 */
void
mr_forget_runner_pid(int64 migration_id)
{
	if (!mr_extension_is_current())
		return;
	PushActiveSnapshot(GetTransactionSnapshot());
	mr_catalog_exec(psprintf("UPDATE %s SET worker_pid = NULL, throttled = NULL "
							 "WHERE id = " INT64_FORMAT " AND worker_pid = %d",
							 mr_catalog_table("migrations"), migration_id, MyProcPid),
					0, NULL, NULL, SPI_OK_UPDATE);
	mr_catalog_exec(psprintf("UPDATE %s SET worker_pid = NULL "
							 "WHERE migration_id = " INT64_FORMAT " AND worker_pid = %d",
							 mr_catalog_table("migration_slices"), migration_id, MyProcPid),
					0, NULL, NULL, SPI_OK_UPDATE);
	PopActiveSnapshot();
}

/*
 * A cancel request reached the runner: the migration is paused, unless
 * someone stopped it meanwhile.  The caller commits.
 */
void
mr_pause_if_running(int64 migration_id)
{
	Migration  *m;

	PushActiveSnapshot(GetTransactionSnapshot());
	m = mr_migration_by_id(migration_id, true);
	if (m != NULL && strcmp(m->status, MR_STATUS_RUNNING) == 0)
		mr_set_status(m, MR_STATUS_PAUSED, "worker_pid = NULL, throttled = NULL");
	PopActiveSnapshot();
}

/*
 * An error escaped the engine's guarded steps; edata is its copy, in
 * memory that outlives the transaction, and the error state is flushed.
 * at_commit says whether the error came from a commit of the run; slice is
 * the runner's slice (0: the migration as one piece), for the log.
 *
 * Abort the run's transaction, then, in a transaction of its own, leave
 * the migration so that nobody takes it for running: if it is still
 * running, a cancel request pauses it (as the engine does with a cancel it
 * catches), any other error marks it failed.  Whatever its status, the
 * catalog no longer names this process as its runner.
 *
 * Returns true when it marked the migration failed.  Returns with no
 * transaction open, in the memory context it was called in.
 */
bool
mr_end_run_after_error(int64 migration_id, int slice, ErrorData *edata,
					   bool at_commit)
{
	MemoryContext cxt = CurrentMemoryContext;
	Migration  *m;
	bool		failed = false;

	AbortCurrentTransaction();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	mr_pin_transaction();
	PushActiveSnapshot(GetTransactionSnapshot());
	m = mr_extension_is_current() ? mr_migration_by_id(migration_id, true) : NULL;
	if (m != NULL && strcmp(m->status, MR_STATUS_RUNNING) == 0)
	{
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		{
			mr_set_status(m, MR_STATUS_PAUSED, "worker_pid = NULL, throttled = NULL");
			ereport(LOG,
					(errmsg("migration_runner: migration \"%s\" paused on a cancel request",
							m->name),
					 slice > 0 ? errdetail("The request reached the runner of slice %d.", slice) : 0));
		}
		else
		{
			record_failure(m, slice, edata, at_commit);
			failed = true;
		}
	}
	if (m != NULL)
	{
			mr_forget_runner_pid(migration_id);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return failed;
}
