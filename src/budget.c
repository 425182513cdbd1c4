/*-------------------------------------------------------------------------
 *
 * budget.c
 *	  One budget of workers for the whole server: migration_runner.max_workers
 *	  bounds the workers of all databases together, shared fairly.
 *
 * Each database's scheduler publishes in shared memory how many workers its
 * database runs (its own live ones and the ones a scheduler before it left
 * behind) and how many it could use.  Before it starts a worker it takes a
 * place in the budget: only while the server runs fewer than max_workers,
 * and only if no other database that wants more workers than it has runs
 * fewer than this one.  So free places go to the least served database
 * first: each database with work gets an equal share, and what one does not
 * use goes to the others (water-filling, decided one start at a time).  A
 * database that arrives while the budget is full gets the next place that
 * frees, before a database that already has more.  And a database that
 * runs at least two workers more than one that waits gives one back: its
 * newest worker is asked to stop after its current batch (yield_pid; the
 * worker looks between batches), its migration stays running and goes on
 * from its cursor when a place is free again.  That is no crash.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"

#include "compat.h"
#include "launcher.h"
#include "migration_runner.h"
#include "shared.h"

/*
 * Publish the current database's workers and demand.  When its workers
 * went down, a place may have freed: wake the schedulers of the databases
 * that wait for one.
 */
void
mr_budget_publish(int workers, int wanted)
{
	MrDatabaseEntry *e;
	bool		freed = false;
	int			i;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	e = mr_db_entry(MyDatabaseId, false);
	if (e != NULL)
	{
		freed = workers < e->workers;
		e->workers = workers;
		e->wanted = Max(wanted, workers);
	}
	for (i = 0; e != NULL && i < MR_MAX_DATABASES; i++)
	{
		MrDatabaseEntry *o = &mr_state->databases[i];

		if (o == e || o->dboid == InvalidOid || o->scheduler_latch == NULL)
			continue;
		/* a place freed: wake those that wait; we wait: wake those over */
		if ((freed && o->wanted > o->workers) ||
			(wanted > workers && o->workers > workers + 1))
			SetLatch(o->scheduler_latch);
	}
	LWLockRelease(mr_state->lock);
}

/*
 * Take a place for one more worker of the current database, if the budget
 * has one and no database that waits for a worker has fewer than this one.
 */
bool
mr_budget_take(void)
{
	MrDatabaseEntry *e;
	int			total = 0;
	bool		ok = true;
	int			i;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	e = mr_db_entry(MyDatabaseId, false);
	for (i = 0; i < MR_MAX_DATABASES; i++)
	{
		MrDatabaseEntry *o = &mr_state->databases[i];

		if (o->dboid == InvalidOid)
			continue;
		total += o->workers;
		if (e != NULL && o != e && o->scheduler_pid != 0 &&
			o->wanted > o->workers && o->workers < e->workers)
			ok = false;
	}
	ok = ok && e != NULL && total < mr_max_workers;
	if (ok)
		e->workers++;
	LWLockRelease(mr_state->lock);
	return ok;
}

/*
 * Should the current database give a place back?  Only when the budget is
 * full and a database that waits for a worker runs at least two fewer.
 */
bool
mr_budget_over_share(void)
{
	MrDatabaseEntry *e;
	int			total = 0;
	bool		over = false;
	int			i;

	LWLockAcquire(mr_state->lock, LW_SHARED);
	e = mr_db_entry(MyDatabaseId, false);
	for (i = 0; e != NULL && i < MR_MAX_DATABASES; i++)
	{
		MrDatabaseEntry *o = &mr_state->databases[i];

		if (o->dboid == InvalidOid)
			continue;
		total += o->workers;
		if (o != e && o->scheduler_pid != 0 && o->wanted > o->workers &&
			o->workers + 1 < e->workers)
			over = true;
	}
	LWLockRelease(mr_state->lock);
	return over && total >= mr_max_workers;
}

/* the worker of the current database asked to yield (0: none) */
pid_t
mr_budget_yield_pid(void)
{
	MrDatabaseEntry *e;
	pid_t		pid = 0;

	LWLockAcquire(mr_state->lock, LW_SHARED);
	e = mr_db_entry(MyDatabaseId, false);
	if (e != NULL)
		pid = e->yield_pid;
	LWLockRelease(mr_state->lock);
	return pid;
}

void
mr_budget_set_yield_pid(pid_t pid)
{
	MrDatabaseEntry *e;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	e = mr_db_entry(MyDatabaseId, false);
	if (e != NULL)
		e->yield_pid = pid;
	LWLockRelease(mr_state->lock);
}

/* in a worker, between batches: was it asked to give its place back? */
bool
mr_worker_must_yield(void)
{
	MrDatabaseEntry *e;
	bool		yield;

	if (mr_state == NULL)
		return false;
	LWLockAcquire(mr_state->lock, LW_SHARED);
	e = mr_db_entry(MyDatabaseId, false);
	yield = e != NULL && e->yield_pid == MyProcPid;
	LWLockRelease(mr_state->lock);
	return yield;
}

/* a place taken for a worker that could not be started */
void
mr_budget_give_back(void)
{
	MrDatabaseEntry *e;

	LWLockAcquire(mr_state->lock, LW_EXCLUSIVE);
	e = mr_db_entry(MyDatabaseId, false);
	if (e != NULL && e->workers > 0)
		e->workers--;
	LWLockRelease(mr_state->lock);
}
