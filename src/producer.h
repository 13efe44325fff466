/*-------------------------------------------------------------------------
 *
 * producer.h
 *	  streamflink.produce() and its settings (see producer.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_PRODUCER_H
#define STREAMFLINK_PRODUCER_H

/* Define streamflink.produce_allowed_brokers; from _PG_init. */
extern void producer_define_settings(void);

#endif							/* STREAMFLINK_PRODUCER_H */
