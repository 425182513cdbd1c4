/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  What a database's scheduler decides on each look at its catalog:
 *	  which running migrations, and which slices of them, need a worker, and
 *	  starting those workers.
 *
 * The scheduler (scheduler.c) connects to one database and looks whenever
 * it is woken: mig_start, mig_resume and the like wake it after their
 * transaction commits, as does a completion (a migration may run after
 * it), and a worker's exit wakes it too (bgw_notify_pid), so a started
 * migration begins within milliseconds.  After a restart or a
 * crash it finds the migrations still running and resumes them from their
 * cursors.
 *
 * A migration without slices needs one worker (slice 0).  Once its runner
 * has split the keys into slices (parallel > 1), each slice up to parallel
 * that is still to do needs one: the workers are handed out fairly, every
 * migration's first before any migration's second.  While CALL mig_run
 * holds a migration's slice 0 it runs the slices itself, and none of them
 * gets a worker.
 *
 * A migration that cannot be run (its owner was dropped, may not connect to
 * the database, or cannot log in before PostgreSQL 17) is marked failed; it
 * never stops the scheduler.  Crashed workers are started again after a
 * backoff per slice (launcher_track.c).
 *
 * migration_runner.max_workers bounds the workers of the whole server, all
 * databases together (budget.c), and the workers a terminated scheduler
 * left behind count too.  When max_worker_processes has no slot left, the
 * migrations wait (and say so in migrations.throttled) until one frees;
 * that never fails them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "chain.h"
#include "compat.h"
#include "launcher.h"
#include "migration_runner.h"
#include "worker.h"


/* the first wait for a background worker slot, and the longest */
#define MIN_SLOT_BACKOFF_MS 1000
#define MAX_SLOT_BACKOFF_MS 10000

/* how often to look again while workers we are not told about fill the budget */
#define FOREIGN_RECHECK_MS	1000

#define NO_SLOT_MESSAGE \
	"waiting for a free background worker slot (max_worker_processes)"

/* what needs a worker: a migration as one piece (slice 0), or a slice */
typedef struct WorkItem
{
	int64		id;
	int			slice;
	Oid			owner;
	char	   *name;
	bool		row_missing;	/* slice k's row is still to be made */
	TransactionId row_xmin;		/* xmin of its row (slice or migration) */
	int32		row_pid;		/* the runner its slice row names, or 0 */
	bool		row_done;		/* slice k is done: only to adopt orphans */
	int			order;			/* its migration's place, oldest first */
	int			rank;			/* the how-manieth worker of its migration */
	bool		skip;			/* has a runner, or may not get one now */
} WorkItem;

/* a shortage of worker slots: logged once, retried with a growing wait */
static bool slot_shortage = false;
static int	slot_backoff_ms = 0;

/*
 * No background worker slot for this migration: say so on the migration
 * (the engine clears it after its next batch), and in the log once per
 * shortage.  The migration stays running and is tried again.
 */
static void
wait_for_slot(int64 id, const char *name)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2];

	if (!slot_shortage)
		ereport(LOG,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("migration_runner: no free background worker slot for migration \"%s\"",
						name),
				 errdetail("All %d background worker slots (max_worker_processes) are in use.",
						   max_worker_processes),
				 errhint("Running migrations wait for a free slot and start when one frees; "
						 "raise max_worker_processes to avoid the wait.")));
	slot_shortage = true;

	args[0] = Int64GetDatum(id);
	args[1] = CStringGetTextDatum(NO_SLOT_MESSAGE);
	mr_catalog_exec(psprintf("UPDATE %s SET throttled = $2 WHERE id = $1 "
							 "AND status = 'running' AND throttled IS DISTINCT FROM $2",
							 mr_catalog_table("migrations")),
					2, argtypes, args, SPI_OK_UPDATE);
}

/*
 * Every migration that waited for a slot got one, or stopped waiting.  A
 * running one says so until its next batch; a paused or cancelled one would
 * go on saying it forever.
 */
static void
end_slot_shortage(void)
{
	Oid			argtype = TEXTOID;
	Datum		arg = CStringGetTextDatum(NO_SLOT_MESSAGE);

	mr_catalog_exec(psprintf("UPDATE %s SET throttled = NULL "
							 "WHERE throttled = $1 AND status <> 'running'",
							 mr_catalog_table("migrations")),
					1, &argtype, &arg, SPI_OK_UPDATE);
	slot_shortage = false;
	slot_backoff_ms = 0;
}

/* register a worker for a work item; false if there is no free slot */
static bool
start_worker(WorkItem *item, TrackedWorker *slot)
{
	BackgroundWorker worker;
	MigrationWorkerArgs args;
	BackgroundWorkerHandle *handle;
	MemoryContext old;
	bool		ok;

	mr_describe_dynamic_worker(&worker, "mr_worker_main", MR_WORKER_TYPE);
	if (item->slice == 0)
		snprintf(worker.bgw_name, BGW_MAXLEN, "migration_runner worker for %s",
				 item->name);
	else
		snprintf(worker.bgw_name, BGW_MAXLEN, "migration_runner worker for %s slice %d",
				 item->name, item->slice);
	memset(&args, 0, sizeof(args));
	args.database = MyDatabaseId;
	args.owner = item->owner;
	args.migration_id = item->id;
	args.slice = item->slice;
	memcpy(worker.bgw_extra, &args, sizeof(args));

	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(old);
	if (!ok)
		return false;

	slot->handle = handle;
	slot->pid = 0;
	slot->row_missing = item->row_missing;
	slot->row_xmin = item->row_xmin;
	slot->started_at = GetCurrentTimestamp();
	return true;
}

/*
 * The work items, in the order they get workers: every migration's first
 * worker before any migration's second (a slice that already has a runner
 * counts as one of the first), then the oldest migration first.
 */
static int
compare_items(const void *a, const void *b)
{
	const WorkItem *x = (const WorkItem *) a;
	const WorkItem *y = (const WorkItem *) b;

	/* small non-negative numbers: their difference cannot overflow */
	if (x->rank != y->rank)
		return x->rank - y->rank;
	if (x->order != y->order)
		return x->order - y->order;
	return x->slice - y->slice;
}

/*
 * Does one of the migration's slices (or the migration as one piece) have
 * a runner?  Ours, or another process that holds its runner lock: CALL
 * mig_run, or a worker a terminated launcher left behind.
 */
static bool
item_has_runner(WorkItem *item, bool sliced)
{
	TrackedWorker *whole;

	if (mr_tracked_is_live(item->id, item->slice))
		return true;
	/* as one piece: any runner of the migration (one that split it, say) */
	if (!sliced)
		return mr_runner_is_active(item->id);
	/* the slice our worker for the migration as one piece went on to run */
	whole = mr_find_tracked(item->id, 0);
	if (whole != NULL && whole->handle != NULL && whole->pid != 0 &&
		item->row_pid == (int32) whole->pid)
		return true;
	return mr_slice_runner_is_active(item->id, item->slice);
}

/*
 * How many of a migration's slices beyond a lowered parallel (running rows
 * past parallel, in the int4[] orphans) have no runner.  Nobody is there to
 * adopt them once the runners of the other slices stopped looking for work.
 */
static int
free_orphans(int64 id, Datum orphans)
{
	Datum	   *slices;
	bool	   *nulls;
	int			n;
	int			free = 0;
	int			i;

	deconstruct_array(DatumGetArrayTypeP(orphans), INT4OID, sizeof(int32),
					  true, TYPALIGN_INT, &slices, &nulls, &n);
	for (i = 0; i < n; i++)
		if (!mr_slice_runner_is_active(id, DatumGetInt32(slices[i])))
			free++;
	return free;
}

/*
 * Rank the items first..last-1 of one migration: those that have a runner
 * come first (they are its first workers) and are skipped, then the others
 * in slice order.  Done slices (there only because of orphans) get as many
 * workers as there are orphans without a runner.  (A worker of a done
 * slice on its way to adopt one still leaves it counted: at worst one more
 * worker starts, and leaves at once when it finds it taken.)
 */
static void
rank_migration(WorkItem *items, int first, int last, int orphans)
{
	bool		sliced = items[first].slice > 0;
	bool		blocked = false;
	bool		reserved = false;
	int			rank = 0;
	int			j;

	/*
	 * CALL mig_run runs the slices one after another itself while it holds
	 * slice 0's lock: no worker for any slice of it.  If our own worker for
	 * slice 0 holds it, that worker split the keys and is on its way to
	 * adopt the first slice without a runner: leave that one to it.
	 */
	if (sliced && mr_slice_runner_is_active(items[first].id, 0))
	{
		if (mr_tracked_is_live(items[first].id, 0))
			reserved = true;
		else
			blocked = true;
	}
	for (j = first; j < last; j++)
		if (blocked || item_has_runner(&items[j], sliced))
		{
			items[j].skip = true;
			items[j].rank = rank++;
		}
	for (j = first; j < last; j++)
	{
		if (items[j].skip)
			continue;
		if (reserved || (items[j].row_done && orphans-- <= 0))
			items[j].skip = true;
		reserved = false;
		items[j].rank = rank++;
	}
}

/*
 * Read what needs a worker, among the running managed migrations whose
 * prerequisites (after) have all completed: slice 0 of each one without
 * slices; for one with slices, each slice k up to parallel whose row is
 * still running or not made yet (its worker makes it by taking work from
 * the largest slice).  Slices beyond a lowered parallel get no worker
 * of their own: the other runners adopt them.  A done slice needs none,
 * unless such a slice was left without a runner after the other runners
 * stopped looking for work: then a done slice's worker starts again to
 * adopt it.  Sets *n; the items are in the order they should get workers,
 * those to skip included.
 */
static WorkItem *
read_work_items(int *n)
{
	SPITupleTable *tuptable;
	TupleDesc	desc;
	WorkItem   *items;
	int			rows;
	int			i;
	int			first = 0;
	int			orphans = 0;
	int			order = 0;

	if (SPI_execute(psprintf("SELECT m.id, m.owner::oid, m.name, i.slice, "
							 "       CASE WHEN i.slice = 0 THEN m.xmin ELSE s.xmin END, "
							 "       i.slice > 0 AND s.slice IS NULL, s.worker_pid, "
							 "       s.status = 'done', x.orphans "
							 "  FROM %s m "
							 " CROSS JOIN LATERAL (SELECT EXISTS (SELECT FROM %s s "
							 "        WHERE s.migration_id = m.id) AND NOT m.per_shard AS sliced, "
							 "        (SELECT pg_catalog.array_agg(o.slice) FROM %s o "
							 "          WHERE o.migration_id = m.id AND NOT m.per_shard "
							 "            AND o.slice > m.parallel "
							 "            AND o.status = 'running') AS orphans) x "
							 " CROSS JOIN LATERAL pg_catalog.generate_series("
							 "        CASE WHEN x.sliced THEN 1 ELSE 0 END, "
							 "        CASE WHEN x.sliced THEN LEAST(m.parallel, %d) ELSE 0 END) "
							 "        AS i(slice) "
							 "  LEFT JOIN %s s ON s.migration_id = m.id AND s.slice = i.slice "
							 " WHERE m.status = 'running' AND m.relation IS NOT NULL "
							 "   AND m.coordinator_id IS NULL "
							 "   AND %s "
							 "   AND (s.slice IS NULL OR s.status = 'running' "
							 "        OR x.orphans IS NOT NULL) "
							 " ORDER BY m.started_at, m.id, i.slice",
							 mr_catalog_table("migrations"),
							 mr_catalog_table("migration_slices"),
							 mr_catalog_table("migration_slices"),
							 MR_MAX_PARALLEL,
							 mr_catalog_table("migration_slices"),
							 mr_chain_ready_condition("m")),
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read running migrations");
	tuptable = SPI_tuptable;
	desc = tuptable->tupdesc;
	rows = (int) SPI_processed;
	items = palloc0(sizeof(WorkItem) * Max(rows, 1));

	for (i = 0; i < rows; i++)
	{
		WorkItem   *item = &items[i];
		HeapTuple	tuple = tuptable->vals[i];
		bool		isnull;
		Datum		d;

		item->id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		if (i > first && item->id != items[first].id)
		{
			/* the previous migration's items are all read */
			rank_migration(items, first, i, orphans);
			first = i;
			order++;
		}
		item->owner = DatumGetObjectId(SPI_getbinval(tuple, desc, 2, &isnull));
		item->name = SPI_getvalue(tuple, desc, 3);
		item->slice = DatumGetInt32(SPI_getbinval(tuple, desc, 4, &isnull));
		d = SPI_getbinval(tuple, desc, 5, &isnull);
		item->row_xmin = isnull ? InvalidTransactionId : DatumGetTransactionId(d);
		item->row_missing = DatumGetBool(SPI_getbinval(tuple, desc, 6, &isnull));
		d = SPI_getbinval(tuple, desc, 7, &isnull);
		item->row_pid = isnull ? 0 : DatumGetInt32(d);
		d = SPI_getbinval(tuple, desc, 8, &isnull);
		item->row_done = !isnull && DatumGetBool(d);
		item->order = order;
		if (i == first)
		{
			d = SPI_getbinval(tuple, desc, 9, &isnull);
			orphans = isnull ? 0 : free_orphans(item->id, d);
		}
	}
	if (rows > 0)
		rank_migration(items, first, rows, orphans);
	qsort(items, rows, sizeof(WorkItem), compare_items);
	*n = rows;
	return items;
}

/*
 * Over its fair share of the budget while another database waits: ask our
 * newest worker to stop after its batch (one at a time), or withdraw the
 * request once the share is fair again.
 */
static void
yield_if_over_share(void)
{
	pid_t		asked = mr_budget_yield_pid();
	bool		over = mr_budget_over_share();
	pid_t		newest;

	if (asked != 0 && mr_tracked_pid_is_live(asked))
	{
		if (!over)
			mr_budget_set_yield_pid(0);
		return;
	}
	newest = over ? mr_newest_worker() : 0;
	if (newest != asked)
		mr_budget_set_yield_pid(newest);
	if (newest != 0)
		ereport(LOG,
				(errmsg("migration_runner: asking worker %d of database \"%s\" to stop after its batch for a database that waits for a worker",
						(int) newest, get_database_name(MyDatabaseId)),
				 errdetail("The database runs more than its share of migration_runner.max_workers; the migration stays running and goes on from its cursor when a worker is free.")));
}

/*
 * Start workers for the work items that have none, fairly (above), as far
 * as the server's budget allows (budget.c).  Sets *busy when the scheduler
 * has something to do: a worker of its own runs, or an item waits for one.
 * Returns how long to sleep at most before looking again.
 */
long
mr_schedule_workers(bool *busy)
{
	long		sleep_ms = mr_poll_interval_ms;
	bool		have_catalog = mr_extension_is_current();
	bool		freed;
	int			own = mr_reap_workers(have_catalog, &freed);
	int			running;
	bool		no_slot = false;
	bool		waiting = false;
	WorkItem   *items;
	int			wanted;
	int			n;
	int			i;

	*busy = own > 0;
	/* a slot is free now: work waiting for one may try at once */
	if (freed)
		slot_backoff_ms = 0;
	if (!have_catalog || !mr_enabled || mr_max_workers == 0 ||
		!mr_database_served(get_database_name(MyDatabaseId)))
	{
		mr_budget_publish(own, own);
		return sleep_ms;
	}

	running = own + mr_count_foreign_workers();
	SPI_connect();
	items = read_work_items(&n);
	wanted = running;
	for (i = 0; i < n; i++)
		if (!items[i].skip)
			wanted++;
	*busy = *busy || wanted > running;
	mr_budget_publish(running, wanted);

	for (i = 0; i < n; i++)
	{
		WorkItem   *item = &items[i];
		TrackedWorker *slot;
		char	   *problem;

		if (item->skip)
			continue;			/* has a runner, or CALL mig_run has it */
		slot = mr_find_tracked(item->id, item->slice);
		if (slot != NULL && slot->retry_at > GetCurrentTimestamp())
		{
			sleep_ms = Min(sleep_ms,
						   TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
														   slot->retry_at) + 1);
			continue;
		}
		if (!mr_still_runnable(item->id))
			continue;
		problem = mr_owner_problem(item->owner);
		if (problem != NULL)
		{
			mr_fail_unrunnable(item->id, problem);
			continue;
		}
		slot = mr_tracking_slot(item->id, item->slice);
		if (slot == NULL)
			break;				/* all tracked entries have live workers */
		if (!mr_budget_take())
		{
			waiting = true;
			break;
		}
		/* after one failed start, the others would fail too */
		if (no_slot || !start_worker(item, slot))
		{
			no_slot = true;
			mr_budget_give_back();
			wait_for_slot(item->id, item->name);
		}
	}
	SPI_finish();
	yield_if_over_share();

	/*
	 * Workers that are not ours (another database's, or left by a scheduler
	 * before us) fill the budget, and their exits may not wake us.
	 */
	if (waiting)
		sleep_ms = Min(sleep_ms, FOREIGN_RECHECK_MS);
	if (no_slot)
	{
		slot_backoff_ms = slot_backoff_ms == 0 ? MIN_SLOT_BACKOFF_MS :
			Min(slot_backoff_ms * 2, MAX_SLOT_BACKOFF_MS);
		sleep_ms = Min(sleep_ms, slot_backoff_ms);
	}
	else if (slot_shortage)
		end_slot_shortage();
	return sleep_ms;
}
