/*-------------------------------------------------------------------------
 *
 * retry.c
 *	  What the batch engine does when a step of a run fails: the guarded
 *	  step itself, the classification of its error, the records of a retry
 *	  and of a failure, and the backoff between attempts.
 *
 * A step (the setup of a run, or one batch) runs in a subtransaction of
 * the run's transaction, so an error rolls back exactly what the step did
 * and leaves the transaction usable: the retry or the failure is recorded
 * in it and committed with it.  Setup and batches share this one path.
 *
 * Transient errors (serialization failure, deadlock, lock timeout, and our
 * own statement timeout, which also halves the batch) are retried up to
 * max_retries times; a cancel request pauses the migration; anything else
 * marks it failed with the error's message, SQLSTATE, detail, hint and
 * context, and the batch's bounds.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timeout.h"

#include "compat.h"
#include "migration_runner.h"
#include "run_internal.h"

/*
 * Run step in a subtransaction of the caller's transaction.  Returns NULL
 * on success, or the error, copied into the run's memory; run->timed_out
 * then says whether it was the statement timeout the step armed.
 */
ErrorData *
mr_run_guarded(MigrationRun *run, GuardedStep step, void *result)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *edata = NULL;

	run->timed_out = false;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(run->batchcxt);
	PG_TRY();
	{
		step(run, result);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		/*
		 * ProcessInterrupts consumes the timeout's indicator when it raises
		 * the error, so tell our statement timeout from a cancel request by
		 * the time since the timeout was armed; the wait for the batch's
		 * locks before that does not count.
		 */
		run->timed_out = run->timeout_armed_at != 0 &&
			TimestampDifferenceExceeds(run->timeout_armed_at, GetCurrentTimestamp(),
									   run->statement_timeout_ms - 1);
		run->timeout_armed_at = 0;
		disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(run->runcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	return edata;
}

bool
mr_is_transient(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
}

/* exponential backoff with jitter: 100 ms, 200 ms, ... up to 10 s, +-50% */
long
mr_retry_backoff_ms(int attempt)
{
	long		base = 100L << Min(Max(attempt, 1) - 1, 7);

	base = Min(base, 10000L);
	return base / 2 + random() % (base + 1);
}

/*
 * Sleep ms milliseconds between transactions, waking for interrupts
 * (SIGTERM ends the process here) and for postmaster death.  Returns false,
 * early, when a cancel request arrives: the caller pauses the migration
 * and then lets the request raise its error.
 */
bool
mr_runner_sleep(long ms)
{
	TimestampTz until = GetCurrentTimestamp() + ms * 1000;

	for (;;)
	{
		if (QueryCancelPending && !ProcDiePending)
			return false;
		CHECK_FOR_INTERRUPTS();
		if (ms <= 0)
			return true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		ms = (until - GetCurrentTimestamp()) / 1000;
	}
}

/* a string as an SQL literal, or NULL */
static char *
literal_or_null(const char *s)
{
	return s ? quote_literal_cstr(s) : "NULL";
}

/*
 * Keep a failed batch in the history with its error: its bounds if it got
 * that far, no rows (they were rolled back).  A later successful run of the
 * same batch number replaces the row.
 */
void
mr_record_failed_batch(MigrationRun *run, const char *error)
{
	CatalogAccess access;
	int64		batch = mr_next_batch_number(run);
	Datum		args[13];
	char		nulls[13];

	if (run->history_insert == NULL || run->batch_started_at == 0 ||
		mr_history_size <= 0)
		return;
	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int64GetDatum(run->m->id);
	args[1] = Int64GetDatum(batch);
	args[2] = run->batch_first_key;
	args[3] = run->batch_last_key;
	if (run->batch_first_key == (Datum) 0)
		nulls[2] = nulls[3] = 'n';
	args[4] = Int32GetDatum(run->batch_nkeys);
	args[5] = Int64GetDatum(0);
	args[6] = TimestampTzGetDatum(run->batch_started_at);
	args[7] = Float8GetDatum((GetCurrentTimestamp() - run->batch_started_at) / 1000.0);
	args[8] = Float8GetDatum(0.0);
	args[9] = Float8GetDatum(0.0);
	args[10] = Int32GetDatum(run->attempts + 1);
	args[11] = CStringGetTextDatum(error);

	mr_catalog_enter(&access);
	mr_insert_history(run, batch, args, nulls);
	mr_catalog_leave(&access);
}

/* where the failed step was: the batch's bounds, or where it would start */
static char *
failed_bounds(MigrationRun *run)
{
	if (run->batch_keys)
		return pstrdup(run->batch_keys);
	if (run->has_cursor)
		return psprintf("after %s",
						mr_format_key(mr_key_to_text(run, run->cursor), run->m->nkeys));
	if (run->m->cursor)
		/* the run's setup failed before it read the catalog's cursor */
		return psprintf("after %s", mr_format_key(run->m->cursor, run->m->nkeys));
	return pstrdup("from the first key");
}

/*
 * After the step's subtransaction rolled back: mark the migration failed in
 * the still-open top-level transaction, keeping what identifies the row
 * behind the error (its DETAIL, HINT and CONTEXT).
 */
void
mr_record_failure(MigrationRun *run, ErrorData *edata)
{
	char	   *error;

	error = psprintf("%s (SQLSTATE %s) in batch " INT64_FORMAT " (keys %s, batch size %d)",
					 edata->message, unpack_sql_state(edata->sqlerrcode),
					 mr_next_batch_number(run), failed_bounds(run), run->batch_size);
	if (run->attempts > 0)
		error = psprintf("%s after %d attempts", error, run->attempts + 1);

	mr_set_status(run->m, MR_STATUS_FAILED,
				  psprintf("error = %s, error_detail = %s, error_hint = %s, "
						   "error_context = %s, worker_pid = NULL, throttled = NULL",
						   quote_literal_cstr(error), literal_or_null(edata->detail),
						   literal_or_null(edata->hint),
						   literal_or_null(edata->context)));
	mr_record_failed_batch(run, error);
}

void
mr_record_retry(MigrationRun *run, ErrorData *edata, int next_size)
{
	char	   *sql;
	char	   *reason;

	reason = psprintf("retrying batch " INT64_FORMAT " (attempt %d of %d) after %s: %s",
					  mr_next_batch_number(run), run->attempts + 1, run->max_retries + 1,
					  unpack_sql_state(edata->sqlerrcode), edata->message);
	if (next_size != run->batch_size)
		reason = psprintf("%s; batch size %d -> %d", reason, run->batch_size, next_size);

	sql = psprintf("UPDATE %s SET retries = retries + 1, throttled = %s, "
				   "current_batch_size = %d WHERE id = " INT64_FORMAT,
				   run->catalog, quote_literal_cstr(reason), next_size, run->m->id);
	mr_catalog_exec(sql, 0, NULL, NULL, SPI_OK_UPDATE);
}

/*
 * Decide what an error in a step means, and record it.  A statement timeout
 * is told from a user's cancel request by the timeout's own indicator, not
 * by the time elapsed (which includes waits for locks).
 */
BatchResult
mr_classify_error(MigrationRun *run, ErrorData *edata)
{
	int			next_size = run->batch_size;

	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !run->timed_out)
		return BATCH_NOT_RUNNING;	/* a cancel request: the caller pauses */

	if ((mr_is_transient(edata->sqlerrcode) || run->timed_out) &&
		run->attempts < run->max_retries)
	{
		if (run->timed_out)
			next_size = Max(Min(mr_min_batch_size, run->batch_size),
							run->batch_size / 2);
		mr_record_retry(run, edata, next_size);
		run->batch_size = next_size;
		run->attempts++;
		return BATCH_RETRY;
	}
	mr_record_failure(run, edata);
	return BATCH_FAILED;
}
