/*-------------------------------------------------------------------------
 *
 * migration_runner.c
 *	  Module entry point: defines the GUCs and, when the library is in
 *	  shared_preload_libraries, the shared state, the cluster launcher and
 *	  the hook on the commands that need a database free of workers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "compat.h"
#include "migration_runner.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	mr_define_gucs();

	/*
	 * Loaded in a session only (no preload): the SQL functions and CALL
	 * mig_run work, the background worker does not exist.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	/* pg_upgrade starts the server with the library loaded: stay idle */
	if (IsBinaryUpgrade)
		return;

	mr_shmem_init();
	mr_register_launcher();
	mr_install_utility_hook();
}
