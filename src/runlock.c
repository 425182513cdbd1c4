/*-------------------------------------------------------------------------
 *
 * runlock.c
 *	  The runner lock: a session-level advisory lock that says "this
 *	  process runs migration N" as one piece (slice 0), or "runs slice k of
 *	  migration N".  It spans the run's transactions and vanishes with the
 *	  process, so a crashed runner never leaves it behind.
 *
 * Whoever runs a migration or a slice (CALL mig_run or a worker) holds it,
 * so there is never more than one runner per slice.  Others only look at it: the
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
runner_locktag(LOCKTAG *tag, int64 migration_id, int slice)
{
	Assert(slice >= 0 && slice <= MR_MAX_PARALLEL);
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (migration_id >> 32),
						 (uint32) migration_id, MR_RUNNER_LOCK_FIELD4 + slice);
}

bool
mr_try_lock_runner(int64 migration_id, int slice)
{
	LOCKTAG		tag;

	runner_locktag(&tag, migration_id, slice);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * Take the runner lock for the current transaction only, without waiting:
 * continue_from keeps every runner off the migration it takes over until
 * its transaction ends.
 */
bool
mr_try_lock_runner_for_xact(int64 migration_id, int slice)
{
	LOCKTAG		tag;

	runner_locktag(&tag, migration_id, slice);
	return LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

void
mr_unlock_runner(int64 migration_id, int slice)
{
	LOCKTAG		tag;

	runner_locktag(&tag, migration_id, slice);
	LockRelease(&tag, ExclusiveLock, true);
}

/*
 * Does a process run this migration (slice < 0: any slice of it) right now:
 * another one (mine = false) or this one (mine = true)?  Reads the lock
 * table, as pg_locks does, without requesting the lock.  (GetLockConflicts
 * would be cheaper but names holders by their current transaction, and a
 * runner between two of its transactions has none.)
 */
static bool
runner_lock_held(int64 migration_id, int slice, bool mine)
{
	LOCKTAG		tag;
	LockData   *locks;
	bool		held = false;
	int			i;

	runner_locktag(&tag, migration_id, Max(slice, 0));
	locks = GetLockStatusData();
	for (i = 0; i < locks->nelements && !held; i++)
	{
		LockInstanceData *lock = &locks->locks[i];
		LOCKTAG		found = lock->locktag;

		/* any slice: compare the tags as if they named ours */
		if (slice < 0 && found.locktag_field4 >= MR_RUNNER_LOCK_FIELD4 &&
			found.locktag_field4 <= MR_RUNNER_LOCK_FIELD4 + MR_MAX_PARALLEL)
			found.locktag_field4 = tag.locktag_field4;
		held = (lock->pid == MyProcPid) == mine &&
			(lock->holdMask & LOCKBIT_ON(ExclusiveLock)) != 0 &&
			memcmp(&found, &tag, sizeof(LOCKTAG)) == 0;
	}
	pfree(locks->locks);
	pfree(locks);
	return held;
}

/* does another process run this migration, or any slice of it? */
bool
mr_runner_is_active(int64 migration_id)
{
	return runner_lock_held(migration_id, -1, false);
}

/* does another process run this slice (0: the migration as one piece)? */
bool
mr_slice_runner_is_active(int64 migration_id, int slice)
{
	return runner_lock_held(migration_id, slice, false);
}

/* does this process hold the runner lock of this slice? */
bool
mr_slice_runner_is_mine(int64 migration_id, int slice)
{
	return runner_lock_held(migration_id, slice, true);
}

/*
 * Is this process a runner of the migration?  True inside its own batches,
 * in an action that calls the SQL API on the migration it belongs to.
 */
bool
mr_runner_is_mine(int64 migration_id)
{
	return runner_lock_held(migration_id, -1, true);
}
