/*-------------------------------------------------------------------------
 *
 * status.c
 *	  The legal status transitions of a migration, in one table.
 *
 * Every SQL function that changes a migration's status (or removes it) asks
 * mr_transition() first, with the operation it is about to perform: the
 * table below says, for each operation and each current status, whether the
 * operation moves the migration to a new status, finds it already where the
 * operation would take it (a NOTICE, nothing to do), or must refuse (an
 * ERROR that says why).  Keeping this in one place, as TimescaleDB's job
 * scheduler keeps its state transitions, means a new status or operation is
 * decided for every pair at once, and the functions cannot drift apart.
 *
 * The caller has already checked the migration's kind (managed or
 * application-driven) and the caller's privileges, and holds the
 * migration's row lock, so the status cannot change under the decision.
 *
 * The batch engine's own transitions (running to completed, failed or
 * paused, in run.c, retry.c, worker.c and launcher.c) happen only from
 * running, under the same row lock, and are not API operations.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "api.h"
#include "migration_runner.h"

typedef enum MigStatus
{
	MS_PENDING,
	MS_RUNNING,
	MS_PAUSED,
	MS_COMPLETED,
	MS_FAILED,
	MS_CANCELLED,
	MS_NONE						/* no status: the operation needs none */
} MigStatus;

#define MS_NUM_STATUSES MS_NONE

static const char *const status_names[MS_NUM_STATUSES] = {
	[MS_PENDING] = MR_STATUS_PENDING,
	[MS_RUNNING] = MR_STATUS_RUNNING,
	[MS_PAUSED] = MR_STATUS_PAUSED,
	[MS_COMPLETED] = MR_STATUS_COMPLETED,
	[MS_FAILED] = MR_STATUS_FAILED,
	[MS_CANCELLED] = MR_STATUS_CANCELLED
};

typedef enum TransitionKind
{
	T_MOVE,						/* go to the status in the entry */
	T_ALREADY,					/* already there: NOTICE, nothing to do */
	T_REFUSE,					/* ERROR */
	T_REMOVE					/* the migration goes away (mig_drop) */
} TransitionKind;

/* what the caller is told when it is not simply a move */
typedef enum TransitionMessage
{
	MSG_NONE,
	MSG_IS_ALREADY,				/* migration "X" is already <status> */
	MSG_ALREADY_COMPLETED,		/* migration "X" already completed */
	MSG_ALREADY_RUNNING,		/* migration "X" already running */
	MSG_PAUSED,					/* ... is paused; resume it */
	MSG_PAUSED_FIRST,			/* ... is paused; resume it first */
	MSG_CANCELLED,				/* ... was cancelled; start or reset it */
	MSG_NOT_IN,					/* ... is not <the status it needs> */
	MSG_IN_USE,					/* ... is running; pause or cancel it */
	MSG_IN_USE_HERE				/* ... is running, in this very session */
} TransitionMessage;

typedef struct Transition
{
	TransitionKind kind;
	MigStatus	status;			/* T_MOVE: the new status; MSG_NOT_IN: the
								 * status the operation needs */
	TransitionMessage msg;
} Transition;

#define MOVE(to)		{T_MOVE, (to), MSG_NONE}
#define ALREADY(msg)	{T_ALREADY, MS_NONE, (msg)}
#define REFUSE(msg)		{T_REFUSE, MS_NONE, (msg)}
#define NEEDS(status)	{T_REFUSE, (status), MSG_NOT_IN}
#define REMOVE			{T_REMOVE, MS_NONE, MSG_NONE}

/*
 * The table: one row per operation, one column per current status, in the
 * order pending, running, paused, completed, failed, cancelled.
 *
 * mig_start resumes a failed or cancelled migration (a managed one from its
 * cursor, an application-driven one from zero, as the seed does); mig_run
 * takes a pending or failed one, and a running one that no runner holds;
 * mig_complete and mig_fail are the application's word and apply in any
 * status; mig_reset and mig_drop refuse only a running migration (and, see
 * needs_idle_runner, one whose runner is still finishing a batch).
 */
static const Transition transitions[MIG_NUM_OPERATIONS][MS_NUM_STATUSES] = {
	[MIG_OP_START] = {
		MOVE(MS_RUNNING), REFUSE(MSG_ALREADY_RUNNING), REFUSE(MSG_PAUSED),
		REFUSE(MSG_ALREADY_COMPLETED), MOVE(MS_RUNNING), MOVE(MS_RUNNING)
	},
	[MIG_OP_PAUSE] = {
		NEEDS(MS_RUNNING), MOVE(MS_PAUSED), ALREADY(MSG_IS_ALREADY),
		NEEDS(MS_RUNNING), NEEDS(MS_RUNNING), NEEDS(MS_RUNNING)
	},
	[MIG_OP_RESUME] = {
		NEEDS(MS_PAUSED), ALREADY(MSG_IS_ALREADY), MOVE(MS_RUNNING),
		NEEDS(MS_PAUSED), NEEDS(MS_PAUSED), NEEDS(MS_PAUSED)
	},
	[MIG_OP_CANCEL] = {
		MOVE(MS_CANCELLED), MOVE(MS_CANCELLED), MOVE(MS_CANCELLED),
		REFUSE(MSG_ALREADY_COMPLETED), MOVE(MS_CANCELLED), ALREADY(MSG_IS_ALREADY)
	},
	[MIG_OP_RESET] = {
		MOVE(MS_PENDING), REFUSE(MSG_IN_USE), MOVE(MS_PENDING),
		MOVE(MS_PENDING), MOVE(MS_PENDING), MOVE(MS_PENDING)
	},
	[MIG_OP_RUN] = {
		MOVE(MS_RUNNING), MOVE(MS_RUNNING), REFUSE(MSG_PAUSED_FIRST),
		ALREADY(MSG_ALREADY_COMPLETED), MOVE(MS_RUNNING), REFUSE(MSG_CANCELLED)
	},
	[MIG_OP_COMPLETE] = {
		MOVE(MS_COMPLETED), MOVE(MS_COMPLETED), MOVE(MS_COMPLETED),
		MOVE(MS_COMPLETED), MOVE(MS_COMPLETED), MOVE(MS_COMPLETED)
	},
	[MIG_OP_FAIL] = {
		MOVE(MS_FAILED), MOVE(MS_FAILED), MOVE(MS_FAILED),
		MOVE(MS_FAILED), MOVE(MS_FAILED), MOVE(MS_FAILED)
	},
	[MIG_OP_DROP] = {
		REMOVE, REFUSE(MSG_IN_USE), REMOVE,
		REMOVE, REMOVE, REMOVE
	}
};

/*
 * Operations that must not act while a runner still holds the migration,
 * whatever its status: a runner that was paused finishes its batch first,
 * and starting over or removing the row under that batch would lose it.
 * The runner may be this very session, when the action of a batch calls
 * the operation on its own migration.
 */
static const bool needs_idle_runner[MIG_NUM_OPERATIONS] = {
	[MIG_OP_RESET] = true,
	[MIG_OP_DROP] = true
};

static MigStatus
status_from_name(const char *name)
{
	int			s;

	for (s = 0; s < MS_NUM_STATUSES; s++)
		if (strcmp(name, status_names[s]) == 0)
			return (MigStatus) s;
	elog(ERROR, "unknown migration status \"%s\"", name);
	return MS_NONE;				/* keep compiler quiet */
}

static void
report(Migration *m, const Transition *t)
{
	int			level = t->kind == T_ALREADY ? NOTICE : ERROR;
	const char *name = m->name;
	const char *quoted = quote_literal_cstr(name);
	bool		startable;

	switch (t->msg)
	{
		case MSG_NONE:
			break;
		case MSG_IS_ALREADY:
			ereport(level,
					(errmsg("migration \"%s\" is already %s", name, m->status)));
			break;
		case MSG_ALREADY_COMPLETED:
			ereport(level,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("migration \"%s\" already completed", name)));
			break;
		case MSG_ALREADY_RUNNING:
			ereport(level,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("migration \"%s\" already running", name)));
			break;
		case MSG_PAUSED:
			ereport(level,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("migration \"%s\" is paused", name),
					 errhint("Resume it with mig_resume(%s).", quoted)));
			break;
		case MSG_PAUSED_FIRST:
			ereport(level,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("migration \"%s\" is paused", name),
					 errhint("Resume it with mig_resume(%s) first.", quoted)));
			break;
		case MSG_CANCELLED:
			ereport(level,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("migration \"%s\" was cancelled", name),
					 errhint("Start it again with mig_start(%s), or start over with mig_reset(%s).",
							 quoted, quoted)));
			break;
		case MSG_NOT_IN:
			/* point to mig_start when the table says it would take it */
			startable = transitions[MIG_OP_START][status_from_name(m->status)].kind == T_MOVE;
			ereport(level,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("migration \"%s\" is not %s", name, status_names[t->status]),
					 errdetail("Its status is %s.", m->status),
					 startable ? errhint("Use mig_start(%s) to run it.", quoted) : 0));
			break;
		case MSG_IN_USE:
			ereport(level,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("migration \"%s\" is running", name),
					 errhint("Pause or cancel it first.")));
			break;
		case MSG_IN_USE_HERE:
			ereport(level,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("migration \"%s\" is running", name),
					 errdetail("This session runs it: an action cannot reset or drop the migration whose batch it is part of.")));
			break;
	}
}

/*
 * May operation op act on migration m now?  Returns true with *to set to
 * the status to write (NULL when the operation removes the migration);
 * false, after a NOTICE, when the migration already is where op would take
 * it; raises an ERROR when op may not act on m in its status.
 */
bool
mr_transition(Migration *m, MigOperation op, const char **to)
{
	static const Transition in_use = REFUSE(MSG_IN_USE);
	static const Transition in_use_here = REFUSE(MSG_IN_USE_HERE);
	const Transition *t;

	Assert(op >= 0 && op < MIG_NUM_OPERATIONS);
	t = &transitions[op][status_from_name(m->status)];
	if (t->kind == T_REFUSE)
	{
		report(m, t);
		pg_unreachable();		/* an ERROR */
	}
	if (t->kind == T_ALREADY)
	{
		report(m, t);
		return false;
	}
	if (needs_idle_runner[op] && mr_runner_is_mine(m->id))
	{
		report(m, &in_use_here);
		pg_unreachable();		/* an ERROR */
	}
	if (needs_idle_runner[op] && mr_runner_is_active(m->id))
	{
		report(m, &in_use);
		pg_unreachable();		/* an ERROR */
	}
	*to = t->kind == T_MOVE ? status_names[t->status] : NULL;
	return true;
}
