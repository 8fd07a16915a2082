/* main.c: the `wanfarm` program: subcommand dispatch, --help and exit codes.
 *
 *   wanfarm inspect PATH      tensors and configs of a safetensors file, sharded index or
 *                             Diffusers folder
 *   wanfarm devices           CUDA devices, runtime, cuBLASLt and NCCL versions
 *   wanfarm generate ...     text to video with a Diffusers WanPipeline folder
 *   wanfarm mkmodel DIR      a random-weight Wan2.2 T2V Diffusers folder (demos, tests)
 *   wanfarm worker ...       a worker world of the farm (wanfarm-coord's jobs)
 *   wanfarm version
 * Exit codes: 0 success, 1 the input is bad or the work failed (one line on stderr says why),
 * 2 bad command line.
 */
#include <stdio.h>
#include <string.h>

#include "cmds.h"

#ifndef WANFARM_VERSION
#define WANFARM_VERSION "0.1.0"
#endif

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"inspect", cmd_inspect, "list the tensors and configs of a checkpoint"},
    {"devices", cmd_devices, "list CUDA devices and library versions"},
    {"generate", cmd_generate, "generate a video from a text prompt"},
    {"mkmodel", cmd_mkmodel, "write a random-weight Wan2.2 model folder (demos, tests)"},
    {"plan", cmd_plan, "choose a layout for N ranks and predict step time and memory"},
#ifdef WANFARM_HAVE_FARM
    {"worker", cmd_worker, "serve a farm coordinator's jobs as one worker world"},
#endif
};

static void usage(FILE *f) {
    fprintf(f, "usage: wanfarm COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "  %-10s %s\n", "version", "print the version");
    fprintf(f, "\n'wanfarm COMMAND --help' describes one command.\n"
               "exit codes: 0 success, 1 bad input or failed work, 2 bad command line\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return WF_EXIT_USAGE;
    }
    const char *c = argv[1];
    if (!strcmp(c, "-h") || !strcmp(c, "--help") || !strcmp(c, "help")) {
        usage(stdout);
        return WF_EXIT_OK;
    }
    if (!strcmp(c, "version") || !strcmp(c, "--version")) {
        printf("wanfarm %s\n", WANFARM_VERSION);
        return WF_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(c, commands[i].name)) return commands[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "wanfarm: unknown command '%s' (try 'wanfarm --help')\n", c);
    return WF_EXIT_USAGE;
}
