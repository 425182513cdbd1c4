/*-------------------------------------------------------------------------
 *
 * split.c
 *	  Where to split a range of keys (lower, upper] into pieces of about
 *	  equal size, for parallel slices: when a run first splits the keys
 *	  still to do, and when a runner steals half of another slice's rest.
 *
 * Split points are keys of the relation, found by reading it, never by
 * arithmetic on key values: that works for every key the engine accepts
 * (uuid, text under any collation, timestamptz, numeric, composite keys),
 * and an ordering of keys is all it needs.
 *
 * A range of at most SPLIT_WALK_KEYS keys is walked through the key's
 * index, which gives its exact size and exact split points.  A longer one
 * is sampled (TABLESAMPLE SYSTEM reads a fraction of the relation's pages)
 * and split at quantiles of the sample.  The sample only affects how even
 * the pieces are: the pieces are adjacent ranges between real keys, so they
 * cover (lower, upper] with no overlap and no gap whatever the sample says.
 *
 * The queries read the relation as the migration's owner, under a
 * restricted security context and search_path pg_catalog, pg_temp, as the
 * batches' bounds queries do.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "catalog/pg_class.h"

#include "compat.h"
#include "migration_runner.h"
#include "run_internal.h"

/* the most keys a split reads through the index */
#define SPLIT_WALK_KEYS		100000

/* about how many rows a sample should hold, and the fewest it may hold */
#define SAMPLE_ROWS			50000
#define MIN_SAMPLE_PER_PIECE 10

/*
 * Run a query on the relation as the migration's owner, with the first
 * nkeys-per-bound parameters typed as the key.  With index_scan, the planner
 * can only walk the key's index in order (mr_enter_index_scan); else only
 * search_path is pinned.  Returns the number of rows, left in SPI_tuptable.
 */
uint64
mr_owner_select(MigrationRun *run, const char *sql, int nargs, Datum *args,
				bool index_scan)
{
	Oid			types[2 * MR_MAX_KEY_COLUMNS];
	Oid			saved_user;
	int			saved_sec;
	int			nestlevel;
	int			i;

	for (i = 0; i < nargs; i++)
		types[i] = run->m->key_types[i % run->m->nkeys];
	GetUserIdAndSecContext(&saved_user, &saved_sec);
	SetUserIdAndSecContext(run->m->owner, saved_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (index_scan)
		nestlevel = mr_enter_index_scan();
	else
	{
		nestlevel = NewGUCNestLevel();
		mr_set_guc_saved("search_path", "pg_catalog, pg_temp");
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args(sql, nargs, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the keys of migration \"%s\"", run->m->name);
	PopActiveSnapshot();
	AtEOXact_GUC(true, nestlevel);
	SetUserIdAndSecContext(saved_user, saved_sec);
	return SPI_processed;
}

/*
 * "WHERE (k) > $1 AND (k) <= $2", or without the lower bound; *nargs and
 * args get the bounds' values.
 */
static char *
range_condition(MigrationRun *run, Datum *lower, Datum *upper, Datum *args,
				int *nargs)
{
	int			nkeys = run->m->nkeys;
	char	   *row = mr_key_list(run->m, true, false);

	*nargs = 0;
	if (lower != NULL)
	{
		memcpy(args, lower, sizeof(Datum) * nkeys);
		*nargs = nkeys;
	}
	memcpy(args + *nargs, upper, sizeof(Datum) * nkeys);
	*nargs += nkeys;
	if (lower == NULL)
		return psprintf("%s <= %s", row, mr_param_list(1, nkeys));
	return psprintf("%s > %s AND %s <= %s", row, mr_param_list(1, nkeys),
					row, mr_param_list(nkeys + 1, nkeys));
}

/*
 * Split the n sorted keys of rows (a walk or a sample of a range) into
 * pieces ranges of about equal size: write the last key of every piece but
 * the last to splits, and return how many were written.
 */
static int
split_at_quantiles(MigrationRun *run, SPITupleTable *rows, uint64 n,
				   int pieces, Datum *splits)
{
	int			i;

	for (i = 1; i < pieces; i++)
		mr_key_from_tuple(run, rows->vals[n * i / pieces - 1], rows->tupdesc,
						  splits + (i - 1) * run->m->nkeys, CurrentMemoryContext);
	return pieces - 1;
}

/*
 * The percentage of the relation's pages to sample first: enough for about
 * SAMPLE_ROWS rows by the planner's estimate, or 1 % when there is none (a
 * table never analysed; a partitioned table).  The sample grows from there
 * when it is too thin.
 */
static double
first_sample_percent(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	double		rows = -1;

	if (HeapTupleIsValid(tuple))
	{
		rows = ((Form_pg_class) GETSTRUCT(tuple))->reltuples;
		ReleaseSysCache(tuple);
	}
	if (rows <= 0)
		return 1.0;
	return Min(100.0, Max(0.01, 100.0 * SAMPLE_ROWS / rows));
}

/*
 * Split at the quantiles of a sample of the range: pieces - 1 keys, or 0 if
 * the sample is too thin to say where they are.  The fraction of pages read
 * grows until the range holds enough sampled rows, or the whole relation is
 * read.
 */
static int
split_by_sample(MigrationRun *run, const char *where, Datum *args, int nargs,
				int pieces, Datum *splits)
{
	char	   *keys = mr_key_list(run->m, false, false);
	double		percent = first_sample_percent(run->m->relid);
	uint64		n;

	for (;;)
	{
		n = mr_owner_select(run,
							psprintf("SELECT %s FROM %s TABLESAMPLE SYSTEM (%g) WHERE %s ORDER BY %s",
									 keys, mr_from_clause(run), percent, where, keys),
							nargs, args, false);
		if (n >= (uint64) pieces * MIN_SAMPLE_PER_PIECE || percent >= 100.0)
			break;
		percent = Min(100.0, percent * 8);
	}
	if (n < (uint64) pieces * 2)
		return 0;
	return split_at_quantiles(run, SPI_tuptable, n, pieces, splits);
}

/*
 * Split (lower, upper] (lower NULL: from the first key) into at most pieces
 * ranges of at least min_keys keys each.  Writes the split keys, in order,
 * to splits (nkeys Datums each, in the current memory context) and returns
 * how many there are: 0 when the range is too small to split.  Piece i is
 * (split i-1, split i], the first starting at lower, the last ending at
 * upper.
 */
int
mr_split_range(MigrationRun *run, Datum *lower, Datum *upper, int pieces,
			   int64 min_keys, Datum *splits)
{
	Datum		args[2 * MR_MAX_KEY_COLUMNS];
	int			nargs;
	char	   *where = range_condition(run, lower, upper, args, &nargs);
	char	   *keys = mr_key_list(run->m, false, false);
	SPITupleTable *walked;
	uint64		n;

	Assert(pieces >= 2 && pieces <= MR_MAX_PARALLEL);
	n = mr_owner_select(run,
						psprintf("SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT %d",
								 keys, mr_from_clause(run), where, keys,
								 SPLIT_WALK_KEYS),
						nargs, args, true);
	walked = SPI_tuptable;
	if (n == SPLIT_WALK_KEYS)
	{
		int			found = split_by_sample(run, where, args, nargs, pieces, splits);

		if (found > 0)
			return found;
		/* no usable sample: half of the keys walked, and the rest */
		return split_at_quantiles(run, walked, n, 2, splits);
	}
	pieces = (int) Min((int64) pieces, (int64) n / Max(min_keys, 1));
	if (pieces < 2)
		return 0;
	return split_at_quantiles(run, walked, n, pieces, splits);
}

/*
 * How many keys are left in (lower, upper], counting at most cap of them:
 * how a runner compares the slices it could steal from.
 */
int64
mr_count_keys(MigrationRun *run, Datum *lower, Datum *upper, int64 cap)
{
	Datum		args[2 * MR_MAX_KEY_COLUMNS];
	int			nargs;
	char	   *where = range_condition(run, lower, upper, args, &nargs);
	char	   *keys = mr_key_list(run->m, false, false);
	bool		isnull;

	(void) mr_owner_select(run,
						   psprintf("SELECT count(*) FROM (SELECT FROM %s WHERE %s "
									"ORDER BY %s LIMIT " INT64_FORMAT ") k",
									mr_from_clause(run), where, keys, cap),
						   nargs, args, true);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}
