/*-------------------------------------------------------------------------
 *
 * seed.c
 *	  The seed's functions, for application-driven migrations: mig_has_run,
 *	  mig_start, mig_update_progress, mig_complete and mig_fail.  They keep
 *	  the seed's semantics (hasMigrationRun, startMigration, ...); mig_start
 *	  also starts managed migrations.
 *
 * Names cannot be squatted.  Any role may start a migration under any free
 * name, so another role could take the name of an application's migration
 * and complete it.  mig_has_run therefore counts a completed migration only
 * for the role that owns it and the roles that have its privileges through
 * membership (a superuser's privileges over every role do not count), so
 * another role's row never makes an application skip its migration; and
 * mig_start of a name owned by a role whose privileges the caller lacks
 * fails loudly, saying who owns it and how to remove it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "api.h"
#include "chain.h"
#include "migration_runner.h"

PG_FUNCTION_INFO_V1(mig_has_run);
PG_FUNCTION_INFO_V1(mig_start);
PG_FUNCTION_INFO_V1(mig_update_progress);
PG_FUNCTION_INFO_V1(mig_complete);
PG_FUNCTION_INFO_V1(mig_fail);

/*
 * Is a migration owned by this role the caller's own work?  True for the
 * owner and for roles that have its privileges through membership.  Not
 * for a superuser merely because it is one: a superuser may act on every
 * migration, but another role's completed migration is not proof that the
 * superuser's application has run its own.
 */
static bool
counts_as_own(Oid owner)
{
	Oid			me = GetUserId();

	if (me == owner)
		return true;
	if (superuser_arg(me))
		return is_member_of_role_nosuper(me, owner);
	return has_privs_of_role(me, owner);
}

Datum
mig_has_run(PG_FUNCTION_ARGS)
{
	char	   *name = mr_name_arg(fcinfo, 0);
	Migration  *m = mr_migration_by_name(name, false);

	PG_RETURN_BOOL(m != NULL && STATUS_IS(m, MR_STATUS_COMPLETED) &&
				   counts_as_own(m->owner));
}

/*
 * A name no migration has: track it as application-driven, as the seed's
 * startMigration inserts a row.  Returns 0 if a concurrent session inserted
 * the name first (then the caller re-reads and applies the seed's rules).
 */
static int64
start_application_migration(const char *name)
{
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		args[2];
	int64		id;
	char	   *sql;

	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration name must not be empty")));
	if (strlen(name) > 200)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration name is too long"),
				 errdetail("The name is %zu bytes long; the limit is 200 bytes.",
						   strlen(name))));

	args[0] = CStringGetTextDatum(name);
	args[1] = ObjectIdGetDatum(GetUserId());
	sql = psprintf("INSERT INTO %s (name, status, owner, started_at, processed) "
				   "VALUES ($1, 'running', $2::regrole, now(), 0) "
				   "ON CONFLICT (name) DO NOTHING RETURNING id",
				   mr_catalog_table("migrations"));
	id = mr_catalog_insert_returning_id(sql, 2, argtypes, args, NULL);

	if (id != 0)
	{
		mr_notify_state_change(name, "", MR_STATUS_RUNNING, 0);
		mr_announce_change_at_commit();
		ereport(NOTICE,
				(errmsg("migration \"%s\" is tracked as an application-driven migration",
						name),
				 errdetail("Report progress with mig_update_progress() and finish with mig_complete() or mig_fail().")));
	}
	return id;
}

/*
 * mig_start's ownership check.  Its hint is for the application whose
 * migration's name another role holds: it says who, and how to free it.
 */
static void
check_start_privileges(Migration *m)
{
	const char *owner;
	const char *quoted;

	if (has_privs_of_role(GetUserId(), m->owner))
		return;
	owner = GetUserNameFromId(m->owner, true);
	quoted = quote_literal_cstr(m->name);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("must be owner of migration \"%s\"", m->name),
			 errdetail("The migration is owned by role \"%s\".",
					   owner ? owner : "(dropped)"),
			 owner ?
			 errhint("Migration names are unique in a database. Choose another name, or ask role \"%s\" or a superuser to remove this migration with mig_drop(%s).",
					 owner, quoted) :
			 errhint("Migration names are unique in a database. Choose another name, or ask a superuser to remove this migration with mig_drop(%s).",
					 quoted)));
}

/*
 * A superuser's application finds another role's migration completed under
 * its name: mig_has_run said false, so say why the start is refused.
 */
static void
check_completed_by_other(Migration *m)
{
	const char *owner;

	if (!STATUS_IS(m, MR_STATUS_COMPLETED) || counts_as_own(m->owner))
		return;
	owner = GetUserNameFromId(m->owner, true);
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("migration \"%s\" already completed", m->name),
			 errdetail("It was completed by role \"%s\"; mig_has_run() counts a migration only for its owner and the members of the owning role.",
					   owner ? owner : "(dropped)"),
			 errhint("If it is not yours, remove it with mig_drop(%s) and start it again.",
					 quote_literal_cstr(m->name))));
}

Datum
mig_start(PG_FUNCTION_ARGS)
{
	char	   *name = mr_name_arg(fcinfo, 0);
	Migration  *m = mr_migration_by_name(name, true);
	const char *to;
	int64		id;

	if (m == NULL)
	{
		id = start_application_migration(name);
		if (id != 0)
			PG_RETURN_INT64(id);
		m = mr_existing_migration(name, true);
	}

	/* privileges first: another role's migration is refused whatever its status */
	check_start_privileges(m);
	check_completed_by_other(m);
	if (MigrationIsManaged(m))
		mr_chain_check_not_continued(m);
	if (!mr_transition(m, MIG_OP_START, &to))
		PG_RETURN_INT64(m->id);

	if (MigrationIsManaged(m))
	{
		/*
		 * pending, failed or cancelled: go on from the cursor.  One that
		 * waits for other migrations starts (started_at) when its run does.
		 */
		mr_set_status(m, to, mr_chain_is_waiting(m) ?
					  "started_at = NULL, " MR_CLEAR_ERROR :
					  "started_at = now(), " MR_CLEAR_ERROR);
		mr_warn_if_no_worker(m);
	}
	else
	{
		/* the seed resets a failed migration's progress */
		m->processed = 0;		/* what the notification reports */
		mr_set_status(m, to,
					  "started_at = now(), " MR_CLEAR_ERROR ", processed = 0, completed_at = NULL");
	}
	PG_RETURN_INT64(m->id);
}

Datum
mig_update_progress(PG_FUNCTION_ARGS)
{
	int64		id;
	int64		processed;
	Migration  *m;
	char	   *sql;

	mr_require_arg(fcinfo, 0, "id");
	mr_require_arg(fcinfo, 1, "processed");
	id = PG_GETARG_INT64(0);
	processed = PG_GETARG_INT64(1);
	if (processed < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("processed must not be negative"),
				 errdetail("It is added to the migration's count of processed rows.")));

	/* as in the seed, an unknown id is not an error */
	m = mr_migration_by_id(id, false);
	if (m == NULL)
		PG_RETURN_VOID();
	mr_require_application_driven(m, "mig_update_progress");
	mr_check_ownership(m);

	/* one atomic increment: concurrent reports never lose an update */
	sql = psprintf("UPDATE %s SET processed = processed + " INT64_FORMAT
				   " WHERE id = " INT64_FORMAT,
				   mr_catalog_table("migrations"), processed, id);
	mr_catalog_exec(sql, 0, NULL, NULL, SPI_OK_UPDATE);
	PG_RETURN_VOID();
}

Datum
mig_complete(PG_FUNCTION_ARGS)
{
	Migration  *m;
	const char *to;

	mr_require_arg(fcinfo, 0, "id");
	m = mr_existing_migration_by_id(PG_GETARG_INT64(0));
	mr_require_application_driven(m, "mig_complete");
	mr_check_ownership(m);
	if (mr_transition(m, MIG_OP_COMPLETE, &to))
		mr_set_status(m, to, "completed_at = now()");
	PG_RETURN_VOID();
}

Datum
mig_fail(PG_FUNCTION_ARGS)
{
	Migration  *m;
	const char *to;
	char	   *extra;

	mr_require_arg(fcinfo, 0, "id");
	mr_require_arg(fcinfo, 1, "error");
	m = mr_existing_migration_by_id(PG_GETARG_INT64(0));
	mr_require_application_driven(m, "mig_fail");
	mr_check_ownership(m);
	if (!mr_transition(m, MIG_OP_FAIL, &to))
		PG_RETURN_VOID();
	extra = psprintf("error = %s, completed_at = NULL",
					 quote_literal_cstr(text_to_cstring(PG_GETARG_TEXT_PP(1))));
	mr_set_status(m, to, extra);
	PG_RETURN_VOID();
}
