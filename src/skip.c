/*-------------------------------------------------------------------------
 *
 * skip.c
 *	  on_error 'skip': the batch engine narrows a batch that failed with a
 *	  data error down to the keys whose action fails, and skips those keys,
 *	  keeping each with its error in migration_skipped.
 *
 * A data error is one of SQLSTATE class 22 (data exception) or 23
 * (integrity constraint violation), or P0001 (RAISE EXCEPTION): an error
 * that the same action on the same row raises again.  Transient errors
 * (serialization failure, deadlock, lock or statement timeout) and cancel
 * requests are never skipped; they take retry.c's path as always.
 *
 * Narrowing happens across transactions: every attempt is a batch of its
 * own, a guarded step in a transaction of its own, so no more than two
 * subtransactions are ever open at once, however many keys a batch has.
 * When a batch of n keys fails with a data error, the n keys from the
 * cursor on are the window, and the next batch has n/2 keys.  Each batch
 * inside the window that fails halves the size again; each that succeeds
 * moves the cursor as usual and doubles the size back, up to the keys left
 * in the window.  A key that fails alone is skipped: the batch is run again,
 * in the same transaction, for that same key (found again under the row
 * lock, so a steal or a delete in between is seen) without its action; it
 * records the key with its error in migration_skipped, adds one to
 * migrations.skipped and moves the cursor (the slice's, for a slice) past
 * the key, all in one commit.  Past the window the size is restored.
 *
 * The window is counted in keys rather than bounded by a key, so that no
 * key comparison is needed outside the bounds queries; rows inserted or
 * deleted meanwhile only make it end a little early or late, which costs
 * another narrowing at most.  It lives in memory only: after a crash the
 * run restarts from the committed cursor and narrows again, which neither
 * loses nor repeats anything, since data and cursor commit together.
 *
 * More skips than max_skipped fail the migration at the key that would be
 * one too many; that key is not recorded, and the cursor stays before it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"

#include "compat.h"
#include "migration_runner.h"
#include "run_internal.h"

/*
 * An error that the action raises again for the same rows: a data
 * exception, an integrity constraint violation, or RAISE EXCEPTION.
 */
bool
mr_is_data_error(MigrationRun *run, ErrorData *edata)
{
	int			category = ERRCODE_TO_CATEGORY(edata->sqlerrcode);

	if (run->timed_out)
		return false;
	return category == ERRCODE_DATA_EXCEPTION ||
		category == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION ||
		edata->sqlerrcode == ERRCODE_RAISE_EXCEPTION;
}

/* may this batch's error be narrowed down and skipped? */
static bool
skippable(MigrationRun *run, ErrorData *edata)
{
	return run->m->skip_errors && run->batch_nkeys > 0 &&
		mr_is_data_error(run, edata);
}

static void
set_size(MigrationRun *run, int size)
{
	run->skip.size = Max(size, 1);
	run->batch_size = run->skip.size;
}

/* a window of the n keys from the cursor on, unless one is open already */
static void
open_window(MigrationRun *run, int64 n)
{
	/* a window of another slice (the runner moved on) is over */
	if (run->skip.narrowing && run->skip.slice != run->slice)
		run->skip.narrowing = false;
	if (run->skip.narrowing)
	{
		run->skip.window_left = Max(run->skip.window_left, n);
		return;
	}
	run->skip.narrowing = true;
	run->skip.slice = run->slice;
	run->skip.window_left = n;
	run->skip.restore_size = run->batch_size;
}

static void
close_window(MigrationRun *run)
{
	run->skip.narrowing = false;
	run->batch_size = run->skip.restore_size;
}

/*
 * mig_alter (or the adaptive size) chose a new batch size: inside a window
 * it is the size to restore past it, and the narrowed size stays.
 */
int
mr_skip_new_batch_size(MigrationRun *run, int size)
{
	if (!run->skip.narrowing)
		return size;
	run->skip.restore_size = size;
	return run->batch_size;
}

/* the text[] of a key as migration_skipped keeps it, e.g. {42} */
static char *
key_as_text(Datum key)
{
	return OidOutputFunctionCall(F_ARRAY_OUT, key);
}

/* the same as messages show keys, e.g. (42) */
static char *
key_for_message(MigrationRun *run, Datum key)
{
	int			n;
	char	  **values = mr_text_array_to_cstrings(key, &n);

	return mr_format_key(values, n);
}

/*
 * The batch failed: if it was a batch of one key and a data error, that
 * key is to be skipped.  Takes edata, and the key, for the batch that
 * records the skip (mr_skip_this_key), which the caller runs next;
 * mr_skip_pass_done ends it.
 */
bool
mr_skip_key_failed(MigrationRun *run, ErrorData *edata)
{
	MemoryContext old;

	if (!skippable(run, edata) || run->batch_nkeys != 1)
		return false;
	open_window(run, 1);
	old = MemoryContextSwitchTo(run->runcxt);
	run->skip.key = datumCopy(run->batch_first_key, false, -1);
	MemoryContextSwitchTo(old);
	run->skip.error = edata;
	run->skip.recording = false;
	set_size(run, 1);
	return true;
}

/* the batch that recorded the skip is over, with error edata or none */
void
mr_skip_pass_done(MigrationRun *run, ErrorData *edata)
{
	/* a data error of the skip's own bookkeeping is not narrowed again */
	run->skip.no_narrow = edata != NULL && run->skip.recording;
	run->skip.recording = false;
	FreeErrorData(run->skip.error);
	run->skip.error = NULL;
	pfree(DatumGetPointer(run->skip.key));
	run->skip.key = (Datum) 0;
}

/*
 * Called with the batch's bounds found: is this batch the one key to skip?
 * It is when the batch found exactly that key, alone.  Otherwise (a steal
 * lowered the slice's upper key, the row was deleted or a key inserted
 * before it) the batch runs as any other.
 */
bool
mr_skip_this_key(MigrationRun *run)
{
	if (run->skip.error == NULL || run->batch_nkeys != 1 ||
		!datumIsEqual(run->batch_first_key, run->skip.key, false, -1))
		return false;
	run->skip.recording = true;
	return true;
}

/* what the history says of the batch that skipped a key */
const char *
mr_skip_history_note(MigrationRun *run)
{
	return psprintf("skipped: %s (SQLSTATE %s)", run->skip.error->message,
					unpack_sql_state(run->skip.error->sqlerrcode));
}

/*
 * Keep the skipped key with its error, and count it; more than max_skipped
 * keys fail the batch, and with it the migration.  Runs in the batch's
 * guarded step, before its progress (the cursor past the key) is recorded.
 */
void
mr_skip_record(MigrationRun *run)
{
	ErrorData  *e = run->skip.error;
	CatalogAccess access;
	Datum		args[7];
	char		nulls[7] = "       ";
	bool		isnull;
	bool		inserted;
	int64		skipped;
	int64		max_skipped;

	args[0] = Int64GetDatum(run->m->id);
	args[1] = CStringGetTextDatum(key_as_text(run->skip.key));
	args[2] = CStringGetTextDatum(unpack_sql_state(e->sqlerrcode));
	args[3] = CStringGetTextDatum(e->message);
	args[4] = e->detail ? CStringGetTextDatum(e->detail) : (Datum) 0;
	args[5] = e->context ? CStringGetTextDatum(e->context) : (Datum) 0;
	args[6] = Int32GetDatum(run->slice);
	nulls[4] = e->detail ? ' ' : 'n';
	nulls[5] = e->context ? ' ' : 'n';

	mr_catalog_enter(&access);
	/* a key skipped before (and not retried since) keeps one row */
	if (SPI_execute_with_args(psprintf("INSERT INTO %s AS s (migration_id, key, sqlstate, error, "
									   "error_detail, error_context, slice) "
									   "VALUES ($1, $2, $3, $4, $5, $6, $7) "
									   "ON CONFLICT (migration_id, key) DO UPDATE SET "
									   "sqlstate = excluded.sqlstate, error = excluded.error, "
									   "error_detail = excluded.error_detail, "
									   "error_context = excluded.error_context, "
									   "slice = excluded.slice, skipped_at = now() "
									   "RETURNING s.xmax = 0",
									   mr_catalog_table("migration_skipped")),
							  7, (Oid[]) {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
								  TEXTOID, INT4OID},
							  args, nulls, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not record the skipped key");
	inserted = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	if (SPI_execute_with_args(psprintf("UPDATE %s SET skipped = skipped + $2 WHERE id = $1 "
									   "RETURNING skipped, max_skipped", run->catalog),
							  2, (Oid[]) {INT8OID, INT4OID},
							  (Datum[]) {args[0], Int32GetDatum(inserted ? 1 : 0)},
							  NULL, false, 0) != SPI_OK_UPDATE_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "could not count the skipped key");
	skipped = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	max_skipped = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 2, &isnull));
	mr_catalog_leave(&access);

	if (skipped > max_skipped)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("migration \"%s\" skipped more than max_skipped (" INT64_FORMAT ") keys",
						run->m->name, max_skipped),
				 errdetail("The action failed for key %s too: %s (SQLSTATE %s)%s%s",
						   key_for_message(run, run->skip.key), e->message,
						   unpack_sql_state(e->sqlerrcode),
						   e->detail ? "\n" : "", e->detail ? e->detail : ""),
				 errhint("The keys skipped so far are in migration_skipped.  Fix their data or the action, "
						 "retry them with mig_retry_skipped(), then run the migration again.")));
	ereport(LOG,
			(errmsg("migration_runner: migration \"%s\" skipped key %s: %s (SQLSTATE %s)",
					run->m->name, key_for_message(run, run->skip.key), e->message,
					unpack_sql_state(e->sqlerrcode))));
}

/*
 * After a failed batch, outside its rolled back step: a data error of a
 * batch of several keys narrows the next batches down to half of them.  The
 * failed batch is kept in the history, as a retried one is, and counted in
 * migrations.retries.  True (with *result = BATCH_DONE: the next batch runs
 * after the usual delay) when the error was handled so.
 */
bool
mr_skip_narrow(MigrationRun *run, ErrorData *edata, BatchResult *result)
{
	bool		no_narrow = run->skip.no_narrow;
	int			size = run->batch_nkeys / 2;
	char	   *note;

	run->skip.no_narrow = false;
	if (no_narrow || !skippable(run, edata) || run->batch_nkeys < 2)
		return false;

	open_window(run, run->batch_nkeys);
	note = psprintf("%s (SQLSTATE %s); narrowing: batch size %d -> %d",
					edata->message, unpack_sql_state(edata->sqlerrcode),
					run->batch_nkeys, size);
	mr_record_failed_batch(run, note);
	mr_catalog_exec(psprintf("UPDATE %s SET retries = retries + 1%s WHERE id = " INT64_FORMAT,
							 run->catalog,
							 run->slice > 0 ? "" : psprintf(", current_batch_size = %d", size),
							 run->m->id),
					0, NULL, NULL, SPI_OK_UPDATE);
	ereport(DEBUG1,
			(errmsg("migration_runner: migration \"%s\"%s: batch " INT64_FORMAT " (keys %s) failed: %s",
					run->m->name,
					run->slice > 0 ? psprintf(" slice %d", run->slice) : "",
					mr_next_batch_number(run), run->batch_keys, note)));
	set_size(run, size);
	*result = BATCH_DONE;
	return true;
}

/*
 * After a batch that committed (or will, with its transaction): inside a
 * window, count its keys off the window and double the size back, up to
 * the keys left; past the window, or when the runner leaves its slice,
 * restore the size.
 */
void
mr_skip_after_batch(MigrationRun *run, BatchResult result)
{
	if (!run->skip.narrowing)
		return;
	if (result != BATCH_DONE || run->skip.slice != run->slice)
	{
		close_window(run);
		return;
	}
	run->skip.window_left -= run->batch_nkeys;
	if (run->skip.window_left <= 0)
		close_window(run);
	else
		set_size(run, (int) Min(Min((int64) run->skip.size * 2, run->skip.window_left),
								(int64) run->skip.restore_size));
}
