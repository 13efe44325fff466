/*-------------------------------------------------------------------------
 *
 * operator.c
 *	  What the worker shares with the operator it drives (see operator.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "operator.h"

volatile sig_atomic_t sf_termination_requested = false;
