/*-------------------------------------------------------------------------
 *
 * api.c
 *	  What the SQL-callable functions of migration_runner share: their
 *	  arguments, finding the migration they name (or an error that says it
 *	  does not exist), the checks of its kind, and the warning that no
 *	  background worker will run a started migration.  Also mig_define,
 *	  which define.c implements.
 *
 * The functions themselves live by concern: seed.c (the seed's functions for
 * application-driven migrations), control.c (pause, resume, cancel, reset,
 * drop, wait), alter.c (mig_alter), mig_run.c (CALL mig_run) and status.c
 * (the one table of the status transitions they all obey).  Every function
 * that changes a migration checks that the caller has the privileges of its
 * owner, and writes the catalog through catalog.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "api.h"
#include "migration_runner.h"

PG_FUNCTION_INFO_V1(mig_define);

char *
mr_name_arg(FunctionCallInfo fcinfo, int argno)
{
	mr_require_arg(fcinfo, argno, "name");
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

Migration *
mr_existing_migration(const char *name, bool for_update)
{
	Migration  *m = mr_migration_by_name(name, for_update);

	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration \"%s\" does not exist", name)));
	return m;
}

Migration *
mr_existing_migration_by_id(int64 id)
{
	Migration  *m = mr_migration_by_id(id, true);

	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration with id " INT64_FORMAT " does not exist", id)));
	return m;
}

void
mr_require_managed(Migration *m, const char *function)
{
	if (!MigrationIsManaged(m))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("migration \"%s\" is application-driven", m->name),
				 errdetail("%s() works only on migrations defined with mig_define().",
						   function)));
}

void
mr_require_application_driven(Migration *m, const char *function)
{
	if (MigrationIsManaged(m))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("migration \"%s\" is managed by migration_runner", m->name),
				 errdetail("%s() is for application-driven migrations; the batch engine records the progress of managed ones.",
						   function),
				 errhint("Use mig_pause() or mig_cancel() to stop a managed migration.")));
}

/*
 * Tell the caller when no background worker will pick a started migration
 * up, and how to run it instead.
 */
void
mr_warn_if_no_worker(Migration *m)
{
	const char *reason = NULL;

	if (!mr_preloaded)
		reason = "The library migration_runner is not in shared_preload_libraries.";
	else if (!mr_enabled)
		reason = "migration_runner.enabled is off.";
	else if (mr_max_workers == 0)
		reason = "migration_runner.max_workers is 0.";
	else if (!mr_database_served(get_database_name(MyDatabaseId)))
	{
		const char *only = mr_only_database();

		reason = only != NULL ?
			psprintf("The launcher runs migrations in database \"%s\" only.", only) :
			psprintf("The launcher runs migrations in the databases that migration_runner.databases names only: %s.",
					 mr_databases);
	}
	if (reason == NULL)
		return;
	ereport(WARNING,
			(errmsg("no background worker will run migration \"%s\"", m->name),
			 errdetail("%s", reason),
			 errhint("Run it in this session with CALL mig_run(%s).", quote_literal_cstr(m->name))));
}

Datum
mig_define(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(mr_define_migration(fcinfo));
}
