/*-------------------------------------------------------------------------
 *
 * action_checks.c
 *	  Checks of a migration's analyzed action: the tables it writes to and
 *	  how it uses the key.
 *
 * The keyset walk is correct only if the action leaves the key alone and
 * works on whole keys.  So, on the analyzed (and rewritten) statement:
 *
 *	- the table it writes to is recorded (action_target); it may be another
 *	  table (an archive), but never a temporary table, which a worker cannot
 *	  see, nor a namesake of the migration's relation in another schema;
 *	- it must not assign a key column of the migration's relation, in an
 *	  UPDATE, MERGE, INSERT ... ON CONFLICT DO UPDATE or data-modifying WITH;
 *	- for a key of several columns, a later key column compared on its own
 *	  with its own batch bound skips rows: a WARNING with the row form.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/stratnum.h"
#include "catalog/partition.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "commands/defrem.h"
#include "lib/stringinfo.h"
#include "nodes/nodeFuncs.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"

#include "compat.h"
#include "define.h"
#include "migration_runner.h"

/* ----------------------------------------------------------------------------
 * The tables the action writes to
 * ----------------------------------------------------------------------------
 */

/* relid itself, or one of its partitions (whose keys are relid's keys) */
static bool
is_part_of_relation(Oid target, Oid relid)
{
	return target == relid ||
		(get_rel_relispartition(target) &&
		 list_member_oid(get_partition_ancestors(target), relid));
}

/*
 * "schema.name" for messages; pg_temp for this session's temporary schema,
 * and the OID of a relation that is gone (a recorded action_target).
 */
char *
mr_relation_for_message(Oid relid)
{
	char	   *name = get_rel_name(relid);

	if (name == NULL)
		return psprintf("relation with OID %u", relid);
	return psprintf("%s.%s",
					get_rel_persistence(relid) == RELPERSISTENCE_TEMP ? "pg_temp" :
					get_namespace_name(get_rel_namespace(relid)),
					name);
}

static Oid
result_relid(Query *query)
{
	return query->resultRelation > 0 ?
		rt_fetch(query->resultRelation, query->rtable)->relid : InvalidOid;
}

/*
 * The relation the action writes to: that of the top-level statement or, for
 * a SELECT that writes only in data-modifying WITH queries, the first of
 * those; InvalidOid when it writes nothing.  queries is the rewritten
 * statement: its query with canSetTag is the one the user wrote.
 */
Oid
mr_write_target(List *queries)
{
	ListCell   *lc;

	foreach(lc, queries)
	{
		Query	   *query = lfirst_node(Query, lc);
		ListCell   *lc2;

		if (!query->canSetTag)
			continue;
		if (query->resultRelation > 0)
			return result_relid(query);
		foreach(lc2, query->cteList)
		{
			Query	   *cte = castNode(Query, lfirst_node(CommonTableExpr, lc2)->ctequery);

			if (cte->resultRelation > 0)
				return result_relid(cte);
		}
	}
	return InvalidOid;
}

/*
 * The relation the prepared action writes to, as recorded at define time in
 * action_target (InvalidOid when it writes nothing).  Call it right after
 * SPI_prepare, while the plan's analyzed statement is current.
 */
Oid
mr_action_write_target(SPIPlanPtr plan)
{
	List	   *sources = SPI_plan_get_plan_sources(plan);

	if (list_length(sources) != 1)
		return InvalidOid;
	return mr_write_target(((CachedPlanSource *) linitial(sources))->query_list);
}

/*
 * Moving a row's key moves it in the keyset walk: forward, a later batch sees
 * it again; backward, no batch ever does.
 */
static void
check_assignments(Migration *m, Oid target, List *targetlist)
{
	ListCell   *lc;
	int			i;

	foreach(lc, targetlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		char	   *column;

		if (tle->resjunk)
			continue;
		/* a partition's attnums may differ from the parent's: by name */
		column = get_attname(target, tle->resno, false);
		for (i = 0; i < m->nkeys; i++)
			if (strcmp(column, m->key_names[i]) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("action must not change key column \"%s\" of relation \"%s\"",
								column, get_rel_name(m->relid)),
						 errdetail("Batches walk the relation in key order: a row whose key moves forward is visited again by a later batch, and a row whose key moves backward is never visited."),
						 errhint("Write the changed rows to a new table, or use a key the action does not change.")));
	}
}

static void
check_write(Migration *m, Query *query)
{
	Oid			target = result_relid(query);

	if (get_rel_persistence(target) == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("action must not write to temporary table \"%s\"",
						get_rel_name(target)),
				 errdetail("Batches may run in a background worker, which cannot see the temporary tables of this session.")));
	if (!is_part_of_relation(target, m->relid))
	{
		if (strcmp(get_rel_name(target), get_rel_name(m->relid)) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("action writes to relation \"%s\", not to the migration's relation \"%s\"",
							mr_relation_for_message(target), mr_relation_for_message(m->relid)),
					 errdetail("Both relations are named \"%s\"; the action's name was resolved with search_path \"%s\".",
							   get_rel_name(target), m->search_path),
					 errhint("Qualify the name of the relation in the action with its schema.")));
		return;
	}

	if (query->commandType == CMD_UPDATE)
		check_assignments(m, target, query->targetList);
	if (query->onConflict && query->onConflict->action == ONCONFLICT_UPDATE)
		check_assignments(m, target, query->onConflict->onConflictSet);
#ifdef MR_HAVE_MERGE
	{
		ListCell   *lc;

		foreach(lc, query->mergeActionList)
		{
			MergeAction *action = lfirst_node(MergeAction, lc);

			if (action->commandType == CMD_UPDATE)
				check_assignments(m, target, action->targetList);
		}
	}
#endif
}

/* every statement that writes: the top level, data-modifying CTEs, rules */
static bool
check_writes_walker(Node *node, Migration *m)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *query = (Query *) node;

		if (query->resultRelation > 0)
			check_write(m, query);
		return query_tree_walker(query, check_writes_walker, (void *) m, 0);
	}
	return expression_tree_walker(node, check_writes_walker, (void *) m);
}

/* ----------------------------------------------------------------------------
 * Key columns compared one by one
 * ----------------------------------------------------------------------------
 */

typedef struct ColumnCompareContext
{
	Migration  *m;
	List	   *rtables;		/* of the queries being walked, innermost first */
	Bitmapset  *warned;			/* key columns already warned about */
} ColumnCompareContext;

/* the key column (0-based) a Var of the migration's relation is, or -1 */
static int
var_key_column(ColumnCompareContext *ctx, Node *node)
{
	Var		   *var;
	RangeTblEntry *rte;
	char	   *column;
	int			i;

	while (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	if (node == NULL || !IsA(node, Var) || ((Var *) node)->varattno <= 0)
		return -1;
	var = (Var *) node;
	if (var->varlevelsup >= list_length(ctx->rtables))
		return -1;
	rte = rt_fetch(var->varno, (List *) list_nth(ctx->rtables, var->varlevelsup));
	if (rte->rtekind != RTE_RELATION || !is_part_of_relation(rte->relid, ctx->m->relid))
		return -1;
	column = get_attname(rte->relid, var->varattno, false);
	for (i = 0; i < ctx->m->nkeys; i++)
		if (strcmp(column, ctx->m->key_names[i]) == 0)
			return i;
	return -1;
}

/* is node $n, one of the batch bounds of key column i (0-based)? */
static bool
is_own_bound(Migration *m, Node *node, int i)
{
	while (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	return node != NULL && IsA(node, Param) &&
		((Param *) node)->paramkind == PARAM_EXTERN &&
		(((Param *) node)->paramid == i + 1 ||
		 ((Param *) node)->paramid == m->nkeys + i + 1);
}

/* is opno <, <=, >= or > of the default btree operator family of type? */
static bool
is_ordering_operator(Oid opno, Oid type)
{
	Oid			opclass = GetDefaultOpClass(type, BTREE_AM_OID);
	int			strategy;

	if (!OidIsValid(opclass))
		return false;
	strategy = get_op_opfamily_strategy(opno, get_opclass_family(opclass));
	return strategy == BTLessStrategyNumber ||
		strategy == BTLessEqualStrategyNumber ||
		strategy == BTGreaterEqualStrategyNumber ||
		strategy == BTGreaterStrategyNumber;
}

static char *
key_row(Migration *m, bool names, int first_param)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < m->nkeys; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		if (names)
			appendStringInfoString(&buf, quote_identifier(m->key_names[i]));
		else
			appendStringInfo(&buf, "$%d", first_param + i);
	}
	return buf.data;
}

static void
check_column_comparison(ColumnCompareContext *ctx, OpExpr *op)
{
	Migration  *m = ctx->m;
	Node	   *left = linitial(op->args);
	Node	   *right = lsecond(op->args);
	int			column = var_key_column(ctx, left);

	if (column < 0)
	{
		column = var_key_column(ctx, right);
		right = left;
	}
	/* the leading column alone bounds a superset of the batch: harmless */
	if (column <= 0 || bms_is_member(column, ctx->warned) ||
		!is_own_bound(m, right, column) ||
		!is_ordering_operator(op->opno, m->key_types[column]))
		return;
	ctx->warned = bms_add_member(ctx->warned, column);
	ereport(WARNING,
			(errmsg("action compares key column \"%s\" on its own with the batch bounds",
					m->key_names[column]),
			 errdetail("A batch is a range of whole keys: comparing each column of a key of several columns separately skips rows whose later columns lie outside the bounds of their own column."),
			 errhint("Compare the key as a row: (%s) BETWEEN (%s) AND (%s).",
					 key_row(m, true, 0), key_row(m, false, 1),
					 key_row(m, false, m->nkeys + 1))));
}

/*
 * Row comparisons are RowCompareExprs once analyzed, so the OpExprs seen here
 * compare single columns.
 */
static bool
column_compare_walker(Node *node, ColumnCompareContext *ctx)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		bool		result;

		ctx->rtables = lcons(((Query *) node)->rtable, ctx->rtables);
		result = query_tree_walker((Query *) node, column_compare_walker,
								   (void *) ctx, 0);
		ctx->rtables = list_delete_first(ctx->rtables);
		return result;
	}
	if (IsA(node, OpExpr) && list_length(((OpExpr *) node)->args) == 2)
		check_column_comparison(ctx, (OpExpr *) node);
	return expression_tree_walker(node, column_compare_walker, (void *) ctx);
}

/* raise the errors above for every statement of the action that writes */
void
mr_check_action_writes(Migration *m, List *queries)
{
	ListCell   *lc;

	foreach(lc, queries)
		(void) check_writes_walker(lfirst(lc), m);
}

/* warn about each later key column compared on its own with its bounds */
void
mr_warn_column_comparisons(Migration *m, List *queries)
{
	ColumnCompareContext ctx = {m, NIL, NULL};
	ListCell   *lc;

	foreach(lc, queries)
		(void) column_compare_walker(lfirst(lc), &ctx);
}
