/*-------------------------------------------------------------------------
 *
 * cluster_launcher.c
 *	  The static background worker that serves every database of the
 *	  server: it connects to no database, reads pg_database, and starts a
 *	  scheduler (scheduler.c) in each database that may have work.
 *
 * It starts a scheduler for a database at once when a transaction there
 * asked for it at commit (mig_start, mig_resume, CREATE EXTENSION ...: see
 * dbstate.c), and, as a probe, for every database it serves at start-up
 * and at each poll (migration_runner.poll_interval): a probe leaves at once
 * when its database has no extension, an outdated one, or nothing to run.
 * Probes run a few at a time, so that a server with many databases does
 * not fill max_worker_processes with them.  A database is served unless it
 * is a template, does not allow connections, or is not named by
 * migration_runner.databases.
 *
 * A scheduler that cannot start (no background worker slot) is tried again
 * with a growing wait, logged once; one that fails before it serves its
 * database (it could not connect: the database was dropped meanwhile, say)
 * is tried again after a backoff of its own, never in a tight loop.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "launcher.h"
#include "migration_runner.h"
#include "shared.h"
#include "worker.h"

/* at most this many probes at once */
#define MAX_PROBES			2

/* the waits for a free background worker slot, and after a failed start */
#define MIN_BACKOFF_MS		1000
#define MAX_SLOT_BACKOFF_MS 10000

/* a database the launcher knows: what it serves and the scheduler it started */
typedef struct KnownDatabase
{
	Oid			dboid;			/* InvalidOid: free entry */
	char		name[NAMEDATALEN];
	bool		seen;			/* in pg_database and served, at the last scan */
	bool		probe_pending;	/* to probe in this round */
	bool		probing;		/* its live scheduler was started as a probe */
	BackgroundWorkerHandle *handle; /* its scheduler, NULL if none of ours */
	TimestampTz retry_at;		/* after a failed start: not before this */
	int			backoff_ms;
} KnownDatabase;

static KnownDatabase known[MR_MAX_DATABASES];

/* no background worker slot for a scheduler: logged once, retried later */
static bool slot_shortage = false;
static int	slot_backoff_ms = 0;
static TimestampTz slot_retry_at = 0;

void
mr_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	/* come back after a crash or an error, but never in a tight loop */
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "migration_runner");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "mr_cluster_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "migration_runner launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "migration_runner launcher");
	RegisterBackgroundWorker(&worker);
}

static KnownDatabase *
find_known(Oid dboid, bool create)
{
	KnownDatabase *free_entry = NULL;
	int			i;

	for (i = 0; i < MR_MAX_DATABASES; i++)
	{
		if (known[i].dboid == dboid)
			return &known[i];
		if (known[i].dboid == InvalidOid && free_entry == NULL)
			free_entry = &known[i];
	}
	if (create && free_entry != NULL)
	{
		memset(free_entry, 0, sizeof(KnownDatabase));
		free_entry->dboid = dboid;
	}
	return create ? free_entry : NULL;
}

/*
 * Read pg_database (a shared catalog: no database connection needed) and
 * note which databases are served.  Those that are gone or no longer
 * served are forgotten, unless a scheduler of ours still runs there.
 */
static void
scan_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	Oid		   *existing;
	int			nexisting = 0;
	int			i;

	for (i = 0; i < MR_MAX_DATABASES; i++)
		known[i].seen = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	existing = palloc(sizeof(Oid) * MR_MAX_DATABASES);
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);
		KnownDatabase *k;

		if (nexisting < MR_MAX_DATABASES)
			existing[nexisting++] = db->oid;
		if (db->datistemplate || !db->datallowconn ||
			!mr_database_served(NameStr(db->datname)))
			continue;
		k = find_known(db->oid, true);
		if (k == NULL)
			continue;			/* more databases than entries: next time */
		k->seen = true;
		strlcpy(k->name, NameStr(db->datname), NAMEDATALEN);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	/* with more databases than entries, forget nothing */
	if (nexisting < MR_MAX_DATABASES)
		mr_db_forget_missing(existing, nexisting);
	CommitTransactionCommand();

	for (i = 0; i < MR_MAX_DATABASES; i++)
		if (known[i].dboid != InvalidOid && !known[i].seen &&
			known[i].handle == NULL)
			known[i].dboid = InvalidOid;
}

/* register a scheduler for a database; false if there is no slot */
static bool
start_scheduler(KnownDatabase *k)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext old;
	bool		ok;

	mr_describe_dynamic_worker(&worker, "mr_scheduler_main", MR_SCHEDULER_TYPE);
	snprintf(worker.bgw_name, BGW_MAXLEN, "migration_runner scheduler for %s",
			 k->name);
	worker.bgw_main_arg = ObjectIdGetDatum(k->dboid);
	memcpy(worker.bgw_extra, &k->dboid, sizeof(Oid));

	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(old);
	if (ok)
		k->handle = handle;
	return ok;
}

static void
note_no_slot(const char *dbname)
{
	if (!slot_shortage)
		ereport(LOG,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("migration_runner: no free background worker slot for the scheduler of database \"%s\"",
						dbname),
				 errdetail("All %d background worker slots (max_worker_processes) are in use.",
						   max_worker_processes),
				 errhint("The scheduler starts when a slot frees; raise max_worker_processes to avoid the wait.")));
	slot_shortage = true;
	slot_backoff_ms = slot_backoff_ms == 0 ? MIN_BACKOFF_MS :
		Min(slot_backoff_ms * 2, MAX_SLOT_BACKOFF_MS);
	slot_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												slot_backoff_ms);
}

/*
 * Reap the schedulers that stopped.  One that failed before serving its
 * database while a wake-up waits backs off; the others may start again at
 * once.  Returns how many probes still run.
 */
static int
reap_schedulers(void)
{
	int			probes = 0;
	int			i;

	for (i = 0; i < MR_MAX_DATABASES; i++)
	{
		KnownDatabase *k = &known[i];
		pid_t		pid;

		if (k->handle == NULL)
			continue;
		if (GetBackgroundWorkerPid(k->handle, &pid) != BGWH_STOPPED)
		{
			probes += k->probing ? 1 : 0;
			continue;
		}
		pfree(k->handle);
		k->handle = NULL;
		k->probing = false;
		if (mr_db_failed_start(k->dboid))
		{
			k->backoff_ms = k->backoff_ms == 0 ? MIN_BACKOFF_MS :
				Min(k->backoff_ms * 2, Max(mr_poll_interval_ms, MIN_BACKOFF_MS));
			k->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  k->backoff_ms);
		}
		else
			k->backoff_ms = 0;
	}
	return probes;
}

/*
 * Start the schedulers that are due: for databases with a pending wake-up,
 * and probes, MAX_PROBES at a time.
 * Returns how long to sleep at most.
 */
static long
start_schedulers(int probes)
{
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = mr_poll_interval_ms;
	int			i;

	for (i = 0; i < MR_MAX_DATABASES; i++)
	{
		KnownDatabase *k = &known[i];
		bool		probe;

		if (k->dboid == InvalidOid || !k->seen)
			continue;
		if (k->handle != NULL)
		{
			/* its scheduler runs: no probe needed */
			k->probe_pending = false;
			continue;
		}
		if (k->retry_at > now || slot_retry_at > now)
		{
			sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now,
												Max(k->retry_at, slot_retry_at)) + 1);
			continue;
		}
		probe = k->probe_pending && probes < MAX_PROBES;
		if (!mr_db_may_start(k->dboid, !probe))
		{
			/* a scheduler serves it, or a command keeps them away */
			if (probe)
				k->probe_pending = false;
			continue;
		}
		if (!start_scheduler(k))
		{
			note_no_slot(k->name);
			sleep_ms = Min(sleep_ms, slot_backoff_ms);
			break;
		}
		slot_shortage = false;
		slot_backoff_ms = 0;
		if (probe)
		{
			k->probing = true;
			probes++;
		}
		k->probe_pending = false;
	}
	return sleep_ms;
}

/*
 * A new round of probes: every database served.  Not while the last round
 * is still under way: with more databases than MAX_PROBES, the first ones
 * would otherwise be probed again and again, and the others never.
 */
static void
plan_probes(void)
{
	int			i;

	for (i = 0; i < MR_MAX_DATABASES; i++)
		if (known[i].dboid != InvalidOid && known[i].seen && known[i].probe_pending)
			return;
	for (i = 0; i < MR_MAX_DATABASES; i++)
		if (known[i].dboid != InvalidOid && known[i].seen)
			known[i].probe_pending = true;
}

void
mr_cluster_launcher_main(Datum main_arg)
{
	TimestampTz next_poll = 0;
	MemoryContext loopcxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	/* a cancel request has no query to cancel here: ignore it, as pg_cron does */
	pqsignal(SIGINT, SIG_IGN);
	BackgroundWorkerUnblockSignals();

	mr_register_cluster_launcher();
	/* shared catalogs only: no database is held by the launcher */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("migration_runner launcher");
	if (mr_database_explicit)
		ereport(WARNING,
				(errmsg("migration_runner.database is deprecated"),
				 errdetail("The background workers serve database \"%s\" only.",
						   mr_database),
				 errhint("Use migration_runner.databases instead, a list of database names or '*' for all.")));

	loopcxt = AllocSetContextCreate(TopMemoryContext, "migration_runner launcher",
									ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		sleep_ms = mr_poll_interval_ms;
		bool		rescan_all;
		int			probes;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextSwitchTo(loopcxt);
		probes = reap_schedulers();
		rescan_all = mr_take_rescan_all();
		if (mr_enabled)
		{
			pgstat_report_activity(STATE_RUNNING, "looking for databases");
			scan_databases();
			MemoryContextSwitchTo(loopcxt);
			/* after a wake-up found the shared table full: probe them all */
			if (rescan_all)
				plan_probes();
			if (GetCurrentTimestamp() >= next_poll)
			{
				plan_probes();
				next_poll = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														mr_poll_interval_ms);
			}
			sleep_ms = start_schedulers(probes);
			sleep_ms = Min(sleep_ms,
						   TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
														   next_poll) + 1);
			pgstat_report_activity(STATE_IDLE, NULL);
		}
		else
			next_poll = 0;		/* probe everything once enabled again */
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loopcxt);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(sleep_ms, 10L), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
