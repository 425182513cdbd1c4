--
-- 090_citus_api: the Citus side of the SQL API on a server without Citus.
-- mig_define records no distribution for a local table; the functions a
-- coordinator's per-shard run calls on the nodes refuse to run without
-- Citus, without their arguments, inside a transaction block, or for a
-- migration that does not run a shard.  (Per-shard runs themselves are
-- tested on a real Citus cluster: test/t/citus_*.pl.)
--
CREATE TABLE c90 (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO c90 (id) SELECT g FROM generate_series(1, 10) g;
SELECT mig_define('c90', 'c90', 'UPDATE c90 SET n = n + 1 WHERE id BETWEEN $1 AND $2') > 0 AS defined;
SELECT distribution, distribution_column, colocation_id, per_shard, citus_run,
	   coordinator_id, shard_id, placement_id
  FROM migrations WHERE name = 'c90';

-- the GUCs
SHOW migration_runner.citus_shards;
SHOW migration_runner.node_wait_limit;
SET migration_runner.citus_shards = off;
SELECT mig_define('c90_off', 'c90', 'UPDATE c90 SET n = n + 1 WHERE id BETWEEN $1 AND $2') > 0 AS defined;
SELECT per_shard FROM migrations WHERE name = 'c90_off';
RESET migration_runner.citus_shards;

-- mig_shard_prepare needs Citus, and its arguments
SELECT mig_shard_prepare(1, 1, 102008, 1, 'public.c90',
						 'UPDATE c90 SET n = n + 1 WHERE id BETWEEN $1 AND $2',
						 '{id}', 100, 'public', NULL);
SELECT mig_shard_prepare(NULL, 1, 102008, 1, 'public.c90', 'x', '{id}', 100, 'public', NULL);

-- mig_shard_batch: only with CALL outside a transaction block, only for a
-- migration that runs a shard
SELECT id AS c90_id FROM migrations WHERE name = 'c90' \gset
CALL mig_shard_batch(:c90_id, 100, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CALL mig_shard_batch(NULL, 100, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CALL mig_shard_batch(-1, 100, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
BEGIN;
CALL mig_shard_batch(1, 100, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
ROLLBACK;

-- nothing changed
SELECT name, status, processed FROM migrations WHERE name LIKE 'c90%' ORDER BY name;
SELECT sum(n) FROM c90;
SELECT mig_drop('c90'), mig_drop('c90_off');
DROP TABLE c90;
