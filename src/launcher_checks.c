/*-------------------------------------------------------------------------
 *
 * launcher_checks.c
 *	  What the launcher checks on a migration right before it starts a
 *	  worker for it: that it is still running and may run now (every
 *	  migration it runs after completed), and that its owner can run a
 *	  worker at all (else the migration is marked failed).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/syscache.h"

#include "chain.h"
#include "compat.h"
#include "launcher.h"
#include "migration_runner.h"

/*
 * Why the owner cannot run a worker, or NULL if it can.  A worker connects
 * as the owner, and the connection checks what is checked here; failing
 * there would leave the migration running with a worker that dies at once.
 */
char *
mr_owner_problem(Oid owner)
{
	HeapTuple	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(owner));
	const char *rolname;
	char	   *problem = NULL;

	if (!HeapTupleIsValid(tuple))
		return psprintf("owner role with OID %u no longer exists", owner);
	rolname = NameStr(((Form_pg_authid) GETSTRUCT(tuple))->rolname);
	if (MR_WORKER_NEEDS_LOGIN && !((Form_pg_authid) GETSTRUCT(tuple))->rolcanlogin)
		problem = psprintf("owner role \"%s\" cannot log in, and a background worker "
						   "can connect only as a role with LOGIN before PostgreSQL 17; "
						   "grant LOGIN or run it with CALL mig_run",
						   rolname);
	else if (mr_database_aclcheck(MyDatabaseId, owner, ACL_CONNECT) != ACLCHECK_OK)
		problem = psprintf("owner role \"%s\" has no CONNECT privilege on database \"%s\", "
						   "so a background worker cannot connect as it; "
						   "grant CONNECT or run it with CALL mig_run",
						   rolname, get_database_name(MyDatabaseId));
	ReleaseSysCache(tuple);
	return problem;
}

void
mr_fail_unrunnable(int64 id, const char *problem)
{
	Migration  *m = mr_migration_by_id(id, true);

	if (m == NULL || strcmp(m->status, MR_STATUS_RUNNING) != 0)
		return;
	ereport(LOG,
			(errmsg("migration_runner: migration \"%s\" cannot be run: %s",
					m->name, problem)));
	mr_set_status(m, MR_STATUS_FAILED,
				  psprintf("error = %s, worker_pid = NULL", quote_literal_cstr(problem)));
}

/*
 * Is the migration still running, and every migration it runs after
 * completed, in a snapshot taken after its runner locks were looked at?
 * A CALL mig_run that ended since the items were read left its lock free;
 * a worker started for it would hold that lock for a moment and refuse the
 * next CALL.
 */
bool
mr_still_runnable(int64 id)
{
	Oid			argtype = INT8OID;
	Datum		arg = Int64GetDatum(id);

	/* not read-only: the query takes a new snapshot */
	if (SPI_execute_with_args(psprintf("SELECT FROM %s m WHERE m.id = $1 "
									   "AND m.status = 'running' AND %s",
									   mr_catalog_table("migrations"),
									   mr_chain_ready_condition("m")),
							  1, &argtype, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read migration " INT64_FORMAT, id);
	return SPI_processed > 0;
}
