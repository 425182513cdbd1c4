/*-------------------------------------------------------------------------
 *
 * run_state.c
 *	  The state of one run of the batch engine: its memory, the migration
 *	  read into it, and the options in force, which a batch picks up again
 *	  when mig_alter changed them.  A run (run.c), a dry run (dry_run.c)
 *	  and mig_retry_skipped (skip_retry.c) set theirs up alike.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "migration_runner.h"
#include "run_internal.h"

static int
option_or_guc(int option, int guc)
{
	return option >= 0 ? option : guc;
}

/* the options in force: the migration's own, or the GUCs' */
static void
set_effective_options(MigrationRun *run)
{
	Migration  *m = run->m;

	run->batch_delay_ms = option_or_guc(m->batch_delay_ms, mr_batch_delay_ms);
	run->lock_timeout_ms = option_or_guc(m->lock_timeout_ms, mr_lock_timeout_ms);
	run->statement_timeout_ms = option_or_guc(m->statement_timeout_ms,
											  mr_statement_timeout_ms);
	run->max_retries = option_or_guc(m->max_retries, mr_max_retries);
	run->target_batch_ms = option_or_guc(m->target_batch_ms, mr_target_batch_ms);
	if (run->target_batch_ms <= 0)
		run->batch_size = mr_skip_new_batch_size(run, m->batch_size);
}

/* a managed migration m, read in the run's memory, and its options */
void
mr_init_run(MigrationRun *run, Migration *m)
{
	MemoryContext old = MemoryContextSwitchTo(run->runcxt);

	run->m = m;
	run->catalog = mr_catalog_table("migrations");
	run->history = mr_catalog_table("migration_batches");
	/* the action names the table as it was named at define time */
	run->relname = m->relation_name ? m->relation_name :
		psprintf("relation with OID %u", m->relid);
	run->search_path = mr_pinned_search_path(m->search_path);
	if (run->batch_size <= 0)
		run->batch_size = m->current_batch_size > 0 ? m->current_batch_size : m->batch_size;
	set_effective_options(run);
	run->parallel = m->parallel;
	MemoryContextSwitchTo(old);
}

/*
 * Pick up the options the batch's locked row shows, which mig_alter may
 * have changed since the run read them: they apply from this batch on.  A
 * new batch_size also restarts the adaptive size from it.
 */
void
mr_apply_options(MigrationRun *run, RowState *state)
{
	Migration  *m = run->m;
	int			now[MR_NUM_OPTIONS] = {m->batch_delay_ms, m->lock_timeout_ms,
		m->statement_timeout_ms, m->max_retries, m->target_batch_ms};

	run->parallel = state->parallel;
	if (state->batch_size == m->batch_size &&
		memcmp(now, state->options, sizeof(now)) == 0)
		return;
	if (state->batch_size != m->batch_size)
		run->batch_size = mr_skip_new_batch_size(run, state->batch_size);
	m->batch_size = state->batch_size;
	m->batch_delay_ms = state->options[0];
	m->lock_timeout_ms = state->options[1];
	m->statement_timeout_ms = state->options[2];
	m->max_retries = state->options[3];
	m->target_batch_ms = state->options[4];
	set_effective_options(run);
}

/* a new run of slice (0: the migration as one piece), in memory of its own */
MigrationRun *
mr_new_run(int slice)
{
	MemoryContext runcxt = AllocSetContextCreate(TopMemoryContext,
												 "migration_runner run",
												 ALLOCSET_DEFAULT_SIZES);
	MigrationRun *run = MemoryContextAllocZero(runcxt, sizeof(MigrationRun));

	run->runcxt = runcxt;
	run->batchcxt = AllocSetContextCreate(runcxt, "migration_runner batch",
										  ALLOCSET_DEFAULT_SIZES);
	run->cursorcxt = AllocSetContextCreate(runcxt, "migration_runner cursor",
										   ALLOCSET_SMALL_SIZES);
	run->rangecxt = AllocSetContextCreate(runcxt, "migration_runner range",
										  ALLOCSET_SMALL_SIZES);
	run->bounds_plan_size = -1;
	run->home_slice = slice;
	return run;
}

/* free a run's plans and memory, also after an error */
void
mr_end_run(MigrationRun *run)
{
	mr_free_run_plans(run);
	MemoryContextDelete(run->runcxt);
}
