/*
 * params.c — see params.h.
 */
#include "scoring/params.h"

void score_params_default(score_params_t *p) { config_score_defaults(p); }
