/*-------------------------------------------------------------------------
 *
 * key_index.c
 *	  The keyset key of a managed migration: the primary key, or the columns
 *	  of a unique btree index on NOT NULL columns, in index order.
 *
 * The batch engine walks the relation with row comparisons on these columns
 * and finds each batch's bounds with an ordered scan of the index, so the
 * index must be one whose order is exactly the row comparison's order:
 * immediate, valid, without predicate or expressions, ascending, with the
 * default operator class and the column's collation.  The key columns must
 * also be readable by the caller, since the bounds query runs as the owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "define.h"
#include "migration_runner.h"

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

/*
 * Find a usable unique index with exactly these key columns, in this order;
 * with m, take the key from it.  Returns false, and *why when an index on
 * these columns exists but cannot be used, if there is none.
 */
static bool
find_key_index(Relation rel, char **names, int n, Migration *m, const char **why)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	*why = NULL;
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		bool		usable = false;

		if (index_matches_columns(rel, index, names, n))
		{
			usable = index_is_usable_key(rel, index, why);
			if (usable && m != NULL)
				key_from_index(rel, index, m);
		}
		index_close(index, AccessShareLock);
		if (usable)
			return true;
	}
	return false;
}

/*
 * At run start: the key's index must still be there.  Without it the bounds
 * query could not walk the key; and while pg_restore loads a database it
 * creates the index only after the table's rows, so a run that started
 * before it would find most rows missing and complete.  Called with the
 * relation locked.
 */
void
mr_check_key_index(Migration *m)
{
	Relation	rel = table_open(m->relid, NoLock);
	const char *why;

	if (!find_key_index(rel, m->key_names, m->nkeys, NULL, &why))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s\" of migration \"%s\" has no usable unique index on its key",
						RelationGetRelationName(rel), m->name),
				 why ? errdetail("The index on the key columns cannot be used: %s.", why) :
				 errdetail("No unique index has exactly the key columns %s in this order.",
						   mr_format_key(m->key_names, m->nkeys)),
				 errhint("If a restore is still loading the table, start the migration again once it has finished.")));
	table_close(rel, NoLock);
}

static void
resolve_explicit_key(Relation rel, ArrayType *columns, Migration *m)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	char	  **names;
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

	if (find_key_index(rel, names, n, m, &why))
		return;

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

/*
 * Resolve the migration's key: the primary key when columns is NULL, else the
 * unique index with exactly those columns; fills m's key names and types.
 */
void
mr_resolve_key(Oid relid, ArrayType *columns, Migration *m)
{
	Relation	rel = table_open(relid, AccessShareLock);

	if (columns == NULL)
		resolve_primary_key(rel, m);
	else
		resolve_explicit_key(rel, columns, m);
	table_close(rel, AccessShareLock);
	check_key_privileges(relid, m);
}
