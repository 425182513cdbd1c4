/*-------------------------------------------------------------------------
 *
 * migration_runner.h
 *	  Declarations shared by the files of migration_runner: the in-memory
 *	  form of a migration, the catalog accessors, the batch engine, the GUCs
 *	  and the shared state of the launcher.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATION_RUNNER_H
#define MIGRATION_RUNNER_H

#include "executor/spi.h"
#include "utils/palloc.h"

#define MR_EXTENSION_NAME	"migration_runner"
#define MR_EXTENSION_VERSION "1.1"
#define MR_NOTIFY_CHANNEL	"migration_runner"

/* the largest batch mig_define accepts, and the catalog's CHECK */
#define MR_MAX_BATCH_SIZE	1000000

/* most key columns a managed migration may have */
#define MR_MAX_KEY_COLUMNS	8

/*
 * advisory-lock field4 that marks "this process runs migration N" (as one
 * piece: slice 0), or slice k of it (field4 + k)
 */
#define MR_RUNNER_LOCK_FIELD4	0x4D52

/* most slices a migration may run in at once */
#define MR_MAX_PARALLEL		64

/* statuses of the catalog's status column */
#define MR_STATUS_PENDING	"pending"
#define MR_STATUS_RUNNING	"running"
#define MR_STATUS_PAUSED	"paused"
#define MR_STATUS_COMPLETED "completed"
#define MR_STATUS_FAILED	"failed"
#define MR_STATUS_CANCELLED "cancelled"

/*
 * The per-migration options in milliseconds (or a count), -1 for "use the
 * GUC": batch_delay, lock_timeout, statement_timeout, max_retries,
 * target_batch_time.
 */
#define MR_NUM_OPTIONS 5
#define MR_OPTION_COLUMNS \
	"coalesce((extract(epoch FROM batch_delay) * 1000)::int4, -1), " \
	"coalesce((extract(epoch FROM lock_timeout) * 1000)::int4, -1), " \
	"coalesce((extract(epoch FROM statement_timeout) * 1000)::int4, -1), " \
	"coalesce(max_retries, -1), " \
	"coalesce((extract(epoch FROM target_batch_time) * 1000)::int4, -1)"

/* catalog assignments that forget the last failure */
#define MR_CLEAR_ERROR \
	"error = NULL, error_detail = NULL, error_hint = NULL, error_context = NULL"

/*
 * A migration as read from the catalog.  Strings and arrays are palloc'd in
 * the memory context current when it was read.
 */
typedef struct Migration
{
	int64		id;
	char	   *name;
	char	   *status;
	Oid			owner;
	int64		processed;
	char	   *error;
	char	   *error_detail;
	char	   *error_hint;
	char	   *error_context;

	/* managed migrations only: relid is InvalidOid for application-driven */
	Oid			relid;
	char	   *relation_name;	/* quoted qualified name when defined */
	int			nkeys;
	char	   *key_names[MR_MAX_KEY_COLUMNS];
	Oid			key_types[MR_MAX_KEY_COLUMNS];
	char	   *action;
	char	   *search_path;
	Oid			action_target;	/* the table the action writes, or Invalid */
	int			batch_size;
	int			current_batch_size; /* 0 when never set */

	/* per-migration options; -1 means "use the GUC" */
	int			batch_delay_ms;
	int			lock_timeout_ms;
	int			statement_timeout_ms;
	int			max_retries;
	int			target_batch_ms;
	int			parallel;		/* how many slices may run at once */

	/* beyond the anchors (1.1) */
	char	   *verify;			/* the verify query, or NULL */
	bool		skip_errors;	/* on_error = 'skip' */
	int64		max_skipped;
	int64		skipped;
	int64		continued_from; /* id of the migration continued, or 0 */
	char	  **run_after;		/* names to wait for, or NULL */
	int			nrun_after;
	bool		verifying;		/* the final verify query is under way */

	/* Citus (1.1): see shard.c and citus_run.c */
	char	   *distribution;	/* 'hash', 'reference', ...; NULL: local */
	bool		per_shard;		/* a run goes shard by shard */
	int			citus_run;		/* runs split into shards so far */
	int64		coordinator_id; /* on a node: the coordinator's migration */
	int64		shard_id;		/* on a node: the shard it runs, else 0 */
	int64		placement_id;	/* on a node: that shard's placement here */

	/* cursor and high-water mark as text, NULL when not set */
	char	  **cursor;
	char	  **high_water;
	int64		batches;
} Migration;

#define MigrationIsManaged(m) (OidIsValid((m)->relid))

/* guc.c */

/* the largest migration_runner.max_workers: the launcher sizes its tables by it */
#define MR_MAX_WORKERS_LIMIT	64

extern char *mr_database;
extern bool mr_database_explicit;
extern char *mr_databases;
extern int	mr_max_workers;
extern int	mr_poll_interval_ms;
extern bool mr_enabled;
extern int	mr_batch_delay_ms;
extern int	mr_lock_timeout_ms;
extern int	mr_statement_timeout_ms;
extern int	mr_max_retries;
extern int	mr_target_batch_ms;
extern int	mr_min_batch_size;
extern int	mr_max_batch_size;
extern bool mr_synchronous_commit;
extern int	mr_history_size;
extern int	mr_max_replica_lag_ms;
extern int	mr_max_lock_waiters;
extern int	mr_max_wal_rate_kb;
extern int	mr_throttle_sleep_ms;
extern bool mr_citus_shards;
extern int	mr_node_wait_limit_ms;
extern void mr_define_gucs(void);
extern bool mr_database_served(const char *dbname);
extern const char *mr_only_database(void);

/* shmem.c */
extern bool mr_preloaded;
extern void mr_shmem_init(void);
extern void mr_wake_launcher_at_commit(void);
extern void mr_wake_database_at_commit(Oid dboid);
extern void mr_announce_change_at_commit(void);
extern bool mr_wait_for_change(long timeout_ms);
extern void mr_wait_done(void);

/* dbstate.c: wake-ups, schedulers and blocks per database */
extern void mr_wake_database(Oid dboid);
extern void mr_register_cluster_launcher(void);
extern bool mr_take_rescan_all(void);
extern bool mr_db_may_start(Oid dboid, bool wake_only);
extern bool mr_db_failed_start(Oid dboid);
extern void mr_db_forget_missing(const Oid *existing, int n);
extern bool mr_scheduler_register(void);
extern void mr_scheduler_begin_look(void);
extern bool mr_scheduler_should_exit(bool busy);
extern void mr_db_block(Oid dboid);
extern void mr_db_unblock(Oid dboid, bool wake);
extern bool mr_database_blocked(Oid dboid);

/* budget.c: in a worker */
extern bool mr_worker_must_yield(void);

/* catalog.c */
typedef struct CatalogAccess
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			guc_nestlevel;
} CatalogAccess;

extern Oid	mr_extension_oid(bool missing_ok);
extern bool mr_extension_is_current(void);
extern const char *mr_catalog_table(const char *table);
extern void mr_catalog_enter(CatalogAccess *access);
extern void mr_catalog_leave(CatalogAccess *access);
extern void mr_catalog_exec(const char *sql, int nargs, Oid *types,
							Datum *args, int expected_rc);
extern int64 mr_catalog_insert_returning_id(const char *sql, int nargs,
											Oid *types, Datum *args,
											const char *nulls);
extern char **mr_text_array_to_cstrings(Datum array, int *n);
extern Datum mr_cstrings_to_text_array(char **strings, int n);
extern Migration *mr_migration_by_name(const char *name, bool for_update);
extern Migration *mr_migration_by_id(int64 id, bool for_update);
extern void mr_check_ownership(Migration *m);
extern void mr_set_status(Migration *m, const char *new_status,
						  const char *extra_set);
extern void mr_notify_state_change(const char *name, const char *old_status,
								   const char *new_status, int64 processed);
extern void mr_require_arg(FunctionCallInfo fcinfo, int argno,
						   const char *argname);

/* define.c */
extern int64 mr_define_migration(FunctionCallInfo fcinfo);

/* keys.c */
extern const char *mr_key_type_problem(Oid typid);
extern void mr_check_key_types(Migration *m);
extern char *mr_format_key(char **values, int n);

/* plans.c */
extern char *mr_pinned_search_path(const char *path);

/* action.c, action_checks.c: also for the runner, at run start */
extern Oid	mr_action_write_target(SPIPlanPtr plan);

/* key_index.c: also at run start */
extern void mr_check_key_index(Migration *m);

/* run.c: the batch engine shared by CALL mig_run and the worker */
typedef struct MigrationRun MigrationRun;

typedef enum RunOutcome
{
	RUN_COMPLETED,				/* no key left: status is completed */
	RUN_STOPPED,				/* paused or cancelled by someone else */
	RUN_FAILED,					/* an action error marked it failed */
	RUN_INTERRUPTED,			/* the runner was asked to stop */
	RUN_SLICES_LEFT,			/* no work left for this runner; other
								 * runners finish the migration's slices */
	RUN_WAITING					/* a migration it runs after has not
								 * completed: nothing was run */
} RunOutcome;

/*
 * How the caller of the engine ends one transaction and begins the next:
 * CALL mig_run commits through SPI, the worker through xact.c directly.
 */
typedef struct RunnerHooks
{
	void		(*commit_and_begin) (void);
	bool		(*should_stop) (void);
	bool		runs_every_slice;	/* CALL: run the slices one after another */
} RunnerHooks;

extern void mr_pin_transaction(void);
extern RunOutcome mr_run_migration(int64 migration_id, int slice,
								   const RunnerHooks *hooks, int *sqlerrcode);
extern const char *mr_outcome_name(RunOutcome outcome);

/* shard.c: per-shard runs of Citus tables, the node's side */
extern bool mr_runs_per_shard(int64 migration_id);

/* slices.c: what the slices add up to, folded into the migration */
extern int64 mr_fold_slices(int64 migration_id);

/* citus_run.c: per-shard runs of Citus tables, the coordinator's side */
extern RunOutcome mr_citus_run(int64 migration_id, const RunnerHooks *hooks,
							   int *sqlerrcode);

/* run_end.c: an error outside the engine's guarded steps, for both runners */
extern bool mr_end_run_after_error(int64 migration_id, int slice,
								   ErrorData *edata, bool at_commit);
extern void mr_forget_runner_pid(int64 migration_id);
extern void mr_pause_if_running(int64 migration_id);

/* runlock.c */
extern bool mr_try_lock_runner(int64 migration_id, int slice);
extern bool mr_try_lock_runner_for_xact(int64 migration_id, int slice);
extern void mr_unlock_runner(int64 migration_id, int slice);
extern bool mr_runner_is_active(int64 migration_id);
extern bool mr_slice_runner_is_active(int64 migration_id, int slice);
extern bool mr_slice_runner_is_mine(int64 migration_id, int slice);
extern bool mr_runner_is_mine(int64 migration_id);

/* bgworker entry points: cluster_launcher.c, scheduler.c, worker.c */
extern void mr_register_launcher(void);
extern PGDLLEXPORT void mr_cluster_launcher_main(Datum main_arg);
extern PGDLLEXPORT void mr_scheduler_main(Datum main_arg);
extern PGDLLEXPORT void mr_worker_main(Datum main_arg);

/* utility.c */
extern void mr_install_utility_hook(void);

#endif							/* MIGRATION_RUNNER_H */
