/*-------------------------------------------------------------------------
 *
 * poison.c
 *	  Poison messages (see poison.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "lib/stringinfo.h"

#include "poison.h"

struct Poison
{
	char	   *path;			/* the file "poison" in the pipeline's directory */
	SfMessagePos processing;	/* the message being processed, or partition -1 */
	SfMessagePos failed;		/* the message that failed, or partition -1 */
	char	   *error;			/* and its error */
	bool		skipped;		/* failed was sent to the dead-letter table */
};

Poison *
poison_open(const char *pipeline_dir)
{
	Poison	   *p = palloc0(sizeof(Poison));
	FILE	   *f;
	StringInfoData msg;
	int			c;

	p->path = psprintf("%s/poison", pipeline_dir);
	p->processing.partition = -1;
	p->failed.partition = -1;

	f = fopen(p->path, "r");
	if (f == NULL)
		return p;
	initStringInfo(&msg);
	if (fscanf(f, "%d " INT64_FORMAT "\n", &p->failed.partition, &p->failed.offset) == 2)
	{
		while ((c = fgetc(f)) != EOF)
			appendStringInfoChar(&msg, (char) c);
		p->error = msg.data;
	}
	else
		p->failed.partition = -1;
	fclose(f);
	return p;
}

void
poison_begin(Poison *p, SfMessagePos pos)
{
	if (p != NULL)
		p->processing = pos;
}

void
poison_end(Poison *p)
{
	if (p != NULL)
		p->processing.partition = -1;
}

char *
poison_skip(Poison *p, SfMessagePos pos)
{
	if (p == NULL || p->failed.partition < 0 ||
		pos.partition != p->failed.partition || pos.offset != p->failed.offset)
		return NULL;
	p->skipped = true;
	return psprintf("processing failed: %s", p->error);
}

void
poison_record(Poison *p, ErrorData *edata)
{
	FILE	   *f;

	if (p == NULL || p->processing.partition < 0 ||
		ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
		return;
	f = fopen(p->path, "w");
	if (f == NULL)
		return;
	fprintf(f, "%d " INT64_FORMAT "\n%s", p->processing.partition,
			p->processing.offset, edata->message);
	fclose(f);
}

void
poison_checkpointed(Poison *p)
{
	if (p != NULL && p->failed.partition >= 0 && p->skipped)
	{
		unlink(p->path);
		p->failed.partition = -1;
	}
}
