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
 * mig_drop: remove a migration and its history (ON DELETE CASCADE), so that
 * its name can be used again.  Owner, member of the owning role or
 * superuser; refused while the migration is running or a runner holds it.
 */
CREATE FUNCTION mig_drop(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'mig_drop'
LANGUAGE C;
