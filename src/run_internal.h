/*-------------------------------------------------------------------------
 *
 * run_internal.h
 *	  The private state of one run of the batch engine, shared by the files
 *	  that make up the engine (run.c, batch.c, retry.c, plans.c, keys.c,
 *	  throttle.c).  api.c and worker.c see MigrationRun only as an opaque
 *	  type through migration_runner.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATION_RUNNER_RUN_INTERNAL_H
#define MIGRATION_RUNNER_RUN_INTERNAL_H

#include "access/xlogdefs.h"
#include "fmgr.h"
#include "portability/instr_time.h"
#include "storage/itemptr.h"
#include "utils/timestamp.h"

#include "migration_runner.h"

/* what one batch attempt came to */
typedef enum BatchResult
{
	BATCH_DONE,					/* committed work; keys are left */
	BATCH_LAST,					/* committed work; migration completed */
	BATCH_NOT_RUNNING,			/* someone paused or cancelled it */
	BATCH_RETRY,				/* transient error: try again after backoff */
	BATCH_FAILED				/* error: migration marked failed */
} BatchResult;

struct MigrationRun
{
	Migration  *m;
	MemoryContext runcxt;		/* lives as long as the run */
	MemoryContext batchcxt;		/* reset before every batch */
	MemoryContext cursorcxt;	/* holds the cursor; reset when it moves */
	const char *catalog;		/* quoted "schema".migrations */
	const char *history;		/* quoted "schema".migration_batches */
	const char *relname;		/* quoted relation name at define time */
	const char *search_path;	/* the action's path, pg_temp last */

	/* key columns: how to turn canonical text into Datums and back */
	Oid			key_input[MR_MAX_KEY_COLUMNS];
	Oid			key_ioparam[MR_MAX_KEY_COLUMNS];
	FmgrInfo	key_output[MR_MAX_KEY_COLUMNS];
	int16		key_typlen[MR_MAX_KEY_COLUMNS];
	bool		key_typbyval[MR_MAX_KEY_COLUMNS];
	bool		canonical_io;	/* some key's text follows a setting */

	bool		has_cursor;
	Datum		cursor[MR_MAX_KEY_COLUMNS];
	Datum		high_water[MR_MAX_KEY_COLUMNS];

	/*
	 * Where this runner last found its catalog row.  Every batch updates the
	 * row; while some session holds an old snapshot (a long mig_wait, a
	 * pg_dump) none of the old versions can be pruned, and a lookup through
	 * the index would walk all of them.  Going straight to the version we
	 * wrote keeps a batch's bookkeeping constant.
	 */
	ItemPointerData row_tid;
	bool		row_tid_valid;

	/* the batch under way; its keys live in batchcxt */
	const char *batch_keys;		/* "(21) to (30)" once it has its bounds */
	TimestampTz batch_started_at;	/* or 0 */
	int			batch_nkeys;	/* keys it found */
	Datum		batch_first_key;	/* its bounds as text[], or 0 */
	Datum		batch_last_key;

	/* effective options: per-migration value, or the GUC */
	int			batch_size;
	int			batch_delay_ms;
	int			lock_timeout_ms;
	int			statement_timeout_ms;
	int			max_retries;
	int			target_batch_ms;

	/* prepared once per run (bounds plans again when the size changes) */
	int			bounds_plan_size;
	SPIPlanPtr	bounds_first;
	SPIPlanPtr	bounds_next;
	SPIPlanPtr	action;
	SPIPlanPtr	lock_row;
	SPIPlanPtr	lock_row_at;
	SPIPlanPtr	progress_at;
	SPIPlanPtr	progress;
	SPIPlanPtr	history_insert;
	SPIPlanPtr	history_prune;
	int64		pruned_to;		/* history is pruned up to this batch */

	/* time spent on bookkeeping and commit not yet added to the catalog */
	double		carry_bookkeeping_ms;
	double		carry_commit_ms;

	/* health throttling: WAL position at the last look, lock waiters seen */
	XLogRecPtr	wal_mark;
	TimestampTz wal_mark_at;
	int			lock_waiters;

	/* retries of the current step, and the error that ended the last one */
	int			attempts;
	TimestampTz timeout_armed_at;	/* when the batch armed statement_timeout */
	bool		timed_out;		/* that error was our statement_timeout */
	ErrorData  *last_error;
};

/* one step of a run, guarded by a subtransaction (retry.c) */
typedef void (*GuardedStep) (MigrationRun *run, void *result);

/* run.c */
extern double mr_elapsed_ms(instr_time start);
extern void mr_next_transaction(const RunnerHooks *hooks);
extern void mr_set_local_guc(const char *name, const char *value);
extern void mr_set_guc_saved(const char *name, const char *value);
extern void mr_lock_relation(MigrationRun *run);
extern void mr_check_relation_unchanged(MigrationRun *run);

/* batch.c */
extern BatchResult mr_run_one_batch(MigrationRun *run);
extern void mr_insert_history(MigrationRun *run, int64 batch, Datum *args,
							  char *nulls);

/* retry.c */
extern ErrorData *mr_run_guarded(MigrationRun *run, GuardedStep step,
								 void *result);
extern bool mr_is_transient(int sqlerrcode);
extern BatchResult mr_classify_error(MigrationRun *run, ErrorData *edata);
extern void mr_record_failure(MigrationRun *run, ErrorData *edata);
extern void mr_record_retry(MigrationRun *run, ErrorData *edata,
							int next_size);
extern long mr_retry_backoff_ms(int attempt);
extern bool mr_runner_sleep(long ms);

/* plans.c */
extern char *mr_key_list(Migration *m, bool as_row, bool descending);
extern void mr_prepare_bounds(MigrationRun *run);
extern void mr_prepare_run_plans(MigrationRun *run);
extern void mr_free_run_plans(MigrationRun *run);
extern int	mr_enter_index_scan(void);
extern char *mr_high_water_sql(MigrationRun *run);

/* keys.c */
extern void mr_setup_key_io(MigrationRun *run);
extern void mr_key_from_text(MigrationRun *run, char **text, Datum *key);
extern char **mr_key_to_text(MigrationRun *run, Datum *key);
extern Datum mr_text_key_array(MigrationRun *run, char **text);
extern void mr_key_from_tuple(MigrationRun *run, HeapTuple tuple,
							  TupleDesc desc, Datum *key, MemoryContext cxt);
extern void mr_move_cursor(MigrationRun *run, Datum *key);

/* throttle.c */
extern int	mr_count_lock_waiters(void);
extern BatchResult mr_throttle_wait(MigrationRun *run, const RunnerHooks *hooks,
									bool *cancelled);

#endif							/* MIGRATION_RUNNER_RUN_INTERNAL_H */
