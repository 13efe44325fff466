/*-------------------------------------------------------------------------
 *
 * thread_signals.h
 *	  Starting library threads (librdkafka, RocksDB) with every signal
 *	  blocked.
 *
 * A Postgres backend's signal handlers must run on its main thread: a
 * thread a library creates inherits the creator's signal mask, so calls
 * that may create threads are bracketed by thread_signals_block() and
 * thread_signals_restore().  Signals that arrive meanwhile stay pending and
 * are delivered to the main thread when its mask is restored (see
 * DESIGN.md, threads and signals).  Header-only: no state.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SF_THREAD_SIGNALS_H
#define SF_THREAD_SIGNALS_H

#include <pthread.h>
#include <signal.h>

static inline void
thread_signals_block(sigset_t *saved)
{
	sigset_t	all;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, saved);
}

static inline void
thread_signals_restore(const sigset_t *saved)
{
	pthread_sigmask(SIG_SETMASK, saved, NULL);
}

#endif							/* SF_THREAD_SIGNALS_H */
