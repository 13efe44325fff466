/*-------------------------------------------------------------------------
 *
 * poison.h
 *	  Poison messages: a message whose processing failed with a data error
 *	  goes, after the restart, to the dead-letter table instead of failing
 *	  the worker again.
 *
 * An event whose processing raises a data error (division by zero in a
 * condition, an aggregate overflowing its type...) would fail the worker at
 * every replay, holding the pipeline back for good.  So the worker marks
 * the message whose event is being processed (poison_begin/poison_end); an
 * operator that defers events (CEP buffers them until the watermark) keeps
 * the message's position with the event and marks it again while it
 * processes the event.  If the worker fails meanwhile, poison_record writes
 * that position and the error to the file "poison" in the pipeline's
 * directory; the restarted worker reads it (poison_open), and whoever meets
 * that message again -- the worker reading it, or an operator processing a
 * deferred event -- asks poison_skip and sends it to the dead-letter table
 * with the error instead.  The file goes once a checkpoint has recorded
 * that (poison_checkpointed).  Only data exceptions (SQLSTATE class 22)
 * count: anything else (out of memory, a dropped sink table, a lost
 * connection) is no fault of the message, and the worker keeps retrying.
 *
 * A Poison belongs to one worker process (no locking); every function
 * takes NULL for "no poison tracking" (streamflink._replay in a backend).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_POISON_H
#define STREAMFLINK_POISON_H

/* Where a message is in the source; partition -1: none. */
typedef struct SfMessagePos
{
	int32		partition;
	int64		offset;
} SfMessagePos;

typedef struct Poison Poison;

/*
 * The worker's tracker, with the message that failed in the previous run,
 * if any.  Allocated in CurrentMemoryContext, which must live as long as
 * the worker.
 */
extern Poison *poison_open(const char *pipeline_dir);

/* Processing of the event of message 'pos' begins, or ended. */
extern void poison_begin(Poison *p, SfMessagePos pos);
extern void poison_end(Poison *p);

/*
 * Is 'pos' the message that failed in the previous run?  Then the reason to
 * give its dead letter (palloc'd), and the skip counts as done; else NULL.
 */
extern char *poison_skip(Poison *p, SfMessagePos pos);

/* The worker failed with edata: record the message it was processing. */
extern void poison_record(Poison *p, ErrorData *edata);

/* A checkpoint completed: a skipped poison message is behind us for good. */
extern void poison_checkpointed(Poison *p);

#endif							/* STREAMFLINK_POISON_H */
