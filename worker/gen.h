/* gen.h: what the four files of `wanfarm generate` share (prefix gen_): cmd_generate.c
 * (options, one process), job.c (the queue as requests: the local form of a job spec),
 * gen_output.c (per-video outputs: MP4, PNG, contact sheet, latents, progress lines) and
 * gen_dist.c (several MPI ranks: the layout and the distributed run).
 * Internal to the command; not a library interface.
 */
#ifndef GEN_GEN_H
#define GEN_GEN_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint.h"
#include "comm.h"
#include "layout.h"
#include "pipeline.h"
#include "video_out.h"

#define PROG "wanfarm generate"
#define GEN_WATCHDOG_DEFAULT 600.0 /* s: the watchdog's floor (gen_dist.c) */
#define GEN_WATCHDOG_MAX 604800.0  /* s: a week */
#define GEN_WATCHDOG_FACTOR 10.0   /* a call may wait this many of the longest step */

typedef struct gen_opts {
    const char **prompts;      /* [nprompts], in command-line order (--prompt and --prompt-file) */
    int64_t nprompts, prompts_cap;
    char **owned;              /* [nowned] the texts read from --prompt-file (freed at the end) */
    int64_t nowned, owned_cap;
    int64_t count;
    const char *model, *out, *latents_in, *save_latents, *frames_dir, *sheet;
    bool have_seed, json;
    int64_t threads, fps, crf;
    int placement;             /* -1: left to the planner, else an ly_placement */
    ly_layout layout;          /* ulysses/vae_ranks 0: left to the planner */
    int cfg_par;               /* -1 free, 0, 1 */
    int replicas;              /* 0: the planner's (1 when the layout is given) */
    double mem_gb;             /* 0: host memory / local ranks */
    const char *cost;          /* planner cost file, or NULL */
    double watchdog;           /* seconds: the watchdog's floor under MPI (0: off) */
    int device;                /* GEN_DEV_AUTO, GEN_DEV_CPU, GEN_DEV_CUDA (--device) */
    int device_index;          /* cuda:N */
    int precision;             /* -1: the device's default, else a wk_precision (--precision) */
    const char *ckpt_dir;      /* --checkpoint-dir, or NULL */
    int64_t ckpt_every;        /* --checkpoint-every (0: only when stopped by a signal) */
    bool resume;               /* --resume */
} gen_opts;

enum { GEN_DEV_AUTO = 0, GEN_DEV_CPU, GEN_DEV_CUDA };

/* --device auto|cpu|cuda[:N] and --precision bf16|fp32 into o (gen_device.c): WF_EXIT_OK or
 * WF_EXIT_USAGE after the message. */
int gen_parse_device(const char *v, gen_opts *o);
int gen_parse_precision(const char *v, gen_opts *o);
/* The backend a single-process run computes on (gen_device.c): CUDA when asked or, for auto,
 * when a device is usable (else the CPU, said once on stderr unless quiet); the CPU with
 * o->threads. *exit_code is WF_EXIT_USAGE for a combination that cannot run (bf16 on the CPU),
 * WF_EXIT_FAIL otherwise; err says why. */
wf_status gen_backend_new(const gen_opts *o, bool quiet, wk_backend **be, int *exit_code,
                          wf_err *err);
/* Under mpirun/srun (gen_device.c; collective over world): the GPU this rank computes on, or
 * *be NULL for the CPU (--device cpu; auto when any rank of the world has no usable GPU, said
 * once unless quiet). A GPU rank takes the device cm_bind_gpu gives it (one physical GPU per
 * rank; WANFARM_SHARE_GPU=1 lets ranks share, for tests); *mem: its memory in bytes (0 on the
 * CPU). Every rank returns the same status: *exit_code WF_EXIT_USAGE for --precision bf16 on
 * CPU ranks, WF_EXIT_FAIL otherwise. */
wf_status gen_backend_ranks(const gen_opts *o, cm_comm *world, bool quiet, wk_backend **be,
                            double *mem, int *exit_code, wf_err *err);

/* The output context of the video in progress (one at a time on a rank: set up when the video
 * starts, released once it is written, so that memory stays flat over a queue of any length). */
typedef struct gen_ctx {
    vout_mp4 *mp4;
    const char *mp4_path; /* opened at the first frame */
    bool mine;            /* this rank writes this job's outputs */
    int fps, crf;
    int64_t job;          /* -1 when there is one job (file names without -K) */
    int64_t gjob;         /* the job's index in the queue */
    int rank;             /* for progress lines under MPI (-1: single process) */
    const char *frames_dir;
    uint8_t *rgb8;
    size_t rgb8_cap;
    int64_t written;
    bool json;
    double t_start;
    bool sheet;       /* keep every 8-bit frame for the contact sheet */
    uint8_t *kept;    /* [kept_cap, H, W, 3]: the first n_kept frames */
    int64_t n_kept, kept_cap, kept_w, kept_h;
    int64_t frames_hint; /* the frames the video will have */
} gen_ctx;

typedef struct gen_run {
    gen_opts *o;
    const pl_request *base;    /* what every job shares (size, steps, ...) */
    const float *lat0;         /* --latents, or NULL */
    int64_t njobs;
    int64_t shape[4];          /* latents [C, T, h, w] (every job has the same size) */
    int rank, size;
    bool quiet; /* not world rank 0: input errors are printed once */
    bool writer;               /* this rank writes the outputs of its worker world's jobs */
    int replicas, replica;     /* job k belongs to worker world k % replicas */
    /* the job in progress (gen_job_begin .. gen_job_end) */
    pl_request req;
    gen_ctx ctx;
    float *lat_out;            /* [C T h w] for --save-latents, or NULL */
    bool active;
    /* totals of the finished jobs this rank wrote */
    int64_t videos, frames;
    /* --checkpoint-dir (gen_ckpt.c): the job's file and what it must match, the loaded one */
    char ck_path[4200], ck_name[64];
    ck_meta ck_want;
    ck_data ck;
    uint64_t model_id;
    bool have_model_id;
} gen_run;

/* ---- the farm's hooks (cmd_worker.c): generate as one job of a worker world ---- */

/* When gen_farm_hooks is set, generate runs as a farm job: its checkpoint file is ckpt_name in
 * --checkpoint-dir, and the hooks hear of its steps and checkpoints on the rank that reports
 * them (the group's rank 0) and of the work's failure (failed: on one rank, after the message;
 * under MPI on the rank that saw it, before MPI_Abort ends the world). cancelled is polled at each step report: true asks the run to stop
 * after a checkpoint (as SIGTERM does). NULL (plain generate): none of this. */
typedef struct gen_hooks {
    void *ctx;
    const char *ckpt_name;
    void (*progress)(void *ctx, const pl_progress *pr);
    void (*checkpoint)(void *ctx, int64_t step, const char *name);
    bool (*cancelled)(void *ctx);
    void (*failed)(void *ctx, const char *msg);
    unsigned parts; /* the components a run loads (PL_PART_*; 0: all; under MPI its experts
                     * only, where the layout loads them) */
    bool keep;      /* a one-process run keeps its backend and pipeline for the next job of the
                     * same model and device (released by gen_release_kept) */
} gen_hooks;
extern const gen_hooks *gen_farm_hooks;
void gen_release_kept(void);

/* `wanfarm generate ARGS` on an initialised MPI (mpi) or none, as world rank `rank` of `size`:
 * its exit code. cmd_generate is MPI_Init, this, MPI_Finalize. */
int gen_main(int argc, char **argv, bool mpi, int rank, int size);

/* ---- gen_ckpt.c: checkpoints and resume ---- */

#define WF_EXIT_STOPPED 3 /* stopped by SIGTERM/SIGUSR1 after a checkpoint: --resume continues */
/* SIGTERM and SIGUSR1 ask the run to stop between two steps (after a checkpoint). */
void gen_ckpt_signals(void);
/* The stop flag those signals set: asked (by a signal or the program), by a signal; the
 * program's own request (a cancel, a stage's end), and its clearing (a signal's stays). */
bool gen_ckpt_stop_asked(void);
bool gen_ckpt_signalled(void);
void gen_ckpt_request_stop(void);
void gen_ckpt_clear_stop(void);
/* Job k (g->req just made): its checkpoint hook and, with --resume, its start from the newest
 * usable checkpoint (said on stderr). */
wf_status gen_ckpt_setup(gen_run *g, int64_t k, wf_err *err);
void gen_ckpt_end(gen_run *g);

/* ---- job.c: the queue as requests ---- */

/* The path of job k of n: base itself when n == 1 or base is a character device (/dev/null takes
 * every video), else "-k" before the extension. */
void gen_job_path(const char *base, int64_t k, int64_t n, char *out, size_t cap);
/* Reads 'latents' [1, C, T, h, w] F32 from a safetensors file and checks it against shape and
 * that every value is finite (WF_EINVAL naming the option, the file and the shape it must have or
 * the first bad element). */
wf_status gen_read_latents(const char *path, const int64_t shape[4], float **out, wf_err *err);
/* Job k of the queue starts on this rank: g->req and g->ctx (its outputs when g->writer and
 * k % replicas == replica; g->lat_out for --save-latents). WF_ENOMEM only. */
wf_status gen_job_begin(gen_run *g, int64_t k, wf_err *err);
/* Releases the job in progress (its MP4 if still open, frames, latents) and counts what it wrote.
 * Accepts a run with no job in progress. */
void gen_job_end(gen_run *g);
void gen_free_run(gen_run *g);
/* The prompt list: gen_add_prompt appends a --prompt (borrowed text); gen_add_prompt_lines
 * appends one prompt per line of the text b[0..n) of --prompt-file path, taking b (freed by
 * gen_free_opts): lines that are empty or only blanks are skipped, a final '\r' is dropped
 * (CRLF files), the cleaning and truncation are the pipeline's as for --prompt. WF_EINVAL names
 * the file (a NUL byte, no prompt at all), WF_ENOMEM. */
wf_status gen_add_prompt(gen_opts *o, const char *text, wf_err *err);
wf_status gen_add_prompt_lines(gen_opts *o, const char *path, char *b, size_t n, wf_err *err);
/* Reads all of a file ('-': stdin) into a NUL-terminated buffer of at most GEN_PROMPT_FILE_MAX
 * bytes (WF_EIO, WF_EINVAL past the limit, WF_ENOMEM; messages name --prompt-file and the file). */
#define GEN_PROMPT_FILE_MAX ((size_t)64 << 20)
wf_status gen_slurp(const char *path, char **out, size_t *n, wf_err *err);
wf_status gen_read_prompt_file(gen_opts *o, const char *path, wf_err *err);
void gen_free_opts(gen_opts *o);

/* ---- gen_output.c: what the writer does with a job ---- */

double gen_now(void); /* CLOCK_MONOTONIC seconds */
/* The pipeline's callbacks, with a gen_ctx: decoded frames (MP4, PNG, contact sheet) and
 * progress lines. */
wf_status gen_on_frames(void *ctx, int64_t first, int64_t n, int64_t H, int64_t W,
                        const float *rgb, wf_err *err);
void gen_on_progress(void *ctx, const pl_progress *pr);
/* Job k's outputs after the work (MP4 close, contact sheet, latents), from the job in progress. */
int gen_finish_outputs(gen_run *g, int64_t k);
void gen_report_done(const gen_run *g, double t0);

/* ---- gen_dist.c ---- */

/* Tasks of the srun step that started us (0: not in an srun step). */
long gen_srun_tasks(void);
/* Started by mpirun or srun (then MPI is initialised)? */
bool gen_under_launcher(void);
/* Several ranks: the layout (flags or planner) and the distributed pipeline (pl_dist.h). */
int gen_run_dist(gen_run *g, pl_request *base, double t0);

#endif
