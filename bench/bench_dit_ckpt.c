/* bench_dit_ckpt.c: the DiT benches' random checkpoint (see bench_dit_ckpt.h). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_dit_ckpt.h"
#include "bench_util.h"
#include "safetensors.h"

enum { K_WEIGHT, K_NORM, K_TABLE }; /* N(0, 0.02); 1 + N(0, 0.02) (norm gains); N(0, 0.02) */

typedef struct wspec {
    char name[96];
    int ndim;
    uint64_t shape[5];
    int kind;
    int keep_f32; /* Diffusers' _keep_in_fp32_modules: time_embedder, scale_shift_table, norm2 */
} wspec;

typedef struct wlist {
    wspec *v;
    size_t n, cap;
} wlist;

static int wl_add(wlist *l, const char *name, int kind, int keep_f32, int ndim, uint64_t d0,
                  uint64_t d1, uint64_t d2, uint64_t d3, uint64_t d4) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        wspec *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    wspec *s = &l->v[l->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->ndim = ndim;
    uint64_t d[5] = {d0, d1, d2, d3, d4};
    memcpy(s->shape, d, sizeof d);
    s->kind = kind;
    s->keep_f32 = keep_f32;
    return 0;
}

static int build_spec(wlist *l, int layers, const bdc_width *w) {
    const uint64_t D = (uint64_t)(w->heads * BDC_HDIM), P = BDC_PT * BDC_PH * BDC_PW;
    int r = 0;
#define W2(n, a, b) (r |= wl_add(l, n, K_WEIGHT, 0, 2, a, b, 0, 0, 0))
#define B1(n, a) (r |= wl_add(l, n, K_WEIGHT, 0, 1, a, 0, 0, 0, 0))
    r |= wl_add(l, "patch_embedding.weight", K_WEIGHT, 0, 5, D, BDC_CIN, BDC_PT, BDC_PH, BDC_PW);
    B1("patch_embedding.bias", D);
    r |= wl_add(l, "condition_embedder.time_embedder.linear_1.weight", K_WEIGHT, 1, 2, D, BDC_FREQ_DIM, 0, 0, 0);
    r |= wl_add(l, "condition_embedder.time_embedder.linear_1.bias", K_WEIGHT, 1, 1, D, 0, 0, 0, 0);
    r |= wl_add(l, "condition_embedder.time_embedder.linear_2.weight", K_WEIGHT, 1, 2, D, D, 0, 0, 0);
    r |= wl_add(l, "condition_embedder.time_embedder.linear_2.bias", K_WEIGHT, 1, 1, D, 0, 0, 0, 0);
    W2("condition_embedder.time_proj.weight", 6 * D, D);
    B1("condition_embedder.time_proj.bias", 6 * D);
    W2("condition_embedder.text_embedder.linear_1.weight", D, BDC_TEXT_DIM);
    B1("condition_embedder.text_embedder.linear_1.bias", D);
    W2("condition_embedder.text_embedder.linear_2.weight", D, D);
    B1("condition_embedder.text_embedder.linear_2.bias", D);
    r |= wl_add(l, "scale_shift_table", K_TABLE, 1, 3, 1, 2, D, 0, 0);
    W2("proj_out.weight", BDC_COUT * P, D);
    B1("proj_out.bias", BDC_COUT * P);
    static const char *attn[2] = {"attn1", "attn2"};
    static const char *proj[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    char n[96];
    for (int i = 0; i < layers; i++) {
        snprintf(n, sizeof n, "blocks.%d.scale_shift_table", i);
        r |= wl_add(l, n, K_TABLE, 1, 3, 1, 6, D, 0, 0);
        for (int a = 0; a < 2; a++) {
            for (int p = 0; p < 4; p++) {
                snprintf(n, sizeof n, "blocks.%d.%s.%s.weight", i, attn[a], proj[p]);
                W2(n, D, D);
                snprintf(n, sizeof n, "blocks.%d.%s.%s.bias", i, attn[a], proj[p]);
                B1(n, D);
            }
            snprintf(n, sizeof n, "blocks.%d.%s.norm_q.weight", i, attn[a]);
            r |= wl_add(l, n, K_NORM, 0, 1, D, 0, 0, 0, 0);
            snprintf(n, sizeof n, "blocks.%d.%s.norm_k.weight", i, attn[a]);
            r |= wl_add(l, n, K_NORM, 0, 1, D, 0, 0, 0, 0);
        }
        snprintf(n, sizeof n, "blocks.%d.norm2.weight", i);
        r |= wl_add(l, n, K_NORM, 1, 1, D, 0, 0, 0, 0);
        snprintf(n, sizeof n, "blocks.%d.norm2.bias", i);
        r |= wl_add(l, n, K_WEIGHT, 1, 1, D, 0, 0, 0, 0);
        snprintf(n, sizeof n, "blocks.%d.ffn.net.0.proj.weight", i);
        W2(n, (uint64_t)w->ffn, D);
        snprintf(n, sizeof n, "blocks.%d.ffn.net.0.proj.bias", i);
        B1(n, (uint64_t)w->ffn);
        snprintf(n, sizeof n, "blocks.%d.ffn.net.2.weight", i);
        W2(n, D, (uint64_t)w->ffn);
        snprintf(n, sizeof n, "blocks.%d.ffn.net.2.bias", i);
        B1(n, D);
    }
#undef W2
#undef B1
    return r;
}

static uint64_t spec_numel(const wspec *s) {
    uint64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->shape[d];
    return n;
}

/* config.json as save_pretrained writes it (every __init__ argument). */
static int write_config(const char *path, int layers, const bdc_width *w) {
    json_t *o = json_object(), *ps = json_array();
    if (!o || !ps) return -1;
    json_array_append_new(ps, json_integer(BDC_PT));
    json_array_append_new(ps, json_integer(BDC_PH));
    json_array_append_new(ps, json_integer(BDC_PW));
    json_object_set_new(o, "_class_name", json_string("WanTransformer3DModel"));
    json_object_set_new(o, "_diffusers_version", json_string("0.42.1"));
    json_object_set_new(o, "added_kv_proj_dim", json_null());
    json_object_set_new(o, "attention_head_dim", json_integer(BDC_HDIM));
    json_object_set_new(o, "cross_attn_norm", json_true());
    json_object_set_new(o, "eps", json_real(1e-6));
    json_object_set_new(o, "ffn_dim", json_integer(w->ffn));
    json_object_set_new(o, "freq_dim", json_integer(BDC_FREQ_DIM));
    json_object_set_new(o, "image_dim", json_null());
    json_object_set_new(o, "in_channels", json_integer(BDC_CIN));
    json_object_set_new(o, "num_attention_heads", json_integer(w->heads));
    json_object_set_new(o, "num_layers", json_integer(layers));
    json_object_set_new(o, "out_channels", json_integer(BDC_COUT));
    json_object_set_new(o, "patch_size", ps);
    json_object_set_new(o, "pos_embed_seq_len", json_null());
    json_object_set_new(o, "qk_norm", json_string("rms_norm_across_heads"));
    json_object_set_new(o, "rope_max_seq_len", json_integer(BDC_ROPE_MAX));
    json_object_set_new(o, "text_dim", json_integer(BDC_TEXT_DIM));
    int r = json_dump_file(o, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));
    json_decref(o);
    return r;
}

const bdc_width BDC_WAN21_13B = {"Wan2.1-1.3B", BDC_NHEADS, BDC_FFN_DIM};
const bdc_width BDC_A14B = {"Wan2.2-A14B", 40, 13824};

int bdc_write(const char *dir, int layers, wk_dtype wdt, const char *who) {
    return bdc_write_width(dir, layers, wdt, &BDC_WAN21_13B, who);
}

int bdc_write_width(const char *dir, int layers, wk_dtype wdt, const bdc_width *w,
                    const char *who) {
    char path[1200];
    wf_err err = {0};
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (write_config(path, layers, w) != 0) {
        fprintf(stderr, "%s: cannot write %s\n", who, path);
        return 1;
    }
    wlist l = {0};
    if (build_spec(&l, layers, w) != 0) {
        fprintf(stderr, "%s: out of memory\n", who);
        return 1;
    }
    st_item *items = calloc(l.n, sizeof *items);
    void **bufs = calloc(l.n, sizeof *bufs);
    int rc = 1;
    if (!items || !bufs) goto out;
    for (size_t i = 0; i < l.n; i++) {
        const wspec *s = &l.v[i];
        size_t n = (size_t)spec_numel(s);
        wk_dtype dt = s->keep_f32 ? WK_F32 : wdt;
        double mean = s->kind == K_NORM ? 1.0 : 0.0;
        if (!(bufs[i] = bu_random_tensor(s->name, n, mean, BDC_WEIGHT_STD, dt))) goto out;
        items[i] = (st_item){s->name, st_dtype_of(dt), s->ndim, s->shape, bufs[i]};
    }
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    if (st_write(path, items, l.n, NULL, 0, &err) != WF_OK) fprintf(stderr, "%s: %s\n", who, err.msg);
    else rc = 0;
out:
    if (rc && (!items || !bufs)) fprintf(stderr, "%s: out of memory\n", who);
    if (bufs)
        for (size_t i = 0; i < l.n; i++) free(bufs[i]);
    free(bufs);
    free(items);
    free(l.v);
    return rc;
}

