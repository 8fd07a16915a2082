/* cuda_sdpa.c: cuDNN's fused scaled dot-product attention through the backend C API
 * (wk_cuda_sdpa_prepare, wk_cuda_sdpa_bf16), plans cached per shape, and the per-backend set of
 * attention shapes already logged (wk_cuda_attn_first).
 *
 * What it is: one CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR (cuDNN >= 9.13, "unified SDPA")
 * over bf16 Q [1, NH, Lq, HD], K, V [1, NH, Lkv, HD], O [1, NH, Lq, HD] in BSHD memory (token-major
 * [L, NH, HD]: strides {L*NH*HD, HD, NH*HD, 1}, 16-byte aligned) and a by-value f32 scale; no
 * stats (inference). The graph goes to the heuristics (CUDNN_HEUR_MODE_A, then FALLBACK), the
 * engine configs are tried in order until an execution plan finalizes, the plan and its
 * descriptors are kept in the cache (one per (Lq, Lkv, NH, HD)), and a call builds a variant
 * pack and executes on the backend's stream. A shape cuDNN cannot run is cached as such, with
 * the reason, so the heuristics run once per shape either way.
 * Padded keys (kv_len < Lk): the K and V tensors are given Lkv = kv_len tokens. In BSHD memory
 * the first kv_len tokens are a plain sub-tensor (same strides), so the masked keys are not part
 * of the problem at all: no SEQ_LEN_KV padding mask (and no device tensor of lengths) is needed,
 * the result is the softmax over the first kv_len keys exactly as backend.h defines it, and
 * every dense engine can run it. The plan is per kv_len, which the cache key holds anyway.
 * What it is not: a bias, causal or dropout attention (those run on cuda_attention.cu's own
 * kernel), nor FP8.
 * Tested by: tests/test_backend_ops.c (attention rows with WANFARM_CUDA_ATTN=cudnn) and
 * bench/gpu-check.sh, on a GPU machine.
 */
#include <cudnn_graph.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

typedef cudnnBackendDescriptor_t sdpa_desc;

enum { SDPA_Q = 1, SDPA_K, SDPA_V, SDPA_O, SDPA_SCALE, SDPA_NT = 5 }; /* tensor uids */

typedef struct sdpa_plan {
    int64_t Lq, Lkv, NH, HD;  /* the key; Lkv: the keys the plan reads (kv_len applied) */
    wf_status st;             /* WF_OK: plan ready; WF_EUNSUPPORTED: cuDNN cannot run it */
    char why[WF_ERR_MSG];     /* st != WF_OK: the reason */
    int64_t engine;           /* cuDNN's global engine index, -1 unknown */
    size_t ws_bytes;          /* cuDNN workspace of the plan */
    sdpa_desc tens[SDPA_NT], op, graph, heur, cfg, plan; /* kept alive with the plan */
} sdpa_plan;

struct wk_cuda_sdpa_cache {
    sdpa_plan *plans;         /* [n_plans], grows by doubling */
    size_t n_plans, cap_plans;
    int64_t (*seen)[7];       /* attention (path, shape) keys already logged */
    size_t n_seen, cap_seen;
};

/* cuDNN 9.19 marks the handle attributes of the operation graph and the execution plan
 * deprecated (new code may name the device through a DEVICEPROP descriptor) but still honours
 * them; every backend-API user sets them, and the plan then runs on the handle's device. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static const cudnnBackendAttributeName_t SDPA_ATTR_GRAPH_HANDLE = CUDNN_ATTR_OPERATIONGRAPH_HANDLE;
static const cudnnBackendAttributeName_t SDPA_ATTR_PLAN_HANDLE = CUDNN_ATTR_EXECUTION_PLAN_HANDLE;
#pragma GCC diagnostic pop

/* ---- the caches ---- */

wf_status wk_cuda_sdpa_init(wk_cuda *c, wf_err *err) {
    if (c->sdpa) return WF_OK;
    c->sdpa = calloc(1, sizeof *c->sdpa);
    if (!c->sdpa) return wf_fail(err, WF_ENOMEM, "cuda: sdpa plan cache: out of memory");
    return WF_OK;
}

static void sdpa_destroy(sdpa_desc *d) {
    if (*d) cudnnBackendDestroyDescriptor(*d);
    *d = NULL;
}

static void sdpa_plan_release(sdpa_plan *p) {
    sdpa_destroy(&p->plan);
    sdpa_destroy(&p->cfg);
    sdpa_destroy(&p->heur);
    sdpa_destroy(&p->graph);
    sdpa_destroy(&p->op);
    for (int i = 0; i < SDPA_NT; i++) sdpa_destroy(&p->tens[i]);
}

void wk_cuda_sdpa_free(wk_cuda *c) {
    if (!c || !c->sdpa) return;
    for (size_t i = 0; i < c->sdpa->n_plans; i++) sdpa_plan_release(&c->sdpa->plans[i]);
    free(c->sdpa->plans);
    free(c->sdpa->seen);
    free(c->sdpa);
    c->sdpa = NULL;
}

int wk_cuda_attn_first(wk_cuda *c, const int64_t key[7]) {
    if (wk_cuda_sdpa_init(c, NULL) != WF_OK) return 1; /* no memory: log every time */
    struct wk_cuda_sdpa_cache *s = c->sdpa;
    for (size_t i = 0; i < s->n_seen; i++)
        if (memcmp(s->seen[i], key, sizeof s->seen[i]) == 0) return 0;
    if (s->n_seen == s->cap_seen) {
        size_t cap = s->cap_seen ? 2 * s->cap_seen : 16;
        void *p = realloc(s->seen, cap * sizeof s->seen[0]);
        if (!p) return 1;
        s->seen = p;
        s->cap_seen = cap;
    }
    memcpy(s->seen[s->n_seen++], key, sizeof s->seen[0]);
    return 1;
}

/* ---- descriptor helpers: each returns WF_EUNSUPPORTED with cuDNN's words on failure (a graph
 * cuDNN will not take is a shape it cannot run; the caller falls back to its own kernel) ---- */

static wf_status sdpa_ck(cudnnStatus_t s, const char *what, wf_err *err) {
    if (s == CUDNN_STATUS_SUCCESS) return WF_OK;
    char last[384] = "";
    cudnnGetLastErrorString(last, sizeof last);
    return wf_fail(err, WF_EUNSUPPORTED, "cudnn sdpa: %s: %s%s%s", what, cudnnGetErrorString(s),
                   last[0] ? ": " : "", last);
}

static wf_status sdpa_set(sdpa_desc d, cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t,
                          int64_t n, const void *v, const char *what, wf_err *err) {
    return sdpa_ck(cudnnBackendSetAttribute(d, a, t, n, v), what, err);
}

/* A finalized tensor descriptor: dims/strides [4], 16-byte aligned; by_value: a host scalar. */
static wf_status sdpa_tensor(sdpa_desc *out, int64_t uid, cudnnDataType_t dt, const int64_t dim[4],
                             const int64_t str[4], bool by_value, wf_err *err) {
    wf_status st;
    const int64_t align = 16;
    if ((st = sdpa_ck(cudnnBackendCreateDescriptor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, out),
                      "tensor descriptor", err)))
        return st;
    if ((st = sdpa_set(*out, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor uid",
                       err)) ||
        (st = sdpa_set(*out, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt,
                       "tensor data type", err)) ||
        (st = sdpa_set(*out, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim,
                       "tensor dims", err)) ||
        (st = sdpa_set(*out, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, str,
                       "tensor strides", err)) ||
        (st = sdpa_set(*out, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align,
                       "tensor alignment", err)))
        return st;
    if (by_value && (st = sdpa_set(*out, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1,
                                   &by_value, "tensor by value", err)))
        return st;
    return sdpa_ck(cudnnBackendFinalize(*out), "tensor finalize", err);
}

/* Q, K, V, O (bf16, BSHD strides) and the scale; then the SDPA_FWD operation over them. */
static wf_status sdpa_build_op(sdpa_plan *p, wf_err *err) {
    wf_status st;
    const int64_t NH = p->NH, HD = p->HD;
    const int64_t dq[4] = {1, NH, p->Lq, HD}, sq[4] = {p->Lq * NH * HD, HD, NH * HD, 1};
    const int64_t dk[4] = {1, NH, p->Lkv, HD}, sk[4] = {p->Lkv * NH * HD, HD, NH * HD, 1};
    const int64_t d1[4] = {1, 1, 1, 1};
    if ((st = sdpa_tensor(&p->tens[0], SDPA_Q, CUDNN_DATA_BFLOAT16, dq, sq, false, err)) ||
        (st = sdpa_tensor(&p->tens[1], SDPA_K, CUDNN_DATA_BFLOAT16, dk, sk, false, err)) ||
        (st = sdpa_tensor(&p->tens[2], SDPA_V, CUDNN_DATA_BFLOAT16, dk, sk, false, err)) ||
        (st = sdpa_tensor(&p->tens[3], SDPA_O, CUDNN_DATA_BFLOAT16, dq, sq, false, err)) ||
        (st = sdpa_tensor(&p->tens[4], SDPA_SCALE, CUDNN_DATA_FLOAT, d1, d1, true, err)))
        return st;
    if ((st = sdpa_ck(cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR,
                                                   &p->op),
                      "SDPA_FWD descriptor", err)))
        return st;
    const cudnnBackendAttributeName_t at[SDPA_NT] = {
        CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC,
        CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC,
        CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC};
    for (int i = 0; i < SDPA_NT; i++)
        if ((st = sdpa_set(p->op, at[i], CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &p->tens[i],
                           "SDPA_FWD tensor", err)))
            return st;
    return sdpa_ck(cudnnBackendFinalize(p->op), "SDPA_FWD finalize", err);
}

static wf_status sdpa_build_graph(sdpa_plan *p, cudnnHandle_t dnn, wf_err *err) {
    wf_status st;
    if ((st = sdpa_ck(cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR,
                                                   &p->graph),
                      "operation graph", err)) ||
        (st = sdpa_set(p->graph, SDPA_ATTR_GRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &dnn,
                       "graph handle", err)) ||
        (st = sdpa_set(p->graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                       &p->op, "graph ops", err)))
        return st;
    return sdpa_ck(cudnnBackendFinalize(p->graph), "graph finalize", err);
}

/* cuDNN's global index of the engine behind an engine config (-1 when it will not say). */
static int64_t sdpa_engine_index(sdpa_desc cfg) {
    sdpa_desc eng = NULL;
    int64_t n = 0, idx = -1;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng) != CUDNN_STATUS_SUCCESS)
        return -1;
    if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                 &n, &eng) != CUDNN_STATUS_SUCCESS ||
        cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n,
                                 &idx) != CUDNN_STATUS_SUCCESS)
        idx = -1;
    cudnnBackendDestroyDescriptor(eng);
    return idx;
}

/* Tries the configs cfgs[0..n) in order; the first whose plan finalizes moves into p (p->cfg,
 * p->plan; cfgs[i] = NULL). WF_EUNSUPPORTED when none does. */
static wf_status sdpa_try_configs(sdpa_plan *p, cudnnHandle_t dnn, sdpa_desc *cfgs, int64_t n,
                                  wf_err *err) {
    wf_status st = wf_fail(err, WF_EUNSUPPORTED, "cudnn sdpa: no engine config finalizes");
    for (int64_t i = 0; i < n && !p->plan; i++) {
        sdpa_desc plan = NULL;
        if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan) !=
            CUDNN_STATUS_SUCCESS)
            continue;
        cudnnStatus_t s = cudnnBackendSetAttribute(plan, SDPA_ATTR_PLAN_HANDLE, CUDNN_TYPE_HANDLE,
                                                   1, &dnn);
        if (s == CUDNN_STATUS_SUCCESS)
            s = cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[i]);
        if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(plan);
        if (s != CUDNN_STATUS_SUCCESS) {
            st = sdpa_ck(s, "execution plan finalize (last engine config tried)", err);
            cudnnBackendDestroyDescriptor(plan);
            continue;
        }
        p->plan = plan;
        p->cfg = cfgs[i];
        cfgs[i] = NULL;
        p->engine = sdpa_engine_index(p->cfg);
        st = WF_OK;
    }
    return st;
}

/* One heuristic mode: its engine configs, tried in order. On WF_OK p->heur, cfg, plan are set. */
static wf_status sdpa_heuristic(sdpa_plan *p, cudnnHandle_t dnn, cudnnBackendHeurMode_t mode,
                                wf_err *err) {
    wf_status st;
    sdpa_desc heur = NULL, *cfgs = NULL;
    int64_t n = 0, got = 0;
    if ((st = sdpa_ck(cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur),
                      "heuristics descriptor", err)))
        goto out;
    WF_TRY(sdpa_set(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                    &p->graph, "heuristics graph", err));
    WF_TRY(sdpa_set(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode,
                    "heuristics mode", err));
    WF_TRY(sdpa_ck(cudnnBackendFinalize(heur), "heuristics finalize", err));
    WF_TRY(sdpa_ck(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &n, NULL),
                   "heuristics result count", err));
    if (n <= 0) {
        st = wf_fail(err, WF_EUNSUPPORTED, "cudnn sdpa: the heuristics offer no engine");
        goto out;
    }
    cfgs = calloc((size_t)n, sizeof *cfgs);
    if (!cfgs) {
        st = wf_fail(err, WF_ENOMEM, "cudnn sdpa: out of memory");
        goto out;
    }
    for (int64_t i = 0; i < n; i++)
        WF_TRY(sdpa_ck(cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfgs[i]),
                       "engine config descriptor", err));
    WF_TRY(sdpa_ck(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                            CUDNN_TYPE_BACKEND_DESCRIPTOR, n, &got, cfgs),
                   "heuristics results", err));
    WF_TRY(sdpa_try_configs(p, dnn, cfgs, got < n ? got : n, err));
    p->heur = heur;
    heur = NULL;
out:
    for (int64_t i = 0; cfgs && i < n; i++) sdpa_destroy(&cfgs[i]);
    free(cfgs);
    sdpa_destroy(&heur);
    return st;
}

/* The whole build for p's shape; on failure p->st, p->why say why (descriptors released). */
static void sdpa_build(sdpa_plan *p, cudnnHandle_t dnn) {
    wf_err e = {0};
    wf_status st = sdpa_build_op(p, &e);
    if (st == WF_OK) st = sdpa_build_graph(p, dnn, &e);
    if (st == WF_OK) st = sdpa_heuristic(p, dnn, CUDNN_HEUR_MODE_A, &e);
    if (st == WF_EUNSUPPORTED) {
        wf_err ea = e; /* keep mode A's reason if FALLBACK fails too */
        st = sdpa_heuristic(p, dnn, CUDNN_HEUR_MODE_FALLBACK, &e);
        if (st != WF_OK) e = ea;
    }
    if (st == WF_OK) {
        int64_t n = 0, ws = 0;
        st = sdpa_ck(cudnnBackendGetAttribute(p->plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                              CUDNN_TYPE_INT64, 1, &n, &ws),
                     "plan workspace size", &e);
        p->ws_bytes = ws > 0 ? (size_t)ws : 0;
    }
    p->st = st == WF_OK ? WF_OK : WF_EUNSUPPORTED;
    if (st != WF_OK) {
        snprintf(p->why, sizeof p->why, "%s", e.msg);
        sdpa_plan_release(p);
    }
}

/* ---- lookup ---- */

/* The cache entry for the shape, built on first use; NULL only when host memory runs out. */
static sdpa_plan *sdpa_lookup(wk_cuda *c, int64_t Lq, int64_t Lkv, int64_t NH, int64_t HD,
                              wf_err *err) {
    if (wk_cuda_sdpa_init(c, err) != WF_OK) return NULL;
    struct wk_cuda_sdpa_cache *s = c->sdpa;
    for (size_t i = 0; i < s->n_plans; i++) {
        sdpa_plan *p = &s->plans[i];
        if (p->Lq == Lq && p->Lkv == Lkv && p->NH == NH && p->HD == HD) return p;
    }
    if (s->n_plans == s->cap_plans) {
        size_t cap = s->cap_plans ? 2 * s->cap_plans : 8;
        sdpa_plan *np = realloc(s->plans, cap * sizeof *np);
        if (!np) {
            wf_fail(err, WF_ENOMEM, "cudnn sdpa: plan cache: out of memory");
            return NULL;
        }
        s->plans = np;
        s->cap_plans = cap;
    }
    sdpa_plan *p = &s->plans[s->n_plans++];
    memset(p, 0, sizeof *p);
    p->Lq = Lq, p->Lkv = Lkv, p->NH = NH, p->HD = HD, p->engine = -1;
    sdpa_build(p, (cudnnHandle_t)c->dnn);
    return p;
}

/* The keys a call reads: kv_len applied (backend.h: kv_len <= 0 or >= Lk masks none). */
static int64_t sdpa_keys(int64_t Lk, int64_t kv_len) {
    return kv_len > 0 && kv_len < Lk ? kv_len : Lk;
}

/* Shape checks that need no cuDNN call: WF_EUNSUPPORTED with the reason. */
static wf_status sdpa_check_shape(wk_cuda *c, int64_t Lq, int64_t Lkv, int64_t NH, int64_t HD,
                                  wf_err *err) {
    if (!c->dnn)
        return wf_fail(err, WF_EUNSUPPORTED, "cudnn sdpa: no cuDNN handle (%s)",
                       c->dnn_why[0] ? c->dnn_why : "cuDNN was not initialised");
    if (HD % 8 != 0 || HD > 256)
        return wf_fail(err, WF_EUNSUPPORTED, "cudnn sdpa: head dim %lld, cuDNN takes HD %% 8 == 0 "
                       "and HD <= 256", (long long)HD);
    if (Lq < 1 || Lkv < 1 || NH < 1)
        return wf_fail(err, WF_EUNSUPPORTED, "cudnn sdpa: empty problem (Lq %lld, keys %lld, "
                       "NH %lld)", (long long)Lq, (long long)Lkv, (long long)NH);
    return WF_OK;
}

wf_status wk_cuda_sdpa_prepare(wk_backend *be, int64_t Lq, int64_t Lk, int64_t NH, int64_t HD,
                               int64_t kv_len, size_t *ws_bytes, int64_t *engine, wf_err *err) {
    wk_cuda *c = wk_cuda_of(be);
    const int64_t Lkv = sdpa_keys(Lk, kv_len);
    wf_status st = sdpa_check_shape(c, Lq, Lkv, NH, HD, err);
    if (st) return st;
    sdpa_plan *p = sdpa_lookup(c, Lq, Lkv, NH, HD, err);
    if (!p) return WF_ENOMEM;
    if (p->st != WF_OK) return wf_fail(err, p->st, "%s", p->why);
    if (ws_bytes) *ws_bytes = p->ws_bytes;
    if (engine) *engine = p->engine;
    return WF_OK;
}

/* A bf16 buffer of n elements cuDNN may read: 16-byte aligned and clear of the workspace's first
 * ws bytes (cuDNN's). */
static wf_status sdpa_check_buf(const void *b, int64_t n, const void *ws, size_t wsb,
                                const char *arg, wf_err *err) {
    const char *p = b, *w = ws;
    if (!b || ((uintptr_t)b & 15u))
        return wf_fail(err, WF_EUNSUPPORTED, "cudnn sdpa: %s %p is not 16-byte aligned", arg, b);
    if (wsb && p < w + wsb && w < p + (size_t)n * 2)
        return wf_fail(err, WF_EINVAL, "cudnn sdpa: %s overlaps cuDNN's workspace (the first %zu "
                       "bytes of the backend workspace)", arg, wsb);
    return WF_OK;
}

static wf_status sdpa_execute(wk_cuda *c, sdpa_plan *p, void *const ptrs[SDPA_NT], void *ws,
                              wf_err *err) {
    wf_status st = WF_OK;
    sdpa_desc pack = NULL;
    const int64_t uids[SDPA_NT] = {SDPA_Q, SDPA_K, SDPA_V, SDPA_O, SDPA_SCALE};
    cudnnStatus_t s = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
                                     SDPA_NT, uids);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                     CUDNN_TYPE_VOID_PTR, SDPA_NT, ptrs);
    if (s == CUDNN_STATUS_SUCCESS)
        s = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR,
                                     1, &ws);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendFinalize(pack);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnSetStream((cudnnHandle_t)c->dnn, c->stream);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnBackendExecute((cudnnHandle_t)c->dnn, p->plan, pack);
    if (s != CUDNN_STATUS_SUCCESS) {
        char last[384] = "";
        cudnnGetLastErrorString(last, sizeof last);
        st = wf_fail(err, WF_ECUDA, "cudnn sdpa: execute [%lld, %lld, %lld, %lld] (engine %lld): "
                     "%s%s%s", (long long)p->Lq, (long long)p->Lkv, (long long)p->NH,
                     (long long)p->HD, (long long)p->engine, cudnnGetErrorString(s),
                     last[0] ? ": " : "", last);
    }
    sdpa_destroy(&pack);
    return st;
}

wf_status wk_cuda_sdpa_bf16(wk_backend *be, void *o, const void *q, const void *k, const void *v,
                            int64_t Lq, int64_t Lk, int64_t NH, int64_t HD, float scale,
                            int64_t kv_len, wf_err *err) {
    wk_cuda *c = wk_cuda_of(be);
    const int64_t Lkv = sdpa_keys(Lk, kv_len);
    size_t wsb = 0;
    int64_t engine = -1;
    wf_status st = wk_cuda_sdpa_prepare(be, Lq, Lk, NH, HD, kv_len, &wsb, &engine, err);
    if (st) return st;
    sdpa_plan *p = sdpa_lookup(c, Lq, Lkv, NH, HD, err); /* found: prepare built it */
    if (!p) return WF_ENOMEM;
    void *ws = NULL;
    if (wsb > 0 && (st = wk_backend_workspace(be, wsb, &ws, err)) != WF_OK) {
        wf_err_prefix(err, "cudnn sdpa: ");
        return st;
    }
    const int64_t nq = Lq * NH * HD, nk = Lkv * NH * HD;
    if ((st = sdpa_check_buf(q, nq, ws, wsb, "q", err)) ||
        (st = sdpa_check_buf(k, nk, ws, wsb, "k", err)) ||
        (st = sdpa_check_buf(v, nk, ws, wsb, "v", err)) ||
        (st = sdpa_check_buf(o, nq, ws, wsb, "o", err)))
        return st;
    float sc = scale; /* by value: the pack holds a host pointer to it, read at execute */
    void *const ptrs[SDPA_NT] = {(void *)q, (void *)k, (void *)v, o, &sc};
    return sdpa_execute(c, p, ptrs, ws, err);
}
