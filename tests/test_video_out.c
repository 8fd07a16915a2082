/* test_video_out.c: worker/io/video_out.c (MP4, PNG, contact sheet, HDF5 latents).
 *
 * Checks, reading everything back through independent tools (ffprobe/ffmpeg, h5dump):
 *   - a 17-frame 64x48 video at 16 fps, crf 18: ffprobe sees h264, yuv420p, 64x48, 17 decoded
 *     frames, r_frame_rate 16/1 and duration 17/16 s (within one mp4 tick); ffmpeg's decode to
 *     rgb24 is within a mean absolute error of 3 levels of the input in every frame. Why 3: the
 *     content is smooth gradients, where crf 18, 4:2:0 chroma and the 8-bit limited-range BT.601
 *     round trip cost under two levels (measured 1.7 mean, 1.9 worst frame); a swapped channel,
 *     a shifted frame or a wrong stride costs tens;
 *   - frame_count counts the frames; writing after close is refused; no temporary files are left;
 *   - PNG (odd size 33x17, random pixels) decodes bit-exactly; the contact sheet has the expected
 *     size and every pixel equals the nearest-neighbour sample of its frame (black where empty);
 *   - HDF5 latents round trip bit-exactly (NaN, Inf, -0 included) and h5dump -H shows a 32-bit float
 *     dataset /latents with the producer attribute;
 *   - odd frame sizes, a folder that does not exist, reading a non-HDF5 file and a missing file
 *     give errors that name the path;
 *   - output targets (fileio.h): files follow the umask (027 here: 0640); a symlink's target is
 *     written and the link kept; a dangling link and a folder are refused; a FIFO with no reader
 *     is refused at once (PNG, MP4), HDF5 and safetensors (st_write) on a FIFO are refused; a
 *     safetensors file through a symlink replaces the target; a FIFO with a reader gets the PNG
 *     byte for byte and a fragmented MP4 that ffprobe plays; as root, private mknod devices in the
 *     test folder: c 1 3 takes PNG, MP4 and HDF5 in place, c 1 7 gives "No space left on device";
 *     a child killed by SIGTERM with an MP4 open (fio_cleanup_install) leaves no temporary, and one
 *     that dies without cleanup has its temporary removed by the next process writing there.
 * ffprobe and ffmpeg are required (scripts/setup.sh installs them); h5dump is optional.
 * Usage: test_video_out
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fileio.h"
#include "safetensors.h"
#include "test_util.h"
#include "video_out.h"

enum { W = 64, H = 48, N = 17, FPS = 16 };

static int have_tool(const char *name) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

/* Runs cmd and reads up to cap bytes of its stdout; returns the byte count, -1 if it failed. */
static long run_read(const char *cmd, void *buf, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = 0, r;
    while (n < cap && (r = fread((char *)buf + n, 1, cap - n, p)) > 0) n += r;
    char extra[256];
    size_t more = 0;
    while ((r = fread(extra, 1, sizeof extra, p)) > 0) more += r; /* drain, count overflow */
    int rc = pclose(p);
    if (rc != 0) return -1;
    return (long)(n + more);
}

/* Value of "key=" in ffprobe's default=nw=1 output, or "" */
static const char *probe_val(const char *out, const char *key, char *val, size_t cap) {
    size_t kl = strlen(key);
    val[0] = 0;
    for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, key, kl) == 0 && l[kl] == '=') {
            const char *v = l + kl + 1;
            size_t n = strcspn(v, "\r\n");
            if (n >= cap) n = cap - 1;
            memcpy(val, v, n);
            val[n] = 0;
            break;
        }
    }
    return val;
}

static void frame_rgb(uint8_t *f, int i) { /* smooth moving gradients */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = f + ((size_t)y * W + x) * 3;
            p[0] = (uint8_t)(40 + x * 2 + i * 3);
            p[1] = (uint8_t)(30 + y * 3 + i);
            p[2] = (uint8_t)(200 - (x + y) - i * 2);
        }
}

static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

static void test_mp4(const char *dir) {
    char path[1024], cmd[2048];
    snprintf(path, sizeof path, "%s/out.mp4", dir);
    uint8_t *in = malloc((size_t)N * W * H * 3);
    for (int i = 0; i < N; i++) frame_rgb(in + (size_t)i * W * H * 3, i);

    wf_err err = {0};
    vout_mp4 *v = NULL;
    wf_status st = vout_mp4_open(&v, path, W, H, FPS, 18, &err);
    TU_CHECK(st == WF_OK, "open: %s", err.msg);
    if (st) goto out;
    for (int i = 0; i < N && !st; i++) {
        st = vout_mp4_write(v, in + (size_t)i * W * H * 3, &err);
        TU_CHECK(st == WF_OK, "write frame %d: %s", i, err.msg);
    }
    TU_CHECK(vout_mp4_frame_count(v) == N, "frame_count %lld, expected %d",
             (long long)vout_mp4_frame_count(v), N);
    FILE *f = fopen(path, "rb");
    TU_CHECK(f == NULL, "%s exists before close (should be a temporary name)", path);
    if (f) fclose(f);
    st = vout_mp4_close(&v, &err);
    TU_CHECK(st == WF_OK && v == NULL, "close: %s", err.msg);
    TU_CHECK(count_tmp_files(dir) == 0, "temporary files left in %s", dir);

    st = vout_mp4_write(v, in, &err);
    TU_CHECK(st == WF_EINVAL && strstr(err.msg, "close"), "write after close: st %d '%s'", st,
             err.msg);

    snprintf(cmd, sizeof cmd,
             "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
             "stream=codec_name,pix_fmt,width,height,nb_read_frames,r_frame_rate,duration "
             "-of default=nw=1 '%s'",
             path);
    char out[4096] = {0}, val[128];
    long n = run_read(cmd, out, sizeof out - 1);
    TU_CHECK(n > 0, "ffprobe failed on %s", path);
    printf("ffprobe: %s", out);
    TU_CHECK(!strcmp(probe_val(out, "codec_name", val, sizeof val), "h264"), "codec %s", val);
    TU_CHECK(!strcmp(probe_val(out, "pix_fmt", val, sizeof val), "yuv420p"), "pix_fmt %s", val);
    TU_CHECK(atoi(probe_val(out, "width", val, sizeof val)) == W, "width %s", val);
    TU_CHECK(atoi(probe_val(out, "height", val, sizeof val)) == H, "height %s", val);
    TU_CHECK(atoi(probe_val(out, "nb_read_frames", val, sizeof val)) == N, "nb_read_frames %s",
             val);
    TU_CHECK(!strcmp(probe_val(out, "r_frame_rate", val, sizeof val), "16/1"), "r_frame_rate %s",
             val);
    double dur = atof(probe_val(out, "duration", val, sizeof val));
    TU_CHECK(fabs(dur - (double)N / FPS) < 1e-3, "duration %s, expected %.4f", val,
             (double)N / FPS);

    /* decode back to rgb24 */
    size_t fb = (size_t)N * W * H * 3;
    uint8_t *dec = malloc(fb + 1);
    snprintf(cmd, sizeof cmd, "ffmpeg -v error -i '%s' -f rawvideo -pix_fmt rgb24 -", path);
    n = run_read(cmd, dec, fb + 1);
    TU_CHECK(n == (long)fb, "decoded %ld bytes, expected %zu", n, fb);
    if (n == (long)fb) {
        double worst = 0, total = 0;
        for (int i = 0; i < N; i++) {
            double s = 0;
            for (size_t k = 0; k < (size_t)W * H * 3; k++) {
                size_t o = (size_t)i * W * H * 3 + k;
                s += abs((int)dec[o] - (int)in[o]);
            }
            s /= (double)W * H * 3;
            total += s;
            if (s > worst) worst = s;
        }
        printf("mp4 round trip: mean abs error %.3f levels (worst frame %.3f)\n", total / N,
               worst);
        TU_CHECK(worst < 3.0, "worst frame mean abs error %.3f >= 3 levels", worst);
    }
    free(dec);
out:
    vout_mp4_abort(&v);
    free(in);
}

static void test_mp4_errors(const char *dir) {
    char path[1024];
    wf_err err = {0};
    vout_mp4 *v = NULL;
    snprintf(path, sizeof path, "%s/odd.mp4", dir);
    wf_status st = vout_mp4_open(&v, path, 63, 48, FPS, 18, &err);
    TU_CHECK(st == WF_EINVAL && v == NULL && strstr(err.msg, "63x48") && strstr(err.msg, "even"),
             "odd width: st %d '%s'", st, err.msg);
    st = vout_mp4_open(&v, path, 64, 47, FPS, 18, &err);
    TU_CHECK(st == WF_EINVAL && v == NULL, "odd height: st %d '%s'", st, err.msg);
    st = vout_mp4_open(&v, path, 64, 48, FPS, 0, &err);
    TU_CHECK(st == WF_EINVAL && strstr(err.msg, "crf"), "crf 0: st %d '%s'", st, err.msg);

    snprintf(path, sizeof path, "%s/no/such/folder/out.mp4", dir);
    st = vout_mp4_open(&v, path, 64, 48, FPS, 18, &err);
    TU_CHECK(st == WF_EIO && v == NULL && strstr(err.msg, path), "missing folder: st %d '%s'", st,
             err.msg);
    printf("missing folder: %s\n", err.msg);
    st = vout_png_write(path, (const uint8_t[3]){1, 2, 3}, 1, 1, &err);
    TU_CHECK(st == WF_EIO && strstr(err.msg, path), "png missing folder: st %d '%s'", st, err.msg);

    /* abort leaves nothing behind */
    snprintf(path, sizeof path, "%s/aborted.mp4", dir);
    st = vout_mp4_open(&v, path, 64, 48, FPS, 18, &err);
    TU_CHECK(st == WF_OK, "open: %s", err.msg);
    uint8_t *f = malloc((size_t)W * H * 3);
    frame_rgb(f, 0);
    if (!st) st = vout_mp4_write(v, f, &err);
    vout_mp4_abort(&v);
    vout_mp4_abort(&v); /* NULL is fine */
    free(f);
    FILE *fp = fopen(path, "rb");
    TU_CHECK(fp == NULL && count_tmp_files(dir) == 0, "abort left files behind");
    if (fp) fclose(fp);
}

/* Decodes a PNG to rgb24 through ffmpeg; returns bytes read. */
static long png_decode(const char *path, uint8_t *buf, size_t cap) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "ffmpeg -v error -i '%s' -f rawvideo -pix_fmt rgb24 -", path);
    return run_read(cmd, buf, cap);
}

static void test_png(const char *dir) {
    char path[1024];
    enum { PW = 33, PH = 17 };
    uint8_t img[PW * PH * 3], back[PW * PH * 3 + 1];
    tu_rng r = tu_rng_new(7);
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)tu_next(&r);
    snprintf(path, sizeof path, "%s/frame_00000.png", dir);
    wf_err err = {0};
    wf_status st = vout_png_write(path, img, PW, PH, &err);
    TU_CHECK(st == WF_OK, "png: %s", err.msg);
    long n = png_decode(path, back, sizeof back);
    TU_CHECK(n == (long)sizeof img && memcmp(img, back, sizeof img) == 0,
             "png round trip: %ld bytes, differs", n);

    /* contact sheet: 5 frames in 3 columns, shrink 2 -> 96x48, last cell black */
    enum { NF = 5, COLS = 3, SHR = 2 };
    uint8_t *fr[NF];
    for (int k = 0; k < NF; k++) {
        fr[k] = malloc((size_t)W * H * 3);
        for (size_t i = 0; i < (size_t)W * H * 3; i++) fr[k][i] = (uint8_t)tu_next(&r);
    }
    snprintf(path, sizeof path, "%s/sheet.png", dir);
    st = vout_contact_sheet(path, (const uint8_t *const *)fr, NF, W, H, COLS, SHR, &err);
    TU_CHECK(st == WF_OK, "sheet: %s", err.msg);
    int tw = W / SHR, th = H / SHR, sw = tw * COLS, sh = th * 2;
    char cmd[2048], out[1024] = {0}, val[64];
    snprintf(cmd, sizeof cmd,
             "ffprobe -v error -show_entries stream=width,height -of default=nw=1 '%s'", path);
    TU_CHECK(run_read(cmd, out, sizeof out - 1) > 0, "ffprobe failed on %s", path);
    TU_CHECK(atoi(probe_val(out, "width", val, sizeof val)) == sw, "sheet width %s, expected %d",
             val, sw);
    TU_CHECK(atoi(probe_val(out, "height", val, sizeof val)) == sh,
             "sheet height %s, expected %d", val, sh);
    size_t sb = (size_t)sw * sh * 3;
    uint8_t *sheet = malloc(sb + 1);
    n = png_decode(path, sheet, sb + 1);
    TU_CHECK(n == (long)sb, "sheet decoded %ld bytes, expected %zu", n, sb);
    if (n == (long)sb) {
        long bad = 0;
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < sw; x++) {
                int k = (y / th) * COLS + x / tw;
                for (int c = 0; c < 3; c++) {
                    int want = k < NF ? fr[k][((size_t)(y % th) * SHR * W + (size_t)(x % tw) * SHR) * 3 + c]
                                      : 0;
                    bad += sheet[((size_t)y * sw + x) * 3 + c] != want;
                }
            }
        TU_CHECK(bad == 0, "contact sheet: %ld wrong values", bad);
    }
    free(sheet);
    for (int k = 0; k < NF; k++) free(fr[k]);
    TU_CHECK(count_tmp_files(dir) == 0, "temporary files left in %s", dir);
}

static void test_h5(const char *dir) {
    char path[1024], cmd[2048];
    snprintf(path, sizeof path, "%s/latents.h5", dir);
    int64_t shape[5] = {1, 16, 5, 6, 8};
    size_t n = 1 * 16 * 5 * 6 * 8;
    float *x = malloc(n * sizeof *x);
    tu_rng r = tu_rng_new(11);
    tu_fill_normal(&r, x, n, 1.0f);
    x[0] = NAN;
    x[1] = INFINITY;
    x[2] = -0.0f;
    x[3] = 1e-42f; /* subnormal */
    wf_err err = {0};
    wf_status st = vout_h5_write_latents(path, x, 5, shape, &err);
    TU_CHECK(st == WF_OK, "h5 write: %s", err.msg);
    float *y = NULL;
    int nd = 0;
    int64_t sh[5] = {0};
    st = vout_h5_read_latents(path, &y, &nd, sh, &err);
    TU_CHECK(st == WF_OK, "h5 read: %s", err.msg);
    if (!st) {
        TU_CHECK(nd == 5 && !memcmp(sh, shape, sizeof shape), "h5 shape: ndim %d", nd);
        TU_CHECK(!memcmp(x, y, n * sizeof *x), "h5 data differ");
    }
    free(y);
    TU_CHECK(count_tmp_files(dir) == 0, "temporary files left in %s", dir);

    if (have_tool("h5dump")) {
        char out[8192] = {0};
        snprintf(cmd, sizeof cmd, "h5dump -H '%s'", path);
        TU_CHECK(run_read(cmd, out, sizeof out - 1) > 0, "h5dump failed on %s", path);
        TU_CHECK(strstr(out, "DATASET \"latents\"") && strstr(out, "H5T_IEEE_F32LE") &&
                     strstr(out, "( 1, 16, 5, 6, 8 )") && strstr(out, "\"producer\""),
                 "h5dump -H: %s", out);
    } else {
        printf("h5dump not found: skipping the header check\n");
    }

    /* a non-HDF5 file, a missing file */
    snprintf(path, sizeof path, "%s/not.h5", dir);
    tu_write_file(path, "hello, not hdf5\n", 16);
    y = NULL;
    st = vout_h5_read_latents(path, &y, &nd, sh, &err);
    TU_CHECK(st == WF_EFORMAT && y == NULL && strstr(err.msg, path) && strstr(err.msg, "HDF5"),
             "non-HDF5: st %d '%s'", st, err.msg);
    printf("non-HDF5: %s\n", err.msg);
    snprintf(path, sizeof path, "%s/missing.h5", dir);
    st = vout_h5_read_latents(path, &y, &nd, sh, &err);
    TU_CHECK(st == WF_EIO && strstr(err.msg, path), "missing: st %d '%s'", st, err.msg);
    /* a FIFO with no writer: refused at once, never opened (HDF5's open would block) */
    snprintf(path, sizeof path, "%s/fifo.h5", dir);
    if (mkfifo(path, 0600) == 0) {
        st = vout_h5_read_latents(path, &y, &nd, sh, &err);
        TU_CHECK(st != WF_OK && strstr(err.msg, path) && strstr(err.msg, "FIFO"),
                 "FIFO latents: st %d '%s'", st, err.msg);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/no/such/folder/l.h5", dir);
    st = vout_h5_write_latents(path, x, 5, shape, &err);
    TU_CHECK(st == WF_EIO && strstr(err.msg, path), "h5 missing folder: st %d '%s'", st, err.msg);
    st = vout_h5_write_latents(path, x, 6, shape, &err);
    TU_CHECK(st == WF_EINVAL, "rank 6: st %d '%s'", st, err.msg);
    free(x);
}

static unsigned mode_of(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (unsigned)(sb.st_mode & 07777) : 0;
}

/* Writes a 17-frame MP4 to path: WF_OK or the first failure (the writer is closed either way). */
static wf_status mp4_all(const char *path, wf_err *err) {
    uint8_t *f = malloc((size_t)W * H * 3);
    vout_mp4 *v = NULL;
    wf_status st = vout_mp4_open(&v, path, W, H, FPS, 18, err);
    for (int i = 0; i < N && !st; i++) {
        frame_rgb(f, i);
        st = vout_mp4_write(v, f, err);
    }
    if (!st) st = vout_mp4_close(&v, err);
    else vout_mp4_abort(&v);
    free(f);
    return st;
}

/* Reads everything from fd into path (the FIFO's reader). */
static void drain_to(int fd, const char *path) {
    FILE *o = fopen(path, "wb");
    char buf[4096];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)r, o);
    fclose(o);
}

static void test_targets(const char *dir) {
    char path[1024], p2[1024], cmd[2048], out[4096];
    enum { PW = 33, PH = 17 };
    uint8_t img[PW * PH * 3];
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i * 7);
    wf_err err = {0};
    wf_status st;
    float lat[16] = {1, 2, 3};
    int64_t lshape[1] = {16};

    /* the umask (027, set in main before anything was written) */
    snprintf(path, sizeof path, "%s/mode.png", dir);
    TU_CHECK(vout_png_write(path, img, PW, PH, &err) == WF_OK, "png: %s", err.msg);
    TU_CHECK(mode_of(path) == 0640, "%s: mode %o, expected 640 (umask 027)", path, mode_of(path));
    snprintf(path, sizeof path, "%s/mode.h5", dir);
    TU_CHECK(vout_h5_write_latents(path, lat, 1, lshape, &err) == WF_OK, "h5: %s", err.msg);
    TU_CHECK(mode_of(path) == 0640, "%s: mode %o, expected 640", path, mode_of(path));
    snprintf(path, sizeof path, "%s/out.mp4", dir); /* test_mp4's */
    TU_CHECK(mode_of(path) == 0640, "%s: mode %o, expected 640", path, mode_of(path));

    /* symlinks: the target is written, the link stays; dangling; a folder */
    snprintf(path, sizeof path, "%s/sub", dir);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/sub/target.png", dir);
    tu_write_file(path, "old", 3);
    snprintf(p2, sizeof p2, "%s/link.png", dir);
    TU_CHECK(symlink("sub/target.png", p2) == 0, "symlink: %s", strerror(errno));
    TU_CHECK(vout_png_write(p2, img, PW, PH, &err) == WF_OK, "png via link: %s", err.msg);
    struct stat sb;
    TU_CHECK(lstat(p2, &sb) == 0 && S_ISLNK(sb.st_mode), "the symlink was replaced");
    TU_CHECK(stat(path, &sb) == 0 && sb.st_size > 3, "the symlink's target was not written");
    snprintf(path, sizeof path, "%s/sub", dir);
    TU_CHECK(count_tmp_files(path) == 0 && count_tmp_files(dir) == 0, "temporaries left");
    snprintf(p2, sizeof p2, "%s/dangling.png", dir);
    TU_CHECK(symlink("nowhere/x.png", p2) == 0, "symlink: %s", strerror(errno));
    st = vout_png_write(p2, img, PW, PH, &err);
    TU_CHECK(st == WF_EIO && strstr(err.msg, p2) && strstr(err.msg, "dangling"), "dangling: %d '%s'",
             st, err.msg);
    snprintf(p2, sizeof p2, "%s/sub", dir);
    st = vout_h5_write_latents(p2, lat, 1, lshape, &err);
    TU_CHECK(st == WF_EIO && strstr(err.msg, "is a folder"), "folder: %d '%s'", st, err.msg);

    /* FIFOs: no reader (refused at once), HDF5 (refused), a reader (streamed) */
    snprintf(path, sizeof path, "%s/fifo", dir);
    TU_CHECK(mkfifo(path, 0600) == 0, "mkfifo: %s", strerror(errno));
    st = vout_png_write(path, img, PW, PH, &err);
    TU_CHECK(st == WF_EIO && strstr(err.msg, "no reader"), "fifo without reader: %d '%s'", st,
             err.msg);
    vout_mp4 *v = NULL;
    st = vout_mp4_open(&v, path, W, H, FPS, 18, &err);
    TU_CHECK(st == WF_EIO && !v && strstr(err.msg, "no reader"), "mp4 fifo: %d '%s'", st, err.msg);
    st = vout_h5_write_latents(path, lat, 1, lshape, &err);
    TU_CHECK(st == WF_EIO && strstr(err.msg, "FIFO"), "h5 fifo: %d '%s'", st, err.msg);
    int rd = open(path, O_RDONLY | O_NONBLOCK); /* the reader is there before the writer */
    TU_CHECK(rd >= 0, "fifo reader: %s", strerror(errno));
    if (rd >= 0) {
        fcntl(rd, F_SETPIPE_SZ, 1 << 20); /* room for the whole MP4: we read after writing */
        snprintf(p2, sizeof p2, "%s/mode.png", dir);
        TU_CHECK(vout_png_write(path, img, PW, PH, &err) == WF_OK, "png to fifo: %s", err.msg);
        fcntl(rd, F_SETFL, 0);
        snprintf(p2, sizeof p2, "%s/from-fifo.png", dir);
        drain_to(rd, p2);
        snprintf(cmd, sizeof cmd, "cmp -s '%s/from-fifo.png' '%s/mode.png'", dir, dir);
        TU_CHECK(system(cmd) == 0, "the PNG through the FIFO differs from the file");
        close(rd);
        rd = open(path, O_RDONLY | O_NONBLOCK);
        fcntl(rd, F_SETPIPE_SZ, 1 << 20);
        st = mp4_all(path, &err);
        TU_CHECK(st == WF_OK, "mp4 to fifo: %s", err.msg);
        fcntl(rd, F_SETFL, 0);
        snprintf(p2, sizeof p2, "%s/from-fifo.mp4", dir);
        drain_to(rd, p2);
        close(rd);
        snprintf(cmd, sizeof cmd,
                 "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                 "stream=nb_read_frames -of default=nw=1 '%s'", p2);
        memset(out, 0, sizeof out);
        TU_CHECK(run_read(cmd, out, sizeof out - 1) > 0 && strstr(out, "nb_read_frames=17"),
                 "the MP4 through the FIFO: ffprobe says '%s'", out);
    }
    /* safetensors (st_write, the same rules): a FIFO refused at once, a symlink's target
     * written, the umask followed */
    uint64_t tshape[1] = {3};
    st_item it = {"x", ST_F32, 1, tshape, lat};
    st = st_write(path, &it, 1, NULL, 0, &err);
    TU_CHECK(st == WF_EIO && strstr(err.msg, "FIFO"), "safetensors fifo: %d '%s'", st, err.msg);
    snprintf(p2, sizeof p2, "%s/sub/w.safetensors", dir);
    tu_write_file(p2, "old", 3);
    snprintf(p2, sizeof p2, "%s/w-link.safetensors", dir);
    TU_CHECK(symlink("sub/w.safetensors", p2) == 0, "symlink: %s", strerror(errno));
    TU_CHECK(st_write(p2, &it, 1, NULL, 0, &err) == WF_OK, "safetensors via link: %s", err.msg);
    TU_CHECK(lstat(p2, &sb) == 0 && S_ISLNK(sb.st_mode), "the safetensors symlink was replaced");
    snprintf(p2, sizeof p2, "%s/sub/w.safetensors", dir);
    TU_CHECK(stat(p2, &sb) == 0 && sb.st_size > 3 && mode_of(p2) == 0640,
             "the safetensors symlink's target: %lld bytes, mode %o", (long long)sb.st_size,
             mode_of(p2));
    TU_CHECK(lstat(path, &sb) == 0 && S_ISFIFO(sb.st_mode), "the FIFO was replaced");

    /* devices: private nodes (root only) */
    char dnull[1024], dfull[1024];
    snprintf(dnull, sizeof dnull, "%s/null", dir);
    snprintf(dfull, sizeof dfull, "%s/full", dir);
    if (geteuid() == 0 && mknod(dnull, S_IFCHR | 0666, makedev(1, 3)) == 0 &&
        mknod(dfull, S_IFCHR | 0666, makedev(1, 7)) == 0) {
        TU_CHECK(vout_png_write(dnull, img, PW, PH, &err) == WF_OK, "png null: %s", err.msg);
        TU_CHECK(mp4_all(dnull, &err) == WF_OK, "mp4 null: %s", err.msg);
        TU_CHECK(vout_h5_write_latents(dnull, lat, 1, lshape, &err) == WF_OK, "h5 null: %s",
                 err.msg);
        TU_CHECK(lstat(dnull, &sb) == 0 && S_ISCHR(sb.st_mode), "the null device was replaced");
        st = vout_png_write(dfull, img, PW, PH, &err);
        TU_CHECK(st == WF_EIO && strstr(err.msg, "No space left on device"), "png full: '%s'",
                 err.msg);
        st = mp4_all(dfull, &err);
        TU_CHECK(st == WF_EIO && strstr(err.msg, "No space left on device"), "mp4 full: '%s'",
                 err.msg);
        st = vout_h5_write_latents(dfull, lat, 1, lshape, &err);
        TU_CHECK(st == WF_EIO && strstr(err.msg, "No space left on device"), "h5 full: '%s'",
                 err.msg);
        TU_CHECK(lstat(dfull, &sb) == 0 && S_ISCHR(sb.st_mode), "the full device was replaced");
    } else {
        printf("not root or mknod refused: the device checks skipped\n");
    }
    TU_CHECK(count_tmp_files(dir) == 0, "temporary files left in %s", dir);

    /* a signal with an MP4 open: no temporary left; a dead run's temporary is removed by the
     * next write there (a folder this process has not written to yet: it looks once a folder) */
    char sdir[900];
    snprintf(sdir, sizeof sdir, "%s/sig", dir);
    mkdir(sdir, 0777);
    snprintf(path, sizeof path, "%s/sig.mp4", sdir);
    for (int dies_clean = 1; dies_clean >= 0; dies_clean--) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            if (dies_clean) fio_cleanup_install();
            vout_mp4 *cv = NULL;
            if (vout_mp4_open(&cv, path, W, H, FPS, 18, &err)) _exit(3);
            if (dies_clean) raise(SIGTERM);
            _exit(0); /* as SIGKILL would: nothing removed */
        }
        int ws = 0;
        waitpid(pid, &ws, 0);
        if (dies_clean) {
            TU_CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGTERM, "the child was not ended by "
                     "SIGTERM (status %d)", ws);
            TU_CHECK(count_tmp_files(sdir) == 0, "SIGTERM left a temporary in %s", sdir);
        } else {
            TU_CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0 && count_tmp_files(sdir) == 1,
                     "the dead child left no temporary (status %d): the check is void", ws);
        }
    }
    TU_CHECK(mp4_all(path, &err) == WF_OK, "mp4 after a dead run: %s", err.msg);
    TU_CHECK(count_tmp_files(sdir) == 0, "the dead run's temporary was not removed from %s", sdir);
}

int main(void) {
    umask(027); /* before anything is written: fileio reads it once */
    if (!have_tool("ffprobe") || !have_tool("ffmpeg")) {
        fprintf(stderr, "FAIL: ffprobe/ffmpeg not found: run scripts/setup.sh (it installs ffmpeg)\n");
        return 1;
    }
    char *dir = tu_tmpdir("video_out");
    test_mp4(dir);
    test_mp4_errors(dir);
    test_png(dir);
    test_h5(dir);
    test_targets(dir);
    tu_rmtree(dir);
    free(dir);
    printf("%s (%d failures)\n", tu_failures ? "FAILED" : "OK", tu_failures);
    return tu_failures != 0;
}
