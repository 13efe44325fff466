/*-------------------------------------------------------------------------
 *
 * pg_sink.c
 *	  The Postgres table sink (see pg_sink.h).
 *
 * Statements are prepared once and kept (SPI_keepplan) and run inside the
 * worker's open epoch transaction.  Result rows (windows, matches) are
 * batched: a batch is one statement over arrays, INSERT ... SELECT FROM
 * unnest($1, ..., $n), which costs a fraction of a statement per row.  The
 * worker flushes the batches at the end of each of its transactions
 * (sink_flush), so a checkpoint never leaves a row behind.  A row upserted
 * twice within one batch (a window's late firing) is kept once, the
 * latest: DISTINCT ON with the table's own equality, as its unique index
 * has.
 *
 * A row the sink refuses for a reason of its own data (a key too long for
 * the unique index, a user's CHECK constraint or trigger, a value out of a
 * domain's range) must not stop the pipeline: it would fail again at every
 * replay.  So each batch statement runs in a subtransaction (one per
 * statement, not per row); if it fails with such an error, its rows are
 * written again one at a time, each in its own subtransaction, and the
 * refused ones go to the side output as dead letters, with the row as JSON
 * (see sink_error_is_data).  Any other error (a dropped table, a lost
 * privilege) is no fault of a row and is raised as before.
 *
 * Statements on the user's tables run as the pipeline's owner (run_as.h).
 *
 * Inserts.  An operator writes SINK_INSERT for a row it has never written (a
 * window firing for the first time): most rows of a windowed pipeline.  A
 * batch of only such rows is written with a plain INSERT from the arrays,
 * without DISTINCT ON and ON CONFLICT (their sort and the check of the
 * unique index before each row: 40% of the upsert's cost with keys in order,
 * 18% with a window's keys in the scattered order they fire in, where the
 * index descent dominates, test/bench/sink_insert.sh).  The table ends as
 * the upsert would leave it: the rows' keys are distinct (the operator's
 * promise; a NULL key, which a NULLS DISTINCT index would not catch, sends
 * the batch to the upsert), so DISTINCT ON has nothing to drop; and if a row
 * with one of the keys is there already (the user's, an earlier pipeline's,
 * a rewound run's) or the INSERT fails for any row's reason, its
 * subtransaction is rolled back and the batch is written as any other:
 * upserted, refused rows and all.  What an upsert does beyond an insert even
 * when nothing conflicts is kept by writing the upsert whenever the table
 * has any of it: row-level security (its UPDATE and SELECT policies),
 * statement-level UPDATE triggers (which ON CONFLICT DO UPDATE fires), a
 * view, a foreign table or partition (which refuses ON CONFLICT DO UPDATE);
 * the upsert's privileges (UPDATE, SELECT of the key columns) are checked on
 * the upsert's own plan, whose revalidation also raises the upsert's error
 * if its unique index is gone.  The answer is kept until an invalidation
 * that may change it (see sink_invalidations): a trigger created, row-level
 * security enabled, a GRANT or REVOKE, a partition attached, while the
 * pipeline runs, sends the next batch to the upsert.  After a fallback
 * the next batches of the output are upserted directly for a while
 * (doubling up to SINK_INSERT_BACKOFF_MAX batches), so a table already full
 * of the rows costs little more than before.  Rows inserted are not in the order
 * DISTINCT ON sorts them to, which no query sees without ORDER BY.
 *
 * COPY.  Such a batch is written by COPY FROM, fed from memory in COPY's
 * binary format, where COPY does what the INSERT would (copy_checks: the
 * table has no rule, and each column has the row's type, without a type
 * modifier): COPY inserts rows in groups, a page at a time, where the
 * INSERT inserts them one by one.  It fires the same triggers, evaluates
 * the same defaults and checks the same constraints; its failure is the
 * INSERT's (the upsert follows).  A batch COPY writes holds up to
 * SINK_COPY_ROWS rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "pgstat.h"
#include "port/pg_bswap.h"
#include "utils/memutils.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "pg_sink.h"
#include "run_as.h"

/* Rows a batch holds before it is written. */
#define SINK_BATCH_ROWS 1000

/*
 * The same for a batch of new rows that COPY writes: each COPY makes and
 * drops a slot for every row it buffers (up to 1000), which in batches of
 * 1000 rows was 7% of a windowed pipeline's CPU at 100k keys (perf).
 */
#define SINK_COPY_ROWS 10000

/* Batches upserted directly, at most, after an insert had to fall back. */
#define SINK_INSERT_BACKOFF_MAX 64

typedef struct PgSink PgSink;

/*
 * Rows for one INSERT statement, written together.  'plan' takes one array
 * per column; 'row_plan' one row, for a batch of one and for columns whose
 * type has no array type (then every row goes alone).
 */
typedef struct RowBatch
{
	PgSink	   *sink;			/* for dead letters */
	int			ncols;
	char	  **names;			/* column names, for a refused row's JSON */
	Oid		   *types;
	int16	   *typlen;
	bool	   *typbyval;
	char	   *typalign;
	SPIPlanPtr	plan;			/* NULL: rows go one by one */
	SPIPlanPtr	row_plan;
	SPIPlanPtr	insert_plan;	/* plain INSERT over arrays, for a batch of
								 * only new rows; NULL if plan is, or the rows
								 * have no key (then plan is one) */
	Oid			relid;			/* the table, for insert_plan's checks */
	int			nident;
	bool		all_insert;		/* every row of the batch is SINK_INSERT */
	int			insert_skip;	/* batches to upsert before trying
								 * insert_plan again */
	int			insert_backoff; /* the next insert_skip after a fallback */
	uint64		insert_checked; /* sink_invalidations when insert_ok was
								 * found; 0: never */
	bool		insert_ok;		/* insert_is_upsert's answer then */
	bool		copy_ok;		/* and whether COPY may write the batch */
	FmgrInfo   *send;			/* each type's send function; NULL if one
								 * has none or no receive function */
	List	   *copy_cols;		/* the column names, for COPY */
	SPIPlanPtr	json_plan;		/* a row as JSON text; made when needed */
	MemoryContext cxt;			/* the rows; reset by each write */
	int			n;
	int			cap;			/* rows values and nulls hold */
	Datum	   *values;			/* cap x ncols */
	bool	   *nulls;
	Datum	   *args;			/* ncols */
	char	   *argnulls;
} RowBatch;

struct PgSink
{
	Sink		sink;			/* first: a PgSink is a Sink */
	SideOutput *side;			/* refused rows */
	List	   *outputs;		/* every SinkOutput, to flush */
};

/*
 * One table.  Inserts and upserts are batched; a retraction writes the
 * batch first (the row it removes may be in it), then runs alone.
 */
struct SinkOutput
{
	RowBatch   *batch;
	int			nkeys;
	SPIPlanPtr	retract;		/* NULL if nkeys is 0 */
	Datum	   *args;			/* nkeys, for retract */
	char	   *argnulls;
};

/*
 * insert_is_upsert's answers hold until an invalidation that may change
 * them: the relcache invalidation of a sink table or of one of its
 * partitions (CREATE TRIGGER, ALTER TABLE, GRANT and REVOKE on it, a
 * partition attached or detached: all change its pg_class row or send one),
 * or a change of a role or of a role's memberships (the owner's
 * privileges, as acl.c's own caches watch them).  The callbacks only count
 * them: they stay registered for the life of the process, and a batch that
 * found its answer at another count finds it again.  They touch no sink,
 * which may be gone by then.
 */
static uint64 sink_invalidations = 1;
static HTAB *sink_watched_rels = NULL;	/* the tables insert_is_upsert read */

static void
sink_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) ||
		hash_search(sink_watched_rels, &relid, HASH_FIND, NULL) != NULL)
		sink_invalidations++;
}

static void
sink_role_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	sink_invalidations++;
}

static void
sink_watch_rel(Oid relid)
{
	(void) hash_search(sink_watched_rels, &relid, HASH_ENTER, NULL);
}

/* Once a process. */
static void
sink_register_callbacks(void)
{
	HASHCTL		ctl;

	if (sink_watched_rels != NULL)
		return;
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(Oid);
	ctl.hcxt = TopMemoryContext;
	sink_watched_rels = hash_create("streamflink sink tables", 16, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(sink_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, sink_role_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, sink_role_callback, (Datum) 0);
}

/*
 * SPI calls return in SPI's procedure context; callers of the sink keep
 * their own (per-message) context, so restore it.
 */
static SPIPlanPtr
prepare(const char *sql, int nargs, Oid *argtypes)
{
	MemoryContext cxt = CurrentMemoryContext;
	RunAs		as;
	SPIPlanPtr	plan;

	run_as_owner(&as);
	plan = SPI_prepare(sql, nargs, argtypes);
	run_as_restore(&as);

	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep plan");
	MemoryContextSwitchTo(cxt);
	return plan;
}

/*
 * Run a statement on a user's table (sink, timed-out table) as the
 * pipeline's owner, so that its triggers, defaults, constraints and
 * privilege checks are the owner's.
 */
static void
run(SPIPlanPtr plan, Datum *args, const char *nulls, int expected)
{
	MemoryContext cxt = CurrentMemoryContext;
	RunAs		as;
	int			ret;

	run_as_owner(&as);
	ret = SPI_execute_plan(plan, args, nulls, false, 0);
	run_as_restore(&as);
	MemoryContextSwitchTo(cxt);
	if (ret != expected)
		elog(ERROR, "sink statement failed: %s", SPI_result_code_string(ret));
}

/*
 * What COPY needs to write a batch of new rows: each column's send function
 * (COPY's binary format is what they write and receive functions read) and
 * the column names.  A type with no send or no receive function leaves
 * b->send NULL: the batch is then written by insert_plan.
 */
static void
copy_setup(RowBatch *b)
{
	FmgrInfo   *send = palloc(sizeof(FmgrInfo) * b->ncols);

	for (int c = 0; c < b->ncols; c++)
	{
		int16		typlen;
		bool		typbyval;
		char		typalign;
		char		typdelim;
		Oid			typioparam;
		Oid			sendfn;
		Oid			recvfn;

		get_type_io_data(b->types[c], IOFunc_send, &typlen, &typbyval, &typalign,
						 &typdelim, &typioparam, &sendfn);
		get_type_io_data(b->types[c], IOFunc_receive, &typlen, &typbyval, &typalign,
						 &typdelim, &typioparam, &recvfn);
		if (!OidIsValid(sendfn) || !OidIsValid(recvfn))
		{
			pfree(send);
			return;
		}
		fmgr_info(sendfn, &send[c]);
	}
	for (int c = 0; c < b->ncols; c++)
		b->copy_cols = lappend(b->copy_cols, makeString(b->names[c]));
	b->send = send;
}

/*
 * A batch of rows for "<head> <rows> <tail>": head is "INSERT INTO t (cols)",
 * tail what follows the rows (ON CONFLICT ...).  With nident > 0, the first
 * nident columns identify a row, and of rows with equal identities in one
 * batch only the last is written.
 */
static RowBatch *
batch_create(PgSink *sink, Oid relid, const char *head, const char *tail,
			 int ncols, const char *const *names_in, const Oid *types, int nident,
			 bool batchable)
{
	RowBatch   *b = palloc0(sizeof(RowBatch));
	Oid		   *arraytypes = palloc(sizeof(Oid) * ncols);
	StringInfoData params,
				arrays,
				names,
				ident;

	b->sink = sink;
	b->relid = relid;
	b->nident = nident;
	b->insert_backoff = 1;
	b->ncols = ncols;
	b->names = palloc(sizeof(char *) * ncols);
	for (int i = 0; i < ncols; i++)
		b->names[i] = pstrdup(names_in[i]);
	b->types = palloc(sizeof(Oid) * ncols);
	memcpy(b->types, types, sizeof(Oid) * ncols);
	b->typlen = palloc(sizeof(int16) * ncols);
	b->typbyval = palloc(sizeof(bool) * ncols);
	b->typalign = palloc(sizeof(char) * ncols);
	b->args = palloc(sizeof(Datum) * ncols);
	b->argnulls = palloc(ncols);

	initStringInfo(&params);
	initStringInfo(&arrays);
	initStringInfo(&names);
	initStringInfo(&ident);
	for (int i = 0; i < ncols; i++)
	{
		get_typlenbyvalalign(types[i], &b->typlen[i], &b->typbyval[i], &b->typalign[i]);
		arraytypes[i] = get_array_type(types[i]);

		/*
		 * unnest() of several arrays expands an array of a composite type
		 * into the composite's fields, not one column: such rows go one by
		 * one, as those of a type with no array type.
		 */
		if (!OidIsValid(arraytypes[i]) || type_is_rowtype(types[i]))
			batchable = false;
		appendStringInfo(&params, "%s$%d", i ? ", " : "", i + 1);
		appendStringInfo(&names, "%sc%d", i ? ", " : "", i + 1);
		if (i < nident)
			appendStringInfo(&ident, "c%d, ", i + 1);
	}

	b->row_plan = prepare(psprintf("%s VALUES (%s) %s", head, params.data, tail),
						  ncols, b->types);
	if (batchable)
	{
		if (nident > 0)
			appendStringInfo(&arrays,
							 "SELECT %s FROM (SELECT DISTINCT ON (%s) * "
							 "FROM unnest(%s) WITH ORDINALITY AS u(%s, ord) "
							 "ORDER BY %sord DESC) d",
							 names.data, pnstrdup(ident.data, ident.len - 2),
							 params.data, names.data, ident.data);
		else
			appendStringInfo(&arrays, "SELECT * FROM unnest(%s)", params.data);
		b->plan = prepare(psprintf("%s %s %s", head, arrays.data, tail),
						  ncols, arraytypes);
		if (nident > 0)
		{
			b->insert_plan = prepare(psprintf("%s SELECT * FROM unnest(%s)",
											  head, params.data),
									 ncols, arraytypes);
			copy_setup(b);
		}
	}

	/*
	 * Rows are kept until written even when they go one by one: a failed
	 * statement's rows are then still there to be retried.
	 */
	b->cxt = AllocSetContextCreate(CurrentMemoryContext, "streamflink sink batch",
								   ALLOCSET_DEFAULT_SIZES);
	b->cap = SINK_BATCH_ROWS;
	b->values = palloc(sizeof(Datum) * b->cap * ncols);
	b->nulls = palloc(sizeof(bool) * b->cap * ncols);
	return b;
}

/*
 * Errors that are a row's own fault: data exceptions (class 22), integrity
 * violations (class 23: the sink's or a user's constraints, or a trigger
 * raising one), and a value too large for the sink (54000, e.g. a key
 * longer than a btree entry may be).  A trigger refusing a row with a
 * plain RAISE (P0001) is not one of them: it could as well be a bug, so it
 * stops the pipeline, which shows the error; a trigger that means to
 * refuse rows raises an integrity or data error.
 */
static bool
sink_error_is_data(int sqlerrcode)
{
	return ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_DATA_EXCEPTION ||
		ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION ||
		sqlerrcode == ERRCODE_PROGRAM_LIMIT_EXCEEDED;
}

/* Row r of the batch as the arguments of row_plan. */
static void
row_args(RowBatch *b, int r)
{
	for (int c = 0; c < b->ncols; c++)
		b->argnulls[c] = b->nulls[r * b->ncols + c] ? 'n' : ' ';
}

/* Rows from..n-1 of the batch, each its own statement. */
static void
write_rows(RowBatch *b, int from)
{
	for (int r = from; r < b->n; r++)
	{
		row_args(b, r);
		run(b->row_plan, &b->values[r * b->ncols], b->argnulls, SPI_OK_INSERT);
	}
}

/*
 * The whole batch: one statement over arrays ('plan': b->plan or
 * b->insert_plan), or row by row if it cannot.
 */
static void
write_batch(RowBatch *b, SPIPlanPtr plan)
{
	Datum	   *colvals;
	bool	   *colnulls;
	int			dims[1] = {b->n};
	int			lbs[1] = {1};
	MemoryContext old;

	if (plan == NULL || (b->n == 1 && plan == b->plan))
	{
		write_rows(b, 0);
		return;
	}
	colvals = palloc(sizeof(Datum) * b->n);
	colnulls = palloc(sizeof(bool) * b->n);
	old = MemoryContextSwitchTo(b->cxt);
	for (int c = 0; c < b->ncols; c++)
	{
		for (int r = 0; r < b->n; r++)
		{
			colvals[r] = b->values[r * b->ncols + c];
			colnulls[r] = b->nulls[r * b->ncols + c];
		}
		b->args[c] = PointerGetDatum(construct_md_array(colvals, colnulls, 1, dims, lbs,
														b->types[c], b->typlen[c],
														b->typbyval[c], b->typalign[c]));
		b->argnulls[c] = ' ';
	}
	MemoryContextSwitchTo(old);
	run(plan, b->args, b->argnulls, SPI_OK_INSERT);
	pfree(colvals);
	pfree(colnulls);
}

/*
 * COPY's source while copy_batch runs: COPY's data callback takes no
 * argument of its own.
 */
static StringInfo copy_data = NULL;
static int	copy_data_pos;

static int
copy_read(void *outbuf, int minread, int maxread)
{
	int			n = Min(maxread, copy_data->len - copy_data_pos);

	memcpy(outbuf, copy_data->data + copy_data_pos, n);
	copy_data_pos += n;
	return n;
}

static void
append_int16(StringInfo buf, int16 v)
{
	uint16		n = pg_hton16((uint16) v);

	appendBinaryStringInfo(buf, (char *) &n, sizeof(n));
}

static void
append_int32(StringInfo buf, int32 v)
{
	uint32		n = pg_hton32((uint32) v);

	appendBinaryStringInfo(buf, (char *) &n, sizeof(n));
}

/*
 * The batch's new rows by COPY FROM, as DoCopy runs it for a client's COPY
 * ... (FORMAT binary) with the column list: the rows in COPY's binary
 * format, each value written by its type's send function, read by COPY
 * from memory.  COPY writes the rows in groups (heap_multi_insert: one WAL
 * record and one buffer lock a page, not a row), which is why it costs
 * less than INSERT ... SELECT FROM unnest; it fires the same triggers,
 * evaluates the same defaults and checks the same constraints as the
 * INSERT would, and routes rows to partitions.  Privileges are checked as
 * DoCopy checks them, as the owner.  b->copy_ok says the INSERT would do
 * nothing else (copy_checks).  Runs in b->cxt, which the batch's write
 * resets, so a COPY that fails leaves nothing behind.
 */
static void
copy_batch(RowBatch *b)
{
	MemoryContext cxt = CurrentMemoryContext;
	StringInfoData data;
	RunAs		as;
	Relation	rel;
	ParseState *pstate;
	RangeTblEntry *rte;
	List	   *attnums;
	ListCell   *lc;
	CopyFromState cstate;

	MemoryContextSwitchTo(b->cxt);
	initStringInfo(&data);
	appendBinaryStringInfo(&data, "PGCOPY\n\377\r\n\0", 11);
	append_int32(&data, 0);		/* flags */
	append_int32(&data, 0);		/* header extension */
	for (int r = 0; r < b->n; r++)
	{
		append_int16(&data, (int16) b->ncols);
		for (int c = 0; c < b->ncols; c++)
		{
			int			i = r * b->ncols + c;
			bytea	   *v;

			if (b->nulls[i])
			{
				append_int32(&data, -1);
				continue;
			}
			v = SendFunctionCall(&b->send[c], b->values[i]);
			append_int32(&data, VARSIZE(v) - VARHDRSZ);
			appendBinaryStringInfo(&data, VARDATA(v), VARSIZE(v) - VARHDRSZ);
			pfree(v);
		}
	}
	append_int16(&data, -1);	/* the end */

	run_as_owner(&as);
	rel = table_open(b->relid, RowExclusiveLock);
	pstate = make_parsestate(NULL);
	rte = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL,
										false, false)->p_rte;
	rte->requiredPerms = ACL_INSERT;
	attnums = CopyGetAttnums(RelationGetDescr(rel), rel, b->copy_cols);
	foreach(lc, attnums)
		rte->insertedCols = bms_add_member(rte->insertedCols,
										   lfirst_int(lc) - FirstLowInvalidHeapAttributeNumber);
	ExecCheckRTPerms(pstate->p_rtable, true);

	/* a statement of its own, as SPI runs each */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	copy_data = &data;
	copy_data_pos = 0;
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_read, b->copy_cols,
						   list_make1(makeDefElem("format",
												  (Node *) makeString("binary"), -1)));
	(void) CopyFrom(cstate);
	EndCopyFrom(cstate);
	copy_data = NULL;
	PopActiveSnapshot();
	CommandCounterIncrement();

	table_close(rel, NoLock);
	run_as_restore(&as);
	MemoryContextSwitchTo(cxt);
}

/*
 * Run copy_batch (copy), write_batch with 'plan' (row < 0) or the one row
 * 'row' in a subtransaction.  Returns NULL on success; on failure, the subtransaction
 * is rolled back and the error is returned if it is a row's fault, else
 * raised again.
 */
static ErrorData *
try_write(RowBatch *b, int row, SPIPlanPtr plan, bool copy)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		if (copy)
			copy_batch(b);
		else if (row < 0)
			write_batch(b, plan);
		else
		{
			row_args(b, row);
			run(b->row_plan, &b->values[row * b->ncols], b->argnulls, SPI_OK_INSERT);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		/* (only a top-level abort ends the COPY's progress report) */
		if (copy)
			pgstat_progress_end_command();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (!sink_error_is_data(edata->sqlerrcode))
			ReThrowError(edata);
	}
	PG_END_TRY();
	return edata;
}

/* A refused row to the dead-letter table: the row as JSON, and the error. */
static void
dead_letter_row(RowBatch *b, int row, ErrorData *edata)
{
	PgSink	   *sink = b->sink;
	Datum		json;
	bool		isnull;
	char	   *rowjson;
	char	   *error;

	if (b->json_plan == NULL)
	{
		StringInfoData sql;

		initStringInfo(&sql);
		appendStringInfoString(&sql, "SELECT to_jsonb(r)::text FROM (SELECT ");
		for (int c = 0; c < b->ncols; c++)
			appendStringInfo(&sql, "%s$%d AS %s", c ? ", " : "", c + 1,
							 quote_identifier(b->names[c]));
		appendStringInfoString(&sql, ") r");
		b->json_plan = prepare(sql.data, b->ncols, b->types);
	}
	row_args(b, row);
	run(b->json_plan, &b->values[row * b->ncols], b->argnulls, SPI_OK_SELECT);
	json = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	rowjson = isnull ? NULL : TextDatumGetCString(json);
	/* not the detail: it may name the tuple's place, which means nothing */
	error = psprintf("sink refused the row: %s", edata->message);
	side_output_dead_letter_row(sink->side, rowjson, rowjson ? strlen(rowjson) : 0, error);
}

/*
 * Whether COPY writes a batch of new rows as insert_plan would: COPY does
 * not apply the table's rules, which INSERT does, and it reads each value
 * with the column's receive function, so a column whose type differs from
 * the row's (INSERT's assignment cast), has a type modifier (the cast that
 * applies it) or is generated or an identity column (which INSERT refuses
 * a value for) leaves the batch to insert_plan.
 */
static bool
copy_checks(RowBatch *b, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (b->send == NULL || rel->rd_rules != NULL)
		return false;
	for (int c = 0; c < b->ncols; c++)
	{
		AttrNumber	attnum = attnameAttNum(rel, b->names[c], false);
		Form_pg_attribute att;

		if (attnum <= 0)
			return false;
		att = TupleDescAttr(desc, attnum - 1);
		if (att->atttypid != b->types[c] || att->atttypmod >= 0 ||
			att->attgenerated != '\0' || att->attidentity == ATTRIBUTE_IDENTITY_ALWAYS)
			return false;
	}
	return true;
}

/*
 * insert_is_upsert's checks, on the table 'rel'.  The tables they read are
 * watched for invalidations from now on.
 */
static bool
insert_checks(RowBatch *b, Relation rel)
{
	char		relkind = rel->rd_rel->relkind;
	bool		ok;
	RunAs		as;
	CachedPlan *cplan;
	MemoryContext cxt = CurrentMemoryContext;

	b->copy_ok = false;
	sink_watch_rel(b->relid);
	ok = (relkind == RELKIND_RELATION || relkind == RELKIND_PARTITIONED_TABLE) &&
		!(rel->trigdesc &&
		  (rel->trigdesc->trig_update_before_statement ||
		   rel->trigdesc->trig_update_after_statement));
	if (ok && relkind == RELKIND_PARTITIONED_TABLE)
	{
		List	   *parts = find_all_inheritors(b->relid, NoLock, NULL);
		ListCell   *lc;

		foreach(lc, parts)
		{
			sink_watch_rel(lfirst_oid(lc));
			if (get_rel_relkind(lfirst_oid(lc)) == RELKIND_FOREIGN_TABLE)
				ok = false;
		}
		list_free(parts);
	}
	if (!ok)
		return false;

	run_as_owner(&as);
	ok = check_enable_rls(b->relid, InvalidOid, true) == RLS_NONE;
	if (ok)
	{
		/* the upsert's plan, revalidated as its execution would */
		cplan = SPI_plan_get_cached_plan(b->plan);
		if (cplan == NULL)
			ok = false;
		else
		{
			ListCell   *lc;

			foreach(lc, cplan->stmt_list)
				if (!ExecCheckRTPerms(lfirst_node(PlannedStmt, lc)->rtable, false))
					ok = false;
			ReleaseCachedPlan(cplan, CurrentResourceOwner);
		}
	}
	run_as_restore(&as);
	MemoryContextSwitchTo(cxt);
	b->copy_ok = ok && copy_checks(b, rel);
	return ok;
}

/*
 * Whether a batch of new rows may be written with insert_plan: the upsert
 * would do nothing more (see the head comment).  Anything unusual says no,
 * and the upsert then does what it always did, errors included.  The
 * answer is kept until an invalidation says it may have changed
 * (sink_invalidations).
 */
static bool
insert_is_upsert(RowBatch *b)
{
	Relation	rel;
	uint64		invalidations;

	if (b->insert_skip > 0)
	{
		b->insert_skip--;
		return false;
	}

	/*
	 * The lock the INSERT takes anyway; taking it first in a transaction
	 * takes in the invalidations other sessions committed.
	 */
	rel = try_table_open(b->relid, RowExclusiveLock);
	if (rel == NULL)
		return false;
	if (b->insert_checked != sink_invalidations)
	{
		/* one arriving during the checks makes them run again next time */
		invalidations = sink_invalidations;
		b->insert_ok = insert_checks(b, rel);
		b->insert_checked = invalidations;
	}
	table_close(rel, NoLock);
	return b->insert_ok;
}

static void
batch_write(RowBatch *b)
{
	ErrorData  *edata;

	if (b->n == 0)
		return;

	/* New rows: a plain INSERT, unless it fails (then as any batch). */
	if (b->all_insert && b->insert_plan != NULL && insert_is_upsert(b))
	{
		edata = try_write(b, -1, b->insert_plan, b->copy_ok);
		if (edata == NULL)
		{
			b->insert_backoff = 1;
			b->n = 0;
			MemoryContextReset(b->cxt);
			return;
		}
		FreeErrorData(edata);
		b->insert_skip = b->insert_backoff;
		b->insert_backoff = Min(b->insert_backoff * 2, SINK_INSERT_BACKOFF_MAX);
	}

	/*
	 * The common case is one statement (in one subtransaction); only when it
	 * fails are the rows tried one by one, to find the refused ones.
	 */
	edata = try_write(b, -1, b->plan, false);
	if (edata != NULL)
	{
		FreeErrorData(edata);
		for (int r = 0; r < b->n; r++)
		{
			edata = try_write(b, r, NULL, false);
			if (edata != NULL)
			{
				dead_letter_row(b, r, edata);
				FreeErrorData(edata);
			}
		}
	}
	b->n = 0;
	MemoryContextReset(b->cxt);
}

/*
 * Add a row (copied); the batch is written when full.  'insert': the row is
 * new (SINK_INSERT).
 */
static void
batch_add(RowBatch *b, Datum *values, bool *nulls, bool insert)
{
	MemoryContext old;

	if (b->n == 0)
		b->all_insert = true;
	if (!insert)
		b->all_insert = false;
	for (int c = 0; c < b->nident && b->all_insert; c++)
		if (nulls[c])
			b->all_insert = false;

	old = MemoryContextSwitchTo(b->cxt);
	for (int c = 0; c < b->ncols; c++)
	{
		int			i = b->n * b->ncols + c;

		b->nulls[i] = nulls[c];
		b->values[i] = nulls[c] ? (Datum) 0 :
			datumCopy(values[c], b->typbyval[c], b->typlen[c]);
	}
	MemoryContextSwitchTo(old);
	if (++b->n >= SINK_BATCH_ROWS)
	{
		/*
		 * A batch that COPY will write, by insert_is_upsert's last answer,
		 * grows to SINK_COPY_ROWS.
		 */
		if (b->all_insert && b->copy_ok && b->insert_skip == 0 && b->n < SINK_COPY_ROWS)
		{
			if (b->n == b->cap)
			{
				b->cap = SINK_COPY_ROWS;
				b->values = repalloc(b->values, sizeof(Datum) * b->cap * b->ncols);
				b->nulls = repalloc(b->nulls, sizeof(bool) * b->cap * b->ncols);
			}
		}
		else
			batch_write(b);
	}
}

/*
 * The table's name for our statements.  The OID comes from the catalog and
 * the table may have been dropped since (catalog_check_pipeline tells the
 * worker first; this is the last line).
 */
static char *
qualified_relname(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname = relname ? get_namespace_name(get_rel_namespace(relid)) : NULL;

	if (relname == NULL || nspname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %u written by the pipeline no longer exists", relid)));
	return quote_qualified_identifier(nspname, relname);
}

/*
 * What a key column of the table says: NOT NULL (then a retraction
 * compares it with =, which its unique index can use; else IS NOT
 * DISTINCT FROM, as the index's NULLS NOT DISTINCT) and whether its
 * collation is its type's default (else a batch, which keeps one row per
 * key with the type's default collation, could count as two keys what the
 * unique index counts as one: such outputs go row by row).
 */
static void
key_column(Oid relid, const char *name, Oid type, bool *notnull, bool *default_collation)
{
	HeapTuple	tup = SearchSysCacheAttName(relid, name);

	*notnull = false;
	*default_collation = true;
	if (!HeapTupleIsValid(tup))
		return;					/* the INSERT will say */
	*notnull = ((Form_pg_attribute) GETSTRUCT(tup))->attnotnull;
	*default_collation =
		((Form_pg_attribute) GETSTRUCT(tup))->attcollation == get_typcollation(type);
	ReleaseSysCache(tup);
}

static SinkOutput *
pg_open_output(Sink *s, const SinkRowDesc *desc)
{
	PgSink	   *sink = (PgSink *) s;
	SinkOutput *out = palloc0(sizeof(SinkOutput));
	char	   *relname = qualified_relname(desc->relid);
	bool		batchable = true;
	StringInfoData cols,
				keys,
				updates,
				where;

	initStringInfo(&cols);
	initStringInfo(&keys);
	initStringInfo(&updates);
	initStringInfo(&where);
	for (int i = 0; i < desc->ncols; i++)
	{
		const char *name = quote_identifier(desc->colnames[i]);

		if (i < desc->nkeys)
		{
			bool		notnull;
			bool		default_collation;

			key_column(desc->relid, desc->colnames[i], desc->coltypes[i],
					   &notnull, &default_collation);
			if (!default_collation)
				batchable = false;
			appendStringInfo(&keys, "%s%s", i ? ", " : "", name);
			appendStringInfo(&where, "%s%s %s $%d", i ? " AND " : "", name,
							 notnull ? "=" : "IS NOT DISTINCT FROM", i + 1);
		}
		else
			appendStringInfo(&updates, "%s%s = EXCLUDED.%s",
							 updates.len ? ", " : "", name, name);
		appendStringInfo(&cols, "%s%s", i ? ", " : "", name);
	}

	out->nkeys = desc->nkeys;
	out->batch = batch_create(sink, desc->relid,
							  psprintf("INSERT INTO %s (%s)", relname, cols.data),
							  desc->nkeys == 0 ? "" :
							  updates.len == 0 ?
							  psprintf("ON CONFLICT (%s) DO NOTHING", keys.data) :
							  psprintf("ON CONFLICT (%s) DO UPDATE SET %s",
									   keys.data, updates.data),
							  desc->ncols, desc->colnames, desc->coltypes,
							  desc->nkeys, batchable);
	if (desc->nkeys > 0)
	{
		out->retract = prepare(psprintf("DELETE FROM %s WHERE %s", relname, where.data),
							   desc->nkeys, (Oid *) desc->coltypes);
		out->args = palloc(sizeof(Datum) * desc->nkeys);
		out->argnulls = palloc(desc->nkeys);
	}
	sink->outputs = lappend(sink->outputs, out);
	return out;
}

static void
pg_write(Sink *s, SinkOutput *out, SinkOp op, Datum *values, bool *nulls)
{
	switch (op)
	{
		case SINK_INSERT:
			break;
		case SINK_UPSERT:
			if (out->nkeys == 0)
				elog(ERROR, "upsert into a sink output without key columns");
			break;
		case SINK_RETRACT:
			if (out->nkeys == 0)
				elog(ERROR, "retraction from a sink output without key columns");
			/* The row to remove may still be in the batch. */
			batch_write(out->batch);
			for (int i = 0; i < out->nkeys; i++)
			{
				out->args[i] = values[i];
				out->argnulls[i] = nulls[i] ? 'n' : ' ';
			}
			run(out->retract, out->args, out->argnulls, SPI_OK_DELETE);
			s->rows_written++;
			return;
	}
	batch_add(out->batch, values, nulls, op == SINK_INSERT);
	s->rows_written++;
}

static void
pg_flush(Sink *s)
{
	ListCell   *lc;

	foreach(lc, ((PgSink *) s)->outputs)
		batch_write(((SinkOutput *) lfirst(lc))->batch);
}

static void
pg_begin_epoch(Sink *s, int64 epoch)
{
	/* The rows go into the worker's epoch transaction: nothing to open. */
}

/*
 * Phase 1: the rows still batched join the epoch transaction, which the
 * checkpoint then prepares.  The worker flushes at the end of each of its
 * transactions, so there is usually nothing left.
 */
static void
pg_prepare(Sink *s, int64 epoch)
{
	ListCell   *lc;
	bool		batched = false;

	foreach(lc, ((PgSink *) s)->outputs)
		if (((SinkOutput *) lfirst(lc))->batch->n > 0)
			batched = true;
	if (!batched)
		return;
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pg_flush(s);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

static void
pg_commit(Sink *s, int64 epoch)
{
	/* COMMIT PREPARED of the epoch transaction made the rows visible. */
}

/* Rows still batched belong to the abandoned epoch. */
static void
pg_abort(Sink *s, int64 epoch)
{
	ListCell   *lc;

	foreach(lc, ((PgSink *) s)->outputs)
	{
		RowBatch   *b = ((SinkOutput *) lfirst(lc))->batch;

		b->n = 0;
		MemoryContextReset(b->cxt);
	}
}

static void
pg_recover(Sink *s, int64 last_completed)
{
	/* The epoch transaction's recovery resolves the prepared rows. */
}

/*
 * Free the statements kept for the sink, dropping rows still batched (the
 * replay harness makes a sink per incarnation; a worker keeps its one).
 * The sink's own memory belongs to the caller's context.
 */
static void
pg_destroy(Sink *s)
{
	PgSink	   *sink = (PgSink *) s;
	ListCell   *lc;

	foreach(lc, sink->outputs)
	{
		SinkOutput *out = (SinkOutput *) lfirst(lc);
		RowBatch   *b = out->batch;

		if (b->plan)
			SPI_freeplan(b->plan);
		if (b->insert_plan)
			SPI_freeplan(b->insert_plan);
		SPI_freeplan(b->row_plan);
		if (b->json_plan)
			SPI_freeplan(b->json_plan);
		if (b->cxt)
			MemoryContextDelete(b->cxt);
		b->cxt = NULL;
		b->n = 0;
		if (out->retract)
			SPI_freeplan(out->retract);
		out->retract = NULL;
	}
	list_free(sink->outputs);
	sink->outputs = NIL;
}

static const SinkMethods pg_sink_methods = {
	.open_output = pg_open_output,
	.begin_epoch = pg_begin_epoch,
	.write = pg_write,
	.flush = pg_flush,
	.prepare = pg_prepare,
	.commit = pg_commit,
	.abort = pg_abort,
	.recover = pg_recover,
	.destroy = pg_destroy
};

Sink *
pg_sink_create(SideOutput *side)
{
	PgSink	   *sink = palloc0(sizeof(PgSink));

	sink->sink.methods = &pg_sink_methods;
	sink->side = side;
	sink_register_callbacks();
	return &sink->sink;
}
