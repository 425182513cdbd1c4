/*-------------------------------------------------------------------------
 *
 * action.c
 *	  The analysis of a managed migration's action, at define time.
 *
 * The action is parsed and analyzed with 2k parameters typed as the key, under
 * the pinned search_path that every batch will use: the caller's path with
 * pg_temp moved to its end, so that a temporary table never captures an
 * unqualified name.  It must be one plannable statement that uses every
 * parameter, and the caller, who becomes its owner, must hold every
 * privilege it needs.  action_checks.c checks what it writes and how it uses
 * the key.
 *
 * The analyzed tree without source locations is what a redefinition compares,
 * so that the same statement written differently is the same action.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/xact.h"
#include "lib/stringinfo.h"
#include "nodes/nodeFuncs.h"
#include "nodes/plannodes.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/plancache.h"
#include "utils/varlena.h"

#include "compat.h"
#include "define.h"
#include "migration_runner.h"

/* ----------------------------------------------------------------------------
 * The pinned search_path
 * ----------------------------------------------------------------------------
 */

/*
 * "pg_temp", or the name of some session's temporary schema (pg_temp_N),
 * which only that session can use: a worker never could.  No other schema
 * can have such a name, since names beginning with pg_ are reserved.
 */
static bool
is_temp_schema_name(const char *name)
{
	const char *p;

	if (strcmp(name, "pg_temp") == 0)
		return true;
	if (strncmp(name, "pg_temp_", 8) != 0 || name[8] == '\0')
		return false;
	for (p = name + 8; *p; p++)
		if (!isdigit((unsigned char) *p))
			return false;
	return true;
}

/*
 * The search_path a migration's action is analyzed and run with: path without
 * its pg_temp entries and with pg_temp explicitly last.  Left implicit,
 * pg_temp is searched first, and a temporary table named like the real one
 * would capture the action.  The result is normalized (identifiers quoted as
 * needed, ", " between them), so that equal paths compare equal as text.
 */
char *
mr_pinned_search_path(const char *path)
{
	char	   *raw = pstrdup(path);
	List	   *names;
	ListCell   *lc;
	StringInfoData buf;

	if (!SplitIdentifierString(raw, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in parameter \"%s\"", "search_path"),
				 errdetail("The value is \"%s\".", path)));
	initStringInfo(&buf);
	foreach(lc, names)
	{
		const char *name = lfirst(lc);

		/* SET search_path = '' leaves "", which names no schema */
		if (name[0] != '\0' && !is_temp_schema_name(name))
			appendStringInfo(&buf, "%s, ", quote_identifier(name));
	}
	appendStringInfoString(&buf, "pg_temp");
	return buf.data;
}

/* set search_path until AtEOXact_GUC(true, the returned level) */
static int
use_search_path(const char *path)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/* ----------------------------------------------------------------------------
 * Analysis
 * ----------------------------------------------------------------------------
 */

typedef struct ActionContext
{
	const char *name;
	const char *what;			/* "action" or "verify query" */
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
	errcontext("%s of migration \"%s\"", ctx->what, ctx->name);
}

/*
 * Prepare the action with its 2k key-typed parameters under the current
 * search_path (SPI must be connected); returns the plan and, in *queries, the
 * analyzed and rewritten statement.
 */
static SPIPlanPtr
prepare_statement(Migration *m, const char *sql, List **queries)
{
	Oid			argtypes[2 * MR_MAX_KEY_COLUMNS];
	SPIPlanPtr	plan;
	List	   *sources;
	int			i;

	for (i = 0; i < 2 * m->nkeys; i++)
		argtypes[i] = m->key_types[i % m->nkeys];
	plan = SPI_prepare(sql, 2 * m->nkeys, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	sources = SPI_plan_get_plan_sources(plan);
	if (list_length(sources) != 1)
		elog(ERROR, "statement of migration \"%s\" is not one statement", m->name);
	*queries = ((CachedPlanSource *) linitial(sources))->query_list;
	return plan;
}

/*
 * The analyzed statement as text, without the positions of its parts in the
 * source text: the same for every spelling of the same statement.
 */
static char *
tree_text(List *queries)
{
	static const char *const located[] = {" :location ", " :stmt_location ",
	" :stmt_len "};
	const char *s = nodeToString(queries);
	StringInfoData buf;

	initStringInfo(&buf);
	while (*s)
	{
		int			i = lengthof(located);

		if (s[0] == ' ' && s[1] == ':')
			for (i = 0; i < lengthof(located); i++)
				if (strncmp(s, located[i], strlen(located[i])) == 0)
					break;
		if (i == lengthof(located))
		{
			appendStringInfoChar(&buf, *s++);
			continue;
		}
		appendStringInfoString(&buf, located[i]);
		s += strlen(located[i]);
		if (*s == '-')
			s++;
		while (isdigit((unsigned char) *s))
			s++;
	}
	return buf.data;
}

/* ----------------------------------------------------------------------------
 * Statement kind and parameters
 * ----------------------------------------------------------------------------
 */

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

static void
check_statement(Migration *m, List *queries)
{
	Bitmapset  *used = NULL;
	ListCell   *lc;
	int			nparams = 2 * m->nkeys;
	int			i;

	foreach(lc, queries)
	{
		Query	   *query = lfirst_node(Query, lc);

		if (query->commandType == CMD_UTILITY)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("action must be a SELECT, INSERT, UPDATE, DELETE or MERGE statement"),
					 errdetail("Utility and transaction control statements cannot run in a batch.")));
		(void) collect_params_walker((Node *) query, &used);
	}

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
}

/* ----------------------------------------------------------------------------
 * Privileges
 * ----------------------------------------------------------------------------
 */

/*
 * The caller, who becomes the owner, must hold every privilege the action
 * needs: what the executor checks when it starts the statement, on the
 * generic plan's range table (flattened over subqueries and CTEs, with the
 * view owner's checks for the tables behind a view).
 */
static void
check_privileges(SPIPlanPtr plan)
{
	CachedPlan *cplan = SPI_plan_get_cached_plan(plan);
	ListCell   *lc;

	if (cplan == NULL)
		elog(ERROR, "could not get the generic plan of the action");
	foreach(lc, cplan->stmt_list)
	{
		PlannedStmt *stmt = lfirst_node(PlannedStmt, lc);

		if (stmt->commandType != CMD_UTILITY)
			mr_check_plan_permissions(stmt);
	}
	mr_release_unsaved_plan(cplan);
}

/*
 * The define-time check of one of a migration's statements (what: "action"
 * or "verify query"): errors carry its context, it is parsed as exactly
 * one statement and prepared under the pinned search_path with the key's
 * 2k parameters, with SPI connected until close_statement_check.
 */
typedef struct StatementCheck
{
	ActionContext ctx;
	ErrorContextCallback errcallback;
	int			nestlevel;
} StatementCheck;

static SPIPlanPtr
open_statement_check(StatementCheck *check, Migration *m, const char *what,
					 const char *sql, List **queries)
{
	List	   *raw;

	check->ctx.name = m->name;
	check->ctx.what = what;
	check->ctx.action = sql;
	check->errcallback.callback = action_error_context;
	check->errcallback.arg = (void *) &check->ctx;
	check->errcallback.previous = error_context_stack;
	error_context_stack = &check->errcallback;

	raw = mr_raw_parser(sql);
	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be exactly one SQL statement", what),
				 errdetail("The %s contains %d statements.", what, list_length(raw))));

	check->nestlevel = use_search_path(m->search_path);
	SPI_connect();
	return prepare_statement(m, sql, queries);
}

static void
close_statement_check(StatementCheck *check)
{
	SPI_finish();
	AtEOXact_GUC(true, check->nestlevel);
	error_context_stack = check->errcallback.previous;
}

/* ----------------------------------------------------------------------------
 * Entry points
 * ----------------------------------------------------------------------------
 */

/*
 * Check the action of a migration being defined, whose key and pinned
 * search_path are resolved; sets m->action_target and returns the analyzed
 * statement as text for comparison with an existing definition.
 */
char *
mr_check_action(Migration *m)
{
	MemoryContext caller = CurrentMemoryContext;
	StatementCheck check;
	SPIPlanPtr	plan;
	List	   *queries;
	char	   *tree;

	plan = open_statement_check(&check, m, "action", m->action, &queries);
	check_statement(m, queries);
	mr_check_action_writes(m, queries);
	m->action_target = mr_write_target(queries);
	if (m->nkeys > 1)
		mr_warn_column_comparisons(m, queries);
	check_privileges(plan);
	tree = MemoryContextStrdup(caller, tree_text(queries));
	close_statement_check(&check);
	return tree;
}

/*
 * The analyzed action of an existing migration, under its pinned search_path,
 * as text; NULL when it no longer analyzes (a column or table is gone).
 */
char *
mr_action_tree_or_null(Migration *m)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *volatile tree = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		int			nestlevel;
		List	   *queries;

		nestlevel = use_search_path(mr_pinned_search_path(m->search_path ?
														  m->search_path : ""));
		SPI_connect();
		(void) prepare_statement(m, m->action, &queries);
		tree = MemoryContextStrdup(caller, tree_text(queries));
		SPI_finish();
		AtEOXact_GUC(true, nestlevel);

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
		/* a cancel is not "does not analyze" */
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		FreeErrorData(edata);
		tree = NULL;
	}
	PG_END_TRY();
	return tree;
}

/*
 * Check the verify query of a migration being defined, like its action: one
 * SELECT, analyzed under the pinned search_path with the key's 2k parameters
 * available, which the caller may read.  Whether it uses them decides when
 * it runs (each batch, or once at the end), see verify.c.
 */
void
mr_check_verify(Migration *m)
{
	StatementCheck check;
	SPIPlanPtr	plan;
	List	   *queries;
	Query	   *query;

	plan = open_statement_check(&check, m, "verify query", m->verify, &queries);
	query = linitial_node(Query, queries);
	if (list_length(queries) != 1 || query->commandType != CMD_SELECT ||
		query->hasModifyingCTE || query->rowMarks != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("verify query must be a SELECT statement"),
				 errdetail("It returns the rows that are wrong; it must not change or lock anything.")));
	check_privileges(plan);
	close_statement_check(&check);
}

/* Does the verify query use the batch's keys ($1..$2k)? */
bool
mr_verify_uses_keys(List *queries)
{
	Bitmapset  *used = NULL;

	(void) collect_params_walker((Node *) queries, &used);
	return !bms_is_empty(used);
}
