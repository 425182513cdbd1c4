/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  What a database's scheduler is made of: launcher.c decides which
 *	  migrations and slices get a worker and starts them; launcher_track.c
 *	  remembers the workers it started, judges their exits and keeps the
 *	  crash backoff of each (migration, slice); launcher_checks.c checks a
 *	  migration right before a worker is started for it; budget.c shares
 *	  max_workers between the databases.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATION_RUNNER_LAUNCHER_H
#define MIGRATION_RUNNER_LAUNCHER_H

#include "datatype/timestamp.h"
#include "postmaster/bgworker.h"

#include "migration_runner.h"

/*
 * Entries of the launcher's table: at most max_workers of them have a live
 * worker; the others keep the crash backoff of slices waiting to be
 * started again, as many as one migration can have.
 */
#define MR_MAX_TRACKED		(MR_MAX_WORKERS_LIMIT + MR_MAX_PARALLEL)

#define MR_WORKER_TYPE		"migration_runner worker"

/* what the launcher remembers about the worker of one (migration, slice) */
typedef struct TrackedWorker
{
	int64		migration_id;	/* 0: free entry */
	int			slice;			/* 0: the migration as one piece */
	BackgroundWorkerHandle *handle; /* NULL while no worker of ours runs it */
	pid_t		pid;			/* the worker's process, 0 until known */
	bool		row_missing;	/* slice k's row did not exist at the start */
	TransactionId row_xmin;		/* xmin of its row (slice or migration) then */
	TimestampTz started_at;
	TimestampTz retry_at;		/* after a crash: no new worker before this */
	int			backoff_ms;		/* the last crash's wait, 0 after a clean exit */
} TrackedWorker;

#define MR_SCHEDULER_TYPE	"migration_runner scheduler"

/* launcher.c */
extern long mr_schedule_workers(bool *busy);

/* budget.c */
extern void mr_budget_publish(int workers, int wanted);
extern bool mr_budget_take(void);
extern void mr_budget_give_back(void);
extern bool mr_budget_over_share(void);
extern pid_t mr_budget_yield_pid(void);
extern void mr_budget_set_yield_pid(pid_t pid);

/* launcher_track.c */
extern TrackedWorker *mr_find_tracked(int64 migration_id, int slice);
extern bool mr_tracked_is_live(int64 migration_id, int slice);
extern TrackedWorker *mr_tracking_slot(int64 migration_id, int slice);
extern int	mr_reap_workers(bool have_catalog, bool *freed);
extern int	mr_count_foreign_workers(void);
extern pid_t mr_newest_worker(void);
extern bool mr_tracked_pid_is_live(pid_t pid);

/* launcher_checks.c */
extern char *mr_owner_problem(Oid owner);
extern void mr_fail_unrunnable(int64 id, const char *problem);
extern bool mr_still_runnable(int64 id);

#endif							/* MIGRATION_RUNNER_LAUNCHER_H */
