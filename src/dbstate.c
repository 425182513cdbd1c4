/*-------------------------------------------------------------------------
 *
 * dbstate.c
 *	  One entry of shared memory per database that the background workers
 *	  serve: the latch of its scheduler, whether a wake-up is pending, and a
 *	  block while a command that needs nobody connected to it (DROP
 *	  DATABASE, CREATE DATABASE ... TEMPLATE, ALTER DATABASE ... RENAME or
 *	  SET TABLESPACE) runs.
 *
 * The protocol has no lost wake-up.  A waker (a transaction that started,
 * resumed or altered a migration, at its commit) sets wake_pending and the
 * latch of the database's scheduler, or, when none is registered, the
 * cluster launcher's, which starts one.  A scheduler clears wake_pending at
 * the start of each look at its catalog; before it exits for want of work
 * it looks at wake_pending again under the lock, and unregisters only if it
 * is still clear: a wake-up that comes later finds no scheduler and goes to
 * the launcher.
 *
 * Everything here is under mr_state->lock; the lock is never held across
 * anything that can fail.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "migration_runner.h"
#include "shared.h"

/* the longest a command may keep a database's scheduler away */
#define MAX_BLOCK_MS		60000

/* the entry of a database, made if asked and there is room; NULL if none */
MrDatabaseEntry *
mr_db_entry(Oid dboid, bool create)
{
	MrDatabaseEntry *free_entry = NULL;
	int			i;

	for (i = 0; i < MR_MAX_DATABASES; i++)
	{
		MrDatabaseEntry *e = &mr_state->databases[i];

		if (e->dboid == dboid)
			return e;
		if (e->dboid == InvalidOid && free_entry == NULL)
			free_entry = e;
	}
	if (!create || free_entry == NULL)
		return NULL;
	memset(free_entry, 0, sizeof(MrDatabaseEntry));
	free_entry->dboid = dboid;
	return free_entry;
}

bool
mr_db_blocked(MrDatabaseEntry *e)
{
	return e->blocker_pid != 0 && GetCurrentTimestamp() < e->blocked_until;
}

/* free the entry once nothing about its database is left to remember */
void
mr_db_forget_if_idle(MrDatabaseEntry *e)
{
	if (e->scheduler_pid == 0 && !e->wake_pending && e->blocker_pid == 0 &&
		e->workers == 0)
		e->dboid = InvalidOid;
}

/* --- wakers ------------------------------------------------------------ */

/*
 * Ask for a look at the migrations of a database: its scheduler's, or, if
 * it has none, the cluster launcher's, which starts one.
 */
void
mr_wake_database(Oid dboid)
{
	MrDatabaseEntry *e;
	Latch	   *latch;

	if (mr_state == NULL || !OidIsValid(dboid))
		return;
	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	e = mr_db_entry(dboid, true);
	if (e == NULL)
	{
		/* no room: the launcher starts a scheduler for every database */
		mr_state->rescan_all = true;
		latch = mr_state->launcher_latch;
	}
	else
	{
		e->wake_pending = true;
		latch = e->scheduler_latch != NULL ? e->scheduler_latch :
			mr_state->launcher_latch;
	}
	if (latch != NULL)
		SetLatch(latch);
	LWLockRelease(mr_state->lock);
}

/* --- the cluster launcher ---------------------------------------------- */

static void
forget_cluster_launcher(int code, Datum arg)
{
	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	if (mr_state->launcher_latch == MyLatch)
		mr_state->launcher_latch = NULL;
	LWLockRelease(mr_state->lock);
}

/* the cluster launcher announces where to wake it */
void
mr_register_cluster_launcher(void)
{
	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	mr_state->launcher_latch = MyLatch;
	LWLockRelease(mr_state->lock);
	on_shmem_exit(forget_cluster_launcher, (Datum) 0);
}

/* did a wake-up find the table full since the last call? */
bool
mr_take_rescan_all(void)
{
	bool		rescan;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	rescan = mr_state->rescan_all;
	mr_state->rescan_all = false;
	LWLockRelease(mr_state->lock);
	return rescan;
}

/*
 * May the launcher start a scheduler for this database now?  Not while a
 * command keeps it away, nor while one is registered.  With wake_only,
 * only if a wake-up is pending.  When it may, it is noted that the
 * scheduler about to start has not registered yet.
 */
bool
mr_db_may_start(Oid dboid, bool wake_only)
{
	MrDatabaseEntry *e;
	bool		may;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	e = mr_db_entry(dboid, !wake_only);
	may = e != NULL && !mr_db_blocked(e) && e->scheduler_pid == 0 &&
		(!wake_only || e->wake_pending);
	if (may)
		e->served = false;
	else if (e != NULL)
		mr_db_forget_if_idle(e);
	LWLockRelease(mr_state->lock);
	return may;
}

/*
 * A scheduler the launcher started has stopped.  Did it fail before it
 * could serve the database (it could not connect, say) while a wake-up is
 * pending?  Then the launcher backs off instead of starting the next at
 * once.
 */
bool
mr_db_failed_start(Oid dboid)
{
	MrDatabaseEntry *e;
	bool		failed = false;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	e = mr_db_entry(dboid, false);
	if (e != NULL)
	{
		failed = e->wake_pending && !e->served && e->scheduler_pid == 0;
		mr_db_forget_if_idle(e);
	}
	LWLockRelease(mr_state->lock);
	return failed;
}

/* forget the entries of databases that no longer exist */
void
mr_db_forget_missing(const Oid *existing, int n)
{
	int			i;
	int			j;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	for (i = 0; i < MR_MAX_DATABASES; i++)
	{
		MrDatabaseEntry *e = &mr_state->databases[i];
		bool		found = false;

		if (e->dboid == InvalidOid || e->scheduler_pid != 0)
			continue;
		for (j = 0; j < n && !found; j++)
			found = existing[j] == e->dboid;
		if (!found)
			e->dboid = InvalidOid;
	}
	LWLockRelease(mr_state->lock);
}

/* --- a database's scheduler -------------------------------------------- */

static void
unregister_scheduler(MrDatabaseEntry *e)
{
	e->scheduler_latch = NULL;
	e->scheduler_pid = 0;
	e->workers = 0;
	e->wanted = 0;
	mr_db_forget_if_idle(e);
}

static void
forget_scheduler(int code, Datum arg)
{
	MrDatabaseEntry *e;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	e = mr_db_entry(MyDatabaseId, false);
	if (e != NULL && e->scheduler_pid == MyProcPid)
		unregister_scheduler(e);
	LWLockRelease(mr_state->lock);
}

/*
 * The scheduler of the current database announces itself.  False if it may
 * not run: another serves the database, a command keeps schedulers away,
 * or the table is full.
 */
bool
mr_scheduler_register(void)
{
	MrDatabaseEntry *e;
	bool		ok;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	e = mr_db_entry(MyDatabaseId, true);
	ok = e != NULL && !mr_db_blocked(e) &&
		(e->scheduler_pid == 0 || e->scheduler_pid == MyProcPid);
	if (ok)
	{
		e->scheduler_latch = MyLatch;
		e->scheduler_pid = MyProcPid;
		e->served = true;
	}
	LWLockRelease(mr_state->lock);
	if (ok)
		on_shmem_exit(forget_scheduler, (Datum) 0);
	return ok;
}

/* the scheduler is about to look at its catalog: wake-ups so far are seen */
void
mr_scheduler_begin_look(void)
{
	MrDatabaseEntry *e;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	e = mr_db_entry(MyDatabaseId, false);
	if (e != NULL)
		e->wake_pending = false;
	LWLockRelease(mr_state->lock);
}

/*
 * Should the scheduler exit?  Yes when a command keeps schedulers away
 * from its database, or when it has nothing to do (not busy) and no
 * wake-up came since it looked.  If it should, it is unregistered here,
 * under the same lock as the look at wake_pending.
 */
bool
mr_scheduler_should_exit(bool busy)
{
	MrDatabaseEntry *e;
	bool		exit_now;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	e = mr_db_entry(MyDatabaseId, false);
	if (e == NULL || e->scheduler_pid != MyProcPid)
		exit_now = true;		/* cannot happen: it registered */
	else if (mr_db_blocked(e))
		exit_now = true;
	else
		exit_now = !busy && !e->wake_pending;
	if (exit_now && e != NULL && e->scheduler_pid == MyProcPid)
		unregister_scheduler(e);
	LWLockRelease(mr_state->lock);
	return exit_now;
}

/* --- commands that need nobody connected to a database ------------------ */

/*
 * Keep schedulers away from a database while the current command runs
 * (for MAX_BLOCK_MS at most, should the command's backend die first).
 */
void
mr_db_block(Oid dboid)
{
	MrDatabaseEntry *e;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	e = mr_db_entry(dboid, true);
	if (e != NULL)
	{
		e->blocker_pid = MyProcPid;
		e->blocked_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   MAX_BLOCK_MS);
	}
	LWLockRelease(mr_state->lock);
}

/* does a command keep schedulers and workers away from this database? */
bool
mr_database_blocked(Oid dboid)
{
	MrDatabaseEntry *e;
	bool		blocked;

	if (mr_state == NULL)
		return false;
	LWLockAcquire(mr_state->lock, LW_SHARED);
	e = mr_db_entry(dboid, false);
	blocked = e != NULL && mr_db_blocked(e);
	LWLockRelease(mr_state->lock);
	return blocked;
}

/* the command is over: schedulers may come back (woken at once if asked) */
void
mr_db_unblock(Oid dboid, bool wake)
{
	MrDatabaseEntry *e;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	e = mr_db_entry(dboid, false);
	if (e != NULL && e->blocker_pid == MyProcPid)
	{
		e->blocker_pid = 0;
		mr_db_forget_if_idle(e);
	}
	LWLockRelease(mr_state->lock);
	if (wake)
		mr_wake_database(dboid);
}
