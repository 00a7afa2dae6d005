/*
 * options.c — see options.h.  Runs on main's thread, before anything
 * starts.
 */
#include "cli/options.h"

#include <stdio.h>
#include <string.h>

/* Splits "key=value" into kbuf and *val.  -1 with errstr. */
static int split_kv(const char *arg, char *kbuf, size_t ksize, const char **val, char *errstr,
                    size_t errstr_size) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || (size_t)(eq - arg) >= ksize) {
        snprintf(errstr, errstr_size, "-X %s: expected key=value", arg);
        return -1;
    }
    memcpy(kbuf, arg, (size_t)(eq - arg));
    kbuf[eq - arg] = '\0';
    *val = eq + 1;
    return 0;
}

cli_parse_t cli_config_parse(int argc, char **argv, const char *optstring,
                             const struct option *longopts, const cli_flag_t *flags,
                             cli_other_fn other, void *opaque, config_t *conf, char *errstr,
                             size_t errstr_size) {
    const char *file = NULL;
    int opt;
    errstr[0] = '\0';
    /* First pass: the file, so that flags override it whatever their order. */
    optind = 1;
    while ((opt = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        if (opt == 'c') file = optarg;
        if (opt == 'h') return CLI_HELP;
        if (opt == '?') return CLI_BAD;
    }
    if (optind < argc) {
        snprintf(errstr, errstr_size, "unexpected argument \"%s\"", argv[optind]);
        return CLI_BAD;
    }
    if (file && config_load_file(conf, file, errstr, errstr_size) != 0) return CLI_BAD;
    optind = 1;
    while ((opt = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        const char *key = NULL, *val = optarg;
        char kbuf[256];
        if (opt == 'c') continue;
        if (opt == 'X') {
            if (split_kv(optarg, kbuf, sizeof(kbuf), &val, errstr, errstr_size) != 0)
                return CLI_BAD;
            key = kbuf;
        }
        for (const cli_flag_t *f = flags; !key && f && f->key; f++)
            if (f->opt == opt) key = f->key;
        if (key) {
            if (config_set(conf, key, val, errstr, errstr_size) != 0) return CLI_BAD;
        } else if (other && other(opaque, opt, optarg, errstr, errstr_size) != 0) {
            return CLI_BAD;
        }
    }
    return CLI_OK;
}
