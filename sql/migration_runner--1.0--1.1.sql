/* migration_runner--1.0--1.1.sql: every catalog change of release 1.1 */

\echo Use "ALTER EXTENSION migration_runner UPDATE TO '1.1'" to load this file. \quit

/*
 * The table the action writes to, resolved when the migration was defined:
 * the migration's own relation, another table the action names on purpose
 * (an archive INSERT ... SELECT), or NULL for an action that writes no
 * table.  A run refuses to start when the action would now write to another
 * table (a temporary table of the same name, a table created earlier on the
 * search_path).
 */
ALTER TABLE migrations ADD COLUMN action_target regclass;

/*
 * What identifies the row behind the last failure: the error's DETAIL (the
 * duplicate key, the violating row), its HINT and its CONTEXT, which the
 * message alone in error does not carry.
 */
ALTER TABLE migrations ADD COLUMN error_detail text;
ALTER TABLE migrations ADD COLUMN error_hint text;
ALTER TABLE migrations ADD COLUMN error_context text;

/*
 * 1.0 kept cursors, high-water marks and batch bounds in the text form of
 * whichever process wrote them, which depends on DateStyle, TimeZone,
 * extra_float_digits, IntervalStyle and bytea_output.  1.1 writes and reads
 * them under fixed settings.  Convert what is stored: each key is read with
 * the settings of the session running this upgrade (the server's defaults,
 * which the 1.0 worker wrote with too) and written in canonical form.
 */
CREATE FUNCTION mr_canonical_keys(key text[], types regtype[])
RETURNS text[]
AS 'MODULE_PATHNAME', 'mr_canonical_keys'
LANGUAGE C STRICT;

UPDATE migrations
   SET cursor = mr_canonical_keys(cursor, key_types),
	   high_water = mr_canonical_keys(high_water, key_types)
 WHERE relation IS NOT NULL;

UPDATE migration_batches b
   SET first_key = mr_canonical_keys(b.first_key, m.key_types),
	   last_key = mr_canonical_keys(b.last_key, m.key_types)
  FROM migrations m
 WHERE m.id = b.migration_id AND m.relation IS NOT NULL;

DROP FUNCTION mr_canonical_keys(text[], regtype[]);

/*
 * pg_dump dumps the catalog's rows (pg_extension_config_dump in 1.0) but, in
 * 1.0, not the position of the id sequence: after a restore the first new
 * migration collided with id 1.  Marking the sequence makes pg_dump restore
 * its position too.
 */
SELECT pg_catalog.pg_extension_config_dump('migrations_id_seq', '');

/*
 * mig_drop: remove a migration and its history (ON DELETE CASCADE), so that
 * its name can be used again.  Owner, member of the owning role or
 * superuser; refused while the migration is running or a runner holds it.
 */
CREATE FUNCTION mig_drop(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'mig_drop'
LANGUAGE C;

/*
 * mig_status, same columns as in 1.0, with:
 *
 * total_estimate without statistics.  A table never analyzed or vacuumed
 * has pg_class.reltuples = -1, and 1.0 showed no total (so no percent and
 * no ETA) although the table's rows are known well enough.  For such a
 * table the total is now the live-row count that the cumulative statistics
 * keep up to date without ANALYZE (pg_stat_user_tables.n_live_tup: rows
 * inserted minus rows deleted); for a partitioned table, the sum over its
 * leaf partitions, each counted by reltuples if analyzed, else by its live
 * rows.  As before it never falls below the keys walked, a completed
 * migration counts what it walked, and it is NULL when nothing is known
 * (no statistics, or statistics reset, as after a crash).
 *
 * rows_per_sec after completion: the run's average (keys walked over
 * completed_at - started_at) instead of the rate of its last 20 batches.
 */
CREATE OR REPLACE VIEW mig_status AS
SELECT m.id,
	   m.name,
	   m.status,
	   CASE WHEN m.relation IS NULL THEN 'application' ELSE 'managed' END AS kind,
	   m.owner,
	   m.relation,
	   m.processed,
	   m.scanned,
	   m.batches,
	   est.total AS total_estimate,
	   CASE WHEN m.status = 'completed' THEN 100.0
			WHEN est.total > 0 THEN round(100.0 * m.scanned / est.total, 1)
	   END AS percent,
	   round(CASE WHEN m.status = 'completed' THEN run.rows_per_sec
				  ELSE r.rows_per_sec END::numeric, 1) AS rows_per_sec,
	   CASE WHEN m.status = 'running' AND r.rows_per_sec > 0 AND est.total IS NOT NULL
			THEN make_interval(secs => round(((est.total - m.scanned) / r.rows_per_sec)::numeric, 0)::double precision)
	   END AS eta,
	   m.current_batch_size,
	   round(m.last_batch_ms::numeric, 2) AS last_batch_ms,
	   m.last_batch_at,
	   m.retries,
	   m.throttled,
	   m.worker_pid,
	   m.started_at,
	   m.completed_at,
	   m.error,
	   CASE WHEN m.action IS NULL OR pg_catalog.pg_has_role(m.owner, 'USAGE')
			THEN m.action ELSE '<insufficient privilege>' END AS action
  FROM migrations m
  LEFT JOIN pg_catalog.pg_class c ON c.oid = m.relation
  LEFT JOIN LATERAL (
	WITH RECURSIVE tree AS (
		SELECT c.oid, c.relkind, c.reltuples
		UNION ALL
		SELECT p.oid, p.relkind, p.reltuples
		  FROM tree t
		  JOIN pg_catalog.pg_inherits i ON i.inhparent = t.oid
		  JOIN pg_catalog.pg_class p ON p.oid = i.inhrelid
		 WHERE t.relkind = 'p')
	SELECT nullif(sum(CASE WHEN t.reltuples >= 0 THEN t.reltuples::bigint
						   ELSE pg_catalog.pg_stat_get_live_tuples(t.oid) END), 0)::bigint AS total
	  FROM tree t
	 WHERE t.relkind <> 'p') live ON c.reltuples < 0
  CROSS JOIN LATERAL (
	SELECT CASE WHEN m.status = 'completed' THEN m.scanned
				WHEN c.reltuples >= 0 THEN greatest(c.reltuples::bigint, m.scanned)
				WHEN live.total IS NOT NULL THEN greatest(live.total, m.scanned)
		   END AS total) est
  LEFT JOIN LATERAL (
	SELECT sum(b.keys) / nullif(extract(epoch FROM
				max(b.started_at + b.duration_ms * interval '1 millisecond')
				- min(b.started_at)), 0) AS rows_per_sec
	  FROM (SELECT keys, started_at, duration_ms
			  FROM migration_batches
			 WHERE migration_id = m.id AND error IS NULL
			 ORDER BY batch DESC LIMIT 20) b) r ON m.status <> 'completed'
  LEFT JOIN LATERAL (
	SELECT m.scanned / nullif(greatest(extract(epoch FROM m.completed_at - m.started_at), 0), 0)
		   AS rows_per_sec
	 WHERE m.relation IS NOT NULL AND m.batches > 0) run ON m.status = 'completed';

GRANT SELECT ON mig_status TO PUBLIC;

/*
 * Parallel slices.  A managed migration may run on up to `parallel`
 * runners at once, each walking a slice of the keys still to do.  With
 * parallel = 1 (the default, and every migration of 1.0) nothing changes:
 * the migration's own row keeps the cursor.  Once a run splits the keys
 * into slices, each slice's row keeps its own cursor, committed with each
 * of its batches, and the migration's counters are the sums; when the last
 * slice is done the sums are folded into the migration's row and the
 * slices are removed.
 */
ALTER TABLE migrations ADD COLUMN parallel integer NOT NULL DEFAULT 1;

CREATE TABLE migration_slices (
	migration_id		bigint NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
	slice				integer NOT NULL,
	status				text NOT NULL DEFAULT 'running',
	lower_key			text[],			-- exclusive; NULL: from the first key
	upper_key			text[] NOT NULL,	-- inclusive
	cursor				text[],			-- the last key done, or NULL
	processed			bigint NOT NULL DEFAULT 0,
	scanned				bigint NOT NULL DEFAULT 0,
	batches				bigint NOT NULL DEFAULT 0,
	current_batch_size	integer,
	worker_pid			integer,
	last_batch_at		timestamptz,
	last_batch_ms		double precision,
	bounds_ms			double precision NOT NULL DEFAULT 0,
	action_ms			double precision NOT NULL DEFAULT 0,
	bookkeeping_ms		double precision NOT NULL DEFAULT 0,
	commit_ms			double precision NOT NULL DEFAULT 0,
	/*
	 * A slice of a per-shard run on a Citus table (citus_run.c) is one shard:
	 * its placement's node runs it as a migration of its own (local_id in
	 * that node's catalog, which holds the true cursor); these columns
	 * mirror it.  base_* count what earlier placements of the shard did
	 * before a move.  waiting_since is set while its node cannot be reached.
	 */
	shard_id			bigint,
	placement_id		bigint,
	node				text,
	local_id			bigint,
	base_processed		bigint NOT NULL DEFAULT 0,
	base_batches		bigint NOT NULL DEFAULT 0,
	waiting_since		timestamptz,
	wait_error			text,
	PRIMARY KEY (migration_id, slice),
	CONSTRAINT migration_slices_slice_check
		CHECK (slice BETWEEN 1 AND 64 OR (shard_id IS NOT NULL AND slice > 0)),
	CONSTRAINT migration_slices_status_check CHECK (status IN ('running', 'done'))
);

COMMENT ON TABLE migration_slices IS
	'migration_runner: the slices of migrations running in parallel (read-only for users)';

REVOKE ALL ON migration_slices FROM PUBLIC;
GRANT SELECT ON migration_slices TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('migration_slices', '');

/*
 * History rows say which slice ran the batch (0: the migration ran as one
 * piece); each slice numbers its own batches.
 */
ALTER TABLE migration_batches ADD COLUMN slice integer NOT NULL DEFAULT 0;
ALTER TABLE migration_batches DROP CONSTRAINT migration_batches_pkey;
ALTER TABLE migration_batches ADD PRIMARY KEY (migration_id, slice, batch);

/*
 * Beyond the anchors.  A migration may check its own work (verify), skip the
 * keys whose action fails with a data error and keep them for a later retry
 * (on_error 'skip', max_skipped), continue where an earlier version of it
 * stopped (continue_from), and wait for other migrations to complete
 * (run_after).  verifying_since is set while the final verify query runs.
 */
ALTER TABLE migrations
	ADD COLUMN verify text,
	ADD COLUMN on_error text NOT NULL DEFAULT 'fail',
	ADD COLUMN max_skipped bigint NOT NULL DEFAULT 1000,
	ADD COLUMN skipped bigint NOT NULL DEFAULT 0,
	ADD COLUMN continued_from bigint,
	ADD COLUMN run_after text[],
	ADD COLUMN verifying_since timestamptz,
	ADD CONSTRAINT migrations_on_error_check CHECK (on_error IN ('fail', 'skip')),
	ADD CONSTRAINT migrations_max_skipped_check CHECK (max_skipped >= 0),
	ADD CONSTRAINT migrations_skipped_check CHECK (skipped >= 0);

/*
 * Distributed tables (Citus).  mig_define records how the relation is
 * distributed: 'hash', 'range', 'append', 'reference' or 'single' (Citus'
 * pg_dist_partition), its distribution column and colocation group, and
 * whether a run goes shard by shard (per_shard: hash-distributed, the key
 * contains the distribution column, migration_runner.citus_shards on).
 * citus_run counts the runs that split the migration into shards.  On a
 * node, a migration that runs one shard placement for a coordinator's
 * migration has coordinator_id, shard_id and placement_id set; the node's
 * own workers leave it to the coordinator.
 */
ALTER TABLE migrations
	ADD COLUMN distribution text,
	ADD COLUMN distribution_column text,
	ADD COLUMN colocation_id integer,
	ADD COLUMN per_shard boolean NOT NULL DEFAULT false,
	ADD COLUMN citus_run integer NOT NULL DEFAULT 0,
	ADD COLUMN coordinator_id bigint,
	ADD COLUMN shard_id bigint,
	ADD COLUMN placement_id bigint,
	ADD CONSTRAINT migrations_distribution_check
		CHECK (distribution IN ('hash', 'range', 'append', 'reference', 'single'));

/*
 * The keys a migration with on_error 'skip' could not migrate: each is
 * written in the transaction that moves the cursor past it, with the error
 * its action raised for that key alone.
 */
CREATE TABLE migration_skipped (
	migration_id		bigint NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
	key					text NOT NULL,		-- the key as text[] text, e.g. {42}
	sqlstate			text NOT NULL,
	error				text NOT NULL,
	error_detail		text,
	error_context		text,
	slice				integer NOT NULL DEFAULT 0,
	skipped_at			timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (migration_id, key)
);

COMMENT ON TABLE migration_skipped IS
	'migration_runner: keys a migration skipped after a data error (read-only for users)';

REVOKE ALL ON migration_skipped FROM PUBLIC;
GRANT SELECT ON migration_skipped TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('migration_skipped', '');

/* mig_define gains parallel, verify, on_error, max_skipped, continue_from and after */
DROP FUNCTION mig_define(text, regclass, text, integer, text[], interval,
						 interval, interval, integer, interval);

CREATE FUNCTION mig_define(name text,
						   relation regclass,
						   action text,
						   batch_size integer DEFAULT 1000,
						   key_columns text[] DEFAULT NULL,
						   batch_delay interval DEFAULT NULL,
						   lock_timeout interval DEFAULT NULL,
						   statement_timeout interval DEFAULT NULL,
						   max_retries integer DEFAULT NULL,
						   target_batch_time interval DEFAULT NULL,
						   parallel integer DEFAULT 1,
						   verify text DEFAULT NULL,
						   on_error text DEFAULT 'fail',
						   max_skipped bigint DEFAULT 1000,
						   continue_from text DEFAULT NULL,
						   after text[] DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mig_define'
LANGUAGE C;

/*
 * mig_alter: change the run options of a migration that is not completed;
 * NULL leaves an option as it is.  Running slices pick the change up at
 * their next batch.  The relation, key and action never change.
 */
CREATE FUNCTION mig_alter(name text,
						  batch_size integer DEFAULT NULL,
						  parallel integer DEFAULT NULL,
						  batch_delay interval DEFAULT NULL,
						  lock_timeout interval DEFAULT NULL,
						  statement_timeout interval DEFAULT NULL,
						  max_retries integer DEFAULT NULL,
						  target_batch_time interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'mig_alter'
LANGUAGE C;

/* mig_slices: one row per slice of a migration that runs in slices */
CREATE VIEW mig_slices AS
SELECT m.name,
	   s.slice,
	   s.status,
	   s.lower_key::text AS lower_key,
	   s.upper_key::text AS upper_key,
	   s.cursor::text AS cursor,
	   s.processed,
	   s.batches,
	   s.worker_pid,
	   s.shard_id,
	   s.node,
	   s.waiting_since,
	   s.wait_error
  FROM migration_slices s
  JOIN migrations m ON m.id = s.migration_id;

GRANT SELECT ON mig_slices TO PUBLIC;

/*
 * 'waiting' is a running migration with a prerequisite not completed and no
 * runner: one whose run had started before a prerequisite was reset goes on
 * running (the order is checked as a run starts), and shows as running.
 *
 * mig_status with slices: processed, scanned and batches add the slices'
 * counters while they run; worker_pid is the lowest of the slices' workers,
 * current_batch_size the largest of theirs and last_batch_ms that of the
 * slice that ran a batch last, when the migration runs in slices; the rate
 * is taken over the 20 most recent batches of any slice.
 */
CREATE OR REPLACE VIEW mig_status AS
SELECT m.id,
	   m.name,
	   CASE WHEN m.status = 'running' AND m.verifying_since IS NOT NULL THEN 'verifying'
			WHEN m.status = 'running' AND w.waiting_for IS NOT NULL
				 AND coalesce(m.worker_pid, sl.worker_pid) IS NULL THEN 'waiting'
			ELSE m.status END AS status,
	   CASE WHEN m.relation IS NULL THEN 'application' ELSE 'managed' END AS kind,
	   m.owner,
	   m.relation,
	   m.processed + sl.processed AS processed,
	   m.scanned + sl.scanned AS scanned,
	   m.batches + sl.batches AS batches,
	   est.total AS total_estimate,
	   CASE WHEN m.status = 'completed' THEN 100.0
			WHEN est.total > 0 THEN round(100.0 * (m.scanned + sl.scanned) / est.total, 1)
	   END AS percent,
	   round(CASE WHEN m.status = 'completed' THEN run.rows_per_sec
				  ELSE r.rows_per_sec END::numeric, 1) AS rows_per_sec,
	   CASE WHEN m.status = 'running' AND r.rows_per_sec > 0 AND est.total IS NOT NULL
			THEN make_interval(secs => round(((est.total - m.scanned - sl.scanned) / r.rows_per_sec)::numeric, 0)::double precision)
	   END AS eta,
	   CASE WHEN sl.n > 0 THEN sl.current_batch_size ELSE m.current_batch_size END
		   AS current_batch_size,
	   round((CASE WHEN sl.n > 0 THEN sl.last_batch_ms ELSE m.last_batch_ms END)::numeric, 2)
		   AS last_batch_ms,
	   greatest(m.last_batch_at, sl.last_batch_at) AS last_batch_at,
	   m.retries,
	   m.throttled,
	   coalesce(m.worker_pid, sl.worker_pid) AS worker_pid,
	   m.started_at,
	   m.completed_at,
	   m.error,
	   CASE WHEN m.action IS NULL OR pg_catalog.pg_has_role(m.owner, 'USAGE')
			THEN m.action ELSE '<insufficient privilege>' END AS action,
	   m.skipped,
	   coalesce(w.waiting_for, sl.waiting_for) AS waiting_for
  FROM migrations m
  LEFT JOIN pg_catalog.pg_class c ON c.oid = m.relation
  CROSS JOIN LATERAL (
	SELECT coalesce(sum(s.processed), 0)::bigint AS processed,
		   coalesce(sum(s.scanned), 0)::bigint AS scanned,
		   coalesce(sum(s.batches), 0)::bigint AS batches,
		   max(s.last_batch_at) AS last_batch_at,
		   min(s.worker_pid) AS worker_pid,
		   count(*) AS n,
		   max(s.current_batch_size) AS current_batch_size,
		   (array_agg(s.last_batch_ms ORDER BY s.last_batch_at DESC NULLS LAST))[1]
			   AS last_batch_ms,
		   string_agg(DISTINCT 'node ' || s.node, ', ')
			   FILTER (WHERE s.waiting_since IS NOT NULL) AS waiting_for
	  FROM migration_slices s
	 WHERE s.migration_id = m.id) sl
  LEFT JOIN LATERAL (
	SELECT string_agg(format('%s (%s)', a.name, coalesce(p.status, 'not defined')),
					  ', ' ORDER BY a.ord) AS waiting_for
	  FROM unnest(m.run_after) WITH ORDINALITY a(name, ord)
	  LEFT JOIN migrations p ON p.name = a.name
	 WHERE p.status IS DISTINCT FROM 'completed') w ON m.run_after IS NOT NULL
  LEFT JOIN LATERAL (
	WITH RECURSIVE tree AS (
		SELECT c.oid, c.relkind, c.reltuples
		UNION ALL
		SELECT p.oid, p.relkind, p.reltuples
		  FROM tree t
		  JOIN pg_catalog.pg_inherits i ON i.inhparent = t.oid
		  JOIN pg_catalog.pg_class p ON p.oid = i.inhrelid
		 WHERE t.relkind = 'p')
	SELECT nullif(sum(CASE WHEN t.reltuples >= 0 THEN t.reltuples::bigint
						   ELSE pg_catalog.pg_stat_get_live_tuples(t.oid) END), 0)::bigint AS total
	  FROM tree t
	 WHERE t.relkind <> 'p') live ON c.reltuples < 0
  CROSS JOIN LATERAL (
	SELECT CASE WHEN m.status = 'completed' THEN m.scanned
				WHEN c.reltuples >= 0 THEN greatest(c.reltuples::bigint, m.scanned + sl.scanned)
				WHEN live.total IS NOT NULL THEN greatest(live.total, m.scanned + sl.scanned)
		   END AS total) est
  LEFT JOIN LATERAL (
	SELECT sum(b.keys) / nullif(extract(epoch FROM
				max(b.started_at + b.duration_ms * interval '1 millisecond')
				- min(b.started_at)), 0) AS rows_per_sec
	  FROM (SELECT keys, started_at, duration_ms
			  FROM migration_batches
			 WHERE migration_id = m.id AND error IS NULL
			 ORDER BY started_at DESC LIMIT 20) b) r ON m.status <> 'completed'
  LEFT JOIN LATERAL (
	SELECT m.scanned / nullif(greatest(extract(epoch FROM m.completed_at - m.started_at), 0), 0)
		   AS rows_per_sec
	 WHERE m.relation IS NOT NULL AND m.batches > 0) run ON m.status = 'completed';

/*
 * mig_dry_run: run the next batches of a managed migration (after its
 * cursor, or its slices' cursors, slice by slice) as its owner, exactly as
 * a run would, and roll them all back: one row per batch with its bounds,
 * the rows the action changed, how long the batch took and up to 10 of the
 * rows the action returned (RETURNING), as jsonb.  Nothing is recorded:
 * the cursor, the counters, the history and the status stay as they were.
 * A rollback cannot undo nextval() of sequences, session advisory locks, or
 * what the action did outside the database (dblink, COPY TO PROGRAM).
 * EXECUTE stays PUBLIC's, as for the other functions: it checks that the
 * caller has the privileges of the migration's owner.
 */
CREATE FUNCTION mig_dry_run(name text, batches integer DEFAULT 1)
RETURNS TABLE (batch integer, first_key text, last_key text, rows bigint,
			   ms double precision, sample jsonb)
AS 'MODULE_PATHNAME', 'mig_dry_run'
LANGUAGE C;

/*
 * mig_retry_skipped: run the action again, as a batch of that one key, for
 * every key a migration with on_error 'skip' skipped; each key in a
 * subtransaction of its own.  A key that now succeeds leaves
 * migration_skipped (and migrations.skipped) in the same transaction as its
 * data change; one that fails again stays, with its new error.  Returns how
 * many succeeded.  Owner, member of the owning role or superuser; allowed
 * in any status, running too (a skipped key is behind the cursor).
 */
CREATE FUNCTION mig_retry_skipped(name text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mig_retry_skipped'
LANGUAGE C;

/*
 * mig_wait_all: wait until every migration named is completed, failed or
 * cancelled, or the timeout passed; returns each one's status then, in the
 * order of names.  An unknown name is an error.
 */
CREATE FUNCTION mig_wait_all(names text[], timeout interval DEFAULT NULL)
RETURNS TABLE (name text, status text)
AS 'MODULE_PATHNAME', 'mig_wait_all'
LANGUAGE C;

/*
 * Per-shard runs on Citus (shard.c, shard_batch.c, citus_run.c).  The
 * coordinator's runner calls these on the node that holds a shard's
 * placement, connected as the migration's owner; they are not meant to be
 * called by hand.
 *
 * mig_shard_prepare: define (once; the same call again returns the same
 * id) and start this node's migration of one shard placement of the
 * distributed table relation: the action, analysed as the caller with
 * search_path, is turned into the same statement on the shard table; the
 * run starts after cursor (NULL: from the first key).
 */
CREATE FUNCTION mig_shard_prepare(coordinator_id bigint,
								  run integer,
								  shard_id bigint,
								  placement_id bigint,
								  relation text,
								  action text,
								  key_columns text[],
								  batch_size integer,
								  search_path text,
								  cursor text[],
								  lock_timeout interval DEFAULT NULL,
								  statement_timeout interval DEFAULT NULL,
								  max_retries integer DEFAULT NULL,
								  target_batch_time interval DEFAULT NULL,
								  batch_delay interval DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mig_shard_prepare'
LANGUAGE C;

/*
 * mig_shard_batch: run batches of this node's migration local_id, each in
 * a transaction of its own, for about budget_ms (at least one), and say
 * where it stands: status is 'running' (keys left), 'completed', 'moved'
 * (the placement is no longer on this node: cursor is final here),
 * 'busy' (another session runs it), or 'failed' (error, sqlstate);
 * throttled is why the node's health held its batches back at the end of
 * the call (NULL: it did not).
 */
CREATE PROCEDURE mig_shard_batch(local_id bigint,
								 budget_ms integer,
								 OUT status text,
								 OUT processed bigint,
								 OUT batches bigint,
								 OUT cursor text[],
								 OUT bounds_ms double precision,
								 OUT action_ms double precision,
								 OUT commit_ms double precision,
								 OUT error text,
								 OUT sqlstate text,
								 OUT throttled text)
AS 'MODULE_PATHNAME', 'mig_shard_batch'
LANGUAGE C;
