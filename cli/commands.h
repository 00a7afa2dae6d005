/*
 * commands.h — the subcommands of bin/rapport.
 *
 * cli/main.c dispatches `rapport <command> args…` to cmd_<command>(argc - 1,
 * argv + 1): argv[0] is the command's name.  Each returns the process's
 * exit status: 0 success, 1 failure at run time, 2 bad arguments or
 * configuration.
 */
#ifndef RAPPORT_COMMANDS_H
#define RAPPORT_COMMANDS_H

/* `rapport run`: the stream processor (cli/run.c). */
int cmd_run(int argc, char **argv);

/* `rapport demo`: the whole pipeline on this machine (cli/demo.c). */
int cmd_demo(int argc, char **argv);

/* `rapport top`: a live view of what Redis holds (cli/top.c). */
int cmd_top(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_dashboard(int argc, char **argv);

/* `rapport gen`: synthetic customer stories to a Kafka topic (cli/gen.c). */
int cmd_gen(int argc, char **argv);

/* `rapport forget`: a tombstone per customer to erase (cli/forget.c). */
int cmd_forget(int argc, char **argv);

/* `rapport mock-kafka`: librdkafka's mock cluster as a standalone broker
 * (cli/mock_kafka.c). */
int cmd_mock_kafka(int argc, char **argv);

#endif
