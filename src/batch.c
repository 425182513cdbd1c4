/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  The batch engine: runs a managed migration batch by batch.  Both
 *	  CALL mig_run and the background worker drive it; they differ only in
 *	  how they commit (RunnerHooks).
 *
 * One batch is one transaction:
 *
 *	 1. lock the migration's catalog row and check it is still running and
 *		its relation and key are unchanged;
 *	 2. find the batch's first and last key by keyset, through the index:
 *		WHERE (key) > (cursor) AND (key) <= (high water) ORDER BY key LIMIT n;
 *	 3. run the action as the migration's owner with those bounds;
 *	 4. add the rows changed to processed, move the cursor to the last key,
 *		record the batch in the history, and mark the migration completed
 *		when no key is left;
 *	 5. commit.
 *
 * Steps 1-4 run in a subtransaction, so an error in the action rolls back
 * exactly the batch; the failure (or the retry) is then recorded in the same
 * top-level transaction and committed.  Since data and cursor commit
 * together, a crash at any point resumes at the first uncommitted batch and
 * no batch is ever applied twice; that is also why batch commits may be
 * asynchronous.
 *
 * The key's high-water mark is fixed when the run first starts, so rows
 * appended at the end of the table while the migration runs cannot keep it
 * running forever.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "storage/itemptr.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "migration_runner.h"

/* what one batch attempt came to */
typedef enum BatchResult
{
	BATCH_DONE,					/* committed work; keys are left */
	BATCH_LAST,					/* committed work; migration completed */
	BATCH_NOT_RUNNING,			/* someone paused or cancelled it */
	BATCH_RETRY,				/* transient error: try again after backoff */
	BATCH_FAILED				/* error: migration marked failed */
} BatchResult;

struct MigrationRun
{
	Migration  *m;
	MemoryContext runcxt;		/* lives as long as the run */
	MemoryContext batchcxt;		/* reset before every batch */
	const char *catalog;		/* quoted "schema".migrations */
	const char *history;		/* quoted "schema".migration_batches */
	const char *relname;		/* quoted relation name at start */

	/* key columns: how to turn text into Datums and back */
	Oid			key_input[MR_MAX_KEY_COLUMNS];
	Oid			key_ioparam[MR_MAX_KEY_COLUMNS];
	FmgrInfo	key_output[MR_MAX_KEY_COLUMNS];
	int16		key_typlen[MR_MAX_KEY_COLUMNS];
	bool		key_typbyval[MR_MAX_KEY_COLUMNS];

	bool		has_cursor;
	Datum		cursor[MR_MAX_KEY_COLUMNS];

	/*
	 * Where this runner last found its catalog row.  Every batch updates the
	 * row; while some session holds an old snapshot (a long mig_wait, a
	 * pg_dump) none of the old versions can be pruned, and a lookup through
	 * the index would walk all of them.  Going straight to the version we
	 * wrote keeps a batch's bookkeeping constant.
	 */
	ItemPointerData row_tid;
	bool		row_tid_valid;
	const char *batch_keys;		/* "(21) to (30)" once the batch has its
								 * bounds, in batchcxt; else NULL */
	TimestampTz batch_started_at;	/* of the batch under way, or 0 */
	int			batch_nkeys;	/* keys it found */
	Datum		batch_first_key;	/* its bounds as text[] in batchcxt, or 0 */
	Datum		batch_last_key;
	Datum		high_water[MR_MAX_KEY_COLUMNS];

	/* effective options: per-migration value, or the GUC */
	int			batch_size;
	int			batch_delay_ms;
	int			lock_timeout_ms;
	int			statement_timeout_ms;
	int			max_retries;
	int			target_batch_ms;

	/* prepared once per run (bounds plans again when the size changes) */
	int			bounds_plan_size;
	SPIPlanPtr	bounds_first;
	SPIPlanPtr	bounds_next;
	SPIPlanPtr	action;
	SPIPlanPtr	lock_row;
	SPIPlanPtr	lock_row_at;
	SPIPlanPtr	progress_at;
	SPIPlanPtr	progress;
	SPIPlanPtr	history_insert;
	SPIPlanPtr	history_prune;

	/* time spent on bookkeeping and commit not yet added to the catalog */
	double		carry_bookkeeping_ms;
	double		carry_commit_ms;

	/* health throttling: WAL position at the last look, lock waiters seen */
	XLogRecPtr	wal_mark;
	TimestampTz wal_mark_at;
	int			lock_waiters;

	/* retries of the current batch */
	int			attempts;
	ErrorData  *last_error;
};

static double
elapsed_ms(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_MILLISEC(now);
}

/*
 * The advisory lock that says "this process runs migration id".  Session
 * level, so it spans the run's transactions and vanishes with the process.
 */
static void
runner_locktag(LOCKTAG *tag, int64 migration_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (migration_id >> 32),
						 (uint32) migration_id, MR_RUNNER_LOCK_FIELD4);
}

bool
mr_try_lock_runner(int64 migration_id)
{
	LOCKTAG		tag;

	runner_locktag(&tag, migration_id);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

void
mr_unlock_runner(int64 migration_id)
{
	LOCKTAG		tag;

	runner_locktag(&tag, migration_id);
	LockRelease(&tag, ExclusiveLock, true);
}

/*
 * Is some process running this migration right now?
 */
bool
mr_runner_is_active(int64 migration_id)
{
	if (!mr_try_lock_runner(migration_id))
		return true;
	mr_unlock_runner(migration_id);
	return false;
}

const char *
mr_outcome_name(RunOutcome outcome)
{
	switch (outcome)
	{
		case RUN_COMPLETED:
			return MR_STATUS_COMPLETED;
		case RUN_STOPPED:
			return "stopped";
		case RUN_FAILED:
			return MR_STATUS_FAILED;
		case RUN_INTERRUPTED:
			return "interrupted";
	}
	return "unknown";
}

/* exponential backoff with jitter: 100 ms, 200 ms, ... up to 10 s, +-50% */
static long
retry_backoff_ms(int attempt)
{
	long		base = 100L << Min(attempt - 1, 7);

	base = Min(base, 10000L);
	return base / 2 + random() % (base + 1);
}

/*
 * Sleep ms milliseconds, waking for interrupts (SIGTERM ends the process
 * here) and for postmaster death.
 */
static void
runner_sleep(long ms)
{
	TimestampTz until = GetCurrentTimestamp() + ms * 1000;

	while (ms > 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		ms = (until - GetCurrentTimestamp()) / 1000;
	}
}

/* ----------------------------------------------------------------------
 * Keys: Datums in the run, text in the catalog
 * ----------------------------------------------------------------------
 */

static void
setup_key_io(MigrationRun *run)
{
	Migration  *m = run->m;
	int			i;

	for (i = 0; i < m->nkeys; i++)
	{
		Oid			output;
		bool		isvarlena;

		getTypeInputInfo(m->key_types[i], &run->key_input[i], &run->key_ioparam[i]);
		getTypeOutputInfo(m->key_types[i], &output, &isvarlena);
		fmgr_info_cxt(output, &run->key_output[i], run->runcxt);
		get_typlenbyval(m->key_types[i], &run->key_typlen[i], &run->key_typbyval[i]);
	}
}

static void
key_from_text(MigrationRun *run, char **text, Datum *key)
{
	MemoryContext old = MemoryContextSwitchTo(run->runcxt);
	int			i;

	for (i = 0; i < run->m->nkeys; i++)
		key[i] = OidInputFunctionCall(run->key_input[i], text[i],
									  run->key_ioparam[i], -1);
	MemoryContextSwitchTo(old);
}

static char **
key_to_text(MigrationRun *run, Datum *key)
{
	char	  **text = palloc(sizeof(char *) * run->m->nkeys);
	int			i;

	for (i = 0; i < run->m->nkeys; i++)
		text[i] = OutputFunctionCall(&run->key_output[i], key[i]);
	return text;
}

/* a key already in text form as a text[] Datum, as the catalog keeps it */
static Datum
text_key_array(MigrationRun *run, char **text)
{
	Datum	   *elems = palloc(sizeof(Datum) * run->m->nkeys);
	int			i;

	for (i = 0; i < run->m->nkeys; i++)
		elems[i] = CStringGetTextDatum(text[i]);
	return PointerGetDatum(construct_array(elems, run->m->nkeys, TEXTOID, -1,
										   false, TYPALIGN_INT));
}

static Datum
key_text_array(MigrationRun *run, Datum *key)
{
	return text_key_array(run, key_to_text(run, key));
}

/* copy a key out of an SPI tuple into the run's memory */
static void
key_from_tuple(MigrationRun *run, HeapTuple tuple, TupleDesc desc, Datum *key)
{
	MemoryContext old = MemoryContextSwitchTo(run->runcxt);
	int			i;
	bool		isnull;

	for (i = 0; i < run->m->nkeys; i++)
		key[i] = datumCopy(SPI_getbinval(tuple, desc, i + 1, &isnull),
						   run->key_typbyval[i], run->key_typlen[i]);
	MemoryContextSwitchTo(old);
}

/* ----------------------------------------------------------------------
 * SQL the engine prepares
 * ----------------------------------------------------------------------
 */

/* "k1, k2" or "(k1, k2)" for a row comparison */
static char *
key_list(Migration *m, bool as_row)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	if (as_row && m->nkeys > 1)
		appendStringInfoChar(&buf, '(');
	for (i = 0; i < m->nkeys; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "",
						 quote_identifier(m->key_names[i]));
	if (as_row && m->nkeys > 1)
		appendStringInfoChar(&buf, ')');
	return buf.data;
}

/* "($1, $2)" for parameters first..first+n-1 */
static char *
param_list(int first, int n)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	if (n > 1)
		appendStringInfoChar(&buf, '(');
	for (i = 0; i < n; i++)
		appendStringInfo(&buf, "%s$%d", i > 0 ? ", " : "", first + i);
	if (n > 1)
		appendStringInfoChar(&buf, ')');
	return buf.data;
}

static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep plan for \"%s\"", sql);
	return plan;
}

static void
key_param_types(Migration *m, Oid *types, int copies)
{
	int			i;

	for (i = 0; i < copies * m->nkeys; i++)
		types[i] = m->key_types[i % m->nkeys];
}

/*
 * The bounds queries: an ordered range scan of the key's index, never OFFSET.
 * The batch size is a literal, so the plan is made for exactly that LIMIT;
 * they are prepared again only when the size changes.
 */
static void
prepare_bounds(MigrationRun *run)
{
	Migration  *m = run->m;
	Oid			types[2 * MR_MAX_KEY_COLUMNS];
	char	   *keys = key_list(m, false);
	char	   *row = key_list(m, true);
	const char *only = get_rel_relkind(m->relid) == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ";
	char	   *sql;

	/* NULL them at once: if preparing fails (a lock timeout), no dangling plan */
	if (run->bounds_first)
		SPI_freeplan(run->bounds_first);
	run->bounds_first = NULL;
	if (run->bounds_next)
		SPI_freeplan(run->bounds_next);
	run->bounds_next = NULL;

	key_param_types(m, types, 2);
	sql = psprintf("SELECT %s FROM %s%s WHERE %s <= %s ORDER BY %s LIMIT %d",
				   keys, only, run->relname, row, param_list(1, m->nkeys),
				   keys, run->batch_size);
	run->bounds_first = prepare_kept(sql, m->nkeys, types);
	sql = psprintf("SELECT %s FROM %s%s WHERE %s > %s AND %s <= %s ORDER BY %s LIMIT %d",
				   keys, only, run->relname, row, param_list(1, m->nkeys),
				   row, param_list(m->nkeys + 1, m->nkeys), keys, run->batch_size);
	run->bounds_next = prepare_kept(sql, 2 * m->nkeys, types);
	run->bounds_plan_size = run->batch_size;
}

static void
prepare_run_plans(MigrationRun *run)
{
	Migration  *m = run->m;
	Oid			types[2 * MR_MAX_KEY_COLUMNS];
	Oid			progress_types[] = {INT8OID, INT8OID, INT4OID, TEXTARRAYOID,
		BOOLOID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, INT4OID,
	TIDOID};
	Oid			lock_at_types[] = {INT8OID, TIDOID};
	char	   *progress;
	Oid			history_types[] = {INT8OID, INT8OID, TEXTARRAYOID, TEXTARRAYOID,
		INT4OID, INT8OID, TIMESTAMPTZOID, FLOAT8OID, FLOAT8OID, FLOAT8OID, INT4OID,
	TEXTOID};
	Oid			prune_types[] = {INT8OID, INT8OID};
	Oid			id_type = INT8OID;
	CatalogAccess access;
	int			nestlevel;

	/* the action is analyzed with the search_path it was defined with */
	key_param_types(m, types, 2);
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", m->search_path, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	run->action = prepare_kept(m->action, 2 * m->nkeys, types);
	AtEOXact_GUC(true, nestlevel);

	/* catalog plans are analyzed with the path they run with */
	mr_catalog_enter(&access);
	run->lock_row = prepare_kept(psprintf("SELECT status, ctid FROM %s WHERE id = $1 "
										  "FOR NO KEY UPDATE", run->catalog),
								 1, &id_type);
	/* a version updated since is not found: the caller falls back */
	run->lock_row_at = prepare_kept(psprintf("SELECT status, ctid FROM %s "
											 "WHERE ctid = $2 AND id = $1 "
											 "FOR NO KEY UPDATE", run->catalog),
									lengthof(lock_at_types), lock_at_types);

	/*
	 * One UPDATE per batch, touching no indexed column: a HOT update.  It
	 * finds the row by the ctid lock_row_status just locked.
	 */
	progress = psprintf("UPDATE %s SET processed = processed + $2, scanned = scanned + $3, "
						"batches = batches + sign($3)::int, cursor = $4, "
						"status = CASE WHEN $5 THEN 'completed' ELSE status END, "
						"completed_at = CASE WHEN $5 THEN now() END, "
						"worker_pid = CASE WHEN $5 THEN NULL ELSE worker_pid END, "
						"last_batch_at = now(), last_batch_ms = $6, "
						"bounds_ms = bounds_ms + $7, action_ms = action_ms + $8, "
						"bookkeeping_ms = bookkeeping_ms + $9, commit_ms = commit_ms + $10, "
						"current_batch_size = $11, throttled = NULL ", run->catalog);
	run->progress_at = prepare_kept(psprintf("%s WHERE ctid = $12 AND id = $1 RETURNING ctid",
											 progress),
									lengthof(progress_types), progress_types);
	/* when the action itself wrote the row, the locked version is gone */
	run->progress = prepare_kept(psprintf("%s WHERE id = $1 RETURNING ctid", progress),
								 lengthof(progress_types), progress_types);

	run->history_insert = prepare_kept(psprintf(
												"INSERT INTO %s (migration_id, batch, first_key, last_key, keys, rows, "
												"started_at, duration_ms, bounds_ms, action_ms, attempts, error) "
												"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
												"ON CONFLICT (migration_id, batch) DO UPDATE SET "
												"first_key = excluded.first_key, last_key = excluded.last_key, "
												"keys = excluded.keys, rows = excluded.rows, "
												"started_at = excluded.started_at, duration_ms = excluded.duration_ms, "
												"bounds_ms = excluded.bounds_ms, action_ms = excluded.action_ms, "
												"attempts = excluded.attempts, error = excluded.error",
												run->history),
									   lengthof(history_types), history_types);
	run->history_prune = prepare_kept(psprintf("DELETE FROM %s WHERE migration_id = $1 "
											   "AND batch <= $2", run->history),
									  lengthof(prune_types), prune_types);
	mr_catalog_leave(&access);
}

/* ----------------------------------------------------------------------
 * Throttling on the server's health
 * ----------------------------------------------------------------------
 */

/*
 * How many sessions wait on locks this process holds, counted at the end of
 * a batch, before its commit releases them.
 */
static int
count_lock_waiters(void)
{
	CatalogAccess access;
	Datum		pid = Int32GetDatum(MyProcPid);
	Oid			type = INT4OID;
	bool		isnull;
	int			waiters;

	mr_catalog_enter(&access);
	if (SPI_execute_with_args("SELECT count(*)::int4 FROM pg_stat_activity "
							  "WHERE $1 = ANY (pg_blocking_pids(pid))",
							  1, &type, &pid, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count lock waiters");
	waiters = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	mr_catalog_leave(&access);
	return waiters;
}

/*
 * The server's WAL rate since the last look, when at least 50 ms passed.
 */
static char *
wal_rate_problem(MigrationRun *run)
{
	XLogRecPtr	lsn = GetXLogInsertRecPtr();
	TimestampTz now = GetCurrentTimestamp();
	double		secs = (now - run->wal_mark_at) / 1000000.0;
	double		kb_per_sec;

	if (run->wal_mark_at == 0)
	{
		run->wal_mark = lsn;
		run->wal_mark_at = now;
		return NULL;
	}
	if (secs < 0.05)
		return NULL;
	kb_per_sec = (lsn - run->wal_mark) / 1024.0 / secs;
	run->wal_mark = lsn;
	run->wal_mark_at = now;
	if (kb_per_sec <= mr_max_wal_rate_kb)
		return NULL;
	return psprintf("WAL is written at %.0f kB/s, more than migration_runner.max_wal_rate (%d kB/s)",
					kb_per_sec, mr_max_wal_rate_kb);
}

static char *
replica_lag_problem(void)
{
	CatalogAccess access;
	bool		isnull;
	int64		lag_ms;

	mr_catalog_enter(&access);
	if (SPI_execute("SELECT coalesce(max((extract(epoch FROM "
					"greatest(write_lag, flush_lag, replay_lag)) * 1000)::int8), 0) "
					"FROM pg_stat_replication", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read replication lag");
	lag_ms = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	mr_catalog_leave(&access);
	if (lag_ms <= mr_max_replica_lag_ms)
		return NULL;
	return psprintf("a standby is " INT64_FORMAT " ms behind, more than migration_runner.max_replica_lag (%d ms)",
					lag_ms, mr_max_replica_lag_ms);
}

/*
 * Why the next batch should wait, or NULL.  Lock waiters count once: after
 * a batch that blocked too many sessions, the runner sleeps one round.
 */
static char *
throttle_problem(MigrationRun *run)
{
	char	   *problem = NULL;

	if (mr_max_lock_waiters > 0 && run->lock_waiters > mr_max_lock_waiters)
		problem = psprintf("%d sessions waited on the runner's locks, more than migration_runner.max_lock_waiters (%d)",
						   run->lock_waiters, mr_max_lock_waiters);
	run->lock_waiters = 0;
	if (problem == NULL && mr_max_wal_rate_kb > 0)
		problem = wal_rate_problem(run);
	if (problem == NULL && mr_max_replica_lag_ms > 0)
		problem = replica_lag_problem();
	return problem;
}

static void
record_throttled(MigrationRun *run, const char *problem)
{
	mr_catalog_exec(psprintf("UPDATE %s SET throttled = %s WHERE id = " INT64_FORMAT,
							 run->catalog, quote_literal_cstr(problem), run->m->id),
					0, NULL, NULL, SPI_OK_UPDATE);
}

/*
 * Wait while the server is unhealthy, saying why in the catalog.  Returns
 * true if meanwhile the migration stopped running (paused or cancelled).
 */
static bool
throttle_wait(MigrationRun *run, const RunnerHooks *hooks)
{
	if (mr_max_lock_waiters <= 0 && mr_max_wal_rate_kb <= 0 &&
		mr_max_replica_lag_ms <= 0)
		return false;

	for (;;)
	{
		char	   *problem;
		Migration  *now = NULL;

		PushActiveSnapshot(GetTransactionSnapshot());
		SPI_connect();
		problem = throttle_problem(run);
		if (problem != NULL)
		{
			record_throttled(run, problem);
			now = mr_migration_by_id(run->m->id, false);
		}
		SPI_finish();
		PopActiveSnapshot();
		if (problem == NULL)
			return false;
		hooks->commit_and_begin();
		if (now == NULL || strcmp(now->status, MR_STATUS_RUNNING) != 0)
			return true;
		runner_sleep(mr_throttle_sleep_ms);
	}
}

/* ----------------------------------------------------------------------
 * One batch
 * ----------------------------------------------------------------------
 */

/*
 * Fail the batch if the relation or its key changed under the migration:
 * running the action against a renamed-and-replaced table, or comparing keys
 * of a changed type, would be wrong.
 */
static void
check_relation_unchanged(MigrationRun *run)
{
	Migration  *m = run->m;
	char	   *relname = get_rel_name(m->relid);
	int			i;

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation %s of migration \"%s\" was dropped",
						run->relname, m->name)));
	if (strcmp(quote_qualified_identifier(get_namespace_name(get_rel_namespace(m->relid)),
										  relname), run->relname) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation %s of migration \"%s\" was renamed or moved to %s",
						run->relname, m->name,
						quote_qualified_identifier(get_namespace_name(get_rel_namespace(m->relid)),
												   relname)),
				 errhint("Rename it back, or define a new version of the migration.")));
	for (i = 0; i < m->nkeys; i++)
	{
		AttrNumber	attnum = get_attnum(m->relid, m->key_names[i]);

		if (attnum == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("key column \"%s\" of relation %s was dropped or renamed",
							m->key_names[i], run->relname)));
		if (get_atttype(m->relid, attnum) != m->key_types[i])
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("key column \"%s\" of relation %s changed type from %s to %s",
							m->key_names[i], run->relname,
							format_type_be(m->key_types[i]),
							format_type_be(get_atttype(m->relid, attnum)))));
	}
}

static void
set_local_guc(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * Settings for this batch only; SET LOCAL semantics, so they vanish at the
 * end of the transaction.  synchronous_commit must still be in force at the
 * top-level commit, which it is: a released subtransaction keeps its locals.
 */
static void
set_batch_gucs(MigrationRun *run)
{
	set_local_guc("search_path", run->m->search_path);
	set_local_guc("lock_timeout", psprintf("%d", run->lock_timeout_ms));
	set_local_guc("statement_timeout", psprintf("%d", run->statement_timeout_ms));
	set_local_guc("synchronous_commit", mr_synchronous_commit ? "on" : "off");
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

static char *
lock_row_status(MigrationRun *run)
{
	CatalogAccess access;
	Datum		args[2] = {Int64GetDatum(run->m->id), ItemPointerGetDatum(&run->row_tid)};
	bool		isnull;
	char	   *status = NULL;

	mr_catalog_enter(&access);
	if (exec_on_row(run, run->lock_row_at, run->lock_row, args, NULL,
					SPI_OK_SELECT, 2) == 1)
		status = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 1, &isnull));
	mr_catalog_leave(&access);
	return status;
}

/*
 * Insert (or replace) one row of batch history from the history_insert
 * arguments, then drop the row that falls out of the window.  Runs inside
 * mr_catalog_enter; args[1] is overwritten.
 */
static void
insert_history(MigrationRun *run, int64 batch, Datum *args, char *nulls)
{
	if (SPI_execute_plan(run->history_insert, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record batch history");
	if (batch > mr_history_size)
	{
		args[1] = Int64GetDatum(batch - mr_history_size);
		if (SPI_execute_plan(run->history_prune, args, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not prune batch history");
	}
}

/*
 * Run the bounds query as the owner; returns the number of keys found and
 * sets first/last.
 */
static int
find_bounds(MigrationRun *run, Datum *first, Datum *last)
{
	Datum		args[2 * MR_MAX_KEY_COLUMNS];
	SPIPlanPtr	plan;
	int			nkeys = run->m->nkeys;
	int			n;

	if (run->bounds_plan_size != run->batch_size)
		prepare_bounds(run);

	if (run->has_cursor)
	{
		memcpy(args, run->cursor, sizeof(Datum) * nkeys);
		memcpy(args + nkeys, run->high_water, sizeof(Datum) * nkeys);
		plan = run->bounds_next;
	}
	else
	{
		memcpy(args, run->high_water, sizeof(Datum) * nkeys);
		plan = run->bounds_first;
	}
	if (SPI_execute_plan(plan, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "bounds query failed");
	n = (int) SPI_processed;
	if (n > 0)
	{
		key_from_tuple(run, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, first);
		key_from_tuple(run, SPI_tuptable->vals[n - 1], SPI_tuptable->tupdesc, last);
	}
	SPI_freetuptable(SPI_tuptable);
	return n;
}

static uint64
run_action(MigrationRun *run, Datum *first, Datum *last)
{
	Datum		args[2 * MR_MAX_KEY_COLUMNS];
	int			nkeys = run->m->nkeys;
	int			rc;
	uint64		rows;

	memcpy(args, first, sizeof(Datum) * nkeys);
	memcpy(args + nkeys, last, sizeof(Datum) * nkeys);
	rc = SPI_execute_plan(run->action, args, NULL, false, 0);
	if (rc < 0)
		elog(ERROR, "action failed: %s", SPI_result_code_string(rc));
	rows = SPI_processed;
	if (SPI_tuptable)
		SPI_freetuptable(SPI_tuptable);
	return rows;
}

typedef struct BatchStats
{
	TimestampTz started_at;
	int			keys;
	uint64		rows;
	double		bounds_ms;
	double		action_ms;
	double		total_ms;
} BatchStats;

static void
record_progress(MigrationRun *run, BatchStats *stats, bool completed)
{
	CatalogAccess access;
	instr_time	start;
	Datum		args[12];
	char		nulls[12];
	int64		batch = run->m->batches + 1;

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
		args[3] = run->has_cursor ? key_text_array(run, run->cursor) : (Datum) 0;
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
	/* the next batch locks the version written here */
	if (exec_on_row(run, run->progress_at, run->progress, args, nulls,
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
		nulls[11] = 'n';
		insert_history(run, batch, args, nulls);
	}
	mr_catalog_leave(&access);

	if (completed)
	{
		mr_notify_state_change(run->m->name, MR_STATUS_RUNNING,
							   MR_STATUS_COMPLETED,
							   run->m->processed + (int64) stats->rows);
		mr_announce_change_at_commit();
	}
	run->carry_bookkeeping_ms = elapsed_ms(start);
	run->carry_commit_ms = 0;
}

/*
 * The body of one batch, inside its subtransaction.  On success the cursor
 * in memory moves only after the work is done; if the commit that follows is
 * lost in a crash, the next run reads the older cursor from the catalog.
 */
static BatchResult
batch_body(MigrationRun *run)
{
	Migration  *m = run->m;
	BatchStats	stats;
	Datum		first[MR_MAX_KEY_COLUMNS];
	Datum		last[MR_MAX_KEY_COLUMNS];
	instr_time	start,
				phase;
	char	   *status;
	Oid			saved_user;
	int			saved_sec;
	bool		completed;

	INSTR_TIME_SET_CURRENT(start);
	memset(&stats, 0, sizeof(stats));
	stats.started_at = GetCurrentTimestamp();
	run->batch_keys = NULL;
	run->batch_started_at = stats.started_at;
	run->batch_nkeys = 0;
	run->batch_first_key = run->batch_last_key = (Datum) 0;

	status = lock_row_status(run);
	if (status == NULL || strcmp(status, MR_STATUS_RUNNING) != 0)
		return BATCH_NOT_RUNNING;
	check_relation_unchanged(run);
	set_batch_gucs(run);
	run->carry_bookkeeping_ms += elapsed_ms(start);

	/* the data side of the batch runs as the migration's owner */
	GetUserIdAndSecContext(&saved_user, &saved_sec);
	SetUserIdAndSecContext(m->owner, saved_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	/*
	 * No postgres.c loop arms statement_timeout for these queries (in a
	 * worker there is none; in CALL it was armed for the CALL), so arm it
	 * for the data side of the batch here.
	 */
	if (run->statement_timeout_ms > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, run->statement_timeout_ms);

	INSTR_TIME_SET_CURRENT(phase);
	stats.keys = find_bounds(run, first, last);
	stats.bounds_ms = elapsed_ms(phase);

	if (stats.keys > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(run->batchcxt);
		char	  **first_text = key_to_text(run, first);
		char	  **last_text = key_to_text(run, last);

		run->batch_keys = psprintf("%s to %s", mr_format_key(first_text, m->nkeys),
								   mr_format_key(last_text, m->nkeys));
		run->batch_nkeys = stats.keys;
		run->batch_first_key = text_key_array(run, first_text);
		run->batch_last_key = text_key_array(run, last_text);
		MemoryContextSwitchTo(old);
		pgstat_report_activity(STATE_RUNNING,
							   psprintf("migration %s: batch " INT64_FORMAT " %s",
										m->name, m->batches + 1, run->batch_keys));
		INSTR_TIME_SET_CURRENT(phase);
		stats.rows = run_action(run, first, last);
		stats.action_ms = elapsed_ms(phase);
	}
	if (run->statement_timeout_ms > 0)
		disable_timeout(STATEMENT_TIMEOUT, false);
	SetUserIdAndSecContext(saved_user, saved_sec);
	if (mr_max_lock_waiters > 0 && stats.keys > 0)
		run->lock_waiters = count_lock_waiters();

	completed = stats.keys < run->batch_size;
	stats.total_ms = elapsed_ms(start);
	record_progress(run, &stats, completed);

	/* from here on the batch is done in memory as well */
	if (stats.keys > 0)
	{
		memcpy(run->cursor, last, sizeof(Datum) * m->nkeys);
		run->has_cursor = true;
		m->batches++;
		m->processed += stats.rows;
	}
	if (run->target_batch_ms > 0 && stats.keys > 0)
	{
		double		factor = run->target_batch_ms / Max(stats.total_ms, 0.01);
		int			next;

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
	return completed ? BATCH_LAST : BATCH_DONE;
}

static bool
is_transient(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
}

/*
 * Keep a failed batch in the history with its error: its bounds if it got
 * that far, no rows (they were rolled back).  A later successful run of the
 * same batch number replaces the row.
 */
static void
record_failed_batch(MigrationRun *run, const char *error)
{
	CatalogAccess access;
	int64		batch = run->m->batches + 1;
	Datum		args[12];
	char		nulls[12];

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
	insert_history(run, batch, args, nulls);
	mr_catalog_leave(&access);
}

/*
 * After the batch's subtransaction rolled back: record a failure in the
 * still-open top-level transaction.
 */
static void
record_failure(MigrationRun *run, ErrorData *edata)
{
	char	   *bounds;
	char	   *error;
	char	   *extra;

	/* the batch's own bounds if it got that far, else where it starts */
	if (run->batch_keys)
		bounds = pstrdup(run->batch_keys);
	else if (run->has_cursor)
		bounds = psprintf("after %s", mr_format_key(key_to_text(run, run->cursor), run->m->nkeys));
	else if (run->m->cursor)
		/* the run's setup failed before it read the catalog's cursor */
		bounds = psprintf("after %s", mr_format_key(run->m->cursor, run->m->nkeys));
	else
		bounds = pstrdup("from the first key");
	error = psprintf("%s (SQLSTATE %s) in batch " INT64_FORMAT " (keys %s, batch size %d)",
					 edata->message, unpack_sql_state(edata->sqlerrcode),
					 run->m->batches + 1, bounds, run->batch_size);
	if (run->attempts > 0)
		error = psprintf("%s after %d attempts", error, run->attempts + 1);

	extra = psprintf("error = %s, worker_pid = NULL, throttled = NULL",
					 quote_literal_cstr(error));
	mr_set_status(run->m, MR_STATUS_FAILED, extra);
	record_failed_batch(run, error);
}

static void
record_retry(MigrationRun *run, ErrorData *edata, int next_size)
{
	char	   *sql;
	char	   *reason;

	reason = psprintf("retrying batch " INT64_FORMAT " (attempt %d of %d) after %s: %s",
					  run->m->batches + 1, run->attempts + 1, run->max_retries + 1,
					  unpack_sql_state(edata->sqlerrcode), edata->message);
	if (next_size != run->batch_size)
		reason = psprintf("%s; batch size %d -> %d", reason, run->batch_size, next_size);

	sql = psprintf("UPDATE %s SET retries = retries + 1, throttled = %s, "
				   "current_batch_size = %d WHERE id = " INT64_FORMAT,
				   run->catalog, quote_literal_cstr(reason), next_size, run->m->id);
	mr_catalog_exec(sql, 0, NULL, NULL, SPI_OK_UPDATE);
}

/*
 * Decide what an error in the batch means.  A statement timeout is told
 * apart from a user's cancel request by the batch having run at least as
 * long as the timeout.
 */
static BatchResult
classify_error(MigrationRun *run, ErrorData *edata, double batch_ms)
{
	int			next_size = run->batch_size;
	bool		timed_out;

	timed_out = edata->sqlerrcode == ERRCODE_QUERY_CANCELED &&
		run->statement_timeout_ms > 0 &&
		batch_ms >= run->statement_timeout_ms;

	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !timed_out)
		return BATCH_NOT_RUNNING;	/* a cancel request: caller re-throws */

	if ((is_transient(edata->sqlerrcode) || timed_out) &&
		run->attempts < run->max_retries)
	{
		if (timed_out)
			next_size = Max(Min(mr_min_batch_size, run->batch_size),
							run->batch_size / 2);
		record_retry(run, edata, next_size);
		run->batch_size = next_size;
		run->attempts++;
		return BATCH_RETRY;
	}
	record_failure(run, edata);
	return BATCH_FAILED;
}

typedef void (*GuardedStep) (MigrationRun *run, void *result);

/*
 * Run step in a subtransaction of the caller's transaction, so that an error
 * rolls back exactly what the step did.  Returns NULL on success, or the
 * error, copied into the run's memory.
 */
static ErrorData *
run_guarded(MigrationRun *run, GuardedStep step, void *result)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *edata = NULL;

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
		if (run->statement_timeout_ms > 0)
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

static void
batch_step(MigrationRun *run, void *result)
{
	*(BatchResult *) result = batch_body(run);
}

/*
 * One attempt at one batch, in the caller's open transaction.
 */
static BatchResult
run_one_batch(MigrationRun *run)
{
	BatchResult result = BATCH_FAILED;
	ErrorData  *edata;
	instr_time	start;

	if (run->last_error)
	{
		FreeErrorData(run->last_error);
		run->last_error = NULL;
	}
	INSTR_TIME_SET_CURRENT(start);
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();

	edata = run_guarded(run, batch_step, &result);
	if (edata != NULL)
	{
		/* the bounds plans may be half-made if preparing them failed */
		run->bounds_plan_size = -1;

		/* DROP EXTENSION took the catalog away under the batch: just stop */
		if (!OidIsValid(mr_extension_oid(true)))
			result = BATCH_NOT_RUNNING;
		else
			result = classify_error(run, edata, elapsed_ms(start));
		run->last_error = edata;
	}

	SPI_finish();
	PopActiveSnapshot();
	if (result == BATCH_DONE || result == BATCH_LAST)
		run->attempts = 0;
	return result;
}

/* ----------------------------------------------------------------------
 * A run: from the catalog's cursor until done, stopped or failed
 * ----------------------------------------------------------------------
 */

static int
option_or_guc(int option, int guc)
{
	return option >= 0 ? option : guc;
}

/*
 * What can fail because the relation or the action changed since define
 * time: resolve the relation, prepare the plans, read the cursor, fix the
 * high-water mark on the first run (an empty relation completes at once),
 * and record this process as the runner.
 */
static void
setup_step(MigrationRun *run, void *result)
{
	bool	   *completed = (bool *) result;
	Migration  *m = run->m;
	MemoryContext old = MemoryContextSwitchTo(run->runcxt);
	CatalogAccess access;
	char	   *sql;

	/* preparing the plans locks the relation: do not wait for it forever */
	set_local_guc("lock_timeout", psprintf("%d", run->lock_timeout_ms));
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(m->owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("owner role with OID %u no longer exists", m->owner)));
	if (get_rel_name(m->relid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation of migration \"%s\" no longer exists", m->name)));
	/*
	 * Compare with the name at define time: the action names the table, so
	 * a table renamed away and another created under its name would have
	 * the keys walked on one and the action run on the other.
	 */
	run->relname = m->relation_name ? m->relation_name :
		quote_qualified_identifier(get_namespace_name(get_rel_namespace(m->relid)),
								   get_rel_name(m->relid));
	check_relation_unchanged(run);
	setup_key_io(run);
	if (m->cursor)
	{
		key_from_text(run, m->cursor, run->cursor);
		run->has_cursor = true;
	}
	prepare_run_plans(run);

	*completed = false;
	mr_catalog_enter(&access);
	if (m->high_water == NULL)
	{
		Oid			saved_user;
		int			saved_sec;
		char	   *keys = key_list(m, false);
		StringInfoData desc;
		int			i;

		/* the high-water mark: the largest key now, read as the owner */
		initStringInfo(&desc);
		for (i = 0; i < m->nkeys; i++)
			appendStringInfo(&desc, "%s%s DESC", i > 0 ? ", " : "",
							 quote_identifier(m->key_names[i]));
		GetUserIdAndSecContext(&saved_user, &saved_sec);
		SetUserIdAndSecContext(m->owner, saved_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		set_local_guc("search_path", "pg_catalog, pg_temp");
		sql = psprintf("SELECT %s FROM %s%s ORDER BY %s LIMIT 1", keys,
					   get_rel_relkind(m->relid) == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ",
					   run->relname, desc.data);
		if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read high-water mark");
		SetUserIdAndSecContext(saved_user, saved_sec);
		if (SPI_processed == 0)
			*completed = true;
		else
		{
			key_from_tuple(run, SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
						   run->high_water);
			sql = psprintf("UPDATE %s SET high_water = $2 WHERE id = $1",
						   run->catalog);
			if (SPI_execute_with_args(sql, 2, (Oid[]) {INT8OID, TEXTARRAYOID},
									  (Datum[]) {Int64GetDatum(m->id),
										  key_text_array(run, run->high_water)},
									  NULL, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "could not record high-water mark");
		}
	}
	else
		key_from_text(run, m->high_water, run->high_water);

	sql = psprintf("UPDATE %s SET worker_pid = %d WHERE id = " INT64_FORMAT,
				   run->catalog, MyProcPid, m->id);
	if (SPI_execute(sql, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record runner pid");
	mr_catalog_leave(&access);
	MemoryContextSwitchTo(old);
}

/*
 * Read the migration and set up the run, in the caller's transaction.
 * Returns RUN_COMPLETED when there is nothing to do, RUN_FAILED when the
 * setup failed (recorded in the catalog), RUN_STOPPED otherwise: ready.
 */
static RunOutcome
run_begin(MigrationRun *run, int64 migration_id)
{
	MemoryContext old = MemoryContextSwitchTo(run->runcxt);
	Migration  *m;
	ErrorData  *edata;
	bool		completed = false;
	RunOutcome	outcome = RUN_STOPPED;

	PushActiveSnapshot(GetTransactionSnapshot());
	m = run->m = mr_migration_by_id(migration_id, true);
	if (m == NULL || !MigrationIsManaged(m))
		elog(ERROR, "migration " INT64_FORMAT " is not a managed migration",
			 migration_id);
	run->catalog = mr_catalog_table("migrations");
	run->history = mr_catalog_table("migration_batches");
	run->relname = psprintf("relation with OID %u", m->relid);
	run->batch_size = m->current_batch_size > 0 ? m->current_batch_size : m->batch_size;
	run->batch_delay_ms = option_or_guc(m->batch_delay_ms, mr_batch_delay_ms);
	run->lock_timeout_ms = option_or_guc(m->lock_timeout_ms, mr_lock_timeout_ms);
	run->statement_timeout_ms = option_or_guc(m->statement_timeout_ms,
											  mr_statement_timeout_ms);
	run->max_retries = option_or_guc(m->max_retries, mr_max_retries);
	run->target_batch_ms = option_or_guc(m->target_batch_ms, mr_target_batch_ms);
	if (run->target_batch_ms <= 0)
		run->batch_size = m->batch_size;
	run->bounds_plan_size = -1;
	MemoryContextSwitchTo(old);

	SPI_connect();
	for (;;)
	{
		edata = run_guarded(run, setup_step, &completed);
		if (edata == NULL || !is_transient(edata->sqlerrcode) ||
			run->attempts >= run->max_retries)
			break;

		/*
		 * The relation is locked by someone else right now (the plans need
		 * a lock on it): wait and try again, as a batch would.
		 */
		run->attempts++;
		FreeErrorData(edata);
		runner_sleep(retry_backoff_ms(run->attempts));
	}
	SPI_finish();
	if (edata == NULL)
		run->attempts = 0;

	if (edata != NULL)
	{
		record_failure(run, edata);
		outcome = RUN_FAILED;
	}
	else if (completed)
	{
		mr_set_status(m, MR_STATUS_COMPLETED,
					  "completed_at = now(), worker_pid = NULL");
		outcome = RUN_COMPLETED;
	}
	PopActiveSnapshot();
	return outcome;
}

/* free what a run holds: its kept plans and its memory */
static void
run_free(MigrationRun *run)
{
	SPIPlanPtr	plans[] = {run->bounds_first, run->bounds_next, run->action,
		run->lock_row, run->lock_row_at, run->progress, run->progress_at,
	run->history_insert, run->history_prune};
	int			i;

	for (i = 0; i < lengthof(plans); i++)
		if (plans[i] != NULL)
			SPI_freeplan(plans[i]);
	MemoryContextDelete(run->runcxt);
}

/* clear worker_pid if it still names this process */
static void
forget_runner_pid(MigrationRun *run)
{
	if (!OidIsValid(mr_extension_oid(true)))
		return;
	PushActiveSnapshot(GetTransactionSnapshot());
	mr_catalog_exec(psprintf("UPDATE %s SET worker_pid = NULL, throttled = NULL "
							 "WHERE id = " INT64_FORMAT " AND worker_pid = %d",
							 run->catalog, run->m->id, MyProcPid),
					0, NULL, NULL, SPI_OK_UPDATE);
	PopActiveSnapshot();
}

/*
 * Pause the migration because its runner was asked to stop (a cancel
 * request), and commit that.
 */
static void
pause_on_cancel(MigrationRun *run, const RunnerHooks *hooks)
{
	PushActiveSnapshot(GetTransactionSnapshot());
	mr_set_status(run->m, MR_STATUS_PAUSED, "worker_pid = NULL");
	PopActiveSnapshot();
	hooks->commit_and_begin();
}

/*
 * The batch loop of a run whose first transaction has committed.
 */
static RunOutcome
run_loop(MigrationRun *run, const RunnerHooks *hooks)
{
	RunOutcome	outcome;

	for (;;)
	{
		BatchResult result;
		instr_time	commit_start;

		CHECK_FOR_INTERRUPTS();
		if (hooks->should_stop())
		{
			outcome = RUN_INTERRUPTED;
			break;
		}
		MemoryContextReset(run->batchcxt);

		result = run_one_batch(run);
		INSTR_TIME_SET_CURRENT(commit_start);
		hooks->commit_and_begin();
		run->carry_commit_ms += elapsed_ms(commit_start);

		if (result == BATCH_LAST)
			return RUN_COMPLETED;
		if (result == BATCH_FAILED)
			return RUN_FAILED;
		if (result == BATCH_NOT_RUNNING)
		{
			if (run->last_error &&
				run->last_error->sqlerrcode == ERRCODE_QUERY_CANCELED)
			{
				pause_on_cancel(run, hooks);
				ReThrowError(run->last_error);
			}
			outcome = RUN_STOPPED;
			break;
		}
		if (result == BATCH_RETRY)
			runner_sleep(retry_backoff_ms(run->attempts));
		else if (run->batch_delay_ms > 0)
			runner_sleep(run->batch_delay_ms);
		if (throttle_wait(run, hooks))
		{
			outcome = RUN_STOPPED;
			break;
		}
	}

	forget_runner_pid(run);
	hooks->commit_and_begin();
	return outcome;
}

/*
 * Run migration_id until it completes, is stopped, fails, or the runner is
 * told to stop.  The caller holds the runner lock, has a transaction open,
 * and the migration's status is running.  Returns with a transaction open.
 */
RunOutcome
mr_run_migration(int64 migration_id, const RunnerHooks *hooks)
{
	MemoryContext runcxt;
	MigrationRun *run;
	RunOutcome	outcome = RUN_COMPLETED;

	runcxt = AllocSetContextCreate(TopMemoryContext, "migration_runner run",
								   ALLOCSET_DEFAULT_SIZES);
	run = MemoryContextAllocZero(runcxt, sizeof(MigrationRun));
	run->runcxt = runcxt;
	run->batchcxt = AllocSetContextCreate(runcxt, "migration_runner batch",
										  ALLOCSET_DEFAULT_SIZES);
	PG_TRY();
	{
		outcome = run_begin(run, migration_id);
		hooks->commit_and_begin();
		if (outcome == RUN_STOPPED)
			outcome = run_loop(run, hooks);
	}
	PG_CATCH();
	{
		run_free(run);
		PG_RE_THROW();
	}
	PG_END_TRY();
	run_free(run);
	return outcome;
}
