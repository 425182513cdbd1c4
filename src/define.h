/*-------------------------------------------------------------------------
 *
 * define.h
 *	  Between the files of mig_define: define.c (arguments, options, the
 *	  catalog row and redefinition), key_index.c (the keyset key), action.c
 *	  (the analysis of the action) and action_checks.c (what the analyzed
 *	  action writes and how it uses the key); also alter.c (mig_alter),
 *	  which validates the run options with define.c's rules.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATION_RUNNER_DEFINE_H
#define MIGRATION_RUNNER_DEFINE_H

#include "fmgr.h"
#include "utils/array.h"

#include "migration_runner.h"

/*
 * The argument positions of the run options in mig_define or mig_alter.
 * altering: mig_alter's NULL leaves an option as it is (mig_define's means
 * the GUC), which the errors' hints must say.
 */
typedef struct RunOptionArgs
{
	int			batch_size;
	int			parallel;
	int			batch_delay;
	int			lock_timeout;
	int			statement_timeout;
	int			max_retries;
	int			target_batch_time;
	bool		altering;
} RunOptionArgs;

/* define.c */
extern void mr_read_run_options(FunctionCallInfo fcinfo,
								const RunOptionArgs *args, Migration *m);
extern char *mr_next_version_name(const char *name);

/* citus_define.c */
extern void mr_citus_record_distribution(Migration *m);

/* key_index.c */
extern void mr_resolve_key(Oid relid, ArrayType *columns, Migration *m);

/* action.c */
extern char *mr_check_action(Migration *m);
extern char *mr_action_tree_or_null(Migration *m);
extern void mr_check_verify(Migration *m);
extern bool mr_verify_uses_keys(List *queries);

/* action_checks.c: on the analyzed, rewritten statement (Query list) */
extern void mr_check_action_writes(Migration *m, List *queries);
extern Oid	mr_write_target(List *queries);
extern void mr_warn_column_comparisons(Migration *m, List *queries);
extern char *mr_relation_for_message(Oid relid);

#endif							/* MIGRATION_RUNNER_DEFINE_H */
