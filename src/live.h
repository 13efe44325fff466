/*-------------------------------------------------------------------------
 *
 * live.h
 *	  Secondaries that backends open for streamflink.live() (live.c).
 *
 * A backend's secondary lives in live-<pid> under the pipeline's directory
 * and is removed when the backend exits normally.  A backend that crashed,
 * or was ended by a crash restart or an immediate shutdown, leaves its
 * directory behind: the next opener of a secondary of the pipeline and the
 * pipeline's worker, when it starts (after every such event), remove those
 * of pids that are no backend of this server any more.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_LIVE_H
#define STREAMFLINK_LIVE_H

/* Remove the live-<pid> directories of dead backends under pipeline_dir. */
extern void live_remove_stale(const char *pipeline_dir);

#endif							/* STREAMFLINK_LIVE_H */
