/*
 * fuzz_config.c — libFuzzer harness for the configuration file parser
 * (config_load_file(), common/config.h): `key = value` lines, comments,
 * quotes, every key's type and range, kafka.* pass-through to librdkafka,
 * then the cross-key checks (config_finish()), the DLQ topic name and
 * the registry URL check that start-up runs on a loaded file.
 *
 * Input: the file's bytes.  config_load_file() takes a path, so the bytes
 * go into an anonymous memory file opened through /proc/self/fd.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "consumer/registry.h"

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    fd = memfd_create("rapport-fuzz-config", MFD_CLOEXEC);
    if (fd < 0) abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    config_t *c = config_new();
    if (!c) abort();
    char err[512];
    err[0] = '\0';
    if (config_load_file(c, path, err, sizeof err) != 0) {
        if (!err[0]) abort(); /* every failure says why */
    } else if (config_finish(c, err, sizeof err) == 0) {
        if (!config_dlq_topic(c)[0]) abort();
        if (*c->schema_registry_url)
            (void)registry_url_check(c->schema_registry_url, err, sizeof err);
    }
    config_free(c);
    return 0;
}
