/*-------------------------------------------------------------------------
 *
 * operator_factory.h
 *	  Choosing and building the operator of a pipeline.
 *
 * Apart from operator.h so that the operators (window.c, cep.c), which
 * implement operator.h, and the factory, which knows them all, form no
 * module cycle.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAMFLINK_OPERATOR_FACTORY_H
#define STREAMFLINK_OPERATOR_FACTORY_H

#include "operator.h"

/*
 * The operator of a pipeline (by def->kind), with its sink outputs open;
 * 'side' takes what it sets aside (dead letters).  Call connected to SPI,
 * inside a transaction, in a long-lived memory context.  'poison' is the
 * worker's (NULL: none), for an operator that defers events.
 */
extern Operator *operator_create(PipelineDef *def, StateStore *store, Sink *sink,
								 SideOutput *side, TupleDesc event_desc,
								 Poison *poison);

#endif							/* STREAMFLINK_OPERATOR_FACTORY_H */
