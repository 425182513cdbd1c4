/*-------------------------------------------------------------------------
 *
 * citus_define.c
 *	  What mig_define records about a relation that Citus distributes, and
 *	  whether a run of the migration goes shard by shard.
 *
 * A hash-distributed table whose key contains the distribution column can
 * be walked shard by shard: every key of a shard is in that shard, so the
 * shards' key ranges together cover each key exactly once, and each shard
 * keeps a cursor of its own on the node that holds it (citus_run.c).  Any
 * other Citus table (reference, range- or append-distributed, single
 * shard), or a key without the distribution column, is walked as before:
 * one key range over the whole table, each batch a distributed statement
 * through the coordinator.  So is a migration whose options need the
 * coordinator's view of the whole table in every batch (on_error 'skip',
 * verify, continue_from), or any migration while
 * migration_runner.citus_shards is off.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "compat.h"
#include "migration_runner.h"
#include "define.h"

typedef struct Distribution
{
	const char *method;			/* as migrations.distribution */
	char	   *column;			/* NULL unless hash, range or append */
	int			colocation;
}			Distribution;

/* how Citus distributes relid; false when it does not (or is not there) */
static bool
read_distribution(Oid relid, Distribution * d)
{
	Oid			type = OIDOID;
	Datum		arg = ObjectIdGetDatum(relid);
	bool		isnull;
	char		method;
	char		repmodel;

	if (!OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE)))
		return false;
	if (SPI_execute_with_args("SELECT partmethod, repmodel, colocationid, "
							  "CASE WHEN partmethod IN ('h', 'r', 'a') THEN "
							  "pg_catalog.column_to_column_name(logicalrelid, partkey) END "
							  "FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_dist_partition");
	if (SPI_processed == 0)
		return false;
	method = DatumGetChar(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	repmodel = DatumGetChar(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	d->colocation = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	d->column = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
	d->method = method == 'h' ? "hash" : method == 'r' ? "range" :
		method == 'a' ? "append" : repmodel == 't' ? "reference" : "single";
	return true;
}

/* why the run goes over the global key range, or NULL: it goes by shard */
static const char *
global_range_reason(Migration *m, Distribution * d)
{
	int			i;

#ifndef MR_HAVE_QUERYDEF
	return "Runs shard by shard need PostgreSQL 15 or later.";
#endif
	if (strcmp(d->method, "hash") != 0)
		return psprintf("The table is a %s table; only hash-distributed tables run shard by shard.",
						d->method);
	for (i = 0; i < m->nkeys; i++)
		if (strcmp(m->key_names[i], d->column) == 0)
			break;
	if (i == m->nkeys)
		return psprintf("The key does not contain the distribution column \"%s\".", d->column);
	if (!mr_citus_shards)
		return "migration_runner.citus_shards is off.";
	if (m->skip_errors || m->verify != NULL || m->continued_from != 0)
		return "on_error 'skip', verify and continue_from need the whole table in every batch.";
	return NULL;
}

/*
 * Record how the new migration m's relation is distributed, if Citus
 * distributes it, and say how its runs will go.
 */
void
mr_citus_record_distribution(Migration *m)
{
	Distribution d;
	const char *reason;
	Oid			types[4] = {INT8OID, TEXTOID, INT4OID, BOOLOID};
	Datum		args[4];

	SPI_connect();
	if (!read_distribution(m->relid, &d))
	{
		SPI_finish();
		return;
	}
	reason = global_range_reason(m, &d);
	args[0] = Int64GetDatum(m->id);
	args[1] = CStringGetTextDatum(d.method);
	args[2] = Int32GetDatum(d.colocation);
	args[3] = BoolGetDatum(reason == NULL);
	mr_catalog_exec(psprintf("UPDATE %s SET distribution = $2, distribution_column = %s, "
							 "colocation_id = $3, per_shard = $4 WHERE id = $1",
							 mr_catalog_table("migrations"),
							 d.column ? quote_literal_cstr(d.column) : "NULL"),
					4, types, args, SPI_OK_UPDATE);
	SPI_finish();
	if (reason == NULL)
		ereport(NOTICE,
				(errmsg("migration \"%s\" will run shard by shard on the nodes that hold %s",
						m->name, get_rel_name(m->relid))));
	else
		ereport(NOTICE,
				(errmsg("migration \"%s\" will run over the whole distributed table %s",
						m->name, get_rel_name(m->relid)),
				 errdetail_internal("%s", reason)));
}
