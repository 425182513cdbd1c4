/*-------------------------------------------------------------------------
 *
 * alter.c
 *	  mig_alter: change the run options of a managed migration (batch size,
 *	  parallel, delays, timeouts, retries, target batch time) while it is
 *	  pending, running, paused, failed or cancelled.
 *
 * Only the options change; the relation, key and action are the migration's
 * identity, and changing them is defining a new version under a new name.
 * The options are validated by define.c's rules, so that mig_alter cannot
 * store what mig_define would refuse, and every argument is checked before
 * anything is written.  Runners read the options again at each batch, so a
 * running migration picks the change up at its next batch; this file only
 * writes the catalog.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"

#include "api.h"
#include "define.h"
#include "migration_runner.h"

PG_FUNCTION_INFO_V1(mig_alter);

/* argument positions of mig_alter */
enum
{
	ARG_NAME,
	ARG_BATCH_SIZE,
	ARG_PARALLEL,
	ARG_BATCH_DELAY,
	ARG_LOCK_TIMEOUT,
	ARG_STATEMENT_TIMEOUT,
	ARG_MAX_RETRIES,
	ARG_TARGET_BATCH_TIME,
	NUM_ARGS
};

static const RunOptionArgs alter_options = {
	.batch_size = ARG_BATCH_SIZE,
	.parallel = ARG_PARALLEL,
	.batch_delay = ARG_BATCH_DELAY,
	.lock_timeout = ARG_LOCK_TIMEOUT,
	.statement_timeout = ARG_STATEMENT_TIMEOUT,
	.max_retries = ARG_MAX_RETRIES,
	.target_batch_time = ARG_TARGET_BATCH_TIME,
	.altering = true
};

/* the UPDATE being built: its SET list and parameters ($1 is the id) */
typedef struct OptionUpdate
{
	StringInfoData set;
	int			nargs;
	Oid			types[NUM_ARGS + 1];
	Datum		args[NUM_ARGS + 1];
} OptionUpdate;

/*
 * Add "column = $n" to the SET list, with an int4 parameter.  An interval
 * option comes in whole milliseconds and is stored as mig_define stores it,
 * so that the two read back alike (and a redefinition compares equal).
 */
static void
set_option(OptionUpdate *u, const char *column, int value, bool is_ms)
{
	u->types[u->nargs] = INT4OID;
	u->args[u->nargs] = Int32GetDatum(value);
	u->nargs++;
	appendStringInfo(&u->set, "%s%s = $%d%s", u->set.len > 0 ? ", " : "",
					 column, u->nargs,
					 is_ms ? " * interval '1 millisecond'" : "");
}

Datum
mig_alter(PG_FUNCTION_ARGS)
{
	char	   *name = mr_name_arg(fcinfo, ARG_NAME);
	Migration	opts;
	Migration  *m;
	OptionUpdate u;

	/* every argument first: an error must leave the migration as it was */
	memset(&opts, 0, sizeof(opts));
	mr_read_run_options(fcinfo, &alter_options, &opts);

	/* the row lock serializes with status changes and with every batch */
	m = mr_existing_migration(name, true);
	mr_require_managed(m, "mig_alter");
	mr_check_ownership(m);
	if (strcmp(m->status, MR_STATUS_COMPLETED) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot alter completed migration \"%s\"", m->name),
				 errdetail("A completed migration runs no more batches."),
				 errhint("To run it again with other options, define a new version under a new name, such as \"%s\".",
						 mr_next_version_name(m->name))));

	memset(&u, 0, sizeof(u));
	initStringInfo(&u.set);
	u.nargs = 1;
	u.types[0] = INT8OID;
	u.args[0] = Int64GetDatum(m->id);

	if (opts.batch_size > 0)
	{
		set_option(&u, "batch_size", opts.batch_size, false);
		/* adaptive sizing starts again from the new size */
		appendStringInfoString(&u.set, ", current_batch_size = NULL");
	}
	if (opts.parallel > 0)
		set_option(&u, "parallel", opts.parallel, false);
	/* -1: passed as NULL */
	if (opts.batch_delay_ms >= 0)
		set_option(&u, "batch_delay", opts.batch_delay_ms, true);
	if (opts.lock_timeout_ms >= 0)
		set_option(&u, "lock_timeout", opts.lock_timeout_ms, true);
	if (opts.statement_timeout_ms >= 0)
		set_option(&u, "statement_timeout", opts.statement_timeout_ms, true);
	if (opts.max_retries >= 0)
		set_option(&u, "max_retries", opts.max_retries, false);
	if (opts.target_batch_ms >= 0)
		set_option(&u, "target_batch_time", opts.target_batch_ms, true);

	/* all NULL: nothing to change, but the checks above still apply */
	if (u.nargs == 1)
		PG_RETURN_VOID();

	mr_catalog_exec(psprintf("UPDATE %s SET %s WHERE id = $1",
							 mr_catalog_table("migrations"), u.set.data),
					u.nargs, u.types, u.args, SPI_OK_UPDATE);
	/* ... and so does each slice's, which a slice sizes on its own */
	if (opts.batch_size > 0)
		mr_catalog_exec(psprintf("UPDATE %s SET current_batch_size = NULL "
								 "WHERE migration_id = $1",
								 mr_catalog_table("migration_slices")),
						1, u.types, u.args, SPI_OK_UPDATE);

	/*
	 * A running migration allowed more slices: let the launcher start their
	 * workers now rather than at its next poll.
	 */
	if (opts.parallel > 0 && strcmp(m->status, MR_STATUS_RUNNING) == 0)
		mr_wake_launcher_at_commit();
	PG_RETURN_VOID();
}
