/*-------------------------------------------------------------------------
 *
 * shard.h
 *	  Between the files of per-shard runs on a Citus node: shard.c (the
 *	  batch engine's checks), shard_action.c (the action on the shard
 *	  table) and shard_batch.c (the functions the coordinator calls).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATION_RUNNER_SHARD_H
#define MIGRATION_RUNNER_SHARD_H

#include "postgres.h"

/* shard_action.c */
extern char *mr_shard_action(const char *action, Oid relid, int64 shard_id,
							 Oid *key_types, int nkeys, Oid *shard_relid);

/* shard.c */
extern bool mr_shard_is_here(int64 shard_id);
extern void mr_shard_read_timings(int64 id, Datum *values, bool *nulls);

#endif							/* MIGRATION_RUNNER_SHARD_H */
