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
 * A migration that cannot be run (its owner was dropped, may not connect to
 * the database, or cannot log in before PostgreSQL 17) is marked failed; it
 * never stops the launcher.  A worker that crashed, that is one that left
 * its migration running, is started again after a backoff that grows while
 * it keeps crashing quickly; a worker that exited because its migration was
 * paused, cancelled or ended is not a crash, and a resume starts the next
 * one at once.
 *
 * migration_runner.max_workers bounds the workers of the whole server, so
 * the workers a terminated launcher left behind count too.  When
 * max_worker_processes has no slot left, the migrations wait (and say so in
 * migrations.throttled) until one frees.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
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

/* the longest wait between two tries for a background worker slot */
#define MAX_SLOT_BACKOFF_MS 10000

/* how often to look again while workers we are not told about fill the budget */
#define FOREIGN_RECHECK_MS	1000

#define WORKER_TYPE			"migration_runner worker"
#define NO_SLOT_MESSAGE \
	"waiting for a free background worker slot (max_worker_processes)"

/* what the launcher remembers about one migration's worker */
typedef struct TrackedWorker
{
	int64		migration_id;	/* 0: free entry */
	BackgroundWorkerHandle *handle; /* NULL while no worker of ours runs it */
	pid_t		pid;			/* the worker's process, 0 until known */
	TransactionId row_xmin;		/* xmin of the migration's row at the start */
	TimestampTz started_at;
	TimestampTz retry_at;		/* after a crash: no new worker before this */
	int			backoff_ms;		/* the last crash's wait, 0 after a clean exit */
} TrackedWorker;

static TrackedWorker tracked[MAX_TRACKED];

/*
 * A shortage of background worker slots: it is logged once, when it begins,
 * and retried with a growing wait until no start fails.
 */
static bool slot_shortage = false;
static int	slot_backoff_ms = 0;

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
 * The worker of this entry crashed: wait before the next start, longer each
 * time it crashes soon after starting.
 */
static void
back_off(TrackedWorker *t, const char *name)
{
	TimestampTz now = GetCurrentTimestamp();

	if (t->backoff_ms > 0 &&
		!TimestampDifferenceExceeds(t->started_at, now, QUICK_EXIT_MS))
		t->backoff_ms = Min(t->backoff_ms * 2, MAX_BACKOFF_MS);
	else
		t->backoff_ms = MIN_BACKOFF_MS;
	t->retry_at = TimestampTzPlusMilliseconds(now, t->backoff_ms);
	ereport(LOG,
			(errmsg("migration_runner: worker for migration \"%s\" exited before it finished; starting it again in %d ms",
					name, t->backoff_ms),
			 t->pid != 0 ? errdetail("The worker's process ID was %d.", (int) t->pid) : 0));
}

/* forget the catalog's worker_pid if it still names the dead worker */
static void
forget_dead_pid(TrackedWorker *t)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		args[2];

	args[0] = Int64GetDatum(t->migration_id);
	args[1] = Int32GetDatum((int32) t->pid);
	mr_catalog_exec(psprintf("UPDATE %s SET worker_pid = NULL "
							 "WHERE id = $1 AND worker_pid = $2",
							 mr_catalog_table("migrations")),
					2, argtypes, args, SPI_OK_UPDATE);
}

/*
 * One of our workers stopped: did it crash?  Its migration is still
 * running, nobody else runs it, and either the catalog still names the
 * worker as its runner (an error or a signal ended it in the middle), or
 * the worker never touched the migration's row (it died before it got to
 * it: it could not connect, say).  Every other exit is clean: the migration
 * was paused, cancelled, completed or failed, perhaps resumed since, or
 * another runner took it; the next worker may start at once.
 */
static void
judge_exit(TrackedWorker *t)
{
	Oid			argtype = INT8OID;
	Datum		arg = Int64GetDatum(t->migration_id);

	t->retry_at = 0;
	SPI_connect();
	if (SPI_execute_with_args(psprintf("SELECT name, status, worker_pid, xmin FROM %s WHERE id = $1",
									   mr_catalog_table("migrations")),
							  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read migration " INT64_FORMAT, t->migration_id);
	if (SPI_processed == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		running = strcmp(SPI_getvalue(tuple, desc, 2), MR_STATUS_RUNNING) == 0;
		bool		pid_null;
		bool		xmin_null;
		int32		runner = DatumGetInt32(SPI_getbinval(tuple, desc, 3, &pid_null));
		TransactionId xmin = DatumGetTransactionId(SPI_getbinval(tuple, desc, 4, &xmin_null));
		bool		named = !pid_null && (t->pid == 0 || runner == (int32) t->pid);

		if (running && !mr_runner_is_active(t->migration_id) &&
			(named || TransactionIdEquals(xmin, t->row_xmin)))
		{
			back_off(t, SPI_getvalue(tuple, desc, 1));
			if (named && t->pid != 0)
				forget_dead_pid(t);
		}
		else
			t->backoff_ms = 0;
	}
	SPI_finish();
}

/*
 * Look at our workers: note the pids of those that started, and judge
 * those that stopped (when the catalog is there to judge them by).
 * Returns how many are still running or about to.
 */
static int
reap_workers(bool have_catalog)
{
	int			running = 0;
	int			i;

	for (i = 0; i < MAX_TRACKED; i++)
	{
		TrackedWorker *t = &tracked[i];
		pid_t		pid;

		if (t->handle == NULL)
			continue;
		switch (GetBackgroundWorkerPid(t->handle, &pid))
		{
			case BGWH_STARTED:
				t->pid = pid;
				running++;
				break;
			case BGWH_NOT_YET_STARTED:
				running++;
				break;
			case BGWH_STOPPED:
			case BGWH_POSTMASTER_DIED:
				pfree(t->handle);
				t->handle = NULL;
				if (have_catalog)
					judge_exit(t);
				/* its slot is free now: a migration waiting for one may try */
				slot_backoff_ms = 0;
				break;
		}
	}
	return running;
}

/*
 * Live workers of migration_runner that are not ours: those a launcher
 * terminated before this one started (they survive it).  They count
 * against max_workers like ours, but their exits do not wake us.
 */
static int
count_foreign_workers(void)
{
	Datum		pids[MAX_TRACKED];
	int			npids = 0;
	Oid			argtypes[2] = {INT4ARRAYOID, TEXTOID};
	Datum		args[2];
	bool		isnull;
	int			count;
	int			i;

	for (i = 0; i < MAX_TRACKED; i++)
		if (tracked[i].handle != NULL && tracked[i].pid != 0)
			pids[npids++] = Int32GetDatum((int32) tracked[i].pid);
	args[0] = PointerGetDatum(construct_array(pids, npids, INT4OID,
											  sizeof(int32), true, TYPALIGN_INT));
	args[1] = CStringGetTextDatum(WORKER_TYPE);

	SPI_connect();
	if (SPI_execute_with_args("SELECT count(*) FROM pg_catalog.pg_stat_activity "
							  "WHERE backend_type = $2 AND pid <> ALL ($1)",
							  2, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count the workers of migration_runner");
	count = (int) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return count;
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
	if (slot != NULL && slot->migration_id != migration_id)
	{
		memset(slot, 0, sizeof(TrackedWorker));
		slot->migration_id = migration_id;
	}
	return slot;
}

/*
 * Why the owner cannot run a worker, or NULL if it can.  A worker connects
 * as the owner, and the connection checks what is checked here; failing
 * there would leave the migration running with a worker that dies at once.
 */
static char *
owner_problem(Oid owner)
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

/*
 * No background worker slot for this migration: say so on the migration
 * (the engine clears it after its next batch), and in the log once per
 * shortage.  The migration stays running and is tried again.
 */
static void
wait_for_slot(int64 id, const char *name)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2];

	if (!slot_shortage)
		ereport(LOG,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("migration_runner: no free background worker slot for migration \"%s\"",
						name),
				 errdetail("All %d background worker slots (max_worker_processes) are in use.",
						   max_worker_processes),
				 errhint("Running migrations wait for a free slot and start when one frees; "
						 "raise max_worker_processes to avoid the wait.")));
	slot_shortage = true;

	args[0] = Int64GetDatum(id);
	args[1] = CStringGetTextDatum(NO_SLOT_MESSAGE);
	mr_catalog_exec(psprintf("UPDATE %s SET throttled = $2 WHERE id = $1 "
							 "AND status = 'running' AND throttled IS DISTINCT FROM $2",
							 mr_catalog_table("migrations")),
					2, argtypes, args, SPI_OK_UPDATE);
}

/*
 * Every migration that waited for a slot got one, or stopped waiting.  A
 * running one says so until its next batch; a paused or cancelled one would
 * go on saying it forever.
 */
static void
end_slot_shortage(void)
{
	Oid			argtype = TEXTOID;
	Datum		arg = CStringGetTextDatum(NO_SLOT_MESSAGE);

	mr_catalog_exec(psprintf("UPDATE %s SET throttled = NULL "
							 "WHERE throttled = $1 AND status <> 'running'",
							 mr_catalog_table("migrations")),
					1, &argtype, &arg, SPI_OK_UPDATE);
	slot_shortage = false;
	slot_backoff_ms = 0;
}

/*
 * Register a worker for a migration; false if there is no free slot.
 */
static bool
start_worker(int64 id, Oid owner, const char *name, TransactionId row_xmin,
			 TrackedWorker *slot)
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
	snprintf(worker.bgw_type, BGW_MAXLEN, WORKER_TYPE);
	worker.bgw_notify_pid = MyProcPid;
	args.database = MyDatabaseId;
	args.owner = owner;
	args.migration_id = id;
	args.slice = 0;
	memcpy(worker.bgw_extra, &args, sizeof(args));

	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(old);
	if (!ok)
		return false;

	slot->handle = handle;
	slot->pid = 0;
	slot->row_xmin = row_xmin;
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
	bool		have_catalog = mr_extension_is_current();
	int			running = reap_workers(have_catalog);
	int			foreign;
	bool		no_slot = false;
	uint64		i;
	uint64		n;
	SPITupleTable *tuptable;

	if (!have_catalog || !mr_enabled)
		return sleep_ms;

	foreign = count_foreign_workers();
	running += foreign;
	SPI_connect();
	if (SPI_execute(psprintf("SELECT id, owner::oid, name, xmin FROM %s "
							 "WHERE status = 'running' AND relation IS NOT NULL "
							 "ORDER BY started_at, id",
							 mr_catalog_table("migrations")),
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read running migrations");
	tuptable = SPI_tuptable;
	n = SPI_processed;

	for (i = 0; i < n && running < mr_max_workers; i++)
	{
		HeapTuple	tuple = tuptable->vals[i];
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tuple, tuptable->tupdesc, 1, &isnull));
		Oid			owner = DatumGetObjectId(SPI_getbinval(tuple, tuptable->tupdesc, 2, &isnull));
		char	   *name = SPI_getvalue(tuple, tuptable->tupdesc, 3);
		TransactionId xmin = DatumGetTransactionId(SPI_getbinval(tuple, tuptable->tupdesc, 4, &isnull));
		TrackedWorker *slot = find_tracked(id);
		char	   *problem;

		if (slot != NULL && slot->handle != NULL)
			continue;			/* has a worker */
		if (mr_runner_is_active(id))
			continue;			/* CALL mig_run or an inherited worker has it */
		if (slot != NULL && slot->retry_at > GetCurrentTimestamp())
		{
			sleep_ms = Min(sleep_ms,
						   TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
														   slot->retry_at) + 1);
			continue;
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
		/* after one failed start, the others would fail too */
		if (no_slot || !start_worker(id, owner, name, xmin, slot))
		{
			no_slot = true;
			wait_for_slot(id, name);
		}
		running++;
	}
	SPI_finish();

	/* inherited workers fill the budget, and their exits do not wake us */
	if (foreign > 0 && i < n)
		sleep_ms = Min(sleep_ms, FOREIGN_RECHECK_MS);
	if (no_slot)
	{
		slot_backoff_ms = slot_backoff_ms == 0 ? MIN_BACKOFF_MS :
			Min(slot_backoff_ms * 2, MAX_SLOT_BACKOFF_MS);
		sleep_ms = Min(sleep_ms, slot_backoff_ms);
	}
	else if (slot_shortage)
		end_slot_shortage();
	return sleep_ms;
}

void
mr_launcher_main(Datum main_arg)
{
	MemoryContext loopcxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	/* a cancel request has no query to cancel here: ignore it, as pg_cron does */
	pqsignal(SIGINT, SIG_IGN);
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
