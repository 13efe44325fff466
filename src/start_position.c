/*-------------------------------------------------------------------------
 *
 * start_position.c
 *	  Where a pipeline starts reading each partition (see start_position.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "start_position.h"

/* Broker requests while resolving wait at most this long. */
#define START_RESOLVE_TIMEOUT_MS 10000

PG_FUNCTION_INFO_V1(streamflink_start_position);

/* streamflink._start_position(spec text): canonical form, or an error. */
Datum
streamflink_start_position(PG_FUNCTION_ARGS)
{
	KsrcStartPosition sp;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("start position must not be NULL"),
				 errhint("Use 'earliest' (the default), 'latest', a timestamp, or offsets per partition.")));
	PG_RETURN_TEXT_P(cstring_to_text(ksrc_parse_start_position(text_to_cstring(PG_GETARG_TEXT_PP(0)),
															   &sp)));
}

static void
record_start_offset(PipelineDef *def, int32 partition, int64 offset,
					const char *spec, const char *how)
{
	Oid			argtypes[6] = {INT4OID, TEXTOID, INT4OID, INT8OID, TEXTOID, TEXTOID};
	Datum		args[6];

	args[0] = Int32GetDatum(def->id);
	args[1] = CStringGetTextDatum(def->source.topic);
	args[2] = Int32GetDatum(partition);
	args[3] = Int64GetDatum(offset);
	args[4] = CStringGetTextDatum(spec);
	args[5] = CStringGetTextDatum(how);
	if (SPI_execute_with_args("INSERT INTO streamflink.start_offset"
							  " (pipeline_id, topic, partition, start_offset, spec, how)"
							  " VALUES ($1, $2, $3, $4, $5, $6)"
							  " ON CONFLICT (pipeline_id, partition) DO UPDATE"
							  " SET start_offset = EXCLUDED.start_offset, spec = EXCLUDED.spec,"
							  "     how = EXCLUDED.how, resolved = now()",
							  6, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write streamflink.start_offset");
}

void
start_positions_apply(PipelineDef *def, KafkaSource *src, int64 checkpoint_id,
					  int nparts, const int32 *partitions, PartitionPosition *pos)
{
	KsrcStartPosition sp;
	const char *spec = def->source.start_position;
	int32	   *todo = palloc(sizeof(int32) * Max(nparts, 1));
	int		   *todo_index = palloc(sizeof(int) * Max(nparts, 1));
	int			ntodo = 0;
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];

	args[0] = Int32GetDatum(def->id);

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());

	/*
	 * Before the first checkpoint, offsets recorded from another start
	 * position (changed since with set_start_position) do not count.
	 */
	if (checkpoint_id == 0 &&
		SPI_execute_with_args("DELETE FROM streamflink.start_offset"
							  " WHERE pipeline_id = $1 AND spec <> $2",
							  2, (Oid[]) {INT4OID, TEXTOID},
							  (Datum[]) {args[0], CStringGetTextDatum(spec)},
							  NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not clear streamflink.start_offset");

	if (SPI_execute_with_args("SELECT partition, start_offset FROM streamflink.start_offset"
							  " WHERE pipeline_id = $1",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read streamflink.start_offset");

	for (int i = 0; i < nparts; i++)
	{
		if (pos[i].next_offset >= 0)
			continue;
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			int32		p = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r],
														SPI_tuptable->tupdesc, 1, &isnull));

			if (p == partitions[i])
				pos[i].next_offset = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
																 SPI_tuptable->tupdesc, 2,
																 &isnull));
		}
		if (pos[i].next_offset < 0)
		{
			todo[ntodo] = partitions[i];
			todo_index[ntodo++] = i;
		}
	}

	if (ntodo > 0)
	{
		int64	   *offsets = palloc(sizeof(int64) * ntodo);
		char	  **how = palloc0(sizeof(char *) * ntodo);
		char	   *err = NULL;

		/* After a checkpoint, a partition it does not cover is a new one. */
		if (checkpoint_id > 0)
			(void) ksrc_parse_start_position("earliest", &sp);
		else
			(void) ksrc_parse_start_position(spec, &sp);
		if (!ksrc_resolve_start_offsets(src, &sp, ntodo, todo, offsets, how,
										START_RESOLVE_TIMEOUT_MS, &err))
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("streamflink pipeline \"%s\": %s", def->name, err),
					 errhint("The start position is \"%s\"; see streamflink.set_start_position().", spec)));
		for (int t = 0; t < ntodo; t++)
		{
			const char *h = checkpoint_id > 0 ?
				psprintf("earliest (partition added after checkpoint " INT64_FORMAT ")", checkpoint_id) :
				how[t];

			record_start_offset(def, todo[t], offsets[t], checkpoint_id > 0 ? "earliest" : spec, h);
			pos[todo_index[t]].next_offset = offsets[t];
			ereport(LOG,
					(errmsg("streamflink pipeline \"%s\": partition %d of topic \"%s\" starts at offset " INT64_FORMAT " (%s)",
							def->name, todo[t], def->source.topic, offsets[t], h)));
		}
	}

	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

void
start_positions_added(PipelineDef *def, KafkaSource *src, int n,
					  const int32 *partitions, int64 *offsets)
{
	KsrcStartPosition sp;
	char	  **how = palloc0(sizeof(char *) * Max(n, 1));
	char	   *err = NULL;

	(void) ksrc_parse_start_position("earliest", &sp);
	if (!ksrc_resolve_start_offsets(src, &sp, n, partitions, offsets, how,
									START_RESOLVE_TIMEOUT_MS, &err))
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("streamflink pipeline \"%s\": new partitions: %s", def->name, err)));

	SPI_connect();
	for (int i = 0; i < n; i++)
	{
		record_start_offset(def, partitions[i], offsets[i], "earliest",
							"earliest (partition added while running)");
		ereport(LOG,
				(errmsg("streamflink pipeline \"%s\": partition %d added to topic \"%s\", read from offset " INT64_FORMAT,
						def->name, partitions[i], def->source.topic, offsets[i])));
	}
	SPI_finish();
}
