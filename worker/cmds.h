/* cmds.h: the subcommands of the `wanfarm` program (prefix cmd_). Each takes the arguments after
 * its name and returns the process exit code (see main.c for the codes). */
#ifndef CMD_CMDS_H
#define CMD_CMDS_H

enum {
    WF_EXIT_OK = 0,
    WF_EXIT_FAIL = 1,  /* the input was read and is bad, or the work failed */
    WF_EXIT_USAGE = 2, /* bad command line */
};

int cmd_inspect(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_plan(int, char **);

#endif
