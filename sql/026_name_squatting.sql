--
-- 026_name_squatting: one role cannot make another role's application skip
-- its migration.  Any role may start a migration under a free name, so a
-- role can take the name an application will use and complete it at once.
-- mig_has_run counts a completed migration only for its owner and the roles
-- that have the owner's privileges through membership (not for a superuser
-- merely because it is one), and the application's mig_start fails loudly
-- with the name's owner and how to free it; a superuser frees it with
-- mig_drop.
--
CREATE ROLE regress_mr_app;					-- the application
CREATE ROLE regress_mr_deploy IN ROLE regress_mr_app;	-- acts for it
CREATE ROLE regress_mr_mallory;				-- takes names

-- ---------------------------------------------------------------------------
-- mallory completes the application's next migration before it runs
SET ROLE regress_mr_mallory;
SELECT mig_complete(mig_start('h26_data_fix_v3'));
-- for her, it has run
SELECT mig_has_run('h26_data_fix_v3') AS has_run_for_mallory;
RESET ROLE;

-- for the application it has not, so it goes on to start it, which fails
-- loudly instead of skipping the migration
SET ROLE regress_mr_app;
SELECT mig_has_run('h26_data_fix_v3') AS has_run_for_app;
SELECT mig_start('h26_data_fix_v3');
RESET ROLE;
SET ROLE regress_mr_deploy;
SELECT mig_has_run('h26_data_fix_v3') AS has_run_for_app_member;
RESET ROLE;

-- a superuser's application is not fooled either: a superuser may act on
-- every migration, but another role's completed one is not its own
SELECT mig_has_run('h26_data_fix_v3') AS has_run_for_superuser;
SELECT mig_start('h26_data_fix_v3');

-- a superuser removes it; the application then starts and completes its
-- own migration under the name, and owns it
SELECT mig_drop('h26_data_fix_v3');
SET ROLE regress_mr_app;
SELECT mig_has_run('h26_data_fix_v3') AS has_run_after_drop;
SELECT mig_start('h26_data_fix_v3') AS app_id \gset h26_
SELECT mig_complete(:h26_app_id);
SELECT mig_has_run('h26_data_fix_v3') AS has_run_for_app;
RESET ROLE;
SELECT name, status, owner FROM migrations WHERE name = 'h26_data_fix_v3';

-- its members see it as run; mallory, and a superuser that is not a member
-- of the application's role, do not
SET ROLE regress_mr_deploy;
SELECT mig_has_run('h26_data_fix_v3') AS has_run_for_app_member;
SET ROLE regress_mr_mallory;
SELECT mig_has_run('h26_data_fix_v3') AS has_run_for_mallory;
RESET ROLE;
SELECT mig_has_run('h26_data_fix_v3') AS has_run_for_superuser;
-- a superuser that is a member of the application's role acts as it
SELECT current_user AS h26_superuser \gset
GRANT regress_mr_app TO :"h26_superuser";
SELECT mig_has_run('h26_data_fix_v3') AS has_run_for_superuser_member;
REVOKE regress_mr_app FROM :"h26_superuser";

-- mallory can neither start, change nor remove the application's migration
SET ROLE regress_mr_mallory;
SELECT mig_start('h26_data_fix_v3');
SELECT mig_fail(:h26_app_id, 'mallory was here');
SELECT mig_drop('h26_data_fix_v3');
RESET ROLE;
SELECT name, status, owner, error FROM migrations WHERE name = 'h26_data_fix_v3';

-- ---------------------------------------------------------------------------
-- a name taken while its migration still runs: the application's start
-- names the owner (before this release it said "already running")
SET ROLE regress_mr_mallory;
SELECT mig_start('h26_backfill_v1') > 0 AS started;
RESET ROLE;
SET ROLE regress_mr_app;
SELECT mig_has_run('h26_backfill_v1') AS has_run_for_app;
SELECT mig_start('h26_backfill_v1');
RESET ROLE;

-- a managed migration is no different: mallory defines and runs one under
-- the name on her own table; the application's mig_define is refused too
CREATE TABLE h26_mallory_t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO h26_mallory_t (id) SELECT generate_series(1, 3);
GRANT SELECT, UPDATE ON h26_mallory_t TO regress_mr_mallory;
CREATE TABLE h26_app_t (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
GRANT SELECT, UPDATE ON h26_app_t TO regress_mr_app;
SET ROLE regress_mr_mallory;
SELECT mig_define('h26_users_v2', 'h26_mallory_t',
	'UPDATE h26_mallory_t SET n = n + 1 WHERE id BETWEEN $1 AND $2') > 0 AS defined;
CALL mig_run('h26_users_v2');
SELECT mig_has_run('h26_users_v2') AS has_run_for_mallory;
RESET ROLE;
SET ROLE regress_mr_app;
SELECT mig_has_run('h26_users_v2') AS has_run_for_app;
SELECT mig_define('h26_users_v2', 'h26_app_t',
	'UPDATE h26_app_t SET n = n + 1 WHERE id BETWEEN $1 AND $2');
SELECT mig_start('h26_users_v2');
RESET ROLE;

-- a migration whose owner was dropped: only a superuser can free the name
SET ROLE regress_mr_mallory;
SELECT mig_fail(mig_start('h26_orphan_v1'), 'left behind');
RESET ROLE;
SELECT mig_drop('h26_backfill_v1');		-- still running: refused
SELECT mig_cancel('h26_backfill_v1');
SELECT mig_drop('h26_backfill_v1');
SELECT mig_drop('h26_users_v2');
REVOKE ALL ON h26_mallory_t FROM regress_mr_mallory;
DROP ROLE regress_mr_mallory;
SET ROLE regress_mr_app;
SELECT mig_has_run('h26_orphan_v1') AS has_run_for_app;
SELECT mig_start('h26_orphan_v1');
RESET ROLE;
SELECT mig_drop('h26_orphan_v1');
SET ROLE regress_mr_app;
SELECT mig_start('h26_orphan_v1') > 0 AS started;
RESET ROLE;
SELECT name, status, owner FROM migrations WHERE name LIKE 'h26\_%' ORDER BY name;

-- clean up
DELETE FROM migrations WHERE name LIKE 'h26\_%';
DROP TABLE h26_mallory_t, h26_app_t;
DROP ROLE regress_mr_deploy, regress_mr_app;
