/*-------------------------------------------------------------------------
 *
 * keys.c
 *	  Keys of a managed migration: Datums inside a run, canonical text in
 *	  the catalog.
 *
 * The cursor, the high-water mark and the bounds in the history are kept as
 * text[], one element per key column, so that people can read them.  The
 * text form of many types depends on session settings (DateStyle and
 * TimeZone for dates and timestamps, extra_float_digits for floats,
 * IntervalStyle, bytea_output), and the process that writes a cursor is
 * often not the one that reads it back: a CALL mig_run under DateStyle =
 * 'SQL, DMY' paused and resumed by the worker would read 05/01 as May 1st
 * and skip or repeat rows.  So keys are always written and read under one
 * fixed set of settings, whatever the session has, and key types whose text
 * form depends on anything else are refused at define time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "compat.h"
#include "migration_runner.h"
#include "run_internal.h"

PG_FUNCTION_INFO_V1(mr_canonical_keys);

/* the settings keys are written and read under */
static const struct
{
	const char *name;
	const char *value;
}			canonical_settings[] =
{
	{"DateStyle", "ISO, MDY"},
	{"IntervalStyle", "postgres"},
	{"TimeZone", "UTC"},
	{"extra_float_digits", "3"},
	{"bytea_output", "hex"},
};

/* switch to the canonical settings until leave_canonical(returned level) */
static int
enter_canonical(void)
{
	int			nestlevel = NewGUCNestLevel();
	int			i;

	for (i = 0; i < lengthof(canonical_settings); i++)
		(void) set_config_option(canonical_settings[i].name,
								 canonical_settings[i].value,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
	return nestlevel;
}

static void
leave_canonical(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}

/*
 * The key types whose text form the canonical settings fix (follow = true:
 * it depends on one of them) or that depend on no setting at all.
 */
typedef struct StorableKeyType
{
	Oid			type;
	bool		follows_settings;
} StorableKeyType;

static const StorableKeyType storable_key_types[] =
{
	{BOOLOID, false}, {CHAROID, false}, {NAMEOID, false}, {INT2OID, false},
	{INT4OID, false}, {INT8OID, false}, {OIDOID, false}, {NUMERICOID, false},
	{TEXTOID, false}, {VARCHAROID, false}, {BPCHAROID, false},
	{UUIDOID, false}, {INETOID, false}, {CIDROID, false},
	{MACADDROID, false}, {MACADDR8OID, false}, {BITOID, false},
	{VARBITOID, false}, {PG_LSNOID, false},
	{FLOAT4OID, true}, {FLOAT8OID, true}, {BYTEAOID, true}, {DATEOID, true},
	{TIMEOID, true}, {TIMETZOID, true}, {TIMESTAMPOID, true},
	{TIMESTAMPTZOID, true}, {INTERVALOID, true},
};

static const StorableKeyType storable_enum = {InvalidOid, false};

/*
 * How keys of a type are stored: its entry, looking through domains and
 * arrays, or NULL if its text form may depend on anything else (money,
 * whose form follows lc_monetary, and types of other extensions, whose
 * output may follow any setting).
 */
static const StorableKeyType *
storable_key_type(Oid typid)
{
	Oid			base = getBaseType(typid);
	Oid			elem = get_element_type(base);
	int			i;

	if (OidIsValid(elem))
		return storable_key_type(elem);
	if (type_is_enum(base))
		return &storable_enum;
	for (i = 0; i < lengthof(storable_key_types); i++)
		if (storable_key_types[i].type == base)
			return &storable_key_types[i];
	return NULL;
}

/*
 * Why keys of this type cannot be stored exactly as canonical text, or NULL
 * if they can.
 */
const char *
mr_key_type_problem(Oid typid)
{
	if (storable_key_type(typid) != NULL)
		return NULL;
	if (getBaseType(typid) == MONEYOID)
		return "its text form depends on lc_monetary";
	return "its text form may depend on session settings, so a cursor "
		"written by one process could be read differently by another";
}

/*
 * Refuse a migration whose key could be read back as another value: at
 * define time, and at run start for migrations defined by 1.0.
 */
void
mr_check_key_types(Migration *m)
{
	int			i;

	for (i = 0; i < m->nkeys; i++)
	{
		const char *problem = mr_key_type_problem(m->key_types[i]);

		if (problem != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("key column \"%s\" of type %s cannot be used as a migration key",
							m->key_names[i], format_type_be(m->key_types[i])),
					 errdetail("The cursor is stored as text, and %s.", problem),
					 errhint("Use a key of another type, such as bigint, text, uuid or timestamptz.")));
	}
}

void
mr_setup_key_io(MigrationRun *run)
{
	Migration  *m = run->m;
	int			i;

	run->canonical_io = false;
	for (i = 0; i < m->nkeys; i++)
	{
		Oid			output;
		bool		isvarlena;

		getTypeInputInfo(m->key_types[i], &run->key_input[i], &run->key_ioparam[i]);
		getTypeOutputInfo(m->key_types[i], &output, &isvarlena);
		fmgr_info_cxt(output, &run->key_output[i], run->runcxt);
		get_typlenbyval(m->key_types[i], &run->key_typlen[i], &run->key_typbyval[i]);
		/* keys of types that follow no setting skip the canonical switch */
		run->canonical_io |= storable_key_type(m->key_types[i])->follows_settings;
	}
}

/* a key from its canonical text, in the run's memory */
void
mr_key_from_text(MigrationRun *run, char **text, Datum *key)
{
	mr_key_from_text_in(run, text, key, run->runcxt);
}

/* the same, allocating in cxt */
void
mr_key_from_text_in(MigrationRun *run, char **text, Datum *key,
					MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	int			nestlevel = run->canonical_io ? enter_canonical() : 0;
	int			i;

	for (i = 0; i < run->m->nkeys; i++)
		key[i] = OidInputFunctionCall(run->key_input[i], text[i],
									  run->key_ioparam[i], -1);
	if (run->canonical_io)
		leave_canonical(nestlevel);
	MemoryContextSwitchTo(old);
}

/* the canonical text of a key, in the current memory context */
char	  **
mr_key_to_text(MigrationRun *run, Datum *key)
{
	char	  **text = palloc(sizeof(char *) * run->m->nkeys);
	int			nestlevel = run->canonical_io ? enter_canonical() : 0;
	int			i;

	for (i = 0; i < run->m->nkeys; i++)
		text[i] = OutputFunctionCall(&run->key_output[i], key[i]);
	if (run->canonical_io)
		leave_canonical(nestlevel);
	return text;
}

/* a key already in text form as a text[] Datum, as the catalog keeps it */
Datum
mr_text_key_array(MigrationRun *run, char **text)
{
	Datum	   *elems = palloc(sizeof(Datum) * run->m->nkeys);
	int			i;

	for (i = 0; i < run->m->nkeys; i++)
		elems[i] = CStringGetTextDatum(text[i]);
	return PointerGetDatum(construct_array(elems, run->m->nkeys, TEXTOID, -1,
										   false, TYPALIGN_INT));
}

/* copy a key out of an SPI tuple into memory context cxt */
void
mr_key_from_tuple(MigrationRun *run, HeapTuple tuple, TupleDesc desc,
				  Datum *key, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	int			i;
	bool		isnull;

	for (i = 0; i < run->m->nkeys; i++)
		key[i] = datumCopy(SPI_getbinval(tuple, desc, i + 1, &isnull),
						   run->key_typbyval[i], run->key_typlen[i]);
	MemoryContextSwitchTo(old);
}

/*
 * Move the cursor in memory to key.  The cursor has a context of its own,
 * emptied at every move, so that keys passed by reference (text, numeric,
 * uuid) do not pile up over a run of millions of batches.
 */
void
mr_move_cursor(MigrationRun *run, Datum *key)
{
	MemoryContext old;
	int			i;

	MemoryContextReset(run->cursorcxt);
	old = MemoryContextSwitchTo(run->cursorcxt);
	for (i = 0; i < run->m->nkeys; i++)
		run->cursor[i] = datumCopy(key[i], run->key_typbyval[i],
								   run->key_typlen[i]);
	MemoryContextSwitchTo(old);
	run->has_cursor = true;
}

/*
 * A text[] literal of n strings (NULL elements allowed), for error messages
 * and the history table.
 */
char *
mr_format_key(char **values, int n)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '(');
	for (i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, values[i] ? values[i] : "NULL");
	}
	appendStringInfoChar(&buf, ')');
	return buf.data;
}

/*
 * mr_canonical_keys(key text[], types regtype[]) returns text[]
 *
 * Used once, by the 1.0 -> 1.1 upgrade: 1.0 stored keys in the text form of
 * whichever session wrote them.  Read each element with the settings of the
 * session running the upgrade, the server's defaults, which the 1.0 worker
 * wrote with too, and write it in canonical form.
 */
Datum
mr_canonical_keys(PG_FUNCTION_ARGS)
{
	Datum	   *elems;
	bool	   *nulls;
	Datum	   *types;
	int			n,
				ntypes,
				nestlevel,
				i;
	Datum	   *values;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, &n);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), REGTYPEOID, sizeof(Oid), true,
					  TYPALIGN_INT, &types, NULL, &ntypes);
	if (n != ntypes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key has %d elements but %d types", n, ntypes)));
	values = palloc(sizeof(Datum) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		Oid			input,
					ioparam;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("key must not contain NULL")));
		getTypeInputInfo(DatumGetObjectId(types[i]), &input, &ioparam);
		values[i] = OidInputFunctionCall(input, TextDatumGetCString(elems[i]),
										 ioparam, -1);
	}
	nestlevel = enter_canonical();
	for (i = 0; i < n; i++)
	{
		Oid			output;
		bool		isvarlena;

		getTypeOutputInfo(DatumGetObjectId(types[i]), &output, &isvarlena);
		elems[i] = CStringGetTextDatum(OidOutputFunctionCall(output, values[i]));
	}
	leave_canonical(nestlevel);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, TEXTOID, -1, false,
										  TYPALIGN_INT));
}
