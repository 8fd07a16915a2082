/* gen_output.c: the outputs of `wanfarm generate` (see gen.h): per video, the MP4 (opened
 * at its first frame), PNG frames, the contact sheet and the final latents, written by the rank
 * that writes the video; progress lines and the final report. The jobs themselves are job.c's
 * (one in progress at a time: its frames and latents are released once it is written).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gen.h"
#include "cmds.h"
#include "safetensors.h"

/* Keeps a copy of one 8-bit frame for the contact sheet, in one block for the whole video (one
 * allocation of the video's size, given back whole when it is released). */
static wf_status keep_frame(gen_ctx *g, const uint8_t *rgb, size_t fs, int64_t W, int64_t H,
                            wf_err *err) {
    if (g->n_kept && (W != g->kept_w || H != g->kept_h))
        return wf_fail(err, WF_EINVAL, "frames of different sizes for the contact sheet");
    if (g->n_kept == g->kept_cap) {
        int64_t c = g->kept_cap ? 2 * g->kept_cap : (g->frames_hint > 0 ? g->frames_hint : 16);
        uint8_t *q = realloc(g->kept, (size_t)c * fs);
        if (!q) return wf_fail(err, WF_ENOMEM, "out of memory for the contact sheet");
        g->kept = q;
        g->kept_cap = c;
    }
    memcpy(g->kept + (size_t)g->n_kept * fs, rgb, fs);
    g->n_kept++;
    g->kept_w = W;
    g->kept_h = H;
    return WF_OK;
}

/* The contact sheet: about square, frames shrunk so that the sheet stays near 2048 px wide. */
static wf_status write_sheet(const gen_ctx *g, const char *path, wf_err *err) {
    if (g->n_kept == 0) return wf_fail(err, WF_EINVAL, "no frames were decoded");
    int cols = (int)ceil(sqrt((double)g->n_kept));
    int shrink = 1;
    while (g->kept_w / shrink * cols > 2048 && shrink < 16) shrink *= 2;
    const uint8_t **frames = malloc((size_t)g->n_kept * sizeof *frames);
    if (!frames) return wf_fail(err, WF_ENOMEM, "out of memory for the contact sheet");
    const size_t fs = (size_t)(g->kept_w * g->kept_h * 3);
    for (int64_t i = 0; i < g->n_kept; i++) frames[i] = g->kept + (size_t)i * fs;
    wf_status st = vout_contact_sheet(path, frames, (int)g->n_kept, (int)g->kept_w,
                                      (int)g->kept_h, cols, shrink, err);
    free(frames);
    return st;
}

wf_status gen_on_frames(void *ctx, int64_t first, int64_t n, int64_t H, int64_t W,
                        const float *rgb, wf_err *err) {
    gen_ctx *g = ctx;
    if (g->mp4_path && !g->mp4) {
        wf_status st = vout_mp4_open(&g->mp4, g->mp4_path, (int)W, (int)H, g->fps, g->crf, err);
        if (st) {
            wf_err_prefix(err, "--out %s: ", g->mp4_path);
            return st;
        }
    }
    size_t fs = (size_t)(H * W * 3);
    if (g->rgb8_cap < fs) {
        uint8_t *q = realloc(g->rgb8, fs);
        if (!q) return wf_fail(err, WF_ENOMEM, "out of memory for a frame");
        g->rgb8 = q;
        g->rgb8_cap = fs;
    }
    for (int64_t k = 0; k < n; k++) {
        vae_to_rgb8(rgb + (size_t)k * fs, fs, g->rgb8);
        wf_status st;
        if (g->mp4 && (st = vout_mp4_write(g->mp4, g->rgb8, err))) return st;
        if (g->frames_dir) {
            char path[4200];
            if (g->job >= 0)
                snprintf(path, sizeof path, "%s/job%lld_frame_%05lld.png", g->frames_dir,
                         (long long)g->job, (long long)(first + k));
            else
                snprintf(path, sizeof path, "%s/frame_%05lld.png", g->frames_dir,
                         (long long)(first + k));
            if ((st = vout_png_write(path, g->rgb8, (int)W, (int)H, err))) return st;
        }
        if (g->sheet && (st = keep_frame(g, g->rgb8, fs, W, H, err))) return st;
        g->written++;
    }
    return WF_OK;
}

void gen_on_progress(void *ctx, const pl_progress *pr) {
    gen_ctx *g = ctx;
    double per = pr->elapsed_seconds / (double)(pr->step + 1 - pr->first_step);
    double eta = per * (double)(pr->steps - pr->step - 1);
    if (g->json) {
        printf("{\"event\":\"step\",\"job\":%lld,\"group\":%d,\"rank\":%d,\"step\":%lld,"
               "\"steps\":%lld,\"expert\":\"%s\",\"timestep\":%g,\"guidance\":%g,"
               "\"step_seconds\":%.4f,\"elapsed_seconds\":%.4f,\"eta_seconds\":%.2f,"
               "\"wall_end\":%.6f,\"comm_seconds\":%.4f,\"comm_bytes\":%llu,"
               "\"gemm_seconds\":%.4f,\"attention_seconds\":%.4f,\"other_seconds\":%.4f,"
               "\"alltoall_seconds\":%.4f,\"allgather_seconds\":%.4f,\"sendrecv_seconds\":%.4f,"
               "\"bcast_seconds\":%.4f,\"mem_peak_bytes\":%llu,\"mem_workspace_bytes\":%llu,"
               "\"mem_live_bytes\":%llu,\"device_used_bytes\":%llu}\n",
               (long long)g->gjob, pr->group, g->rank < 0 ? 0 : g->rank, (long long)(pr->step + 1),
               (long long)pr->steps, pr->expert ? "transformer_2" : "transformer", pr->timestep,
               pr->guidance, pr->step_seconds, pr->elapsed_seconds, eta, pr->wall_end,
               pr->comm_seconds, (unsigned long long)pr->comm_bytes, pr->op_seconds[WK_T_GEMM],
               pr->op_seconds[WK_T_ATTN], pr->op_seconds[WK_T_OTHER],
               pr->comm_op_seconds[CM_ALLTOALL], pr->comm_op_seconds[CM_ALLGATHER],
               pr->comm_op_seconds[CM_SEND] + pr->comm_op_seconds[CM_RECV],
               pr->comm_op_seconds[CM_BCAST], (unsigned long long)pr->mem_peak,
               (unsigned long long)pr->mem_workspace, (unsigned long long)pr->mem_live, (unsigned long long)pr->device_used);
        fflush(stdout);
    } else if (g->rank >= 0) {
        fprintf(stderr,
                "[rank %d, job %lld] step %lld/%lld  %-13s  t=%-7g  %.2f s/step (%.2f s in "
                "collectives, %.1f MB sent; ops: gemm %.2f, attention %.2f, other %.2f s; "
                "peak %.0f MiB)\n",
                g->rank, (long long)g->gjob, (long long)(pr->step + 1), (long long)pr->steps,
                pr->expert ? "transformer_2" : "transformer", pr->timestep, pr->step_seconds,
                pr->comm_seconds, (double)pr->comm_bytes / 1e6, pr->op_seconds[WK_T_GEMM],
                pr->op_seconds[WK_T_ATTN], pr->op_seconds[WK_T_OTHER],
                (double)pr->mem_peak / (1 << 20));
    } else {
        fprintf(stderr, "step %lld/%lld  %-13s  t=%-7g  %.2f s/step  ETA %.0f s  (gemm %.2f, "
                "attention %.2f, other %.2f s; peak %.0f MiB)\n",
                (long long)(pr->step + 1), (long long)pr->steps,
                pr->expert ? "transformer_2" : "transformer", pr->timestep, per, eta,
                pr->op_seconds[WK_T_GEMM], pr->op_seconds[WK_T_ATTN], pr->op_seconds[WK_T_OTHER],
                (double)pr->mem_peak / (1 << 20));
    }
    if (gen_farm_hooks) {
        if (gen_farm_hooks->progress) gen_farm_hooks->progress(gen_farm_hooks->ctx, pr);
        if (gen_farm_hooks->cancelled && gen_farm_hooks->cancelled(gen_farm_hooks->ctx))
            gen_ckpt_request_stop();
    }
}

double gen_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Per job outputs after the work (writer only). */
int gen_finish_outputs(gen_run *g, int64_t k) {
    const gen_opts *o = g->o;
    wf_err err;
    char path[4200];
    gen_ctx *c = &g->ctx;
    if (c->mp4 && vout_mp4_close(&c->mp4, &err)) {
        fprintf(stderr, PROG ": --out %s: %s\n", c->mp4_path, err.msg);
        return WF_EXIT_FAIL;
    }
    if (o->sheet) {
        gen_job_path(o->sheet, k, g->njobs, path, sizeof path);
        if (write_sheet(c, path, &err)) {
            fprintf(stderr, PROG ": --contact-sheet %s: %s\n", path, err.msg);
            return WF_EXIT_FAIL;
        }
    }
    if (o->save_latents) {
        gen_job_path(o->save_latents, k, g->njobs, path, sizeof path);
        int64_t s5[5] = {1, g->shape[0], g->shape[1], g->shape[2], g->shape[3]};
        if (vout_h5_write_latents(path, g->lat_out, 5, s5, &err)) {
            fprintf(stderr, PROG ": --save-latents %s: %s\n", path, err.msg);
            return WF_EXIT_FAIL;
        }
    }
    return WF_EXIT_OK;
}

void gen_report_done(const gen_run *g, double t0) {
    const int64_t frames = g->frames, videos = g->videos;
    const gen_opts *o = g->o;
    if (o->json)
        printf("{\"event\":\"done\",\"rank\":%d,\"videos\":%lld,\"frames\":%lld,"
               "\"seconds\":%.3f}\n",
               g->rank, (long long)videos, (long long)frames, gen_now() - t0);
    else
        fprintf(stderr, PROG ": done in %.1f s (%lld video%s, %lld frames)%s%s\n", gen_now() - t0,
                (long long)videos, videos == 1 ? "" : "s", (long long)frames,
                o->out ? ", " : "", o->out ? o->out : "");
}
