/*-------------------------------------------------------------------------
 *
 * run.c
 *	  A run of a managed migration: from the catalog's cursor until it
 *	  completes, is stopped, fails, or its runner is told to stop.  Both
 *	  CALL mig_run and the background worker drive it; they differ only in
 *	  how they commit (RunnerHooks).
 *
 * A run is a loop of guarded steps, one transaction each: first the setup
 * (lock and check the relation, prepare the plans, read the cursor, fix
 * the high-water mark), then batch after batch (batch.c).  Setup and
 * batches share one retry path (retry.c), and every wait (the batch delay,
 * a retry's backoff, throttling) happens between transactions: a runner
 * never sleeps holding a row lock or a snapshot.
 *
 * The key's high-water mark is fixed when the run first starts, so rows
 * appended at the end of the table while the migration runs cannot keep it
 * running forever.
 *
 * A cancel request (pg_cancel_backend, or ^C on CALL mig_run) pauses the
 * migration, whether it arrives during a batch or during a wait, and then
 * raises the usual "canceling statement" error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "chain.h"
#include "compat.h"
#include "migration_runner.h"
#include "run_internal.h"

double
mr_elapsed_ms(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_MILLISEC(now);
}

/* SET LOCAL name = value, whoever the current user is */
void
mr_set_local_guc(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

/* SET name = value until the caller's AtEOXact_GUC of its nest level */
void
mr_set_guc_saved(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Every transaction of a run is READ COMMITTED and read-write, whatever
 * default_transaction_isolation or default_transaction_read_only say for
 * the owner or the database: a batch must see what committed before it
 * took its locks, and must be able to record its progress.  Called right
 * after a transaction starts, before it takes a snapshot.
 */
void
mr_pin_transaction(void)
{
	XactIsoLevel = XACT_READ_COMMITTED;
	if (!RecoveryInProgress())
		XactReadOnly = false;
}

void
mr_next_transaction(const RunnerHooks *hooks)
{
	hooks->commit_and_begin();
	mr_pin_transaction();
}

/*
 * Lock the migration's relation for the rest of the transaction, waiting at
 * most lock_timeout.  Done before the snapshot that reads the relation is
 * taken: a rewrite that commits while we wait is then visible.
 */
void
mr_lock_relation(MigrationRun *run)
{
	LockRelationOid(run->m->relid, AccessShareLock);
}

/*
 * Fail if the relation or its key changed under the migration: running the
 * action against a renamed-and-replaced table, or comparing keys of a
 * changed type, would be wrong.  Called with the relation locked.
 */
void
mr_check_relation_unchanged(MigrationRun *run)
{
	Migration  *m = run->m;
	char	   *relname = get_rel_name(m->relid);
	char	   *now_named;
	int			i;

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation %s of migration \"%s\" was dropped",
						run->relname, m->name)));
	now_named = quote_qualified_identifier(get_namespace_name(get_rel_namespace(m->relid)),
										   relname);
	if (strcmp(now_named, run->relname) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation %s of migration \"%s\" was renamed or moved to %s",
						run->relname, m->name, now_named),
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
		case RUN_SLICES_LEFT:
			return "slices left to other runners";
		case RUN_WAITING:
			return "waiting";
	}
	return "unknown";
}

/*
 * The high-water mark: read it once, with a snapshot taken after the
 * relation was locked, as the owner, through the index, and record it
 * (unless !record: a dry run); or read it back from the catalog.  Returns
 * false when the relation has no key at all.
 */
bool
mr_fix_high_water(MigrationRun *run, bool record)
{
	Migration  *m = run->m;
	CatalogAccess access;

	if (m->high_water != NULL)
	{
		mr_key_from_text(run, m->high_water, run->high_water);
		return true;
	}
	if (mr_owner_select(run, mr_high_water_sql(run), 0, NULL, true) == 0)
		return false;
	mr_key_from_tuple(run, SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
					  run->high_water, run->runcxt);
	if (!record)
		return true;
	mr_catalog_enter(&access);
	if (SPI_execute_with_args(psprintf("UPDATE %s SET high_water = $2 WHERE id = $1",
									   run->catalog),
							  2, (Oid[]) {INT8OID, TEXTARRAYOID},
							  (Datum[]) {Int64GetDatum(m->id),
								  mr_text_key_array(run, mr_key_to_text(run, run->high_water))},
							  NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record high-water mark");
	mr_catalog_leave(&access);
	return true;
}

/*
 * Lock and check the relation, its owner and its key, and read the cursor:
 * what a run and a dry run need before they touch the relation.  Called in
 * the run's memory context.
 */
void
mr_setup_keys(MigrationRun *run)
{
	Migration  *m = run->m;

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(m->owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("owner role with OID %u no longer exists", m->owner)));
	mr_lock_relation(run);
	mr_check_relation_unchanged(run);
	/* a migration defined by 1.0 may have a key 1.1 refuses */
	mr_check_key_types(run->m);
	mr_check_key_index(run->m);
	mr_setup_key_io(run);
	if (m->cursor)
	{
		Datum		cursor[MR_MAX_KEY_COLUMNS];

		mr_key_from_text(run, m->cursor, cursor);
		mr_move_cursor(run, cursor);
	}
}

/*
 * What can fail because the relation or the action changed since define
 * time, as a guarded step: lock and check the relation, prepare the plans,
 * read the cursor, fix the high-water mark on the first run, and record
 * this process as the runner.  *result is BATCH_LAST when the relation is
 * empty, else BATCH_DONE.
 */
static void
setup_step(MigrationRun *run, void *result)
{
	Migration  *m = run->m;
	MemoryContext old = MemoryContextSwitchTo(run->runcxt);
	bool		has_keys;

	/* locking and preparing wait for the relation: not forever */
	mr_set_local_guc("lock_timeout", psprintf("%d", run->lock_timeout_ms));
	mr_setup_keys(run);
	mr_prepare_run_plans(run);
	has_keys = mr_fix_high_water(run, true);
	memcpy(run->upper, run->high_water, sizeof(run->upper));
	MemoryContextSwitchTo(old);

	/* a runner of one slice, or of a migration that runs in slices */
	if (has_keys && (run->home_slice > 0 || mr_is_sliced(run)))
	{
		if (run->home_slice > 0 && mr_switch_to_slice(run, run->home_slice))
		{
			if (!run->runs_every_slice)
				mr_share_out(run);
			*(BatchResult *) result = BATCH_DONE;
		}
		else
			*(BatchResult *) result = BATCH_NEED_WORK;
		return;
	}
	mr_catalog_exec(psprintf("UPDATE %s SET worker_pid = %d WHERE id = " INT64_FORMAT,
							 run->catalog, MyProcPid, m->id),
					0, NULL, NULL, SPI_OK_UPDATE);
	*(BatchResult *) result = has_keys ? BATCH_DONE : BATCH_LAST;
}

/* read the migration and its effective options into the run */
static bool
read_migration(MigrationRun *run, int64 migration_id)
{
	MemoryContext old = MemoryContextSwitchTo(run->runcxt);
	Migration  *m = mr_migration_by_id(migration_id, true);

	if (m == NULL || !MigrationIsManaged(m))
		elog(ERROR, "migration " INT64_FORMAT " is not a managed migration",
			 migration_id);
	mr_init_run(run, m);
	MemoryContextSwitchTo(old);
	return strcmp(m->status, MR_STATUS_RUNNING) == 0;
}

/*
 * Run a step other than a batch (setup, looking for work) as a guarded
 * step: an error is classified, and recorded as a retry or a failure, as a
 * batch's is.
 */
static BatchResult
run_step(MigrationRun *run, GuardedStep step)
{
	BatchResult result = BATCH_FAILED;
	ErrorData  *edata;

	SPI_connect();
	edata = mr_run_guarded(run, step, &result);
	SPI_finish();
	if (edata != NULL)
	{
		result = mr_classify_error(run, edata);
		if (run->last_error)
			FreeErrorData(run->last_error);
		run->last_error = edata;
	}
	else
		run->attempts = 0;
	return result;
}

/*
 * Look for more work (slices.c), with the relation locked as a batch locks
 * it.  Only that lock waits at most lock_timeout: a steal waits for the
 * batch under way in the slice it splits, however long that batch takes.
 */
static void
take_work_step(MigrationRun *run, void *result)
{
	mr_set_local_guc("lock_timeout", psprintf("%d", run->lock_timeout_ms));
	mr_lock_relation(run);
	mr_check_relation_unchanged(run);
	mr_set_local_guc("lock_timeout", "0");
	*(BatchResult *) result = mr_take_work(run);
}

static BatchResult
run_take_work(MigrationRun *run)
{
	BatchResult result;

	PushActiveSnapshot(GetTransactionSnapshot());
	result = run_step(run, take_work_step);
	PopActiveSnapshot();
	return result;
}

/*
 * Set the run up, in the caller's transaction: BATCH_DONE when ready for
 * its first batch, BATCH_LAST when the relation is empty (then completed),
 * or what the error came to (BATCH_RETRY, BATCH_FAILED, BATCH_NOT_RUNNING).
 */
static BatchResult
run_setup(MigrationRun *run, int64 migration_id)
{
	BatchResult result = BATCH_FAILED;

	PushActiveSnapshot(GetTransactionSnapshot());
	if (!read_migration(run, migration_id))
		result = BATCH_NOT_RUNNING;
	else if (!mr_chain_ready_to_run(run->m))
		result = BATCH_WAITING;
	else
		result = run_step(run, setup_step);
	if (result == BATCH_LAST && run->slice == 0 && mr_begin_verifying(run))
		result = BATCH_VERIFY;
	else if (result == BATCH_LAST && run->slice == 0)
		mr_set_status(run->m, MR_STATUS_COMPLETED,
					  "completed_at = now(), worker_pid = NULL");
	PopActiveSnapshot();
	return result;
}

/*
 * The runner got a cancel request: pause the migration (unless someone
 * stopped it meanwhile), commit that, and raise the cancel error.  The
 * pending request is held back while the pause is written, so that it
 * cannot interrupt its own recording.
 */
static void
pause_on_cancel(MigrationRun *run, const RunnerHooks *hooks)
{
	QueryCancelPending = false;
	mr_pause_if_running(run->m->id);
	mr_next_transaction(hooks);
	if (run->last_error && run->last_error->sqlerrcode == ERRCODE_QUERY_CANCELED)
		ReThrowError(run->last_error);
	ereport(ERROR,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("canceling statement due to user request")));
}

/*
 * The loop of a run: setup until ready, then batches, each in a
 * transaction of its own, with the waits between them.
 */
static RunOutcome
run_loop(MigrationRun *run, int64 migration_id, const RunnerHooks *hooks)
{
	bool		ready = false;
	bool		need_work = false;
	bool		verifying = false;
	bool		cancelled;

	for (;;)
	{
		BatchResult result;
		instr_time	commit_start;
		long		wait_ms;

		CHECK_FOR_INTERRUPTS();
		if (hooks->should_stop())
			break;
		MemoryContextReset(run->batchcxt);

		result = !ready ? run_setup(run, migration_id) :
			verifying ? mr_run_final_verify(run) :
			need_work ? run_take_work(run) : mr_run_one_batch(run);
		INSTR_TIME_SET_CURRENT(commit_start);
		mr_next_transaction(hooks);
		run->carry_commit_ms += mr_elapsed_ms(commit_start);

		if (result == BATCH_LAST)
			return RUN_COMPLETED;
		if (result == BATCH_FAILED)
			return RUN_FAILED;
		/* no key left: the final verify query runs next (verify.c) */
		if (result == BATCH_VERIFY)
		{
			ready = verifying = true;
			continue;
		}
		if (result == BATCH_WAITING)
			return RUN_WAITING;
		if (result == BATCH_NO_WORK)
		{
			mr_forget_runner_pid(run->m->id);
			mr_next_transaction(hooks);
			return RUN_SLICES_LEFT;
		}
		if (result == BATCH_NEED_WORK || result == BATCH_DONE)
		{
			need_work = result == BATCH_NEED_WORK;
			if (need_work)
			{
				ready = true;
				continue;
			}
		}
		if (result == BATCH_NOT_RUNNING)
		{
			if (run->last_error &&
				run->last_error->sqlerrcode == ERRCODE_QUERY_CANCELED)
				pause_on_cancel(run, hooks);
			mr_forget_runner_pid(run->m->id);
			mr_next_transaction(hooks);
			return RUN_STOPPED;
		}
		wait_ms = result == BATCH_RETRY ? mr_retry_backoff_ms(run->attempts) :
			ready ? run->batch_delay_ms : 0;
		if (result == BATCH_DONE)
			ready = true;
		if (!mr_runner_sleep(wait_ms))
			pause_on_cancel(run, hooks);
		if (!ready)
			continue;
		result = mr_throttle_wait(run, hooks, &cancelled);
		if (result == BATCH_FAILED)
			return RUN_FAILED;
		if (result == BATCH_NOT_RUNNING)
		{
			if (cancelled)
				pause_on_cancel(run, hooks);
			mr_forget_runner_pid(run->m->id);
			mr_next_transaction(hooks);
			return RUN_STOPPED;
		}
	}
	mr_forget_runner_pid(run->m->id);
	mr_next_transaction(hooks);
	return RUN_INTERRUPTED;
}

/*
 * Run migration_id until it completes, is stopped, fails, or the runner is
 * told to stop.  The caller holds the runner lock and has a transaction
 * open, pinned with mr_pin_transaction, in which it found the migration
 * running.  Returns with a
 * transaction open; on RUN_FAILED, *sqlerrcode is the error's SQLSTATE.
 */
RunOutcome
mr_run_migration(int64 migration_id, int slice, const RunnerHooks *hooks,
				 int *sqlerrcode)
{
	MigrationRun *run;
	RunOutcome	outcome = RUN_COMPLETED;

	/* a per-shard run on Citus is driven from here, its batches on the nodes */
	if (slice == 0 && mr_runs_per_shard(migration_id))
		return mr_citus_run(migration_id, hooks, sqlerrcode);

	run = mr_new_run(slice);
	run->runs_every_slice = hooks->runs_every_slice;
	*sqlerrcode = 0;
	PG_TRY();
	{
		outcome = run_loop(run, migration_id, hooks);
		if (outcome == RUN_FAILED && run->last_error)
			*sqlerrcode = run->last_error->sqlerrcode;
	}
	PG_FINALLY();
	{
		/*
		 * The caller releases the lock of the slice it started the run for;
		 * one the run went on to (CALL mig_run runs the slices in turn) is
		 * released here, or the session would keep it after the CALL.
		 */
		if (run->m != NULL && run->slice > 0 && run->slice != run->home_slice &&
			mr_slice_runner_is_mine(run->m->id, run->slice))
			mr_unlock_runner(run->m->id, run->slice);
		mr_end_run(run);
	}
	PG_END_TRY();
	return outcome;
}
