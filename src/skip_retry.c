/*-------------------------------------------------------------------------
 *
 * skip_retry.c
 *	  mig_retry_skipped(name): run a migration's action again for each key
 *	  it skipped (on_error 'skip'), once the data or whatever made the
 *	  action fail has been fixed.
 *
 * Each key is run as a batch of that one key (first key = last key) runs
 * it, with the engine's own code: as the migration's owner in a
 * security-restricted operation, under its pinned search_path, its
 * lock_timeout and statement_timeout, with every constraint immediate, and
 * in a subtransaction of its own (a guarded step, retry.c).  A key whose
 * action now succeeds is removed from migration_skipped, and counted off
 * migrations.skipped (its rows added to processed), in the caller's
 * transaction, with its data change: a key is migrated once, by the run or
 * by a retry.  A key that fails again stays, with its new error.
 *
 * The skipped keys are locked (FOR UPDATE) first, so that two retries of
 * the same migration at once never run the action twice for a key: the
 * second one waits and then sees only the keys the first one left.
 *
 * Any status is allowed, running too: a skipped key is behind the cursor
 * of the run (or of the slice) that skipped it, and no batch goes back to
 * it.  Only the final UPDATE of the migration's row waits for a batch
 * under way, and makes the next batch wait until the caller commits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "api.h"
#include "compat.h"
#include "migration_runner.h"
#include "run_internal.h"

PG_FUNCTION_INFO_V1(mig_retry_skipped);

/* one skipped key to retry: the guarded step's argument */
typedef struct RetryKey
{
	Datum		key[MR_MAX_KEY_COLUMNS];
	uint64		rows;
} RetryKey;

/* run the action for one key, as a batch of that key would */
static void
retry_step(MigrationRun *run, void *arg)
{
	RetryKey   *rk = (RetryKey *) arg;
	OwnerContext owner;
	int			nestlevel = NewGUCNestLevel();

	mr_set_batch_gucs(run);
	mr_enter_owner(run, &owner);
	rk->rows = mr_run_action(run, rk->key, rk->key);
	mr_leave_owner(run, &owner);
	/* the batch's settings end with the key, not with the caller's transaction */
	AtEOXact_GUC(false, nestlevel);
}

/* run a statement on migration_skipped as the catalog's owner: $1 the id */
static void
skipped_exec(MigrationRun *run, const char *sql, int nargs, Oid *types,
			 Datum *args, int expected)
{
	CatalogAccess access;

	mr_catalog_enter(&access);
	if (SPI_execute_with_args(sql, nargs, types, args, NULL, false, 0) != expected)
		elog(ERROR, "could not access the skipped keys of migration \"%s\"",
			 run->m->name);
	mr_catalog_leave(&access);
}

/* the skipped keys of the migration, locked, as text[] text; returns how many */
static int
lock_skipped_keys(MigrationRun *run, char ***keys)
{
	Datum		id = Int64GetDatum(run->m->id);
	Oid			type = INT8OID;
	int			n;
	int			i;

	skipped_exec(run, psprintf("SELECT key FROM %s WHERE migration_id = $1 "
							   "ORDER BY skipped_at, key FOR UPDATE",
							   mr_catalog_table("migration_skipped")),
				 1, &type, &id, SPI_OK_SELECT);
	n = (int) SPI_processed;
	*keys = palloc(sizeof(char *) * (n + 1));
	for (i = 0; i < n; i++)
		(*keys)[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
	SPI_freetuptable(SPI_tuptable);
	return n;
}

/* a key that failed again keeps its row, with the error of this try */
static void
keep_failed_key(MigrationRun *run, const char *key, ErrorData *e)
{
	Datum		args[6];
	char		nulls[6] = "      ";
	CatalogAccess access;

	args[0] = Int64GetDatum(run->m->id);
	args[1] = CStringGetTextDatum(key);
	args[2] = CStringGetTextDatum(unpack_sql_state(e->sqlerrcode));
	args[3] = CStringGetTextDatum(e->message);
	args[4] = e->detail ? CStringGetTextDatum(e->detail) : (Datum) 0;
	args[5] = e->context ? CStringGetTextDatum(e->context) : (Datum) 0;
	nulls[4] = e->detail ? ' ' : 'n';
	nulls[5] = e->context ? ' ' : 'n';
	mr_catalog_enter(&access);
	if (SPI_execute_with_args(psprintf("UPDATE %s SET sqlstate = $3, error = $4, "
									   "error_detail = $5, error_context = $6 "
									   "WHERE migration_id = $1 AND key = $2",
									   mr_catalog_table("migration_skipped")),
							  6, (Oid[]) {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID},
							  args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update a skipped key of migration \"%s\"", run->m->name);
	mr_catalog_leave(&access);
}

/*
 * Try one skipped key (its text[] text) again; true if its action
 * succeeded, and then *rows is the rows it changed.
 */
static bool
retry_key(MigrationRun *run, const char *key_text, uint64 *rows)
{
	RetryKey	rk;
	ErrorData  *edata;
	char	  **text;
	int			n;

	MemoryContextReset(run->batchcxt);
	text = mr_text_array_to_cstrings(OidInputFunctionCall(F_ARRAY_IN, (char *) key_text,
														  TEXTOID, -1), &n);
	if (n != run->m->nkeys)
		elog(ERROR, "skipped key %s of migration \"%s\" does not have %d columns",
			 key_text, run->m->name, run->m->nkeys);
	mr_key_from_text_in(run, text, rk.key, CurrentMemoryContext);
	rk.rows = 0;
	edata = mr_run_guarded(run, retry_step, &rk);
	if (edata == NULL)
	{
		skipped_exec(run, psprintf("DELETE FROM %s WHERE migration_id = $1 AND key = $2",
								   mr_catalog_table("migration_skipped")),
					 2, (Oid[]) {INT8OID, TEXTOID},
					 (Datum[]) {Int64GetDatum(run->m->id), CStringGetTextDatum(key_text)},
					 SPI_OK_DELETE);
		*rows = rk.rows;
		return true;
	}
	/* a cancel request ends the whole call; our statement_timeout, this key */
	if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !run->timed_out)
		ReThrowError(edata);
	keep_failed_key(run, key_text, edata);
	FreeErrorData(edata);
	return false;
}

/* set the run up as a run's setup does (run.c), then retry every skipped key */
static int64
retry_skipped_keys(MigrationRun *run, Migration *m)
{
	char	  **keys;
	int			nkeys;
	int			i;
	int64		succeeded = 0;
	uint64		rows = 0;
	MemoryContext old;

	mr_init_run(run, m);
	SPI_connect();
	old = MemoryContextSwitchTo(run->runcxt);
	mr_setup_keys(run);
	mr_prepare_action(run);
	MemoryContextSwitchTo(old);

	nkeys = lock_skipped_keys(run, &keys);
	for (i = 0; i < nkeys; i++)
	{
		uint64		key_rows;

		CHECK_FOR_INTERRUPTS();
		if (retry_key(run, keys[i], &key_rows))
		{
			succeeded++;
			rows += key_rows;
		}
	}
	if (succeeded > 0)
		skipped_exec(run, psprintf("UPDATE %s SET skipped = skipped - $2, "
								   "processed = processed + $3 WHERE id = $1",
								   run->catalog),
					 3, (Oid[]) {INT8OID, INT8OID, INT8OID},
					 (Datum[]) {Int64GetDatum(m->id), Int64GetDatum(succeeded),
						 Int64GetDatum((int64) rows)},
					 SPI_OK_UPDATE);
	SPI_finish();
	return succeeded;
}

/*
 * mig_retry_skipped(name text) returns bigint: how many skipped keys now
 * succeeded.  Owner, member of the owning role or superuser.
 */
Datum
mig_retry_skipped(PG_FUNCTION_ARGS)
{
	char	   *name = mr_name_arg(fcinfo, 0);
	Migration  *m = mr_existing_migration(name, false);
	MigrationRun *run;
	int64		succeeded = 0;

	mr_require_managed(m, "mig_retry_skipped");
	mr_check_ownership(m);
	run = mr_new_run(0);
	PG_TRY();
	{
		succeeded = retry_skipped_keys(run, m);
	}
	PG_FINALLY();
	{
		mr_end_run(run);
	}
	PG_END_TRY();
	PG_RETURN_INT64(succeeded);
}
