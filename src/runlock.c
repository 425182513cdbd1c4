/*-------------------------------------------------------------------------
 *
 * runlock.c
 *	  The runner lock: a session-level advisory lock that says "this
 *	  process runs migration N".  It spans the run's transactions and
 *	  vanishes with the process, so a crashed runner never leaves it behind.
 *
 * Whoever runs a migration (CALL mig_run or a worker) holds it, so there is
 * never more than one runner per migration.  Others only look at it: the
 * launcher before starting a worker, mig_reset before starting over and
 * mig_drop before removing the migration.
 * Looking must not take the lock, even for an instant, or a CALL mig_run
 * whose try-lock lands in that instant would be refused.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/lock.h"

#include "compat.h"
#include "migration_runner.h"

static void
runner_locktag(LOCKTAG *tag, int64 migration_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (migration_id >> 32),
						 (uint32) migration_id, MR_RUNNER_LOCK_FIELD4);
}

bool
mr_try_lock_runner(int64 migration_id)
{
	LOCKTAG		tag;

	runner_locktag(&tag, migration_id);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

void
mr_unlock_runner(int64 migration_id)
{
	LOCKTAG		tag;

	runner_locktag(&tag, migration_id);
	LockRelease(&tag, ExclusiveLock, true);
}

/*
 * Does a process run this migration right now: another one (mine = false)
 * or this one (mine = true)?  Reads the lock table, as pg_locks does,
 * without requesting the lock.  (GetLockConflicts would be cheaper but names
 * holders by their current transaction, and a runner between two of its
 * transactions has none.)
 */
static bool
runner_lock_held(int64 migration_id, bool mine)
{
	LOCKTAG		tag;
	LockData   *locks;
	bool		held = false;
	int			i;

	runner_locktag(&tag, migration_id);
	locks = GetLockStatusData();
	for (i = 0; i < locks->nelements && !held; i++)
	{
		LockInstanceData *lock = &locks->locks[i];

		held = (lock->pid == MyProcPid) == mine &&
			(lock->holdMask & LOCKBIT_ON(ExclusiveLock)) != 0 &&
			memcmp(&lock->locktag, &tag, sizeof(LOCKTAG)) == 0;
	}
	pfree(locks->locks);
	pfree(locks);
	return held;
}

bool
mr_runner_is_active(int64 migration_id)
{
	return runner_lock_held(migration_id, false);
}

/*
 * Is this process the migration's runner?  True inside its own batches, in
 * an action that calls the SQL API on the migration it belongs to.
 */
bool
mr_runner_is_mine(int64 migration_id)
{
	return runner_lock_held(migration_id, true);
}
