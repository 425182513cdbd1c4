/*-------------------------------------------------------------------------
 *
 * scheduler.c
 *	  The scheduler of one database: a dynamic background worker that the
 *	  cluster launcher starts, which connects to that database, starts the
 *	  workers its running migrations need (launcher.c), and exits as soon as
 *	  it has nothing to do.
 *
 * It lives while a running migration of its database needs a worker or a
 * worker of its own runs, so nothing holds a connection to a database
 * without work: DROP DATABASE of an idle database is never blocked.  Its
 * exit follows the protocol of dbstate.c, so that a wake-up that comes
 * while it leaves is not lost: it goes to the launcher, which starts the
 * next scheduler.  Only one scheduler serves a database at a time: a second
 * one (started by a launcher that came back after a crash, say) leaves at
 * once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "launcher.h"
#include "migration_runner.h"

/* one look at the catalog, in its own transaction */
static long
look(bool *busy)
{
	long		sleep_ms;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "looking for running migrations");
	sleep_ms = mr_schedule_workers(busy);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return sleep_ms;
}

void
mr_scheduler_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	MemoryContext loopcxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	/* a cancel request has no query to cancel here: ignore it, as pg_cron does */
	pqsignal(SIGINT, SIG_IGN);
	BackgroundWorkerUnblockSignals();

	/* the database may have been dropped since: that is a FATAL error here */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	if (!mr_scheduler_register())
		proc_exit(0);
	pgstat_report_appname("migration_runner scheduler");

	loopcxt = AllocSetContextCreate(TopMemoryContext, "migration_runner scheduler",
									ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		sleep_ms;
		bool		busy;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		mr_scheduler_begin_look();
		MemoryContextSwitchTo(loopcxt);
		sleep_ms = look(&busy);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loopcxt);
		if (mr_scheduler_should_exit(busy))
			proc_exit(0);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(sleep_ms, 10L), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
