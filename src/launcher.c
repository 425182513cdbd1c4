/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The static background worker that starts one dynamic worker per
 *	  running managed migration.
 *
 * The launcher connects to migration_runner.database and sleeps on its
 * latch.  mig_start and mig_resume set that latch after their transaction
 * commits, and a worker's exit sets it too (bgw_notify_pid), so a started
 * migration begins within milliseconds; the poll interval is only a safety
 * net.  After a restart or a crash it finds the migrations still running and
 * resumes them from their cursors.
 *
 * A migration that cannot be run (its owner was dropped, or cannot log in
 * before PostgreSQL 17) is marked failed; it never stops the launcher.  A
 * worker that exits without finishing its migration is started again after
 * a backoff that grows while it keeps exiting quickly.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "migration_runner.h"
#include "worker.h"

#define MAX_TRACKED			64
#define MIN_BACKOFF_MS		1000
#define MAX_BACKOFF_MS		60000
#define QUICK_EXIT_MS		10000

/* what the launcher remembers about one migration's worker */
typedef struct TrackedWorker
{
	int64		migration_id;	/* 0: free entry */
	BackgroundWorkerHandle *handle; /* NULL once the worker is gone */
	TimestampTz started_at;
	int			backoff_ms;		/* wait before the next start */
} TrackedWorker;

static TrackedWorker tracked[MAX_TRACKED];

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
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "mr_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "migration_runner launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "migration_runner launcher");
	RegisterBackgroundWorker(&worker);
}

static TrackedWorker *
find_tracked(int64 migration_id)
{
	int			i;

	for (i = 0; i < MAX_TRACKED; i++)
		if (tracked[i].migration_id == migration_id)
			return &tracked[i];
	return NULL;
}

/*
 * Forget workers that exited; returns how many still run.
 */
static int
reap_workers(void)
{
	int			running = 0;
	int			i;

	for (i = 0; i < MAX_TRACKED; i++)
	{
		pid_t		pid;

		if (tracked[i].handle == NULL)
			continue;
		if (GetBackgroundWorkerPid(tracked[i].handle, &pid) == BGWH_STOPPED)
		{
			pfree(tracked[i].handle);
			tracked[i].handle = NULL;
		}
		else
			running++;
	}
	return running;
}

/*
 * A slot for a migration about to get a worker: its old entry, a free one,
 * or the entry of a finished worker that started longest ago.
 */
static TrackedWorker *
tracking_slot(int64 migration_id)
{
	TrackedWorker *slot = find_tracked(migration_id);
	int			i;

	if (slot != NULL)
		return slot;
	for (i = 0; i < MAX_TRACKED; i++)
	{
		if (tracked[i].handle != NULL)
			continue;
		if (slot == NULL || tracked[i].migration_id == 0 ||
			tracked[i].started_at < slot->started_at)
			slot = &tracked[i];
		if (slot->migration_id == 0)
			break;
	}
	return slot;
}

/*
 * Why the owner cannot run a worker, or NULL if it can.
 */
static char *
owner_problem(Oid owner)
{
	HeapTuple	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(owner));
	char	   *problem = NULL;

	if (!HeapTupleIsValid(tuple))
		return psprintf("owner role with OID %u no longer exists", owner);
	if (MR_WORKER_NEEDS_LOGIN && !((Form_pg_authid) GETSTRUCT(tuple))->rolcanlogin)
		problem = psprintf("owner role \"%s\" cannot log in, and a background worker "
						   "can connect only as a role with LOGIN before PostgreSQL 17; "
						   "grant LOGIN or run it with CALL mig_run",
						   NameStr(((Form_pg_authid) GETSTRUCT(tuple))->rolname));
	ReleaseSysCache(tuple);
	return problem;
}

static void
fail_migration(int64 id, const char *problem)
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

static bool
start_worker(int64 id, Oid owner, const char *name, TrackedWorker *slot)
{
	BackgroundWorker worker;
	MigrationWorkerArgs args;
	BackgroundWorkerHandle *handle;
	MemoryContext old;
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "migration_runner");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "mr_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "migration_runner worker for %s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "migration_runner worker");
	worker.bgw_notify_pid = MyProcPid;
	args.database = MyDatabaseId;
	args.owner = owner;
	args.migration_id = id;
	memcpy(worker.bgw_extra, &args, sizeof(args));

	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		ereport(LOG,
				(errmsg("migration_runner: no background worker slot free for migration \"%s\"",
						name),
				 errhint("Raise max_worker_processes; the launcher tries again later.")));
		return false;
	}

	/* a worker that exits soon after starting waits longer next time */
	if (slot->migration_id == id &&
		!TimestampDifferenceExceeds(slot->started_at, GetCurrentTimestamp(),
									QUICK_EXIT_MS))
		slot->backoff_ms = Min(slot->backoff_ms * 2, MAX_BACKOFF_MS);
	else
		slot->backoff_ms = MIN_BACKOFF_MS;
	slot->migration_id = id;
	slot->handle = handle;
	slot->started_at = GetCurrentTimestamp();
	return true;
}

/*
 * Start workers for running migrations that have none, oldest first, up to
 * max_workers.  Returns how long to sleep at most before looking again.
 */
static long
start_workers(void)
{
	long		sleep_ms = mr_poll_interval_ms;
	int			running = reap_workers();
	uint64		i;
	uint64		n;
	SPITupleTable *tuptable;

	if (!mr_extension_is_current() || !mr_enabled)
		return sleep_ms;

	SPI_connect();
	if (SPI_execute(psprintf("SELECT id, owner::oid, name FROM %s "
							 "WHERE status = 'running' AND relation IS NOT NULL "
							 "ORDER BY started_at, id",
							 mr_catalog_table("migrations")),
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read running migrations");
	tuptable = SPI_tuptable;
	n = SPI_processed;

	for (i = 0; i < n && running < mr_max_workers; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tuptable->vals[i], tuptable->tupdesc, 1, &isnull));
		Oid			owner = DatumGetObjectId(SPI_getbinval(tuptable->vals[i], tuptable->tupdesc, 2, &isnull));
		char	   *name = SPI_getvalue(tuptable->vals[i], tuptable->tupdesc, 3);
		TrackedWorker *slot = find_tracked(id);
		char	   *problem;

		if (slot != NULL && slot->handle != NULL)
			continue;			/* has a worker */
		if (mr_runner_is_active(id))
			continue;			/* CALL mig_run has it */
		if (slot != NULL)
		{
			long		waited = (long) ((GetCurrentTimestamp() - slot->started_at) / 1000);

			if (waited < slot->backoff_ms)
			{
				sleep_ms = Min(sleep_ms, slot->backoff_ms - waited);
				continue;
			}
		}
		problem = owner_problem(owner);
		if (problem != NULL)
		{
			fail_migration(id, problem);
			continue;
		}
		slot = tracking_slot(id);
		if (slot == NULL)
			break;				/* all tracked entries have live workers */
		if (start_worker(id, owner, name, slot))
			running++;
		else
			break;
	}
	SPI_finish();
	return sleep_ms;
}

void
mr_launcher_main(Datum main_arg)
{
	MemoryContext loopcxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	mr_register_launcher_pid();
	BackgroundWorkerInitializeConnection(mr_database, NULL, 0);
	pgstat_report_appname("migration_runner launcher");

	loopcxt = AllocSetContextCreate(TopMemoryContext, "migration_runner launcher",
									ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextSwitchTo(loopcxt);
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "looking for running migrations");
		sleep_ms = start_workers();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_stat(false);
		pgstat_report_activity(STATE_IDLE, NULL);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loopcxt);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(sleep_ms, 10L), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
