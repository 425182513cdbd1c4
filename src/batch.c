/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  One batch of a managed migration, in one transaction:
 *
 *	 1. lock the relation, and only then take the snapshot the batch reads
 *		with: a table rewrite (ALTER TABLE ... TYPE, TRUNCATE and INSERT)
 *		that commits while the batch waits for its lock is then seen whole,
 *		never as an empty table that would end the run;
 *	 2. lock the migration's catalog row (or, for a slice, the slice's row)
 *		and check it is still running and its relation and key are
 *		unchanged; pick up options mig_alter changed;
 *	 3. find the batch's first and last key by keyset, through the index:
 *		WHERE (key) > (cursor) AND (key) <= (upper) ORDER BY key LIMIT n,
 *		where upper is the high-water mark or the slice's upper key, read
 *		again under the row lock: a runner that steals the slice's upper
 *		part lowers it under the same lock, so the two never overlap;
 *	 4. run the action as the migration's owner with those bounds, then
 *		the verify query if it checks each batch (verify.c);
 *	 5. add the rows changed to processed, move the cursor to the last key,
 *		record the batch in the history, and mark the migration (or the
 *		slice) completed when no key is left, or, with a final verify
 *		query, record that the check is under way (verify.c).
 *
 * Steps 1-5 run as a guarded step (retry.c), so an error in the action rolls
 * back exactly the batch; the failure (or the retry) is then recorded in the
 * same top-level transaction.  Data and cursor commit together, so a crash
 * at any point resumes at the first uncommitted batch and no batch is ever
 * applied twice; that is also why batch commits may be asynchronous.
 *
 * With on_error 'skip', a batch that fails with a data error is narrowed
 * down to its failing keys over the next batches (skip.c); a key that fails
 * alone is skipped by a second run of steps 1-5 in the same transaction,
 * without its action, which records the skip and moves the cursor past it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "compat.h"
#include "migration_runner.h"
#include "run_internal.h"

/*
 * SET CONSTRAINTS ALL IMMEDIATE (deferred = false) or ALL DEFERRED.
 *
 * The action runs with every constraint immediate: it runs as a
 * security-restricted operation, in which PostgreSQL refuses to queue a
 * deferred trigger (it would fire at commit, outside that operation), so a
 * table with a DEFERRABLE INITIALLY DEFERRED foreign key, as Django creates
 * them, could not be migrated at all.  Checked at the end of the action
 * instead, a violation fails the batch inside its guarded step, with its
 * bounds, like any other error of the action.  The catalog statements that
 * follow run with deferrable triggers deferred again, as they were declared
 * (the catalog has none of its own; this keeps one a superuser adds firing
 * at commit).
 */
static void
set_all_constraints(bool deferred)
{
	ConstraintsSetStmt stmt;

	memset(&stmt, 0, sizeof(stmt));
	stmt.type = T_ConstraintsSetStmt;
	stmt.constraints = NIL;
	stmt.deferred = deferred;
	AfterTriggerSetState(&stmt);
}

/*
 * Settings for this batch only; SET LOCAL semantics, so they vanish at the
 * end of the transaction.  synchronous_commit must still be in force at the
 * top-level commit, which it is: a released subtransaction keeps its locals.
 */
void
mr_set_batch_gucs(MigrationRun *run)
{
	mr_set_local_guc("search_path", run->search_path);
	mr_set_local_guc("lock_timeout", psprintf("%d", run->lock_timeout_ms));
	mr_set_local_guc("statement_timeout", psprintf("%d", run->statement_timeout_ms));
	mr_set_local_guc("synchronous_commit", mr_synchronous_commit ? "on" : "off");
	mr_shard_set_batch_gucs(run);
}

/*
 * Run a statement on this migration's catalog row: plan_at finds the row by
 * the ctid this runner last saw (row_tid, among args), plan_by_id by its id
 * when that version is gone (updated by someone else, or never seen).  The
 * statement returns the row's ctid in column ctid_col, which is remembered
 * for the next one.  Returns the number of rows (0 or 1).
 */
static uint64
exec_on_row(MigrationRun *run, SPIPlanPtr plan_at, SPIPlanPtr plan_by_id,
			Datum *args, const char *nulls, int expected, int ctid_col)
{
	bool		isnull;

	SPI_processed = 0;
	if (run->row_tid_valid &&
		SPI_execute_plan(plan_at, args, nulls, false, 1) != expected)
		elog(ERROR, "could not access migration row");
	if (SPI_processed == 0 &&
		SPI_execute_plan(plan_by_id, args, nulls, false, 1) != expected)
		elog(ERROR, "could not access migration row");
	run->row_tid_valid = (SPI_processed == 1);
	if (run->row_tid_valid)
		ItemPointerCopy(DatumGetItemPointer(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc,
														  ctid_col, &isnull)),
						&run->row_tid);
	return SPI_processed;
}

/*
 * Lock the batch's catalog row: the migration's, or the slice's.  False if
 * the row is gone.
 */
static bool
lock_own_row(MigrationRun *run, RowState *state)
{
	CatalogAccess access;
	Datum		args[2] = {Int64GetDatum(run->m->id), ItemPointerGetDatum(&run->row_tid)};
	bool		found;

	if (run->slice > 0)
		return mr_lock_slice_row(run, state);
	mr_catalog_enter(&access);
	found = exec_on_row(run, run->lock_row_at, run->lock_row, args, NULL,
						SPI_OK_SELECT, 2) == 1;
	if (found)
		mr_read_row_state(run, state);
	mr_catalog_leave(&access);
	return found;
}

/* the number of the next batch: of the migration, or of the slice */
int64
mr_next_batch_number(MigrationRun *run)
{
	return run->slice > 0 ? run->slice_batches + 1 : run->m->batches + 1;
}

/*
 * Insert (or replace) one row of batch history from the history_insert
 * arguments, then drop the rows that fall out of the window.  Runs inside
 * mr_catalog_enter; args and nulls have 13 entries, the last of which
 * (the slice) is set here.
 *
 * The prune starts where the last one of this run stopped: rows it deleted
 * stay in the index until VACUUM, and a scan from the lowest batch would
 * walk all of them on every batch.
 */
void
mr_insert_history(MigrationRun *run, int64 batch, Datum *args, char *nulls)
{
	Datum		prune_args[4];

	args[12] = Int32GetDatum(run->slice);
	nulls[12] = ' ';
	if (SPI_execute_plan(run->history_insert, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record batch history");
	if (batch - mr_history_size <= run->pruned_to)
		return;
	prune_args[0] = args[0];
	prune_args[1] = Int64GetDatum(run->pruned_to);
	prune_args[2] = Int64GetDatum(batch - mr_history_size);
	prune_args[3] = Int32GetDatum(run->slice);
	if (SPI_execute_plan(run->history_prune, prune_args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not prune batch history");
	run->pruned_to = batch - mr_history_size;
}

/*
 * Run the bounds query; returns the number of keys found and sets first and
 * last, copied into the batch's memory.
 */
static int
find_bounds(MigrationRun *run, Datum *first, Datum *last)
{
	Datum		args[2 * MR_MAX_KEY_COLUMNS];
	SPIPlanPtr	plan;
	int			nkeys = run->m->nkeys;
	int			nestlevel;
	int			n;

	if (run->bounds_plan_size != run->batch_size)
		mr_prepare_bounds(run);

	if (run->has_cursor)
	{
		memcpy(args, run->cursor, sizeof(Datum) * nkeys);
		memcpy(args + nkeys, run->upper, sizeof(Datum) * nkeys);
		plan = run->bounds_next;
	}
	else
	{
		memcpy(args, run->upper, sizeof(Datum) * nkeys);
		plan = run->bounds_first;
	}
	nestlevel = mr_enter_index_scan();
	if (SPI_execute_plan(plan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "bounds query failed");
	AtEOXact_GUC(true, nestlevel);
	n = (int) SPI_processed;
	if (n > 0)
	{
		mr_key_from_tuple(run, SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
						  first, run->batchcxt);
		mr_key_from_tuple(run, SPI_tuptable->vals[n - 1], SPI_tuptable->tupdesc,
						  last, run->batchcxt);
	}
	SPI_freetuptable(SPI_tuptable);
	return n;
}

/*
 * Run the action on the keys from first to last, as mr_enter_owner left us;
 * also for mig_retry_skipped (skip_retry.c), one key at a time.
 */
uint64
mr_run_action(MigrationRun *run, Datum *first, Datum *last)
{
	Datum		args[2 * MR_MAX_KEY_COLUMNS];
	int			nkeys = run->m->nkeys;
	int			rc;
	uint64		rows;

	memcpy(args, first, sizeof(Datum) * nkeys);
	memcpy(args + nkeys, last, sizeof(Datum) * nkeys);
	set_all_constraints(false);
	rc = SPI_execute_plan(run->action, args, NULL, false, 0);
	if (rc < 0)
		elog(ERROR, "action failed: %s", SPI_result_code_string(rc));
	rows = SPI_processed;
	/* a dry run (dry_run.c) keeps what the action returned for its sample */
	if (run->keep_returned)
		run->returned = SPI_tuptable;
	else if (SPI_tuptable)
		SPI_freetuptable(SPI_tuptable);
	set_all_constraints(true);
	return rows;
}

/* remember the batch's bounds as text, for progress, history and errors */
static void
note_batch_keys(MigrationRun *run, Datum *first, Datum *last, int nkeys)
{
	MemoryContext old = MemoryContextSwitchTo(run->batchcxt);
	char	  **first_text = mr_key_to_text(run, first);
	char	  **last_text = mr_key_to_text(run, last);

	run->batch_keys = psprintf("%s to %s", mr_format_key(first_text, run->m->nkeys),
							   mr_format_key(last_text, run->m->nkeys));
	run->batch_nkeys = nkeys;
	run->batch_first_key = mr_text_key_array(run, first_text);
	run->batch_last_key = mr_text_key_array(run, last_text);
	MemoryContextSwitchTo(old);
	pgstat_report_activity(STATE_RUNNING,
						   psprintf("migration %s: %sbatch " INT64_FORMAT " %s",
									run->m->name,
									run->slice > 0 ? psprintf("slice %d ", run->slice) : "",
									mr_next_batch_number(run), run->batch_keys));
}

/*
 * Become the migration's owner, in a security-restricted operation, with the
 * batch's statement_timeout armed, until mr_leave_owner.  No postgres.c loop
 * arms statement_timeout for these queries (in a worker there is none; in
 * CALL it was armed for the CALL), so it is armed here.
 */
void
mr_enter_owner(MigrationRun *run, OwnerContext *saved)
{
	GetUserIdAndSecContext(&saved->saved_user, &saved->saved_sec);
	SetUserIdAndSecContext(run->m->owner, saved->saved_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (run->statement_timeout_ms > 0)
	{
		run->timeout_armed_at = GetCurrentTimestamp();
		enable_timeout_after(STATEMENT_TIMEOUT, run->statement_timeout_ms);
	}
}

void
mr_leave_owner(MigrationRun *run, OwnerContext *saved)
{
	if (run->statement_timeout_ms > 0)
		disable_timeout(STATEMENT_TIMEOUT, false);
	run->timeout_armed_at = 0;
	SetUserIdAndSecContext(saved->saved_user, saved->saved_sec);
}

/*
 * The data side of the batch, as the migration's owner: its bounds, then
 * the action and a verify query that uses the batch's keys, unless this
 * batch is the skip of a key that failed alone.  Also what a dry run
 * (dry_run.c) runs of a batch.
 */
void
mr_run_data_side(MigrationRun *run, BatchStats *stats, Datum *first, Datum *last)
{
	OwnerContext owner;
	instr_time	phase;

	mr_enter_owner(run, &owner);
	INSTR_TIME_SET_CURRENT(phase);
	stats->keys = find_bounds(run, first, last);
	stats->bounds_ms = mr_elapsed_ms(phase);
	if (stats->keys > 0)
	{
		note_batch_keys(run, first, last, stats->keys);
		INSTR_TIME_SET_CURRENT(phase);
		if (!mr_skip_this_key(run))
		{
			stats->rows = mr_run_action(run, first, last);
			mr_verify_batch(run, first, last);
		}
		stats->action_ms = mr_elapsed_ms(phase);
	}
	mr_leave_owner(run, &owner);
}

static void
record_progress(MigrationRun *run, BatchStats *stats, bool completed)
{
	CatalogAccess access;
	instr_time	start;
	Datum		args[13];
	char		nulls[13];
	int64		batch = mr_next_batch_number(run);

	INSTR_TIME_SET_CURRENT(start);
	mr_catalog_enter(&access);

	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int64GetDatum(run->m->id);
	args[1] = Int64GetDatum((int64) stats->rows);
	args[2] = Int32GetDatum(stats->keys);
	args[3] = run->batch_last_key;
	if (stats->keys == 0)
	{
		/* empty probe: the cursor stays where it is */
		args[3] = run->has_cursor ?
			mr_text_key_array(run, mr_key_to_text(run, run->cursor)) : (Datum) 0;
		nulls[3] = run->has_cursor ? ' ' : 'n';
	}
	args[4] = BoolGetDatum(completed);
	args[5] = Float8GetDatum(stats->total_ms);
	args[6] = Float8GetDatum(stats->bounds_ms);
	args[7] = Float8GetDatum(stats->action_ms);
	args[8] = Float8GetDatum(run->carry_bookkeeping_ms);
	args[9] = Float8GetDatum(run->carry_commit_ms);
	args[10] = Int32GetDatum(run->batch_size);
	args[11] = ItemPointerGetDatum(&run->row_tid);
	if (run->slice > 0)
	{
		args[11] = Int32GetDatum(run->slice);
		if (SPI_execute_plan(run->slice_progress, args, nulls, false, 0) != SPI_OK_UPDATE ||
			SPI_processed != 1)
			elog(ERROR, "could not record the progress of slice %d", run->slice);
	}
	/* the next batch locks the version written here */
	else if (exec_on_row(run, run->progress_at, run->progress, args, nulls,
						 SPI_OK_UPDATE_RETURNING, 1) != 1)
		elog(ERROR, "could not record batch progress");

	if (stats->keys > 0 && mr_history_size > 0)
	{
		args[1] = Int64GetDatum(batch);
		args[2] = run->batch_first_key;
		args[3] = run->batch_last_key;
		args[4] = Int32GetDatum(stats->keys);
		args[5] = Int64GetDatum((int64) stats->rows);
		args[6] = TimestampTzGetDatum(stats->started_at);
		args[7] = Float8GetDatum(stats->total_ms);
		args[8] = Float8GetDatum(stats->bounds_ms);
		args[9] = Float8GetDatum(stats->action_ms);
		args[10] = Int32GetDatum(run->attempts + 1);
		nulls[3] = ' ';
		/* a skip keeps the key's error in the history */
		args[11] = run->skip.recording ?
			CStringGetTextDatum(mr_skip_history_note(run)) : (Datum) 0;
		nulls[11] = run->skip.recording ? ' ' : 'n';
		mr_insert_history(run, batch, args, nulls);
	}
	mr_catalog_leave(&access);

	if (completed && run->slice == 0)
	{
		mr_notify_state_change(run->m->name, MR_STATUS_RUNNING,
							   MR_STATUS_COMPLETED,
							   run->m->processed + (int64) stats->rows);
		/* the launcher too: migrations that run after this one may start */
		mr_wake_launcher_at_commit();
	}
	run->carry_bookkeeping_ms = mr_elapsed_ms(start);
	run->carry_commit_ms = 0;
}

/* with target_batch_time, steer the next batch's size towards it */
static void
adapt_batch_size(MigrationRun *run, BatchStats *stats)
{
	double		factor;
	int			next;

	if (run->target_batch_ms <= 0 || stats->keys == 0)
		return;
	factor = run->target_batch_ms / Max(stats->total_ms, 0.01);
	factor = Max(0.5, Min(1.2, factor));
	next = (int) (run->batch_size * factor);
	/* keep two significant digits, so a converged size stays put */
	if (next >= 100)
	{
		int			scale = (int) pow(10, floor(log10(next)) - 1);

		next = (next / scale) * scale;
	}
	run->batch_size = Max(mr_min_batch_size, Min(mr_max_batch_size, next));
}

/*
 * What the row just locked says about slices: BATCH_DONE to run a batch as
 * usual; BATCH_NO_WORK when parallel was lowered below the slice this
 * runner was started for; BATCH_NEED_WORK when this runner's slice is done,
 * or when it runs the migration as one piece and parallel was raised: then
 * it splits the keys left into slices, here, and goes to run one of them.
 */
static BatchResult
slice_turn(MigrationRun *run, RowState *state)
{
	if (run->home_slice > state->parallel)
		return BATCH_NO_WORK;
	if (run->slice == 0)
	{
		if (state->parallel == 1)
			return BATCH_DONE;
		mr_slice_up(run);
		return BATCH_NEED_WORK;
	}
	if (state->slice_done)
		return BATCH_NEED_WORK;
	mr_set_range_upper(run, state->upper_key);
	return BATCH_DONE;
}

/*
 * The body of one batch, a guarded step.  The cursor in memory moves only
 * once the work is recorded; if the commit that follows is lost in a crash,
 * the next run reads the older cursor from the catalog.
 */
static void
batch_step(MigrationRun *run, void *result)
{
	Migration  *m = run->m;
	BatchStats	stats;
	Datum		first[MR_MAX_KEY_COLUMNS];
	Datum		last[MR_MAX_KEY_COLUMNS];
	instr_time	start;
	RowState	state;
	bool		completed;
	bool		verifying;

	INSTR_TIME_SET_CURRENT(start);
	memset(&stats, 0, sizeof(stats));
	stats.started_at = GetCurrentTimestamp();
	run->batch_keys = NULL;
	run->batch_started_at = stats.started_at;
	run->batch_nkeys = 0;
	run->batch_first_key = run->batch_last_key = (Datum) 0;

	mr_set_batch_gucs(run);
	mr_shard_lock(run);
	mr_lock_relation(run);
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!lock_own_row(run, &state) || strcmp(state.status, MR_STATUS_RUNNING) != 0 ||
		!mr_shard_still_here(run))
	{
		PopActiveSnapshot();
		*(BatchResult *) result = BATCH_NOT_RUNNING;
		return;
	}
	mr_apply_options(run, &state);
	mr_check_relation_unchanged(run);
	*(BatchResult *) result = slice_turn(run, &state);
	if (*(BatchResult *) result != BATCH_DONE)
	{
		PopActiveSnapshot();
		return;
	}
	run->carry_bookkeeping_ms += mr_elapsed_ms(start);

	mr_run_data_side(run, &stats, first, last);
	if (run->skip.recording)
		mr_skip_record(run);
	if (mr_max_lock_waiters > 0 && stats.keys > 0)
		run->lock_waiters = mr_count_lock_waiters();

	completed = stats.keys < run->batch_size;
	/* a final verify query runs before the migration is completed */
	verifying = completed && run->slice == 0 && mr_has_final_verify(run);
	stats.total_ms = mr_elapsed_ms(start);
	record_progress(run, &stats, completed && !verifying);
	if (verifying)
		mr_begin_verifying(run);
	PopActiveSnapshot();

	/* from here on the batch is done in memory as well */
	if (stats.keys > 0)
	{
		mr_move_cursor(run, last);
		if (run->slice > 0)
			run->slice_batches++;
		else
			m->batches++;
		m->processed += stats.rows;
	}
	adapt_batch_size(run, &stats);
	*(BatchResult *) result = !completed ? BATCH_DONE :
		run->slice > 0 ? BATCH_NEED_WORK : verifying ? BATCH_VERIFY : BATCH_LAST;
}

/*
 * One attempt at one batch, in the caller's open transaction.
 */
BatchResult
mr_run_one_batch(MigrationRun *run)
{
	BatchResult result = BATCH_FAILED;
	ErrorData  *edata;

	if (run->last_error)
	{
		FreeErrorData(run->last_error);
		run->last_error = NULL;
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();

	edata = mr_run_guarded(run, batch_step, &result);

	/*
	 * on_error 'skip': a key whose action failed alone is skipped by a batch
	 * of that key without its action, in this same transaction (skip.c).
	 */
	if (edata != NULL && mr_skip_key_failed(run, edata))
	{
		edata = mr_run_guarded(run, batch_step, &result);
		mr_skip_pass_done(run, edata);
	}
	if (edata != NULL)
	{
		/* the bounds plans may be half-made if preparing them failed */
		run->bounds_plan_size = -1;

		/* DROP EXTENSION took the catalog away under the batch: just stop */
		if (!OidIsValid(mr_extension_oid(true)))
			result = BATCH_NOT_RUNNING;
		else if (!mr_skip_narrow(run, edata, &result))
			result = mr_classify_error(run, edata);
		run->last_error = edata;
	}
	else
		mr_skip_after_batch(run, result);

	SPI_finish();
	PopActiveSnapshot();
	if (result == BATCH_DONE || result == BATCH_LAST)
		run->attempts = 0;
	return result;
}
