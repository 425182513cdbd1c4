/*-------------------------------------------------------------------------
 *
 * launcher_track.c
 *	  The launcher's bookkeeping of the workers it started: one entry per
 *	  (migration, slice), the worker's handle and pid, and what is needed to
 *	  judge its exit: did it crash, and how long to wait before the next.
 *
 * A worker that crashed, that is one that left its migration running and
 * its slice still to do, is started again after a backoff that grows while
 * it keeps crashing quickly.  The backoff belongs to the slice: the other
 * slices of the migration go on and are started at once if they need a
 * worker.  A worker that exited because its migration was paused,
 * cancelled or ended, because its slice was done, or because it gave its
 * place to another database (budget.c), is not a crash, and the next one
 * may start at once.
 *
 * The scheduler's own workers wake it when they exit (bgw_notify_pid).
 * Workers a terminated scheduler left behind are not ours: they only count
 * against migration_runner.max_workers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "launcher.h"
#include "migration_runner.h"

#define MIN_BACKOFF_MS		1000
#define MAX_BACKOFF_MS		60000
#define QUICK_EXIT_MS		10000

static TrackedWorker tracked[MR_MAX_TRACKED];

TrackedWorker *
mr_find_tracked(int64 migration_id, int slice)
{
	int			i;

	for (i = 0; i < MR_MAX_TRACKED; i++)
		if (tracked[i].migration_id == migration_id && tracked[i].slice == slice)
			return &tracked[i];
	return NULL;
}

/* does a worker of ours run (or is about to run) this slice? */
bool
mr_tracked_is_live(int64 migration_id, int slice)
{
	TrackedWorker *t = mr_find_tracked(migration_id, slice);

	return t != NULL && t->handle != NULL;
}

/*
 * An entry for a slice about to get a worker (or a backoff): its old entry,
 * a free one, or the entry of a finished worker, preferring one whose
 * backoff is over, then the one that started longest ago.  NULL only if
 * every entry has a live worker, which max_workers rules out.
 */
TrackedWorker *
mr_tracking_slot(int64 migration_id, int slice)
{
	TrackedWorker *slot = mr_find_tracked(migration_id, slice);
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	if (slot != NULL)
		return slot;
	for (i = 0; i < MR_MAX_TRACKED; i++)
	{
		TrackedWorker *t = &tracked[i];

		if (t->handle != NULL)
			continue;
		if (t->migration_id == 0)
		{
			slot = t;
			break;
		}
		if (slot == NULL ||
			(t->retry_at <= now && slot->retry_at > now) ||
			((t->retry_at <= now) == (slot->retry_at <= now) &&
			 t->started_at < slot->started_at))
			slot = t;
	}
	if (slot != NULL)
	{
		memset(slot, 0, sizeof(TrackedWorker));
		slot->migration_id = migration_id;
		slot->slice = slice;
	}
	return slot;
}

/*
 * The worker of this slice crashed: wait before the next start, longer
 * each time it crashes soon after starting.
 */
static void
back_off(TrackedWorker *t, TimestampTz started_at, pid_t pid,
		 const char *name)
{
	TimestampTz now = GetCurrentTimestamp();

	if (t->backoff_ms > 0 &&
		!TimestampDifferenceExceeds(started_at, now, QUICK_EXIT_MS))
		t->backoff_ms = Min(t->backoff_ms * 2, MAX_BACKOFF_MS);
	else
		t->backoff_ms = MIN_BACKOFF_MS;
	t->started_at = started_at;
	t->retry_at = TimestampTzPlusMilliseconds(now, t->backoff_ms);
	if (t->slice == 0)
		ereport(LOG,
				(errmsg("migration_runner: worker for migration \"%s\" exited before it finished; starting it again in %d ms",
						name, t->backoff_ms),
				 pid != 0 ? errdetail("The worker's process ID was %d.", (int) pid) : 0));
	else
		ereport(LOG,
				(errmsg("migration_runner: worker for slice %d of migration \"%s\" exited before the slice was done; starting it again in %d ms",
						t->slice, name, t->backoff_ms),
				 pid != 0 ? errdetail("The worker's process ID was %d.", (int) pid) : 0));
}

/* forget the dead worker's pid wherever the catalog still names it */
static void
forget_dead_pid(int64 migration_id, pid_t pid)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		args[2];

	args[0] = Int64GetDatum(migration_id);
	args[1] = Int32GetDatum((int32) pid);
	mr_catalog_exec(psprintf("UPDATE %s SET worker_pid = NULL "
							 "WHERE id = $1 AND worker_pid = $2",
							 mr_catalog_table("migrations")),
					2, argtypes, args, SPI_OK_UPDATE);
	mr_catalog_exec(psprintf("UPDATE %s SET worker_pid = NULL "
							 "WHERE migration_id = $1 AND worker_pid = $2",
							 mr_catalog_table("migration_slices")),
					2, argtypes, args, SPI_OK_UPDATE);
}

static int32
get_int32(HeapTuple tuple, TupleDesc desc, int col, bool *isnull)
{
	return DatumGetInt32(SPI_getbinval(tuple, desc, col, isnull));
}

/*
 * One of our workers stopped: did it crash?  Its migration is still
 * running, nobody holds the runner lock of the slice it ran, and either
 * the catalog still names the worker as that slice's runner (an error or a
 * signal ended it in the middle), or the worker never touched the row of
 * the slice it was started for (it died before it got to it: it could not
 * connect, say).  The slice it ran is the one whose row names it, if one
 * does (a worker started for the migration as one piece goes on as the
 * runner of one slice once it has split the keys), else the one it was
 * started for.  Every other exit is clean: the migration was paused,
 * cancelled, completed or failed, perhaps resumed since, the slice was
 * done, or another runner took it; the next worker may start at once.
 */
static void
judge_exit(TrackedWorker *t)
{
	Oid			argtypes[3] = {INT8OID, INT4OID, INT4OID};
	Datum		args[3];
	int64		id = t->migration_id;
	TimestampTz started_at = t->started_at;
	pid_t		pid = t->pid;
	MemoryContext caller = CurrentMemoryContext;
	char	   *name;
	bool		running;
	int			parallel;
	bool		crashed = false;
	int			crashed_slice = t->slice;
	bool		named = false;
	bool		isnull;
	TupleDesc	desc;
	HeapTuple	tuple;
	uint64		i;

	t->retry_at = 0;
	args[0] = Int64GetDatum(id);
	args[1] = Int32GetDatum(t->slice);
	args[2] = Int32GetDatum((int32) pid);

	SPI_connect();
	if (SPI_execute_with_args(psprintf("SELECT name, status, worker_pid, xmin, parallel "
									   "FROM %s WHERE id = $1",
									   mr_catalog_table("migrations")),
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read migration " INT64_FORMAT, id);
	if (SPI_processed != 1)
	{
		/* dropped: nothing to start again */
		SPI_finish();
		t->backoff_ms = 0;
		return;
	}
	desc = SPI_tuptable->tupdesc;
	tuple = SPI_tuptable->vals[0];
	name = MemoryContextStrdup(caller, SPI_getvalue(tuple, desc, 1));
	running = strcmp(SPI_getvalue(tuple, desc, 2), MR_STATUS_RUNNING) == 0;

	parallel = get_int32(tuple, desc, 5, &isnull);
	if (t->slice == 0)
	{
		bool		pid_null;
		int32		runner = get_int32(tuple, desc, 3, &pid_null);
		TransactionId xmin = DatumGetTransactionId(SPI_getbinval(tuple, desc, 4, &isnull));

		named = !pid_null && (pid == 0 || runner == (int32) pid);
		crashed = named || TransactionIdEquals(xmin, t->row_xmin);
	}
	else
	{
		/*
		 * Its row was missing at the start and still is (it would have
		 * created it); a slice that needs no worker any more cannot have
		 * crashed.
		 */
		crashed = t->slice <= parallel && t->row_missing;
	}

	/* the row of the slice it was started for, and any row naming it */
	if (SPI_execute_with_args(psprintf("SELECT slice, status, worker_pid, xmin FROM %s "
									   "WHERE migration_id = $1 "
									   "AND (slice = $2 OR worker_pid = $3)",
									   mr_catalog_table("migration_slices")),
							  3, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the slices of migration " INT64_FORMAT, id);
	desc = SPI_tuptable->tupdesc;
	for (i = 0; i < SPI_processed; i++)
	{
		int			slice;
		int32		runner;
		bool		pid_null;

		tuple = SPI_tuptable->vals[i];
		slice = get_int32(tuple, desc, 1, &isnull);
		runner = get_int32(tuple, desc, 3, &pid_null);
		if (!pid_null && pid != 0 && runner == (int32) pid)
		{
			/* it died as this slice's runner */
			crashed_slice = slice;
			crashed = named = true;
			break;
		}
		if (slice == t->slice)
		{
			TransactionId xmin = DatumGetTransactionId(SPI_getbinval(tuple, desc, 4, &isnull));
			bool		todo = strcmp(SPI_getvalue(tuple, desc, 2), "running") == 0;

			/* it was there at the start, is still to do and untouched */
			crashed = slice <= parallel && !t->row_missing && todo &&
				TransactionIdEquals(xmin, t->row_xmin);
		}
	}

	crashed = crashed && running &&
		!mr_slice_runner_is_active(id, crashed_slice);
	if (crashed && named && pid != 0)
		forget_dead_pid(id, pid);
	SPI_finish();

	if (!crashed)
	{
		t->backoff_ms = 0;
		return;
	}
	if (crashed_slice != t->slice && crashed_slice <= parallel)
	{
		/*
		 * The backoff is that of the slice it ran (a slice beyond parallel
		 * gets no worker of its own: the one it was started for keeps it).
		 */
		t->backoff_ms = 0;
		t = mr_tracking_slot(id, crashed_slice);
		if (t == NULL)
			return;
	}
	back_off(t, started_at, pid, name);
}

/*
 * Look at our workers: note the pids of those that started, and judge
 * those that stopped (when the catalog is there to judge them by).  Sets
 * *freed when one stopped (a background worker slot is free again).
 * Returns how many are still running or about to.
 */
int
mr_reap_workers(bool have_catalog, bool *freed)
{
	int			running = 0;
	pid_t		yielding = mr_budget_yield_pid();
	int			i;

	*freed = false;
	for (i = 0; i < MR_MAX_TRACKED; i++)
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
				if (t->pid != 0 && t->pid == yielding)
				{
					/* it gave its place to another database: no crash */
					t->backoff_ms = 0;
					t->retry_at = 0;
					mr_budget_set_yield_pid(0);
				}
				else if (have_catalog)
					judge_exit(t);
				*freed = true;
				break;
		}
	}
	return running;
}

/*
 * Live workers of migration_runner in this database that are not ours:
 * those a scheduler terminated before this one started (they survive it).
 * They count against max_workers like ours, but their exits do not wake
 * us.  (Other databases' workers are counted by their schedulers.)
 */
int
mr_count_foreign_workers(void)
{
	Datum		pids[MR_MAX_TRACKED];
	int			npids = 0;
	Oid			argtypes[2] = {INT4ARRAYOID, TEXTOID};
	Datum		args[2];
	bool		isnull;
	int			count;
	int			i;

	for (i = 0; i < MR_MAX_TRACKED; i++)
		if (tracked[i].handle != NULL && tracked[i].pid != 0)
			pids[npids++] = Int32GetDatum((int32) tracked[i].pid);
	args[0] = PointerGetDatum(construct_array(pids, npids, INT4OID,
											  sizeof(int32), true, TYPALIGN_INT));
	args[1] = CStringGetTextDatum(MR_WORKER_TYPE);

	SPI_connect();
	if (SPI_execute_with_args("SELECT count(*) FROM pg_catalog.pg_stat_activity "
							  "WHERE backend_type = $2 AND pid <> ALL ($1) "
							  "AND datid = (SELECT oid FROM pg_catalog.pg_database "
							  "              WHERE datname = pg_catalog.current_database())",
							  2, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count the workers of migration_runner");
	count = (int) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return count;
}

/* the pid of our worker that started last, 0 if none runs */
pid_t
mr_newest_worker(void)
{
	TrackedWorker *newest = NULL;
	int			i;

	for (i = 0; i < MR_MAX_TRACKED; i++)
		if (tracked[i].handle != NULL && tracked[i].pid != 0 &&
			(newest == NULL || tracked[i].started_at > newest->started_at))
			newest = &tracked[i];
	return newest != NULL ? newest->pid : 0;
}

bool
mr_tracked_pid_is_live(pid_t pid)
{
	int			i;

	for (i = 0; i < MR_MAX_TRACKED; i++)
		if (tracked[i].handle != NULL && tracked[i].pid == pid)
			return true;
	return false;
}
