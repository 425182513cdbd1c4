/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The shared memory migration_runner uses (shared.h): where the cluster
 *	  launcher and each database's scheduler sleep, and a condition variable
 *	  that runners broadcast on when a migration changes state.
 *
 * Both signals are sent only after the transaction that changed the catalog
 * commits (a transaction callback), so whoever wakes up sees the change:
 * a launcher woken before mig_start commits would find nothing to run.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "compat.h"
#include "migration_runner.h"
#include "shared.h"

bool		mr_preloaded = false;

MrSharedState *mr_state = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
#ifdef MR_HAVE_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif

/* what the current transaction must do once it commits */
static bool wake_launcher_pending = false;
static Oid	wake_other_database = InvalidOid;
static bool announce_change_pending = false;
static bool xact_callback_registered = false;

static void
mr_shmem_request(void)
{
#ifdef MR_HAVE_SHMEM_REQUEST_HOOK
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(MAXALIGN(sizeof(MrSharedState)));
	RequestNamedLWLockTranche("migration_runner", 1);
}

static void
mr_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	mr_state = ShmemInitStruct("migration_runner", sizeof(MrSharedState),
							   &found);
	if (!found)
	{
		memset(mr_state, 0, sizeof(MrSharedState));
		mr_state->lock = &(GetNamedLWLockTranche("migration_runner"))->lock;
		ConditionVariableInit(&mr_state->state_changed);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Called from _PG_init in the postmaster while preloading.
 */
void
mr_shmem_init(void)
{
	mr_preloaded = true;

#ifdef MR_HAVE_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = mr_shmem_request;
#else
	mr_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = mr_shmem_startup;
}

static void
mr_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_launcher_pending && mr_state != NULL)
				mr_wake_database(MyDatabaseId);
			if (OidIsValid(wake_other_database) && mr_state != NULL)
				mr_wake_database(wake_other_database);
			if (announce_change_pending && mr_state != NULL)
				ConditionVariableBroadcast(&mr_state->state_changed);
			wake_launcher_pending = false;
			wake_other_database = InvalidOid;
			announce_change_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_launcher_pending = false;
			wake_other_database = InvalidOid;
			announce_change_pending = false;
			break;
		default:
			break;
	}
}

static void
mr_ensure_xact_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(mr_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

/*
 * Wake the scheduler of the current database once the current transaction
 * commits (or the cluster launcher, which starts one).
 */
void
mr_wake_launcher_at_commit(void)
{
	mr_ensure_xact_callback();
	wake_launcher_pending = true;
	announce_change_pending = true;
}

/*
 * Wake the scheduler of another database once the current transaction
 * commits: one just made by CREATE DATABASE, which may have copied running
 * migrations from its template.
 */
void
mr_wake_database_at_commit(Oid dboid)
{
	mr_ensure_xact_callback();
	wake_other_database = dboid;
}

/*
 * Wake the sessions in mig_wait once the current transaction commits.
 */
void
mr_announce_change_at_commit(void)
{
	mr_ensure_xact_callback();
	announce_change_pending = true;
}

/*
 * Sleep until some migration changes state or timeout_ms passes; returns
 * false on timeout.  Without the preloaded library there is no condition
 * variable, and the caller's loop polls every 100 ms instead.
 */
bool
mr_wait_for_change(long timeout_ms)
{
	bool		timed_out;

	if (mr_state != NULL)
	{
		timed_out = ConditionVariableTimedSleep(&mr_state->state_changed,
												timeout_ms, PG_WAIT_EXTENSION);
	}
	else
	{
		int			rc;

		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   Min(timeout_ms, 100L), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		timed_out = (rc & WL_TIMEOUT) != 0;
	}
	CHECK_FOR_INTERRUPTS();
	return !timed_out;
}

/*
 * Leave the condition variable's wait list after a mig_wait loop.
 */
void
mr_wait_done(void)
{
	if (mr_state != NULL)
		ConditionVariableCancelSleep();
}
