/*-------------------------------------------------------------------------
 *
 * utility.c
 *	  A ProcessUtility hook for the commands that concern the background
 *	  workers of a whole database.
 *
 * DROP DATABASE, CREATE DATABASE ... TEMPLATE, ALTER DATABASE ... RENAME TO
 * and ALTER DATABASE ... SET TABLESPACE fail while another process is
 * connected to the database they name.  A database without running
 * migrations has no scheduler and no worker, so it never stands in their
 * way.  For one with running migrations, the hook first keeps schedulers
 * away from the database (dbstate.c) and stops its scheduler and workers
 * (SIGTERM, as pg_terminate_backend: the open batch is rolled back), as
 * TimescaleDB does.  The migrations stay running; once the command is over
 * the database's scheduler starts again and they resume from their cursors
 * (after DROP DATABASE there is nothing left to resume); a copy made with
 * CREATE DATABASE ... TEMPLATE has the same migrations and cursors, and its
 * scheduler is woken at commit too.  Only the owner of
 * the database (or a superuser) stops them: anyone else's command fails
 * anyway, and must not disturb the workers.
 *
 * CREATE EXTENSION and ALTER EXTENSION ... UPDATE of migration_runner wake
 * the database's scheduler at commit: a restored catalog may have running
 * migrations, and an updated one may run again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/backend_status.h"

#include "compat.h"
#include "launcher.h"
#include "migration_runner.h"

#if PG_VERSION_NUM >= 140000

static ProcessUtility_hook_type prev_process_utility = NULL;

/* the option of CREATE DATABASE or ALTER DATABASE with this name, if any */
static const char *
db_option(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, name) == 0 && def->arg != NULL)
			return defGetString(def);
	}
	return NULL;
}

/*
 * The database that the statement needs nobody connected to, or NULL.
 * *drop says whether it is DROP DATABASE.
 */
static const char *
database_to_free(Node *stmt, bool *drop)
{
	*drop = false;
	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			*drop = true;
			return ((DropdbStmt *) stmt)->dbname;
		case T_CreatedbStmt:
			return db_option(((CreatedbStmt *) stmt)->options, "template");
		case T_AlterDatabaseStmt:
			if (db_option(((AlterDatabaseStmt *) stmt)->options, "tablespace") != NULL)
				return ((AlterDatabaseStmt *) stmt)->dbname;
			return NULL;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				return ((RenameStmt *) stmt)->subname;
			return NULL;
		default:
			return NULL;
	}
}

/* does the statement create or update this extension? */
static bool
creates_extension(Node *stmt)
{
	if (IsA(stmt, CreateExtensionStmt))
		return strcmp(((CreateExtensionStmt *) stmt)->extname, MR_EXTENSION_NAME) == 0;
	if (IsA(stmt, AlterExtensionStmt))
		return strcmp(((AlterExtensionStmt *) stmt)->extname, MR_EXTENSION_NAME) == 0;
	return false;
}

/*
 * Stop the scheduler and the workers of a database (background workers of
 * our types connected to it).  Returns how many were signalled.
 */
static int
stop_database_workers(Oid dboid)
{
	int			n;
	int			i;
	int			signalled = 0;

	pgstat_clear_backend_activity_snapshot();
	n = pgstat_fetch_stat_numbackends();
	for (i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *local = mr_local_beentry(i);
		PgBackendStatus *be;
		const char *type;

		if (local == NULL)
			continue;
		be = &local->backendStatus;
		if (be->st_databaseid != dboid || be->st_backendType != B_BG_WORKER)
			continue;
		type = GetBackgroundWorkerTypeByPid(be->st_procpid);
		if (type == NULL ||
			(strcmp(type, MR_WORKER_TYPE) != 0 && strcmp(type, MR_SCHEDULER_TYPE) != 0))
			continue;
		if (kill(be->st_procpid, SIGTERM) == 0)
			signalled++;
	}
	pgstat_clear_backend_activity_snapshot();
	return signalled;
}

/*
 * Keep schedulers away from the database and stop its workers; returns the
 * database's OID, or InvalidOid when there is nothing to do.
 */
static Oid
free_database(const char *dbname, const char *command)
{
	Oid			dboid = get_database_oid(dbname, true);
	int			stopped;

	if (!OidIsValid(dboid) || dboid == MyDatabaseId ||
		!mr_database_ownercheck(dboid, GetUserId()))
		return InvalidOid;
	mr_db_block(dboid);
	stopped = stop_database_workers(dboid);
	if (stopped > 0)
		ereport(LOG,
				(errmsg("migration_runner: stopping the scheduler and workers of database \"%s\" for %s",
						dbname, command),
				 errdetail("Its running migrations stay running and resume from their cursors once the command is over.")));
	return dboid;
}

static void
mr_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	bool		drop;
	const char *dbname = database_to_free(stmt, &drop);
	Oid			freed = InvalidOid;

	if (dbname != NULL)
		freed = free_database(dbname, GetCommandTagName(CreateCommandTag(stmt)));

	PG_TRY();
	{
		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		/* the command failed: the database's migrations go on at once */
		if (OidIsValid(freed))
			mr_db_unblock(freed, true);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (OidIsValid(freed))
		mr_db_unblock(freed, !drop);
	/* a copy of a database with running migrations runs them too */
	if (OidIsValid(freed) && IsA(stmt, CreatedbStmt))
		mr_wake_database_at_commit(get_database_oid(((CreatedbStmt *) stmt)->dbname, true));
	if (creates_extension(stmt))
		mr_wake_launcher_at_commit();
}

void
mr_install_utility_hook(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = mr_process_utility;
}

#else

/* before 14 the hook has another signature: those commands are not helped */
void
mr_install_utility_hook(void)
{
}

#endif
