/*-------------------------------------------------------------------------
 *
 * run_internal.h
 *	  The private state of one run of the batch engine, shared by the files
 *	  that make up the engine (run.c, run_state.c, batch.c, retry.c, skip.c,
 *	  plans.c, keys.c, throttle.c, slices.c, verify.c), dry_run.c, which
 *	  runs batches and rolls them back, and skip_retry.c, which runs the
 *	  action again for skipped keys.  api.c and worker.c see MigrationRun
 *	  only as an opaque type through migration_runner.h.
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
	BATCH_FAILED,				/* error: migration marked failed */
	BATCH_NEED_WORK,			/* the runner's slice is done, or it just split
								 * the migration: it looks for more work */
	BATCH_NO_WORK,				/* no work for this runner; others run the
								 * rest, or parallel was lowered below it */
	BATCH_VERIFY,				/* no key left: the final verify query runs
								 * next, in a transaction of its own */
	BATCH_WAITING				/* setup: a migration it runs after has not
								 * completed (chain.c) */
} BatchResult;

/*
 * The columns the lock on a batch's catalog row returns, for the migration
 * run as one piece: its status, the row's ctid, parallel, batch_size and
 * the options, and (for a slice) its upper key and whether it is done.
 */
#define ROW_STATE_COLUMNS \
	"status, ctid, parallel, batch_size, " MR_OPTION_COLUMNS ", NULL::text[], false"

/* what one batch did, and how long its parts took */
typedef struct BatchStats
{
	TimestampTz started_at;
	int			keys;
	uint64		rows;
	double		bounds_ms;
	double		action_ms;
	double		total_ms;
} BatchStats;

typedef struct RowState
{
	char	   *status;			/* the migration's */
	int			parallel;
	int			batch_size;
	int			options[MR_NUM_OPTIONS];	/* as MR_OPTION_COLUMNS */
	Datum		upper_key;		/* the slice's upper key (text[]), or 0 */
	bool		slice_done;
} RowState;

/*
 * on_error 'skip' (skip.c): a batch that failed with a data error is
 * narrowed down, across transactions, to the keys whose action fails.  The
 * window is the failed batch's keys, counted from the cursor: inside it the
 * batch size is halved on each failure and doubled back (up to the keys
 * left in the window) on each success; past it the size is restored.  This
 * state lives in memory only: after a crash a run narrows again from the
 * committed cursor.
 */
typedef struct SkipState
{
	bool		narrowing;		/* inside a window */
	int			slice;			/* the slice the window is in */
	int64		window_left;	/* keys of the window not yet passed */
	int			size;			/* the narrowed batch size */
	int			restore_size;	/* the size to go back to past the window */
	ErrorData  *error;			/* the error of the key that failed alone */
	Datum		key;			/* that key (text[], in runcxt), or 0 */
	bool		recording;		/* this batch records that key's skip: it
								 * runs no action, nor any check of it */
	bool		no_narrow;		/* recording the skip failed: do not narrow */
} SkipState;

/* what mr_enter_owner saves */
typedef struct OwnerContext
{
	Oid			saved_user;
	int			saved_sec;
} OwnerContext;

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
	 * Slices.  A runner is started for one slice, its home (0: the migration
	 * as one piece); it runs that one, or one it adopted or stole.  The range
	 * it walks ends at upper: the high-water mark, or the slice's upper key,
	 * which another runner may lower between two batches (upper_text is its
	 * text form, kept with upper in rangecxt).
	 */
	int			home_slice;
	int			slice;
	int64		slice_batches;	/* batches of that slice so far */
	int			parallel;
	bool		runs_every_slice;	/* CALL: adopts slices, never steals */
	Datum		upper[MR_MAX_KEY_COLUMNS];
	Datum		upper_text;
	MemoryContext rangecxt;

	/*
	 * Where this runner last found its catalog row.  Every batch updates the
	 * row; while some session holds an old snapshot (a long mig_wait, a
	 * pg_dump) none of the old versions can be pruned, and a lookup through
	 * the index would walk all of them.  Going straight to the version we
	 * wrote keeps a batch's bookkeeping constant.
	 */
	ItemPointerData row_tid;
	bool		row_tid_valid;

	/* a dry run keeps the tuples the action returned (else freed at once) */
	bool		keep_returned;
	SPITupleTable *returned;

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
	SPIPlanPtr	verify;			/* the verify query, or NULL */
	bool		verify_keys;	/* it uses $1..$2k: it runs in every batch */
	SPIPlanPtr	lock_row;
	SPIPlanPtr	lock_row_at;
	SPIPlanPtr	progress_at;
	SPIPlanPtr	progress;
	SPIPlanPtr	history_insert;
	SPIPlanPtr	history_prune;
	SPIPlanPtr	slice_lock;
	SPIPlanPtr	slice_progress;
	int64		pruned_to;		/* history is pruned up to this batch */

	/* time spent on bookkeeping and commit not yet added to the catalog */
	double		carry_bookkeeping_ms;
	double		carry_commit_ms;

	/* health throttling: lock waiters seen at the end of the last batch */
	int			lock_waiters;

	/* retries of the current step, and the error that ended the last one */
	int			attempts;
	TimestampTz timeout_armed_at;	/* when the batch armed statement_timeout */
	bool		timed_out;		/* that error was our statement_timeout */
	ErrorData  *last_error;

	SkipState	skip;
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
extern void mr_setup_keys(MigrationRun *run);
extern bool mr_fix_high_water(MigrationRun *run, bool record);

/* run_state.c */
extern MigrationRun *mr_new_run(int slice);
extern void mr_end_run(MigrationRun *run);
extern void mr_init_run(MigrationRun *run, Migration *m);
extern void mr_apply_options(MigrationRun *run, RowState *state);

/* batch.c */
extern BatchResult mr_run_one_batch(MigrationRun *run);
extern void mr_set_batch_gucs(MigrationRun *run);
extern void mr_run_data_side(MigrationRun *run, BatchStats *stats,
							 Datum *first, Datum *last);
extern int64 mr_next_batch_number(MigrationRun *run);
extern void mr_insert_history(MigrationRun *run, int64 batch, Datum *args,
							  char *nulls);
extern void mr_enter_owner(MigrationRun *run, OwnerContext *saved);
extern void mr_leave_owner(MigrationRun *run, OwnerContext *saved);
extern uint64 mr_run_action(MigrationRun *run, Datum *first, Datum *last);

/* retry.c */
extern ErrorData *mr_run_guarded(MigrationRun *run, GuardedStep step,
								 void *result);
extern bool mr_is_transient(int sqlerrcode);
extern BatchResult mr_classify_error(MigrationRun *run, ErrorData *edata);
extern void mr_record_failure(MigrationRun *run, ErrorData *edata);
extern void mr_record_failed_batch(MigrationRun *run, const char *error);
extern void mr_record_retry(MigrationRun *run, ErrorData *edata,
							int next_size);
extern long mr_retry_backoff_ms(int attempt);
extern bool mr_runner_sleep(long ms);

/* skip.c */
extern bool mr_is_data_error(MigrationRun *run, ErrorData *edata);
extern bool mr_skip_key_failed(MigrationRun *run, ErrorData *edata);
extern void mr_skip_pass_done(MigrationRun *run, ErrorData *edata);
extern bool mr_skip_this_key(MigrationRun *run);
extern void mr_skip_record(MigrationRun *run);
extern const char *mr_skip_history_note(MigrationRun *run);
extern bool mr_skip_narrow(MigrationRun *run, ErrorData *edata,
						   BatchResult *result);
extern void mr_skip_after_batch(MigrationRun *run, BatchResult result);
extern int	mr_skip_new_batch_size(MigrationRun *run, int size);

/* plans.c */
extern char *mr_key_list(Migration *m, bool as_row, bool descending);
extern char *mr_param_list(int first, int n);
extern char *mr_from_clause(MigrationRun *run);
extern void mr_prepare_bounds(MigrationRun *run);
extern void mr_prepare_action(MigrationRun *run);
extern void mr_prepare_run_plans(MigrationRun *run);
extern void mr_prepare_data_plans(MigrationRun *run);
extern void mr_free_run_plans(MigrationRun *run);
extern int	mr_enter_index_scan(void);
extern char *mr_high_water_sql(MigrationRun *run);

/* keys.c */
extern void mr_setup_key_io(MigrationRun *run);
extern void mr_key_from_text(MigrationRun *run, char **text, Datum *key);
extern void mr_key_from_text_in(MigrationRun *run, char **text, Datum *key,
								MemoryContext cxt);
extern char **mr_key_to_text(MigrationRun *run, Datum *key);
extern Datum mr_text_key_array(MigrationRun *run, char **text);
extern void mr_key_from_tuple(MigrationRun *run, HeapTuple tuple,
							  TupleDesc desc, Datum *key, MemoryContext cxt);
extern void mr_move_cursor(MigrationRun *run, Datum *key);

/* split.c */
extern uint64 mr_owner_select(MigrationRun *run, const char *sql, int nargs,
							  Datum *args, bool index_scan);
extern int	mr_split_range(MigrationRun *run, Datum *lower, Datum *upper,
						   int pieces, int64 min_keys, Datum *splits);
extern int64 mr_count_keys(MigrationRun *run, Datum *lower, Datum *upper,
						   int64 cap);

/* slices.c */
extern bool mr_is_sliced(MigrationRun *run);
extern void mr_slice_up(MigrationRun *run);
extern bool mr_lock_slice_row(MigrationRun *run, RowState *state);
extern void mr_set_range_upper(MigrationRun *run, Datum upper_text);
extern bool mr_switch_to_slice(MigrationRun *run, int slice);
extern void mr_share_out(MigrationRun *run);
extern BatchResult mr_take_work(MigrationRun *run);
extern void mr_read_row_state(MigrationRun *run, RowState *state);

/* shard.c */
extern void mr_shard_set_batch_gucs(MigrationRun *run);
extern void mr_shard_lock(MigrationRun *run);
extern bool mr_shard_still_here(MigrationRun *run);

/* verify.c */
extern void mr_prepare_verify(MigrationRun *run);
extern bool mr_has_final_verify(MigrationRun *run);
extern void mr_verify_batch(MigrationRun *run, Datum *first, Datum *last);
extern bool mr_begin_verifying(MigrationRun *run);
extern BatchResult mr_run_final_verify(MigrationRun *run);

/* throttle.c */
extern int	mr_count_lock_waiters(void);
extern BatchResult mr_throttle_wait(MigrationRun *run, const RunnerHooks *hooks,
									bool *cancelled);
extern char *mr_throttle_take_problem(void);

#endif							/* MIGRATION_RUNNER_RUN_INTERNAL_H */
