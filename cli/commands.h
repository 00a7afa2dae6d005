/*
 * commands.h — the subcommands that cli/main.c dispatches to.  Each takes
 * the arguments after its name (argv[0] is the subcommand) and returns the
 * process exit status: 0 ok, 1 failure, 2 bad usage or configuration.
 */
#ifndef RAPPORT_COMMANDS_H
#define RAPPORT_COMMANDS_H

int cmd_run(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_dashboard(int argc, char **argv);

#endif
