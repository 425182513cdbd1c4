/*-------------------------------------------------------------------------
 *
 * mig_run.c
 *	  CALL mig_run(name): the batch engine in the calling session.
 *
 * A procedure with transaction control: it takes the runner lock, marks the
 * migration running, and runs the remaining batches through the same engine
 * as the background worker (run.c), committing after each.  How the run
 * ended is reported to the caller: a NOTICE when someone paused or
 * cancelled it, the failing batch's own error when it failed.  An error
 * outside the engine's guarded steps (a failed commit, say) is recorded as
 * the worker records it (run_end.c) and then raised.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

#include "api.h"
#include "chain.h"
#include "compat.h"
#include "migration_runner.h"

PG_FUNCTION_INFO_V1(mig_run);

/* whether an error now comes from a commit (run_end.c says so) */
static bool committing = false;

static void
procedure_commit_and_begin(void)
{
	committing = true;
	mr_spi_commit();
	committing = false;
}

static bool
procedure_should_stop(void)
{
	return false;
}

static const RunnerHooks procedure_hooks = {
	procedure_commit_and_begin,
	procedure_should_stop,
	true
};

/*
 * Tell the caller of CALL mig_run how the run ended.  A failure is raised
 * with the failing batch's own SQLSTATE, its message, and what identifies
 * the row behind it (the error's detail, hint and context).
 */
static void
report_outcome(const char *name, RunOutcome outcome, int sqlerrcode)
{
	Migration  *m;

	switch (outcome)
	{
		case RUN_COMPLETED:
			break;
		case RUN_WAITING:
			/* a prerequisite was reset since mig_run looked */
			mr_chain_require_ready(mr_existing_migration(name, false));
			break;
		case RUN_SLICES_LEFT:
			ereport(NOTICE,
					(errmsg("migration \"%s\": other runners are finishing its slices", name)));
			break;
		case RUN_STOPPED:
		case RUN_INTERRUPTED:
			m = mr_existing_migration(name, false);
			ereport(NOTICE,
					(errmsg("migration \"%s\" stopped because it is now %s",
							name, m->status)));
			break;
		case RUN_FAILED:
			m = mr_existing_migration(name, false);
			ereport(ERROR,
					(errcode(sqlerrcode != 0 ? sqlerrcode : ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("migration \"%s\" failed", name),
					 errdetail("%s%s%s", m->error ? m->error : "unknown error",
							   m->error_detail ? "\n" : "",
							   m->error_detail ? m->error_detail : ""),
					 m->error_hint ? errhint("%s", m->error_hint) :
					 errhint("Fix the cause, then run it again: it resumes after the last committed batch."),
					 m->error_context ? errcontext("%s", m->error_context) : 0));
			break;
	}
}

/*
 * An error escaped the engine's guarded steps (a commit, the runner's own
 * writes as the run ends): record it as the worker does (run_end.c), then
 * end the CALL with it.  A failure is raised as report_outcome raises a
 * failed batch's; a cancel request (the migration is now paused) as it
 * came; anything else with a context line naming the migration.  The
 * abort took the procedure's SPI connection with it, so the CALL ends
 * here, in a transaction of its own for the error to abort.
 */
static void
raise_after_error(Migration *m)
{
	ErrorData  *edata;
	bool		at_commit = committing;
	bool		failed;

	committing = false;
	edata = CopyErrorData();
	FlushErrorState();
	failed = mr_end_run_after_error(m->id, 0, edata, at_commit);
	StartTransactionCommand();
	if (failed)
		report_outcome(m->name, RUN_FAILED, edata->sqlerrcode);
	if (edata->sqlerrcode != ERRCODE_QUERY_CANCELED)
		edata->context = psprintf("%s%srun of migration \"%s\"",
								  edata->context ? edata->context : "",
								  edata->context ? "\n" : "", m->name);
	ReThrowError(edata);
}

static void
mig_run_checked(Migration *m)
{
	MemoryContext cxt;
	RunOutcome	outcome = RUN_COMPLETED;
	int			sqlerrcode = 0;

	if (!STATUS_IS(m, MR_STATUS_RUNNING))
		mr_set_status(m, MR_STATUS_RUNNING, "started_at = now(), " MR_CLEAR_ERROR);
	mr_spi_commit();
	mr_pin_transaction();
	/* the procedure's memory: it outlives the run's transactions */
	cxt = CurrentMemoryContext;
	PG_TRY();
	{
		outcome = mr_run_migration(m->id, 0, &procedure_hooks, &sqlerrcode);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		raise_after_error(m);
	}
	PG_END_TRY();
	report_outcome(m->name, outcome, sqlerrcode);
}

Datum
mig_run(PG_FUNCTION_ARGS)
{
	char	   *name = mr_name_arg(fcinfo, 0);
	Migration  *m;
	const char *to;

	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		castNode(CallContext, fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("mig_run cannot run inside a transaction block"),
				 errdetail("It commits after every batch."),
				 errhint("Call it with CALL outside BEGIN ... COMMIT and outside functions.")));

	SPI_connect_ext(SPI_OPT_NONATOMIC);

	/*
	 * Start over in a transaction of the runner's kind (READ COMMITTED,
	 * read-write): the CALL's own follows the session's defaults, and under
	 * default_transaction_read_only it could not even lock the catalog row.
	 */
	mr_spi_commit();
	mr_pin_transaction();
	m = mr_existing_migration(name, true);
	mr_require_managed(m, "mig_run");
	mr_check_ownership(m);
	/* another migration took over its keys (chain.c) */
	mr_chain_check_not_continued(m);
	/* completed: a NOTICE; paused or cancelled: an ERROR (status.c) */
	if (!mr_transition(m, MIG_OP_RUN, &to))
	{
		SPI_finish();
		PG_RETURN_VOID();
	}
	/* nothing changes for a migration that may not run yet */
	mr_chain_require_ready(m);

	if (mr_runner_is_active(m->id) || !mr_try_lock_runner(m->id, 0))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("migration \"%s\" is being run by another process", name),
				 errhint("Wait for it with mig_wait(%s), or pause it with mig_pause(%s).",
						 quote_literal_cstr(name), quote_literal_cstr(name))));
	PG_TRY();
	{
		mig_run_checked(m);
	}
	PG_FINALLY();
	{
		mr_unlock_runner(m->id, 0);
	}
	PG_END_TRY();

	SPI_finish();
	PG_RETURN_VOID();
}
