/*-------------------------------------------------------------------------
 *
 * citus_nodes.c
 *	  libpq connections from the coordinator's runner to the Citus nodes
 *	  that hold a per-shard migration's placements.
 *
 * A runner talks to several nodes at once: each connection has at most one
 * call under way, and one wait (mr_node_wait) serves all of them together
 * with the process latch, so that a slow or unreachable node never holds
 * up the others, and interrupts (a cancel request, SIGTERM, the death of
 * the postmaster) are seen at once.  Connections are made asynchronously
 * for the same reason: PQconnectdb could block for as long as the network
 * takes to give up on a node that is down.
 *
 * A node is reached as the migration's owner, in the coordinator's
 * database: the node's functions run the action with that role's rights,
 * exactly as the coordinator's own batches would.  citus.node_conninfo
 * (TLS and the like) applies as it does to Citus' own connections.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "citus.h"

/* "host:port" split at the last colon: a host may be a socket directory */
static void
split_node(const char *node, char **host, char **port)
{
	const char *colon = strrchr(node, ':');

	if (colon == NULL)
	{
		*host = pstrdup(node);
		*port = pstrdup("5432");
		return;
	}
	*host = pnstrdup(node, colon - node);
	*port = pstrdup(colon + 1);
}

/*
 * Begin connecting to the node; mr_node_wait goes on with it.  A failure to
 * even start leaves the connection NC_DOWN with its error, for the loop to
 * handle as a node that cannot be reached.
 */
void
mr_node_start_connect(CitusRun *cr, NodeConn *nc)
{
	const char *keywords[8];
	const char *values[8];
	const char *extra = GetConfigOption("citus.node_conninfo", true, false);
	int			n = 0;
	char	   *host;
	char	   *port;
	MemoryContext old = MemoryContextSwitchTo(cr->cxt);

	split_node(nc->node, &host, &port);
	/* the first dbname is expanded: the keywords after it win */
	if (extra != NULL && extra[0] != '\0')
	{
		keywords[n] = "dbname";
		values[n++] = extra;
	}
	keywords[n] = "host";
	values[n++] = host;
	keywords[n] = "port";
	values[n++] = port;
	keywords[n] = "dbname";
	values[n++] = get_database_name(MyDatabaseId);
	keywords[n] = "user";
	values[n++] = GetUserNameFromId(cr->m->owner, false);
	keywords[n] = "application_name";
	values[n++] = "migration_runner";
	keywords[n] = NULL;
	values[n] = NULL;

	/* obey fd.c's limit on the descriptors it does not manage */
	if (!AcquireExternalFD())
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to node %s", nc->node),
				 errdetail("There are too many open files on the local server.")));
	nc->conn = PQconnectStartParams(keywords, values, 1);
	nc->started_at = GetCurrentTimestamp();
	nc->error = NULL;
	MemoryContextSwitchTo(old);
	if (nc->conn == NULL || PQstatus(nc->conn) == CONNECTION_BAD)
	{
		nc->error = nc->conn ? MemoryContextStrdup(cr->cxt, PQerrorMessage(nc->conn)) :
			"out of memory";
		mr_node_close(nc);
		return;
	}
	nc->state = NC_CONNECTING;
	nc->poll = PGRES_POLLING_WRITING;
}

/* drop the connection, whatever state it is in */
void
mr_node_close(NodeConn *nc)
{
	if (nc->conn != NULL)
	{
		PQfinish(nc->conn);
		ReleaseExternalFD();
		nc->conn = NULL;
	}
	if (nc->result != NULL)
		PQclear(nc->result);
	nc->result = NULL;
	nc->state = NC_DOWN;
	nc->slice = -1;
}

/* a text[] literal of strings */
static char *
array_literal(char **strings, int n)
{
	return OidOutputFunctionCall(F_ARRAY_OUT, mr_cstrings_to_text_array(strings, n));
}

/* an option in milliseconds as an interval, or NULL for the node's GUC */
static char *
interval_or_null(int ms)
{
	return ms < 0 ? NULL : psprintf("%d ms", ms);
}

static void
sent(CitusRun *cr, NodeConn *nc, int idx, bool preparing, int ok)
{
	if (!ok)
	{
		nc->error = MemoryContextStrdup(cr->cxt, PQerrorMessage(nc->conn));
		mr_node_close(nc);
		return;
	}
	nc->state = NC_BUSY;
	nc->slice = idx;
	nc->preparing = preparing;
	nc->started_at = GetCurrentTimestamp();
	cr->slices[idx].in_flight = true;
}

/*
 * Define (or find again: the call is idempotent) the node's migration of
 * slice idx's placement, starting after the slice's cursor.
 */
void
mr_node_send_prepare(CitusRun *cr, NodeConn *nc, int idx)
{
	Migration  *m = cr->m;
	ShardSlice *s = &cr->slices[idx];
	const char *values[15];
	char	   *sql;

	values[0] = psprintf(INT64_FORMAT, m->id);
	values[1] = psprintf("%d", m->citus_run);
	values[2] = psprintf(INT64_FORMAT, s->shard_id);
	values[3] = psprintf(INT64_FORMAT, s->placement_id);
	values[4] = m->relation_name;
	values[5] = m->action;
	values[6] = array_literal(m->key_names, m->nkeys);
	values[7] = psprintf("%d", m->current_batch_size > 0 ?
						 m->current_batch_size : m->batch_size);
	values[8] = m->search_path;
	values[9] = s->cursor;
	values[10] = interval_or_null(m->lock_timeout_ms);
	values[11] = interval_or_null(m->statement_timeout_ms);
	values[12] = m->max_retries < 0 ? NULL : psprintf("%d", m->max_retries);
	values[13] = interval_or_null(m->target_batch_ms);
	values[14] = interval_or_null(m->batch_delay_ms);
	/* typed, so that a node without the function says which one it lacks */
	sql = psprintf("SELECT %s.mig_shard_prepare($1::bigint, $2::int, $3::bigint, $4::bigint, "
				   "$5::text, $6::text, $7::text[], $8::int, $9::text, $10::text[], "
				   "$11::interval, $12::interval, $13::int, $14::interval, $15::interval)",
				   cr->schema);
	sent(cr, nc, idx, true,
		 PQsendQueryParams(nc->conn, sql, 15, NULL, values, NULL, NULL, 0));
}

/*
 * Run batches of slice idx's node migration for about MR_SHARD_BUDGET_MS.
 * A CALL passes something for every OUT parameter of a procedure.
 */
void
mr_node_send_batch(CitusRun *cr, NodeConn *nc, int idx)
{
	const char *values[2];

	values[0] = psprintf(INT64_FORMAT, cr->slices[idx].local_id);
	values[1] = psprintf("%d", MR_SHARD_BUDGET_MS);
	sent(cr, nc, idx, false,
		 PQsendQueryParams(nc->conn,
						   psprintf("CALL %s.mig_shard_batch($1::bigint, $2::int, %s)", cr->schema,
									"NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"),
						   2, NULL, values, NULL, NULL, 0));
}

/* advance a connection attempt whose socket is ready */
static void
poll_connect(CitusRun *cr, NodeConn *nc)
{
	nc->poll = PQconnectPoll(nc->conn);
	if (nc->poll == PGRES_POLLING_OK)
	{
		nc->state = NC_READY;
		nc->backoff_ms = 0;
	}
	else if (nc->poll == PGRES_POLLING_FAILED)
	{
		nc->error = MemoryContextStrdup(cr->cxt, PQerrorMessage(nc->conn));
		mr_node_close(nc);
	}
}

/*
 * Read what arrived for a call under way; when the call is over, keep its
 * (last) result for the loop.  A lost connection ends the call with an
 * error result, or with none at all.
 */
static void
read_call(CitusRun *cr, NodeConn *nc)
{
	PGresult   *res;

	if (!PQconsumeInput(nc->conn))
	{
		nc->error = MemoryContextStrdup(cr->cxt, PQerrorMessage(nc->conn));
		nc->state = NC_READY;
		return;
	}
	while (!PQisBusy(nc->conn))
	{
		res = PQgetResult(nc->conn);
		if (res == NULL)
		{
			nc->state = NC_READY;
			return;
		}
		if (nc->result != NULL)
			PQclear(nc->result);
		nc->result = res;
	}
}

/* the socket events a connection waits for, or 0 */
static uint32
wanted_events(NodeConn *nc)
{
	if (nc->state == NC_CONNECTING)
		return nc->poll == PGRES_POLLING_READING ? WL_SOCKET_READABLE :
			WL_SOCKET_WRITEABLE;
	if (nc->state == NC_BUSY)
		return WL_SOCKET_READABLE;
	return 0;
}

/*
 * Wait until a connection attempt or a call moves on, the latch is set, or
 * timeout_ms passed, and advance every connection whose socket is ready.
 * Attempts that take too long fail here.
 */
void
mr_node_wait(CitusRun *cr, long timeout_ms)
{
	WaitEventSet *set;
	WaitEvent  *events;
	int			nevents;
	int			i;
	TimestampTz now = GetCurrentTimestamp();

	set = CreateWaitEventSet(CurrentMemoryContext, cr->nconns + 2);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < cr->nconns; i++)
	{
		NodeConn   *nc = &cr->conns[i];
		uint32		ev = wanted_events(nc);

		if (nc->state == NC_CONNECTING &&
			TimestampDifferenceExceeds(nc->started_at, now, MR_NODE_CONNECT_TIMEOUT_MS))
		{
			nc->error = psprintf("timeout expired after %d ms",
								 MR_NODE_CONNECT_TIMEOUT_MS);
			nc->error = MemoryContextStrdup(cr->cxt, nc->error);
			mr_node_close(nc);
			continue;
		}
		if (ev != 0)
			AddWaitEventToSet(set, ev, PQsocket(nc->conn), NULL, nc);
	}
	events = palloc(sizeof(WaitEvent) * (cr->nconns + 2));
	nevents = WaitEventSetWait(set, timeout_ms, events, cr->nconns + 2,
							   PG_WAIT_EXTENSION);
	for (i = 0; i < nevents; i++)
	{
		NodeConn   *nc = (NodeConn *) events[i].user_data;

		if (events[i].events & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if (nc == NULL)
			continue;
		if (nc->state == NC_CONNECTING)
			poll_connect(cr, nc);
		else if (nc->state == NC_BUSY)
			read_call(cr, nc);
	}
	FreeWaitEventSet(set);
	pfree(events);
}

/*
 * Did the call fail because the node could not be reached (the connection
 * broke, the node shut down or is starting up), rather than with an error
 * of the node's own?
 */
bool
mr_node_lost(NodeConn *nc, PGresult *res)
{
	const char *state;

	if (nc->conn == NULL || PQstatus(nc->conn) == CONNECTION_BAD)
		return true;
	if (res == NULL)
		return true;
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (state == NULL)
		return true;
	return strncmp(state, "08", 2) == 0 ||
		strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 ||
		strcmp(state, "57P03") == 0;
}

/*
 * The error of a failed call, on one line: libpq's own messages (a failed
 * connection) end in a newline and may go on with a tabbed second line.
 */
char *
mr_node_error(NodeConn *nc, PGresult *res)
{
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	StringInfoData text;
	const char *c;

	if (msg == NULL)
		msg = nc->error ? nc->error : (nc->conn ? PQerrorMessage(nc->conn) : "connection lost");
	initStringInfo(&text);
	for (c = msg; *c; c++)
	{
		if (*c == '\n' || *c == '\t')
		{
			if (text.len > 0 && text.data[text.len - 1] != ' ')
				appendStringInfoChar(&text, ' ');
			continue;
		}
		appendStringInfoChar(&text, *c);
	}
	while (text.len > 0 && text.data[text.len - 1] == ' ')
		text.data[--text.len] = '\0';
	return text.data;
}
