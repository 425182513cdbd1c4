--
-- 022_privileges: who may define, change and run a migration, as
-- non-superusers.  Managed migrations are never left "running" here, so the
-- background worker has nothing to pick up: transitions through running are
-- made inside a transaction that ends in another status or rolls back.
--
CREATE ROLE regress_mr_alice;
CREATE ROLE regress_mr_bob;
CREATE ROLE regress_mr_team;
CREATE ROLE regress_mr_carol IN ROLE regress_mr_team;
CREATE ROLE regress_mr_dave IN ROLE regress_mr_team;
CREATE TABLE h22_t (id int PRIMARY KEY, who text, secret text, n int NOT NULL DEFAULT 0);
INSERT INTO h22_t (id) SELECT generate_series(1, 10);
GRANT SELECT ON h22_t TO regress_mr_bob;
GRANT SELECT, UPDATE ON h22_t TO regress_mr_alice, regress_mr_team;
CREATE TABLE h22_colpriv (id int PRIMARY KEY, v int);
GRANT UPDATE (v) ON h22_colpriv TO regress_mr_bob;
-- defining needs every privilege the action needs (here UPDATE on the
-- relation) and SELECT on the key
SET ROLE regress_mr_bob;
SELECT mig_define('h22_bob', 'h22_t', 'UPDATE h22_t SET who = current_user WHERE id BETWEEN $1 AND $2');
SELECT mig_define('h22_bob', 'h22_colpriv', 'UPDATE h22_colpriv SET v = 1 WHERE id BETWEEN $1 AND $2');
SELECT mig_define('h22_bob', 'pg_class', 'UPDATE pg_class SET relname = relname WHERE oid BETWEEN $1 AND $2');
SELECT mig_define('h22_bob', 'migrations', 'UPDATE migrations SET status = status WHERE id BETWEEN $1 AND $2');
RESET ROLE;
SELECT count(*) FROM migrations WHERE name = 'h22_bob';
-- the definer becomes the owner; a member acting as the group makes the
-- group the owner
SET ROLE regress_mr_alice;
SELECT mig_define('h22_alice', 'h22_t', 'UPDATE h22_t SET who = current_user WHERE id BETWEEN $1 AND $2', 3) > 0 AS defined;
RESET ROLE;
SET ROLE regress_mr_carol;
SELECT mig_define('h22_carol', 'h22_t', 'UPDATE h22_t SET n = n + 1 WHERE id BETWEEN $1 AND $2', 4) > 0 AS defined;
SET ROLE regress_mr_team;
SELECT mig_define('h22_team', 'h22_t', 'UPDATE h22_t SET n = n + 1 WHERE id BETWEEN $1 AND $2 AND secret IS NULL', 4) > 0 AS defined;
RESET ROLE;
SELECT name, owner, status FROM migrations WHERE name LIKE 'h22\_%' ORDER BY id;
-- nobody but the superuser writes the catalog directly
SET ROLE regress_mr_alice;
SELECT count(*) > 0 AS can_read FROM migrations WHERE name LIKE 'h22\_%';
INSERT INTO migrations (name, owner, relation, key_columns, action, batch_size)
	VALUES ('h22_forged', 'regress_mr_alice', 'h22_t', '{id}', 'SELECT $1, $2', 1);
UPDATE migrations SET action = 'DELETE FROM h22_t WHERE id BETWEEN $1 AND $2' WHERE name = 'h22_team';
UPDATE migrations SET owner = 'regress_mr_alice' WHERE name = 'h22_team';
DELETE FROM migrations WHERE name = 'h22_team';
TRUNCATE migrations;
INSERT INTO migration_batches (migration_id, batch, keys, rows, started_at, duration_ms, bounds_ms, action_ms)
	VALUES (1, 1, 1, 1, now(), 0, 0, 0);
UPDATE migration_batches SET rows = 0;
DELETE FROM migration_batches;
TRUNCATE migration_batches;
SELECT pg_catalog.has_table_privilege('migrations', p) AS migrations,
	   pg_catalog.has_table_privilege('migration_batches', p) AS batches, p
  FROM unnest('{SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER}'::text[]) p;
RESET ROLE;
SELECT name, owner, action FROM migrations WHERE name = 'h22_team';
-- only the owner, a member of the owning role or a superuser may change a
-- migration: bob may do none of it
SET ROLE regress_mr_bob;
SELECT mig_start('h22_alice');
SELECT mig_pause('h22_alice');
SELECT mig_resume('h22_alice');
SELECT mig_cancel('h22_alice');
SELECT mig_reset('h22_alice');
CALL mig_run('h22_alice');
RESET ROLE;
-- ... not even with UPDATE on the table: defining the same name again is
-- changing it too
GRANT UPDATE ON h22_t TO regress_mr_bob;
SET ROLE regress_mr_bob;
SELECT mig_define('h22_alice', 'h22_t', 'UPDATE h22_t SET who = current_user WHERE id BETWEEN $1 AND $2', 3);
SELECT mig_define('h22_alice', 'h22_t', 'UPDATE h22_t SET secret = current_user WHERE id BETWEEN $1 AND $2', 3);
RESET ROLE;
REVOKE UPDATE ON h22_t FROM regress_mr_bob;
SELECT name, owner, status, action FROM migrations WHERE name = 'h22_alice';
-- the owner may, and defining the same definition again returns its id
SET ROLE regress_mr_alice;
SELECT mig_define('h22_alice', 'h22_t', 'UPDATE h22_t SET who = current_user WHERE id BETWEEN $1 AND $2', 3)
	= (SELECT id FROM migrations WHERE name = 'h22_alice') AS same_id;
SELECT mig_define('h22_alice', 'h22_t', 'UPDATE h22_t SET secret = current_user WHERE id BETWEEN $1 AND $2', 3);
BEGIN;
SELECT mig_start('h22_alice') = (SELECT id FROM migrations WHERE name = 'h22_alice') AS started;
SELECT mig_pause('h22_alice');
SELECT mig_resume('h22_alice');
SELECT mig_pause('h22_alice');
SELECT status FROM migrations WHERE name = 'h22_alice';
COMMIT;
SELECT mig_cancel('h22_alice');
SELECT mig_reset('h22_alice');
SELECT status FROM migrations WHERE name = 'h22_alice';
-- and may run it
CALL mig_run('h22_alice');
SELECT status, processed FROM migrations WHERE name = 'h22_alice';
SELECT who, count(*) FROM h22_t GROUP BY who;
RESET ROLE;
-- a member of the owning role acts for it; a member of the group is not the
-- owner of another member's migration
SET ROLE regress_mr_dave;
SELECT mig_cancel('h22_carol');
BEGIN;
SELECT mig_start('h22_team') > 0 AS started;
SELECT mig_pause('h22_team');
COMMIT;
SELECT mig_cancel('h22_team');
SELECT mig_reset('h22_team');
SELECT mig_define('h22_team', 'h22_t', 'UPDATE h22_t SET n = n + 1 WHERE id BETWEEN $1 AND $2 AND secret IS NULL', 4)
	= (SELECT id FROM migrations WHERE name = 'h22_team') AS same_id;
CALL mig_run('h22_team');
SELECT status, processed, batches FROM migrations WHERE name = 'h22_team';
RESET ROLE;
-- a superuser may do everything
BEGIN;
SELECT mig_start('h22_carol') > 0 AS started;
SELECT mig_pause('h22_carol');
COMMIT;
SELECT mig_cancel('h22_carol');
SELECT mig_reset('h22_carol');
SELECT status FROM migrations WHERE name = 'h22_carol';
-- application-driven migrations belong to the role that started them
SET ROLE regress_mr_alice;
SELECT mig_start('h22_app') > 0 AS started;
RESET ROLE;
SELECT owner, status FROM migrations WHERE name = 'h22_app';
SET ROLE regress_mr_bob;
SELECT mig_update_progress(id, 5) FROM migrations WHERE name = 'h22_app';
SELECT mig_complete(id) FROM migrations WHERE name = 'h22_app';
SELECT mig_fail(id, 'bob was here') FROM migrations WHERE name = 'h22_app';
SELECT mig_cancel('h22_app');
SELECT mig_start('h22_app');
RESET ROLE;
SELECT status, processed, error FROM migrations WHERE name = 'h22_app';
SET ROLE regress_mr_alice;
SELECT mig_update_progress(id, 5) FROM migrations WHERE name = 'h22_app';
SELECT mig_fail(id, 'alice failed it') FROM migrations WHERE name = 'h22_app';
SELECT mig_start('h22_app') > 0 AS restarted;
SELECT mig_update_progress(id, 7) FROM migrations WHERE name = 'h22_app';
SELECT mig_complete(id) FROM migrations WHERE name = 'h22_app';
RESET ROLE;
SELECT status, processed, error FROM migrations WHERE name = 'h22_app';
-- mig_status shows the action only to roles with the owner's privileges
UPDATE h22_t SET secret = 'do not show';
SET ROLE regress_mr_bob;
SELECT name, owner, kind, action FROM mig_status WHERE name LIKE 'h22\_%' ORDER BY id;
SET ROLE regress_mr_dave;
SELECT name, owner, kind, action FROM mig_status WHERE name LIKE 'h22\_%' ORDER BY id;
RESET ROLE;
SELECT name, owner, kind, action FROM mig_status WHERE name LIKE 'h22\_%' ORDER BY id;
-- clean up (a superuser may write the catalog)
DELETE FROM migrations WHERE name LIKE 'h22\_%';
DROP TABLE h22_t, h22_colpriv;
DROP ROLE regress_mr_alice, regress_mr_bob, regress_mr_carol, regress_mr_dave, regress_mr_team;
