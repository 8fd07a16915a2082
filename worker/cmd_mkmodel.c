/* cmd_mkmodel.c: `wanfarm mkmodel`: writes a random-weight Wan2.2 T2V Diffusers folder
 * (mkmodel.h), for demos and tests on machines without the real 126 GB checkpoint.
 * Exit codes: 0 written; 1 the folder could not be written (or is not empty, without --force);
 * 2 bad command line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "fileio.h"
#include "mkmodel.h"

#define PROG "wanfarm mkmodel"
#define MK_DEFAULT_SEED 20250728u

static void help(void) {
    printf("usage: wanfarm mkmodel [--preset tiny] [--seed N] [--force] DIR\n\n"
           "Writes a random-weight Wan2.2 text-to-video model in the Diffusers layout of\n"
           "Wan-AI/Wan2.2-T2V-A14B-Diffusers (model_index.json, transformer/, transformer_2/,\n"
           "vae/, text_encoder/, tokenizer/, scheduler/) into DIR. Its videos are noise-like:\n"
           "the weights are random, not trained.\n\n"
           "  --preset NAME   model size (%s; default tiny)\n"
           "  --seed N        weight seed (default %u); a seed always gives the same files\n"
           "  --force         write into a non-empty DIR (replacing files of the same names)\n"
           "exit codes: 0 written, 1 DIR not writable or not empty, 2 bad command line\n",
           mk_preset_names(), MK_DEFAULT_SEED);
}

int cmd_mkmodel(int argc, char **argv) {
    const char *preset = "tiny", *dir = NULL;
    uint64_t seed = MK_DEFAULT_SEED;
    bool force = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            help();
            return WF_EXIT_OK;
        } else if (!strcmp(a, "--force")) {
            force = true;
        } else if (!strcmp(a, "--preset") || !strcmp(a, "--seed")) {
            if (i + 1 == argc) {
                fprintf(stderr, PROG ": %s needs a value (see --help)\n", a);
                return WF_EXIT_USAGE;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--preset")) {
                preset = v;
            } else {
                uint64_t s;
                if (!cmd_parse_u64(v, &s)) {
                    fprintf(stderr, PROG ": --seed: bad value '%s' (see --help)\n", v);
                    return WF_EXIT_USAGE;
                }
                seed = s;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, PROG ": unknown option '%s' (see --help)\n", a);
            return WF_EXIT_USAGE;
        } else if (dir) {
            fprintf(stderr, PROG ": one DIR only ('%s' is extra)\n", a);
            return WF_EXIT_USAGE;
        } else {
            dir = a;
        }
    }
    if (!dir) {
        fprintf(stderr, PROG ": missing DIR (see --help)\n");
        return WF_EXIT_USAGE;
    }
    const mk_preset *p = mk_find_preset(preset);
    if (!p) {
        fprintf(stderr, PROG ": unknown preset '%s' (presets: %s)\n", preset, mk_preset_names());
        return WF_EXIT_USAGE;
    }
    int empty = mk_dir_is_empty(dir);
    if (empty < 0) {
        fprintf(stderr, PROG ": %s exists and is not a folder\n", dir);
        return WF_EXIT_FAIL;
    }
    if (!empty && !force) {
        fprintf(stderr, PROG ": %s is not empty; refusing to overwrite it (use --force)\n", dir);
        return WF_EXIT_FAIL;
    }
    wf_err err;
    fio_cleanup_install(); /* a signal while a file is written leaves no temporary behind */
    if (mk_write_model(dir, p, seed, &err)) {
        fprintf(stderr, PROG ": %s\n", err.msg);
        return WF_EXIT_FAIL;
    }
    fprintf(stderr, PROG ": wrote the %s model (seed %llu, random weights) to %s\n", p->name,
            (unsigned long long)seed, dir);
    return WF_EXIT_OK;
}
