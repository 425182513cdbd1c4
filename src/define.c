/*-------------------------------------------------------------------------
 *
 * define.c
 *	  mig_define: validate a managed migration completely and record it.
 *
 * Everything that can be checked is checked at define time rather than hours
 * into a run: the arguments, the options and the kind of relation (here), the
 * keyset key and the caller's right to read it (key_index.c), and the action,
 * analyzed under the pinned search_path the runner will use (action.c and
 * action_checks.c).  The definition is then recorded; defining an existing
 * name again returns its id when the definition means the same, and is an
 * error otherwise.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "chain.h"
#include "define.h"
#include "migration_runner.h"

#define MAX_NAME_BYTES 200

/* argument positions of mig_define */
enum
{
	ARG_NAME,
	ARG_RELATION,
	ARG_ACTION,
	ARG_BATCH_SIZE,
	ARG_KEY_COLUMNS,
	ARG_BATCH_DELAY,
	ARG_LOCK_TIMEOUT,
	ARG_STATEMENT_TIMEOUT,
	ARG_MAX_RETRIES,
	ARG_TARGET_BATCH_TIME,
	ARG_PARALLEL,
	ARG_VERIFY,
	ARG_ON_ERROR,
	ARG_MAX_SKIPPED,
	ARG_CONTINUE_FROM,
	ARG_AFTER
};

/* where mig_define has its run options */
static const RunOptionArgs define_options = {
	.batch_size = ARG_BATCH_SIZE,
	.parallel = ARG_PARALLEL,
	.batch_delay = ARG_BATCH_DELAY,
	.lock_timeout = ARG_LOCK_TIMEOUT,
	.statement_timeout = ARG_STATEMENT_TIMEOUT,
	.max_retries = ARG_MAX_RETRIES,
	.target_batch_time = ARG_TARGET_BATCH_TIME,
	.altering = false
};

static void
check_name(const char *name)
{
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration name must not be empty")));
	if (strlen(name) > MAX_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration name is too long"),
				 errdetail("The name is %zu bytes long; the limit is %d bytes.",
						   strlen(name), MAX_NAME_BYTES)));
}

/*
 * The relation must be a table, plain or partitioned, and not temporary (a
 * worker could not see it).  Which privileges the caller needs on it
 * depends on the action: action.c checks them.  Locked first, then checked,
 * so that what is checked stays true until the definition commits.
 */
static void
check_relation(Oid relid)
{
	char		relkind;

	LockRelationOid(relid, AccessShareLock);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));

	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", get_rel_name(relid)),
				 errdetail("Only ordinary and partitioned tables can be migrated in batches.")));
	if (get_rel_persistence(relid) == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot migrate temporary table \"%s\"", get_rel_name(relid)),
				 errdetail("Batches may run in a background worker, which cannot see the temporary tables of this session.")));
}

/* an interval argument in milliseconds, -1 when NULL */
static int
interval_arg_ms(FunctionCallInfo fcinfo, int argno, const char *argname,
				int64 max_ms)
{
	Interval   *iv;
	double		ms;

	if (PG_ARGISNULL(argno))
		return -1;
	iv = PG_GETARG_INTERVAL_P(argno);
	/* in double, so that a huge interval cannot wrap around into range */
	ms = (iv->time + iv->day * (double) USECS_PER_DAY +
		  iv->month * (double) DAYS_PER_MONTH * USECS_PER_DAY) / 1000.0;
	if (ms < 0 || ms > max_ms)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between 0 and %lld milliseconds", argname,
						(long long) max_ms)));
	return (int) ms;
}

/*
 * Validate the run options that mig_define records and mig_alter changes,
 * into m: one set of rules for both, so that mig_alter can never store what
 * mig_define would refuse.  An option passed as NULL is left out: batch_size
 * and parallel are then 0, the others -1 (which mig_define records as "use
 * the GUC").  Nothing is written here; the callers write only after every
 * argument passed.
 */
void
mr_read_run_options(FunctionCallInfo fcinfo, const RunOptionArgs *args,
					Migration *m)
{
	m->batch_size = 0;
	if (!PG_ARGISNULL(args->batch_size))
	{
		m->batch_size = PG_GETARG_INT32(args->batch_size);
		if (m->batch_size < 1 || m->batch_size > MR_MAX_BATCH_SIZE)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("batch_size must be between 1 and %d", MR_MAX_BATCH_SIZE),
					 errdetail("The given batch_size is %d.", m->batch_size)));
	}
	m->parallel = 0;
	if (!PG_ARGISNULL(args->parallel))
	{
		m->parallel = PG_GETARG_INT32(args->parallel);
		if (m->parallel < 1 || m->parallel > MR_MAX_PARALLEL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("parallel must be between 1 and %d", MR_MAX_PARALLEL),
					 errdetail("The given parallel is %d.", m->parallel),
					 errhint("Use 1 to run the migration as one piece, or up to %d to let that many slices of it run at once.",
							 MR_MAX_PARALLEL)));
	}
	m->batch_delay_ms = interval_arg_ms(fcinfo, args->batch_delay,
										"batch_delay", 3600 * 1000);
	m->lock_timeout_ms = interval_arg_ms(fcinfo, args->lock_timeout,
										 "lock_timeout", INT_MAX);
	m->statement_timeout_ms = interval_arg_ms(fcinfo, args->statement_timeout,
											  "statement_timeout", INT_MAX);
	m->target_batch_ms = interval_arg_ms(fcinfo, args->target_batch_time,
										 "target_batch_time", 3600 * 1000);
	if (m->target_batch_ms == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("target_batch_time must be positive"),
				 args->altering ?
				 errhint("Pass NULL to leave target_batch_time as it is.") :
				 errhint("Omit it or pass NULL to use migration_runner.target_batch_time, which is 0 (a fixed batch size) by default.")));
	m->max_retries = -1;
	if (!PG_ARGISNULL(args->max_retries))
	{
		m->max_retries = PG_GETARG_INT32(args->max_retries);
		if (m->max_retries < 0 || m->max_retries > 1000)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_retries must be between 0 and 1000")));
	}
}

/*
 * on_error and max_skipped: what a data error in a batch does.
 */
static void
read_error_options(FunctionCallInfo fcinfo, Migration *m)
{
	char	   *on_error;

	mr_require_arg(fcinfo, ARG_ON_ERROR, "on_error");
	mr_require_arg(fcinfo, ARG_MAX_SKIPPED, "max_skipped");
	on_error = text_to_cstring(PG_GETARG_TEXT_PP(ARG_ON_ERROR));
	if (strcmp(on_error, "skip") != 0 && strcmp(on_error, "fail") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for on_error: \"%s\"", on_error),
				 errhint("Use 'fail' to stop at the first data error or 'skip' to set the failing keys aside.")));
	m->skip_errors = strcmp(on_error, "skip") == 0;
	m->max_skipped = PG_GETARG_INT64(ARG_MAX_SKIPPED);
	if (m->max_skipped < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_skipped must not be negative")));
}

/*
 * continue_from and after: how this migration relates to others.
 */
static void
read_chain_options(FunctionCallInfo fcinfo, Migration *m)
{
	mr_chain_read_options(m,
						  PG_ARGISNULL(ARG_CONTINUE_FROM) ? NULL :
						  text_to_cstring(PG_GETARG_TEXT_PP(ARG_CONTINUE_FROM)),
						  PG_ARGISNULL(ARG_AFTER) ? NULL :
						  PG_GETARG_ARRAYTYPE_P(ARG_AFTER));
}

/*
 * Does the existing action mean what the new one means?  Both are compared
 * as analyzed, each under its own pinned search_path, so that spacing,
 * comments, a trailing semicolon or the case of keywords make no difference.
 * An existing action that no longer analyzes can only be compared as text.
 */
static bool
same_action(Migration *old, Migration *new, const char *new_tree)
{
	char	   *old_tree;

	if (strcmp(old->action, new->action) == 0)
		return true;
	old_tree = mr_action_tree_or_null(old);
	return old_tree != NULL && strcmp(old_tree, new_tree) == 0;
}

static bool
same_names(char **a, int na, char **b, int nb)
{
	int			i;

	if (na != nb || (a == NULL) != (b == NULL))
		return false;
	for (i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

/*
 * Which part of an existing definition differs from the new one, or NULL.
 * new_tree is the new action as analyzed.
 */
static const char *
definition_difference(Migration *old, Migration *new, const char *new_tree)
{
	int			i;

	if (!MigrationIsManaged(old))
		return "the existing migration is application-driven";
	if (old->relid != new->relid)
		return "the relation differs";
	if (old->nkeys != new->nkeys)
		return "the key columns differ";
	for (i = 0; i < old->nkeys; i++)
		if (strcmp(old->key_names[i], new->key_names[i]) != 0 ||
			old->key_types[i] != new->key_types[i])
			return "the key columns differ";
	/* a 1.0 row has the caller's path as it was: compare it pinned */
	if (strcmp(mr_pinned_search_path(old->search_path ? old->search_path : ""),
			   new->search_path) != 0)
		return "the search_path differs";
	if (!same_action(old, new, new_tree))
		return "the action differs";
	if (old->batch_size != new->batch_size)
		return "the batch size differs";
	if (old->parallel != new->parallel)
		return "parallel differs";
	if (strcmp(old->verify ? old->verify : "", new->verify ? new->verify : "") != 0)
		return "the verify query differs";
	if (old->skip_errors != new->skip_errors || old->max_skipped != new->max_skipped)
		return "on_error or max_skipped differs";
	if (old->continued_from != new->continued_from)
		return "continue_from differs";
	if (!same_names(old->run_after, old->nrun_after, new->run_after, new->nrun_after))
		return "after differs";
	if (old->batch_delay_ms != new->batch_delay_ms ||
		old->lock_timeout_ms != new->lock_timeout_ms ||
		old->statement_timeout_ms != new->statement_timeout_ms ||
		old->max_retries != new->max_retries ||
		old->target_batch_ms != new->target_batch_ms)
		return "the options differ";
	return NULL;
}

/*
 * The name to suggest for a new version: "x_v1" -> "x_v2", "x_v9" -> "x_v10",
 * anything else -> "x_v2".
 */
char *
mr_next_version_name(const char *name)
{
	size_t		len = strlen(name);
	size_t		digits = 0;

	while (digits < len && name[len - digits - 1] >= '0' &&
		   name[len - digits - 1] <= '9')
		digits++;
	if (digits > 0 && digits <= 9 && len - digits >= 2 &&
		name[len - digits - 1] == 'v' && name[len - digits - 2] == '_')
		return psprintf("%.*s%d", (int) (len - digits), name,
						atoi(name + len - digits) + 1);
	return psprintf("%s_v2", name);
}

static char *
ms_literal(int ms)
{
	return ms < 0 ? "NULL" : psprintf("'%d ms'::interval", ms);
}

/*
 * Insert the definition; returns its id, or 0 when a row of that name
 * already exists (ON CONFLICT waits for a concurrent definer to finish).
 */
static int64
insert_definition(Migration *m)
{
	Oid			argtypes[16] = {TEXTOID, OIDOID, OIDOID, TEXTARRAYOID,
		OIDARRAYOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, OIDOID, INT4OID,
	TEXTOID, BOOLOID, INT8OID, INT8OID, TEXTARRAYOID};
	Datum		args[16];
	char		nulls[16];
	Datum		names[MR_MAX_KEY_COLUMNS];
	Datum		types[MR_MAX_KEY_COLUMNS];
	char	   *sql;
	int			i;

	for (i = 0; i < m->nkeys; i++)
	{
		names[i] = CStringGetTextDatum(m->key_names[i]);
		types[i] = ObjectIdGetDatum(m->key_types[i]);
	}
	args[0] = CStringGetTextDatum(m->name);
	args[1] = ObjectIdGetDatum(m->owner);
	args[2] = ObjectIdGetDatum(m->relid);
	args[3] = PointerGetDatum(construct_array(names, m->nkeys, TEXTOID, -1,
											  false, TYPALIGN_INT));
	args[4] = PointerGetDatum(construct_array(types, m->nkeys, OIDOID,
											  sizeof(Oid), true, TYPALIGN_INT));
	args[5] = CStringGetTextDatum(m->action);
	args[6] = CStringGetTextDatum(m->search_path);
	args[7] = Int32GetDatum(m->batch_size);
	args[8] = CStringGetTextDatum(quote_qualified_identifier(get_namespace_name(get_rel_namespace(m->relid)),
															 get_rel_name(m->relid)));
	args[9] = ObjectIdGetDatum(m->action_target);
	args[10] = Int32GetDatum(m->parallel);
	memset(nulls, ' ', sizeof(nulls));
	args[11] = m->verify ? CStringGetTextDatum(m->verify) : (Datum) 0;
	nulls[11] = m->verify ? ' ' : 'n';
	args[12] = BoolGetDatum(m->skip_errors);
	args[13] = Int64GetDatum(m->max_skipped);
	args[14] = Int64GetDatum(m->continued_from);
	nulls[14] = m->continued_from != 0 ? ' ' : 'n';
	args[15] = m->run_after ? mr_cstrings_to_text_array(m->run_after, m->nrun_after) : (Datum) 0;
	nulls[15] = m->run_after ? ' ' : 'n';

	sql = psprintf("INSERT INTO %s (name, status, owner, relation, key_columns, "
				   "key_types, action, search_path, batch_size, batch_delay, "
				   "lock_timeout, statement_timeout, max_retries, target_batch_time, "
				   "relation_name, action_target, parallel, verify, on_error, "
				   "max_skipped, continued_from, run_after) "
				   "VALUES ($1, 'pending', $2::regrole, $3::regclass, $4::name[], "
				   "$5::regtype[], $6, $7, $8, %s, %s, %s, %s, %s, $9, "
				   "nullif($10, 0)::regclass, $11, $12, "
				   "CASE WHEN $13 THEN 'skip' ELSE 'fail' END, $14, $15, $16) "
				   "ON CONFLICT (name) DO NOTHING RETURNING id",
				   mr_catalog_table("migrations"),
				   ms_literal(m->batch_delay_ms), ms_literal(m->lock_timeout_ms),
				   ms_literal(m->statement_timeout_ms),
				   m->max_retries < 0 ? "NULL" : psprintf("%d", m->max_retries),
				   ms_literal(m->target_batch_ms));
	return mr_catalog_insert_returning_id(sql, lengthof(args), argtypes, args, nulls);
}

int64
mr_define_migration(FunctionCallInfo fcinfo)
{
	Migration  *m = palloc0(sizeof(Migration));
	Migration  *existing;
	const char *difference;
	char	   *tree;

	/*
	 * The mig_define of a 1.0 catalog has no parallel argument: say that the
	 * extension needs updating rather than read an argument that is not there.
	 */
	if (PG_NARGS() <= ARG_AFTER)
	{
		(void) mr_catalog_table("migrations");
		elog(ERROR, "mig_define called with %d arguments", PG_NARGS());
	}
	mr_require_arg(fcinfo, ARG_NAME, "name");
	mr_require_arg(fcinfo, ARG_RELATION, "relation");
	mr_require_arg(fcinfo, ARG_ACTION, "action");
	mr_require_arg(fcinfo, ARG_BATCH_SIZE, "batch_size");
	mr_require_arg(fcinfo, ARG_PARALLEL, "parallel");

	m->name = text_to_cstring(PG_GETARG_TEXT_PP(ARG_NAME));
	m->relid = PG_GETARG_OID(ARG_RELATION);
	m->action = text_to_cstring(PG_GETARG_TEXT_PP(ARG_ACTION));
	m->owner = GetUserId();
	m->search_path = mr_pinned_search_path(GetConfigOption("search_path",
														   false, false));

	check_name(m->name);
	mr_read_run_options(fcinfo, &define_options, m);
	if (strspn(m->action, " \t\r\n") == strlen(m->action))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("action must not be empty")));
	check_relation(m->relid);
	mr_resolve_key(m->relid,
				   PG_ARGISNULL(ARG_KEY_COLUMNS) ? NULL : PG_GETARG_ARRAYTYPE_P(ARG_KEY_COLUMNS),
				   m);
	mr_check_key_types(m);
	tree = mr_check_action(m);
	read_error_options(fcinfo, m);
	if (!PG_ARGISNULL(ARG_VERIFY))
	{
		m->verify = text_to_cstring(PG_GETARG_TEXT_PP(ARG_VERIFY));
		mr_check_verify(m);
	}
	read_chain_options(fcinfo, m);

	m->id = insert_definition(m);
	if (m->id != 0)
	{
		/* a new row: take over from the migration it continues */
		mr_chain_defined(m);
		mr_citus_record_distribution(m);
		return m->id;
	}

	existing = mr_migration_by_name(m->name, false);
	if (existing == NULL)
		elog(ERROR, "migration \"%s\" vanished while being defined", m->name);
	/* defining it again is using it: only for roles with its owner's rights */
	mr_check_ownership(existing);
	difference = definition_difference(existing, m, tree);
	if (difference != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("migration \"%s\" already exists with a different definition",
						m->name),
				 errdetail("Compared with the existing definition, %s.", difference),
				 errhint("Define the new version under a new name, such as \"%s\".",
						 mr_next_version_name(m->name))));
	return existing->id;
}
