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
