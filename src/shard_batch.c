/*-------------------------------------------------------------------------
 *
 * shard_batch.c
 *	  The functions a Citus coordinator's per-shard run calls on the node
 *	  that holds a shard: mig_shard_prepare defines and starts this node's
 *	  migration of one shard placement, CALL mig_shard_batch runs some of
 *	  its batches with the batch engine and says where it stands.
 *
 * The coordinator (citus_run.c) connects as the migration's owner, so both
 * run with exactly the owner's rights here, as a batch does anywhere.  The
 * node's migration is an ordinary managed migration of the shard table,
 * with coordinator_id, shard_id and placement_id set: the node's launcher
 * leaves it alone, and every batch of it checks that the placement is
 * still on this node (shard.c).  Its cursor, committed with each batch, is
 * the truth the coordinator mirrors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "portability/instr_time.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"

#include "compat.h"
#include "migration_runner.h"
#include "run_internal.h"
#include "shard.h"

PG_FUNCTION_INFO_V1(mig_shard_prepare);
PG_FUNCTION_INFO_V1(mig_shard_batch);

/* mig_shard_prepare's arguments */
enum
{
	P_COORDINATOR_ID, P_RUN, P_SHARD_ID, P_PLACEMENT_ID, P_RELATION,
	P_ACTION, P_KEY_COLUMNS, P_BATCH_SIZE, P_SEARCH_PATH, P_CURSOR,
	P_LOCK_TIMEOUT, P_STATEMENT_TIMEOUT, P_MAX_RETRIES, P_TARGET_BATCH_TIME,
	P_BATCH_DELAY
};

/* SET name = value until AtEOXact_GUC of the level, if Citus defines it */
static void
set_if_defined(const char *name, const char *value)
{
	if (GetConfigOption(name, true, false) != NULL)
		(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
}

static char *
local_name(FunctionCallInfo fcinfo)
{
	return psprintf("citus " INT64_FORMAT "/%d shard " INT64_FORMAT " placement " INT64_FORMAT,
					PG_GETARG_INT64(P_COORDINATOR_ID), PG_GETARG_INT32(P_RUN),
					PG_GETARG_INT64(P_SHARD_ID), PG_GETARG_INT64(P_PLACEMENT_ID));
}

/* the types of the key columns, looked up on the distributed table */
static void
key_types(Oid relid, ArrayType *columns, Oid *types, int *nkeys)
{
	Datum	   *names;
	int			i;

	deconstruct_array(columns, TEXTOID, -1, false, TYPALIGN_INT, &names, NULL, nkeys);
	if (*nkeys < 1 || *nkeys > MR_MAX_KEY_COLUMNS)
		elog(ERROR, "a shard's migration needs 1 to %d key columns", MR_MAX_KEY_COLUMNS);
	for (i = 0; i < *nkeys; i++)
	{
		char	   *name = TextDatumGetCString(names[i]);
		AttrNumber	att = get_attnum(relid, name);

		if (att == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation \"%s\" does not exist",
							name, get_rel_name(relid))));
		types[i] = get_atttype(relid, att);
	}
}

/* define the node's migration with mig_define, as the caller */
static int64
define_local(FunctionCallInfo fcinfo, const char *name, Oid shard_relid,
			 const char *action)
{
	Oid			types[10] = {TEXTOID, REGCLASSOID, TEXTOID, INT4OID, TEXTARRAYOID,
	INTERVALOID, INTERVALOID, INTERVALOID, INT4OID, INTERVALOID};
	Datum		args[10];
	char		nulls[10];
	int			from[5] = {P_BATCH_DELAY, P_LOCK_TIMEOUT, P_STATEMENT_TIMEOUT,
	P_MAX_RETRIES, P_TARGET_BATCH_TIME};
	bool		isnull;
	int			i;

	memset(nulls, ' ', sizeof(nulls));
	args[0] = CStringGetTextDatum(name);
	args[1] = ObjectIdGetDatum(shard_relid);
	args[2] = CStringGetTextDatum(action);
	args[3] = PG_GETARG_DATUM(P_BATCH_SIZE);
	args[4] = PG_GETARG_DATUM(P_KEY_COLUMNS);
	for (i = 0; i < 5; i++)
	{
		args[5 + i] = PG_ARGISNULL(from[i]) ? (Datum) 0 : PG_GETARG_DATUM(from[i]);
		nulls[5 + i] = PG_ARGISNULL(from[i]) ? 'n' : ' ';
	}
	if (SPI_execute_with_args(psprintf("SELECT %s($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
									   mr_catalog_table("mig_define")),
							  10, types, args, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not define the migration of a shard");
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1, &isnull));
}

/*
 * Mark the new migration as the coordinator's and start it after the
 * cursor given; runs of this migration that an earlier run of the
 * coordinator's left here are cancelled (nothing would drive them).
 */
static void
start_local(FunctionCallInfo fcinfo, int64 id, const char *name)
{
	Oid			types[6] = {INT8OID, INT8OID, INT8OID, INT8OID, TEXTARRAYOID, TEXTOID};
	Datum		args[6];
	char		nulls[6] = "      ";

	args[0] = Int64GetDatum(id);
	args[1] = PG_GETARG_DATUM(P_COORDINATOR_ID);
	args[2] = PG_GETARG_DATUM(P_SHARD_ID);
	args[3] = PG_GETARG_DATUM(P_PLACEMENT_ID);
	args[4] = PG_ARGISNULL(P_CURSOR) ? (Datum) 0 : PG_GETARG_DATUM(P_CURSOR);
	nulls[4] = PG_ARGISNULL(P_CURSOR) ? 'n' : ' ';
	args[5] = CStringGetTextDatum(psprintf("citus " INT64_FORMAT "/%d %%",
										   PG_GETARG_INT64(P_COORDINATOR_ID),
										   PG_GETARG_INT32(P_RUN)));
	if (SPI_execute_with_args(psprintf("UPDATE %s SET coordinator_id = $2, shard_id = $3, "
									   "placement_id = $4, cursor = $5, status = 'running', "
									   "started_at = now() "
									   "WHERE id = $1 AND status = 'pending'",
									   mr_catalog_table("migrations")),
							  6, types, args, nulls, false, 0) != SPI_OK_UPDATE ||
		SPI_execute_with_args(psprintf("UPDATE %s SET status = 'cancelled', worker_pid = NULL "
									   "WHERE coordinator_id = $2 AND name NOT LIKE $6 "
									   "AND status NOT IN ('completed', 'cancelled')",
									   mr_catalog_table("migrations")),
							  6, types, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not start the migration of a shard");
}

/*
 * mig_shard_prepare(coordinator_id, run, shard_id, placement_id, relation,
 * action, key_columns, batch_size, search_path, cursor, lock_timeout,
 * statement_timeout, max_retries, target_batch_time, batch_delay)
 */
Datum
mig_shard_prepare(PG_FUNCTION_ARGS)
{
	char	   *name;
	Migration  *existing;
	Oid			relid;
	Oid			shard_relid;
	Oid			types[2 * MR_MAX_KEY_COLUMNS];
	int			nkeys;
	char	   *action;
	int64		id;
	int			nestlevel;
	CatalogAccess access;

	static const char *const required[] = {"coordinator_id", "run", "shard_id",
		"placement_id", "relation", "action", "key_columns", "batch_size",
	"search_path"};

	for (int i = 0; i < lengthof(required); i++)
		mr_require_arg(fcinfo, i, required[i]);
	if (GetConfigOption("citus.enable_manual_changes_to_shards", true, false) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mig_shard_prepare needs Citus"),
				 errhint("A Citus coordinator's per-shard run calls it on the nodes that hold the shards.")));
	name = local_name(fcinfo);
	SPI_connect();
	existing = mr_migration_by_name(name, false);
	if (existing != NULL)
	{
		/* the name is the coordinator's: a row of it by anyone else is not ours */
		if (existing->owner != GetUserId() ||
			existing->coordinator_id != PG_GETARG_INT64(P_COORDINATOR_ID) ||
			existing->shard_id != PG_GETARG_INT64(P_SHARD_ID))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("migration \"%s\" already exists and does not run this shard for this role",
							name),
					 errhint("Drop it on this node with mig_drop, then resume the migration on the coordinator.")));
		SPI_finish();
		PG_RETURN_INT64(existing->id);
	}

	nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", text_to_cstring(PG_GETARG_TEXT_PP(P_SEARCH_PATH)),
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	set_if_defined("citus.override_table_visibility", "off");
	set_if_defined("citus.enable_manual_changes_to_shards", "on");
	relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(text_to_cstring(PG_GETARG_TEXT_PP(P_RELATION)))),
							 AccessShareLock, false);
	key_types(relid, PG_GETARG_ARRAYTYPE_P(P_KEY_COLUMNS), types, &nkeys);
	action = mr_shard_action(text_to_cstring(PG_GETARG_TEXT_PP(P_ACTION)), relid,
							 PG_GETARG_INT64(P_SHARD_ID), types, nkeys, &shard_relid);
	id = define_local(fcinfo, name, shard_relid, action);
	AtEOXact_GUC(true, nestlevel);

	mr_catalog_enter(&access);
	start_local(fcinfo, id, name);
	mr_catalog_leave(&access);
	SPI_finish();
	PG_RETURN_INT64(id);
}

/* ----------------------------------------------------------------------------
 * CALL mig_shard_batch(local_id, budget_ms)
 * ----------------------------------------------------------------------------
 */

/* the batches run for this long, and at least one */
static instr_time call_started;
static int	call_budget_ms;
static int	call_steps;

static void
shard_commit_and_begin(void)
{
	call_steps++;
	mr_spi_commit();
}

/* the setup and one batch are two steps */
static bool
shard_should_stop(void)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, call_started);
	return call_steps >= 2 && INSTR_TIME_GET_MILLISEC(now) >= call_budget_ms;
}

static const RunnerHooks shard_hooks = {
	shard_commit_and_begin,
	shard_should_stop,
	true
};

/* the row CALL returns: see the procedure's OUT arguments */
enum
{
	R_STATUS, R_PROCESSED, R_BATCHES, R_CURSOR, R_BOUNDS_MS, R_ACTION_MS,
	R_COMMIT_MS, R_ERROR, R_SQLSTATE, R_THROTTLED, R_NCOLUMNS
};

static Datum
result_row(FunctionCallInfo fcinfo, MemoryContext cxt, const char *status,
		   int64 id, const char *error, int sqlerrcode, const char *throttled)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Datum		values[R_NCOLUMNS];
	bool		nulls[R_NCOLUMNS];
	TupleDesc	desc;
	Migration  *m = mr_migration_by_id(id, false);

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "mig_shard_batch must return a row");
	desc = BlessTupleDesc(desc);
	memset(nulls, true, sizeof(nulls));
	values[R_STATUS] = CStringGetTextDatum(status);
	nulls[R_STATUS] = false;
	if (m != NULL)
	{
		values[R_PROCESSED] = Int64GetDatum(m->processed);
		values[R_BATCHES] = Int64GetDatum(m->batches);
		nulls[R_PROCESSED] = nulls[R_BATCHES] = false;
		if (m->cursor != NULL)
		{
			values[R_CURSOR] = mr_cstrings_to_text_array(m->cursor, m->nkeys);
			nulls[R_CURSOR] = false;
		}
	}
	if (error != NULL)
	{
		values[R_ERROR] = CStringGetTextDatum(error);
		values[R_SQLSTATE] = CStringGetTextDatum(unpack_sql_state(sqlerrcode));
		nulls[R_ERROR] = nulls[R_SQLSTATE] = false;
	}
	mr_shard_read_timings(id, values + R_BOUNDS_MS, nulls + R_BOUNDS_MS);
	if (throttled != NULL)
	{
		values[R_THROTTLED] = CStringGetTextDatum(throttled);
		nulls[R_THROTTLED] = false;
	}
	MemoryContextSwitchTo(old);
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

/*
 * Where the node's migration stands before any batch: NULL when batches
 * may run (a paused or failed one is set running again: the coordinator
 * decides), else what to answer.
 */
static const char *
status_before_run(Migration *m)
{
	if (!mr_shard_is_here(m->shard_id))
	{
		if (strcmp(m->status, MR_STATUS_CANCELLED) != 0)
			mr_set_status(m, MR_STATUS_CANCELLED, "worker_pid = NULL");
		return "moved";
	}
	if (strcmp(m->status, MR_STATUS_COMPLETED) == 0)
		return "completed";
	if (strcmp(m->status, MR_STATUS_CANCELLED) == 0)
		return "stopped";
	if (mr_runner_is_active(m->id) || !mr_try_lock_runner(m->id, 0))
		return "busy";
	if (strcmp(m->status, MR_STATUS_RUNNING) != 0)
		mr_set_status(m, MR_STATUS_RUNNING, MR_CLEAR_ERROR);
	return NULL;
}

/* what a run's outcome means to the coordinator */
static const char *
status_after_run(RunOutcome outcome, Migration *m)
{
	switch (outcome)
	{
		case RUN_COMPLETED:
			return "completed";
		case RUN_FAILED:
			return "failed";
		case RUN_STOPPED:
			if (strcmp(m->status, MR_STATUS_CANCELLED) != 0)
				return "running";
			return mr_shard_is_here(m->shard_id) ?
				"stopped" : "moved";
		default:
			return "running";
	}
}

Datum
mig_shard_batch(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = CurrentMemoryContext;
	int64		id;
	Migration  *m;
	const char *status;
	RunOutcome	outcome = RUN_INTERRUPTED;
	int			sqlerrcode = 0;
	ErrorData  *edata = NULL;

	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		castNode(CallContext, fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("mig_shard_batch cannot run inside a transaction block")));
	mr_require_arg(fcinfo, 0, "local_id");
	mr_require_arg(fcinfo, 1, "budget_ms");
	id = PG_GETARG_INT64(0);
	call_budget_ms = PG_GETARG_INT32(1);

	SPI_connect_ext(SPI_OPT_NONATOMIC);
	mr_spi_commit();
	mr_pin_transaction();
	m = mr_migration_by_id(id, false);
	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration " INT64_FORMAT " does not exist", id)));
	if (m->shard_id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\" does not run a shard of a Citus table", m->name)));
	mr_check_ownership(m);
	status = status_before_run(m);
	if (status != NULL)
	{
		Datum		row;

		mr_spi_commit();
		row = result_row(fcinfo, cxt, status, id, NULL, 0, NULL);
		SPI_finish();
		PG_RETURN_DATUM(row);
	}

	INSTR_TIME_SET_CURRENT(call_started);
	call_steps = 0;
	/* a wait of an earlier call in this session is not this call's */
	(void) mr_throttle_take_problem();
	PG_TRY();
	{
		outcome = mr_run_migration(id, 0, &shard_hooks, &sqlerrcode);
	}
	PG_CATCH();
	{
		/* a failed commit, say: recorded as the worker records it */
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		(void) mr_end_run_after_error(id, 0, edata, false);
		outcome = RUN_FAILED;
		sqlerrcode = edata->sqlerrcode;
		StartTransactionCommand();
		SPI_connect_ext(SPI_OPT_NONATOMIC);
	}
	PG_END_TRY();
	mr_unlock_runner(id, 0);

	m = mr_migration_by_id(id, false);
	status = status_after_run(outcome, m);
	{
		const char *throttled = strcmp(status, "running") == 0 ?
			mr_throttle_take_problem() : NULL;
		Datum		row = result_row(fcinfo, cxt, status, id,
									 strcmp(status, "failed") == 0 ?
									 (m->error ? m->error : edata ? edata->message : "unknown error") : NULL,
									 sqlerrcode, throttled);

		mr_spi_commit();
		SPI_finish();
		PG_RETURN_DATUM(row);
	}
}
