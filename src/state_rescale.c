/*-------------------------------------------------------------------------
 *
 * state_rescale.c
 *	  Building a state database from snapshots by key-group range (see
 *	  state_rescale.h).
 *
 * Iterate-and-write over the range of each snapshot: a snapshot is linked
 * into a scratch directory (state_restore: SST files hard-linked, so the
 * snapshot itself is never opened for writing), opened, and the keys of the
 * range are written into the target in batches.  A snapshot wholly inside
 * the range could be taken as is (hard links, then range deletes outside);
 * copying keys is the one way that also merges several snapshots.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"

#include "keyspace.h"
#include "state_rescale.h"

/* Keys written per batch into the main family. */
#define RESCALE_BATCH 10000

KeyGroupRange
state_key_group_range_for(int index, int parallelism)
{
	KeyGroupRange r;

	Assert(parallelism >= 1 && parallelism <= STATE_KEY_GROUPS);
	Assert(index >= 0 && index < parallelism);
	r.lo = (uint16) ((index * STATE_KEY_GROUPS + parallelism - 1) / parallelism);
	r.hi = (uint16) (((index + 1) * STATE_KEY_GROUPS - 1) / parallelism);
	return r;
}

int64
state_restore_key_groups(const char *dir, char **chk_dirs, int n, KeyGroupRange range,
						 const StateTuning *tuning)
{
	char	   *scratch = psprintf("%s.source", dir);
	StateStore *target;
	StringInfoData lower;
	StringInfoData upper;
	int64		copied = 0;
	StateStore *volatile src = NULL;

	initStringInfo(&lower);
	initStringInfo(&upper);
	keyspace_key_group_range(range.lo, range.hi, &lower, &upper);

	state_remove_dir(dir);
	/* the writes need the memtables; reading a snapshot in order, little */
	target = tuning ? state_open_tuned(dir, tuning) : state_open(dir);
	PG_TRY();
	{
		for (int i = 0; i < n; i++)
		{
			state_remove_dir(scratch);
			state_restore(scratch, chk_dirs[i]);
			src = state_open(scratch);
			for (int f = 0; f < STATE_NUM_FAMILIES; f++)
			{
				StateStore *from = state_family(src, (StateFamily) f);
				StateStore *to = state_family(target, (StateFamily) f);
				StateBatch *batch = state_batch_create();
				int			pending = 0;
				StateIter  *it = state_iter_create(from, lower.data, lower.len,
												   upper.data, upper.len);
				const char *key;
				const char *val;
				size_t		klen;
				size_t		vlen;

				while (state_iter_next(it, &key, &klen, &val, &vlen))
				{
					CHECK_FOR_INTERRUPTS();
					/* batches write to the main family only (state.h) */
					if (f == STATE_FAMILY_MAIN)
					{
						state_batch_put(batch, key, klen, val, vlen);
						if (++pending >= RESCALE_BATCH)
						{
							state_batch_write(to, batch);
							pending = 0;
						}
					}
					else
						state_put(to, key, klen, val, vlen);
					copied++;
				}
				state_iter_destroy(it);
				if (pending > 0)
					state_batch_write(to, batch);
				state_batch_destroy(batch);
			}
			state_close(src);
			src = NULL;
			state_remove_dir(scratch);
		}
	}
	PG_CATCH();
	{
		if (src != NULL)
			state_close(src);
		state_close(target);
		PG_RE_THROW();
	}
	PG_END_TRY();
	state_close(target);
	return copied;
}
