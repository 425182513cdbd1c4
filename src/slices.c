/*-------------------------------------------------------------------------
 *
 * slices.c
 *	  Parallel slices: one migration walked by several runners at once,
 *	  each over a range of keys of its own.
 *
 * A migration runs as one piece (slice 0: its own catalog row keeps the
 * cursor) until its runner finds parallel > 1.  That runner then splits
 * the keys still to do, (cursor, high water], into adjacent ranges
 * (split.c) and records each as a row of migration_slices: slice 1..n,
 * (lower_key, upper_key], with a cursor of its own.  From then on every
 * batch of a slice locks the slice's row, reads its upper key again under
 * that lock, and commits its progress to that row with its data change:
 * each slice is exactly once through crashes, as the whole migration is.
 *
 * A runner whose slice is done looks for more work, in one transaction:
 *
 *	1. adopt a slice that has keys left and no runner (its runner lock is
 *	   free): one that was paused, whose worker died, or that parallel no
 *	   longer covers;
 *	2. else (background workers only) steal: lock the row of the slice with
 *	   the most keys left, which waits for that slice's batch under way,
 *	   split what is left of it in two at a real key, lower that slice's
 *	   upper key to the split point and take the upper part as its own
 *	   slice.  A rest of fewer than four batches is not split;
 *	3. else, if every slice is done, complete the migration: the slices'
 *	   counters are added to the migration's, and the slices removed, in
 *	   the same transaction.
 *
 * Slices are never merged or moved: a range only ever shrinks from above
 * (a steal) or from below (a batch), both under the slice row's lock, so the
 * ranges cover the keys with no overlap and no gap at all times.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/memutils.h"

#include "compat.h"
#include "migration_runner.h"
#include "run_internal.h"

/* a steal takes half of a rest of at least this many batches */
#define STEAL_MIN_BATCHES	4

/* how far a runner counts another slice's rest when choosing whom to rob */
#define STEAL_COUNT_BATCHES 64

static const char *
slices_table(void)
{
	return mr_catalog_table("migration_slices");
}

/* run a statement on the catalog as its owner, with the migration's id as $1 */
static uint64
slice_exec(MigrationRun *run, const char *sql, int nargs, Oid *types,
		   Datum *args, const char *nulls, int expected)
{
	CatalogAccess access;
	Oid			all_types[8] = {INT8OID};
	Datum		all_args[8];

	Assert(nargs < 8);
	all_args[0] = Int64GetDatum(run->m->id);
	memcpy(all_types + 1, types, sizeof(Oid) * nargs);
	memcpy(all_args + 1, args, sizeof(Datum) * nargs);
	mr_catalog_enter(&access);
	if (SPI_execute_with_args(sql, nargs + 1, all_types, all_args, nulls,
							  false, 0) != expected)
		elog(ERROR, "could not access the slices of migration \"%s\"", run->m->name);
	mr_catalog_leave(&access);
	return SPI_processed;
}

/* the key as the text[] the catalog keeps, or a NULL Datum for no key */
static Datum
key_array(MigrationRun *run, Datum *key)
{
	return key ? mr_text_key_array(run, mr_key_to_text(run, key)) : (Datum) 0;
}

/* a text[] of the catalog as a key in memory context cxt; false if NULL */
static bool
key_from_array(MigrationRun *run, HeapTuple tuple, TupleDesc desc, int col,
			   Datum *key, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);
	int			n;

	if (!isnull)
		mr_key_from_text_in(run, mr_text_array_to_cstrings(d, &n), key, cxt);
	return !isnull;
}

/* read what ROW_STATE_COLUMNS (or the slice lock) returned */
void
mr_read_row_state(MigrationRun *run, RowState *state)
{
	HeapTuple	tuple = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;
	int			i;

	state->status = TextDatumGetCString(SPI_getbinval(tuple, desc, 1, &isnull));
	state->parallel = DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull));
	state->batch_size = DatumGetInt32(SPI_getbinval(tuple, desc, 4, &isnull));
	for (i = 0; i < MR_NUM_OPTIONS; i++)
		state->options[i] = DatumGetInt32(SPI_getbinval(tuple, desc, 5 + i, &isnull));
	state->upper_key = SPI_getbinval(tuple, desc, 5 + MR_NUM_OPTIONS, &isnull);
	if (isnull)
		state->upper_key = (Datum) 0;
	state->slice_done = DatumGetBool(SPI_getbinval(tuple, desc, 6 + MR_NUM_OPTIONS, &isnull));
}

/* lock this runner's slice row for the batch; false if it is gone */
bool
mr_lock_slice_row(MigrationRun *run, RowState *state)
{
	CatalogAccess access;
	Datum		args[2] = {Int64GetDatum(run->m->id), Int32GetDatum(run->slice)};
	bool		found;

	mr_catalog_enter(&access);
	if (SPI_execute_plan(run->slice_lock, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock slice %d of migration \"%s\"",
			 run->slice, run->m->name);
	found = SPI_processed == 1;
	if (found)
		mr_read_row_state(run, state);
	mr_catalog_leave(&access);
	return found;
}

/*
 * The range now ends at upper_text (a slice's upper key, as read under its
 * row lock).  Converted again only when it changed: when a steal lowered it.
 */
void
mr_set_range_upper(MigrationRun *run, Datum upper_text)
{
	MemoryContext old;
	int			n;

	if (run->upper_text != (Datum) 0 &&
		datumIsEqual(run->upper_text, upper_text, false, -1))
		return;
	MemoryContextReset(run->rangecxt);
	old = MemoryContextSwitchTo(run->rangecxt);
	run->upper_text = datumCopy(upper_text, false, -1);
	MemoryContextSwitchTo(old);
	mr_key_from_text_in(run, mr_text_array_to_cstrings(run->upper_text, &n),
						run->upper, run->rangecxt);
}

/* does the migration run in slices? */
bool
mr_is_sliced(MigrationRun *run)
{
	return slice_exec(run, psprintf("SELECT FROM %s WHERE migration_id = $1 LIMIT 1",
									slices_table()),
					  0, NULL, NULL, NULL, SPI_OK_SELECT) > 0;
}

/*
 * Make slice the one this runner walks: lock its row, and read its cursor
 * and upper key.  False (and nothing changed) when it is gone or done.
 */
bool
mr_switch_to_slice(MigrationRun *run, int slice)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(slice)};
	Datum		cursor[MR_MAX_KEY_COLUMNS];
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;

	if (slice_exec(run, psprintf("SELECT status, coalesce(cursor, lower_key), upper_key, batches "
								 "FROM %s WHERE migration_id = $1 AND slice = $2 "
								 "FOR NO KEY UPDATE", slices_table()),
				   1, types, args, NULL, SPI_OK_SELECT) == 0)
		return false;
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	if (strcmp(SPI_getvalue(tuple, desc, 1), "running") != 0)
		return false;

	run->slice = slice;
	run->slice_batches = DatumGetInt64(SPI_getbinval(tuple, desc, 4, &isnull));
	run->pruned_to = 0;
	run->upper_text = (Datum) 0;
	mr_set_range_upper(run, SPI_getbinval(tuple, desc, 3, &isnull));
	if (key_from_array(run, tuple, desc, 2, cursor, CurrentMemoryContext))
		mr_move_cursor(run, cursor);
	else
		run->has_cursor = false;

	slice_exec(run, psprintf("UPDATE %s SET worker_pid = %d WHERE migration_id = $1 AND slice = $2",
							 slices_table(), MyProcPid),
			   1, types, args, NULL, SPI_OK_UPDATE);
	return true;
}

/* record slice (lower, upper] as the runner's own, running from lower */
static void
write_slice(MigrationRun *run, int slice, Datum *lower, Datum *upper)
{
	Oid			types[3] = {INT4OID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[3];
	char		nulls[4] = "    ";

	args[0] = Int32GetDatum(slice);
	args[1] = key_array(run, lower);
	args[2] = key_array(run, upper);
	if (lower == NULL)
		nulls[2] = 'n';
	slice_exec(run, psprintf("INSERT INTO %s AS s (migration_id, slice, lower_key, cursor, upper_key) "
							 "VALUES ($1, $2, $3, $3, $4) "
							 "ON CONFLICT (migration_id, slice) DO UPDATE SET "
							 "status = 'running', lower_key = $3, cursor = $3, upper_key = $4",
							 slices_table()),
			   3, types, args, nulls, SPI_OK_INSERT);
}

/*
 * Split the keys the migration has left, (cursor, high water], into up to
 * parallel slices.  Runs in a batch's transaction, holding the migration's
 * row lock, so no batch of the migration as one piece can run meanwhile.
 */
void
mr_slice_up(MigrationRun *run)
{
	int			nkeys = run->m->nkeys;
	Datum	   *splits = palloc(sizeof(Datum) * nkeys * MR_MAX_PARALLEL);
	Datum	   *lower = run->has_cursor ? run->cursor : NULL;
	int			nsplits = 0;
	int			i;

	if (run->parallel > 1)
		nsplits = mr_split_range(run, lower, run->high_water, run->parallel,
								 2 * (int64) run->batch_size, splits);
	for (i = 0; i <= nsplits; i++)
		write_slice(run, i + 1, i == 0 ? lower : splits + (i - 1) * nkeys,
					i == nsplits ? run->high_water : splits + i * nkeys);
	mr_catalog_exec(psprintf("UPDATE %s SET worker_pid = NULL WHERE id = " INT64_FORMAT,
							 run->catalog, run->m->id),
					0, NULL, NULL, SPI_OK_UPDATE);
	/* the launcher starts workers for the other slices at once */
	mr_wake_launcher_at_commit();
	ereport(LOG,
			(errmsg("migration_runner: migration \"%s\" split into %d slices",
					run->m->name, nsplits + 1)));
}

/*
 * Share this slice's rest out to the slice numbers up to parallel that have
 * no keys left (done, or never made), when a worker starts on its slice:
 * after a restart or a resume, the slices that finished before would
 * otherwise leave workers idle that parallel allows.  Each such slice is
 * written only under its runner lock (as every writer of a slice's range
 * holds it), then left for the launcher to start a worker on it.  This
 * runner holds its own slice's row lock, taken by mr_switch_to_slice.
 */
void
mr_share_out(MigrationRun *run)
{
	int			nkeys = run->m->nkeys;
	int			free_slices[MR_MAX_PARALLEL];
	int			nfree = 0;
	int			nsplits;
	uint64		n;
	uint64		i;
	Datum	   *splits;
	Datum		upper[MR_MAX_KEY_COLUMNS];

	n = slice_exec(run, psprintf("SELECT k FROM pg_catalog.generate_series(1, %d) k "
								 "WHERE k <> %d AND NOT EXISTS (SELECT FROM %s s "
								 "WHERE s.migration_id = $1 AND s.slice = k AND s.status = 'running') "
								 "ORDER BY k", run->parallel, run->slice, slices_table()),
				   0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		int			k = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 1, &isnull));

		if (mr_try_lock_runner(run->m->id, k))
			free_slices[nfree++] = k;
	}
	splits = palloc(sizeof(Datum) * nkeys * (nfree + 1));
	memcpy(upper, run->upper, sizeof(upper));
	nsplits = nfree == 0 ? 0 :
		mr_split_range(run, run->has_cursor ? run->cursor : NULL, upper,
					   nfree + 1, 2 * (int64) run->batch_size, splits);
	for (i = 0; i < (uint64) nsplits; i++)
		write_slice(run, free_slices[i], splits + i * nkeys,
					i + 1 == (uint64) nsplits ? upper : splits + (i + 1) * nkeys);
	if (nsplits > 0)
	{
		Datum		mine = key_array(run, splits);

		slice_exec(run, psprintf("UPDATE %s SET upper_key = $2 WHERE migration_id = $1 AND slice = %d",
								 slices_table(), run->slice),
				   1, (Oid[]) {TEXTARRAYOID}, &mine, NULL, SPI_OK_UPDATE);
		mr_set_range_upper(run, mine);
		mr_wake_launcher_at_commit();
	}
	for (i = 0; i < (uint64) nfree; i++)
		mr_unlock_runner(run->m->id, free_slices[i]);
}

/* take slice as this runner's: its runner lock, then its row */
static bool
adopt(MigrationRun *run, int slice)
{
	int			previous = run->slice;

	if (!mr_try_lock_runner(run->m->id, slice))
		return false;
	if (!mr_switch_to_slice(run, slice))
	{
		if (slice != run->home_slice)
			mr_unlock_runner(run->m->id, slice);
		return false;
	}
	if (previous != run->home_slice && previous != slice)
		mr_unlock_runner(run->m->id, previous);

	/*
	 * A worker that ran the migration as one piece and split it becomes the
	 * runner of this slice, so that the launcher starts workers for the
	 * others; CALL mig_run keeps slice 0 and runs them one after another.
	 */
	if (run->home_slice == 0 && !run->runs_every_slice)
	{
		mr_unlock_runner(run->m->id, 0);
		run->home_slice = slice;
		pgstat_report_appname(psprintf("migration_runner: %s slice %d",
									   run->m->name, slice));
	}
	return true;
}

/* adopt the first slice with keys left and no runner */
static bool
adopt_orphan(MigrationRun *run)
{
	uint64		n;
	uint64		i;
	int		   *slices;

	n = slice_exec(run, psprintf("SELECT slice FROM %s WHERE migration_id = $1 "
								 "AND status = 'running' ORDER BY slice", slices_table()),
				   0, NULL, NULL, NULL, SPI_OK_SELECT);
	slices = palloc(sizeof(int) * (n + 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		slices[i] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
												SPI_tuptable->tupdesc, 1, &isnull));
	}
	for (i = 0; i < n; i++)
		if (slices[i] != run->slice && adopt(run, slices[i]))
			return true;
	return false;
}

/*
 * The slice with the most keys left (counted up to a cap), other than this
 * runner's; 0 if none has enough left to be worth splitting.
 */
static int
choose_victim(MigrationRun *run)
{
	int64		cap = STEAL_COUNT_BATCHES * (int64) run->batch_size;
	int64		best_keys = STEAL_MIN_BATCHES * (int64) run->batch_size - 1;
	int			best = 0;
	uint64		n;
	uint64		i;
	int		   *slices;
	Datum	   *bounds;
	bool	   *from_start;
	int			nkeys = run->m->nkeys;

	n = slice_exec(run, psprintf("SELECT slice, coalesce(cursor, lower_key), upper_key FROM %s "
								 "WHERE migration_id = $1 AND status = 'running' "
								 "AND slice <> %d", slices_table(), run->home_slice),
				   0, NULL, NULL, NULL, SPI_OK_SELECT);
	slices = palloc(sizeof(int) * (n + 1));
	bounds = palloc(sizeof(Datum) * 2 * nkeys * (n + 1));
	from_start = palloc(sizeof(bool) * (n + 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		bool		isnull;

		slices[i] = DatumGetInt32(SPI_getbinval(tuple, SPI_tuptable->tupdesc, 1, &isnull));
		from_start[i] = !key_from_array(run, tuple, SPI_tuptable->tupdesc, 2,
										bounds + 2 * i * nkeys, CurrentMemoryContext);
		key_from_array(run, tuple, SPI_tuptable->tupdesc, 3,
					   bounds + (2 * i + 1) * nkeys, CurrentMemoryContext);
	}
	for (i = 0; i < n; i++)
	{
		int64		keys = mr_count_keys(run, from_start[i] ? NULL : bounds + 2 * i * nkeys,
										 bounds + (2 * i + 1) * nkeys, cap);

		if (keys > best_keys)
		{
			best_keys = keys;
			best = slices[i];
		}
	}
	return best;
}

/*
 * Steal the upper half of the largest slice left into this worker's own
 * slice.  The victim's row lock waits for its batch under way to commit;
 * its next batch reads the lowered upper key under the same lock.
 */
static bool
steal(MigrationRun *run)
{
	int			victim = choose_victim(run);
	Oid			types[2] = {INT4OID, TEXTARRAYOID};
	Datum		args[2];
	Datum		rest[MR_MAX_KEY_COLUMNS];
	Datum		upper[MR_MAX_KEY_COLUMNS];
	Datum		split[MR_MAX_KEY_COLUMNS];
	bool		from_start;
	HeapTuple	tuple;

	if (victim == 0)
		return false;
	args[0] = Int32GetDatum(victim);
	if (slice_exec(run, psprintf("SELECT coalesce(cursor, lower_key), upper_key FROM %s "
								 "WHERE migration_id = $1 AND slice = $2 AND status = 'running' "
								 "FOR NO KEY UPDATE", slices_table()),
				   1, types, args, NULL, SPI_OK_SELECT) == 0)
		return false;
	tuple = SPI_tuptable->vals[0];
	from_start = !key_from_array(run, tuple, SPI_tuptable->tupdesc, 1, rest,
								 CurrentMemoryContext);
	key_from_array(run, tuple, SPI_tuptable->tupdesc, 2, upper, CurrentMemoryContext);
	if (mr_split_range(run, from_start ? NULL : rest, upper, 2,
					   (STEAL_MIN_BATCHES / 2) * (int64) run->batch_size, split) == 0)
		return false;

	args[1] = key_array(run, split);
	slice_exec(run, psprintf("UPDATE %s SET upper_key = $3 WHERE migration_id = $1 AND slice = $2",
							 slices_table()),
			   2, types, args, NULL, SPI_OK_UPDATE);
	write_slice(run, run->home_slice, split, upper);
	if (run->slice != run->home_slice)
		mr_unlock_runner(run->m->id, run->slice);
	if (!mr_switch_to_slice(run, run->home_slice))
		elog(ERROR, "could not switch to slice %d", run->home_slice);
	ereport(DEBUG1,
			(errmsg("migration_runner: slice %d of migration \"%s\" took the upper part of slice %d",
					run->home_slice, run->m->name, victim)));
	return true;
}

/*
 * A worker started for a slice that has no row yet (parallel was raised)
 * found nothing to take: record its slice as done, so that it is not
 * started again for it.
 */
static void
keep_home_done(MigrationRun *run)
{
	Oid			types[2] = {INT4OID, TEXTARRAYOID};
	Datum		args[2];

	if (run->home_slice == 0)
		return;
	args[0] = Int32GetDatum(run->home_slice);
	args[1] = key_array(run, run->high_water);
	slice_exec(run, psprintf("INSERT INTO %s (migration_id, slice, status, lower_key, cursor, upper_key) "
							 "VALUES ($1, $2, 'done', $3, $3, $3) ON CONFLICT DO NOTHING",
							 slices_table()),
			   2, types, args, NULL, SPI_OK_INSERT);
}

/*
 * Add the slices' counters to the migration's, in one pass over them, as
 * the migration completes (also for a per-shard run: citus_slices.c).
 * Returns the migration's processed then.  The caller is connected to SPI.
 */
int64
mr_fold_slices(int64 migration_id)
{
	CatalogAccess access;
	Datum		id = Int64GetDatum(migration_id);
	bool		isnull;
	int64		processed;

	mr_catalog_enter(&access);
	if (SPI_execute_with_args(psprintf("UPDATE %s m SET processed = m.processed + s.processed, "
									   "scanned = m.scanned + s.scanned, batches = m.batches + s.batches, "
									   "last_batch_at = s.last_batch_at, "
									   "bounds_ms = m.bounds_ms + s.bounds_ms, action_ms = m.action_ms + s.action_ms, "
									   "bookkeeping_ms = m.bookkeeping_ms + s.bookkeeping_ms, "
									   "commit_ms = m.commit_ms + s.commit_ms "
									   "FROM (SELECT sum(processed) AS processed, sum(scanned) AS scanned, "
									   "sum(batches) AS batches, max(last_batch_at) AS last_batch_at, "
									   "sum(bounds_ms) AS bounds_ms, sum(action_ms) AS action_ms, "
									   "sum(bookkeeping_ms) AS bookkeeping_ms, sum(commit_ms) AS commit_ms "
									   "FROM %s WHERE migration_id = $1) s "
									   "WHERE m.id = $1 RETURNING m.processed",
									   mr_catalog_table("migrations"), slices_table()),
							  1, (Oid[]) {INT8OID}, &id, NULL, false, 0) != SPI_OK_UPDATE_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "could not add up the slices of migration " INT64_FORMAT, migration_id);
	processed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull));
	mr_catalog_leave(&access);
	return processed;
}

/*
 * No work left for this runner: complete the migration if every slice is
 * done.  The migration's row lock orders the runners that get here at the
 * same time, and the count reads what committed before it: the last one to
 * finish sees every slice done.
 */
static BatchResult
complete_if_all_done(MigrationRun *run)
{
	Migration  *m = mr_migration_by_id(run->m->id, true);
	const char *slices = slices_table();
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	bool		verifying;

	if (m == NULL || strcmp(m->status, MR_STATUS_RUNNING) != 0)
		return BATCH_NOT_RUNNING;
	slice_exec(run, psprintf("SELECT count(*) FILTER (WHERE status <> 'done'), count(*) "
							 "FROM %s WHERE migration_id = $1", slices),
			   0, NULL, NULL, NULL, SPI_OK_SELECT);
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	/* no slices at all: it does not run in slices (yet, or any more) */
	if (DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull)) == 0)
		return BATCH_NO_WORK;
	if (DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull)) > 0)
	{
		keep_home_done(run);
		return BATCH_NO_WORK;
	}

	m->processed = mr_fold_slices(m->id);
	/* with a final verify query, this runner runs it next (verify.c) */
	verifying = mr_begin_verifying(run);
	if (!verifying)
		mr_set_status(m, MR_STATUS_COMPLETED,
					  "completed_at = now(), worker_pid = NULL, throttled = NULL, "
					  "cursor = high_water");
	slice_exec(run, psprintf("DELETE FROM %s WHERE migration_id = $1", slices),
			   0, NULL, NULL, NULL, SPI_OK_DELETE);
	return verifying ? BATCH_VERIFY : BATCH_LAST;
}

/*
 * This runner's slice is done (or it just split the migration): adopt a
 * slice without a runner, else steal, else complete the migration if it
 * was the last.  Returns BATCH_DONE with a slice to run, BATCH_LAST when
 * the migration completed, BATCH_NO_WORK when the others run the rest, or
 * BATCH_NOT_RUNNING.  Called in a transaction of its own, as a guarded step.
 */
BatchResult
mr_take_work(MigrationRun *run)
{
	Migration  *m = mr_migration_by_id(run->m->id, false);

	if (m == NULL || strcmp(m->status, MR_STATUS_RUNNING) != 0)
		return BATCH_NOT_RUNNING;
	run->parallel = m->parallel;
	if (run->home_slice > run->parallel)
		return BATCH_NO_WORK;
	if (adopt_orphan(run))
		return BATCH_DONE;
	if (!run->runs_every_slice && run->home_slice > 0 && steal(run))
		return BATCH_DONE;
	return complete_if_all_done(run);
}
