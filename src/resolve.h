/*-------------------------------------------------------------------------
 *
 * resolve.h
 *	  Resolving a pipeline's user fragments once, at creation (resolve.c).
 *
 * The trigger on streamflink.pipeline is the module's main entry point; this
 * header is for the one thing other modules need from it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_RESOLVE_H
#define STREAMFLINK_RESOLVE_H

/*
 * Forget the dependencies recorded on 'row_type' by sink tables whose
 * pipelines are gone (left behind by a dropped extension), so that the
 * type can be dropped and replaced.
 */
extern void resolve_forget_stale_dependencies(Oid row_type);

#endif							/* STREAMFLINK_RESOLVE_H */
