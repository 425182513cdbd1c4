--
-- 024_dropped_owner: a migration's owner is a regrole, not a dependency, so
-- DROP ROLE succeeds while the role still owns migrations.  What is left:
-- nobody but a superuser may touch them, and a run fails cleanly with a
-- message naming the cause (the launcher marks such a migration failed with
-- the same message).  OIDs are masked in the output.
--
CREATE ROLE regress_mr_gone;
CREATE ROLE regress_mr_other;
CREATE TABLE h24_t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO h24_t (id) SELECT generate_series(1, 5);
GRANT SELECT, UPDATE ON h24_t TO regress_mr_gone;
SET ROLE regress_mr_gone;
SELECT mig_define('h24_managed', 'h24_t', 'UPDATE h24_t SET n = n + 1 WHERE id BETWEEN $1 AND $2', 2) > 0 AS defined;
SELECT mig_start('h24_app') > 0 AS started;
RESET ROLE;
REVOKE ALL ON h24_t FROM regress_mr_gone;
DROP ROLE regress_mr_gone;
SELECT name, status, (SELECT rolname FROM pg_roles r WHERE r.oid = m.owner) AS owner_role
  FROM migrations m WHERE name LIKE 'h24\_%' ORDER BY id;
SELECT name, owner::text ~ '^[0-9]+$' AS owner_shown_as_oid FROM mig_status WHERE name LIKE 'h24\_%' ORDER BY id;
-- another role may do nothing with them
SET ROLE regress_mr_other;
SELECT mig_start('h24_managed');
SELECT mig_cancel('h24_managed');
CALL mig_run('h24_managed');
SELECT mig_update_progress(id, 1) FROM migrations WHERE name = 'h24_app';
SELECT mig_complete(id) FROM migrations WHERE name = 'h24_app';
RESET ROLE;
-- a superuser's run fails at once, before any batch, saying why (the
-- migration is never left running here: the launcher would race for it)
\set VERBOSITY terse
CALL mig_run('h24_managed');
\set VERBOSITY default
SELECT status, regexp_replace(error, '[0-9]{4,}', 'N') AS error, processed, batches
  FROM migrations WHERE name = 'h24_managed';
SELECT sum(n) AS rows_changed FROM h24_t;
-- a superuser may still cancel, reset and clear them up
SELECT mig_cancel('h24_managed');
SELECT mig_reset('h24_managed');
SELECT mig_fail(id, 'owner left') FROM migrations WHERE name = 'h24_app';
SELECT name, status, error FROM migrations WHERE name LIKE 'h24\_%' ORDER BY id;
DELETE FROM migrations WHERE name LIKE 'h24\_%';
DROP TABLE h24_t;
DROP ROLE regress_mr_other;
