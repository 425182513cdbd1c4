/*-------------------------------------------------------------------------
 *
 * shard.c
 *	  Per-shard runs of Citus distributed tables: what a node's batch
 *	  engine does differently when the migration it runs is one shard
 *	  placement of a coordinator's migration (migrations.shard_id set).
 *
 * Such a migration's relation is the shard table itself, so its batches
 * find their bounds and run their action on this node alone, and commit
 * data and cursor in one local transaction, as any migration does.  What
 * is left is to make sure the shard is still here.  Citus moves and splits
 * a shard while writes go on, and at the end blocks writes to it by taking
 * its shard-metadata lock in ExclusiveLock mode on every node, then changes the placements in pg_dist_placement.  A
 * batch takes the same lock in ShareLock mode, before any other lock, and
 * then looks the placement up: either it runs before the move's final step
 * (its change is copied with the shard, and the move waits for its
 * commit), or after it, and then it sees that the placement is gone, does
 * nothing, and stops the node's migration for good.  The cursor it leaves
 * is therefore final, and the coordinator (citus_run.c) carries it to the
 * shard's new placements.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "migration_runner.h"
#include "run_internal.h"
#include "shard.h"

/* whether migration_id is a coordinator's migration that runs shard by shard */
bool
mr_runs_per_shard(int64 migration_id)
{
	Migration  *m;

	PushActiveSnapshot(GetTransactionSnapshot());
	m = mr_migration_by_id(migration_id, false);
	PopActiveSnapshot();
	return m != NULL && m->per_shard;
}

/*
 * Batches of a shard write to the shard table itself, which Citus refuses
 * from sessions of its own unless this is on.
 */
void
mr_shard_set_batch_gucs(MigrationRun *run)
{
	if (run->m->shard_id == 0)
		return;
	if (GetConfigOption("citus.enable_manual_changes_to_shards", true, false) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" runs a shard of a Citus table, but Citus is not loaded",
						run->m->name)));
	mr_set_local_guc("citus.enable_manual_changes_to_shards", "on");

	/*
	 * A batch's commit must be flushed before its shard-metadata lock is
	 * released.  A move takes the lock, reads pg_current_wal_lsn() (the
	 * WAL written so far) and waits until the new placement has replayed
	 * that far; an asynchronous commit may not be written yet, so the
	 * batch's change (and cursor) would be left behind on the old
	 * placement (test/t/citus_move.pl lost one batch in about five runs).
	 */
	if (!mr_synchronous_commit)
		mr_set_local_guc("synchronous_commit", "local");
}

/*
 * Take the shard's metadata lock for the rest of the transaction.  Taken
 * before the relation's lock, in the order Citus takes them.
 *
 * Through Citus' own lock_shard_metadata(), never by building the lock tag
 * here: for hash-distributed tables Citus keys this lock by colocation id
 * and shard index (class 8), not by shard id (class 4), and a lock with
 * the wrong tag blocks nothing: the batches of a shard being moved or split
 * then commit after the copy, and their changes are lost with the old
 * placement (test/t/citus_move.pl).  A shard that is gone (split) takes no
 * lock; mr_shard_still_here then finds no placement.
 */
void
mr_shard_lock(MigrationRun *run)
{
	Oid			type = INT8OID;
	Datum		arg;

	if (run->m->shard_id == 0)
		return;
	arg = Int64GetDatum(run->m->shard_id);
	if (SPI_execute_with_args(psprintf("SELECT pg_catalog.lock_shard_metadata(%d, ARRAY[$1]) "
									   "FROM pg_catalog.pg_dist_shard WHERE shardid = $1",
									   ShareLock),
							  1, &type, &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not lock the metadata of shard " INT64_FORMAT,
			 run->m->shard_id);
}

/*
 * Whether shard_id has a placement on this node, as of now (a new snapshot:
 * the lock above may have waited for a move to commit).  Not by placement
 * id: a move gives the shard a new placement id on the coordinator, but
 * may only change the group of the old one in a worker's copy of the
 * metadata.  The placement id only names the node's migration, so that a
 * shard moved away and back gets a new one, which starts from the cursor
 * the shard had elsewhere.
 */
bool
mr_shard_is_here(int64 shard_id)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(shard_id);

	if (SPI_execute_with_args("SELECT FROM pg_catalog.pg_dist_placement p "
							  " WHERE p.shardid = $1 AND p.shardstate = 1 "
							  "   AND p.groupid = (SELECT groupid "
							  "                      FROM pg_catalog.pg_dist_local_group)",
							  1, &type, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up the placements of shard " INT64_FORMAT, shard_id);
	return SPI_processed == 1;
}

/*
 * In a batch, after the migration's row is locked and found running: false
 * when the shard's placement has left this node.  The node's migration is
 * then cancelled in this transaction, so that no later batch runs here.
 */
bool
mr_shard_still_here(MigrationRun *run)
{
	Migration  *m = run->m;
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(m->id);

	if (m->shard_id == 0 || mr_shard_is_here(m->shard_id))
		return true;
	mr_catalog_exec(psprintf("UPDATE %s SET status = 'cancelled', worker_pid = NULL, "
							 "error = 'the shard''s placement left this node' "
							 "WHERE id = $1", run->catalog),
					1, &type, &arg, SPI_OK_UPDATE);
	return false;
}

/* the time a node's migration spent finding bounds, in actions and committing */
void
mr_shard_read_timings(int64 id, Datum *values, bool *nulls)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(id);
	int			i;

	if (SPI_execute_with_args(psprintf("SELECT bounds_ms, action_ms, commit_ms FROM %s "
									   "WHERE id = $1", mr_catalog_table("migrations")),
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read migration " INT64_FORMAT, id);
	for (i = 0; i < 3; i++)
	{
		nulls[i] = SPI_processed == 0;
		if (!nulls[i])
			values[i] = Float8GetDatum(DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
																	SPI_tuptable->tupdesc,
																	i + 1, &nulls[i])));
	}
}
