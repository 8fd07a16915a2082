/* vae_blocks.c: the Wan VAE's building blocks (wan_spec.md §2.2, §2.5) on the run state of
 * vae_internal.h: cached causal convs, residual block, attention block, every resample mode, the
 * mid block, Wan2.2's AvgDown3D/DupUp3D block shortcuts and the head.
 *
 * Every block reads the stream x (role x) and leaves its output there; one backend op per line,
 * with the shape after it. Shapes: [1, T, H, W, C] channels-last unless noted. Activations are
 * backend memory: frame and cache moves are wk_copy / wk_copy_box, the time upsampler's channel
 * split a wk_permute, zeroing wk_fill, norm + SiLU the fused wk_rms_norm_l2_silu, the Wan2.2
 * shortcuts wk_avgdown3d / wk_dupup3d; no host loop touches them.
 * The cache rule of every cached conv (Diffusers' feat_cache, §2.6): the conv sees
 * [slot history | chunk], the slot then keeps the last VAE_CACHE_T frames of that sequence. After a
 * reset the history is zeros, which is exactly the causal zero padding of the first chunk, so the
 * same code runs the whole video as one chunk (VAE_WHOLE) and gives the same frames.
 * Not here: the schedules (vae_decode.c, vae_encode.c), loading (vae_load.c), layout conversions
 * and tile blending (vae_edges.c).
 * Tested by: tests/test_vae.c.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "vae_internal.h"

static size_t frame_floats(const wk_tensor *t) { /* H * W * C of a [1, T, H, W, C] tensor */
    return (size_t)(t->shape[2] * t->shape[3] * t->shape[4]);
}

/* frame f of a [1, T, H, W, C] tensor; NULL in a dry run (no offset on a null pointer) */
static float *frame_ptr(const wk_tensor *t, int64_t f) {
    return t->data ? (float *)t->data + (size_t)f * frame_floats(t) : NULL;
}

/* ---- the run ---- */

void vae_run_init(vae_run *r, wk_backend *be, int n_slots, vae_tap_fn tap, void *tap_ctx,
                  wf_err *err) {
    memset(r, 0, sizeof *r);
    WF_ASSERT(n_slots >= 0 && n_slots <= VAE_MAX_SLOTS);
    r->be = be;
    r->err = err;
    r->dry = true;
    r->n_slots = n_slots;
    r->tap = tap;
    r->tap_ctx = tap_ctx;
}

static const char *ROLE_NAMES[VAE_NROLES] = {"x", "y", "xc", "shortcut", "upsample",
                                             "q", "k", "v",  "o",        "block input"};

wf_status vae_run_alloc(vae_run *r, wk_arena *arena) {
    wf_status st = WF_OK;
    WF_ASSERT(r->dry);
    size_t xy = r->need[VAE_RX] > r->need[VAE_RY] ? r->need[VAE_RX] : r->need[VAE_RY];
    r->need[VAE_RX] = r->need[VAE_RY] = xy; /* x and y swap, so they are the same size */
    for (int i = 0; i < VAE_NROLES; i++) {
        size_t bytes;
        if (wf_mul_overflow(r->need[i], sizeof(float), &bytes)) {
            st = wf_fail(r->err, WF_ENOMEM, "vae: the %s buffer size overflows", ROLE_NAMES[i]);
            goto out;
        }
        void *p = NULL;
        if (bytes) WF_TRY(wk_arena_alloc(arena, bytes, &p, r->err));
        r->buf[i] = p;
        r->cap[i] = r->need[i];
    }
    for (int i = 0; i < r->n_slots; i++) {
        vae_slot *s = &r->slots[i];
        WF_ASSERT(s->frames > 0); /* the dry run used every slot */
        void *p = NULL;
        size_t n = (size_t)(s->frames * s->H * s->W * s->C);
        if ((st = wk_arena_alloc(arena, n * sizeof(float), &p, r->err))) {
            wf_err_prefix(r->err, "vae cache slot %d (%s): ", i, s->name);
            goto out;
        }
        s->data = p;
    }
    r->dry = wk_arena_is_measuring(arena); /* a measuring arena has no memory to compute in */
    WF_TRY(vae_run_reset_cache(r));
out:
    return st;
}

wf_status vae_run_reset_cache(vae_run *r) {
    wf_status st = WF_OK;
    for (int i = 0; i < r->n_slots; i++) {
        vae_slot *s = &r->slots[i];
        s->state = VAE_SLOT_EMPTY;
        if (r->dry || !s->data) continue;
        wk_tensor t = vae_on(r->be, wk_tensor_4d(WK_F32, s->data, s->frames, s->H, s->W, s->C));
        WF_TRY(wk_fill(r->be, &t, 0.0f, r->err)); /* [frames, H, W, C] */
    }
    r->next_slot = 0;
out:
    return st;
}

void vae_run_begin_chunk(vae_run *r, int64_t chunk) {
    WF_ASSERT(r->next_slot == 0 || r->next_slot == r->n_slots);
    r->next_slot = 0;
    r->chunk = chunk;
}

/* The next slot in traversal order; the first (dry) use fixes its shape, later uses must agree. */
static vae_slot *next_slot(vae_run *r, int64_t frames, const wk_tensor *x, const vae_conv *c) {
    WF_ASSERT(r->next_slot < r->n_slots);
    vae_slot *s = &r->slots[r->next_slot++];
    int64_t H = x->shape[2], W = x->shape[3], C = x->shape[4];
    if (s->frames == 0) {
        WF_ASSERT(r->dry);
        *s = (vae_slot){.name = c->w.name, .frames = frames, .H = H, .W = W, .C = C};
    }
    WF_ASSERT(s->frames == frames && s->H == H && s->W == W && s->C == C);
    return s;
}

wk_tensor vae_take(vae_run *r, int role, int ndim, const int64_t *shape) {
    wk_tensor t = vae_on(r->be, wk_tensor_make(WK_F32, NULL, ndim, shape));
    size_t n = (size_t)wk_tensor_numel(&t);
    if (r->dry) {
        if (n > r->need[role]) r->need[role] = n;
    } else {
        WF_ASSERT(n <= r->cap[role]);
    }
    t.data = r->buf[role];
    return t;
}

wk_tensor vae_take5(vae_run *r, int role, int64_t T, int64_t H, int64_t W, int64_t C) {
    const int64_t s[5] = {1, T, H, W, C};
    return vae_take(r, role, 5, s);
}

void vae_swap_xy(vae_run *r, wk_tensor *x) {
    float *b = r->buf[VAE_RX];
    size_t c = r->cap[VAE_RX];
    r->buf[VAE_RX] = r->buf[VAE_RY];
    r->cap[VAE_RX] = r->cap[VAE_RY];
    r->buf[VAE_RY] = b;
    r->cap[VAE_RY] = c;
    WF_ASSERT(x->data == r->buf[VAE_RX]); /* x was the y buffer */
}

void vae_tap(vae_run *r, const char *stage, const wk_tensor *t) {
    if (r->tap && !r->dry && stage && stage[0]) r->tap(r->tap_ctx, stage, r->chunk, t);
}

/* ---- op wrappers: skip the maths in a dry run ---- */

static wf_status conv3d(vae_run *r, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *b, const wk_conv_params *p) {
    return r->dry ? WF_OK : wk_conv3d(r->be, y, x, w, b, p, r->err);
}
static wf_status conv2d(vae_run *r, wk_tensor *y, const wk_tensor *x, const wk_tensor *w,
                        const wk_tensor *b, const wk_conv_params *p) {
    return r->dry ? WF_OK : wk_conv2d(r->be, y, x, w, b, p, r->err);
}
static wf_status norm_silu(vae_run *r, wk_tensor *y, const wk_tensor *x, const wk_tensor *gamma) {
    return r->dry ? WF_OK : wk_rms_norm_l2_silu(r->be, y, x, gamma, r->err);
}
/* n frames of a [1, T, H, W, C] tensor's frame size, from frame fs of src to frame fd of dst */
static wf_status copy_frames(vae_run *r, const wk_tensor *dst, int64_t fd, const wk_tensor *src,
                             int64_t fs, int64_t n) {
    if (r->dry || n == 0) return WF_OK;
    WF_ASSERT(frame_floats(dst) == frame_floats(src));
    return wk_copy(r->be, frame_ptr(dst, fd), frame_ptr(src, fs),
                   (size_t)n * frame_floats(src) * sizeof(float), r->err);
}
/* the slot's frames as a [1, frames, H, W, C] tensor */
static wk_tensor slot_tensor(const vae_run *r, const vae_slot *s) {
    return vae_on(r->be, wk_tensor_5d(WK_F32, s->data, 1, s->frames, s->H, s->W, s->C));
}
static wf_status add(vae_run *r, wk_tensor *y, const wk_tensor *a, const wk_tensor *b) {
    return r->dry ? WF_OK : wk_add(r->be, y, a, b, r->err);
}

/* Output length of a conv axis; an input smaller than the kernel is an error naming the layer. */
static wf_status conv_len(vae_run *r, const char *what, int64_t in, int64_t pad, int64_t k,
                          int64_t stride, int64_t *out) {
    if (in + pad < k)
        return wf_fail(
            r->err, WF_EINVAL,
            "vae: %s: an input of %lld (+ %lld padding) is smaller than the kernel %lld; "
            "the image or latent is too small for this VAE",
            what, (long long)in, (long long)pad, (long long)k);
    *out = (in + pad - k) / stride + 1;
    return WF_OK;
}

/* ---- cached causal convs ---- */

wf_status vae_cconv_begin(vae_run *r, int64_t T, int64_t H, int64_t W, int64_t C, vae_cconv *cc) {
    const int64_t e = r->halo ? 2 : 0; /* halo rows above and below */
    cc->hist = VAE_CACHE_T;
    cc->full = vae_take5(r, VAE_RXC, cc->hist + T, H + e, W, C); /* [1, 2 + T, H (+ 2), W, C] */
    cc->in = vae_on(r->be, wk_tensor_5d(WK_F32, NULL, 1, T, H, W, C));
    if (!r->halo) cc->in.data = frame_ptr(&cc->full, cc->hist); /* frames [2, 2 + T) */
    cc->slot = NULL;
    return WF_OK;
}

wf_status vae_cconv_fill(vae_run *r, vae_cconv *cc, const wk_tensor *x, const wk_tensor *gamma) {
    wf_status st = WF_OK;
    if (!r->halo) {
        if (gamma)
            WF_TRY(norm_silu(r, &cc->in, x, gamma)); /* [1, T, H, W, C] */
        else
            WF_TRY(copy_frames(r, &cc->in, 0, x, 0, x->shape[1])); /* [1, T, H, W, C] */
        goto out;
    }
    const int64_t T = cc->in.shape[1], H = cc->in.shape[2], W = cc->in.shape[3],
                  C = cc->in.shape[4];
    WF_ASSERT(x->shape[1] == T && x->shape[2] == H && x->shape[3] == W && x->shape[4] == C);
    if (r->dry) goto out;
    if (!gamma) { /* x into rows [1, H + 1) of frames [hist, hist + T) */
        const int64_t to[5] = {0, cc->hist, 1, 0, 0}, from[5] = {0}, ext[5] = {1, T, H, W, C};
        WF_TRY(wk_copy_box(r->be, &cc->full, to, x, from, ext, r->err));
        goto out;
    }
    for (int64_t t = 0; t < T; t++) { /* rows [1, H + 1) of frame hist + t */
        wk_tensor d = vae_on(r->be, wk_tensor_4d(WK_F32, frame_ptr(&cc->full, cc->hist + t) + W * C,
                                                 1, H, W, C));
        wk_tensor s = vae_on(r->be, wk_tensor_4d(WK_F32, frame_ptr(x, t), 1, H, W, C));
        WF_TRY(norm_silu(r, &d, &s, gamma)); /* [1, H, W, C] */
    }
out:
    return st;
}

wf_status vae_cconv_end(vae_run *r, vae_cconv *cc, const vae_conv *c, int out_role, wk_tensor *y) {
    wf_status st = WF_OK;
    const int64_t T = cc->in.shape[1], Hf = cc->full.shape[2], W = cc->in.shape[3];
    const int64_t k = c->w.shape[3], p = k / 2; /* 3x3x3, padding 1 */
    const int64_t ph = r->halo ? 0 : p;         /* halo rows replace the row padding */
    WF_ASSERT(c->w.ndim == 5 && c->w.shape[2] == 2 * p + 1);
    WF_ASSERT(!r->halo || p == 1);
    cc->slot = next_slot(r, cc->hist, &cc->full, c);
    cc->slot->state = VAE_SLOT_LIVE;
    if (!r->dry) {
        const wk_tensor slot = slot_tensor(r, cc->slot);
        for (int64_t t = 0; r->halo && t < T; t++) /* the new frames' halo rows */
            WF_TRY(vae_halo_rows(r, frame_ptr(&cc->full, cc->hist + t), Hf - 2, W,
                                 cc->in.shape[4]));
        WF_TRY(copy_frames(r, &cc->full, 0, &slot, 0, cc->hist)); /* history */
        WF_TRY(copy_frames(r, &slot, 0, &cc->full, T, cc->hist)); /* the last 2 frames */
    }
    int64_t Ho = 0, Wo = 0;
    WF_TRY(conv_len(r, c->w.name, Hf, 2 * ph, k, 1, &Ho));
    WF_TRY(conv_len(r, c->w.name, W, 2 * p, k, 1, &Wo));
    *y = vae_take5(r, out_role, T, Ho, Wo, c->w.shape[0]); /* [1, T, H, W, Cout] */
    wk_conv_params cp = {.stride = {1, 1, 1},
                         .pad = {{0, 0}, {(int)ph, (int)ph}, {(int)p, (int)p}}};
    WF_TRY(conv3d(r, y, &cc->full, &c->w, &c->b, &cp));
out:
    return st;
}

wf_status vae_conv1x1(vae_run *r, const wk_tensor *x, const vae_conv *c, int out_role,
                      wk_tensor *y) {
    WF_ASSERT(c->w.ndim == 5 && c->w.shape[2] == 1 && c->w.shape[3] == 1 && c->w.shape[4] == 1);
    *y = vae_take5(r, out_role, x->shape[1], x->shape[2], x->shape[3], c->w.shape[0]);
    wk_conv_params cp = {.stride = {1, 1, 1}};
    return conv3d(r, y, x, &c->w, &c->b, &cp);
}

/* ---- WanResidualBlock ---- */

wf_status vae_resblock_fwd(vae_run *r, const vae_resblock *b, wk_tensor *x) {
    wf_status st = WF_OK;
    const int64_t T = x->shape[1], H = x->shape[2], W = x->shape[3];
    wk_tensor h = *x, y; /* shortcut: identity */
    if (b->shortcut.w.data)
        WF_TRY(vae_conv1x1(r, x, &b->shortcut, VAE_RR, &h)); /* [1, T, H, W, out] */
    vae_cconv c1, c2;
    WF_TRY(vae_cconv_begin(r, T, H, W, b->in, &c1));
    WF_TRY(vae_cconv_fill(r, &c1, x, &b->norm1));         /* [1, T, H, W, in] */
    WF_TRY(vae_cconv_end(r, &c1, &b->conv1, VAE_RY, &y)); /* [1, T, H, W, out] */
    WF_TRY(vae_cconv_begin(r, T, H, W, b->out, &c2));
    WF_TRY(vae_cconv_fill(r, &c2, &y, &b->norm2));        /* dropout: identity */
    WF_TRY(vae_cconv_end(r, &c2, &b->conv2, VAE_RY, &y)); /* [1, T, H, W, out] */
    WF_TRY(add(r, &y, &y, &h));                           /* main + shortcut */
    *x = y;
    vae_swap_xy(r, x);
out:
    return st;
}

/* ---- WanAttentionBlock: per frame, one head over the H*W positions ---- */

/* rows [r0, r0 + n) of a [N, K] (or 1-D [N]) weight, as a 2-D (1-D) view */
static wk_tensor rows_of(const wk_tensor *w, int64_t r0, int64_t n, int64_t K) {
    wk_tensor v = *w;
    v.data = (char *)w->data + (size_t)(r0 * K) * wk_dtype_size(w->dtype);
    if (K > 1 || w->ndim > 1) {
        v.ndim = 2;
        v.shape[0] = n;
        v.shape[1] = K;
        for (int i = 2; i < WK_MAX_DIMS; i++) v.shape[i] = 1;
    } else {
        v.ndim = 1;
        v.shape[0] = n;
    }
    return v;
}

/* With a halo (row-parallel decode) the queries are this rank's pixels and the keys and values
 * every rank's, gathered in rank order (= pixel order): Lk = the whole frame's H * W. */
wf_status vae_attn_fwd(vae_run *r, const vae_attn *a, wk_tensor *x) {
    wf_status st = WF_OK;
    const int64_t T = x->shape[1], L = x->shape[2] * x->shape[3], C = a->dim;
    const int64_t Lk = r->halo ? r->halo->attn_keys : L;
    WF_ASSERT(r->dry || !r->halo ||
              r->halo->counts[r->halo->rank] == (size_t)(L * C) * sizeof(float));
    const int64_t s2[2] = {L, C}, s3[3] = {L, 1, C}, sk2[2] = {Lk, C}, sk3[3] = {Lk, 1, C};
    wk_tensor n = vae_take5(r, VAE_RY, T, x->shape[2], x->shape[3], C);
    if (!r->dry) WF_TRY(wk_rms_norm_l2(r->be, &n, x, &a->norm, r->err)); /* [1, T, H, W, C] */
    wk_tensor wq = rows_of(&a->qkv.w, 0, C, C), bq = rows_of(&a->qkv.b, 0, C, 1);
    wk_tensor wk = rows_of(&a->qkv.w, C, C, C), bk = rows_of(&a->qkv.b, C, C, 1);
    wk_tensor wv = rows_of(&a->qkv.w, 2 * C, C, C), bv = rows_of(&a->qkv.b, 2 * C, C, 1);
    wk_tensor wp = rows_of(&a->proj.w, 0, C, C);
    wk_tensor q = vae_take(r, VAE_RQ, 2, s2), k = vae_take(r, VAE_RK, 2, sk2);
    wk_tensor v = vae_take(r, VAE_RV, 2, sk2), o = vae_take(r, VAE_RO, 2, s2);
    if (r->dry) goto out;
    const float scale = (float)(1.0 / sqrt((double)C));
    for (int64_t t = 0; t < T; t++) {
        wk_tensor nt = vae_on(r->be, wk_tensor_2d(WK_F32, frame_ptr(&n, t), L, C));
        wk_tensor xt = vae_on(r->be, wk_tensor_2d(WK_F32, frame_ptr(x, t), L, C));
        WF_TRY(wk_matmul(r->be, &q, &nt, &wq, &bq, r->err)); /* [L, C] */
        if (r->halo) { /* ours into o, then every rank's into k / v */
            WF_TRY(wk_matmul(r->be, &o, &nt, &wk, &bk, r->err)); /* [L, C] */
            WF_TRY(vae_halo_gather(r, o.data, k.data));          /* [Lk, C] */
            WF_TRY(wk_matmul(r->be, &o, &nt, &wv, &bv, r->err)); /* [L, C] */
            WF_TRY(vae_halo_gather(r, o.data, v.data));          /* [Lk, C] */
        } else {
            WF_TRY(wk_matmul(r->be, &k, &nt, &wk, &bk, r->err)); /* [L, C] */
            WF_TRY(wk_matmul(r->be, &v, &nt, &wv, &bv, r->err)); /* [L, C] */
        }
        wk_tensor q3 = vae_on(r->be, wk_tensor_make(WK_F32, q.data, 3, s3)),
                  k3 = vae_on(r->be, wk_tensor_make(WK_F32, k.data, 3, sk3));
        wk_tensor v3 = vae_on(r->be, wk_tensor_make(WK_F32, v.data, 3, sk3)),
                  o3 = vae_on(r->be, wk_tensor_make(WK_F32, o.data, 3, s3));
        WF_TRY(wk_attention(r->be, &o3, &q3, &k3, &v3, scale, 0, NULL, r->err)); /* [L, 1, C] */
        WF_TRY(wk_matmul(r->be, &q, &o, &wp, &a->proj.b, r->err));            /* [L, C] */
        WF_TRY(wk_add(r->be, &xt, &xt, &q, r->err));                          /* + identity */
    }
out:
    return st;
}

/* ---- WanResample ---- */

/* upsample2d / the spatial step of upsample3d: per frame, nearest 2x then a 3x3 conv (pad 1) */
/* With a halo the upsampled frame gets a halo row above and below (the neighbours' upsampled edge
 * rows) in place of the conv's row padding. */
static wf_status spatial_up(vae_run *r, const vae_resample *s, wk_tensor *x) {
    wf_status st = WF_OK;
    const int64_t T = x->shape[1], H = x->shape[2], W = x->shape[3], C = x->shape[4];
    const int64_t e = r->halo ? 1 : 0; /* halo rows on each side */
    const int64_t su[4] = {1, 2 * H + 2 * e, 2 * W, C};
    wk_tensor u = vae_take(r, VAE_RU, 4, su);                        /* [1, 2H (+ 2), 2W, C] */
    wk_tensor y = vae_take5(r, VAE_RY, T, 2 * H, 2 * W, s->out_dim); /* [1, T, 2H, 2W, out] */
    wk_conv_params cp = {.stride = {1, 1, 1}, .pad = {{0, 0}, {1 - (int)e, 1 - (int)e}, {1, 1}}};
    for (int64_t t = 0; !r->dry && t < T; t++) {
        wk_tensor xt = vae_on(r->be, wk_tensor_4d(WK_F32, frame_ptr(x, t), 1, H, W, C));
        wk_tensor yt =
            vae_on(r->be, wk_tensor_4d(WK_F32, frame_ptr(&y, t), 1, 2 * H, 2 * W, s->out_dim));
        wk_tensor ui = vae_on(r->be, wk_tensor_4d(WK_F32, (float *)u.data + e * 2 * W * C, 1,
                                                  2 * H, 2 * W, C));
        WF_TRY(wk_upsample2x(r->be, &ui, &xt, r->err));           /* [1, 2H, 2W, C] */
        if (e) WF_TRY(vae_halo_rows(r, u.data, 2 * H, 2 * W, C)); /* [1, 2H + 2, 2W, C] */
        WF_TRY(conv2d(r, &yt, &u, &s->conv.w, &s->conv.b, &cp));  /* [1, 2H, 2W, out] */
    }
    *x = y;
    vae_swap_xy(r, x);
out:
    return st;
}

/* The temporal step of upsample3d. The first chunk after a reset passes its first frame through
 * (Diffusers marks the slot "Rep"); every later frame goes through time_conv with the slot's
 * history (zeros right after the first chunk: that frame is not history) and becomes two frames,
 * channel halves [0, C) and [C, 2C) in that order. */
static wf_status time_up(vae_run *r, const vae_resample *s, wk_tensor *x) {
    wf_status st = WF_OK;
    const int64_t T = x->shape[1], H = x->shape[2], W = x->shape[3], C = x->shape[4];
    vae_slot *slot = next_slot(r, VAE_CACHE_T, x, &s->time_conv);
    const int64_t first = slot->state == VAE_SLOT_EMPTY, n = T - first;
    slot->state = VAE_SLOT_LIVE;
    if (n == 0) goto out;                                           /* [1, 1, H, W, C] */
    wk_tensor xc = vae_take5(r, VAE_RXC, VAE_CACHE_T + n, H, W, C); /* [1, 2 + n, H, W, C] */
    wk_tensor y = vae_take5(r, VAE_RY, n, H, W, 2 * C);             /* [1, n, H, W, 2C] */
    wk_tensor out = vae_take5(r, VAE_RX, first + 2 * n, H, W, C);   /* [1, first + 2n, H, W, C] */
    const wk_tensor sl = slot_tensor(r, slot);
    WF_TRY(copy_frames(r, &xc, 0, &sl, 0, VAE_CACHE_T)); /* history */
    WF_TRY(copy_frames(r, &xc, VAE_CACHE_T, x, first, n)); /* the chunk */
    WF_TRY(copy_frames(r, &sl, 0, &xc, n, VAE_CACHE_T)); /* the last 2 frames */
    wk_conv_params cp = {.stride = {1, 1, 1}};
    WF_TRY(conv3d(r, &y, &xc, &s->time_conv.w, &s->time_conv.b, &cp)); /* [1, n, H, W, 2C] */
    if (!r->dry) { /* out[first + 2i + h][p][c] = y[i][p][h C + c]: [n, HW, 2, C] to [n, 2, ...] */
        wk_tensor o =
            vae_on(r->be, wk_tensor_5d(WK_F32, frame_ptr(&out, first), 1, 2 * n, H, W, C));
        const int64_t shape[4] = {n, H * W, 2, C};
        static const int perm[4] = {0, 2, 1, 3};
        WF_TRY(wk_permute(r->be, &o, &y, 4, shape, perm, r->err)); /* [1, 2n, H, W, C] */
    }
    *x = out;
out:
    return st;
}

/* downsample2d / the spatial step of downsample3d: per frame, ZeroPad2d (0, 1, 0, 1), then a 3x3
 * stride-2 conv */
static wf_status spatial_down(vae_run *r, const vae_resample *s, wk_tensor *x) {
    wf_status st = WF_OK;
    const int64_t T = x->shape[1], H = x->shape[2], W = x->shape[3], C = x->shape[4];
    int64_t Ho = 0, Wo = 0;
    WF_TRY(conv_len(r, s->conv.w.name, H, 1, 3, 2, &Ho));
    WF_TRY(conv_len(r, s->conv.w.name, W, 1, 3, 2, &Wo));
    const int64_t sy[4] = {T, Ho, Wo, s->out_dim};
    wk_tensor y = vae_take(r, VAE_RY, 4, sy); /* [T, Ho, Wo, C] */
    wk_tensor x4 = vae_on(r->be, wk_tensor_4d(WK_F32, x->data, T, H, W, C));
    wk_conv_params cp = {.stride = {1, 2, 2}, .pad = {{0, 0}, {0, 1}, {0, 1}}};
    WF_TRY(conv2d(r, &y, &x4, &s->conv.w, &s->conv.b, &cp));
    *x = vae_on(r->be, wk_tensor_5d(WK_F32, y.data, 1, T, Ho, Wo, s->out_dim));
    vae_swap_xy(r, x);
out:
    return st;
}

/* The temporal step of downsample3d: the first chunk after a reset keeps its first frame as it is
 * and as history; afterwards time_conv (kernel 3, stride 2, no padding) runs over
 * [last frame seen | chunk], and the slot keeps the chunk's last frame. */
static wf_status time_down(vae_run *r, const vae_resample *s, wk_tensor *x) {
    wf_status st = WF_OK;
    const int64_t T = x->shape[1], H = x->shape[2], W = x->shape[3], C = x->shape[4];
    vae_slot *slot = next_slot(r, 1, x, &s->time_conv);
    const int64_t first = slot->state == VAE_SLOT_EMPTY;
    slot->state = VAE_SLOT_LIVE;
    const int64_t L = first ? T : 1 + T; /* frames the conv sees */
    const int64_t n = L >= 3 ? (L - 3) / 2 + 1 : 0;
    if (!first && n == 0) {
        st = wf_fail(
            r->err, WF_EINVAL,
            "vae: %s: a chunk of %lld frame(s) reaches this temporal downsampling; "
            "it needs at least 2 (too many temperal_downsample entries for 4-frame chunks)",
            s->time_conv.w.name, (long long)T);
        goto out;
    }
    wk_tensor xc = vae_take5(r, VAE_RXC, L, H, W, C);       /* [1, L, H, W, C] */
    wk_tensor y = vae_take5(r, VAE_RY, first + n, H, W, C); /* [1, first + n, H, W, C] */
    const wk_tensor sl = slot_tensor(r, slot);
    if (first) {
        WF_TRY(copy_frames(r, &xc, 0, x, 0, T));
        WF_TRY(copy_frames(r, &y, 0, x, 0, 1)); /* frame 0 passes */
    } else {
        WF_TRY(copy_frames(r, &xc, 0, &sl, 0, 1));
        WF_TRY(copy_frames(r, &xc, 1, x, 0, T));
    }
    WF_TRY(copy_frames(r, &sl, 0, x, T - 1, 1));
    if (n > 0) {
        wk_tensor yc = vae_take5(r, VAE_RY, first + n, H, W, C);
        yc.shape[1] = n;
        yc.data = frame_ptr(&y, first);
        wk_conv_params cp = {.stride = {2, 1, 1}};
        WF_TRY(conv3d(r, &yc, &xc, &s->time_conv.w, &s->time_conv.b, &cp)); /* [1, n, H, W, C] */
    }
    *x = y;
    vae_swap_xy(r, x);
out:
    return st;
}

wf_status vae_resample_fwd(vae_run *r, const vae_resample *s, wk_tensor *x) {
    wf_status st;
    switch (s->mode) {
    case VAE_UP2D:
        return spatial_up(r, s, x);
    case VAE_UP3D:
        if ((st = time_up(r, s, x))) return st;
        return spatial_up(r, s, x);
    case VAE_DOWN2D:
        return spatial_down(r, s, x);
    case VAE_DOWN3D:
        if ((st = spatial_down(r, s, x))) return st;
        return time_down(r, s, x);
    }
    WF_ASSERT(0);
    return WF_EINVAL;
}

/* ---- composite parts ---- */

wf_status vae_mid_fwd(vae_run *r, const vae_coder *c, wk_tensor *x, const char *side) {
    wf_status st = WF_OK;
    char stage[32];
    WF_TRY(vae_resblock_fwd(r, &c->mid_res[0], x));
    WF_TRY(vae_attn_fwd(r, &c->mid_attn, x));
    WF_TRY(vae_resblock_fwd(r, &c->mid_res[1], x));
    snprintf(stage, sizeof stage, "%s.mid_block", side);
    vae_tap(r, stage, x);
out:
    return st;
}

/* Wan2.2's shortcut of a residual block, added to its output x: AvgDown3D (encoder, wk_avgdown3d:
 * the group means in double, rounded once; torch sums the group in f32, a difference far below
 * the tolerance) or DupUp3D (decoder, wk_dupup3d) of the block's input s. */
static wf_status shortcut_fwd(vae_run *r, const vae_layer *l, const wk_tensor *s, wk_tensor *x) {
    const vae_shortcut *sc = &l->shortcut;
    const int64_t T = s->shape[1], H = s->shape[2], W = s->shape[3], Ci = s->shape[4];
    const int64_t ft = sc->ft, fs = sc->fs, Co = sc->out;
    WF_ASSERT(Ci == sc->in);
    int64_t To, Ho, Wo, drop = 0;
    if (sc->kind == VAE_SC_AVGDOWN) {
        if (H % fs || W % fs)
            return wf_fail(
                r->err, WF_EINVAL,
                "vae: %s: AvgDown3D needs a height and width divisible by %lld, got %lldx%lld; "
                "use an image size that is a multiple of the spatial factor",
                l->name, (long long)fs, (long long)H, (long long)W);
        const int64_t pad = (ft - T % ft) % ft; /* zero frames in front */
        To = (T + pad) / ft, Ho = H / fs, Wo = W / fs;
    } else {
        drop = r->chunk == 0 ? ft - 1 : 0; /* first_chunk */
        To = T * ft - drop, Ho = H * fs, Wo = W * fs;
    }
    if (To != x->shape[1] || Ho != x->shape[2] || Wo != x->shape[3] || Co != x->shape[4])
        return wf_fail(r->err, WF_EINVAL,
                       "vae: %s: the block shortcut gives [%lld, %lld, %lld, %lld] but the block "
                       "[%lld, %lld, %lld, %lld] (frames, height, width, channels)",
                       l->name, (long long)To, (long long)Ho, (long long)Wo, (long long)Co,
                       (long long)x->shape[1], (long long)x->shape[2], (long long)x->shape[3],
                       (long long)x->shape[4]);
    wk_tensor y = vae_take5(r, VAE_RR, To, Ho, Wo, Co); /* [1, To, Ho, Wo, Co] */
    if (r->dry) return WF_OK;
    wf_status st = sc->kind == VAE_SC_AVGDOWN ? wk_avgdown3d(r->be, &y, s, ft, fs, r->err)
                                              : wk_dupup3d(r->be, &y, s, ft, fs, drop, r->err);
    return st ? st : wk_add(r->be, x, x, &y, r->err); /* main + shortcut */
}

wf_status vae_layers_fwd(vae_run *r, const vae_coder *c, wk_tensor *x) {
    wf_status st = WF_OK;
    for (int i = 0; i < c->n_layers; i++) {
        const vae_layer *l = &c->layers[i];
        if (l->save_input) {
            r->saved = vae_take5(r, VAE_RS, x->shape[1], x->shape[2], x->shape[3], x->shape[4]);
            WF_TRY(copy_frames(r, &r->saved, 0, x, 0, x->shape[1]));
        }
        if (l->is_resample)
            WF_TRY(vae_resample_fwd(r, &l->rs, x));
        else
            WF_TRY(vae_resblock_fwd(r, &l->res, x));
        if (l->shortcut.kind != VAE_SC_NONE) WF_TRY(shortcut_fwd(r, l, &r->saved, x));
        vae_tap(r, l->tap, x);
    }
out:
    return st;
}

wf_status vae_head_fwd(vae_run *r, const vae_coder *c, wk_tensor *x, const char *side) {
    wf_status st = WF_OK;
    char stage[32];
    vae_cconv cc;
    WF_TRY(vae_cconv_begin(r, x->shape[1], x->shape[2], x->shape[3], x->shape[4], &cc));
    WF_TRY(vae_cconv_fill(r, &cc, x, &c->norm_out)); /* [1, T, H, W, C] */
    wk_tensor y;
    WF_TRY(vae_cconv_end(r, &cc, &c->conv_out, VAE_RY, &y)); /* [1, T, H, W, Cout] */
    *x = y;
    vae_swap_xy(r, x);
    snprintf(stage, sizeof stage, "%s.conv_out", side);
    vae_tap(r, stage, x);
out:
    return st;
}
