/*-------------------------------------------------------------------------
 *
 * exchange.c
 *	  The channels between the tasks of a parallel pipeline (see
 *	  exchange.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "exchange.h"

#define EXCHANGE_MAGIC 0x53464c58	/* "SFLX" */
#define KEY_CONTROL 1
#define KEY_QUEUE(s, d, n) (100 + (uint64) (s) * (n) + (d))

/* streamflink.exchange_queue_size (kB) and exchange_batch_size (kB) */
static int	queue_size_kb = 1024;
static int	batch_size_kb = 32;

typedef struct Output
{
	shm_mq_handle *mqh;			/* NULL for the task itself */
	StringInfoData filling;		/* records not yet handed to the queue */
	StringInfoData sending;		/* the batch shm_mq_send is sending */
	pg_atomic_uint64 *sent;		/* bytes of this channel fully sent */
} Output;

typedef struct Input
{
	shm_mq_handle *mqh;			/* NULL for the task itself */
	const char *data;			/* the current batch */
	Size		len;
	Size		off;
	pg_atomic_uint64 *received;
	StringInfoData local;		/* the task's own batch, being read */
} Input;

struct Exchange
{
	dsm_segment *seg;
	ExchangeControl *ctl;
	int			task;
	int			ntasks;
	Output	   *out;
	Input	   *in;
};

void
exchange_define_settings(void)
{
	DefineCustomIntVariable("streamflink.exchange_queue_size",
							"Size of each queue between two tasks of a parallel pipeline.",
							"A pipeline of parallelism N has N x (N - 1) queues in one shared memory segment.",
							&queue_size_kb, 1024, 64, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("streamflink.exchange_batch_size",
							"Records a task batches for another before sending them.",
							NULL,
							&batch_size_kb, 32, 1, 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
}

static Size
control_size(int ntasks)
{
	return MAXALIGN(add_size(offsetof(ExchangeControl, tasks),
							 mul_size(sizeof(ExchangeTask), ntasks))) +
		mul_size(sizeof(pg_atomic_uint64), mul_size(3, mul_size(ntasks, ntasks)));
}

static pg_atomic_uint64 *
channel_counter(ExchangeControl *ctl, int s, int d, int which)
{
	char	   *base = (char *) ctl + MAXALIGN(offsetof(ExchangeControl, tasks) +
											 sizeof(ExchangeTask) * ctl->ntasks);

	return (pg_atomic_uint64 *) base + ((s * ctl->ntasks + d) * 3 + which);
}

/* Queues, buffers and the task's entry: what both create and attach do. */
static Exchange *
exchange_setup(dsm_segment *seg, shm_toc *toc, ExchangeControl *ctl, int task)
{
	Exchange   *ex = palloc0(sizeof(Exchange));
	int			n = ctl->ntasks;

	ex->seg = seg;
	ex->ctl = ctl;
	ex->task = task;
	ex->ntasks = n;
	ex->out = palloc0(sizeof(Output) * n);
	ex->in = palloc0(sizeof(Input) * n);
	for (int t = 0; t < n; t++)
	{
		initStringInfo(&ex->out[t].filling);
		initStringInfo(&ex->out[t].sending);
		initStringInfo(&ex->in[t].local);
		ex->out[t].sent = channel_counter(ctl, task, t, 0);
		ex->in[t].received = channel_counter(ctl, t, task, 1);
		if (t == task)
			continue;
		{
			shm_mq	   *to = shm_toc_lookup(toc, KEY_QUEUE(task, t, n), false);
			shm_mq	   *from = shm_toc_lookup(toc, KEY_QUEUE(t, task, n), false);

			shm_mq_set_sender(to, MyProc);
			ex->out[t].mqh = shm_mq_attach(to, seg, NULL);
			shm_mq_set_receiver(from, MyProc);
			ex->in[t].mqh = shm_mq_attach(from, seg, NULL);
		}
	}
	ctl->tasks[task].pid = MyProcPid;
	ctl->tasks[task].proc = MyProc;
	pg_write_barrier();
	return ex;
}

Exchange *
exchange_create(int ntasks)
{
	shm_toc_estimator e;
	Size		qsize = (Size) queue_size_kb * 1024;
	Size		size;
	dsm_segment *seg;
	shm_toc    *toc;
	ExchangeControl *ctl;
	int			nqueues = ntasks * (ntasks - 1);

	shm_toc_initialize_estimator(&e);
	shm_toc_estimate_chunk(&e, control_size(ntasks));
	shm_toc_estimate_keys(&e, 1);
	for (int i = 0; i < nqueues; i++)
		shm_toc_estimate_chunk(&e, qsize);
	shm_toc_estimate_keys(&e, nqueues);
	size = shm_toc_estimate(&e);

	seg = dsm_create(size, 0);
	dsm_pin_mapping(seg);
	toc = shm_toc_create(EXCHANGE_MAGIC, dsm_segment_address(seg), size);

	ctl = shm_toc_allocate(toc, control_size(ntasks));
	memset(ctl, 0, control_size(ntasks));
	ctl->ntasks = ntasks;
	ctl->queue_size = qsize;
	pg_atomic_init_u32(&ctl->ready, 0);
	pg_atomic_init_u64(&ctl->trigger, 0);
	pg_atomic_init_u64(&ctl->decided, 0);
	pg_atomic_init_u64(&ctl->stop_after, 0);
	pg_atomic_init_u32(&ctl->dirty, 0);
	pg_atomic_init_u32(&ctl->failed, 0);
	for (int t = 0; t < ntasks; t++)
	{
		pg_atomic_init_u64(&ctl->tasks[t].prepared, 0);
		pg_atomic_init_u64(&ctl->tasks[t].op_watermark, (uint64) DT_NOEND);
		SpinLockInit(&ctl->tasks[t].metrics_mutex);
	}
	for (int s = 0; s < ntasks; s++)
		for (int d = 0; d < ntasks; d++)
		{
			pg_atomic_init_u64(channel_counter(ctl, s, d, 0), 0);
			pg_atomic_init_u64(channel_counter(ctl, s, d, 1), 0);
			pg_atomic_init_u64(channel_counter(ctl, s, d, 2), 0);
		}
	shm_toc_insert(toc, KEY_CONTROL, ctl);

	for (int s = 0; s < ntasks; s++)
		for (int d = 0; d < ntasks; d++)
		{
			if (s == d)
				continue;
			shm_toc_insert(toc, KEY_QUEUE(s, d, ntasks),
						   shm_mq_create(shm_toc_allocate(toc, qsize), qsize));
		}
	return exchange_setup(seg, toc, ctl, 0);
}

void
exchange_detach(Exchange *ex)
{
	if (ex->seg != NULL)
		dsm_detach(ex->seg);
	ex->seg = NULL;
}

dsm_handle
exchange_handle(Exchange *ex)
{
	return dsm_segment_handle(ex->seg);
}

void
exchange_set_worker(Exchange *ex, int task, BackgroundWorkerHandle *handle)
{
	if (task == ex->task)
		return;
	shm_mq_set_handle(ex->out[task].mqh, handle);
	shm_mq_set_handle(ex->in[task].mqh, handle);
}

Exchange *
exchange_attach(dsm_handle handle, int task)
{
	dsm_segment *seg = dsm_attach(handle);
	shm_toc    *toc;
	ExchangeControl *ctl;

	if (seg == NULL)
		return NULL;
	dsm_pin_mapping(seg);
	toc = shm_toc_attach(EXCHANGE_MAGIC, dsm_segment_address(seg));
	if (toc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invalid streamflink exchange segment")));
	ctl = shm_toc_lookup(toc, KEY_CONTROL, false);
	if (task <= 0 || task >= ctl->ntasks)
		elog(ERROR, "task %d out of range for an exchange of %d tasks", task, ctl->ntasks);
	return exchange_setup(seg, toc, ctl, task);
}

ExchangeControl *
exchange_control(Exchange *ex)
{
	return ex->ctl;
}

int
exchange_task(Exchange *ex)
{
	return ex->task;
}

int
exchange_ntasks(Exchange *ex)
{
	return ex->ntasks;
}

void
exchange_report_failure(Exchange *ex, const char *message)
{
	uint32		expected = 0;

	if (ex->seg == NULL ||
		!pg_atomic_compare_exchange_u32(&ex->ctl->failed, &expected, 1))
		return;
	ex->ctl->error_task = ex->task;
	strlcpy(ex->ctl->error, message ? message : "", sizeof(ex->ctl->error));
	pg_write_barrier();
	pg_atomic_write_u32(&ex->ctl->failed, 2);
}

char *
exchange_failure(Exchange *ex, int *task)
{
	if (pg_atomic_read_u32(&ex->ctl->failed) != 2)
		return NULL;
	pg_read_barrier();
	*task = ex->ctl->error_task;
	return pstrdup(ex->ctl->error);
}

void
exchange_wake_all(Exchange *ex)
{
	pg_memory_barrier();
	for (int t = 0; t < ex->ntasks; t++)
	{
		PGPROC	   *proc = ex->ctl->tasks[t].proc;

		if (t != ex->task && proc != NULL)
			SetLatch(&proc->procLatch);
	}
}

/* --- sending -------------------------------------------------------------- */

static inline void
put_bytes(StringInfo buf, const void *p, int len)
{
	appendBinaryStringInfoNT(buf, p, len);
}

void
exchange_put_event(Exchange *ex, int dest, int32 partition, int64 offset,
				   TimestampTz t, const void *tuple, uint32 tuple_len,
				   const char *payload, uint32 payload_len)
{
	StringInfo	buf = &ex->out[dest].filling;
	char		kind = EXCHANGE_EVENT;

	enlargeStringInfo(buf, 29 + tuple_len + payload_len);
	put_bytes(buf, &kind, 1);
	put_bytes(buf, &partition, 4);
	put_bytes(buf, &offset, 8);
	put_bytes(buf, &t, 8);
	put_bytes(buf, &tuple_len, 4);
	put_bytes(buf, &payload_len, 4);
	put_bytes(buf, tuple, tuple_len);
	if (payload_len > 0)
		put_bytes(buf, payload, payload_len);
}

void
exchange_put_watermark(Exchange *ex, int dest, TimestampTz wm, bool idle)
{
	StringInfo	buf = &ex->out[dest].filling;
	char		kind = EXCHANGE_WATERMARK;
	char		i = idle ? 1 : 0;

	put_bytes(buf, &kind, 1);
	put_bytes(buf, &wm, 8);
	put_bytes(buf, &i, 1);
}

void
exchange_put_barrier(Exchange *ex, int dest, int64 id)
{
	StringInfo	buf = &ex->out[dest].filling;
	char		kind = EXCHANGE_BARRIER;

	put_bytes(buf, &kind, 1);
	put_bytes(buf, &id, 8);
}

void
exchange_put_partial(Exchange *ex, int dest, int32 partition, int64 offset,
					 TimestampTz start, int64 events,
					 const void *tuple, uint32 tuple_len,
					 const char *states, uint32 states_len)
{
	StringInfo	buf = &ex->out[dest].filling;
	char		kind = EXCHANGE_PARTIAL;

	enlargeStringInfo(buf, 37 + tuple_len + states_len);
	put_bytes(buf, &kind, 1);
	put_bytes(buf, &partition, 4);
	put_bytes(buf, &offset, 8);
	put_bytes(buf, &start, 8);
	put_bytes(buf, &events, 8);
	put_bytes(buf, &tuple_len, 4);
	put_bytes(buf, &states_len, 4);
	put_bytes(buf, tuple, tuple_len);
	put_bytes(buf, states, states_len);
}

/*
 * The watermark is written before any later count of a resume (both by the
 * operator side, in this order): a source side that sees its resume
 * counted sees the watermark the owner had then, or a later one.
 */
void
exchange_publish_watermark(Exchange *ex, TimestampTz wm)
{
	pg_write_barrier();
	pg_atomic_write_u64(&ex->ctl->tasks[ex->task].op_watermark, (uint64) wm);
	pg_write_barrier();
}

void
exchange_saw_resume(Exchange *ex, int src)
{
	pg_atomic_fetch_add_u64(channel_counter(ex->ctl, src, ex->task, 2), 1);
}

TimestampTz
exchange_published_watermark(Exchange *ex, int dest)
{
	pg_read_barrier();
	return (TimestampTz) pg_atomic_read_u64(&ex->ctl->tasks[dest].op_watermark);
}

uint64
exchange_resumes_seen(Exchange *ex, int dest)
{
	uint64		n = pg_atomic_read_u64(channel_counter(ex->ctl, ex->task, dest, 2));

	pg_read_barrier();
	return n;
}

void
exchange_peer_gone(Exchange *ex, int peer)
{
	int			failed_task;
	char	   *why = exchange_failure(ex, &failed_task);

	if (why != NULL && failed_task != ex->task)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("task %d of this pipeline failed: %s", failed_task, why),
				 errdetail("Every task of the pipeline restarts from the last checkpoint.")));
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("task %d of this pipeline is gone", peer),
			 errdetail("Every task of the pipeline restarts from the last checkpoint.")));
}

bool
exchange_flush(Exchange *ex)
{
	Size		batch = (Size) batch_size_kb * 1024;
	bool		room = true;

	for (int t = 0; t < ex->ntasks; t++)
	{
		Output	   *o = &ex->out[t];

		if (t == ex->task)
		{
			/*
			 * Read in place by exchange_next; bounded like a queue, or a
			 * task whose own operator side is slow would buffer its
			 * partitions without end.
			 */
			if (o->filling.len >= ex->ctl->queue_size)
				room = false;
			continue;
		}
		for (;;)
		{
			shm_mq_result r;

			if (o->sending.len == 0)
			{
				StringInfoData tmp;

				if (o->filling.len == 0)
					break;
				/* swap: the filled batch is sent, the empty one fills */
				tmp = o->sending;
				o->sending = o->filling;
				o->filling = tmp;
			}
			r = shm_mq_send(o->mqh, o->sending.len, o->sending.data, true, true);
			if (r == SHM_MQ_DETACHED)
				exchange_peer_gone(ex, t);
			if (r == SHM_MQ_WOULD_BLOCK)
				break;
			pg_atomic_fetch_add_u64(o->sent, o->sending.len);
			resetStringInfo(&o->sending);
		}
		if (o->filling.len >= batch)
			room = false;
		/* keep big batches from growing without bound */
		if (o->sending.len > 0 && o->filling.len > 0)
			room = false;
	}
	return room;
}

/* --- receiving ------------------------------------------------------------ */

static inline void
get_bytes(const char **p, void *dst, int len)
{
	memcpy(dst, *p, len);
	*p += len;
}

Size
exchange_parse(const char *start, ExchangeRecord *rec)
{
	const char *p = start;

	rec->raw = start;
	rec->kind = *p++;
	switch (rec->kind)
	{
		case EXCHANGE_EVENT:
			get_bytes(&p, &rec->partition, 4);
			get_bytes(&p, &rec->offset, 8);
			get_bytes(&p, &rec->time, 8);
			get_bytes(&p, &rec->tuple_len, 4);
			get_bytes(&p, &rec->payload_len, 4);
			rec->tuple = p;
			p += rec->tuple_len;
			rec->payload = rec->payload_len > 0 ? p : NULL;
			p += rec->payload_len;
			break;
		case EXCHANGE_WATERMARK:
			{
				char		idle;

				get_bytes(&p, &rec->time, 8);
				get_bytes(&p, &idle, 1);
				rec->idle = idle != 0;
			}
			break;
		case EXCHANGE_BARRIER:
			get_bytes(&p, &rec->checkpoint_id, 8);
			break;
		case EXCHANGE_PARTIAL:
			get_bytes(&p, &rec->partition, 4);
			get_bytes(&p, &rec->offset, 8);
			get_bytes(&p, &rec->time, 8);
			get_bytes(&p, &rec->events, 8);
			get_bytes(&p, &rec->tuple_len, 4);
			get_bytes(&p, &rec->payload_len, 4);
			rec->tuple = p;
			p += rec->tuple_len;
			rec->payload = p;
			p += rec->payload_len;
			break;
		default:
			break;				/* the caller says */
	}
	rec->raw_len = p - start;
	return rec->raw_len;
}

bool
exchange_next(Exchange *ex, int src, ExchangeRecord *rec)
{
	Input	   *in = &ex->in[src];
	const char *p;

	if (in->off >= in->len)
	{
		if (in->len > 0)
			pg_atomic_fetch_add_u64(in->received, in->len);
		in->data = NULL;
		in->len = in->off = 0;
		if (src == ex->task)
		{
			Output	   *o = &ex->out[src];
			StringInfoData tmp;

			if (o->filling.len == 0)
				return false;
			/* the task's own records: take the filled buffer as a batch */
			resetStringInfo(&in->local);
			tmp = in->local;
			in->local = o->filling;
			o->filling = tmp;
			pg_atomic_fetch_add_u64(o->sent, in->local.len);
			in->data = in->local.data;
			in->len = in->local.len;
		}
		else
		{
			Size		nbytes;
			void	   *data;
			shm_mq_result r = shm_mq_receive(in->mqh, &nbytes, &data, true);

			if (r == SHM_MQ_DETACHED)
				exchange_peer_gone(ex, src);
			if (r == SHM_MQ_WOULD_BLOCK)
				return false;
			in->data = data;
			in->len = nbytes;
		}
	}

	p = in->data + in->off;
	p += exchange_parse(p, rec);
	if (rec->kind != EXCHANGE_EVENT && rec->kind != EXCHANGE_WATERMARK &&
		rec->kind != EXCHANGE_BARRIER && rec->kind != EXCHANGE_PARTIAL)
		elog(ERROR, "invalid record kind %d from task %d", rec->kind, src);
	in->off = p - in->data;
	Assert(in->off <= in->len);
	return true;
}

void
exchange_fill(Exchange *ex, double *input, double *output)
{
	double		qsize = (double) ex->ctl->queue_size;

	*input = *output = 0;
	for (int t = 0; t < ex->ntasks; t++)
	{
		uint64		sent,
					received;

		if (t == ex->task)
			continue;
		sent = pg_atomic_read_u64(channel_counter(ex->ctl, t, ex->task, 0));
		received = pg_atomic_read_u64(channel_counter(ex->ctl, t, ex->task, 1));
		*input = Max(*input, Min(1.0, (sent - received) / qsize));
		sent = pg_atomic_read_u64(channel_counter(ex->ctl, ex->task, t, 0));
		received = pg_atomic_read_u64(channel_counter(ex->ctl, ex->task, t, 1));
		*output = Max(*output, Min(1.0, (sent - received) / qsize));
	}
}
