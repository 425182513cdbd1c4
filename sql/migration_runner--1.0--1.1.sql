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
