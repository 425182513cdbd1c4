-- add_user_timestamps_v1: the seed's example migration as a managed
-- migration.  It backfills users.created_at and users.updated_at from
-- inserted_at, 100 rows per batch, in primary-key order; the background
-- worker runs the batches once the migration is started.
--
--   psql -d mydb -f examples/add_user_timestamps_v1.sql
--   psql -d mydb -c "SELECT mig_start('add_user_timestamps_v1')"
--   psql -d mydb -c "SELECT * FROM mig_status"
--
-- The batch size can be overridden with psql -v batch_size=1000.
-- scripts/demo.sh runs this file against a generated users table:
--   CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL,
--                       inserted_at timestamptz NOT NULL,
--                       created_at timestamptz, updated_at timestamptz);

\if :{?batch_size}
\else
\set batch_size 100
\endif

SELECT mig_define(
  name       => 'add_user_timestamps_v1',
  relation   => 'users',
  action     => $$UPDATE users SET created_at = inserted_at, updated_at = inserted_at
                   WHERE id BETWEEN $1 AND $2 AND created_at IS NULL$$,
  batch_size => :batch_size);
