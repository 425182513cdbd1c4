/*-------------------------------------------------------------------------
 *
 * citus.h
 *	  The coordinator's side of per-shard runs on Citus, shared by its files:
 *	  citus_run.c (the loop), citus_nodes.c (libpq connections to the
 *	  nodes) and citus_slices.c (the slice rows that mirror the nodes).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATION_RUNNER_CITUS_H
#define MIGRATION_RUNNER_CITUS_H

#include "libpq-fe.h"
#include "utils/timestamp.h"

#include "migration_runner.h"

/* how long one CALL mig_shard_batch runs batches on its node */
#define MR_SHARD_BUDGET_MS		200

/* how often the loop looks at the migration's status, at least */
#define MR_STATUS_CHECK_MS		200

/* the longest wait between two attempts to reach a node */
#define MR_NODE_BACKOFF_MAX_MS	5000

/* a connection attempt that takes longer than this failed */
#define MR_NODE_CONNECT_TIMEOUT_MS 10000

/* one shard's slice as the coordinator's loop sees it */
typedef struct ShardSlice
{
	int			slice;
	int64		shard_id;
	int64		placement_id;
	char	   *node;			/* "host:port" */
	int64		local_id;		/* the node's migration, or 0: not prepared */
	char	   *cursor;			/* text[] literal of the node's cursor, or NULL */
	int64		processed;		/* the mirror: base + the node's totals */
	int64		batches;
	double		bounds_ms;		/* the node's totals, to tell a batch's share */
	double		action_ms;
	bool		done;
	bool		in_flight;		/* a call for it is under way */
	TimestampTz not_before;		/* busy or moving: not before this */
} ShardSlice;

typedef enum NodeConnState
{
	NC_DOWN,					/* no connection: (re)connect at retry_at */
	NC_CONNECTING,
	NC_READY,					/* connected, no call under way */
	NC_BUSY						/* a call is under way */
} NodeConnState;

/* one connection to a node; a node has up to parallel of them */
typedef struct NodeConn
{
	char	   *node;
	NodeConnState state;
	PGconn	   *conn;
	PostgresPollingStatusType poll;
	TimestampTz started_at;		/* of the connection attempt, or the call */
	TimestampTz retry_at;		/* NC_DOWN: when to try again */
	int			backoff_ms;
	int			slice;			/* index into the run's slices of the call, or -1 */
	bool		preparing;		/* the call is mig_shard_prepare */
	PGresult   *result;			/* the finished call's result, to handle */
	char	   *error;			/* why the connection was lost, or NULL */
	int			rr;				/* round robin over the node's slices */
	bool		waiting;		/* its node could not be reached last time */
} NodeConn;

/* the state of one per-shard run of the coordinator */
typedef struct CitusRun
{
	Migration  *m;
	MemoryContext cxt;			/* lives as long as the run */
	MemoryContext itercxt;		/* reset at every turn of the loop */
	MemoryContext home;			/* the caller's, as of the last commit */
	const RunnerHooks *hooks;
	const char *schema;			/* the extension's schema, quoted */
	ShardSlice *slices;
	int			nslices;
	NodeConn   *conns;
	int			nconns;
	bool		stopping;		/* send nothing more; drain the calls */
	RunOutcome	outcome;		/* once stopping: how the run ends */
	int			sqlerrcode;
	bool		cancelled;		/* a cancel request paused the migration */
	TimestampTz status_checked_at;
	TimestampTz stopping_since;
} CitusRun;

/* citus_nodes.c */
extern void mr_node_start_connect(CitusRun *cr, NodeConn *nc);
extern void mr_node_send_prepare(CitusRun *cr, NodeConn *nc, int idx);
extern void mr_node_send_batch(CitusRun *cr, NodeConn *nc, int idx);
extern void mr_node_wait(CitusRun *cr, long timeout_ms);
extern void mr_node_close(NodeConn *nc);
extern bool mr_node_lost(NodeConn *nc, PGresult *res);
extern char *mr_node_error(NodeConn *nc, PGresult *res);

/* citus_slices.c */
extern void mr_citus_setup_slices(CitusRun *cr);
extern void mr_citus_load_slices(CitusRun *cr);
extern void mr_citus_set_local_id(CitusRun *cr, ShardSlice *s, int64 local_id);
extern void mr_citus_record(CitusRun *cr, ShardSlice *s, PGresult *res,
							const char *status, TimestampTz started_at);
extern void mr_citus_node_reached(CitusRun *cr, const char *node);
extern TimestampTz mr_citus_node_waiting(CitusRun *cr, const char *node,
										 const char *error);
extern bool mr_citus_transfer(CitusRun *cr, ShardSlice *s);
extern void mr_citus_complete(CitusRun *cr);
extern void mr_citus_fail(CitusRun *cr, const char *error, const char *sqlstate,
						  const char *context, const char *hint);

#endif							/* MIGRATION_RUNNER_CITUS_H */
