/*-------------------------------------------------------------------------
 *
 * dry_run.c
 *	  mig_dry_run(name, batches): run the next batches of a managed
 *	  migration exactly as a run would, then roll them back, and show what
 *	  they did: each batch's bounds, the rows it changed, how long it took
 *	  and a sample of what the action returned.
 *
 * The batches are the engine's own (batch.c): the same bounds query and
 * action plans (plans.c), run as the migration's owner in a
 * security-restricted operation, with the migration's pinned search_path,
 * lock_timeout and statement_timeout.  What a dry run does not do is the
 * bookkeeping: it never writes the catalog, so there is no cursor move, no
 * history row, no status change and no NOTIFY.  The first batch starts
 * after the migration's cursor; each next one after the previous dry
 * batch's last key, kept in memory.  A migration that runs in slices is
 * walked slice by slice in slice order, each from its own cursor to its
 * upper key, skipping the slices that are done; one whose parallel is above
 * 1 but that was never split is walked as one piece, as its first batch
 * would split it only then.  The batch size is the one in use
 * (current_batch_size, else batch_size) and does not adapt between dry
 * batches.
 *
 * Everything runs in one internal subtransaction of the caller's
 * transaction, which is always rolled back, on error too (the error is then
 * raised again): the table, the catalog and the locks taken are as they
 * were.  A rollback cannot undo everything, though: nextval() of sequences
 * (a serial or identity column filled by the action) stays advanced,
 * session-level advisory locks stay held, and what the action does outside
 * the database (dblink, COPY TO PROGRAM, a foreign table's remote server)
 * stays done; NOTIFY and deferred trigger events are discarded with the
 * rest.  Dead tuples and WAL of the rolled-back changes remain, as after
 * any rollback.
 *
 * A dry run takes no runner lock and locks no catalog row, so it may run
 * while a worker runs the same migration: it then starts from the cursor
 * it read, and its batches may overlap those the worker is running (the
 * action waits for the worker's row locks, and rolls back anyway).  The
 * row locks of all its batches are held until its rollback, so a worker's
 * batch that reaches those rows waits for the dry run to end, and retries
 * after its lock_timeout: on a running migration, keep dry runs short.  It
 * runs in the caller's transaction, so with the caller's isolation level,
 * and needs a read-write transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "api.h"
#include "define.h"
#include "migration_runner.h"
#include "run_internal.h"

PG_FUNCTION_INFO_V1(mig_dry_run);

/* the most batches one dry run may run */
#define DRY_RUN_MAX_BATCHES 1000

/* the most rows of what the action returned that a batch shows */
#define DRY_RUN_SAMPLE_ROWS 10

#define DRY_RUN_COLUMNS 6

/*
 * One batch's result row, kept in memory outside the subtransaction that is
 * rolled back (the tuples the action returned go with it).
 */
typedef struct DryBatch
{
	char	   *first_key;		/* text[] as text, like the history's */
	char	   *last_key;
	int64		rows;
	double		ms;
	char	   *sample;			/* a JSON array, or NULL */
} DryBatch;

typedef struct DryRun
{
	MigrationRun *run;
	int			wanted;			/* batches asked for */
	List	   *done;			/* DryBatch *, in resultcxt */
	MemoryContext resultcxt;
} DryRun;

/* a slice with keys left, as its row says */
typedef struct DrySlice
{
	int			slice;
	Datum		cursor;			/* text[], or 0 from its start */
	Datum		upper;			/* text[] */
} DrySlice;

/* errors of a dry run say so, with the batch's bounds once it has them */
static void
dry_run_error_context(void *arg)
{
	MigrationRun *run = (MigrationRun *) arg;

	if (run->batch_keys)
		errcontext("dry run of migration \"%s\", batch %s",
				   run->m->name, run->batch_keys);
	else
		errcontext("dry run of migration \"%s\"", run->m->name);
}

/*
 * Up to DRY_RUN_SAMPLE_ROWS of the tuples the action returned, as a JSON
 * array of row_to_json objects, or NULL if it returned none.  The values'
 * output functions run as the owner, as the action did.
 */
static char *
sample_json(MigrationRun *run, SPITupleTable *returned)
{
	StringInfoData buf;
	TupleDesc	desc;
	Oid			saved_user;
	int			saved_sec;
	uint64		i;

	if (returned == NULL || returned->numvals == 0)
		return NULL;
	desc = BlessTupleDesc(returned->tupdesc);
	GetUserIdAndSecContext(&saved_user, &saved_sec);
	SetUserIdAndSecContext(run->m->owner, saved_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < returned->numvals && i < DRY_RUN_SAMPLE_ROWS; i++)
	{
		Datum		row = heap_copy_tuple_as_datum(returned->vals[i], desc);
		text	   *json = DatumGetTextPP(DirectFunctionCall1(row_to_json, row));

		if (i > 0)
			appendStringInfoString(&buf, ", ");
		appendBinaryStringInfo(&buf, VARDATA_ANY(json), VARSIZE_ANY_EXHDR(json));
	}
	appendStringInfoChar(&buf, ']');
	SetUserIdAndSecContext(saved_user, saved_sec);
	return buf.data;
}

/* keep the result of the batch just run, out of the batch's memory */
static void
keep_batch(DryRun *dry, BatchStats *stats)
{
	MigrationRun *run = dry->run;
	char	   *sample = sample_json(run, run->returned);
	MemoryContext old = MemoryContextSwitchTo(dry->resultcxt);
	DryBatch   *b = palloc0(sizeof(DryBatch));

	b->first_key = OidOutputFunctionCall(F_ARRAY_OUT, run->batch_first_key);
	b->last_key = OidOutputFunctionCall(F_ARRAY_OUT, run->batch_last_key);
	b->rows = (int64) stats->rows;
	b->ms = stats->total_ms;
	b->sample = sample ? pstrdup(sample) : NULL;
	dry->done = lappend(dry->done, b);
	MemoryContextSwitchTo(old);
}

/*
 * One dry batch after the cursor in memory, through the engine's data side
 * (bounds, then the action, as the owner); the cursor then moves to its
 * last key.  Returns false when no key can follow it in the range.
 */
static bool
dry_batch(DryRun *dry)
{
	MigrationRun *run = dry->run;
	Datum		first[MR_MAX_KEY_COLUMNS];
	Datum		last[MR_MAX_KEY_COLUMNS];
	BatchStats	stats;
	instr_time	start;
	MemoryContext old;

	CHECK_FOR_INTERRUPTS();
	MemoryContextReset(run->batchcxt);
	old = MemoryContextSwitchTo(run->batchcxt);
	memset(&stats, 0, sizeof(stats));
	run->batch_keys = NULL;
	run->batch_first_key = run->batch_last_key = (Datum) 0;
	run->returned = NULL;
	INSTR_TIME_SET_CURRENT(start);

	/* a new snapshot sees what the dry batches before changed */
	PushActiveSnapshot(GetTransactionSnapshot());
	mr_run_data_side(run, &stats, first, last);
	stats.total_ms = mr_elapsed_ms(start);
	PopActiveSnapshot();

	if (stats.keys > 0)
	{
		keep_batch(dry, &stats);
		mr_move_cursor(run, last);
	}
	if (run->returned)
		SPI_freetuptable(run->returned);
	run->returned = NULL;
	MemoryContextSwitchTo(old);
	return stats.keys == run->batch_size;
}

/* dry batches along the run's range until it ends or enough were run */
static void
walk_range(DryRun *dry)
{
	while (list_length(dry->done) < dry->wanted && dry_batch(dry))
		;
}

/*
 * The slices of the migration that have keys left, in slice order, read
 * without locking their rows; *sliced says whether it runs in slices.
 */
static List *
slices_left(MigrationRun *run, bool *sliced)
{
	CatalogAccess access;
	List	   *slices = NIL;
	Oid			type = INT8OID;
	Datum		id = Int64GetDatum(run->m->id);
	uint64		i;

	mr_catalog_enter(&access);
	if (SPI_execute_with_args(psprintf("SELECT slice, status = 'running', "
									   "coalesce(cursor, lower_key), upper_key "
									   "FROM %s WHERE migration_id = $1 ORDER BY slice",
									   mr_catalog_table("migration_slices")),
							  1, &type, &id, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the slices of migration \"%s\"", run->m->name);
	mr_catalog_leave(&access);
	*sliced = SPI_processed > 0;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		DrySlice   *s;
		bool		isnull;

		/* a slice that is done has no keys left */
		if (!DatumGetBool(SPI_getbinval(tuple, desc, 2, &isnull)))
			continue;
		s = palloc0(sizeof(DrySlice));
		s->slice = DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull));
		s->cursor = SPI_getbinval(tuple, desc, 3, &isnull);
		s->cursor = isnull ? (Datum) 0 : datumCopy(s->cursor, false, -1);
		s->upper = datumCopy(SPI_getbinval(tuple, desc, 4, &isnull), false, -1);
		slices = lappend(slices, s);
	}
	SPI_freetuptable(SPI_tuptable);
	return slices;
}

/* walk one slice's range, from its cursor to its upper key */
static void
walk_slice(DryRun *dry, DrySlice *s)
{
	MigrationRun *run = dry->run;
	int			n;

	run->slice = s->slice;
	run->upper_text = (Datum) 0;
	mr_set_range_upper(run, s->upper);
	run->has_cursor = false;
	if (s->cursor != (Datum) 0)
	{
		Datum		cursor[MR_MAX_KEY_COLUMNS];

		mr_key_from_text_in(run, mr_text_array_to_cstrings(s->cursor, &n),
							cursor, run->batchcxt);
		mr_move_cursor(run, cursor);
	}
	walk_range(dry);
}

/*
 * The dry run proper, in the subtransaction: set the run up as a run's
 * setup does (without recording anything), then walk its range or its
 * slices.
 */
static void
dry_run_batches(DryRun *dry, Migration *m)
{
	MigrationRun *run = dry->run;
	MemoryContext old = MemoryContextSwitchTo(run->runcxt);
	List	   *slices;
	ListCell   *lc;
	bool		sliced;
	bool		has_keys;

	mr_init_run(run, m);
	run->keep_returned = true;
	/* SET LOCAL: the rollback of the subtransaction ends them */
	mr_set_batch_gucs(run);
	mr_setup_keys(run);
	PushActiveSnapshot(GetTransactionSnapshot());
	mr_prepare_data_plans(run);
	has_keys = mr_fix_high_water(run, false);
	slices = slices_left(run, &sliced);
	PopActiveSnapshot();
	MemoryContextSwitchTo(old);

	if (!sliced && has_keys)
	{
		memcpy(run->upper, run->high_water, sizeof(run->upper));
		walk_range(dry);
	}
	foreach(lc, slices)
	{
		if (list_length(dry->done) >= dry->wanted)
			break;
		walk_slice(dry, (DrySlice *) lfirst(lc));
	}
}

/*
 * Run the dry batches in an internal subtransaction and roll it back,
 * whatever happens; an error is raised again after the rollback.
 */
static void
dry_run_rolled_back(DryRun *dry, Migration *m)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	MigrationRun *run = dry->run;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		ErrorContextCallback errcallback;

		errcallback.callback = dry_run_error_context;
		errcallback.arg = run;
		errcallback.previous = error_context_stack;
		error_context_stack = &errcallback;
		run->m = m;
		SPI_connect();
		dry_run_batches(dry, m);
		SPI_finish();
		error_context_stack = errcallback.previous;

		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* the batch's statement_timeout must not outlive it */
		if (run->timeout_armed_at != 0)
			disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		mr_end_run(run);
		ReThrowError(edata);
	}
	PG_END_TRY();
	mr_end_run(run);
	/* the engine showed each batch in pg_stat_activity: show the query again */
	if (debug_query_string)
		pgstat_report_activity(STATE_RUNNING, debug_query_string);
}

/* the caller's tuplestore for the result, checked before anything runs */
static Tuplestorestate *
result_store(FunctionCallInfo fcinfo, TupleDesc *desc)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext old;
	Tuplestorestate *store;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	if (get_call_result_type(fcinfo, NULL, desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	store = tuplestore_begin_heap(false, false, work_mem);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = *desc;
	MemoryContextSwitchTo(old);
	return store;
}

/* the batches as rows of the result */
static void
put_rows(Tuplestorestate *store, TupleDesc desc, List *done)
{
	ListCell   *lc;
	int			batch = 0;

	foreach(lc, done)
	{
		DryBatch   *b = (DryBatch *) lfirst(lc);
		Datum		values[DRY_RUN_COLUMNS];
		bool		nulls[DRY_RUN_COLUMNS] = {false};

		values[0] = Int32GetDatum(++batch);
		values[1] = CStringGetTextDatum(b->first_key);
		values[2] = CStringGetTextDatum(b->last_key);
		values[3] = Int64GetDatum(b->rows);
		values[4] = Float8GetDatum(b->ms);
		nulls[5] = b->sample == NULL;
		if (b->sample)
			values[5] = DirectFunctionCall1(jsonb_in, CStringGetDatum(b->sample));
		tuplestore_putvalues(store, desc, values, nulls);
	}
}

/*
 * mig_dry_run(name text, batches int DEFAULT 1) RETURNS TABLE (batch int,
 * first_key text, last_key text, rows bigint, ms float8, sample jsonb)
 */
Datum
mig_dry_run(PG_FUNCTION_ARGS)
{
	char	   *name = mr_name_arg(fcinfo, 0);
	int			batches;
	Migration  *m;
	DryRun		dry;
	TupleDesc	desc;
	Tuplestorestate *store;

	mr_require_arg(fcinfo, 1, "batches");
	batches = PG_GETARG_INT32(1);
	if (batches < 1 || batches > DRY_RUN_MAX_BATCHES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batches must be between 1 and %d", DRY_RUN_MAX_BATCHES)));
	store = result_store(fcinfo, &desc);

	/* no row lock: a dry run never waits for a batch under way */
	m = mr_existing_migration(name, false);
	mr_require_managed(m, "mig_dry_run");
	mr_check_ownership(m);
	if (STATUS_IS(m, MR_STATUS_COMPLETED))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot dry-run completed migration \"%s\"", m->name),
				 errdetail("A completed migration has no batches left."),
				 errhint("To see what a new run would do, define a new version under a new name, such as \"%s\", and dry-run that.",
						 mr_next_version_name(m->name))));

	memset(&dry, 0, sizeof(dry));
	dry.run = mr_new_run(0);
	dry.wanted = batches;
	dry.resultcxt = CurrentMemoryContext;
	dry_run_rolled_back(&dry, m);
	put_rows(store, desc, dry.done);
	return (Datum) 0;
}
