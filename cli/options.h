/*
 * options.h — the command line of the commands that read the
 * configuration (`run`, `report`, `dashboard`): -c FILE first, whatever
 * its place, then the flags in their order, each one a configuration key
 * or -X key=value, so that flags override the file.
 */
#ifndef RAPPORT_CLI_OPTIONS_H
#define RAPPORT_CLI_OPTIONS_H

#include <getopt.h>
#include <stddef.h>

#include "common/config.h"

/* A short option that sets a configuration key, e.g. {'r', "redis_url"}. */
typedef struct cli_flag {
    int opt;
    const char *key;
} cli_flag_t;

/* A command's own option (not -c, -X, -h or a cli_flag_t): returns 0, or
 * -1 with errstr. */
typedef int (*cli_other_fn)(void *opaque, int opt, const char *arg, char *errstr,
                            size_t errstr_size);

typedef enum { CLI_OK = 0, CLI_HELP, CLI_BAD } cli_parse_t;

/* Parses argv into conf (which holds the defaults): the file of -c, then
 * `flags` (terminated by {0, NULL}) and -X in order, then `other` for the
 * rest.  The caller runs config_finish() if its command needs every
 * cross-key check (`run` does; `report` needs no schemas).  optstring must hold "c:X:h"; longopts
 * must map "help" to 'h'.  CLI_HELP for -h/--help; CLI_BAD with errstr
 * (empty when getopt already printed the problem) on bad usage. */
cli_parse_t cli_config_parse(int argc, char **argv, const char *optstring,
                             const struct option *longopts, const cli_flag_t *flags,
                             cli_other_fn other, void *opaque, config_t *conf, char *errstr,
                             size_t errstr_size);

#endif
