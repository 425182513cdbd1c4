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
 * its shard-metadata lock (an advisory lock of class 8, per colocation
 * group and shard index) in ExclusiveLock mode on every node, then changes
 * the placements in pg_dist_placement.  A batch takes the same lock in
 * ShareLock mode, before any other lock, and then looks the placement up:
 * either it runs before the move's final step (its change is copied with
 * the shard, and the move waits for its commit), or after it, and then it
 * sees that the placement is gone, does nothing, and stops the node's
 * migration for good.  The cursor it leaves is therefore final, and the
 * coordinator (citus_run.c) carries it to the shard's new placements.
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

/* Citus' advisory lock class for colocated shards' metadata (resource_lock.h) */
#define CITUS_COLOCATED_SHARDS_METADATA_LOCK_CLASS 8

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
 * The tag of Citus' metadata lock on a shard of a hash-distributed table
 * (SetLocktagForShardDistributionMetadata): one lock for the shards of the
 * same position in every table of the colocation group, by the shard's
 * index in its table's shards sorted by hash range.  False when the shard
 * is gone (split, or its table dropped).
 */
static bool
shard_lock_tag(int64 shard_id, LOCKTAG *tag)
{
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(shard_id);
	bool		isnull;
	int32		colocation;
	int64		index;

	if (SPI_execute_with_args("SELECT p.colocationid, "
							  "       (SELECT count(*) FROM pg_catalog.pg_dist_shard o "
							  "         WHERE o.logicalrelid = s.logicalrelid "
							  "           AND o.shardminvalue::int4 < s.shardminvalue::int4) "
							  "  FROM pg_catalog.pg_dist_shard s "
							  "  JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid = s.logicalrelid "
							  " WHERE s.shardid = $1",
							  1, &type, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up shard " INT64_FORMAT, shard_id);
	if (SPI_processed == 0)
		return false;
	colocation = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	index = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 2, &isnull));
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) index, (uint32) colocation,
						 CITUS_COLOCATED_SHARDS_METADATA_LOCK_CLASS);
	return true;
}

/*
 * Take the shard's metadata lock for the rest of the transaction, before
 * the relation's lock, in the order Citus takes them.  A split of another
 * shard of the table moves this one's index: the tag is looked up again
 * under the lock until it holds still.  A shard that is gone is left to
 * mr_shard_still_here.
 */
void
mr_shard_lock(MigrationRun *run)
{
	LOCKTAG		tag;
	LOCKTAG		again;

	if (run->m->shard_id == 0)
		return;
	SPI_connect();
	if (shard_lock_tag(run->m->shard_id, &tag))
		for (;;)
		{
			(void) LockAcquire(&tag, ShareLock, false, false);
			if (!shard_lock_tag(run->m->shard_id, &again) ||
				memcmp(&tag, &again, sizeof(LOCKTAG)) == 0)
				break;
			tag = again;
		}
	SPI_finish();
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
