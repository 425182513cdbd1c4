/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Reading and writing the migrations catalog.
 *
 * Users may read the catalog but never write it: a direct write could change
 * another role's action and so run SQL as that role.  Every write therefore
 * goes through these functions, which switch to the extension's owner for
 * the duration of the access and pin search_path, so that nothing the caller
 * put on its path can capture an operator or function name.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/xact.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "compat.h"
#include "migration_runner.h"

/* the columns mr_read_migration expects, in this order */
#define MIGRATION_COLUMNS \
	"id, name, status, owner::oid, processed, relation::oid, " \
	"key_columns::text[], key_types::oid[], action, search_path, " \
	"batch_size, coalesce(current_batch_size, 0), " MR_OPTION_COLUMNS ", " \
	"cursor, high_water, batches, error, relation_name, " \
	"error_detail, error_hint, error_context, action_target::oid, parallel, " \
	"verify, on_error = 'skip', max_skipped, skipped, " \
	"coalesce(continued_from, 0), run_after, verifying_since IS NOT NULL, " \
	"per_shard, citus_run, coalesce(coordinator_id, 0), coalesce(shard_id, 0), " \
	"coalesce(placement_id, 0), distribution"

/*
 * The extension's OID, schema and owner, looked up in pg_extension once per
 * transaction: a batch touches the catalog several times, and DROP or
 * re-CREATE of the extension can only become visible at a new transaction.
 */
typedef struct ExtensionInfo
{
	bool		valid;
	bool		found;
	Oid			extoid;
	Oid			schema;
	Oid			owner;
	bool		current;		/* its catalog is the one this library reads */
} ExtensionInfo;

static ExtensionInfo extension_cache;
static bool extension_cache_callback = false;

static void
forget_extension_info(XactEvent event, void *arg)
{
	extension_cache.valid = false;
}

static void
look_up_extension(void)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;

	if (!extension_cache_callback)
	{
		RegisterXactCallback(forget_extension_info, NULL);
		extension_cache_callback = true;
	}
	memset(&extension_cache, 0, sizeof(extension_cache));
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(MR_EXTENSION_NAME));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		Form_pg_extension ext = (Form_pg_extension) GETSTRUCT(tuple);
		Datum		version;
		bool		isnull;

		extension_cache.extoid = ext->oid;
		extension_cache.schema = ext->extnamespace;
		extension_cache.owner = ext->extowner;
		extension_cache.found = true;
		version = heap_getattr(tuple, Anum_pg_extension_extversion,
							   RelationGetDescr(rel), &isnull);
		extension_cache.current = !isnull &&
			strcmp(TextDatumGetCString(version), MR_EXTENSION_VERSION) == 0;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	extension_cache.valid = true;
}

static bool
mr_extension_info(Oid *extoid, Oid *schema, Oid *owner)
{
	if (!extension_cache.valid)
		look_up_extension();
	*extoid = extension_cache.extoid;
	*schema = extension_cache.schema;
	*owner = extension_cache.owner;
	return extension_cache.found;
}

Oid
mr_extension_oid(bool missing_ok)
{
	Oid			extoid,
				schema,
				owner;

	if (!mr_extension_info(&extoid, &schema, &owner) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"%s\" does not exist", MR_EXTENSION_NAME)));
	return extoid;
}

/*
 * Is the installed extension's catalog the one this library reads?  After
 * the library of a new release is installed, a database keeps the old
 * catalog until ALTER EXTENSION ... UPDATE runs in it; until then nothing
 * may read or write that catalog with the new library's statements.
 */
bool
mr_extension_is_current(void)
{
	if (!extension_cache.valid)
		look_up_extension();
	return extension_cache.found && extension_cache.current;
}

static void
require_extension(Oid *schema, Oid *owner)
{
	Oid			extoid;

	if (!mr_extension_info(&extoid, schema, owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"%s\" is not installed", MR_EXTENSION_NAME),
				 errhint("Run CREATE EXTENSION %s.", MR_EXTENSION_NAME)));
	if (!extension_cache.current)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" must be updated to version %s",
						MR_EXTENSION_NAME, MR_EXTENSION_VERSION),
				 errdetail("The library of version %s is loaded, but this database has an older version of the extension's catalog.",
						   MR_EXTENSION_VERSION),
				 errhint("Run ALTER EXTENSION %s UPDATE.", MR_EXTENSION_NAME)));
}

/*
 * The schema-qualified, quoted name of one of the extension's tables.
 */
const char *
mr_catalog_table(const char *table)
{
	Oid			schema,
				owner;

	require_extension(&schema, &owner);
	return quote_qualified_identifier(get_namespace_name(schema), table);
}

/*
 * Become the extension's owner, with a safe search_path, until
 * mr_catalog_leave.  An error in between needs no cleanup: transaction
 * abort restores both the user and the GUCs.
 */
void
mr_catalog_enter(CatalogAccess *access)
{
	Oid			schema,
				owner;

	require_extension(&schema, &owner);

	GetUserIdAndSecContext(&access->saved_userid, &access->saved_sec_context);
	SetUserIdAndSecContext(owner, access->saved_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE);
	access->guc_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
}

void
mr_catalog_leave(CatalogAccess *access)
{
	AtEOXact_GUC(true, access->guc_nestlevel);
	SetUserIdAndSecContext(access->saved_userid, access->saved_sec_context);
}

/*
 * Run one statement on the catalog as its owner; with want_id, the statement
 * is an INSERT ... RETURNING id and its id (0 if no row) is returned.
 */
static int64
catalog_statement(const char *sql, int nargs, Oid *types, Datum *args,
				  const char *nulls, int expected_rc, bool want_id)
{
	CatalogAccess access;
	int64		id = 0;
	bool		isnull;
	int			rc;

	mr_catalog_enter(&access);
	SPI_connect();
	rc = SPI_execute_with_args(sql, nargs, types, args, nulls, false, 0);
	if (rc != expected_rc)
		elog(ERROR, "could not write migration catalog: %s",
			 SPI_result_code_string(rc));
	if (want_id && SPI_processed == 1)
		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	mr_catalog_leave(&access);
	return id;
}

void
mr_catalog_exec(const char *sql, int nargs, Oid *types, Datum *args,
				int expected_rc)
{
	(void) catalog_statement(sql, nargs, types, args, NULL, expected_rc, false);
}

int64
mr_catalog_insert_returning_id(const char *sql, int nargs, Oid *types,
							   Datum *args, const char *nulls)
{
	return catalog_statement(sql, nargs, types, args, nulls,
							 SPI_OK_INSERT_RETURNING, true);
}

Datum
mr_cstrings_to_text_array(char **strings, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(strings[i]);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

char	  **
mr_text_array_to_cstrings(Datum array, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	int			count;
	char	  **result;
	int			i;

	deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, &count);
	result = palloc0(sizeof(char *) * Max(count, 1));
	for (i = 0; i < count; i++)
		result[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
	*n = count;
	return result;
}

static char *
mr_getstring(HeapTuple tuple, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

static int64
mr_getint(HeapTuple tuple, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);
	Oid			type = SPI_gettypeid(desc, col);

	if (isnull)
		return 0;
	if (type == INT8OID)
		return DatumGetInt64(d);
	if (type == OIDOID)
		return DatumGetObjectId(d);
	return DatumGetInt32(d);
}

/*
 * Build a Migration from one row of MIGRATION_COLUMNS, in memory context cxt.
 */
static Migration *
mr_read_migration(HeapTuple tuple, TupleDesc desc, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Migration  *m = palloc0(sizeof(Migration));
	bool		isnull;
	Datum		d;
	int			n;

	m->id = mr_getint(tuple, desc, 1);
	m->name = mr_getstring(tuple, desc, 2);
	m->status = mr_getstring(tuple, desc, 3);
	m->owner = (Oid) mr_getint(tuple, desc, 4);
	m->processed = mr_getint(tuple, desc, 5);
	m->relid = (Oid) mr_getint(tuple, desc, 6);

	d = SPI_getbinval(tuple, desc, 7, &isnull);
	if (!isnull)
	{
		char	  **names = mr_text_array_to_cstrings(d, &n);
		Datum	   *types;
		bool	   *tnulls;
		int			ntypes;
		int			i;

		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tuple, desc, 8, &isnull)),
						  OIDOID, sizeof(Oid), true, TYPALIGN_INT,
						  &types, &tnulls, &ntypes);
		if (n != ntypes || n > MR_MAX_KEY_COLUMNS)
			elog(ERROR, "corrupt key definition for migration " INT64_FORMAT,
				 m->id);
		m->nkeys = n;
		for (i = 0; i < n; i++)
		{
			m->key_names[i] = names[i];
			m->key_types[i] = DatumGetObjectId(types[i]);
		}
	}
	m->action = mr_getstring(tuple, desc, 9);
	m->search_path = mr_getstring(tuple, desc, 10);
	m->batch_size = (int) mr_getint(tuple, desc, 11);
	m->current_batch_size = (int) mr_getint(tuple, desc, 12);
	m->batch_delay_ms = (int) mr_getint(tuple, desc, 13);
	m->lock_timeout_ms = (int) mr_getint(tuple, desc, 14);
	m->statement_timeout_ms = (int) mr_getint(tuple, desc, 15);
	m->max_retries = (int) mr_getint(tuple, desc, 16);
	m->target_batch_ms = (int) mr_getint(tuple, desc, 17);

	d = SPI_getbinval(tuple, desc, 18, &isnull);
	m->cursor = isnull ? NULL : mr_text_array_to_cstrings(d, &n);
	d = SPI_getbinval(tuple, desc, 19, &isnull);
	m->high_water = isnull ? NULL : mr_text_array_to_cstrings(d, &n);
	m->batches = mr_getint(tuple, desc, 20);
	m->error = mr_getstring(tuple, desc, 21);
	m->relation_name = mr_getstring(tuple, desc, 22);
	m->error_detail = mr_getstring(tuple, desc, 23);
	m->error_hint = mr_getstring(tuple, desc, 24);
	m->error_context = mr_getstring(tuple, desc, 25);
	m->action_target = (Oid) mr_getint(tuple, desc, 26);
	m->parallel = (int) mr_getint(tuple, desc, 27);
	m->verify = mr_getstring(tuple, desc, 28);
	m->skip_errors = DatumGetBool(SPI_getbinval(tuple, desc, 29, &isnull));
	m->max_skipped = mr_getint(tuple, desc, 30);
	m->skipped = mr_getint(tuple, desc, 31);
	m->continued_from = mr_getint(tuple, desc, 32);
	d = SPI_getbinval(tuple, desc, 33, &isnull);
	m->run_after = isnull ? NULL : mr_text_array_to_cstrings(d, &m->nrun_after);
	m->verifying = DatumGetBool(SPI_getbinval(tuple, desc, 34, &isnull));
	m->per_shard = DatumGetBool(SPI_getbinval(tuple, desc, 35, &isnull));
	m->citus_run = (int) mr_getint(tuple, desc, 36);
	m->coordinator_id = mr_getint(tuple, desc, 37);
	m->shard_id = mr_getint(tuple, desc, 38);
	m->placement_id = mr_getint(tuple, desc, 39);
	m->distribution = mr_getstring(tuple, desc, 40);

	MemoryContextSwitchTo(old);
	return m;
}

/*
 * Fetch one migration by name or id, optionally locking its row until the
 * end of the transaction (FOR NO KEY UPDATE: the lock every status change
 * and every batch takes, so they serialize on the row).
 */
static Migration *
mr_fetch_migration(const char *by, Oid argtype, Datum arg, bool for_update)
{
	MemoryContext caller = CurrentMemoryContext;
	CatalogAccess access;
	Migration  *m = NULL;
	char	   *sql;
	int			rc;

	mr_catalog_enter(&access);
	sql = psprintf("SELECT " MIGRATION_COLUMNS " FROM %s WHERE %s = $1%s",
				   mr_catalog_table("migrations"), by,
				   for_update ? " FOR NO KEY UPDATE" : "");
	SPI_connect();
	rc = SPI_execute_with_args(sql, 1, &argtype, &arg, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read migration catalog: %s",
			 SPI_result_code_string(rc));
	if (SPI_processed > 0)
		m = mr_read_migration(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
							  caller);
	SPI_finish();
	mr_catalog_leave(&access);
	return m;
}

Migration *
mr_migration_by_name(const char *name, bool for_update)
{
	return mr_fetch_migration("name", TEXTOID, CStringGetTextDatum(name),
							  for_update);
}

Migration *
mr_migration_by_id(int64 id, bool for_update)
{
	return mr_fetch_migration("id", INT8OID, Int64GetDatum(id), for_update);
}

/*
 * Only the owner, a member of the owning role, or a superuser may change a
 * migration.
 */
void
mr_check_ownership(Migration *m)
{
	if (!has_privs_of_role(GetUserId(), m->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of migration \"%s\"", m->name),
				 errdetail("The migration is owned by role \"%s\".",
						   GetUserNameFromId(m->owner, true) ?
						   GetUserNameFromId(m->owner, true) : "(dropped)")));
}

/*
 * Tell LISTENers of channel migration_runner that a migration changed state;
 * the notification is delivered at commit, like the change itself.
 */
void
mr_notify_state_change(const char *name, const char *old_status,
					   const char *new_status, int64 processed)
{
	StringInfoData payload;

	initStringInfo(&payload);
	appendStringInfoString(&payload, "{\"name\": ");
	escape_json(&payload, name);
	appendStringInfoString(&payload, ", \"old_status\": ");
	escape_json(&payload, old_status);
	appendStringInfoString(&payload, ", \"new_status\": ");
	escape_json(&payload, new_status);
	appendStringInfo(&payload, ", \"processed\": " INT64_FORMAT "}", processed);
	Async_Notify(MR_NOTIFY_CHANNEL, payload.data);
	pfree(payload.data);
}

/*
 * Set a migration's status, with extra assignments (constant SQL written by
 * the caller, never user input), and tell the world after commit.
 */
void
mr_set_status(Migration *m, const char *new_status, const char *extra_set)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2];
	char	   *sql;

	sql = psprintf("UPDATE %s SET status = $2%s%s WHERE id = $1",
				   mr_catalog_table("migrations"),
				   extra_set ? ", " : "", extra_set ? extra_set : "");
	args[0] = Int64GetDatum(m->id);
	args[1] = CStringGetTextDatum(new_status);
	mr_catalog_exec(sql, 2, argtypes, args, SPI_OK_UPDATE);

	if (strcmp(m->status, new_status) != 0)
		mr_notify_state_change(m->name, m->status, new_status, m->processed);
	/* a completion may let the migrations that run after it start */
	if (strcmp(new_status, MR_STATUS_RUNNING) == 0 ||
		strcmp(new_status, MR_STATUS_COMPLETED) == 0)
		mr_wake_launcher_at_commit();
	else
		mr_announce_change_at_commit();
	m->status = pstrdup(new_status);
}

/*
 * The SQL functions are not STRICT, so that a NULL gets an error that says
 * which argument was NULL instead of a silent NULL result.
 */
void
mr_require_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"%s\" must not be null", argname)));
}
