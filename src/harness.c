/*-------------------------------------------------------------------------
 *
 * harness.c
 *	  Running a pipeline's operator in a backend over given payloads, for
 *	  tests (see harness.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "harness.h"
#include "run_as.h"
#include "state.h"

static int	harness_counter = 0;

void
harness_input(ArrayType *payloads, HarnessInput *in)
{
	Datum	   *vals;
	bool	   *nulls;
	int			n;

	deconstruct_array(payloads, TEXTOID, -1, false, TYPALIGN_INT, &vals, &nulls, &n);
	in->n = n;
	in->payloads = palloc(sizeof(char *) * Max(n, 1));
	in->lens = palloc(sizeof(int) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		in->payloads[i] = nulls[i] ? NULL : TextDatumGetCString(vals[i]);
		in->lens[i] = nulls[i] ? 0 : strlen(in->payloads[i]);
	}
}

PipelineDef *
harness_load_pipeline(const char *name, const char *what)
{
	PipelineDef *def;
	RunAs		as;

	run_as_extension(&as);
	def = catalog_load_pipeline(0, name);
	run_as_restore(&as);
	if (def == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("pipeline \"%s\" does not exist", name)));
	if (def->source.event_time_attno < 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s needs a source with an event-time column", what),
				 errdetail("Source \"%s\" takes event times from Kafka timestamps.",
						   def->source.name)));
	return def;
}

TupleDesc
harness_event_desc(PipelineDef *def)
{
	TypeCacheEntry *tce = lookup_type_cache(def->source.row_type, TYPECACHE_TUPDESC);

	return CreateTupleDescCopy(tce->tupDesc);
}

char *
harness_make_dir(void)
{
	char	   *tmp = psprintf("%s/base/%s", DataDir, PG_TEMP_FILES_DIR);
	char	   *dir;

	(void) MakePGDirectory(tmp);
	dir = psprintf("%s/%s%d.sfreplay.%d", tmp, PG_TEMP_FILE_PREFIX,
				   MyProcPid, harness_counter++);
	state_remove_dir(dir);
	if (MakePGDirectory(dir) < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", dir)));
	return dir;
}

char *
harness_decode(PipelineDef *def, Decoder *dec, TupleTableSlot *slot,
			   const char *payload, int len, TimestampTz *t)
{
	int			attno = def->source.event_time_attno;
	char	   *error = NULL;

	ExecClearTuple(slot);
	if (payload == NULL)
		return "message has no value";
	if (!decode_message(dec, payload, len, slot->tts_values, slot->tts_isnull, &error))
		return error;
	ExecStoreVirtualTuple(slot);
	if (slot->tts_isnull[attno])
		return "event time is NULL";
	if (TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(slot->tts_values[attno])))
		return "event time is not finite";
	*t = DatumGetTimestampTz(slot->tts_values[attno]);
	return NULL;
}

void
harness_run(PipelineDef *def, const char *dir,
			void (*body) (void *arg), void (*cleanup) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MemoryContextSwitchTo(cxt);

	/*
	 * As in the worker, the pipeline's code runs as its owner, and the
	 * extension's tables are written as the extension (run_as.h).
	 */
	run_as_set_owner(def->owner);
	PG_TRY();
	{
		RunAs		as;

		run_as_owner(&as);
		body(arg);
		run_as_restore(&as);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/*
		 * Roll back what the body began before the error goes up, as
		 * PL/pgSQL does, so the caller's transaction is in the state it
		 * expects.  RocksDB's files and threads are no transaction's: free
		 * them here.
		 */
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		cleanup(arg);
		state_remove_dir(dir);
		run_as_set_owner(InvalidOid);
		ReThrowError(edata);
	}
	PG_END_TRY();
	run_as_set_owner(InvalidOid);
	state_remove_dir(dir);
	SPI_finish();
	MemoryContextSwitchTo(cxt);
}
