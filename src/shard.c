/*-------------------------------------------------------------------------
 *
 * shard.c
 *	  Per-shard runs of Citus distributed tables: the node's side.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "migration_runner.h"

/* whether migration_id is a coordinator's migration that runs shard by shard */
bool
mr_runs_per_shard(int64 migration_id)
{
	Migration  *m = mr_migration_by_id(migration_id, false);

	return m != NULL && m->per_shard;
}
