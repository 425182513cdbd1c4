--
-- 007_wait: mig_wait returns at once for a migration that is completed,
-- failed or cancelled, and otherwise waits until one of those or the
-- timeout, returning the status it saw.  (Waking up on another session's
-- change is covered by the isolation and TAP tests.)
--
CREATE TABLE s07_items (id int PRIMARY KEY, d int NOT NULL DEFAULT 1);
INSERT INTO s07_items (id) SELECT g FROM generate_series(1, 10) g;

-- completed (managed and application-driven): at once, with or without timeout
SELECT mig_define('s07_done_v1', 's07_items',
  $$UPDATE s07_items SET d = d WHERE id BETWEEN $1 AND $2$$, batch_size => 4) > 0 AS defined;
CALL mig_run('s07_done_v1');
SELECT mig_wait('s07_done_v1') AS no_timeout,
	   mig_wait('s07_done_v1', '1 hour') AS long_timeout,
	   mig_wait('s07_done_v1', '0') AS zero_timeout,
	   mig_wait(name => 's07_done_v1', timeout => NULL) AS null_timeout;
SET client_min_messages = warning;
SELECT mig_start('s07_app_v1') AS id \gset s07_app_
RESET client_min_messages;
SELECT mig_complete(:s07_app_id);
SELECT mig_wait('s07_app_v1') AS app_completed;

-- failed and cancelled are final too
UPDATE s07_items SET d = 0 WHERE id = 6;
SELECT mig_define('s07_failed_v1', 's07_items',
  $$UPDATE s07_items SET d = 1 / d WHERE id BETWEEN $1 AND $2$$, batch_size => 4) > 0 AS defined;
CALL mig_run('s07_failed_v1');
SELECT mig_wait('s07_failed_v1') AS failed;
SELECT mig_define('s07_cancelled_v1', 's07_items',
  $$UPDATE s07_items SET d = d WHERE id BETWEEN $1 AND $2$$) > 0 AS defined;
SELECT mig_cancel('s07_cancelled_v1');
SELECT mig_wait('s07_cancelled_v1') AS cancelled;
SELECT mig_start('s07_app_v2') AS id \gset s07_app2_
SELECT mig_fail(:s07_app2_id, 'gave up');
SELECT mig_wait('s07_app_v2') AS app_failed;

-- pending, running and paused: the timeout ends the wait, and the status
-- seen then is returned
SELECT mig_define('s07_pending_v1', 's07_items',
  $$UPDATE s07_items SET d = d WHERE id BETWEEN $1 AND $2$$, batch_size => 5) > 0 AS defined;
SELECT clock_timestamp() AS t0 \gset
SELECT mig_wait('s07_pending_v1', '300 ms') AS pending;
SELECT clock_timestamp() - :'t0' >= interval '300 ms' AS waited_the_timeout,
	   clock_timestamp() - :'t0' < interval '60 s' AS and_not_forever;
SELECT mig_wait('s07_pending_v1', '0') AS pending_zero_timeout;

SELECT mig_start('s07_app_v3') AS id \gset s07_app3_
SELECT clock_timestamp() AS t0 \gset
SELECT mig_wait('s07_app_v3', '1.2 s') AS running;
SELECT clock_timestamp() - :'t0' >= interval '1.2 s' AS waited_past_the_safety_net;

-- paused (started and paused in one transaction, so no worker takes it)
BEGIN;
SELECT mig_start('s07_pending_v1') > 0 AS started;
SELECT mig_pause('s07_pending_v1');
COMMIT;
SELECT mig_wait('s07_pending_v1', '100 ms') AS paused;

-- a change made earlier in the waiting transaction is seen at once
BEGIN;
SELECT mig_cancel('s07_pending_v1');
SELECT mig_wait('s07_pending_v1') AS cancelled_in_this_transaction;
ROLLBACK;
SELECT status FROM migrations WHERE name = 's07_pending_v1';

-- errors: unknown name, NULL name, negative timeout, and a snapshot that
-- could never see the change
SELECT mig_wait('s07_no_such_migration');
SELECT mig_wait(NULL);
SELECT mig_wait('s07_pending_v1', '-1 s');
SELECT mig_wait('s07_pending_v1', '-300000 years');
-- a timeout too long to represent as a deadline is no timeout
SELECT mig_wait('s07_done_v1', '300000 years') AS very_long_timeout;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT mig_wait('s07_done_v1');
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT mig_wait('s07_done_v1', '1 s');
ROLLBACK;

-- clean up
SELECT mig_cancel('s07_pending_v1');
DELETE FROM migrations WHERE name LIKE 's07\_%';
DROP TABLE s07_items;
