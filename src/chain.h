/*-------------------------------------------------------------------------
 *
 * chain.h
 *	  continue_from and after (chain.c), for mig_define (define.c), the
 *	  starts (seed.c, mig_run.c), the run's setup (run.c) and the launcher.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATION_RUNNER_CHAIN_H
#define MIGRATION_RUNNER_CHAIN_H

#include "utils/array.h"

#include "migration_runner.h"

/* mig_define: before the row is inserted, and after */
extern void mr_chain_read_options(Migration *m, const char *continue_from,
								  ArrayType *after);
extern void mr_chain_defined(Migration *m);

/* starting and running */
extern void mr_chain_check_not_continued(Migration *m);
extern bool mr_chain_is_waiting(Migration *m);
extern void mr_chain_require_ready(Migration *m);
extern bool mr_chain_ready_to_run(Migration *m);
extern char *mr_chain_ready_condition(const char *alias);

#endif							/* MIGRATION_RUNNER_CHAIN_H */
