/*-------------------------------------------------------------------------
 *
 * throttle.c
 *	  Health throttling: between batches, a runner waits while the server
 *	  is under strain, and says why in migrations.throttled.
 *
 * Three signals are watched, each enabled by its GUC: sessions waiting on
 * the locks the last batch held (migration_runner.max_lock_waiters), the
 * server's WAL rate (max_wal_rate) and standby lag (max_replica_lag).
 * The wait itself happens between transactions: the runner holds no row
 * lock and no snapshot while it sleeps.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "migration_runner.h"
#include "run_internal.h"

/*
 * The last thing wrong with the server's health that held this process's
 * batches back since mr_throttle_take_problem was last called, or "".  A
 * node's CALL mig_shard_batch tells the coordinator: a call that waited,
 * even if it ran a batch after the wait, says why.
 */
static char last_problem[256];

/* that problem (palloc'd), or NULL; and forget it */
char *
mr_throttle_take_problem(void)
{
	char	   *problem = last_problem[0] != '\0' ? pstrdup(last_problem) : NULL;

	last_problem[0] = '\0';
	return problem;
}

/*
 * How many sessions wait on locks this process holds, counted at the end of
 * a batch, before its commit releases them.  Only sessions that wait on a
 * lock at all are asked for their blockers: pg_blocking_pids is not cheap,
 * and the fence (OFFSET 0) keeps the planner from calling it for every
 * backend.
 */
int
mr_count_lock_waiters(void)
{
	CatalogAccess access;
	Datum		pid = Int32GetDatum(MyProcPid);
	Oid			type = INT4OID;
	bool		isnull;
	int			waiters;

	mr_catalog_enter(&access);
	if (SPI_execute_with_args("SELECT count(*)::int4 FROM "
							  "(SELECT pid FROM pg_stat_activity "
							  " WHERE wait_event_type = 'Lock' OFFSET 0) w "
							  "WHERE $1 = ANY (pg_blocking_pids(w.pid))",
							  1, &type, &pid, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count lock waiters");
	waiters = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	mr_catalog_leave(&access);
	return waiters;
}

/*
 * The WAL position at this process's last look.  It outlives a run: a
 * node's CALL mig_shard_batch is a run of its own every 200 ms, and the
 * first look of each would otherwise let a batch through unmeasured.
 */
static XLogRecPtr wal_mark;
static TimestampTz wal_mark_at;

/*
 * The server's WAL rate since the last look, when at least 50 ms passed.
 */
static char *
wal_rate_problem(void)
{
	XLogRecPtr	lsn = GetXLogInsertRecPtr();
	TimestampTz now = GetCurrentTimestamp();
	double		secs = (now - wal_mark_at) / 1000000.0;
	double		kb_per_sec;

	if (wal_mark_at == 0)
	{
		wal_mark = lsn;
		wal_mark_at = now;
		return NULL;
	}
	if (secs < 0.05)
		return NULL;
	kb_per_sec = (lsn - wal_mark) / 1024.0 / secs;
	wal_mark = lsn;
	wal_mark_at = now;
	if (kb_per_sec <= mr_max_wal_rate_kb)
		return NULL;
	return psprintf("WAL is written at %.0f kB/s, more than migration_runner.max_wal_rate (%d kB/s)",
					kb_per_sec, mr_max_wal_rate_kb);
}

static char *
replica_lag_problem(void)
{
	CatalogAccess access;
	bool		isnull;
	int64		lag_ms;

	mr_catalog_enter(&access);
	if (SPI_execute("SELECT coalesce(max((extract(epoch FROM "
					"greatest(write_lag, flush_lag, replay_lag)) * 1000)::int8), 0) "
					"FROM pg_stat_replication", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read replication lag");
	lag_ms = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	mr_catalog_leave(&access);
	if (lag_ms <= mr_max_replica_lag_ms)
		return NULL;
	return psprintf("a standby is " INT64_FORMAT " ms behind, more than migration_runner.max_replica_lag (%d ms)",
					lag_ms, mr_max_replica_lag_ms);
}

/*
 * Why the next batch should wait, or NULL.  Lock waiters count once: after
 * a batch that blocked too many sessions, the runner sleeps one round.
 */
static char *
throttle_problem(MigrationRun *run)
{
	char	   *problem = NULL;

	if (mr_max_lock_waiters > 0 && run->lock_waiters > mr_max_lock_waiters)
		problem = psprintf("%d sessions waited on the runner's locks, more than migration_runner.max_lock_waiters (%d)",
						   run->lock_waiters, mr_max_lock_waiters);
	run->lock_waiters = 0;
	if (problem == NULL && mr_max_wal_rate_kb > 0)
		problem = wal_rate_problem();
	if (problem == NULL && mr_max_replica_lag_ms > 0)
		problem = replica_lag_problem();
	return problem;
}

/*
 * Say why the runner waits, and return whether the migration is still
 * running (someone may have paused or cancelled it meanwhile).
 */
static bool
record_throttled(MigrationRun *run, const char *problem)
{
	CatalogAccess access;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		args[2] = {Int64GetDatum(run->m->id), CStringGetTextDatum(problem)};
	bool		running;
	bool		isnull;

	mr_catalog_enter(&access);
	if (SPI_execute_with_args(psprintf("UPDATE %s SET throttled = $2 WHERE id = $1 "
									   "RETURNING status = 'running'", run->catalog),
							  2, types, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not record throttling");
	running = SPI_processed == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								   1, &isnull));
	mr_catalog_leave(&access);
	return running;
}

/* what one look at the server's health found */
typedef struct ThrottleCheck
{
	char	   *problem;		/* why to wait, or NULL */
	bool		running;		/* the migration is still running */
} ThrottleCheck;

/* one look, as a guarded step: its catalog write can fail like a batch */
static void
throttle_step(MigrationRun *run, void *result)
{
	ThrottleCheck *check = (ThrottleCheck *) result;

	check->problem = throttle_problem(run);
	check->running = check->problem == NULL || record_throttled(run, check->problem);
	if (check->problem != NULL)
		check->problem = MemoryContextStrdup(run->runcxt, check->problem);
}

/*
 * Wait while the server is unhealthy, saying why in the catalog, between
 * transactions.  Returns BATCH_DONE to go on, BATCH_NOT_RUNNING when the run
 * should stop (the migration was paused or cancelled meanwhile, or the
 * runner got a cancel request: *cancelled), or BATCH_FAILED when a look
 * failed (recorded and committed, as a batch's failure).
 */
BatchResult
mr_throttle_wait(MigrationRun *run, const RunnerHooks *hooks, bool *cancelled)
{
	*cancelled = false;
	if (mr_max_lock_waiters <= 0 && mr_max_wal_rate_kb <= 0 &&
		mr_max_replica_lag_ms <= 0)
		return BATCH_DONE;

	/* a failure here belongs to no batch: say where the cursor is */
	run->batch_keys = NULL;
	run->batch_started_at = 0;
	for (;;)
	{
		ThrottleCheck check;
		ErrorData  *edata;

		PushActiveSnapshot(GetTransactionSnapshot());
		SPI_connect();
		edata = mr_run_guarded(run, throttle_step, &check);
		if (edata != NULL)
			mr_record_failure(run, edata);
		SPI_finish();
		PopActiveSnapshot();
		if (edata != NULL)
		{
			if (run->last_error)
				FreeErrorData(run->last_error);
			run->last_error = edata;
			mr_next_transaction(hooks);
			return BATCH_FAILED;
		}
		if (check.problem == NULL)
			return BATCH_DONE;
		strlcpy(last_problem, check.problem, sizeof(last_problem));
		mr_next_transaction(hooks);
		if (!check.running)
			return BATCH_NOT_RUNNING;
		/*
		 * A runner told to stop (a worker asked to yield, a node's call
		 * whose time is up) need not wait out the strain: its loop stops
		 * before the next batch.
		 */
		if (hooks->should_stop())
			return BATCH_DONE;
		if (!mr_runner_sleep(mr_throttle_sleep_ms))
		{
			*cancelled = true;
			return BATCH_NOT_RUNNING;
		}
	}
}
