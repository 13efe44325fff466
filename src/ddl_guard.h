/*-------------------------------------------------------------------------
 *
 * ddl_guard.h
 *	  Refuse to drop what a running pipeline uses (see ddl_guard.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_DDL_GUARD_H
#define STREAMFLINK_DDL_GUARD_H

/* Install the object access hook; from _PG_init. */
extern void ddl_guard_install(void);

#endif							/* STREAMFLINK_DDL_GUARD_H */
