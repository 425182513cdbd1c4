/*-------------------------------------------------------------------------
 *
 * citus_slices.c
 *	  The coordinator's slice rows of a per-shard run on Citus: one per
 *	  shard, made from Citus' metadata, each a mirror of the migration its
 *	  placement's node runs.
 *
 * The node's migration is the truth: it commits a batch's data change and
 * its cursor in one local transaction.  What the node reports after a call
 * (its totals since that placement began, and its cursor) is copied here
 * so that mig_status and mig_slices on the coordinator show the whole
 * migration; a copy lost in a crash is made again by the next call, since
 * the figures are totals, not increments.  base_processed and
 * base_batches keep what earlier placements of the shard did, before a
 * shard move; the times the slice shows are its current placement's, and
 * those of a placement the shard left are added to the migration's row.
 *
 * A shard that moved keeps its slice, which continues on the new node
 * after the final cursor of the old one; a shard that was split is done,
 * and each of its children gets a slice of its own that starts after the
 * parent's final cursor.  The cursor is a key, not a hash position: the
 * keys before it were done on the parent, wherever they went.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "citus.h"

/*
 * The placement a shard s runs on: its active placement on a primary node
 * that is active, as Citus' metadata says (the lowest, if the shard is
 * replicated: one copy runs the action, Citus replicates nothing we write
 * to a shard directly).
 */
#define ACTIVE_PLACEMENT \
	"JOIN LATERAL (SELECT p.placementid, n.nodename || ':' || n.nodeport AS node " \
	"  FROM pg_catalog.pg_dist_placement p " \
	"  JOIN pg_catalog.pg_dist_node n ON n.groupid = p.groupid " \
	" WHERE p.shardid = s.shardid AND p.shardstate = 1 AND n.isactive " \
	"   AND n.noderole = 'primary' ORDER BY p.placementid LIMIT 1) p ON true "

/*
 * Run a statement as the catalog's owner, with the migration's id as $1;
 * returns the rows it processed.  The caller is connected to SPI.
 */
static uint64
cat_exec(CitusRun *cr, const char *sql, int nargs, Oid *types, Datum *args,
		 const char *nulls, int expected)
{
	CatalogAccess access;
	Oid			all_types[12] = {INT8OID};
	Datum		all_args[12];
	char		all_nulls[13];
	int			rc;

	Assert(nargs < 12);
	all_args[0] = Int64GetDatum(cr->m->id);
	memcpy(all_types + 1, types, sizeof(Oid) * nargs);
	memcpy(all_args + 1, args, sizeof(Datum) * nargs);
	memset(all_nulls, ' ', sizeof(all_nulls));
	if (nulls)
		memcpy(all_nulls + 1, nulls, nargs);
	mr_catalog_enter(&access);
	rc = SPI_execute_with_args(sql, nargs + 1, all_types, all_args, all_nulls,
							   false, 0);
	if (rc != expected)
		elog(ERROR, "could not access the shard slices of migration \"%s\": %s",
			 cr->m->name, SPI_result_code_string(rc));
	mr_catalog_leave(&access);
	return SPI_processed;
}

static const char *
slices_table(void)
{
	return mr_catalog_table("migration_slices");
}

/* a column of the first row of the last result, as int64 */
static int64
int64_col(int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * Split the migration into one slice per shard, unless an earlier run did
 * (then it goes on with those), and record this process as its runner.
 */
void
mr_citus_setup_slices(CitusRun *cr)
{
	Oid			types[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(cr->m->relid)};
	uint64		n;

	SPI_connect();
	if (cat_exec(cr, psprintf("SELECT FROM %s WHERE migration_id = $1 LIMIT 1",
							  slices_table()),
				 0, NULL, NULL, NULL, SPI_OK_SELECT) == 0)
	{
		n = cat_exec(cr, psprintf("INSERT INTO %s (migration_id, slice, shard_id, placement_id, "
								  "node, lower_key, upper_key, status) "
								  "SELECT $1, row_number() OVER (ORDER BY s.shardminvalue::int, "
								  "s.shardid, p.placementid), s.shardid, p.placementid, p.node, "
								  "ARRAY[s.shardminvalue], ARRAY[s.shardmaxvalue], 'running' "
								  "FROM pg_catalog.pg_dist_shard s " ACTIVE_PLACEMENT
								  "WHERE s.logicalrelid = $2", slices_table()),
					 1, types, args, NULL, SPI_OK_INSERT);
		if (n == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("relation %s has no active shard placements",
							cr->m->relation_name)));
		cat_exec(cr, psprintf("UPDATE %s SET citus_run = citus_run + 1 WHERE id = $1 "
							  "RETURNING citus_run", mr_catalog_table("migrations")),
				 0, NULL, NULL, NULL, SPI_OK_UPDATE_RETURNING);
		cr->m->citus_run = (int) DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 1,
															 &(bool) {false}));
		ereport(LOG,
				(errmsg("migration_runner: migration \"%s\" runs on %d shards",
						cr->m->name, (int) n)));
	}
	cat_exec(cr, psprintf("UPDATE %s SET worker_pid = %d WHERE id = $1",
						  mr_catalog_table("migrations"), MyProcPid),
			 0, NULL, NULL, NULL, SPI_OK_UPDATE);
	SPI_finish();
}

/* keep what the loop knows of a slice across a reload */
static void
keep_flags(CitusRun *cr, ShardSlice *s, ShardSlice *old, int nold)
{
	int			i;

	for (i = 0; i < nold; i++)
		if (old[i].slice == s->slice)
		{
			s->in_flight = old[i].in_flight;
			s->not_before = old[i].not_before;
		}
}

/* read the slices into the run, anew */
void
mr_citus_load_slices(CitusRun *cr)
{
	ShardSlice *old = cr->slices;
	int			nold = cr->nslices;
	uint64		n;
	uint64		i;
	MemoryContext oldcxt;

	SPI_connect();
	n = cat_exec(cr, psprintf("SELECT slice, shard_id, placement_id, node, coalesce(local_id, 0), "
							  "cursor::text, processed, batches, bounds_ms, action_ms, "
							  "status = 'done' FROM %s WHERE migration_id = $1 ORDER BY slice",
							  slices_table()),
				 0, NULL, NULL, NULL, SPI_OK_SELECT);
	oldcxt = MemoryContextSwitchTo(cr->cxt);
	cr->slices = palloc0(sizeof(ShardSlice) * (n + 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		ShardSlice *s = &cr->slices[i];
		bool		isnull;

		s->slice = DatumGetInt32(SPI_getbinval(t, d, 1, &isnull));
		s->shard_id = DatumGetInt64(SPI_getbinval(t, d, 2, &isnull));
		s->placement_id = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
		s->node = SPI_getvalue(t, d, 4);
		s->local_id = DatumGetInt64(SPI_getbinval(t, d, 5, &isnull));
		s->cursor = SPI_getvalue(t, d, 6);
		s->processed = DatumGetInt64(SPI_getbinval(t, d, 7, &isnull));
		s->batches = DatumGetInt64(SPI_getbinval(t, d, 8, &isnull));
		s->bounds_ms = DatumGetFloat8(SPI_getbinval(t, d, 9, &isnull));
		s->action_ms = DatumGetFloat8(SPI_getbinval(t, d, 10, &isnull));
		s->done = DatumGetBool(SPI_getbinval(t, d, 11, &isnull));
		keep_flags(cr, s, old, nold);
	}
	cr->nslices = (int) n;
	MemoryContextSwitchTo(oldcxt);
	SPI_finish();
	if (old)
		pfree(old);
}

void
mr_citus_set_local_id(CitusRun *cr, ShardSlice *s, int64 local_id)
{
	SPI_connect();
	cat_exec(cr, psprintf("UPDATE %s SET local_id = $3 WHERE migration_id = $1 AND slice = $2",
						  slices_table()),
			 2, (Oid[]) {INT4OID, INT8OID},
			 (Datum[]) {Int32GetDatum(s->slice), Int64GetDatum(local_id)},
			 NULL, SPI_OK_UPDATE);
	SPI_finish();
	s->local_id = local_id;
}

/* a column of the node's answer by name, or NULL */
static char *
field(PGresult *res, const char *name)
{
	int			col = PQfnumber(res, name);

	if (col < 0 || PQgetisnull(res, 0, col))
		return NULL;
	return PQgetvalue(res, 0, col);
}

static double
field_ms(PGresult *res, const char *name)
{
	char	   *v = field(res, name);

	return v ? strtod(v, NULL) : 0;
}

/*
 * One batch (or several) of the slice's history, so that mig_status on the
 * coordinator shows a rate: the keys are the rows the node's migration
 * changed since the last call, its bounds the cursors before and after.
 */
static void
record_history(CitusRun *cr, ShardSlice *s, const char *cursor, int64 rows,
			   double bounds_ms, double action_ms, TimestampTz started_at)
{
	TimestampTz now = GetCurrentTimestamp();
	Datum		args[9];
	char		nulls[9] = "         ";

	args[0] = Int32GetDatum(s->slice);
	args[1] = Int64GetDatum(s->batches);
	args[2] = s->cursor ? CStringGetTextDatum(s->cursor) : (Datum) 0;
	nulls[2] = s->cursor ? ' ' : 'n';
	args[3] = cursor ? CStringGetTextDatum(cursor) : (Datum) 0;
	nulls[3] = cursor ? ' ' : 'n';
	args[4] = Int64GetDatum(rows);
	args[5] = TimestampTzGetDatum(started_at);
	args[6] = Float8GetDatum((double) (now - started_at) / 1000.0);
	args[7] = Float8GetDatum(bounds_ms);
	args[8] = Float8GetDatum(action_ms);
	cat_exec(cr, psprintf("INSERT INTO %s (migration_id, slice, batch, first_key, last_key, keys, "
						  "rows, started_at, duration_ms, bounds_ms, action_ms) "
						  "VALUES ($1, $2, $3, $4::text[], $5::text[], least($6, 2147483647)::int, "
						  "$6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
						  mr_catalog_table("migration_batches")),
			 9, (Oid[]) {INT4OID, INT8OID, TEXTOID, TEXTOID, INT8OID, TIMESTAMPTZOID,
				 FLOAT8OID, FLOAT8OID, FLOAT8OID},
			 args, nulls, SPI_OK_INSERT);
	if (mr_history_size > 0 && s->batches > mr_history_size)
		cat_exec(cr, psprintf("DELETE FROM %s WHERE migration_id = $1 AND slice = $2 "
							  "AND batch <= $3", mr_catalog_table("migration_batches")),
				 2, (Oid[]) {INT4OID, INT8OID},
				 (Datum[]) {Int32GetDatum(s->slice), Int64GetDatum(s->batches - mr_history_size)},
				 NULL, SPI_OK_DELETE);
}

/*
 * The node's health held its batches back (throttled, its reason) or not
 * (NULL): the migration's row says so as "node host:port: reason", until
 * that node answers again without it.
 */
static void
record_node_throttled(CitusRun *cr, ShardSlice *s, const char *throttled)
{
	char	   *prefix = psprintf("node %s: ", s->node);

	cat_exec(cr, psprintf("UPDATE %s SET throttled = $2 WHERE id = $1 AND status = 'running' "
						  "AND throttled IS DISTINCT FROM $2 "
						  "AND ($2 IS NOT NULL OR starts_with(throttled, $3))",
						  mr_catalog_table("migrations")),
			 2, (Oid[]) {TEXTOID, TEXTOID},
			 (Datum[]) {throttled ? CStringGetTextDatum(psprintf("%s%s", prefix, throttled)) : (Datum) 0,
				 CStringGetTextDatum(prefix)},
			 throttled ? "  " : "n ", SPI_OK_UPDATE);
}

/*
 * Copy what the node said of its migration (one row of CALL
 * mig_shard_batch) into the slice's row: its totals over the base of the
 * placements before, its cursor, and the slice is done when it completed.
 */
void
mr_citus_record(CitusRun *cr, ShardSlice *s, PGresult *res, const char *status,
				TimestampTz started_at)
{
	char	   *processed = field(res, "processed");
	char	   *cursor = field(res, "cursor");
	bool		done = strcmp(status, "completed") == 0;
	double		bounds_ms = field_ms(res, "bounds_ms");
	double		action_ms = field_ms(res, "action_ms");
	int64		old_processed = s->processed;
	int64		old_batches = s->batches;
	Datum		args[9];
	char		nulls[9] = "         ";

	if (processed == NULL)
		return;
	args[0] = Int32GetDatum(s->slice);
	args[1] = Int64GetDatum(strtoi64(processed, NULL, 10));
	args[2] = Int64GetDatum(field(res, "batches") ? strtoi64(field(res, "batches"), NULL, 10) : 0);
	args[3] = cursor ? CStringGetTextDatum(cursor) : (Datum) 0;
	nulls[3] = cursor ? ' ' : 'n';
	args[4] = Float8GetDatum(bounds_ms);
	args[5] = Float8GetDatum(action_ms);
	args[6] = Float8GetDatum(field_ms(res, "commit_ms"));
	args[7] = Float8GetDatum((double) (GetCurrentTimestamp() - started_at) / 1000.0);
	args[8] = BoolGetDatum(done);
	SPI_connect();
	cat_exec(cr, psprintf("UPDATE %s SET processed = base_processed + $3, "
						  "scanned = base_processed + $3, batches = base_batches + $4, "
						  "cursor = coalesce($5::text[], cursor), bounds_ms = $6, action_ms = $7, "
						  "commit_ms = $8, last_batch_ms = $9, last_batch_at = now(), "
						  "waiting_since = NULL, wait_error = NULL, "
						  "status = CASE WHEN $10 THEN 'done' ELSE status END "
						  "WHERE migration_id = $1 AND slice = $2 "
						  "RETURNING processed, batches", slices_table()),
			 9, (Oid[]) {INT4OID, INT8OID, INT8OID, TEXTOID, FLOAT8OID, FLOAT8OID,
				 FLOAT8OID, FLOAT8OID, BOOLOID},
			 args, nulls, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 1)
	{
		s->processed = int64_col(1);
		s->batches = int64_col(2);
	}
	/* the node's times start again at zero on a new placement */
	if (s->batches > old_batches)
		record_history(cr, s, cursor, s->processed - old_processed,
					   bounds_ms >= s->bounds_ms ? bounds_ms - s->bounds_ms : bounds_ms,
					   action_ms >= s->action_ms ? action_ms - s->action_ms : action_ms,
					   started_at);
	record_node_throttled(cr, s, field(res, "throttled"));
	SPI_finish();
	s->bounds_ms = bounds_ms;
	s->action_ms = action_ms;
	if (cursor)
		s->cursor = MemoryContextStrdup(cr->cxt, cursor);
	s->done = done;
}

/* the node answered: none of its slices waits for it any longer */
void
mr_citus_node_reached(CitusRun *cr, const char *node)
{
	SPI_connect();
	cat_exec(cr, psprintf("UPDATE %s SET waiting_since = NULL, wait_error = NULL "
						  "WHERE migration_id = $1 AND node = $2 AND waiting_since IS NOT NULL",
						  slices_table()),
			 1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(node)},
			 NULL, SPI_OK_UPDATE);
	SPI_finish();
}

/*
 * The node could not be reached: its slices wait, since when the first of
 * them began to (a restart of the runner does not reset the wait).  Returns
 * that time, or 0 when none of its slices is left to run.
 */
TimestampTz
mr_citus_node_waiting(CitusRun *cr, const char *node, const char *error)
{
	TimestampTz since = 0;

	SPI_connect();
	if (cat_exec(cr, psprintf("WITH w AS (UPDATE %s SET waiting_since = coalesce(waiting_since, now()), "
							  "wait_error = $3 WHERE migration_id = $1 AND node = $2 "
							  "AND status = 'running' RETURNING waiting_since) "
							  "SELECT min(waiting_since) FROM w HAVING count(*) > 0",
							  slices_table()),
				 2, (Oid[]) {TEXTOID, TEXTOID},
				 (Datum[]) {CStringGetTextDatum(node), CStringGetTextDatum(error)},
				 NULL, SPI_OK_SELECT) == 1)
		since = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1,
												  &(bool) {false}));
	SPI_finish();
	return since;
}

/* the shard was split: a slice for each child, and the parent is done */
static void
split_slice(CitusRun *cr, ShardSlice *s)
{
	uint64		n;

	n = cat_exec(cr, psprintf("INSERT INTO %s (migration_id, slice, shard_id, placement_id, node, "
							  "lower_key, upper_key, cursor, status) "
							  "SELECT $1, (SELECT max(slice) FROM %s WHERE migration_id = $1) "
							  "+ row_number() OVER (ORDER BY s.shardminvalue::int), "
							  "s.shardid, p.placementid, p.node, ARRAY[s.shardminvalue], "
							  "ARRAY[s.shardmaxvalue], $3::text[], 'running' "
							  "FROM pg_catalog.pg_dist_shard s " ACTIVE_PLACEMENT
							  "JOIN %s parent ON parent.migration_id = $1 AND parent.slice = $2 "
							  "WHERE s.logicalrelid = $4 "
							  "AND s.shardminvalue::int >= parent.lower_key[1]::int "
							  "AND s.shardmaxvalue::int <= parent.upper_key[1]::int",
							  slices_table(), slices_table(), slices_table()),
				 3, (Oid[]) {INT4OID, TEXTOID, OIDOID},
				 (Datum[]) {Int32GetDatum(s->slice),
					 s->cursor ? CStringGetTextDatum(s->cursor) : (Datum) 0,
				 ObjectIdGetDatum(cr->m->relid)},
				 s->cursor ? "   " : " n ", SPI_OK_INSERT);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shard " INT64_FORMAT " of relation %s is gone",
						s->shard_id, cr->m->relation_name),
				 errdetail("Citus' metadata has neither a placement of it nor shards inside its hash range.")));
	cat_exec(cr, psprintf("UPDATE %s SET status = 'done' WHERE migration_id = $1 AND slice = $2",
						  slices_table()),
			 1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(s->slice)},
			 NULL, SPI_OK_UPDATE);
	ereport(LOG,
			(errmsg("migration_runner: migration \"%s\": shard " INT64_FORMAT " was split; %d slices go on after its cursor",
					cr->m->name, s->shard_id, (int) n)));
}

/*
 * The node said the slice's placement moved away (its cursor, recorded
 * already, is final there).  Follow it as Citus' metadata now says: a move
 * continues the slice on the new placement, a split continues it in its
 * children.  False when the metadata does not show the change yet: the
 * caller asks the node again a little later.
 */
bool
mr_citus_transfer(CitusRun *cr, ShardSlice *s)
{
	bool		moved = false;
	int64		placement;

	SPI_connect();
	if (cat_exec(cr, psprintf("SELECT p.placementid, p.node FROM pg_catalog.pg_dist_shard s "
							  ACTIVE_PLACEMENT "WHERE s.shardid = $2 AND $1 IS NOT NULL"),
				 1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(s->shard_id)},
				 NULL, SPI_OK_SELECT) == 1)
	{
		char	   *node = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

		placement = int64_col(1);
		if (placement != s->placement_id)
		{
			/*
			 * The new node's times start at zero: the old placement's go to
			 * the migration's row, to which the slices' are added when it
			 * completes, in the same transaction as they leave the slice.
			 */
			cat_exec(cr, psprintf("UPDATE %s m SET bounds_ms = m.bounds_ms + s.bounds_ms, "
								  "action_ms = m.action_ms + s.action_ms, "
								  "commit_ms = m.commit_ms + s.commit_ms FROM %s s "
								  "WHERE m.id = $1 AND s.migration_id = $1 AND s.slice = $2",
								  mr_catalog_table("migrations"), slices_table()),
					 1, (Oid[]) {INT4OID}, (Datum[]) {Int32GetDatum(s->slice)},
					 NULL, SPI_OK_UPDATE);
			cat_exec(cr, psprintf("UPDATE %s SET placement_id = $3, node = $4, local_id = NULL, "
								  "base_processed = processed, base_batches = batches, "
								  "bounds_ms = 0, action_ms = 0, commit_ms = 0, waiting_since = NULL, "
								  "wait_error = NULL WHERE migration_id = $1 AND slice = $2",
								  slices_table()),
					 3, (Oid[]) {INT4OID, INT8OID, TEXTOID},
					 (Datum[]) {Int32GetDatum(s->slice), Int64GetDatum(placement),
					 CStringGetTextDatum(node)}, NULL, SPI_OK_UPDATE);
			ereport(LOG,
					(errmsg("migration_runner: migration \"%s\": shard " INT64_FORMAT " moved to node %s",
							cr->m->name, s->shard_id, node)));
			moved = true;
		}
	}
	else if (cat_exec(cr, "SELECT FROM pg_catalog.pg_dist_shard WHERE shardid = $2 AND $1 IS NOT NULL",
					  1, (Oid[]) {INT8OID}, (Datum[]) {Int64GetDatum(s->shard_id)},
					  NULL, SPI_OK_SELECT) == 0)
	{
		split_slice(cr, s);
		moved = true;
	}
	SPI_finish();
	return moved;
}

/*
 * Every slice is done: the migration completes, with the slices' counters
 * added to its own as for any migration that ran in slices.
 */
void
mr_citus_complete(CitusRun *cr)
{
	Migration  *m = mr_migration_by_id(cr->m->id, true);

	if (m == NULL || strcmp(m->status, MR_STATUS_RUNNING) != 0)
	{
		cr->outcome = RUN_STOPPED;
		return;
	}
	SPI_connect();
	m->processed = mr_fold_slices(m->id);
	mr_set_status(m, MR_STATUS_COMPLETED,
				  "completed_at = now(), worker_pid = NULL, throttled = NULL");
	cat_exec(cr, psprintf("DELETE FROM %s WHERE migration_id = $1", slices_table()),
			 0, NULL, NULL, NULL, SPI_OK_DELETE);
	SPI_finish();
	cr->outcome = RUN_COMPLETED;
}

/* a string as an SQL literal, or NULL */
static char *
literal_or_null(const char *s)
{
	return s ? quote_literal_cstr(s) : "NULL";
}

/*
 * The migration fails (unless someone stopped it meanwhile, or it failed
 * already): the loop sends nothing more and drains the calls under way.
 */
void
mr_citus_fail(CitusRun *cr, const char *error, const char *sqlstate,
			  const char *context, const char *hint)
{
	Migration  *m;

	if (cr->stopping && cr->outcome == RUN_FAILED)
		return;
	cr->stopping = true;
	cr->outcome = RUN_FAILED;
	if (sqlstate == NULL || strlen(sqlstate) != 5)
		sqlstate = "XX000";
	cr->sqlerrcode = MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2],
								   sqlstate[3], sqlstate[4]);
	m = mr_migration_by_id(cr->m->id, true);
	if (m == NULL || strcmp(m->status, MR_STATUS_RUNNING) != 0)
	{
		cr->outcome = RUN_STOPPED;
		return;
	}
	mr_set_status(m, MR_STATUS_FAILED,
				  psprintf("error = %s, error_hint = %s, error_context = %s, "
						   "worker_pid = NULL, throttled = NULL",
						   quote_literal_cstr(psprintf("%s (SQLSTATE %s)", error, sqlstate)),
						   literal_or_null(hint), literal_or_null(context)));
	ereport(LOG,
			(errmsg("migration_runner: migration \"%s\" failed: %s", m->name, error),
			 context ? errdetail("%s", context) : 0));
}
