/* video_out.h: writing generated videos and their by-products (prefix vout_).
 *
 * What it is: an H.264 MP4 writer over FFmpeg's libavformat/libavcodec (libx264, yuv420p, fps from
 * the model), fed frame by frame as the VAE's streaming decode finishes them; 8-bit RGB PNG frames
 * (frame_00000.png, ... through libavcodec's PNG encoder); a contact sheet PNG (a grid of frames for
 * a quick look); and the final latents as an HDF5 file (f32 dataset /latents).
 * What it is not: a video encoder of our own (FFmpeg does the encoding).
 * Tested by: tests/test_video_out.c (ffprobe reads the MP4 back; PNG and HDF5 read back exactly).
 *
 * Frames are interleaved 8-bit RGB, [H, W, 3], row-major.
 */
#ifndef VOUT_VIDEO_OUT_H
#define VOUT_VIDEO_OUT_H

#include <stdint.h>

#include "status.h"

typedef struct vout_mp4 vout_mp4;

/* Opens path for an H.264 MP4 of w x h frames at fps (w and h must be even: yuv420p). crf: x264's
 * quality (18 is visually lossless; 0 < crf <= 51). Written to a temporary name beside path and
 * renamed into place by vout_mp4_close, so a reader never sees a partial file. */
wf_status vout_mp4_open(vout_mp4 **out, const char *path, int w, int h, int fps, int crf, wf_err *err);
wf_status vout_mp4_write(vout_mp4 *v, const uint8_t *rgb, wf_err *err);
/* Flushes the encoder, writes the trailer and renames the file into place. */
wf_status vout_mp4_close(vout_mp4 **v, wf_err *err);
/* Abandons the file (removes the temporary); accepts NULL. */
void vout_mp4_abort(vout_mp4 **v);
/* Frames accepted so far by vout_mp4_write (0 for NULL). */
int64_t vout_mp4_frame_count(const vout_mp4 *v);

/* One 8-bit RGB PNG. */
wf_status vout_png_write(const char *path, const uint8_t *rgb, int w, int h, wf_err *err);
/* A contact sheet: n frames of w x h laid out in `cols` columns (rows as needed), each scaled by
 * 1/`shrink` (nearest), on a black background. */
wf_status vout_contact_sheet(const char *path, const uint8_t *const *frames, int n, int w, int h,
                             int cols, int shrink, wf_err *err);

/* HDF5: f32 dataset /latents of the given shape (up to 5 dims), plus string attributes. */
wf_status vout_h5_write_latents(const char *path, const float *data, int ndim, const int64_t *shape,
                                wf_err *err);
/* The same, with n_attrs string attributes on /latents: attrs = {key0, value0, key1, value1, ...}.
 * vout_h5_write_latents writes the one attribute producer=wanfarm. */
wf_status vout_h5_write_latents_meta(const char *path, const float *data, int ndim,
                                     const int64_t *shape, const char *const *attrs, int n_attrs,
                                     wf_err *err);
/* Reads /latents back: *data malloc'd; shape filled (ndim <= 5). */
wf_status vout_h5_read_latents(const char *path, float **data, int *ndim, int64_t *shape,
                               wf_err *err);

#endif
