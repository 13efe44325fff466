/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The background worker that runs one pipeline (worker.c).
 *
 * The worker is registered by launcher.c, by the name of its entry point.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_WORKER_H
#define STREAMFLINK_WORKER_H

/* streamflink.batch_size */
extern void worker_define_settings(void);

#endif							/* STREAMFLINK_WORKER_H */
