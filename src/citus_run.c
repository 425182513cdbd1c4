/*-------------------------------------------------------------------------
 *
 * citus_run.c
 *	  Per-shard runs of Citus distributed tables: the coordinator's side.
 *
 * A migration of a hash-distributed table whose key contains the
 * distribution column runs where its shards live: each shard placement is
 * a migration of its own on its node (shard.c), which commits each batch's
 * data change and cursor in one local transaction.  The coordinator's
 * runner (the worker of slice 0, or CALL mig_run) comes here instead of
 * the batch engine, and drives them all:
 *
 *	1. it splits the migration into one slice per shard (citus_slices.c),
 *	   once: a later run goes on with the slices left;
 *	2. it connects to each node as the migration's owner, up to parallel
 *	   connections a node (citus_nodes.c), and calls mig_shard_prepare
 *	   for a slice the node has not started yet, then CALL mig_shard_batch,
 *	   which runs batches for about MR_SHARD_BUDGET_MS, for the node's
 *	   slices in turn;
 *	3. after every answer it mirrors the node's figures into the slice,
 *	   follows a shard that moved or was split, and looks at the
 *	   migration's status: a pause or cancel on the coordinator stops it.
 *
 * A node that cannot be reached makes its slices wait (waiting_since,
 * shown by mig_status) while the other nodes go on; the runner tries it
 * again with a backoff, and fails the migration only when it stays away
 * past migration_runner.node_wait_limit.  Any other error of a node fails
 * the migration at once: its batches retried already, on the node.
 *
 * However the run ends, the calls under way are drained first: what a
 * node committed is then mirrored before the runner leaves.  Nothing is
 * lost if it is not (a crash): the node's migration is the truth, and its
 * next answer carries its totals.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "citus.h"

/* how long a stopping run waits for the calls under way at most */
#define DRAIN_LIMIT_MS		30000

/* how long a slice rests after 'busy', and while its move is not visible */
#define BUSY_RETRY_MS		500
#define MOVE_RETRY_MS		250

/* commit, begin the next transaction, and go on in the loop's memory */
static void
next_xact(CitusRun *cr)
{
	cr->hooks->commit_and_begin();
	mr_pin_transaction();
	cr->home = CurrentMemoryContext;
	MemoryContextSwitchTo(cr->itercxt);
}

static void
stop(CitusRun *cr, RunOutcome outcome)
{
	if (cr->stopping)
		return;
	cr->stopping = true;
	cr->outcome = outcome;
	cr->stopping_since = GetCurrentTimestamp();
}

/* "shard N (slice k) on node H", for an error's context */
static char *
where(ShardSlice *s)
{
	return psprintf("shard " INT64_FORMAT " (slice %d) on node %s",
					s->shard_id, s->slice, s->node);
}

/* give every node that has slices left its connections, up to parallel */
static void
ensure_conns(CitusRun *cr)
{
	int			per_node = Max(1, cr->m->parallel);
	int			i;
	int			j;

	for (i = 0; i < cr->nslices; i++)
	{
		int			have = 0;

		if (cr->slices[i].done)
			continue;
		for (j = 0; j < cr->nconns; j++)
			have += strcmp(cr->conns[j].node, cr->slices[i].node) == 0;
		for (; have < per_node; have++)
		{
			NodeConn   *nc;

			cr->conns = cr->conns == NULL ?
				MemoryContextAllocZero(cr->cxt, sizeof(NodeConn)) :
				repalloc(cr->conns, sizeof(NodeConn) * (cr->nconns + 1));
			nc = &cr->conns[cr->nconns++];
			memset(nc, 0, sizeof(NodeConn));
			nc->node = MemoryContextStrdup(cr->cxt, cr->slices[i].node);
			nc->state = NC_DOWN;
			nc->slice = -1;
		}
	}
}

/* does the node have a slice to run that no call runs now? */
static bool
node_has_work(CitusRun *cr, const char *node)
{
	int			i;

	for (i = 0; i < cr->nslices; i++)
		if (!cr->slices[i].done && !cr->slices[i].in_flight &&
			strcmp(cr->slices[i].node, node) == 0)
			return true;
	return false;
}

/* the next slice of the connection's node to run, round robin; or -1 */
static int
pick_slice(CitusRun *cr, NodeConn *nc, TimestampTz now)
{
	int			k;

	for (k = 1; k <= cr->nslices; k++)
	{
		int			i = (nc->rr + k) % cr->nslices;
		ShardSlice *s = &cr->slices[i];

		if (!s->done && !s->in_flight && s->not_before <= now &&
			strcmp(s->node, nc->node) == 0)
		{
			nc->rr = i;
			return i;
		}
	}
	return -1;
}

static long
ms_until(TimestampTz now, TimestampTz then)
{
	return then <= now ? 0 : (long) ((then - now) / 1000);
}

/*
 * Start the connections that have work, and a call on every idle one.
 * Returns how long the loop may wait for an answer before there is
 * something else to do.
 */
static long
dispatch(CitusRun *cr)
{
	TimestampTz now = GetCurrentTimestamp();
	long		timeout = MR_STATUS_CHECK_MS;
	int			i;

	ensure_conns(cr);
	for (i = 0; i < cr->nconns; i++)
	{
		NodeConn   *nc = &cr->conns[i];
		int			idx;

		if (nc->state == NC_DOWN && nc->error == NULL && node_has_work(cr, nc->node))
		{
			if (nc->retry_at <= now)
				mr_node_start_connect(cr, nc);
			else
				timeout = Min(timeout, ms_until(now, nc->retry_at));
		}
		if (nc->state != NC_READY || nc->slice >= 0 ||
			(idx = pick_slice(cr, nc, now)) < 0)
			continue;
		if (cr->slices[idx].local_id == 0)
			mr_node_send_prepare(cr, nc, idx);
		else
			mr_node_send_batch(cr, nc, idx);
	}
	for (i = 0; i < cr->nslices; i++)
		if (!cr->slices[i].done && cr->slices[i].not_before > now)
			timeout = Min(timeout, ms_until(now, cr->slices[i].not_before));
	return timeout;
}

/*
 * The connection's node could not be reached: its slices wait, and it is
 * tried again after a backoff, unless it has been away too long.
 */
static void
node_lost(CitusRun *cr, NodeConn *nc, const char *error)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz since;

	mr_node_close(nc);
	nc->error = NULL;
	nc->backoff_ms = Min(MR_NODE_BACKOFF_MAX_MS, Max(250, nc->backoff_ms * 2));
	nc->retry_at = now + (TimestampTz) nc->backoff_ms * 1000;
	if (!nc->waiting)
		ereport(LOG,
				(errmsg("migration_runner: migration \"%s\" cannot reach node %s: %s",
						cr->m->name, nc->node, error),
				 errdetail("Its shards on that node wait; the others go on.")));
	nc->waiting = true;
	since = mr_citus_node_waiting(cr, nc->node, error);
	if (since != 0 && TimestampDifferenceExceeds(since, now, mr_node_wait_limit_ms))
		mr_citus_fail(cr, psprintf("node %s could not be reached for longer than migration_runner.node_wait_limit (%d ms): %s",
								   nc->node, mr_node_wait_limit_ms, error),
					  "08006", psprintf("per-shard run of migration \"%s\"", cr->m->name),
					  "Bring the node back, then resume the migration; it goes on after the last batch each shard committed.");
}

/* a node answered a call with an error of its own: the migration fails */
static void
node_error(CitusRun *cr, NodeConn *nc, ShardSlice *s, PGresult *res)
{
	const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *context = PQresultErrorField(res, PG_DIAG_CONTEXT);
	const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	bool		missing = sqlstate != NULL &&
		(strcmp(sqlstate, "42883") == 0 || strcmp(sqlstate, "3F000") == 0 ||
		 strcmp(sqlstate, "42704") == 0);

	if (missing)
		hint = "migration_runner must be installed on every node: CREATE EXTENSION "
			"migration_runner on the coordinator is propagated by Citus to the nodes it knows; "
			"on a node where it is missing, create it there (the same version).";
	mr_citus_fail(cr, psprintf(missing ? "migration_runner is missing on node %s: %s" : "node %s: %s",
							   nc->node, mr_node_error(nc, res)), sqlstate,
				  psprintf("%s%s%s", context ? context : "", context ? "\n" : "", where(s)),
				  hint);
}

/* what a node said after CALL mig_shard_batch */
static void
batch_answered(CitusRun *cr, NodeConn *nc, ShardSlice *s, PGresult *res,
			   TimestampTz started_at)
{
	int			col = PQfnumber(res, "status");
	char	   *status = col < 0 || PQntuples(res) != 1 ? "" : PQgetvalue(res, 0, col);
	TimestampTz now = GetCurrentTimestamp();

	if (strcmp(status, "busy") != 0)
		mr_citus_record(cr, s, res, status, started_at);
	if (strcmp(status, "running") == 0 || strcmp(status, "completed") == 0)
		return;
	if (strcmp(status, "busy") == 0)
		s->not_before = now + BUSY_RETRY_MS * 1000;
	else if (strcmp(status, "moved") == 0)
	{
		if (mr_citus_transfer(cr, s))
			mr_citus_load_slices(cr);	/* s is gone: the slices are new */
		else
			s->not_before = now + MOVE_RETRY_MS * 1000;
	}
	else if (strcmp(status, "failed") == 0)
	{
		col = PQfnumber(res, "error");
		mr_citus_fail(cr, psprintf("%s", col >= 0 ? PQgetvalue(res, 0, col) : "unknown error"),
					  PQfnumber(res, "sqlstate") >= 0 ?
					  PQgetvalue(res, 0, PQfnumber(res, "sqlstate")) : NULL,
					  where(s), NULL);
	}
	else if (strcmp(status, "stopped") == 0)
		mr_citus_fail(cr, psprintf("the node's migration of shard " INT64_FORMAT " was cancelled",
								   s->shard_id),
					  "57014", where(s),
					  "A node's migration of a shard is controlled from the coordinator: pause or cancel the migration there.");
	else
		mr_citus_fail(cr, psprintf("node %s answered mig_shard_batch with status \"%s\"",
								   nc->node, status),
					  "XX000", where(s),
					  "The node's migration_runner must be the coordinator's version.");
}

/* a call finished: handle its answer */
static void
call_done(CitusRun *cr, NodeConn *nc)
{
	ShardSlice *s = &cr->slices[nc->slice];
	PGresult   *res = nc->result;
	TimestampTz started_at = nc->started_at;
	bool		preparing = nc->preparing;

	nc->result = NULL;
	nc->slice = -1;
	s->in_flight = false;
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		if (mr_node_lost(nc, res))
			node_lost(cr, nc, mr_node_error(nc, res));
		else
			node_error(cr, nc, s, res);
	}
	else
	{
		if (nc->waiting)
			mr_citus_node_reached(cr, nc->node);
		nc->waiting = false;
		if (preparing)
			mr_citus_set_local_id(cr, s, strtoi64(PQgetvalue(res, 0, 0), NULL, 10));
		else
			batch_answered(cr, nc, s, res, started_at);
	}
	if (res)
		PQclear(res);
}

/* someone paused or cancelled the migration on the coordinator? */
static void
check_status(CitusRun *cr)
{
	Migration  *m = mr_migration_by_id(cr->m->id, false);

	cr->status_checked_at = GetCurrentTimestamp();
	if (m == NULL || strcmp(m->status, MR_STATUS_RUNNING) != 0)
		stop(cr, RUN_STOPPED);
	else
		cr->m->parallel = m->parallel;	/* mig_alter: connections a node */
}

/* handle what the wait brought, in a transaction of its own */
static void
handle_answers(CitusRun *cr)
{
	bool		any = false;
	int			i;

	PushActiveSnapshot(GetTransactionSnapshot());
	for (i = 0; i < cr->nconns; i++)
	{
		NodeConn   *nc = &cr->conns[i];

		if (nc->state == NC_DOWN && nc->error != NULL)
			node_lost(cr, nc, mr_node_error(nc, NULL));
		else if (nc->state == NC_READY && nc->slice >= 0)
		{
			call_done(cr, nc);
			any = true;
		}
	}
	if (any || TimestampDifferenceExceeds(cr->status_checked_at, GetCurrentTimestamp(),
										  MR_STATUS_CHECK_MS))
		check_status(cr);
	PopActiveSnapshot();
	next_xact(cr);
}

/*
 * A cancel request (pg_cancel_backend, or ^C on CALL mig_run) pauses the
 * migration, as it does a run of the batch engine (run.c): the pause is
 * committed at once, the calls under way drain, and the cancel error is
 * raised as the run ends.
 */
static void
look_at_cancel(CitusRun *cr)
{
	if (!QueryCancelPending || ProcDiePending)
		return;
	QueryCancelPending = false;
	if (cr->cancelled)
		return;
	cr->cancelled = true;
	mr_pause_if_running(cr->m->id);
	next_xact(cr);
	stop(cr, RUN_STOPPED);
}

static bool
any_in_flight(CitusRun *cr)
{
	int			i;

	for (i = 0; i < cr->nconns; i++)
		if (cr->conns[i].slice >= 0)
			return true;
	return false;
}

static bool
all_done(CitusRun *cr)
{
	int			i;

	for (i = 0; i < cr->nslices; i++)
		if (!cr->slices[i].done)
			return false;
	return true;
}

/*
 * Read the migration, split it into shards on its first run, and record
 * this process as its runner.  False when it is not running any more.
 */
static bool
start_run(CitusRun *cr, int64 migration_id)
{
	MemoryContext old = MemoryContextSwitchTo(cr->cxt);
	char	   *table;

	PushActiveSnapshot(GetTransactionSnapshot());
	cr->m = mr_migration_by_id(migration_id, true);
	if (cr->m == NULL || strcmp(cr->m->status, MR_STATUS_RUNNING) != 0)
	{
		PopActiveSnapshot();
		MemoryContextSwitchTo(old);
		return false;
	}
	/* the extension's schema, quoted: the same on every node */
	table = pstrdup(mr_catalog_table("migrations"));
	table[strlen(table) - strlen(".migrations")] = '\0';
	cr->schema = table;
	mr_citus_setup_slices(cr);
	mr_citus_load_slices(cr);
	cr->status_checked_at = GetCurrentTimestamp();
	PopActiveSnapshot();
	MemoryContextSwitchTo(old);
	next_xact(cr);
	return true;
}

static void
close_all(CitusRun *cr, bool drop_in_flight)
{
	int			i;

	for (i = 0; i < cr->nconns; i++)
	{
		if (cr->conns[i].slice >= 0 && drop_in_flight)
			cr->slices[cr->conns[i].slice].in_flight = false;
		mr_node_close(&cr->conns[i]);
	}
}

static RunOutcome
citus_loop(CitusRun *cr, int64 migration_id)
{
	if (!start_run(cr, migration_id))
		return RUN_STOPPED;
	for (;;)
	{
		long		timeout = MR_STATUS_CHECK_MS;

		MemoryContextReset(cr->itercxt);
		look_at_cancel(cr);
		CHECK_FOR_INTERRUPTS();
		if (cr->hooks->should_stop())
			stop(cr, RUN_INTERRUPTED);
		if (!cr->stopping && all_done(cr))
		{
			PushActiveSnapshot(GetTransactionSnapshot());
			mr_citus_complete(cr);
			PopActiveSnapshot();
			next_xact(cr);
			if (cr->outcome == RUN_COMPLETED)
				return RUN_COMPLETED;
			stop(cr, RUN_STOPPED);
		}
		if (!cr->stopping)
			timeout = dispatch(cr);
		else if (!any_in_flight(cr))
			break;
		else if (TimestampDifferenceExceeds(cr->stopping_since, GetCurrentTimestamp(),
											DRAIN_LIMIT_MS))
		{
			close_all(cr, true);
			break;
		}
		mr_node_wait(cr, timeout);
		handle_answers(cr);
	}
	/* the run ends without completing: the catalog no longer names us */
	if (cr->outcome != RUN_FAILED)
	{
		mr_forget_runner_pid(cr->m->id);
		next_xact(cr);
	}
	return cr->outcome;
}

/*
 * Run a per-shard migration from the coordinator until it completes, is
 * stopped, fails, or the runner is told to stop.  As mr_run_migration: the
 * caller holds the runner lock of slice 0 and has a pinned transaction
 * open; returns with a transaction open; on RUN_FAILED *sqlerrcode is the
 * SQLSTATE of the node's error.
 */
RunOutcome
mr_citus_run(int64 migration_id, const RunnerHooks *hooks, int *sqlerrcode)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext,
											  "migration_runner per-shard run",
											  ALLOCSET_DEFAULT_SIZES);
	CitusRun   *cr = MemoryContextAllocZero(cxt, sizeof(CitusRun));
	volatile RunOutcome outcome = RUN_STOPPED;
	volatile bool cancelled = false;

	cr->cxt = cxt;
	cr->itercxt = AllocSetContextCreate(cxt, "migration_runner per-shard turn",
										ALLOCSET_DEFAULT_SIZES);
	cr->home = CurrentMemoryContext;
	cr->hooks = hooks;
	*sqlerrcode = 0;
	PG_TRY();
	{
		outcome = citus_loop(cr, migration_id);
		*sqlerrcode = cr->sqlerrcode;
		cancelled = cr->cancelled;
	}
	PG_FINALLY();
	{
		/* the connections are ours to close, whatever happened */
		close_all(cr, false);
		MemoryContextSwitchTo(cr->home);
		MemoryContextDelete(cxt);
	}
	PG_END_TRY();
	if (cancelled)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("canceling statement due to user request")));
	return outcome;
}
