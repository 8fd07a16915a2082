/* video_out.c: MP4 (H.264 over libavformat), PNG frames and contact sheets (see video_out.h);
 * the HDF5 latents are video_h5.c's. Built with FFmpeg only (WANFARM_FFMPEG=ON; video_none.c
 * refuses these outputs otherwise).
 *
 * Where the bytes go is fileio.h's: a regular file (or a symlink's target) is written to a
 * temporary beside it, fsync'd and renamed into place, so a reader sees either no file or the
 * complete one; a character device is written in place; a FIFO gets the PNGs and a streamable
 * (fragmented: empty moov, one moof per keyframe) MP4. The MP4 of a regular file keeps
 * +faststart (moov first); a device or FIFO gets the fragmented form through an AVIOContext over
 * the file descriptor.
 * The MP4 follows shared/ENVIRONMENT.md §7 (FFmpeg 5.1): packet timestamps are rescaled from the
 * encoder's 1/fps to the stream's time base (the mp4 muxer changes it), pkt->duration is set
 * (FFmpeg 5.1 frames carry none), and the muxer's global-header flag is honoured.
 * Tested by: tests/test_video_out.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include "fileio.h"
#include "fsin.h"
#include "video_out.h"

/* wf_fail with FFmpeg's text for code r: "path: what: text". */
static wf_status av_fail(wf_err *err, wf_status s, int r, const char *path, const char *what) {
    char e[AV_ERROR_MAX_STRING_SIZE];
    av_strerror(r, e, sizeof e);
    return wf_fail(err, s, "%s: %s failed: %s", path, what, e);
}

/* ---- MP4 ---- */

struct vout_mp4 {
    char *path;
    fio_out out;       /* the target (fileio.h): a temporary for libavformat, or an fd to stream */
    AVIOContext *io;   /* streamed: our AVIOContext over out.fd (else libavformat's own pb) */
    int io_errno;      /* streamed: errno of the first failed write, 0 if none */
    int w, h, fps;
    int64_t nframes;   /* frames accepted so far */
    int failed;        /* an earlier call failed: the file cannot be completed */
    AVFormatContext *oc;
    AVCodecContext *enc;
    AVStream *st;
    struct SwsContext *sws;
    AVFrame *frm;
    AVPacket *pkt;
};

/* Frees our AVIOContext (streamed outputs): its buffer is av_malloc'd. */
static void mp4_free_io(vout_mp4 *v) {
    if (!v->io) return;
    av_freep(&v->io->buffer);
    avio_context_free(&v->io);
    if (v->oc) v->oc->pb = NULL;
}

/* AVIOContext write callback of a streamed output. */
static int mp4_io_write(void *opaque, uint8_t *buf, int n) {
    vout_mp4 *v = opaque;
    if (v->io_errno) return AVERROR(v->io_errno);
    if (fio_out_write(&v->out, buf, (size_t)n) != 0) {
        v->io_errno = errno ? errno : EIO;
        return AVERROR(v->io_errno);
    }
    return n;
}

static void mp4_free(vout_mp4 *v) {
    if (!v) return;
    mp4_free_io(v);
    if (v->oc) {
        if (v->oc->pb) avio_closep(&v->oc->pb);
        avformat_free_context(v->oc);
    }
    avcodec_free_context(&v->enc);
    sws_freeContext(v->sws);
    av_frame_free(&v->frm);
    av_packet_free(&v->pkt);
    free(v->path);
    free(v);
}

void vout_mp4_abort(vout_mp4 **pv) {
    if (!pv || !*pv) return;
    vout_mp4 *v = *pv;
    mp4_free_io(v);
    if (v->oc && v->oc->pb) avio_closep(&v->oc->pb);
    fio_out_abort(&v->out); /* removes the temporary, closes a stream */
    mp4_free(v);
    *pv = NULL;
}

int64_t vout_mp4_frame_count(const vout_mp4 *v) { return v ? v->nframes : 0; }

/* The H.264 encoder (libx264 when there, with its preset and crf) and the MP4 stream it feeds. */
static wf_status mp4_open_encoder(vout_mp4 *v, int crf, wf_err *err) {
    const char *path = v->path;
    int r;
    const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
    if (!codec) codec = avcodec_find_encoder(AV_CODEC_ID_H264);
    if (!codec)
        return wf_fail(err, WF_EUNSUPPORTED,
                       "%s: this FFmpeg has no H.264 encoder (run scripts/setup.sh for libavcodec "
                       "with libx264)",
                       path);
    v->st = avformat_new_stream(v->oc, NULL);
    v->enc = avcodec_alloc_context3(codec);
    v->frm = av_frame_alloc();
    v->pkt = av_packet_alloc();
    if (!v->st || !v->enc || !v->frm || !v->pkt)
        return wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
    AVCodecContext *enc = v->enc;
    enc->width = v->w;
    enc->height = v->h;
    enc->pix_fmt = AV_PIX_FMT_YUV420P;
    enc->time_base = (AVRational){1, v->fps};
    enc->framerate = (AVRational){v->fps, 1};
    enc->gop_size = v->fps * 2 > 0 ? v->fps * 2 : 12; /* a keyframe every 2 s */
    enc->max_b_frames = 2;
    /* swscale's RGB -> YUV is BT.601, limited range: say so, so players convert back the same way */
    enc->color_range = AVCOL_RANGE_MPEG;
    enc->colorspace = AVCOL_SPC_SMPTE170M;
    if (v->oc->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    char crfs[16];
    snprintf(crfs, sizeof crfs, "%d", crf);
    /* options of libx264; another H.264 encoder may not have them, which is fine */
    av_opt_set(enc->priv_data, "preset", "medium", 0);
    av_opt_set(enc->priv_data, "crf", crfs, 0);
    if ((r = avcodec_open2(enc, codec, NULL)) < 0)
        return av_fail(err, WF_EUNSUPPORTED, r, path, "opening the H.264 encoder");
    if ((r = avcodec_parameters_from_context(v->st->codecpar, enc)) < 0)
        return av_fail(err, WF_EUNSUPPORTED, r, path, "copying the encoder parameters");
    v->st->time_base = enc->time_base; /* a hint: the muxer picks its own in write_header */
    return WF_OK;
}

/* Where the muxer writes (the temporary by name, or our own AVIOContext on a device or FIFO),
 * and the MP4 header: moov first for a file (plays while downloading); a fragmented MP4 that a
 * reader can play as it comes for a device or FIFO, which cannot be rewound. */
static wf_status mp4_open_io(vout_mp4 *v, bool stream, wf_err *err) {
    const char *path = v->path;
    int r;
    if (stream) {
        enum { IO_BUF = 1 << 16 };
        uint8_t *buf = av_malloc(IO_BUF);
        v->io = buf ? avio_alloc_context(buf, IO_BUF, 1, v, NULL, mp4_io_write, NULL) : NULL;
        if (!v->io) {
            av_free(buf);
            return wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
        }
        v->io->seekable = 0;
        v->oc->pb = v->io;
        v->oc->flags |= AVFMT_FLAG_CUSTOM_IO;
    } else if (!(v->oc->oformat->flags & AVFMT_NOFILE) &&
               (r = avio_open(&v->oc->pb, v->out.tmp, AVIO_FLAG_WRITE)) < 0) {
        return av_fail(err, WF_EIO, r, path, "opening the temporary file");
    }
    AVDictionary *mux = NULL;
    av_dict_set(&mux, "movflags", stream ? "+frag_keyframe+empty_moov+default_base_moof"
                                         : "+faststart", 0);
    r = avformat_write_header(v->oc, &mux);
    av_dict_free(&mux);
    if (r < 0) return av_fail(err, WF_EIO, r, path, "writing the MP4 header");
    return WF_OK;
}

/* The RGB24 -> yuv420p converter and the frame it fills. */
static wf_status mp4_open_convert(vout_mp4 *v, wf_err *err) {
    v->sws = sws_getContext(v->w, v->h, AV_PIX_FMT_RGB24, v->w, v->h, AV_PIX_FMT_YUV420P,
                            SWS_BICUBIC, NULL, NULL, NULL);
    if (!v->sws)
        return wf_fail(err, WF_EUNSUPPORTED, "%s: swscale cannot convert RGB24 to yuv420p at %dx%d",
                       v->path, v->w, v->h);
    v->frm->format = v->enc->pix_fmt;
    v->frm->width = v->w;
    v->frm->height = v->h;
    int r = av_frame_get_buffer(v->frm, 0);
    if (r < 0) return av_fail(err, WF_ENOMEM, r, v->path, "allocating a frame");
    return WF_OK;
}

wf_status vout_mp4_open(vout_mp4 **out, const char *path, int w, int h, int fps, int crf,
                        wf_err *err) {
    *out = NULL;
    if (w <= 0 || h <= 0 || (w & 1) || (h & 1))
        return wf_fail(err, WF_EINVAL,
                       "%s: frame size %dx%d: H.264 in yuv420p needs a positive, even width and "
                       "height (crop or pad the frames by one pixel)",
                       path, w, h);
    if (fps <= 0 || fps > 1000)
        return wf_fail(err, WF_EINVAL, "%s: frame rate %d is out of range (1..1000)", path, fps);
    if (crf <= 0 || crf > 51)
        return wf_fail(err, WF_EINVAL, "%s: crf %d is out of range (1..51; 18 is visually lossless)",
                       path, crf);
    av_log_set_level(AV_LOG_ERROR); /* libx264 prints its statistics otherwise */

    wf_status st = WF_OK;
    int r;
    vout_mp4 *v = calloc(1, sizeof *v);
    if (!v || !(v->path = strdup(path))) {
        free(v);
        return wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
    }
    v->w = w;
    v->h = h;
    v->fps = fps;
    v->out.fd = -1;
    v->out.slot = -1;
    WF_TRY(fio_out_open(&v->out, path, FIO_STREAMABLE, err));
    bool stream = v->out.kind != FIO_REPLACE;
    if (!stream) { /* libavformat writes the temporary by name (faststart reopens it) */
        close(v->out.fd);
        v->out.fd = -1;
    }
    if ((r = avformat_alloc_output_context2(&v->oc, NULL, "mp4",
                                            stream ? v->out.target : v->out.tmp)) < 0) {
        st = av_fail(err, WF_EUNSUPPORTED, r, path, "creating the mp4 muxer");
        goto out;
    }
    WF_TRY(mp4_open_encoder(v, crf, err));
    WF_TRY(mp4_open_io(v, stream, err));
    WF_TRY(mp4_open_convert(v, err));
    *out = v;
    return WF_OK;
out:
    vout_mp4_abort(&v);
    return st;
}

/* Sends frm (NULL: flush) and writes every packet the encoder has ready. */
static wf_status mp4_drain(vout_mp4 *v, const AVFrame *frm, wf_err *err) {
    int r = avcodec_send_frame(v->enc, frm);
    if (r < 0) return av_fail(err, WF_EIO, r, v->path, frm ? "sending a frame to the encoder"
                                                           : "flushing the encoder");
    for (;;) {
        r = avcodec_receive_packet(v->enc, v->pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return WF_OK;
        if (r < 0) return av_fail(err, WF_EIO, r, v->path, "encoding a frame");
        if (v->pkt->duration == 0) v->pkt->duration = 1; /* one frame, in enc->time_base */
        av_packet_rescale_ts(v->pkt, v->enc->time_base, v->st->time_base);
        v->pkt->stream_index = v->st->index;
        r = av_interleaved_write_frame(v->oc, v->pkt); /* unrefs pkt */
        if (r < 0) return av_fail(err, WF_EIO, r, v->path, "writing a packet");
    }
}

wf_status vout_mp4_write(vout_mp4 *v, const uint8_t *rgb, wf_err *err) {
    if (!v)
        return wf_fail(err, WF_EINVAL,
                       "vout_mp4_write: the MP4 writer is closed (a frame was written after "
                       "vout_mp4_close or a failed vout_mp4_open)");
    if (v->failed)
        return wf_fail(err, WF_EINVAL,
                       "%s: an earlier write failed; the file cannot be completed (abort it)",
                       v->path);
    WF_ASSERT(rgb);
    int r = av_frame_make_writable(v->frm); /* the encoder may still hold the previous buffer */
    if (r < 0) {
        v->failed = 1;
        return av_fail(err, WF_ENOMEM, r, v->path, "making the frame writable");
    }
    const uint8_t *src[1] = {rgb};
    int stride[1] = {3 * v->w};
    sws_scale(v->sws, src, stride, 0, v->h, v->frm->data, v->frm->linesize);
    v->frm->pts = v->nframes;
    wf_status st = mp4_drain(v, v->frm, err);
    if (st) {
        v->failed = 1;
        return st;
    }
    v->nframes++;
    return WF_OK;
}

wf_status vout_mp4_close(vout_mp4 **pv, wf_err *err) {
    if (!pv || !*pv)
        return wf_fail(err, WF_EINVAL, "vout_mp4_close: the MP4 writer is already closed");
    vout_mp4 *v = *pv;
    wf_status st = WF_OK;
    int r;
    if (v->failed) {
        st = wf_fail(err, WF_EINVAL, "%s: an earlier write failed; the file was abandoned",
                     v->path);
        goto out_abort;
    }
    if (v->nframes == 0) {
        st = wf_fail(err, WF_EINVAL, "%s: no frames were written; the file was abandoned",
                     v->path);
        goto out_abort;
    }
    if ((st = mp4_drain(v, NULL, err))) goto out_abort;
    if ((r = av_write_trailer(v->oc)) < 0) {
        st = v->io_errno ? wf_fail(err, WF_EIO, "%s: write failed: %s", v->path,
                                   strerror(v->io_errno))
                         : av_fail(err, WF_EIO, r, v->path, "writing the MP4 trailer");
        goto out_abort;
    }
    if (v->io) {
        avio_flush(v->io);
        if (v->io_errno || v->io->error < 0) {
            st = v->io_errno ? wf_fail(err, WF_EIO, "%s: write failed: %s", v->path,
                                       strerror(v->io_errno))
                             : av_fail(err, WF_EIO, v->io->error, v->path, "writing the file");
            goto out_abort;
        }
        mp4_free_io(v);
    } else if ((r = avio_closep(&v->oc->pb)) < 0) {
        st = av_fail(err, WF_EIO, r, v->path, "closing the file");
        goto out_abort;
    }
    st = fio_out_commit(&v->out, err); /* fsync + rename, or close the stream */
    mp4_free(v);
    *pv = NULL;
    return st;
out_abort:
    vout_mp4_abort(pv);
    return st;
}

/* ---- PNG ---- */

/* Encodes w x h RGB24 as PNG with libavcodec: *png malloc'd (av_malloc'd packet copied out). */
static wf_status png_encode(const char *path, const uint8_t *rgb, int w, int h, uint8_t **png,
                            size_t *n, wf_err *err) {
    wf_status st = WF_OK;
    int r;
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
    if (!codec)
        return wf_fail(err, WF_EUNSUPPORTED,
                       "%s: this FFmpeg has no PNG encoder (run scripts/setup.sh)", path);
    AVCodecContext *enc = avcodec_alloc_context3(codec);
    AVFrame *frm = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    if (!enc || !frm || !pkt) {
        st = wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    enc->width = w;
    enc->height = h;
    enc->pix_fmt = AV_PIX_FMT_RGB24;
    enc->time_base = (AVRational){1, 1};
    if ((r = avcodec_open2(enc, codec, NULL)) < 0) {
        st = av_fail(err, WF_EUNSUPPORTED, r, path, "opening the PNG encoder");
        goto out;
    }
    frm->format = AV_PIX_FMT_RGB24;
    frm->width = w;
    frm->height = h;
    if ((r = av_frame_get_buffer(frm, 0)) < 0) {
        st = av_fail(err, WF_ENOMEM, r, path, "allocating a frame");
        goto out;
    }
    av_image_copy_plane(frm->data[0], frm->linesize[0], rgb, 3 * w, 3 * w, h);
    frm->pts = 0;
    if ((r = avcodec_send_frame(enc, frm)) < 0 || (r = avcodec_receive_packet(enc, pkt)) < 0) {
        st = av_fail(err, WF_EIO, r, path, "PNG encoding");
        goto out;
    }
    *png = malloc((size_t)pkt->size);
    if (!*png) {
        st = wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    memcpy(*png, pkt->data, (size_t)pkt->size);
    *n = (size_t)pkt->size;
out:
    av_packet_free(&pkt);
    av_frame_free(&frm);
    avcodec_free_context(&enc);
    return st;
}

wf_status vout_png_write(const char *path, const uint8_t *rgb, int w, int h, wf_err *err) {
    if (w <= 0 || h <= 0 || w > 32767 || h > 32767)
        return wf_fail(err, WF_EINVAL, "%s: image size %dx%d is out of range (1..32767)", path, w,
                       h);
    uint8_t *png = NULL;
    size_t n = 0;
    wf_status st = png_encode(path, rgb, w, h, &png, &n, err);
    if (!st) st = fio_write_parts(path, &(fio_part){png, n}, 1, FIO_STREAMABLE, err);
    free(png);
    return st;
}

wf_status vout_contact_sheet(const char *path, const uint8_t *const *frames, int n, int w, int h,
                             int cols, int shrink, wf_err *err) {
    if (n <= 0 || w <= 0 || h <= 0 || cols <= 0 || shrink <= 0)
        return wf_fail(err, WF_EINVAL,
                       "%s: contact sheet of %d frames %dx%d in %d columns, shrink %d: every value "
                       "must be positive",
                       path, n, w, h, cols, shrink);
    int tw = w / shrink, th = h / shrink;
    if (tw == 0 || th == 0)
        return wf_fail(err, WF_EINVAL, "%s: shrink %d makes the %dx%d frames vanish", path, shrink,
                       w, h);
    if (cols > n) cols = n;
    int rows = (n + cols - 1) / cols;
    if ((int64_t)tw * cols > 32767 || (int64_t)th * rows > 32767)
        return wf_fail(err, WF_EINVAL,
                       "%s: the sheet would be %lldx%lld, beyond PNG's practical limit; raise "
                       "shrink or lower the frame count",
                       path, (long long)tw * cols, (long long)th * rows);
    int sw = tw * cols, sh = th * rows;
    uint8_t *sheet = calloc((size_t)sw * sh * 3, 1); /* black background */
    if (!sheet) return wf_fail(err, WF_ENOMEM, "%s: out of memory", path);
    for (int k = 0; k < n; k++) {
        const uint8_t *f = frames[k];
        int x0 = (k % cols) * tw, y0 = (k / cols) * th;
        for (int y = 0; y < th; y++)
            for (int x = 0; x < tw; x++) {
                const uint8_t *s = f + ((size_t)y * shrink * w + (size_t)x * shrink) * 3;
                uint8_t *d = sheet + ((size_t)(y0 + y) * sw + (size_t)(x0 + x)) * 3;
                d[0] = s[0];
                d[1] = s[1];
                d[2] = s[2];
            }
    }
    wf_status st = vout_png_write(path, sheet, sw, sh, err);
    free(sheet);
    return st;
}
