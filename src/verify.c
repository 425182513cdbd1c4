/*-------------------------------------------------------------------------
 *
 * verify.c
 *	  A migration's verify query: a SELECT that returns the rows the
 *	  migration got wrong.  mig_define checked it (action.c); the batch
 *	  engine runs it here, in one of two ways, decided by whether it uses
 *	  the batch's key parameters $1..$2k:
 *
 *	 - with them, after the action in every batch, in the batch's
 *	   transaction, as the migration's owner under the action's pinned
 *	   search_path, security-restricted context and statement timeout: a
 *	   row returned fails the batch (SQLSTATE 23514, check_violation), so
 *	   the batch rolls back and is recorded as failed like any data error;
 *
 *	 - without them, once, when no key is left, before the migration is
 *	   marked completed.  Entering that check is committed first
 *	   (verifying_since, while the status stays running, is what mig_status
 *	   shows as "verifying"); the query then runs in a transaction of its
 *	   own, and completes the migration or marks it failed with the number
 *	   of rows it returned and the first of them.
 *
 * A runner that finds no key left always goes through the check again,
 * whatever it was doing before: so a crash while verifying, and a resumed
 * migration that a verify failed, verify again and never complete without
 * it.  Both ways share the one batch engine (batch.c, run.c, slices.c call
 * in here at the few points where a batch ends or a migration completes).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/plancache.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "define.h"
#include "migration_runner.h"
#include "run_internal.h"

/* how the final check's guarded step ended */
typedef struct VerifyOutcome
{
	BatchResult result;
	bool		wrong_rows;		/* its error is the query's rows */
} VerifyOutcome;

/* an error in preparing the query says which query it was */
static void
verify_error_context(void *arg)
{
	errcontext("verify query of migration \"%s\"", (const char *) arg);
}

/*
 * Prepare the verify query once per run, under the migration's pinned
 * search_path, with the 2k key-typed parameters it was checked with, and
 * note whether it uses them.  Called with the plans of the run
 * (plans.c); freed with them.
 */
void
mr_prepare_verify(MigrationRun *run)
{
	Migration  *m = run->m;
	Oid			types[2 * MR_MAX_KEY_COLUMNS];
	SPIPlanPtr	plan;
	CachedPlanSource *source;
	ErrorContextCallback errcallback;
	int			nestlevel;
	int			i;

	if (run->verify != NULL)
		SPI_freeplan(run->verify);
	run->verify = NULL;
	if (m->verify == NULL)
		return;
	for (i = 0; i < 2 * m->nkeys; i++)
		types[i] = m->key_types[i % m->nkeys];
	errcallback.callback = verify_error_context;
	errcallback.arg = m->name;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	nestlevel = NewGUCNestLevel();
	mr_set_guc_saved("search_path", run->search_path);
	plan = SPI_prepare(m->verify, 2 * m->nkeys, types);
	if (plan == NULL)
		elog(ERROR, "could not prepare the verify query of migration \"%s\": %s",
			 m->name, SPI_result_code_string(SPI_result));
	error_context_stack = errcallback.previous;
	source = linitial(SPI_plan_get_plan_sources(plan));
	run->verify_keys = mr_verify_uses_keys(source->query_list);
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the plan of the verify query");
	run->verify = plan;
	AtEOXact_GUC(true, nestlevel);
}

/* does a verify query run once, when no key is left? */
bool
mr_has_final_verify(MigrationRun *run)
{
	return run->verify != NULL && !run->verify_keys;
}

/* the longest row text kept in the error's detail, in bytes */
#define MAX_ROW_TEXT	1000

/*
 * A row as "column=value, ...", for the error's detail; cut (at a
 * character boundary) after MAX_ROW_TEXT bytes, so that a wide row does
 * not bloat the catalog and every mig_status.
 */
static char *
row_text(HeapTuple tuple, TupleDesc desc)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 1; i <= desc->natts && buf.len <= MAX_ROW_TEXT; i++)
	{
		char	   *value;

		if (TupleDescAttr(desc, i - 1)->attisdropped)
			continue;
		value = SPI_getvalue(tuple, desc, i);
		appendStringInfo(&buf, "%s%s=%s", buf.len > 0 ? ", " : "",
						 SPI_fname(desc, i), value ? value : "NULL");
	}
	if (buf.len > MAX_ROW_TEXT)
	{
		buf.len = pg_mbcliplen(buf.data, buf.len, MAX_ROW_TEXT);
		buf.data[buf.len] = '\0';
		appendStringInfoString(&buf, "...");
	}
	return buf.data;
}

/*
 * Run the verify query through a cursor: the first row is kept as text,
 * the others only counted, so a query that finds a million wrong rows
 * costs no memory.  Returns how many rows it returned.
 */
static uint64
run_verify(MigrationRun *run, Datum *args, const char *nulls, char **first_row)
{
	Portal		portal;
	uint64		n;

	/* not read-only: it must see what the action just wrote */
	portal = SPI_cursor_open(NULL, run->verify, args, nulls, false);
	SPI_cursor_fetch(portal, true, 1);
	n = SPI_processed;
	if (n > 0)
		*first_row = row_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
	SPI_freetuptable(SPI_tuptable);
	if (n > 0)
	{
		SPI_cursor_move(portal, true, FETCH_ALL);
		n += SPI_processed;
	}
	SPI_cursor_close(portal);
	return n;
}

/*
 * After the action, in the data side of a batch (already the owner, in
 * the batch's security-restricted context, under its timeout): run a
 * verify query that uses the keys on the batch's bounds, and fail the
 * batch if it returns a row.
 */
void
mr_verify_batch(MigrationRun *run, Datum *first, Datum *last)
{
	Datum		args[2 * MR_MAX_KEY_COLUMNS];
	int			nkeys = run->m->nkeys;
	char	   *row = NULL;
	uint64		n;

	if (run->verify == NULL || !run->verify_keys)
		return;
	memcpy(args, first, sizeof(Datum) * nkeys);
	memcpy(args + nkeys, last, sizeof(Datum) * nkeys);
	n = run_verify(run, args, NULL, &row);
	if (n > 0)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg_plural("verify query returned %lu row for keys %s",
							   "verify query returned %lu rows for keys %s",
							   (unsigned long) n, (unsigned long) n, run->batch_keys),
				 errdetail("First row: %s", row),
				 errhint("The batch was rolled back; correct what the verify query finds, then start the migration again: it runs the batch again.")));
}

/*
 * No key is left.  With a final verify query, record that the check is
 * under way instead of completing: verifying_since, this runner, and the
 * cursor at the high-water mark (slices kept their own cursors).  The
 * caller commits that; the check runs in the next transaction.  Returns
 * false, and does nothing, without such a query.
 */
bool
mr_begin_verifying(MigrationRun *run)
{
	if (!mr_has_final_verify(run))
		return false;
	mr_catalog_exec(psprintf("UPDATE %s SET verifying_since = now(), worker_pid = %d, "
							 "throttled = NULL, cursor = coalesce(high_water, cursor) "
							 "WHERE id = " INT64_FORMAT,
							 run->catalog, MyProcPid, run->m->id),
					0, NULL, NULL, SPI_OK_UPDATE);
	return true;
}

/* is m (read again) still running its final check? */
static bool
still_verifying(Migration *m)
{
	return m != NULL && strcmp(m->status, MR_STATUS_RUNNING) == 0 && m->verifying;
}

/*
 * The final check, a guarded step: run the query as the owner, and
 * complete the migration if it returned no row.  The query may take long
 * (it reads the whole table, typically), so it runs without the
 * migration's row lock: mig_pause or mig_cancel need not wait for it.  The
 * row is locked afterwards, and the migration completed only if it is
 * still running its check.  Two runners never check at once: each holds a
 * runner lock, and the launcher and CALL mig_run start none while one is
 * held.
 */
static void
final_verify_step(MigrationRun *run, void *arg)
{
	VerifyOutcome *out = (VerifyOutcome *) arg;
	Datum		args[2 * MR_MAX_KEY_COLUMNS] = {0};
	char		nulls[2 * MR_MAX_KEY_COLUMNS + 1];
	Migration  *m;
	Oid			saved_user;
	int			saved_sec;
	char	   *row = NULL;
	uint64		n;

	/* the row lock after the query waits at most lock_timeout */
	mr_set_local_guc("search_path", run->search_path);
	mr_set_local_guc("lock_timeout", psprintf("%d", run->lock_timeout_ms));
	mr_set_local_guc("statement_timeout", psprintf("%d", run->statement_timeout_ms));
	out->result = BATCH_NOT_RUNNING;
	if (!still_verifying(mr_migration_by_id(run->m->id, false)))
		return;
	if (run->verify == NULL)
		mr_prepare_verify(run);
	memset(nulls, 'n', sizeof(nulls));
	pgstat_report_activity(STATE_RUNNING,
						   psprintf("migration %s: verify query", run->m->name));

	GetUserIdAndSecContext(&saved_user, &saved_sec);
	SetUserIdAndSecContext(run->m->owner, saved_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (run->statement_timeout_ms > 0)
	{
		run->timeout_armed_at = GetCurrentTimestamp();
		enable_timeout_after(STATEMENT_TIMEOUT, run->statement_timeout_ms);
	}
	n = run_verify(run, args, nulls, &row);
	if (run->statement_timeout_ms > 0)
		disable_timeout(STATEMENT_TIMEOUT, false);
	run->timeout_armed_at = 0;
	SetUserIdAndSecContext(saved_user, saved_sec);

	if (n > 0)
	{
		out->wrong_rows = true;
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg_plural("verify query returned %lu row",
							   "verify query returned %lu rows",
							   (unsigned long) n, (unsigned long) n),
				 errdetail("First row: %s", row),
				 errhint("Correct what the verify query finds, then start the migration again: it runs the query again.")));
	}
	m = mr_migration_by_id(run->m->id, true);
	if (!still_verifying(m))
		return;
	mr_set_status(m, MR_STATUS_COMPLETED,
				  "completed_at = now(), verifying_since = NULL, worker_pid = NULL, "
				  "throttled = NULL");
	out->result = BATCH_LAST;
}

/* a string as an SQL literal, or NULL */
static char *
literal_or_null(const char *s)
{
	return s ? quote_literal_cstr(s) : "NULL";
}

/*
 * What an error of the final check comes to, recorded as a batch's is: a
 * cancel request pauses (the caller does that), a transient error or our
 * statement timeout is retried up to max_retries, anything else (the rows
 * the query returned, first) marks the migration failed and ends the check.
 */
static BatchResult
verify_error(MigrationRun *run, ErrorData *edata, bool wrong_rows)
{
	Migration  *m;
	char	   *error;

	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !run->timed_out)
		return BATCH_NOT_RUNNING;
	/* paused or cancelled while it ran: the next run checks again */
	m = mr_migration_by_id(run->m->id, true);
	if (!still_verifying(m))
		return BATCH_NOT_RUNNING;
	if (!wrong_rows && (mr_is_transient(edata->sqlerrcode) || run->timed_out) &&
		run->attempts < run->max_retries)
	{
		error = psprintf("retrying the verify query (attempt %d of %d) after %s: %s",
						 run->attempts + 1, run->max_retries + 1,
						 unpack_sql_state(edata->sqlerrcode), edata->message);
		mr_catalog_exec(psprintf("UPDATE %s SET retries = retries + 1, throttled = %s "
								 "WHERE id = " INT64_FORMAT,
								 run->catalog, quote_literal_cstr(error), m->id),
						0, NULL, NULL, SPI_OK_UPDATE);
		run->attempts++;
		return BATCH_RETRY;
	}
	error = wrong_rows ? pstrdup(edata->message) :
		psprintf("%s (SQLSTATE %s) in the verify query", edata->message,
				 unpack_sql_state(edata->sqlerrcode));
	if (run->attempts > 0)
		error = psprintf("%s after %d attempts", error, run->attempts + 1);
	mr_set_status(m, MR_STATUS_FAILED,
				  psprintf("error = %s, error_detail = %s, error_hint = %s, "
						   "error_context = %s, verifying_since = NULL, "
						   "worker_pid = NULL, throttled = NULL",
						   quote_literal_cstr(error), literal_or_null(edata->detail),
						   literal_or_null(edata->hint), literal_or_null(edata->context)));
	return BATCH_FAILED;
}

/*
 * The final check, in the caller's open transaction (the one after the
 * transaction that began it): BATCH_LAST when the migration completed,
 * BATCH_FAILED, BATCH_RETRY or BATCH_NOT_RUNNING.
 */
BatchResult
mr_run_final_verify(MigrationRun *run)
{
	VerifyOutcome out = {BATCH_FAILED, false};
	ErrorData  *edata;

	if (run->last_error)
	{
		FreeErrorData(run->last_error);
		run->last_error = NULL;
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	edata = mr_run_guarded(run, final_verify_step, &out);
	if (edata != NULL)
	{
		/* DROP EXTENSION took the catalog away under the check: just stop */
		out.result = !OidIsValid(mr_extension_oid(true)) ? BATCH_NOT_RUNNING :
			verify_error(run, edata, out.wrong_rows);
		run->last_error = edata;
	}
	else
		run->attempts = 0;
	SPI_finish();
	PopActiveSnapshot();
	return out.result;
}
