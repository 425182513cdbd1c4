/*-------------------------------------------------------------------------
 *
 * define.h
 *	  Between the files of mig_define: define.c (arguments, options, the
 *	  catalog row and redefinition), key_index.c (the keyset key), action.c
 *	  (the analysis of the action) and action_checks.c (what the analyzed
 *	  action writes and how it uses the key).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MIGRATION_RUNNER_DEFINE_H
#define MIGRATION_RUNNER_DEFINE_H

#include "utils/array.h"

#include "migration_runner.h"

/* key_index.c */
extern void mr_resolve_key(Oid relid, ArrayType *columns, Migration *m);

/* action.c */
extern char *mr_check_action(Migration *m);
extern char *mr_action_tree_or_null(Migration *m);

/* action_checks.c: on the analyzed, rewritten statement (Query list) */
extern void mr_check_action_writes(Migration *m, List *queries);
extern Oid	mr_write_target(List *queries);
extern void mr_warn_column_comparisons(Migration *m, List *queries);
extern char *mr_relation_for_message(Oid relid);

#endif							/* MIGRATION_RUNNER_DEFINE_H */
