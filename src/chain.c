/*-------------------------------------------------------------------------
 *
 * chain.c
 *	  How a managed migration relates to others: continue_from (a new
 *	  version takes over where an earlier one stopped) and after (it runs
 *	  only once other migrations have completed).
 *
 * continue_from.  mig_define(..., continue_from => 'x_v1') names an earlier
 * managed migration on the same relation with the same key, which failed,
 * was paused or cancelled.  In the defining transaction the new migration
 * takes over its cursor, high-water mark, slices and skipped keys, and the
 * earlier one becomes cancelled with a note naming its successor; from then
 * on it cannot be started again (while the successor exists), so no key is
 * run by both.  The earlier row is locked as a batch locks it, and its
 * runner locks are taken for the transaction, so no runner can be in the
 * middle of a batch of it while its cursor is read.  What is carried: the
 * position (cursor, high_water, the slices' ranges and cursors, and
 * scanned, the keys behind the cursor, so that percent and ETA stay right)
 * and the skipped keys (and their count); what starts at zero: processed,
 * batches and retries, which count what this version's action did.
 *
 * after.  mig_define(..., after => ARRAY['a', 'b']) names migrations that
 * must be completed before this one runs any batch.  mig_start records the
 * intent as always (status running; mig_status shows 'waiting' and what it
 * waits for), but started_at stays NULL until its first run really begins.
 * The launcher does not start a worker for it (mr_chain_ready_condition in
 * its query), a runner that gets to it anyway leaves it at setup
 * (mr_chain_ready_to_run), and CALL mig_run refuses it with an error.  A
 * completion wakes the launcher at commit, so a dependent starts at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "api.h"
#include "chain.h"
#include "migration_runner.h"

/* run one read-only query on the catalog; the caller reads SPI_tuptable */
static void
catalog_select(const char *sql, int nargs, Oid *types, Datum *args)
{
	if (SPI_execute_with_args(sql, nargs, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read migration catalog");
}

/* the first column of the first row as a string, or NULL */
static char *
first_value(MemoryContext cxt)
{
	char	   *value;

	if (SPI_processed == 0)
		return NULL;
	value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return value ? MemoryContextStrdup(cxt, value) : NULL;
}

/*
 * The name of the migration that continued migration id, other than the
 * one named except; NULL if there is none.
 */
static char *
successor_of(int64 id, const char *except)
{
	MemoryContext caller = CurrentMemoryContext;
	CatalogAccess access;
	char	   *name;

	mr_catalog_enter(&access);
	SPI_connect();
	catalog_select(psprintf("SELECT name FROM %s WHERE continued_from = $1 "
							"AND name <> $2 ORDER BY id LIMIT 1",
							mr_catalog_table("migrations")),
				   2, (Oid[]) {INT8OID, TEXTOID},
				   (Datum[]) {Int64GetDatum(id),
					   CStringGetTextDatum(except ? except : "")});
	name = first_value(caller);
	SPI_finish();
	mr_catalog_leave(&access);
	return name;
}

static char *
key_description(Migration *m)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < m->nkeys; i++)
		appendStringInfo(&buf, "%s%s %s", i > 0 ? ", " : "",
						 quote_identifier(m->key_names[i]),
						 format_type_be(m->key_types[i]));
	return buf.data;
}

/* the earlier migration walks the same keys of the same relation */
static void
check_same_keys(Migration *old, Migration *m)
{
	bool		same = old->nkeys == m->nkeys;
	int			i;

	if (old->relid != m->relid)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("cannot continue migration \"%s\": the relation differs",
						old->name),
				 errdetail("Migration \"%s\" runs on %s; this one on %s.",
						   old->name,
						   old->relation_name ? old->relation_name : "another relation",
						   get_rel_name(m->relid))));
	for (i = 0; same && i < m->nkeys; i++)
		same = strcmp(old->key_names[i], m->key_names[i]) == 0 &&
			old->key_types[i] == m->key_types[i];
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("cannot continue migration \"%s\": the key columns differ",
						old->name),
				 errdetail("Its key is (%s); this one's is (%s).",
						   key_description(old), key_description(m)),
				 errhint("A migration continues another only over the same key, whose cursor it takes over.")));
}

/*
 * May m continue old now?  old must have stopped (failed, paused or
 * cancelled) and not have been continued by another migration already.
 */
static void
check_continuable(Migration *old, Migration *m)
{
	const char *quoted = quote_literal_cstr(old->name);
	char	   *successor;

	if (STATUS_IS(old, MR_STATUS_COMPLETED))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot continue migration \"%s\": it already completed",
						old->name),
				 errdetail("It has no keys left to continue from.")));
	if (!STATUS_IS(old, MR_STATUS_FAILED) && !STATUS_IS(old, MR_STATUS_PAUSED) &&
		!STATUS_IS(old, MR_STATUS_CANCELLED))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot continue migration \"%s\" while it is %s",
						old->name, old->status),
				 errdetail("Only a failed, paused or cancelled migration can be continued."),
				 errhint("Pause it with mig_pause(%s) or cancel it with mig_cancel(%s) first.",
						 quoted, quoted)));
	successor = successor_of(old->id, m->name);
	if (successor != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" was already continued by migration \"%s\"",
						old->name, successor),
				 errhint("Continue from \"%s\" instead.", successor)));
}

/*
 * continue_from, at define time before the row is inserted: find the
 * earlier migration and check everything that can be checked without its
 * row lock.  Sets m->continued_from.
 */
static void
read_continue_from(Migration *m, const char *name)
{
	Migration  *old;

	if (strcmp(name, m->name) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\" cannot continue from itself", name)));
	old = mr_migration_by_name(name, false);
	if (old == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration \"%s\" does not exist", name),
				 errdetail("continue_from names the earlier migration whose cursor this one takes over.")));
	if (!MigrationIsManaged(old))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot continue application-driven migration \"%s\"", name),
				 errdetail("Only a migration defined with mig_define() has a cursor to continue from.")));
	mr_check_ownership(old);
	check_same_keys(old, m);
	check_continuable(old, m);
	m->continued_from = old->id;
}

/*
 * Would m, run after the migrations in m->run_after, close a cycle?  Only
 * through a migration dropped and defined again: when a prerequisite, or
 * one of its own prerequisites, waits for a migration of m's name.
 */
static void
check_no_cycle(Migration *m, Datum after)
{
	MemoryContext caller = CurrentMemoryContext;
	CatalogAccess access;
	char	   *via;

	mr_catalog_enter(&access);
	SPI_connect();
	catalog_select(psprintf("WITH RECURSIVE reach(name, path) AS ("
							"  SELECT p.name, p.name FROM %s p WHERE p.name = ANY ($1) "
							"  UNION "
							"  SELECT q.name, r.path || ' -> ' || q.name "
							"    FROM reach r JOIN %s p ON p.name = r.name "
							"    JOIN %s q ON q.name = ANY (p.run_after) "
							"   WHERE pg_catalog.length(r.path) < 10000) "
							"SELECT path FROM reach r JOIN %s p ON p.name = r.name "
							" WHERE $2 = ANY (p.run_after) LIMIT 1",
							mr_catalog_table("migrations"), mr_catalog_table("migrations"),
							mr_catalog_table("migrations"), mr_catalog_table("migrations")),
				   2, (Oid[]) {TEXTARRAYOID, TEXTOID},
				   (Datum[]) {after, CStringGetTextDatum(m->name)});
	via = first_value(caller);
	SPI_finish();
	mr_catalog_leave(&access);
	if (via != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after would make migration \"%s\" wait for itself", m->name),
				 errdetail("Each would wait for the next: %s -> %s -> %s.",
						   m->name, via, m->name)));
}

/*
 * after, at define time: names of existing migrations, none twice, not
 * this one, no NULL.  An empty array means none.  Sets m->run_after.
 */
static void
read_after(Migration *m, ArrayType *after)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i,
				j;

	deconstruct_array(after, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	if (n == 0)
		return;
	m->run_after = palloc(sizeof(char *) * n);
	m->nrun_after = n;
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("after must not contain null")));
		m->run_after[i] = TextDatumGetCString(elems[i]);
		if (strcmp(m->run_after[i], m->name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\" cannot run after itself", m->name)));
		for (j = 0; j < i; j++)
			if (strcmp(m->run_after[i], m->run_after[j]) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("after names migration \"%s\" twice", m->run_after[i])));
		if (mr_migration_by_name(m->run_after[i], false) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("migration \"%s\" does not exist", m->run_after[i]),
					 errdetail("after names migrations that must complete before this one runs."),
					 errhint("Define or start it first.")));
	}
	check_no_cycle(m, mr_cstrings_to_text_array(m->run_after, n));
}

void
mr_chain_read_options(Migration *m, const char *continue_from, ArrayType *after)
{
	if (continue_from != NULL)
		read_continue_from(m, continue_from);
	if (after != NULL)
		read_after(m, after);
}

/*
 * No runner may hold the earlier migration: take its runner locks, of the
 * migration as one piece and of every slice it has or may have, for this
 * transaction, without waiting.  With its row locked and its status not
 * running, no runner can take them after us either.
 */
static void
lock_out_runners(Migration *old)
{
	MemoryContext caller = CurrentMemoryContext;
	CatalogAccess access;
	int			last = old->parallel;
	int			slice;
	char	   *max;

	if (mr_runner_is_mine(old->id))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("migration \"%s\" is being run by this session", old->name)));
	mr_catalog_enter(&access);
	SPI_connect();
	catalog_select(psprintf("SELECT max(slice) FROM %s WHERE migration_id = " INT64_FORMAT,
							mr_catalog_table("migration_slices"), old->id),
				   0, NULL, NULL);
	max = first_value(caller);
	SPI_finish();
	mr_catalog_leave(&access);
	if (max != NULL)
		last = Max(last, atoi(max));
	for (slice = 0; slice <= Min(last, MR_MAX_PARALLEL); slice++)
		if (!mr_try_lock_runner_for_xact(old->id, slice))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("migration \"%s\" is being run", old->name),
					 errdetail("A runner still holds it, finishing its last batch."),
					 errhint("Wait until it has stopped (worker_pid in mig_status is null), then define this migration again.")));
}

/* the earlier migration's position and skipped keys become m's */
static void
carry_over(Migration *old, Migration *m)
{
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		args[2] = {Int64GetDatum(m->id), Int64GetDatum(old->id)};

	mr_catalog_exec(psprintf("UPDATE %s n SET cursor = o.cursor, high_water = o.high_water, "
							 "scanned = o.scanned, skipped = o.skipped "
							 "FROM %s o WHERE n.id = $1 AND o.id = $2",
							 mr_catalog_table("migrations"),
							 mr_catalog_table("migrations")),
					2, types, args, SPI_OK_UPDATE);
	mr_catalog_exec(psprintf("INSERT INTO %s (migration_id, slice, status, lower_key, "
							 "upper_key, cursor, scanned) "
							 "SELECT $1, slice, status, lower_key, upper_key, cursor, scanned "
							 "FROM %s WHERE migration_id = $2",
							 mr_catalog_table("migration_slices"),
							 mr_catalog_table("migration_slices")),
					2, types, args, SPI_OK_INSERT);
	mr_catalog_exec(psprintf("INSERT INTO %s (migration_id, key, sqlstate, error, "
							 "error_detail, error_context, slice, skipped_at) "
							 "SELECT $1, key, sqlstate, error, error_detail, error_context, "
							 "slice, skipped_at FROM %s WHERE migration_id = $2",
							 mr_catalog_table("migration_skipped"),
							 mr_catalog_table("migration_skipped")),
					2, types, args, SPI_OK_INSERT);
}

/*
 * The earlier migration is cancelled, through the status rules and with
 * the notification, and its error says who continued it (its own last
 * error, if any, moves to error_detail).
 */
static void
cancel_continued(Migration *old, Migration *m)
{
	const char *to = MR_STATUS_CANCELLED;
	char	   *note = psprintf("continued by migration \"%s\"", m->name);

	if (!STATUS_IS(old, MR_STATUS_CANCELLED))
		(void) mr_transition(old, MIG_OP_CANCEL, &to);
	mr_set_status(old, to,
				  psprintf("error = %s, error_detail = CASE WHEN error IS NULL "
						   "THEN error_detail ELSE pg_catalog.concat_ws(E'\\n', "
						   "'Its last error: ' || error, error_detail) END, "
						   "worker_pid = NULL, throttled = NULL",
						   quote_literal_cstr(note)));
}

/*
 * After the new row m was inserted: take over from the earlier migration,
 * under its row lock and its runner locks, and cancel it.
 */
void
mr_chain_defined(Migration *m)
{
	Migration  *old;

	if (m->continued_from == 0)
		return;
	old = mr_migration_by_id(m->continued_from, true);
	if (old == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration with id " INT64_FORMAT " was dropped while being continued",
						m->continued_from)));
	/* what the unlocked look saw may have changed: look again */
	check_continuable(old, m);
	lock_out_runners(old);
	carry_over(old, m);
	cancel_continued(old, m);
}

/*
 * A migration that another one continued may not run again: its keys
 * after the cursor are the successor's now.
 */
void
mr_chain_check_not_continued(Migration *m)
{
	char	   *successor = successor_of(m->id, NULL);

	if (successor != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" was continued by migration \"%s\"",
						m->name, successor),
				 errdetail("Its remaining keys are migrated by \"%s\".", successor),
				 errhint("Run \"%s\" instead; only after mig_drop(%s) can this one run again.",
						 successor, quote_literal_cstr(successor))));
}

/*
 * The prerequisites of m that have not completed: NULL when there are
 * none, else their names ("a, b") and, in *with_status, the names with
 * their statuses ("a (failed), b (running)").
 */
static char *
pending_prerequisites(Migration *m, char **with_status)
{
	MemoryContext caller = CurrentMemoryContext;
	CatalogAccess access;
	char	   *names = NULL;

	if (m->run_after == NULL)
		return NULL;
	mr_catalog_enter(&access);
	SPI_connect();
	catalog_select(psprintf("SELECT string_agg(a.name, ', ' ORDER BY a.ord), "
							"string_agg(format('%%s (%%s)', a.name, coalesce(p.status, 'not defined')), "
							"', ' ORDER BY a.ord) "
							"FROM unnest($1::text[]) WITH ORDINALITY a(name, ord) "
							"LEFT JOIN %s p ON p.name = a.name "
							"WHERE p.status IS DISTINCT FROM 'completed'",
							mr_catalog_table("migrations")),
				   1, (Oid[]) {TEXTARRAYOID},
				   (Datum[]) {mr_cstrings_to_text_array(m->run_after, m->nrun_after)});
	names = first_value(caller);
	if (names != NULL && with_status != NULL)
		*with_status = MemoryContextStrdup(caller,
										   SPI_getvalue(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 2));
	SPI_finish();
	mr_catalog_leave(&access);
	return names;
}

bool
mr_chain_is_waiting(Migration *m)
{
	return pending_prerequisites(m, NULL) != NULL;
}

/* CALL mig_run: an error while a prerequisite has not completed */
void
mr_chain_require_ready(Migration *m)
{
	char	   *with_status;
	char	   *names = pending_prerequisites(m, &with_status);

	if (names != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" is waiting for %s", m->name, names),
				 errdetail("It runs after %s, which must complete first.", with_status),
				 errhint("Run those first, or start this one with mig_start(%s): a background worker runs it once they have completed.",
						 quote_literal_cstr(m->name))));
}

/*
 * The run's setup, for every runner: false when a prerequisite has not
 * completed (the runner leaves the migration as it is).  The first run of
 * a migration that waited sets its started_at: it starts now.
 */
bool
mr_chain_ready_to_run(Migration *m)
{
	if (m->run_after == NULL)
		return true;
	if (mr_chain_is_waiting(m))
		return false;
	mr_catalog_exec(psprintf("UPDATE %s SET started_at = now() "
							 "WHERE id = " INT64_FORMAT " AND started_at IS NULL",
							 mr_catalog_table("migrations"), m->id),
					0, NULL, NULL, SPI_OK_UPDATE);
	return true;
}

/*
 * The launcher's condition, in SQL, on the migrations row of alias alias:
 * every migration it runs after has completed.
 */
char *
mr_chain_ready_condition(const char *alias)
{
	return psprintf("NOT EXISTS (SELECT FROM pg_catalog.unnest(%s.run_after) a(name) "
					"WHERE NOT EXISTS (SELECT FROM %s p WHERE p.name = a.name "
					"AND p.status = 'completed'))",
					alias, mr_catalog_table("migrations"));
}
