/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  The configuration parameters of migration_runner.
 *
 * Parameters that shape one batch (delay, timeouts, retries, target time)
 * are the defaults for migrations that leave the matching mig_define option
 * NULL; they are read by the process that runs the batch, so for the
 * background worker they come from the server configuration.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "compat.h"
#include "migration_runner.h"

char	   *mr_database = NULL;
bool		mr_database_explicit = false;
char	   *mr_databases = NULL;
int			mr_max_workers = 2;
int			mr_poll_interval_ms = 10000;
bool		mr_enabled = true;
int			mr_batch_delay_ms = 0;
int			mr_lock_timeout_ms = 2000;
int			mr_statement_timeout_ms = 30000;
int			mr_max_retries = 5;
int			mr_target_batch_ms = 0;
int			mr_min_batch_size = 10;
int			mr_max_batch_size = 100000;
bool		mr_synchronous_commit = false;
int			mr_history_size = 1000;
int			mr_max_replica_lag_ms = 0;
int			mr_max_lock_waiters = 0;
int			mr_max_wal_rate_kb = 0;
int			mr_throttle_sleep_ms = 1000;
bool		mr_citus_shards = true;
int			mr_node_wait_limit_ms = 300000;

/* migration_runner.database, deprecated: note whether it was set at all */
static bool
check_database(char **newval, void **extra, GucSource source)
{
	if (source > PGC_S_DYNAMIC_DEFAULT)
		mr_database_explicit = true;
	return true;
}

/* migration_runner.databases: '*' or a list of database names */
static bool
check_databases(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *names;
	bool		ok = SplitIdentifierString(copy, ',', &names);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	list_free(names);
	pfree(copy);
	return ok;
}

/*
 * Do the background workers serve this database?  migration_runner.databases
 * names them ('*': all); the deprecated migration_runner.database, when it
 * is set and databases is not, names the only one.
 */
bool
mr_database_served(const char *dbname)
{
	char	   *copy;
	List	   *names;
	ListCell   *lc;
	bool		served = false;

	if (mr_database_explicit && strcmp(mr_databases, "*") == 0)
		return strcmp(dbname, mr_database) == 0;
	copy = pstrdup(mr_databases);
	if (!SplitIdentifierString(copy, ',', &names))
		return false;			/* the check hook rules it out */
	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);

		if (strcmp(name, "*") == 0 || strcmp(name, dbname) == 0)
			served = true;
	}
	list_free(names);
	pfree(copy);
	return served;
}

/*
 * The only database served, when there is just one (the deprecated setting,
 * or a list of one name), else NULL.
 */
const char *
mr_only_database(void)
{
	char	   *copy;
	List	   *names;
	const char *only = NULL;

	if (mr_database_explicit && strcmp(mr_databases, "*") == 0)
		return mr_database;
	copy = pstrdup(mr_databases);
	if (SplitIdentifierString(copy, ',', &names) && list_length(names) == 1 &&
		strcmp(linitial(names), "*") != 0)
		only = pstrdup(linitial(names));
	list_free(names);
	pfree(copy);
	return only;
}

void
mr_define_gucs(void)
{
	/*
	 * Deprecated: read once, at postmaster start.  A PGC_POSTMASTER
	 * parameter can only be created while the preload runs; in a session
	 * that loads the library on its own (no worker exists) the parameter is
	 * only informative, so it is created reloadable instead.
	 */
	GucContext	database_context = process_shared_preload_libraries_in_progress ?
		PGC_POSTMASTER : PGC_SIGHUP;

	DefineCustomStringVariable("migration_runner.databases",
							   "Databases whose migrations the background workers run.",
							   "A comma-separated list of database names, or '*' for every "
							   "database that allows connections and is not a template.",
							   &mr_databases,
							   "*",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   check_databases, NULL, NULL);

	DefineCustomStringVariable("migration_runner.database",
							   "Deprecated: the only database whose migrations the background workers run.",
							   "Use migration_runner.databases.  When this is set and "
							   "migration_runner.databases is not, it names the only database served.",
							   &mr_database,
							   "postgres",
							   database_context,
							   0,
							   check_database, NULL, NULL);

	DefineCustomIntVariable("migration_runner.max_workers",
							"Maximum number of background workers running migrations at once.",
							"Each running migration, or each running slice of a migration that "
							"runs in parallel, needs one background worker slot "
							"(max_worker_processes).",
							&mr_max_workers,
							2, 0, MR_MAX_WORKERS_LIMIT,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.poll_interval",
							"How often the launcher looks for running migrations without being woken.",
							"mig_start and mig_resume wake the launcher at once; this is a safety net.",
							&mr_poll_interval_ms,
							10000, 100, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("migration_runner.enabled",
							 "Whether the launcher starts background workers for running migrations.",
							 NULL,
							 &mr_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.batch_delay",
							"Default pause between two batches of a migration.",
							NULL,
							&mr_batch_delay_ms,
							0, 0, 3600 * 1000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.lock_timeout",
							"Default lock_timeout of each batch (0 disables it).",
							NULL,
							&mr_lock_timeout_ms,
							2000, 0, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.statement_timeout",
							"Default statement_timeout of each batch (0 disables it).",
							NULL,
							&mr_statement_timeout_ms,
							30000, 0, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.max_retries",
							"Default number of times a batch is retried after a transient error.",
							NULL,
							&mr_max_retries,
							5, 0, 1000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.target_batch_time",
							"Default target duration of a batch for adaptive batch sizes (0 keeps the size fixed).",
							NULL,
							&mr_target_batch_ms,
							0, 0, 3600 * 1000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.min_batch_size",
							"Smallest batch that adaptive sizing or timeout halving may choose.",
							NULL,
							&mr_min_batch_size,
							10, 1, MR_MAX_BATCH_SIZE,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.max_batch_size",
							"Largest batch that adaptive sizing may choose.",
							NULL,
							&mr_max_batch_size,
							100000, 1, MR_MAX_BATCH_SIZE,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("migration_runner.synchronous_commit",
							 "Whether batch commits wait for their WAL to be flushed.",
							 "Off is safe: a batch's data and its progress commit together, "
							 "so a batch whose commit is lost in a crash is simply run again.",
							 &mr_synchronous_commit,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.history_size",
							"Number of recent batches kept per migration in migration_batches.",
							NULL,
							&mr_history_size,
							1000, 0, INT_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.max_replica_lag",
							"Pause batches while a standby lags by more than this: the largest of its write, flush and replay lag (0 disables).",
							NULL,
							&mr_max_replica_lag_ms,
							0, 0, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.max_lock_waiters",
							"Pause batches while more sessions than this wait on locks the runner holds (0 disables).",
							NULL,
							&mr_max_lock_waiters,
							0, 0, INT_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.max_wal_rate",
							"Pause batches while the server writes WAL faster than this many kilobytes per second (0 disables).",
							"The rate is the whole server's, measured between two batches.",
							&mr_max_wal_rate_kb,
							0, 0, INT_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.throttle_sleep",
							"How long a throttled runner sleeps before it looks at the server's health again.",
							NULL,
							&mr_throttle_sleep_ms,
							1000, 10, 3600 * 1000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("migration_runner.citus_shards",
							 "Run migrations of hash-distributed Citus tables shard by shard.",
							 "Read by mig_define: off keeps one key range over the whole "
							 "distributed table, run through the coordinator.",
							 &mr_citus_shards,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("migration_runner.node_wait_limit",
							"How long a per-shard run waits for a Citus node it cannot reach before the migration fails.",
							"The other nodes' shards go on meanwhile.",
							&mr_node_wait_limit_ms,
							300000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("migration_runner");
}
