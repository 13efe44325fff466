/*-------------------------------------------------------------------------
 *
 * hot_keys.c
 *	  Heavy hitters per task, and streamflink._hot_keys() (see hot_keys.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "group_key.h"
#include "hot_keys.h"
#include "task.h"

/* Group keys longer than this are counted by their first bytes. */
#define HOT_KEY_BYTES 128

typedef struct HotCounter
{
	int64		count;
	int			owner;
	int			len;			/* 0: unused */
	bool		truncated;
	char		gk[HOT_KEY_BYTES];
} HotCounter;

struct HotKeys
{
	KeyCodec   *codec;
	Oid		   *types;			/* of the key columns */
	int64		total;
	HotCounter	c[HOT_KEYS_TRACKED];
	TimestampTz decayed_at;
	HotKeysReport report;
	Datum	   *vals;
	bool	   *nulls;
};

HotKeys *
hot_keys_create(KeyCodec *codec, TupleDesc event_desc)
{
	HotKeys    *hk = palloc0(sizeof(HotKeys));

	hk->codec = codec;
	hk->types = palloc(sizeof(Oid) * Max(codec->nkeys, 1));
	for (int i = 0; i < codec->nkeys; i++)
		hk->types[i] = TupleDescAttr(event_desc, codec->attnos[i])->atttypid;
	hk->vals = palloc(sizeof(Datum) * Max(codec->nkeys, 1));
	hk->nulls = palloc(sizeof(bool) * Max(codec->nkeys, 1));
	hk->decayed_at = GetCurrentTimestamp();
	return hk;
}

void
hot_keys_count(HotKeys *hk, const char *gk, int len, int owner)
{
	HotCounter *min;
	bool		truncated = len > HOT_KEY_BYTES;

	if (hk == NULL)
		return;
	min = &hk->c[0];
	len = Min(len, HOT_KEY_BYTES);
	hk->total++;
	for (int i = 0; i < HOT_KEYS_TRACKED; i++)
	{
		HotCounter *c = &hk->c[i];

		if (c->len == len && c->owner == owner && memcmp(c->gk, gk, len) == 0)
		{
			c->count++;
			return;
		}
		if (c->count < min->count)
			min = c;
	}
	/* space-saving: the new key takes over the smallest counter */
	min->count++;
	min->owner = owner;
	min->len = len;
	min->truncated = truncated;
	memcpy(min->gk, gk, len);
}

static int
counter_cmp(const void *a, const void *b)
{
	const HotCounter *x = *(HotCounter *const *) a;
	const HotCounter *y = *(HotCounter *const *) b;

	return (x->count < y->count) - (x->count > y->count);
}

/* The key as text: its values through their output functions. */
static void
render_key(HotKeys *hk, HotCounter *c, char *out)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (hk->codec->exact && !c->truncated)
	{
		kstate_decode_key(hk->codec, c->gk, hk->vals, hk->nulls);
		for (int i = 0; i < hk->codec->nkeys; i++)
		{
			Oid			outfn;
			bool		varlena;

			if (i > 0)
				appendStringInfoString(&buf, ", ");
			if (hk->nulls[i])
			{
				appendStringInfoString(&buf, "NULL");
				continue;
			}
			getTypeOutputInfo(hk->types[i], &outfn, &varlena);
			appendStringInfoString(&buf, OidOutputFunctionCall(outfn, hk->vals[i]));
		}
	}
	else
	{
		/* a sort key (nondeterministic collation) or a long key: its bytes */
		appendStringInfoString(&buf, "\\x");
		for (int i = 0; i < c->len && buf.len < HOT_KEYS_TEXT - 3; i++)
			appendStringInfo(&buf, "%02x", (unsigned char) c->gk[i]);
	}
	/* truncated on a character boundary */
	{
		int			len = pg_mbcliplen(buf.data, buf.len, HOT_KEYS_TEXT - 1);

		memcpy(out, buf.data, len);
		out[len] = '\0';
	}
	pfree(buf.data);
}

void
hot_keys_render(HotKeys *hk, TimestampTz now)
{
	HotCounter *sorted[HOT_KEYS_TRACKED];
	int			n = 0;

	if (hk == NULL)
		return;
	if (now - hk->decayed_at >= HOT_KEYS_HALF_LIFE_S * USECS_PER_SEC)
	{
		hk->decayed_at = now;
		hk->total /= 2;
		for (int i = 0; i < HOT_KEYS_TRACKED; i++)
			hk->c[i].count /= 2;
	}
	for (int i = 0; i < HOT_KEYS_TRACKED; i++)
		if (hk->c[i].len > 0 && hk->c[i].count > 0)
			sorted[n++] = &hk->c[i];
	qsort(sorted, n, sizeof(HotCounter *), counter_cmp);
	hk->report.n = Min(n, HOT_KEYS_LISTED);
	hk->report.total = hk->total;
	for (int i = 0; i < hk->report.n; i++)
	{
		render_key(hk, sorted[i], hk->report.keys[i].key);
		hk->report.keys[i].owner = sorted[i]->owner;
		hk->report.keys[i].events = sorted[i]->count;
	}
}

const HotKeysReport *
hot_keys_report(HotKeys *hk)
{
	return &hk->report;
}

/* --- streamflink._hot_keys() ---------------------------------------------- */

PG_FUNCTION_INFO_V1(streamflink_hot_keys);

Datum
streamflink_hot_keys(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TaskSlot   *copies;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	/* the tasks of the pipelines the caller may see, as streamflink.tasks */
	copies = task_copy_visible(&n);
	for (int i = 0; i < n; i++)
	{
		TaskSlot   *t = &copies[i];
		const HotKeysReport *r = &t->m.hot;

		for (int k = 0; k < r->n; k++)
		{
			Datum		values[7];
			bool		nulls[7] = {0};

			values[0] = Int32GetDatum(t->pipeline_id);
			values[1] = Int32GetDatum(t->task);
			values[2] = Int32GetDatum(k + 1);
			values[3] = CStringGetTextDatum(r->keys[k].key);
			values[4] = Int32GetDatum(r->keys[k].owner);
			values[5] = Int64GetDatum(r->keys[k].events);
			values[6] = Float8GetDatum(r->total > 0 ? (double) r->keys[k].events / r->total : 0);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	PG_RETURN_VOID();
}
