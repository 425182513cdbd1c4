/*-------------------------------------------------------------------------
 *
 * control.c
 *	  Controlling a migration from SQL: mig_pause, mig_resume, mig_cancel,
 *	  mig_reset, mig_drop, and mig_wait, which blocks until a migration is
 *	  done.
 *
 * Each checks the caller's privileges on the migration, then asks the
 * transition table (status.c) whether the operation may act on the
 * migration's current status, and writes the catalog through catalog.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "api.h"
#include "migration_runner.h"

PG_FUNCTION_INFO_V1(mig_pause);
PG_FUNCTION_INFO_V1(mig_resume);
PG_FUNCTION_INFO_V1(mig_cancel);
PG_FUNCTION_INFO_V1(mig_reset);
PG_FUNCTION_INFO_V1(mig_drop);
PG_FUNCTION_INFO_V1(mig_wait);

/*
 * mig_pause and mig_resume move a managed migration between running and
 * paused.  Returns NULL when it already was where op takes it, else the
 * migration after the change.
 */
static Migration *
switch_managed_status(FunctionCallInfo fcinfo, const char *function,
					  MigOperation op)
{
	char	   *name = mr_name_arg(fcinfo, 0);
	Migration  *m = mr_existing_migration(name, true);
	const char *to;

	mr_require_managed(m, function);
	mr_check_ownership(m);
	if (!mr_transition(m, op, &to))
		return NULL;
	mr_set_status(m, to, NULL);
	return m;
}

Datum
mig_pause(PG_FUNCTION_ARGS)
{
	(void) switch_managed_status(fcinfo, "mig_pause", MIG_OP_PAUSE);
	PG_RETURN_VOID();
}

Datum
mig_resume(PG_FUNCTION_ARGS)
{
	Migration  *m = switch_managed_status(fcinfo, "mig_resume", MIG_OP_RESUME);

	if (m != NULL)
		mr_warn_if_no_worker(m);
	PG_RETURN_VOID();
}

Datum
mig_cancel(PG_FUNCTION_ARGS)
{
	char	   *name = mr_name_arg(fcinfo, 0);
	Migration  *m = mr_existing_migration(name, true);
	const char *to;

	mr_check_ownership(m);
	if (mr_transition(m, MIG_OP_CANCEL, &to))
		mr_set_status(m, to, NULL);
	PG_RETURN_VOID();
}

/* delete the rows of migration m from one of the catalog's tables */
static void
delete_rows_of(Migration *m, const char *table)
{
	mr_catalog_exec(psprintf("DELETE FROM %s WHERE migration_id = " INT64_FORMAT,
							 mr_catalog_table(table), m->id),
					0, NULL, NULL, SPI_OK_DELETE);
}

Datum
mig_reset(PG_FUNCTION_ARGS)
{
	char	   *name = mr_name_arg(fcinfo, 0);
	Migration  *m = mr_existing_migration(name, true);
	const char *to;

	mr_require_managed(m, "mig_reset");
	mr_check_ownership(m);
	if (!mr_transition(m, MIG_OP_RESET, &to))
		PG_RETURN_VOID();

	/* the notification reports the progress after the reset: none */
	m->processed = 0;
	mr_set_status(m, to,
				  "started_at = NULL, completed_at = NULL, " MR_CLEAR_ERROR ", "
				  "processed = 0, scanned = 0, batches = 0, retries = 0, skipped = 0, "
				  "cursor = NULL, high_water = NULL, current_batch_size = NULL, "
				  "throttled = NULL, worker_pid = NULL, last_batch_at = NULL, "
				  "last_batch_ms = NULL, bounds_ms = 0, action_ms = 0, "
				  "bookkeeping_ms = 0, commit_ms = 0, "
				  "verifying_since = NULL");

	/*
	 * The next run splits the keys again, from the first one, and tries the
	 * keys it skipped again with the rest.
	 */
	delete_rows_of(m, "migration_slices");
	delete_rows_of(m, "migration_batches");
	delete_rows_of(m, "migration_skipped");
	PG_RETURN_VOID();
}

/*
 * mig_drop(name): remove a migration and, by the catalog's ON DELETE
 * CASCADE, its history.  Refused while it is running or a runner still
 * holds it (status.c).  The name is free again at commit; sessions waiting
 * in mig_wait wake up and report that the migration no longer exists.
 */
Datum
mig_drop(PG_FUNCTION_ARGS)
{
	char	   *name = mr_name_arg(fcinfo, 0);
	Migration  *m = mr_existing_migration(name, true);
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	const char *to;

	mr_check_ownership(m);
	(void) mr_transition(m, MIG_OP_DROP, &to);

	args[0] = Int64GetDatum(m->id);
	mr_catalog_exec(psprintf("DELETE FROM %s WHERE id = $1",
							 mr_catalog_table("migrations")),
					1, argtypes, args, SPI_OK_DELETE);
	mr_announce_change_at_commit();
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
	char	   *name = mr_name_arg(fcinfo, 0);
	Migration  *m = mr_existing_migration(name, false);
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
		m = mr_existing_migration(name, false);
	}
	mr_wait_done();
	PG_RETURN_TEXT_P(cstring_to_text(m->status));
}
