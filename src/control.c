/*-------------------------------------------------------------------------
 *
 * control.c
 *	  Controlling a migration from SQL: mig_pause, mig_resume, mig_cancel,
 *	  mig_reset, mig_drop, and mig_wait and mig_wait_all, which block until
 *	  a migration, or each of several, is done.
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
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "api.h"
#include "chain.h"
#include "migration_runner.h"

PG_FUNCTION_INFO_V1(mig_pause);
PG_FUNCTION_INFO_V1(mig_resume);
PG_FUNCTION_INFO_V1(mig_cancel);
PG_FUNCTION_INFO_V1(mig_reset);
PG_FUNCTION_INFO_V1(mig_drop);
PG_FUNCTION_INFO_V1(mig_wait);
PG_FUNCTION_INFO_V1(mig_wait_all);

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
	/* its keys after the cursor are its successor's: keep the note */
	mr_chain_check_not_continued(m);
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
 * mig_wait(name, timeout): block until the migration is done, and
 * mig_wait_all(names, timeout): until every one of them is
 * ----------------------------------------------------------------------
 */

static bool
is_terminal(const char *status)
{
	return strcmp(status, MR_STATUS_COMPLETED) == 0 ||
		strcmp(status, MR_STATUS_FAILED) == 0 ||
		strcmp(status, MR_STATUS_CANCELLED) == 0;
}

/*
 * The moment a wait with the timeout argument argno gives up, or 0 for no
 * timeout; an error in a transaction whose snapshot would never see the
 * migrations change.
 */
static TimestampTz
wait_deadline(FunctionCallInfo fcinfo, int argno, const char *function)
{
	Interval   *timeout;
	double		usecs;

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("%s cannot wait in a REPEATABLE READ or SERIALIZABLE transaction",
						function),
				 errdetail("Its snapshot would never see the migration change.")));
	if (PG_ARGISNULL(argno))
		return 0;
	timeout = PG_GETARG_INTERVAL_P(argno);
	/* in double: months of microseconds overflow int64 (300000 years) */
	usecs = timeout->time + timeout->day * (double) USECS_PER_DAY +
		timeout->month * (double) DAYS_PER_MONTH * USECS_PER_DAY;
	if (usecs < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	/* a timeout of more than 100,000 years is no timeout */
	if (usecs >= (double) (PG_INT64_MAX / 4))
		return 0;
	return GetCurrentTimestamp() + (int64) usecs;
}

/*
 * Sleep until some migration changes state (or a second passes: the
 * caller looks again anyway); false, without sleeping, once the deadline
 * (0: none) has passed.
 */
static bool
wait_until(TimestampTz deadline)
{
	long		wait_ms = 1000;

	if (deadline != 0)
	{
		long		left = (long) ((deadline - GetCurrentTimestamp()) / 1000);

		if (left <= 0)
			return false;
		wait_ms = Min(wait_ms, left);
	}
	(void) mr_wait_for_change(wait_ms);
	return true;
}

Datum
mig_wait(PG_FUNCTION_ARGS)
{
	char	   *name = mr_name_arg(fcinfo, 0);
	Migration  *m = mr_existing_migration(name, false);
	TimestampTz deadline = wait_deadline(fcinfo, 1, "mig_wait");

	while (!is_terminal(m->status) && wait_until(deadline))
		m = mr_existing_migration(name, false);
	mr_wait_done();
	PG_RETURN_TEXT_P(cstring_to_text(m->status));
}

/*
 * Read the migrations named into ms; true when every one of them is done.
 * An unknown name is an error (also one dropped while waited for).
 */
static bool
read_all(char **names, int n, Migration **ms)
{
	bool		all_done = true;
	int			i;

	for (i = 0; i < n; i++)
	{
		ms[i] = mr_existing_migration(names[i], false);
		all_done = all_done && is_terminal(ms[i]->status);
	}
	return all_done;
}

/* the rows (name, status) of mig_wait_all, in the order of its names */
static void
return_statuses(FunctionCallInfo fcinfo, Migration **ms, int n)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	MemoryContext old;
	int			i;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("mig_wait_all must be called in a context that accepts a set")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "mig_wait_all must return a row type");
	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	tupdesc = CreateTupleDescCopy(tupdesc);
	store = tuplestore_begin_heap(true, false, work_mem);
	MemoryContextSwitchTo(old);
	for (i = 0; i < n; i++)
	{
		Datum		values[2] = {CStringGetTextDatum(ms[i]->name),
		CStringGetTextDatum(ms[i]->status)};
		bool		nulls[2] = {false, false};

		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = tupdesc;
}

/*
 * mig_wait_all(names, timeout): wait until every migration named is
 * completed, failed or cancelled, or the timeout passed; one row per name
 * with its status then.
 */
Datum
mig_wait_all(PG_FUNCTION_ARGS)
{
	char	  **names;
	int			n;
	int			i;
	Migration **ms;
	TimestampTz deadline;

	mr_require_arg(fcinfo, 0, "names");
	names = mr_text_array_to_cstrings(PG_GETARG_DATUM(0), &n);
	for (i = 0; i < n; i++)
		if (names[i] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("names must not contain null")));
	ms = palloc0(sizeof(Migration *) * Max(n, 1));
	deadline = wait_deadline(fcinfo, 1, "mig_wait_all");
	while (!read_all(names, n, ms) && wait_until(deadline))
		;
	mr_wait_done();
	return_statuses(fcinfo, ms, n);
	return (Datum) 0;
}
