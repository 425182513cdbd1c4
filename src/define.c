/*-------------------------------------------------------------------------
 *
 * define.c
 *	  mig_define: validate a managed migration completely and record it.
 *
 * Everything that can be checked is checked here, at define time, rather
 * than hours into a run: the relation and the caller's privileges on it,
 * the keyset key (the primary key, or the columns of a unique btree index on
 * NOT NULL columns, in index order), and the action, which is parsed and
 * analyzed with exactly 2k parameters typed as the key columns and must use
 * all of them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/genam.h"
#include "access/table.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "compat.h"
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
	ARG_TARGET_BATCH_TIME
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
 * The relation must be a table (plain or partitioned) the caller may UPDATE.
 */
static void
check_relation(Oid relid)
{
	char		relkind;
	AclResult	aclresult;

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

	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_UPDATE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(relid));
}

/*
 * Is this index usable to walk the table in key order with a row comparison:
 * a valid, immediate, unique btree index without expressions or predicate,
 * whose columns are NOT NULL and ascending, with the type's default operator
 * class and the column's collation?  If not, *why says why.
 */
static bool
index_is_usable_key(Relation rel, Relation index, const char **why)
{
	Form_pg_index idx = index->rd_index;
	int			i;

	if (index->rd_rel->relam != BTREE_AM_OID || !idx->indisunique)
		*why = "it is not a unique btree index";
	else if (!idx->indimmediate)
		*why = "its uniqueness is deferrable";
	else if (!idx->indisvalid)
		*why = "it is not valid";
	else if (!heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, NULL))
		*why = "it is a partial index";
	else if (!heap_attisnull(index->rd_indextuple, Anum_pg_index_indexprs, NULL))
		*why = "it indexes expressions";
	else if (idx->indnkeyatts > MR_MAX_KEY_COLUMNS)
		*why = "it has more than 8 key columns";
	else
		*why = NULL;
	if (*why)
		return false;

	for (i = 0; i < idx->indnkeyatts; i++)
	{
		AttrNumber	attnum = idx->indkey.values[i];
		Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);

		if (!att->attnotnull)
			*why = psprintf("column \"%s\" is nullable", NameStr(att->attname));
		else if (index->rd_indoption[i] & INDOPTION_DESC)
			*why = psprintf("column \"%s\" is indexed in descending order",
							NameStr(att->attname));
		else if (index->rd_opfamily[i] !=
				 get_opclass_family(GetDefaultOpClass(att->atttypid, BTREE_AM_OID)))
			*why = psprintf("column \"%s\" uses a non-default operator class",
							NameStr(att->attname));
		else if (index->rd_indcollation[i] != att->attcollation)
			*why = psprintf("column \"%s\" is indexed with another collation",
							NameStr(att->attname));
		if (*why)
			return false;
	}
	return true;
}

static void
key_from_index(Relation rel, Relation index, Migration *m)
{
	int			i;

	m->nkeys = index->rd_index->indnkeyatts;
	for (i = 0; i < m->nkeys; i++)
	{
		Form_pg_attribute att =
			TupleDescAttr(RelationGetDescr(rel), index->rd_index->indkey.values[i] - 1);

		m->key_names[i] = pstrdup(NameStr(att->attname));
		m->key_types[i] = att->atttypid;
	}
}

/*
 * Does the index have exactly these key columns, in this order?
 */
static bool
index_matches_columns(Relation rel, Relation index, char **names, int n)
{
	int			i;

	if (index->rd_index->indnkeyatts != n)
		return false;
	for (i = 0; i < n; i++)
	{
		AttrNumber	attnum = index->rd_index->indkey.values[i];

		if (attnum <= 0 ||
			strcmp(NameStr(TupleDescAttr(RelationGetDescr(rel), attnum - 1)->attname),
				   names[i]) != 0)
			return false;
	}
	return true;
}

static void
resolve_explicit_key(Relation rel, ArrayType *columns, Migration *m)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	char	  **names;
	List	   *indexes;
	ListCell   *lc;
	const char *why = NULL;
	int			i;

	deconstruct_array(columns, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_columns must not be empty"),
				 errhint("Pass NULL to use the primary key.")));
	if (n > MR_MAX_KEY_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("key_columns may name at most %d columns", MR_MAX_KEY_COLUMNS)));
	names = palloc(sizeof(char *) * n);
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("key_columns must not contain NULL")));
		names[i] = TextDatumGetCString(elems[i]);
		if (get_attnum(RelationGetRelid(rel), names[i]) == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation \"%s\" does not exist",
							names[i], RelationGetRelationName(rel))));
	}

	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		bool		usable = false;

		if (index_matches_columns(rel, index, names, n))
		{
			usable = index_is_usable_key(rel, index, &why);
			if (usable)
				key_from_index(rel, index, m);
		}
		index_close(index, AccessShareLock);
		if (usable)
			return;
	}

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
			 errmsg("key_columns do not match a usable unique index of \"%s\"",
					RelationGetRelationName(rel)),
			 why ? errdetail("The index on these columns cannot be used: %s.", why)
			 : errdetail("No unique index has exactly these key columns in this order."),
			 errhint("The key must be the columns of a unique btree index on NOT NULL columns, in index order.")));
}

static void
resolve_primary_key(Relation rel, Migration *m)
{
	Oid			pkoid = RelationGetPrimaryKeyIndex(rel);
	Relation	index;
	const char *why;

	if (!OidIsValid(pkoid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("table \"%s\" has no primary key",
						RelationGetRelationName(rel)),
				 errhint("Pass key_columns naming the columns of a unique index on NOT NULL columns.")));

	index = index_open(pkoid, AccessShareLock);
	if (!index_is_usable_key(rel, index, &why))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("the primary key of \"%s\" cannot be used as the key",
						RelationGetRelationName(rel)),
				 errdetail("The primary key index cannot be used: %s.", why),
				 errhint("Pass key_columns naming the columns of another unique index.")));
	key_from_index(rel, index, m);
	index_close(index, AccessShareLock);
}

/*
 * The key columns must also be readable by the owner, since the bounds query
 * runs as the owner.
 */
static void
check_key_privileges(Oid relid, Migration *m)
{
	int			i;

	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK)
		return;
	for (i = 0; i < m->nkeys; i++)
	{
		AttrNumber	attnum = get_attnum(relid, m->key_names[i]);

		if (pg_attribute_aclcheck(relid, attnum, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for column \"%s\" of relation \"%s\"",
							m->key_names[i], get_rel_name(relid)),
					 errdetail("The runner reads the key columns as the migration's owner.")));
	}
}

static void
resolve_key(Oid relid, ArrayType *columns, Migration *m)
{
	Relation	rel = table_open(relid, AccessShareLock);

	if (columns == NULL)
		resolve_primary_key(rel, m);
	else
		resolve_explicit_key(rel, columns, m);
	table_close(rel, AccessShareLock);
	check_key_privileges(relid, m);
}

static bool
collect_params_walker(Node *node, Bitmapset **params)
{
	if (node == NULL)
		return false;
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXTERN)
	{
		*params = bms_add_member(*params, ((Param *) node)->paramid);
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, collect_params_walker,
								 (void *) params, 0);
	return expression_tree_walker(node, collect_params_walker, (void *) params);
}

typedef struct ActionContext
{
	const char *name;
	const char *action;
} ActionContext;

/*
 * A syntax error's position is in the action, not in the caller's query:
 * report it as an internal query, as SPI does for the errors it raises.
 */
static void
action_error_context(void *arg)
{
	ActionContext *ctx = (ActionContext *) arg;
	int			position = geterrposition();

	if (position > 0)
	{
		errposition(0);
		internalerrposition(position);
		internalerrquery(ctx->action);
	}
	errcontext("action of migration \"%s\"", ctx->name);
}

/*
 * The action: one plannable statement that analyzes with the key types as
 * $1..$2k and uses each of them.  Analysis happens with the caller's
 * search_path, which is recorded and used for every batch.
 */
static void
check_action(const char *name, const char *action, Migration *m)
{
	List	   *raw;
	Oid			argtypes[2 * MR_MAX_KEY_COLUMNS];
	SPIPlanPtr	plan;
	CachedPlanSource *source;
	Bitmapset  *used = NULL;
	ListCell   *lc;
	ErrorContextCallback errcallback;
	ActionContext ctx;
	int			nparams = 2 * m->nkeys;
	int			i;

	ctx.name = name;
	ctx.action = action;
	errcallback.callback = action_error_context;
	errcallback.arg = (void *) &ctx;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	raw = mr_raw_parser(action);
	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("action must be exactly one SQL statement"),
				 errdetail("The action contains %d statements.", list_length(raw))));

	for (i = 0; i < nparams; i++)
		argtypes[i] = m->key_types[i % m->nkeys];

	SPI_connect();
	plan = SPI_prepare(action, nparams, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	source = linitial(SPI_plan_get_plan_sources(plan));
	foreach(lc, source->query_list)
	{
		Query	   *query = lfirst_node(Query, lc);

		if (query->commandType == CMD_UTILITY)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("action must be a SELECT, INSERT, UPDATE, DELETE or MERGE statement"),
					 errdetail("Utility and transaction control statements cannot run in a batch.")));
		(void) collect_params_walker((Node *) query, &used);
	}
	SPI_finish();

	for (i = 1; i <= nparams; i++)
	{
		if (!bms_is_member(i, used))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("action does not use parameter $%d", i),
					 errdetail("For a key of %d column(s), $1 to $%d are the batch's first key and $%d to $%d its last key.",
							   m->nkeys, m->nkeys, m->nkeys + 1, nparams),
					 errhint("Restrict the action to the batch, e.g. WHERE %s BETWEEN $1 AND $%d.",
							 quote_identifier(m->key_names[0]), m->nkeys + 1)));
	}
	error_context_stack = errcallback.previous;
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

static void
read_options(FunctionCallInfo fcinfo, Migration *m)
{
	m->batch_delay_ms = interval_arg_ms(fcinfo, ARG_BATCH_DELAY, "batch_delay",
										3600 * 1000);
	m->lock_timeout_ms = interval_arg_ms(fcinfo, ARG_LOCK_TIMEOUT, "lock_timeout",
										 INT_MAX);
	m->statement_timeout_ms = interval_arg_ms(fcinfo, ARG_STATEMENT_TIMEOUT,
											  "statement_timeout", INT_MAX);
	m->target_batch_ms = interval_arg_ms(fcinfo, ARG_TARGET_BATCH_TIME,
										 "target_batch_time", 3600 * 1000);
	if (m->target_batch_ms == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("target_batch_time must be positive"),
				 errhint("Omit it or pass NULL to use migration_runner.target_batch_time, which is 0 (a fixed batch size) by default.")));
	m->max_retries = -1;
	if (!PG_ARGISNULL(ARG_MAX_RETRIES))
	{
		m->max_retries = PG_GETARG_INT32(ARG_MAX_RETRIES);
		if (m->max_retries < 0 || m->max_retries > 1000)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_retries must be between 0 and 1000")));
	}
}

/*
 * Which part of an existing definition differs from the new one, or NULL.
 */
static const char *
definition_difference(Migration *old, Migration *new)
{
	int			i;

	if (!MigrationIsManaged(old))
		return "the existing migration is application-driven";
	if (old->relid != new->relid)
		return "the relation differs";
	if (old->nkeys != new->nkeys)
		return "the key columns differ";
	for (i = 0; i < old->nkeys; i++)
		if (strcmp(old->key_names[i], new->key_names[i]) != 0)
			return "the key columns differ";
	if (strcmp(old->action, new->action) != 0)
		return "the action differs";
	if (old->batch_size != new->batch_size)
		return "the batch size differs";
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
static char *
next_version_name(const char *name)
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
	Oid			argtypes[9] = {TEXTOID, OIDOID, OIDOID, TEXTARRAYOID,
	OIDARRAYOID, TEXTOID, TEXTOID, INT4OID, TEXTOID};
	Datum		args[9];
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

	sql = psprintf("INSERT INTO %s (name, status, owner, relation, key_columns, "
				   "key_types, action, search_path, batch_size, batch_delay, "
				   "lock_timeout, statement_timeout, max_retries, target_batch_time, "
				   "relation_name) "
				   "VALUES ($1, 'pending', $2::regrole, $3::regclass, $4::name[], "
				   "$5::regtype[], $6, $7, $8, %s, %s, %s, %s, %s, $9) "
				   "ON CONFLICT (name) DO NOTHING RETURNING id",
				   mr_catalog_table("migrations"),
				   ms_literal(m->batch_delay_ms), ms_literal(m->lock_timeout_ms),
				   ms_literal(m->statement_timeout_ms),
				   m->max_retries < 0 ? "NULL" : psprintf("%d", m->max_retries),
				   ms_literal(m->target_batch_ms));
	return mr_catalog_insert_returning_id(sql, 9, argtypes, args);
}

int64
mr_define_migration(FunctionCallInfo fcinfo)
{
	Migration  *m = palloc0(sizeof(Migration));
	Migration  *existing;
	const char *difference;

	mr_require_arg(fcinfo, ARG_NAME, "name");
	mr_require_arg(fcinfo, ARG_RELATION, "relation");
	mr_require_arg(fcinfo, ARG_ACTION, "action");
	mr_require_arg(fcinfo, ARG_BATCH_SIZE, "batch_size");

	m->name = text_to_cstring(PG_GETARG_TEXT_PP(ARG_NAME));
	m->relid = PG_GETARG_OID(ARG_RELATION);
	m->action = text_to_cstring(PG_GETARG_TEXT_PP(ARG_ACTION));
	m->batch_size = PG_GETARG_INT32(ARG_BATCH_SIZE);
	m->owner = GetUserId();
	m->search_path = pstrdup(GetConfigOption("search_path", false, false));

	check_name(m->name);
	if (m->batch_size < 1 || m->batch_size > MR_MAX_BATCH_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be between 1 and %d", MR_MAX_BATCH_SIZE),
				 errdetail("The given batch_size is %d.", m->batch_size)));
	if (strspn(m->action, " \t\r\n") == strlen(m->action))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("action must not be empty")));
	read_options(fcinfo, m);
	check_relation(m->relid);
	resolve_key(m->relid,
				PG_ARGISNULL(ARG_KEY_COLUMNS) ? NULL : PG_GETARG_ARRAYTYPE_P(ARG_KEY_COLUMNS),
				m);
	check_action(m->name, m->action, m);

	m->id = insert_definition(m);
	if (m->id != 0)
		return m->id;

	existing = mr_migration_by_name(m->name, false);
	if (existing == NULL)
		elog(ERROR, "migration \"%s\" vanished while being defined", m->name);
	/* defining it again is using it: only for roles with its owner's rights */
	mr_check_ownership(existing);
	difference = definition_difference(existing, m);
	if (difference != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("migration \"%s\" already exists with a different definition",
						m->name),
				 errdetail("Compared with the existing definition, %s.", difference),
				 errhint("Define the new version under a new name, such as \"%s\".",
						 next_version_name(m->name))));
	return existing->id;
}
