/*-------------------------------------------------------------------------
 *
 * operator_factory.c
 *	  Choosing the operator of a pipeline.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "cep.h"
#include "filter_project.h"
#include "operator_factory.h"
#include "window.h"

Operator *
operator_create(PipelineDef *def, StateStore *store, Sink *sink, SideOutput *side,
				TupleDesc event_desc, Poison *poison)
{
	Operator   *op = palloc0(sizeof(Operator));

	switch (def->kind)
	{
		case PIPELINE_WINDOW:
			op->methods = &window_operator_methods;
			op->impl = window_create(def, store, sink, event_desc);
			break;
		case PIPELINE_PATTERN:
			op->methods = &cep_operator_methods;
			op->impl = cep_create(def, store, sink, side, event_desc, poison);
			break;
		case PIPELINE_STATELESS:
			op->methods = &filter_project_methods;
			op->impl = filter_project_create(def, sink, event_desc);
			break;
	}
	return op;
}
