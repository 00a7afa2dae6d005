/*
 * main.c — `rapport`: dispatches to the subcommands.  The only place,
 * with the subcommands' own entry points, where the process exits.
 */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "common/alloc.h"
#include "common/config.h"
#include "common/version.h"

static void usage(FILE *out) {
    fprintf(out,
            "rapport %s — a live connection index per customer, from Kafka to Redis\n\n"
            "usage: rapport <command> [options]\n\n"
            "commands:\n"
            "  run          consume events, score customers, write scores and alerts to Redis\n"
            "  demo         the whole pipeline on this machine (embedded Kafka, private Redis)\n"
            "  top          a live view of the scores, alerts and partitions in Redis\n"
            "  report       the leaders' view: AI, people and both, the organisation, alerts\n"
            "  dashboard    the leaders' view as a web page that refreshes itself\n"
            "  gen          produce synthetic events (Confluent-framed Avro) to a topic\n"
            "  forget       ask rapport to erase customers: a tombstone per customer_id\n"
            "  mock-kafka   run librdkafka's mock cluster as a standalone broker\n"
            "  config-doc   print docs/CONFIG.md, generated from the configuration table\n\n"
            "  rapport <command> --help   shows the command's options\n"
            "  rapport --version\n",
            RAPPORT_VERSION);
}

int main(int argc, char **argv) {
    alloc_init();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("rapport %s\n", RAPPORT_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "demo")) return cmd_demo(argc - 1, argv + 1);
    if (!strcmp(cmd, "top")) return cmd_top(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return cmd_report(argc - 1, argv + 1);
    if (!strcmp(cmd, "dashboard")) return cmd_dashboard(argc - 1, argv + 1);
    if (!strcmp(cmd, "gen")) return cmd_gen(argc - 1, argv + 1);
    if (!strcmp(cmd, "forget")) return cmd_forget(argc - 1, argv + 1);
    if (!strcmp(cmd, "mock-kafka")) return cmd_mock_kafka(argc - 1, argv + 1);
    if (!strcmp(cmd, "config-doc")) {
        config_print_markdown(stdout);
        return 0;
    }
    fprintf(stderr, "rapport: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}
