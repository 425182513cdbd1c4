/*-------------------------------------------------------------------------
 *
 * shard_action.c
 *	  Turn a migration's action on a Citus distributed table into the same
 *	  statement on one of its shards, on the node that holds the shard.
 *
 * The action is analysed as its owner with the migration's search_path,
 * exactly as a run analyses it; in the tree, every distributed table of
 * the target's colocation group is replaced by its shard of the same hash
 * range (colocated shards always live on the same node), and every
 * reference table by its shard, which every node holds.  The tree is then
 * printed back as SQL (ruleutils), with the key parameters $1..$2k left as
 * they were.  Citus itself runs a statement on a shard the same way: as
 * SQL naming the shard tables.  Columns are printed by name, so a shard
 * whose attribute numbers differ from the distributed table's (a column
 * dropped before the table was distributed) is no problem.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "nodes/nodeFuncs.h"
#include "parser/analyze.h"
#include "tcop/tcopprot.h"
#include "utils/lsyscache.h"
#include "utils/ruleutils.h"

#include "compat.h"
#include "migration_runner.h"
#include "shard.h"

/* a distributed table and its shard on this node */
typedef struct ShardMap
{
	int			n;
	Oid		   *tables;
	Oid		   *shards;
} ShardMap;

/*
 * The shards on this node that stand in for the distributed tables: those
 * colocated with shard_id (same hash range), and the reference tables'.
 * Shards are hidden from pg_class by citus.override_table_visibility,
 * which the caller turns off.
 */
static void
read_shard_map(int64 shard_id, ShardMap *map)
{
	static const char *sql =
	"WITH wanted AS ("
	"  SELECT p2.logicalrelid AS tab, s2.shardid"
	"    FROM pg_catalog.pg_dist_shard s1"
	"    JOIN pg_catalog.pg_dist_partition p1 ON p1.logicalrelid = s1.logicalrelid"
	"    JOIN pg_catalog.pg_dist_partition p2 ON p2.colocationid = p1.colocationid"
	"    JOIN pg_catalog.pg_dist_shard s2 ON s2.logicalrelid = p2.logicalrelid"
	"         AND s2.shardminvalue = s1.shardminvalue"
	"   WHERE s1.shardid = $1"
	"  UNION ALL"
	"  SELECT p.logicalrelid, s.shardid"
	"    FROM pg_catalog.pg_dist_partition p"
	"    JOIN pg_catalog.pg_dist_shard s ON s.logicalrelid = p.logicalrelid"
	"   WHERE p.partmethod = 'n' AND p.repmodel = 't')"
	"SELECT w.tab::oid, c.oid"
	"  FROM wanted w"
	"  JOIN pg_catalog.pg_class r ON r.oid = w.tab"
	"  CROSS JOIN LATERAL pg_catalog.parse_ident(pg_catalog.shard_name(w.tab, w.shardid)) i(parts)"
	"  JOIN pg_catalog.pg_class c ON c.relnamespace = r.relnamespace"
	"       AND c.relname = i.parts[pg_catalog.cardinality(i.parts)]";
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(shard_id);
	int			i;

	if (SPI_execute_with_args(sql, 1, &type, &arg, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the shards colocated with shard " INT64_FORMAT, shard_id);
	map->n = (int) SPI_processed;
	map->tables = palloc(sizeof(Oid) * (map->n + 1));
	map->shards = palloc(sizeof(Oid) * (map->n + 1));
	for (i = 0; i < map->n; i++)
	{
		bool		isnull;

		map->tables[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 1, &isnull));
		map->shards[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 2, &isnull));
	}
}

static Oid
shard_of(ShardMap *map, Oid table)
{
	int			i;

	for (i = 0; i < map->n; i++)
		if (map->tables[i] == table)
			return map->shards[i];
	return InvalidOid;
}

#ifdef MR_HAVE_QUERYDEF

/* replace the tables of the map by their shards, in every range table */
static bool
retarget_walker(Node *node, ShardMap *map)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;
		Oid			shard;

		if (rte->rtekind == RTE_RELATION &&
			OidIsValid(shard = shard_of(map, rte->relid)))
			rte->relid = shard;
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, retarget_walker, map,
								 QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, retarget_walker, map);
}

char *
mr_shard_action(const char *action, Oid relid, int64 shard_id,
				Oid *key_types, int nkeys, Oid *shard_relid)
{
	Oid			argtypes[2 * MR_MAX_KEY_COLUMNS];
	ShardMap	map;
	List	   *raw;
	Query	   *query;
	int			i;

	read_shard_map(shard_id, &map);
	*shard_relid = shard_of(&map, relid);
	if (!OidIsValid(*shard_relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shard " INT64_FORMAT " of table %s is not on this node",
						shard_id, get_rel_name(relid))));
	for (i = 0; i < 2 * nkeys; i++)
		argtypes[i] = key_types[i % nkeys];
	raw = pg_parse_query(action);
	if (list_length(raw) != 1)
		elog(ERROR, "the action is not one statement");
	query = parse_analyze_fixedparams(linitial_node(RawStmt, raw), action,
									  argtypes, 2 * nkeys, NULL);
	(void) retarget_walker((Node *) query, &map);
	return pg_get_querydef(query, false);
}

#else

char *
mr_shard_action(const char *action, Oid relid, int64 shard_id,
				Oid *key_types, int nkeys, Oid *shard_relid)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("per-shard runs need PostgreSQL 15 or later")));
	return NULL;
}

#endif
