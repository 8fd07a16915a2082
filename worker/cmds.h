/* cmds.h: the subcommands of the `wanfarm` program (prefix cmd_). Each takes the arguments after
 * its name and returns the process exit code (see main.c for the codes). */
#ifndef CMD_CMDS_H
#define CMD_CMDS_H

#include <stdbool.h>
#include <stdint.h>

enum {
    WF_EXIT_OK = 0,
    WF_EXIT_FAIL = 1,  /* the input was read and is bad, or the work failed */
    WF_EXIT_USAGE = 2, /* bad command line */
};

/* Whole-string number parsing for option values (cmd_args.c): false on anything but a number
 * that fits (no trailing characters; f64: finite; int: in [lo, hi]). */
bool cmd_parse_i64(const char *s, int64_t *out);
bool cmd_parse_u64(const char *s, uint64_t *out);
bool cmd_parse_f64(const char *s, double *out);
bool cmd_parse_int(const char *s, int lo, int hi, int *out);
/* "WIDTHxHEIGHT" (x or X), both whole numbers in [1, CMD_SIZE_MAX] (the model's limits and
 * multiples are the pipeline's check). On false, why gets the rest of a message that begins
 * "--size 'VALUE' ": what is wrong (not the format, zero or negative, too large). */
#define CMD_SIZE_MAX 65536
bool cmd_parse_size(const char *s, int64_t *w, int64_t *h, char *why, size_t cap);
/* Prints "PROG: <message> (see --help)" on stderr and returns WF_EXIT_USAGE. */
int cmd_usage_err(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int cmd_inspect(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_plan(int, char **);
int cmd_worker(int argc, char **argv); /* built with the farm's libraries (WANFARM_HAVE_FARM) */

#endif
