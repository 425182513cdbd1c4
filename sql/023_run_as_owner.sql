--
-- 023_run_as_owner: the action runs as the migration's owner, whoever calls
-- mig_run, and cannot climb out of it; the extension's own SQL cannot be
-- captured through search_path.
--
CREATE ROLE regress_mr_eve;
CREATE ROLE regress_mr_frank;
GRANT CREATE ON DATABASE contrib_regression TO regress_mr_eve;
CREATE TABLE h23_t (id int PRIMARY KEY, who text, via text);
INSERT INTO h23_t (id) SELECT generate_series(1, 6);
GRANT SELECT, UPDATE ON h23_t TO regress_mr_eve;
CREATE TABLE h23_private (id int PRIMARY KEY, v text);
INSERT INTO h23_private VALUES (1, 'superuser only');
-- a superuser running eve's migration runs its action as eve
SET ROLE regress_mr_eve;
SELECT mig_define('h23_who', 'h23_t',
	$$UPDATE h23_t SET who = current_user, via = session_user WHERE id BETWEEN $1 AND $2$$, 4) > 0 AS defined;
RESET ROLE;
SELECT current_user = session_user AS superuser_session;
CALL mig_run('h23_who');
SELECT status, processed FROM migrations WHERE name = 'h23_who';
SELECT who, via = session_user AS via_session_user, count(*) FROM h23_t GROUP BY 1, 2;
-- the caller's role is back after the run
SELECT current_user = session_user AS back_to_superuser;
-- so eve's action cannot read what eve cannot read, even when a superuser
-- runs it: mig_define refuses it at once ...
SET ROLE regress_mr_eve;
SELECT mig_define('h23_read', 'h23_t',
	$$UPDATE h23_t SET via = (SELECT v FROM h23_private WHERE id = 1) WHERE id BETWEEN $1 AND $2$$, 4) > 0 AS defined;
RESET ROLE;
-- ... and when eve loses the right after defining it, the batch fails
GRANT SELECT ON h23_private TO regress_mr_eve;
SET ROLE regress_mr_eve;
SELECT mig_define('h23_read', 'h23_t',
	$$UPDATE h23_t SET via = (SELECT v FROM h23_private WHERE id = 1) WHERE id BETWEEN $1 AND $2$$, 4) > 0 AS defined;
RESET ROLE;
REVOKE SELECT ON h23_private FROM regress_mr_eve;
CALL mig_run('h23_read');
SELECT count(*) FILTER (WHERE via = 'superuser only') AS leaked FROM h23_t;
--
-- Escalation attempts inside the action: each fails the migration, and the
-- session and eve stay what they were.
--
SET ROLE regress_mr_eve;
CREATE SCHEMA regress_mr_eve_s;
CREATE FUNCTION regress_mr_eve_s.alter_role(a int, b int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN ALTER ROLE regress_mr_eve SUPERUSER; RETURN 0; END $$;
CREATE FUNCTION regress_mr_eve_s.set_role(a int, b int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN SET ROLE NONE; RETURN 0; END $$;
CREATE FUNCTION regress_mr_eve_s.reset_role(a int, b int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN RESET ROLE; RETURN 0; END $$;
CREATE FUNCTION regress_mr_eve_s.set_config_role(a int, b int) RETURNS text LANGUAGE sql AS $$
SELECT set_config('role', 'regress_mr_frank', false) $$;
CREATE FUNCTION regress_mr_eve_s.session_auth(a int, b int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN SET SESSION AUTHORIZATION DEFAULT; RETURN 0; END $$;
-- a SECURITY DEFINER function of eve's only ever runs as eve
CREATE FUNCTION regress_mr_eve_s.definer(a int, b int) RETURNS int LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
	UPDATE public.h23_t SET who = current_user || ' (definer)' WHERE id BETWEEN a AND b;
	ALTER ROLE regress_mr_eve SUPERUSER;
	RETURN 0;
END $$;
-- the action tries to rewrite somebody else's definition in the catalog
CREATE FUNCTION regress_mr_eve_s.catalog(a int, b int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN UPDATE migrations SET action = 'SELECT $1, $2' WHERE name = 'h23_other'; RETURN 0; END $$;
-- ... or to grant itself what it lacks
CREATE FUNCTION regress_mr_eve_s.grant_self(a int, b int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN GRANT SELECT ON h23_private TO regress_mr_eve; RETURN 0; END $$;
SELECT mig_define('h23_esc_' || f, 'h23_t', format('SELECT regress_mr_eve_s.%I($1, $2)', f)) > 0 AS defined, f
  FROM unnest('{alter_role,set_role,reset_role,set_config_role,session_auth,definer,catalog,grant_self}'::text[]) f;
RESET ROLE;
SELECT mig_define('h23_other', 'h23_t', 'UPDATE h23_t SET via = ''untouched'' WHERE id BETWEEN $1 AND $2') > 0 AS defined;
CALL mig_run('h23_esc_alter_role');
CALL mig_run('h23_esc_set_role');
CALL mig_run('h23_esc_reset_role');
CALL mig_run('h23_esc_set_config_role');
CALL mig_run('h23_esc_session_auth');
CALL mig_run('h23_esc_definer');
CALL mig_run('h23_esc_catalog');
CALL mig_run('h23_esc_grant_self');
SELECT name, status, processed, batches FROM migrations WHERE name LIKE 'h23\_esc\_%' ORDER BY id;
SELECT current_user = session_user AS still_superuser, current_setting('role') AS role;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_mr_eve';
SELECT has_table_privilege('regress_mr_eve', 'h23_private', 'SELECT') AS eve_reads_private;
SELECT action FROM migrations WHERE name = 'h23_other';
SELECT who, count(*) FROM h23_t GROUP BY who;
-- the same escalation from eve's own session fails the same way
SET ROLE regress_mr_eve;
SELECT mig_reset('h23_esc_alter_role');
CALL mig_run('h23_esc_alter_role');
RESET ROLE;
--
-- search_path: a role that puts its own functions and operators in front of
-- pg_catalog captures its own queries, but never the extension's SQL.
--
SET ROLE regress_mr_eve;
CREATE SCHEMA regress_mr_trap;
CREATE FUNCTION regress_mr_trap.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'trap: now() called as %', current_user; RETURN '2000-01-01'; END $$;
CREATE FUNCTION regress_mr_trap.sign(bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'trap: sign() called as %', current_user; RETURN 1; END $$;
CREATE FUNCTION regress_mr_trap.sign(integer) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'trap: sign() called as %', current_user; RETURN 1; END $$;
CREATE FUNCTION regress_mr_trap.int8eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'trap: bigint = called as %', current_user; RETURN true; END $$;
CREATE OPERATOR regress_mr_trap.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = regress_mr_trap.int8eq);
CREATE FUNCTION regress_mr_trap.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'trap: text = called as %', current_user; RETURN true; END $$;
CREATE OPERATOR regress_mr_trap.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_mr_trap.texteq);
CREATE FUNCTION regress_mr_trap.int8pl(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'trap: bigint + called as %', current_user; RETURN 0; END $$;
CREATE OPERATOR regress_mr_trap.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = regress_mr_trap.int8pl);
GRANT USAGE ON SCHEMA regress_mr_trap TO PUBLIC;
SET search_path = regress_mr_trap, pg_catalog, public;
-- the trap is armed for eve's own queries
SELECT now() = '2000-01-01' AS trapped_now, 1::bigint = 2::bigint AS trapped_eq;
-- application-driven: every function writes the catalog untrapped
SELECT mig_start('h23_trap_app') > 0 AS started;
SELECT mig_update_progress(id, 3) FROM public.migrations WHERE name OPERATOR(pg_catalog.=) 'h23_trap_app';
SELECT mig_update_progress(id, 4) FROM public.migrations WHERE name OPERATOR(pg_catalog.=) 'h23_trap_app';
SELECT processed, started_at OPERATOR(pg_catalog.>) '2001-01-01' AS real_now FROM public.migrations WHERE name OPERATOR(pg_catalog.=) 'h23_trap_app';
SELECT mig_fail(id, 'failed once') FROM public.migrations WHERE name OPERATOR(pg_catalog.=) 'h23_trap_app';
SELECT mig_start('h23_trap_app') > 0 AS restarted;
SELECT mig_complete(id) FROM public.migrations WHERE name OPERATOR(pg_catalog.=) 'h23_trap_app';
SELECT mig_has_run('h23_trap_app');
-- managed: define, state changes and a run, with the trap on the path that
-- the action runs with
SELECT mig_define('h23_trap_m', 'public.h23_t',
	'UPDATE public.h23_t SET via = ''run'' WHERE id BETWEEN $1 AND $2', 4) > 0 AS defined;
SELECT search_path FROM public.migrations WHERE name OPERATOR(pg_catalog.=) 'h23_trap_m';
BEGIN;
SELECT mig_start('h23_trap_m') > 0 AS started;
SELECT mig_pause('h23_trap_m');
SELECT mig_resume('h23_trap_m');
SELECT mig_pause('h23_trap_m');
COMMIT;
SELECT mig_cancel('h23_trap_m');
SELECT mig_reset('h23_trap_m');
CALL mig_run('h23_trap_m');
RESET ROLE;
-- a superuser with the same path runs it again without touching the trap
SET search_path = regress_mr_trap, pg_catalog, public;
SELECT mig_reset('h23_trap_m');
CALL mig_run('h23_trap_m');
RESET search_path;
SELECT name, status, processed, batches, error,
	   started_at > '2001-01-01' AS real_started_at,
	   completed_at > '2001-01-01' AS real_completed_at
  FROM migrations WHERE name LIKE 'h23\_trap\_%' ORDER BY id;
SELECT batch, keys, rows, started_at > '2001-01-01' AS real_time FROM migration_batches
 WHERE migration_id = (SELECT id FROM migrations WHERE name = 'h23_trap_m') ORDER BY batch;
-- clean up: the catalog rows go first, so that no migration is left with a
-- dropped owner (024 tests that case)
DELETE FROM migrations WHERE name LIKE 'h23\_%';
SET client_min_messages = warning;
DROP SCHEMA regress_mr_trap CASCADE;
DROP SCHEMA regress_mr_eve_s CASCADE;
RESET client_min_messages;
DROP TABLE h23_t, h23_private;
REVOKE CREATE ON DATABASE contrib_regression FROM regress_mr_eve;
DROP ROLE regress_mr_eve, regress_mr_frank;
