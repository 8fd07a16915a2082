/* video_none.c: the MP4, PNG and contact-sheet writers of video_out.h in a build without FFmpeg
 * (-DWANFARM_FFMPEG=OFF, the GPU check profile): each refuses with WF_EUNSUPPORTED and what to do.
 * The HDF5 latents (video_h5.c) are there in every build. `wanfarm generate` refuses these outputs
 * before the work (outputs.c); these refusals are for any other caller.
 * Tested by: tests/test_outputs_noffmpeg.sh in such a build (the refusal before the work).
 */
#include "video_out.h"

#define VOUT_NO_FFMPEG "built without FFmpeg: write .h5 latents or rebuild with -DWANFARM_FFMPEG=ON"

wf_status vout_mp4_open(vout_mp4 **out, const char *path, int w, int h, int fps, int crf,
                        wf_err *err) {
    (void)w, (void)h, (void)fps, (void)crf;
    if (out) *out = NULL;
    return wf_fail(err, WF_EUNSUPPORTED, "%s: MP4 output: " VOUT_NO_FFMPEG, path);
}

wf_status vout_mp4_write(vout_mp4 *v, const uint8_t *rgb, wf_err *err) {
    (void)v, (void)rgb;
    return wf_fail(err, WF_EUNSUPPORTED, "MP4 output: " VOUT_NO_FFMPEG);
}

wf_status vout_mp4_close(vout_mp4 **v, wf_err *err) {
    if (!v || !*v) return WF_OK; /* nothing was opened: vout_mp4_open never succeeds here */
    return wf_fail(err, WF_EUNSUPPORTED, "MP4 output: " VOUT_NO_FFMPEG);
}

void vout_mp4_abort(vout_mp4 **v) {
    if (v) *v = NULL;
}

int64_t vout_mp4_frame_count(const vout_mp4 *v) {
    (void)v;
    return 0;
}

wf_status vout_png_write(const char *path, const uint8_t *rgb, int w, int h, wf_err *err) {
    (void)rgb, (void)w, (void)h;
    return wf_fail(err, WF_EUNSUPPORTED, "%s: PNG output: " VOUT_NO_FFMPEG, path);
}

wf_status vout_contact_sheet(const char *path, const uint8_t *const *frames, int n, int w, int h,
                             int cols, int shrink, wf_err *err) {
    (void)frames, (void)n, (void)w, (void)h, (void)cols, (void)shrink;
    return wf_fail(err, WF_EUNSUPPORTED, "%s: contact sheet (PNG): " VOUT_NO_FFMPEG, path);
}
