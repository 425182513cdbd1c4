/*-------------------------------------------------------------------------
 *
 * shared.h
 *	  The shared memory of migration_runner, for the files that read it:
 *	  shmem.c (allocation, wake-ups at commit, mig_wait's condition
 *	  variable), dbstate.c (one entry per database: its scheduler, its
 *	  pending wake-up, a block while DROP DATABASE and the like run) and
 *	  budget.c (the workers of every database against max_workers).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATION_RUNNER_SHARED_H
#define MIGRATION_RUNNER_SHARED_H

#include "datatype/timestamp.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

/*
 * Databases that can have an entry at once.  An entry lives while its
 * database has a scheduler, a pending wake-up or a block; a database that
 * finds the table full is served at the launcher's next poll.
 */
#define MR_MAX_DATABASES	128

/* what the server knows about one database (all under MrSharedState.lock) */
typedef struct MrDatabaseEntry
{
	Oid			dboid;			/* InvalidOid: free entry */
	Latch	   *scheduler_latch;	/* NULL while no scheduler serves it */
	pid_t		scheduler_pid;	/* 0 while no scheduler serves it */
	bool		wake_pending;	/* woken since its scheduler last looked */
	bool		served;			/* a scheduler registered since the launcher
								 * last started one */
	pid_t		blocker_pid;	/* DROP DATABASE and the like: no scheduler */
	TimestampTz blocked_until;	/* ... until then at most */
	int			workers;		/* its live workers (published) */
	int			wanted;			/* how many it could use (published) */
	pid_t		yield_pid;		/* its worker asked to stop after its batch,
								 * to give its place to another database */
} MrDatabaseEntry;

typedef struct MrSharedState
{
	LWLock	   *lock;			/* protects everything but state_changed */
	Latch	   *launcher_latch; /* NULL while no cluster launcher runs */
	bool		rescan_all;		/* a wake-up found the table full */
	ConditionVariable state_changed;	/* a migration changed state */
	MrDatabaseEntry databases[MR_MAX_DATABASES];
} MrSharedState;

extern MrSharedState *mr_state;

/* dbstate.c, with mr_state->lock held */
extern MrDatabaseEntry *mr_db_entry(Oid dboid, bool create);
extern bool mr_db_blocked(MrDatabaseEntry *e);
extern void mr_db_forget_if_idle(MrDatabaseEntry *e);

#endif							/* MIGRATION_RUNNER_SHARED_H */
