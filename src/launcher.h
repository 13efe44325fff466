/*-------------------------------------------------------------------------
 *
 * launcher.h
 *	  Starts, after a server start, the pipelines that were running.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_LAUNCHER_H
#define STREAMFLINK_LAUNCHER_H

/* Register the static launcher worker (from _PG_init, when preloaded). */
extern void launcher_register(void);

#endif							/* STREAMFLINK_LAUNCHER_H */
