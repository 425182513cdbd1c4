/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The SQL-callable functions of migration_runner.
 *
 * The seed's functions (mig_has_run, mig_start, mig_update_progress,
 * mig_complete, mig_fail) keep its semantics for application-driven
 * migrations; mig_define, mig_pause, mig_resume, mig_cancel, mig_reset,
 * mig_run and mig_wait manage migrations whose batches the database runs.
 *
 * Every function that changes a migration checks that the caller has the
 * privileges of its owner, and writes the catalog through catalog.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "migration_runner.h"

PG_FUNCTION_INFO_V1(mig_has_run);
PG_FUNCTION_INFO_V1(mig_start);
PG_FUNCTION_INFO_V1(mig_update_progress);
PG_FUNCTION_INFO_V1(mig_complete);
PG_FUNCTION_INFO_V1(mig_fail);
PG_FUNCTION_INFO_V1(mig_define);
PG_FUNCTION_INFO_V1(mig_pause);
PG_FUNCTION_INFO_V1(mig_resume);
PG_FUNCTION_INFO_V1(mig_cancel);
PG_FUNCTION_INFO_V1(mig_reset);
PG_FUNCTION_INFO_V1(mig_run);
PG_FUNCTION_INFO_V1(mig_wait);

#define STATUS_IS(m, s) (strcmp((m)->status, (s)) == 0)

static char *
name_arg(FunctionCallInfo fcinfo, int argno)
{
	mr_require_arg(fcinfo, argno, "name");
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

static Migration *
existing_migration(const char *name, bool for_update)
{
	Migration  *m = mr_migration_by_name(name, for_update);

	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration \"%s\" does not exist", name)));
	return m;
}

static Migration *
existing_migration_by_id(int64 id)
{
	Migration  *m = mr_migration_by_id(id, true);

	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration with id " INT64_FORMAT " does not exist", id)));
	return m;
}

static void
require_managed(Migration *m, const char *function)
{
	if (!MigrationIsManaged(m))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("migration \"%s\" is application-driven", m->name),
				 errdetail("%s() works only on migrations defined with mig_define().",
						   function)));
}

static void
require_application_driven(Migration *m, const char *function)
{
	if (MigrationIsManaged(m))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("migration \"%s\" is managed by migration_runner", m->name),
				 errdetail("%s() is for application-driven migrations; the batch engine records the progress of managed ones.",
						   function),
				 errhint("Use mig_pause() or mig_cancel() to stop a managed migration.")));
}

/*
 * Tell the caller when no background worker will pick a started migration
 * up, and how to run it instead.
 */
static void
warn_if_no_worker(Migration *m)
{
	const char *reason = NULL;

	if (!mr_preloaded)
		reason = "The library migration_runner is not in shared_preload_libraries.";
	else if (!mr_enabled)
		reason = "migration_runner.enabled is off.";
	else if (mr_max_workers == 0)
		reason = "migration_runner.max_workers is 0.";
	else if (strcmp(get_database_name(MyDatabaseId), mr_database) != 0)
		reason = psprintf("The launcher runs migrations in database \"%s\" only.",
						  mr_database);
	if (reason == NULL)
		return;
	ereport(WARNING,
			(errmsg("no background worker will run migration \"%s\"", m->name),
			 errdetail("%s", reason),
			 errhint("Run it in this session with CALL mig_run(%s).", quote_literal_cstr(m->name))));
}

Datum
mig_has_run(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0);
	Migration  *m = mr_migration_by_name(name, false);

	PG_RETURN_BOOL(m != NULL && STATUS_IS(m, MR_STATUS_COMPLETED));
}

/*
 * A name no migration has: track it as application-driven, as the seed's
 * startMigration inserts a row.  Returns 0 if a concurrent session inserted
 * the name first (then the caller re-reads and applies the seed's rules).
 */
static int64
start_application_migration(const char *name)
{
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		args[2];
	int64		id;
	char	   *sql;

	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration name must not be empty")));
	if (strlen(name) > 200)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration name is too long"),
				 errdetail("The name is %zu bytes long; the limit is 200 bytes.",
						   strlen(name))));

	args[0] = CStringGetTextDatum(name);
	args[1] = ObjectIdGetDatum(GetUserId());
	sql = psprintf("INSERT INTO %s (name, status, owner, started_at, processed) "
				   "VALUES ($1, 'running', $2::regrole, now(), 0) "
				   "ON CONFLICT (name) DO NOTHING RETURNING id",
				   mr_catalog_table("migrations"));
	id = mr_catalog_insert_returning_id(sql, 2, argtypes, args);

	if (id != 0)
	{
		mr_notify_state_change(name, "", MR_STATUS_RUNNING, 0);
		mr_announce_change_at_commit();
		ereport(NOTICE,
				(errmsg("migration \"%s\" is tracked as an application-driven migration",
						name),
				 errdetail("Report progress with mig_update_progress() and finish with mig_complete() or mig_fail().")));
	}
	return id;
}

Datum
mig_start(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0);
	Migration  *m = mr_migration_by_name(name, true);
	int64		id;

	if (m == NULL)
	{
		id = start_application_migration(name);
		if (id != 0)
			PG_RETURN_INT64(id);
		m = existing_migration(name, true);
	}

	if (STATUS_IS(m, MR_STATUS_COMPLETED))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" already completed", name)));
	if (STATUS_IS(m, MR_STATUS_RUNNING))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" already running", name)));
	if (STATUS_IS(m, MR_STATUS_PAUSED))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" is paused", name),
				 errhint("Resume it with mig_resume(%s).", quote_literal_cstr(name))));
	mr_check_ownership(m);

	if (MigrationIsManaged(m))
	{
		/* pending, failed or cancelled: go on from the cursor */
		mr_set_status(m, MR_STATUS_RUNNING, "started_at = now(), " MR_CLEAR_ERROR);
		warn_if_no_worker(m);
	}
	else
	{
		/* the seed resets a failed migration's progress */
		mr_set_status(m, MR_STATUS_RUNNING,
					  "started_at = now(), " MR_CLEAR_ERROR ", processed = 0, completed_at = NULL");
	}
	PG_RETURN_INT64(m->id);
}

Datum
mig_update_progress(PG_FUNCTION_ARGS)
{
	int64		id;
	int64		processed;
	Migration  *m;
	char	   *sql;

	mr_require_arg(fcinfo, 0, "id");
	mr_require_arg(fcinfo, 1, "processed");
	id = PG_GETARG_INT64(0);
	processed = PG_GETARG_INT64(1);
	if (processed < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("processed must not be negative"),
				 errdetail("It is added to the migration's count of processed rows.")));

	/* as in the seed, an unknown id is not an error */
	m = mr_migration_by_id(id, false);
	if (m == NULL)
		PG_RETURN_VOID();
	require_application_driven(m, "mig_update_progress");
	mr_check_ownership(m);

	/* one atomic increment: concurrent reports never lose an update */
	sql = psprintf("UPDATE %s SET processed = processed + " INT64_FORMAT
				   " WHERE id = " INT64_FORMAT,
				   mr_catalog_table("migrations"), processed, id);
	mr_catalog_exec(sql, 0, NULL, NULL, SPI_OK_UPDATE);
	PG_RETURN_VOID();
}

Datum
mig_complete(PG_FUNCTION_ARGS)
{
	Migration  *m;

	mr_require_arg(fcinfo, 0, "id");
	m = existing_migration_by_id(PG_GETARG_INT64(0));
	require_application_driven(m, "mig_complete");
	mr_check_ownership(m);
	mr_set_status(m, MR_STATUS_COMPLETED, "completed_at = now()");
	PG_RETURN_VOID();
}

Datum
mig_fail(PG_FUNCTION_ARGS)
{
	Migration  *m;
	char	   *extra;

	mr_require_arg(fcinfo, 0, "id");
	mr_require_arg(fcinfo, 1, "error");
	m = existing_migration_by_id(PG_GETARG_INT64(0));
	require_application_driven(m, "mig_fail");
	mr_check_ownership(m);
	extra = psprintf("error = %s, completed_at = NULL",
					 quote_literal_cstr(text_to_cstring(PG_GETARG_TEXT_PP(1))));
	mr_set_status(m, MR_STATUS_FAILED, extra);
	PG_RETURN_VOID();
}

Datum
mig_define(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(mr_define_migration(fcinfo));
}

/*
 * mig_pause and mig_resume move a managed migration between running and
 * paused.  Being in the target status already is only a NOTICE; returns
 * NULL then, else the migration after the change.
 */
static Migration *
switch_managed_status(FunctionCallInfo fcinfo, const char *function,
					  const char *from, const char *to)
{
	char	   *name = name_arg(fcinfo, 0);
	Migration  *m = existing_migration(name, true);
	bool		startable;

	require_managed(m, function);
	mr_check_ownership(m);
	if (STATUS_IS(m, to))
	{
		ereport(NOTICE,
				(errmsg("migration \"%s\" is already %s", name, to)));
		return NULL;
	}
	startable = STATUS_IS(m, MR_STATUS_FAILED) || STATUS_IS(m, MR_STATUS_CANCELLED) ||
		STATUS_IS(m, MR_STATUS_PENDING);
	if (!STATUS_IS(m, from))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" is not %s", name, from),
				 errdetail("Its status is %s.", m->status),
				 startable ? errhint("Use mig_start(%s) to run it.", quote_literal_cstr(name)) : 0));
	mr_set_status(m, to, NULL);
	return m;
}

Datum
mig_pause(PG_FUNCTION_ARGS)
{
	(void) switch_managed_status(fcinfo, "mig_pause",
								 MR_STATUS_RUNNING, MR_STATUS_PAUSED);
	PG_RETURN_VOID();
}

Datum
mig_resume(PG_FUNCTION_ARGS)
{
	Migration  *m = switch_managed_status(fcinfo, "mig_resume",
										  MR_STATUS_PAUSED, MR_STATUS_RUNNING);

	if (m != NULL)
		warn_if_no_worker(m);
	PG_RETURN_VOID();
}

Datum
mig_cancel(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0);
	Migration  *m = existing_migration(name, true);

	mr_check_ownership(m);
	if (STATUS_IS(m, MR_STATUS_CANCELLED))
	{
		ereport(NOTICE,
				(errmsg("migration \"%s\" is already cancelled", name)));
		PG_RETURN_VOID();
	}
	if (STATUS_IS(m, MR_STATUS_COMPLETED))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" already completed", name)));
	mr_set_status(m, MR_STATUS_CANCELLED, NULL);
	PG_RETURN_VOID();
}

Datum
mig_reset(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0);
	Migration  *m = existing_migration(name, true);

	require_managed(m, "mig_reset");
	mr_check_ownership(m);
	if (STATUS_IS(m, MR_STATUS_RUNNING) || mr_runner_is_active(m->id))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("migration \"%s\" is running", name),
				 errhint("Pause or cancel it first.")));

	mr_set_status(m, MR_STATUS_PENDING,
				  "started_at = NULL, completed_at = NULL, " MR_CLEAR_ERROR ", "
				  "processed = 0, scanned = 0, batches = 0, retries = 0, "
				  "cursor = NULL, high_water = NULL, current_batch_size = NULL, "
				  "throttled = NULL, worker_pid = NULL, last_batch_at = NULL, "
				  "last_batch_ms = NULL, bounds_ms = 0, action_ms = 0, "
				  "bookkeeping_ms = 0, commit_ms = 0");
	mr_catalog_exec(psprintf("DELETE FROM %s WHERE migration_id = " INT64_FORMAT,
							 mr_catalog_table("migration_batches"), m->id),
					0, NULL, NULL, SPI_OK_DELETE);
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------------
 * CALL mig_run(name): the batch engine in the calling session
 * ----------------------------------------------------------------------
 */

static void
procedure_commit_and_begin(void)
{
	mr_spi_commit();
}

static bool
procedure_should_stop(void)
{
	return false;
}

static const RunnerHooks procedure_hooks = {
	procedure_commit_and_begin,
	procedure_should_stop
};

/*
 * The migration's state when mig_run may take it: pending, failed or
 * running without a runner.
 */
static void
check_runnable(Migration *m)
{
	if (STATUS_IS(m, MR_STATUS_PAUSED))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" is paused", m->name),
				 errhint("Resume it with mig_resume(%s) first.", quote_literal_cstr(m->name))));
	if (STATUS_IS(m, MR_STATUS_CANCELLED))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" was cancelled", m->name),
				 errhint("Start it again with mig_start(%s), or start over with mig_reset(%s).",
						 quote_literal_cstr(m->name), quote_literal_cstr(m->name))));
}

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
		case RUN_STOPPED:
		case RUN_INTERRUPTED:
			m = existing_migration(name, false);
			ereport(NOTICE,
					(errmsg("migration \"%s\" stopped because it is now %s",
							name, m->status)));
			break;
		case RUN_FAILED:
			m = existing_migration(name, false);
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

static void
mig_run_checked(Migration *m)
{
	RunOutcome	outcome;
	int			sqlerrcode;

	if (!STATUS_IS(m, MR_STATUS_RUNNING))
		mr_set_status(m, MR_STATUS_RUNNING, "started_at = now(), " MR_CLEAR_ERROR);
	mr_spi_commit();
	mr_pin_transaction();
	outcome = mr_run_migration(m->id, &procedure_hooks, &sqlerrcode);
	report_outcome(m->name, outcome, sqlerrcode);
}

Datum
mig_run(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0);
	Migration  *m;

	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		castNode(CallContext, fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("mig_run cannot run inside a transaction block"),
				 errdetail("It commits after every batch."),
				 errhint("Call it with CALL outside BEGIN ... COMMIT and outside functions.")));

	SPI_connect_ext(SPI_OPT_NONATOMIC);
	m = existing_migration(name, true);
	require_managed(m, "mig_run");
	mr_check_ownership(m);
	if (STATUS_IS(m, MR_STATUS_COMPLETED))
	{
		ereport(NOTICE, (errmsg("migration \"%s\" already completed", name)));
		SPI_finish();
		PG_RETURN_VOID();
	}
	check_runnable(m);

	if (!mr_try_lock_runner(m->id))
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
		mr_unlock_runner(m->id);
	}
	PG_END_TRY();

	SPI_finish();
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------------
 * mig_wait(name, timeout): block until the migration is done
 * ----------------------------------------------------------------------
 */

static bool
is_terminal(const char *status)
{
	return strcmp(status, MR_STATUS_COMPLETED) == 0 ||
		strcmp(status, MR_STATUS_FAILED) == 0 ||
		strcmp(status, MR_STATUS_CANCELLED) == 0;
}

Datum
mig_wait(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, 0);
	Migration  *m = existing_migration(name, false);
	TimestampTz deadline = 0;

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("mig_wait cannot wait in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errdetail("Its snapshot would never see the migration change.")));
	if (!PG_ARGISNULL(1))
	{
		Interval   *timeout = PG_GETARG_INTERVAL_P(1);
		/* in double: months of microseconds overflow int64 (300000 years) */
		double		usecs = timeout->time + timeout->day * (double) USECS_PER_DAY +
			timeout->month * (double) DAYS_PER_MONTH * USECS_PER_DAY;

		if (usecs < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout must not be negative")));
		/* a timeout of more than 100,000 years is no timeout */
		if (usecs < (double) (PG_INT64_MAX / 4))
			deadline = GetCurrentTimestamp() + (int64) usecs;
	}

	while (!is_terminal(m->status))
	{
		long		wait_ms = 1000;

		if (deadline != 0)
		{
			long		left = (long) ((deadline - GetCurrentTimestamp()) / 1000);

			if (left <= 0)
				break;
			wait_ms = Min(wait_ms, left);
		}
		(void) mr_wait_for_change(wait_ms);
		m = existing_migration(name, false);
	}
	mr_wait_done();
	PG_RETURN_TEXT_P(cstring_to_text(m->status));
}
