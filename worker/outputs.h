/* outputs.h: the output preflight of `wanfarm generate` (prefix gen_): before the model loads,
 * every output the options name (--out, --save-latents, --contact-sheet, --frames-dir, with the
 * -K names of every video when there are several) is checked by fileio.h's rules, so that a
 * long run never fails at its last second for a reason known at its first.
 *
 * What it is: the command-level checks, called from cmd_generate.c's check_options only.
 * What it is not: where the files are written (fileio.h, video_out.h, gen_output.c).
 * Tested by: tests/test_outputs.sh.
 */
#ifndef GEN_OUTPUTS_H
#define GEN_OUTPUTS_H

#include <stdint.h>

#include "fileio.h"
#include "gen.h"

/* Per option, the video names checked one by one: all of them up to this many videos, then
 * only the last one (a longer queue is the farm's: it names its outputs per job). */
#define GEN_OUTPUTS_CHECKED_JOBS 4096

/* The names, before anything is created: no empty name, each one a file that can be written
 * (fio_target: not a folder, not a dangling link, no FIFO for the HDF5 latents, not too long),
 * and no two outputs on one file (paths compared resolved: ./, .., symlinks; a PNG frame of
 * --frames-dir counts). Two outputs on one character device (/dev/null) are allowed. WF_EINVAL
 * (a bad command line: empty name, the same file twice) or WF_EIO, naming the option. */
wf_status gen_outputs_check_names(const gen_opts *o, int64_t njobs, wf_err *err);

/* The folders, once --frames-dir exists: in each output's folder a temporary file is created and
 * removed (fio_probe), with the longest name the run will use. WF_EIO naming the option. */
wf_status gen_outputs_probe(const gen_opts *o, int64_t njobs, wf_err *err);

#endif
