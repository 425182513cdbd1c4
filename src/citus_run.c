/*-------------------------------------------------------------------------
 *
 * citus_run.c
 *	  Per-shard runs of Citus distributed tables: the coordinator's side.
 *
 * NOT YET WRITTEN: being built on branch hdisp (see the issue note).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "migration_runner.h"

RunOutcome
mr_citus_run(int64 migration_id, const RunnerHooks *hooks, int *sqlerrcode)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("per-shard runs are not built yet")));
	return RUN_FAILED;
}
