/*-------------------------------------------------------------------------
 *
 * plans.c
 *	  The statements the batch engine prepares once per run and keeps: the
 *	  bounds queries on the migration's relation, the action, and the
 *	  per-batch catalog statements.
 *
 * Preparing is idempotent: a plan already kept is freed before it is made
 * again, so a setup that is retried, or bounds plans remade when the batch
 * size changes, never leak a plan.
 *
 * The bounds queries walk the key's index in order whatever the planner's
 * statistics say: on a table that was never analysed (a backfill right
 * after a bulk load) the planner would otherwise sort the whole remaining
 * key range for every batch.  They are planned under search_path
 * pg_catalog, pg_temp, so that no operator on the owner's path can capture
 * the key comparisons.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"

#include "compat.h"
#include "migration_runner.h"
#include "define.h"
#include "run_internal.h"

/*
 * "k1, k2" (as_row: "(k1, k2)" for a row comparison; descending: "k1 DESC,
 * k2 DESC" for an ORDER BY)
 */
char *
mr_key_list(Migration *m, bool as_row, bool descending)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	if (as_row && m->nkeys > 1)
		appendStringInfoChar(&buf, '(');
	for (i = 0; i < m->nkeys; i++)
		appendStringInfo(&buf, "%s%s%s", i > 0 ? ", " : "",
						 quote_identifier(m->key_names[i]),
						 descending ? " DESC" : "");
	if (as_row && m->nkeys > 1)
		appendStringInfoChar(&buf, ')');
	return buf.data;
}

/* "($1, $2)" for parameters first..first+n-1 */
char *
mr_param_list(int first, int n)
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

/*
 * Prepare sql and keep the plan in *slot, freeing the plan it held.  The
 * slot is NULL while preparing, so that an error (a lock timeout) leaves no
 * dangling plan behind.
 */
static void
keep_plan_with(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes,
			   int cursor_options)
{
	SPIPlanPtr	plan;

	if (*slot != NULL)
		SPI_freeplan(*slot);
	*slot = NULL;
	plan = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);
	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep plan for \"%s\"", sql);
	*slot = plan;
}

static void
keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	keep_plan_with(slot, sql, nargs, argtypes, 0);
}

/*
 * The per-batch statements (bounds, catalog) have one right plan whatever
 * the values: a range scan of an index, or a row by its key.  A generic
 * plan is made once; a custom plan per batch would only cost planning time
 * (with the history prune it cost most of the statement).
 */
static void
keep_generic_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	keep_plan_with(slot, sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
}

static void
key_param_types(Migration *m, Oid *types, int copies)
{
	int			i;

	for (i = 0; i < copies * m->nkeys; i++)
		types[i] = m->key_types[i % m->nkeys];
}

/*
 * Planner settings under which a query on the relation can only read the
 * key's index in order: sequential scans, bitmap scans and sorts are
 * disabled until the caller's AtEOXact_GUC(true, returned level).  Custom
 * plans are made at execution, so this must be in force then too.
 */
int
mr_enter_index_scan(void)
{
	int			nestlevel = NewGUCNestLevel();

	mr_set_guc_saved("enable_seqscan", "off");
	mr_set_guc_saved("enable_bitmapscan", "off");
	mr_set_guc_saved("enable_sort", "off");
	mr_set_guc_saved("search_path", "pg_catalog, pg_temp");
	return nestlevel;
}

/* ONLY for a plain table, so that inheritance children are not walked */
static const char *
only_clause(Migration *m)
{
	return get_rel_relkind(m->relid) == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ";
}

/* what a query on the migration's relation reads FROM */
char *
mr_from_clause(MigrationRun *run)
{
	return psprintf("%s%s", only_clause(run->m), run->relname);
}

/*
 * Citus cannot plan a query on a distributed table with its parameters left
 * unbound ("could not create distributed plan"): the bounds queries of a
 * global key range over a Citus table get a custom plan per batch.
 */
static void
keep_bounds_plan(Migration *m, SPIPlanPtr *slot, const char *sql, int nargs,
				 Oid *argtypes)
{
	if (m->distribution != NULL)
		keep_plan(slot, sql, nargs, argtypes);
	else
		keep_generic_plan(slot, sql, nargs, argtypes);
}

/*
 * The bounds queries: an ordered range scan of the key's index, never OFFSET.
 * The batch size is a literal, so the plan is made for exactly that LIMIT;
 * they are prepared again only when the size changes.
 */
void
mr_prepare_bounds(MigrationRun *run)
{
	Migration  *m = run->m;
	Oid			types[2 * MR_MAX_KEY_COLUMNS];
	char	   *keys = mr_key_list(m, false, false);
	char	   *row = mr_key_list(m, true, false);
	int			nestlevel;

	run->bounds_plan_size = -1;
	key_param_types(m, types, 2);
	nestlevel = mr_enter_index_scan();
	keep_bounds_plan(m, &run->bounds_first,
			  psprintf("SELECT %s FROM %s%s WHERE %s <= %s ORDER BY %s LIMIT %d",
					   keys, only_clause(m), run->relname, row,
					   mr_param_list(1, m->nkeys), keys, run->batch_size),
			  m->nkeys, types);
	keep_bounds_plan(m, &run->bounds_next,
			  psprintf("SELECT %s FROM %s%s WHERE %s > %s AND %s <= %s ORDER BY %s LIMIT %d",
					   keys, only_clause(m), run->relname, row,
					   mr_param_list(1, m->nkeys), row,
					   mr_param_list(m->nkeys + 1, m->nkeys), keys, run->batch_size),
			  2 * m->nkeys, types);
	AtEOXact_GUC(true, nestlevel);
	run->bounds_plan_size = run->batch_size;
}

/*
 * The high-water mark query: the largest key now.  Run once per migration,
 * so it is not kept.
 */
char *
mr_high_water_sql(MigrationRun *run)
{
	Migration  *m = run->m;

	return psprintf("SELECT %s FROM %s%s ORDER BY %s LIMIT 1",
					mr_key_list(m, false, false), only_clause(m),
					run->relname, mr_key_list(m, false, true));
}

/*
 * What the action writes must still be what it wrote at define time: the
 * same checks as mig_define's (no temporary table, no other table of the
 * relation's name, no key column changed), and the same table.  A table
 * created since on the recorded search_path would otherwise capture an
 * unqualified action.
 */
static void
check_action_writes(MigrationRun *run)
{
	CachedPlanSource *source = linitial(SPI_plan_get_plan_sources(run->action));
	Oid			target;

	mr_check_action_writes(run->m, source->query_list);
	target = mr_action_write_target(run->action);
	if (OidIsValid(run->m->action_target) && target != run->m->action_target)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("action of migration \"%s\" now writes to %s instead of %s",
						run->m->name,
						OidIsValid(target) ? mr_relation_for_message(target) : "no table",
						mr_relation_for_message(run->m->action_target)),
				 errdetail("With search_path \"%s\", the table names in the action resolve to other tables than when the migration was defined.",
						   run->search_path),
				 errhint("Drop the table that captures the name, or define a new version of the migration with schema-qualified names.")));
}

/*
 * the action, analysed with the migration's own path (pg_temp last); also
 * for mig_retry_skipped
 */
void
mr_prepare_action(MigrationRun *run)
{
	Oid			types[2 * MR_MAX_KEY_COLUMNS];
	int			nestlevel;

	key_param_types(run->m, types, 2);
	nestlevel = NewGUCNestLevel();
	mr_set_guc_saved("search_path", run->search_path);
	keep_plan(&run->action, run->m->action, 2 * run->m->nkeys, types);
	check_action_writes(run);
	AtEOXact_GUC(true, nestlevel);
}

/*
 * The statements of a batch of a slice: lock the slice's row (with its
 * migration's status and options), and record its progress.  The progress
 * statement takes the same parameters as the migration's, but $12 is the
 * slice.  Slice rows are few and updated by one runner each, so they are
 * found by their key.
 */
static void
prepare_slice_plans(MigrationRun *run, Oid *progress_types)
{
	Oid			types[12];
	const char *slices = mr_catalog_table("migration_slices");
	CatalogAccess access;

	memcpy(types, progress_types, sizeof(types));
	types[11] = INT4OID;
	mr_catalog_enter(&access);
	keep_generic_plan(&run->slice_lock,
			  psprintf("SELECT m.status, s.ctid, m.parallel, m.batch_size, " MR_OPTION_COLUMNS ", "
					   "s.upper_key, s.status = 'done' "
					   "FROM %s s JOIN %s m ON m.id = s.migration_id "
					   "WHERE s.migration_id = $1 AND s.slice = $2 FOR NO KEY UPDATE OF s",
					   slices, run->catalog),
			  2, (Oid[]) {INT8OID, INT4OID});
	keep_generic_plan(&run->slice_progress,
			  psprintf("UPDATE %s SET processed = processed + $2, scanned = scanned + $3, "
					   "batches = batches + sign($3)::int, cursor = $4, "
					   "status = CASE WHEN $5 THEN 'done' ELSE status END, "
					   "worker_pid = CASE WHEN $5 THEN NULL ELSE worker_pid END, "
					   "last_batch_at = now(), last_batch_ms = $6, "
					   "bounds_ms = bounds_ms + $7, action_ms = action_ms + $8, "
					   "bookkeeping_ms = bookkeeping_ms + $9, commit_ms = commit_ms + $10, "
					   "current_batch_size = $11 WHERE migration_id = $1 AND slice = $12",
					   slices),
			  12, types);
	mr_catalog_leave(&access);
}

/*
 * The per-batch catalog statements, analysed as the extension's owner with
 * the pinned path they run with.
 */
static void
prepare_catalog_plans(MigrationRun *run)
{
	Oid			progress_types[] = {INT8OID, INT8OID, INT4OID, TEXTARRAYOID,
		BOOLOID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, INT4OID,
	TIDOID};
	Oid			lock_at_types[] = {INT8OID, TIDOID};
	Oid			history_types[] = {INT8OID, INT8OID, TEXTARRAYOID, TEXTARRAYOID,
		INT4OID, INT8OID, TIMESTAMPTZOID, FLOAT8OID, FLOAT8OID, FLOAT8OID, INT4OID,
	TEXTOID, INT4OID};
	Oid			prune_types[] = {INT8OID, INT8OID, INT8OID, INT4OID};
	Oid			id_type = INT8OID;
	char	   *progress;
	CatalogAccess access;

	mr_catalog_enter(&access);
	keep_generic_plan(&run->lock_row,
			  psprintf("SELECT " ROW_STATE_COLUMNS " FROM %s WHERE id = $1 FOR NO KEY UPDATE",
					   run->catalog),
			  1, &id_type);
	/* a version updated since is not found: the caller falls back */
	keep_generic_plan(&run->lock_row_at,
			  psprintf("SELECT " ROW_STATE_COLUMNS " FROM %s WHERE ctid = $2 AND id = $1 "
					   "FOR NO KEY UPDATE", run->catalog),
			  lengthof(lock_at_types), lock_at_types);

	/*
	 * One UPDATE per batch, touching no indexed column: a HOT update.  It
	 * finds the row by the ctid the batch just locked.
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
	keep_generic_plan(&run->progress_at,
			  psprintf("%s WHERE ctid = $12 AND id = $1 RETURNING ctid", progress),
			  lengthof(progress_types), progress_types);
	/* when the action itself wrote the row, the locked version is gone */
	keep_generic_plan(&run->progress,
			  psprintf("%s WHERE id = $1 RETURNING ctid", progress),
			  lengthof(progress_types), progress_types);

	keep_generic_plan(&run->history_insert,
			  psprintf("INSERT INTO %s (migration_id, batch, first_key, last_key, keys, rows, "
					   "started_at, duration_ms, bounds_ms, action_ms, attempts, error, slice) "
					   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
					   "ON CONFLICT (migration_id, slice, batch) DO UPDATE SET "
					   "first_key = excluded.first_key, last_key = excluded.last_key, "
					   "keys = excluded.keys, rows = excluded.rows, "
					   "started_at = excluded.started_at, duration_ms = excluded.duration_ms, "
					   "bounds_ms = excluded.bounds_ms, action_ms = excluded.action_ms, "
					   "attempts = excluded.attempts, error = excluded.error",
					   run->history),
			  lengthof(history_types), history_types);
	keep_generic_plan(&run->history_prune,
			  psprintf("DELETE FROM %s WHERE migration_id = $1 AND slice = $4 "
					   "AND batch > $2 AND batch <= $3", run->history),
			  lengthof(prune_types), prune_types);
	mr_catalog_leave(&access);
	prepare_slice_plans(run, progress_types);
}

void
mr_prepare_run_plans(MigrationRun *run)
{
	mr_prepare_data_plans(run);
	prepare_catalog_plans(run);
}

/* the statements on the relation alone (action, verify, bounds): what a dry run needs */
void
mr_prepare_data_plans(MigrationRun *run)
{
	mr_prepare_action(run);
	mr_prepare_verify(run);
	mr_prepare_bounds(run);
}

/* free every plan the run keeps */
void
mr_free_run_plans(MigrationRun *run)
{
	SPIPlanPtr *plans[] = {&run->bounds_first, &run->bounds_next, &run->action,
		&run->verify,
		&run->lock_row, &run->lock_row_at, &run->progress, &run->progress_at,
		&run->history_insert, &run->history_prune, &run->slice_lock,
	&run->slice_progress};
	int			i;

	for (i = 0; i < lengthof(plans); i++)
	{
		if (*plans[i] != NULL)
			SPI_freeplan(*plans[i]);
		*plans[i] = NULL;
	}
	run->bounds_plan_size = -1;
}
