/*
 * params.h — the scoring parameters of docs/SPEC.md §2–4.
 *
 * They are configuration keys, and the configuration table in
 * common/config.c is their one source: name, type, default, range and help.
 * score_params_t is that table's scoring struct (config_score_t, defined in
 * common/config.h because common/ depends on nothing above it), so the
 * scorer reads a config's `score` member as it is, and the defaults here
 * are the table's.  Pure; thread-safe.
 */
#ifndef RAPPORT_PARAMS_H
#define RAPPORT_PARAMS_H

#include "common/config.h"

typedef config_score_t score_params_t;

/* The defaults of every scoring key, from the configuration table. */
void score_params_default(score_params_t *p);

#endif
