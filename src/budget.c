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
 * frees, before a database that already has more.  A worker that runs is
 * never stopped to make room: the share evens out as workers finish.
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
	for (i = 0; freed && i < MR_MAX_DATABASES; i++)
	{
		MrDatabaseEntry *o = &mr_state->databases[i];

		if (o != e && o->dboid != InvalidOid && o->scheduler_latch != NULL &&
			o->wanted > o->workers)
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
