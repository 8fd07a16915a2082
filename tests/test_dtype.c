/* test_dtype.c: exhaustive checks of the narrow-dtype conversions of kernels/dtype.c.
 *
 * What it is: every bf16 and f16 bit pattern (65536 each) and every fp8-e4m3fn code (256) decodes
 * to the value an independent double-precision formula of the format gives (written here from the
 * IEEE / OCP definitions, not from dtype.c) and re-encodes to itself (NaNs stay NaN). Rounding is
 * checked at the midpoint of every pair of adjacent representable values, both signs: the tie goes
 * to the even code, and the nearest f32 above (below) the midpoint goes up (down). Then the edge
 * cases: f16 overflow (65520 -> inf, 65519 -> 65504), fp8's 448 / 464 / 480, tiny subnormals,
 * signed zeros, inf and NaN, and the array conversions against the scalar ones.
 * What it is not: a test of the safetensors dtype list (worker/ has its own).
 * Run: test_dtype (exit 0 when every check holds; failures are listed on stderr).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "test_util.h"

/* A binary format: 1 sign bit, ebits exponent bits, mbits mantissa bits. ieee: the all-ones
 * exponent is inf (mantissa 0) or NaN; otherwise (e4m3fn) only S.1111.111 is NaN and there is
 * no inf. */
typedef struct fmt {
    const char *name;
    int ebits, mbits, bias;
    bool ieee;
    float (*decode)(uint32_t code);
    uint32_t (*encode)(float f);
} fmt;

static float dec_bf16(uint32_t c) { return wk_bf16_to_f32((uint16_t)c); }
static uint32_t enc_bf16(float f) { return wk_f32_to_bf16(f); }
static float dec_f16(uint32_t c) { return wk_f16_to_f32((uint16_t)c); }
static uint32_t enc_f16(float f) { return wk_f32_to_f16(f); }
static float dec_f8(uint32_t c) { return wk_f8e4m3_to_f32((uint8_t)c); }
static uint32_t enc_f8(float f) { return wk_f32_to_f8e4m3(f); }

static const fmt FMT_BF16 = {"bf16", 8, 7, 127, true, dec_bf16, enc_bf16};
static const fmt FMT_F16 = {"f16", 5, 10, 15, true, dec_f16, enc_f16};
static const fmt FMT_F8 = {"f8e4m3", 4, 3, 7, false, dec_f8, enc_f8};

static uint32_t fmt_ncodes(const fmt *f) { return 1u << (1 + f->ebits + f->mbits); }
static uint32_t fmt_sign(const fmt *f) { return 1u << (f->ebits + f->mbits); }

/* The value of a code from the definition: sign, biased exponent e, mantissa m;
 * e = 0: (-1)^s m 2^(1 - bias - mbits) (zero and subnormals);
 * else (-1)^s (2^mbits + m) 2^(e - bias - mbits). NaN codes give NAN. */
static double fmt_value(const fmt *f, uint32_t code) {
    uint32_t emax = (1u << f->ebits) - 1, mmax = (1u << f->mbits) - 1;
    bool neg = (code & fmt_sign(f)) != 0;
    uint32_t e = (code >> f->mbits) & emax, m = code & mmax;
    double v;
    if (f->ieee && e == emax) v = m == 0 ? INFINITY : NAN;
    else if (!f->ieee && e == emax && m == mmax) v = NAN;
    else if (e == 0) v = ldexp((double)m, 1 - f->bias - f->mbits);
    else v = ldexp((double)((1u << f->mbits) + m), (int)e - f->bias - f->mbits);
    return neg ? -v : v;
}

/* The largest finite positive code: below the inf code, or below S.1111.111 for e4m3fn. */
static uint32_t fmt_max_finite(const fmt *f) {
    return f->ieee ? (((1u << f->ebits) - 1) << f->mbits) - 1 : fmt_sign(f) - 2;
}

/* Up to this many individual mismatches are printed per check. */
#define SHOW 5

static void check_decode_roundtrip(const fmt *f) {
    int bad_dec = 0, bad_enc = 0;
    for (uint32_t c = 0; c < fmt_ncodes(f); c++) {
        double want = fmt_value(f, c);
        float got = f->decode(c);
        bool ok = isnan(want) ? isnan(got)
                              : (double)got == want && !signbit(got) == !signbit(want);
        if (!ok && bad_dec++ < SHOW)
            fprintf(stderr, "  %s decode 0x%04x: got %.9g, want %.17g\n", f->name, c, got, want);
        uint32_t back = f->encode(got);
        ok = isnan(want) ? isnan(f->decode(back)) : back == c;
        if (!ok && bad_enc++ < SHOW)
            fprintf(stderr, "  %s encode(decode(0x%04x) = %.9g) = 0x%04x\n", f->name, c, got,
                    back);
    }
    TU_CHECK(bad_dec == 0, "%s: %d of %u codes decode wrongly", f->name, bad_dec, fmt_ncodes(f));
    TU_CHECK(bad_enc == 0, "%s: %d of %u codes do not re-encode to themselves", f->name, bad_enc,
             fmt_ncodes(f));
}

/* Every pair of adjacent codes (c, c + 1) from 0 up to the largest finite value (and, for the
 * IEEE formats, the pair (largest finite, inf)), both signs: the exact midpoint is an f32 (the
 * formats have at most 11 significant bits); it must round to the even code, the next f32 away
 * from zero to c + 1 and the next toward zero to c. */
static void check_midpoints(const fmt *f) {
    uint32_t last = fmt_max_finite(f) + (f->ieee ? 1 : 0); /* c + 1 runs up to this code */
    int bad = 0, pairs = 0;
    for (uint32_t c = 0; c + 1 <= last; c++)
        for (int s = 0; s < 2; s++) {
            uint32_t sg = s ? fmt_sign(f) : 0;
            double lo = fmt_value(f, c), hi = fmt_value(f, c + 1);
            double mid = isinf(hi) ? lo + (lo - fmt_value(f, c - 1)) / 2 : (lo + hi) / 2;
            float m = (float)(s ? -mid : mid);
            if ((double)fabsf(m) != mid) { /* cannot happen for these formats */
                TU_CHECK(0, "%s: midpoint %.17g of 0x%x, 0x%x is not an f32", f->name, mid, c,
                         c + 1);
                continue;
            }
            uint32_t want_tie = (c % 2 == 0 ? c : c + 1) | sg;
            float above = nextafterf(m, s ? -INFINITY : INFINITY);
            float below = nextafterf(m, 0.0f);
            uint32_t got_tie = f->encode(m), got_above = f->encode(above),
                     got_below = f->encode(below);
            pairs++;
            if (got_tie != want_tie || got_above != ((c + 1) | sg) || got_below != (c | sg)) {
                if (bad++ < SHOW)
                    fprintf(stderr,
                            "  %s midpoint %.9g of 0x%04x/0x%04x: tie 0x%04x (want 0x%04x), "
                            "above 0x%04x, below 0x%04x\n",
                            f->name, m, c | sg, (c + 1) | sg, got_tie, want_tie, got_above,
                            got_below);
            }
        }
    TU_CHECK(bad == 0, "%s: %d of %d midpoints round wrongly", f->name, bad, pairs);
    TU_CHECK(pairs > 200, "%s: only %d midpoints checked", f->name, pairs);
}

static void expect_enc(const fmt *f, float x, uint32_t want) {
    uint32_t got = f->encode(x);
    TU_CHECK(got == want, "%s: encode(%.9g) = 0x%04x, want 0x%04x", f->name, x, got, want);
}

static void expect_enc_nan(const fmt *f, float x) {
    uint32_t got = f->encode(x);
    TU_CHECK(isnan(f->decode(got)), "%s: encode(%.9g) = 0x%04x, want NaN", f->name, x, got);
}

static void check_edges(void) {
    /* f16: 65504 is the largest finite; 65520 is the midpoint to 65536 (inf) and ties up */
    expect_enc(&FMT_F16, 65504.0f, 0x7bff);
    expect_enc(&FMT_F16, 65519.0f, 0x7bff);
    expect_enc(&FMT_F16, 65520.0f, 0x7c00);
    expect_enc(&FMT_F16, -65520.0f, 0xfc00);
    expect_enc(&FMT_F16, 1e10f, 0x7c00);
    expect_enc(&FMT_F16, INFINITY, 0x7c00);
    expect_enc(&FMT_F16, -INFINITY, 0xfc00);
    expect_enc(&FMT_F16, 0x1p-24f, 0x0001);   /* smallest subnormal */
    expect_enc(&FMT_F16, 0x1p-25f, 0x0000);   /* half of it: tie to even (0) */
    expect_enc(&FMT_F16, nextafterf(0x1p-25f, 1.0f), 0x0001);
    expect_enc(&FMT_F16, 0x1.8p-24f, 0x0002); /* 1.5 ulp: tie to even (2) */
    expect_enc(&FMT_F16, 1e-30f, 0x0000);
    expect_enc(&FMT_F16, -1e-30f, 0x8000);
    expect_enc(&FMT_F16, 1e-45f, 0x0000);     /* an f32 subnormal */
    expect_enc(&FMT_F16, 0x1p-14f, 0x0400);   /* smallest normal */
    expect_enc(&FMT_F16, nextafterf(0x1p-14f, 0.0f), 0x0400); /* rounds up into the normals */
    expect_enc(&FMT_F16, -0.0f, 0x8000);
    expect_enc_nan(&FMT_F16, NAN);
    expect_enc_nan(&FMT_F16, -NAN);

    /* bf16: overflow to inf, NaN stays NaN, subnormals */
    expect_enc(&FMT_BF16, 3.4028235e38f, 0x7f80); /* FLT_MAX is above the last midpoint */
    expect_enc(&FMT_BF16, 0x1.fep127f, 0x7f7f);   /* the largest finite bf16 itself */
    expect_enc(&FMT_BF16, INFINITY, 0x7f80);
    expect_enc(&FMT_BF16, -INFINITY, 0xff80);
    expect_enc(&FMT_BF16, 0x1p-133f, 0x0001);     /* smallest bf16 subnormal */
    expect_enc(&FMT_BF16, 0x1p-134f, 0x0000);     /* its half: tie to even */
    expect_enc(&FMT_BF16, 1e-45f, 0x0000);
    expect_enc(&FMT_BF16, -0.0f, 0x8000);
    expect_enc(&FMT_BF16, 1.0f + 0x1p-8f, 0x3f80);               /* tie: to even 1.0 */
    expect_enc(&FMT_BF16, 1.0f + 0x1p-8f + 0x1p-23f, 0x3f81);    /* just above: up */
    expect_enc(&FMT_BF16, 1.0f + 0x1p-7f + 0x1p-8f, 0x3f82);     /* tie from odd: up */
    expect_enc_nan(&FMT_BF16, NAN);
    expect_enc_nan(&FMT_BF16, -NAN);
    {
        uint32_t u = 0x7f800001u; /* a signalling NaN whose payload sits in the low bits only */
        float sn;
        memcpy(&sn, &u, 4);
        expect_enc_nan(&FMT_BF16, sn);
        expect_enc_nan(&FMT_F16, sn);
        expect_enc_nan(&FMT_F8, sn);
    }

    /* fp8 e4m3fn: max 448; the tie 464 rounds to even (448); above it NaN, as torch casts */
    TU_CHECK(wk_f8e4m3_to_f32(0x7e) == 448.0f, "f8e4m3 0x7e = %g, want 448",
             wk_f8e4m3_to_f32(0x7e));
    TU_CHECK(isnan(wk_f8e4m3_to_f32(0x7f)) && isnan(wk_f8e4m3_to_f32(0xff)),
             "f8e4m3 0x7f and 0xff must be NaN");
    expect_enc(&FMT_F8, 448.0f, 0x7e);
    expect_enc(&FMT_F8, -448.0f, 0xfe);
    expect_enc(&FMT_F8, 463.99f, 0x7e);
    expect_enc(&FMT_F8, 464.0f, 0x7e);
    expect_enc(&FMT_F8, -464.0f, 0xfe);
    expect_enc_nan(&FMT_F8, 464.0001f);
    expect_enc_nan(&FMT_F8, -464.0001f);
    expect_enc_nan(&FMT_F8, 480.0f);
    expect_enc_nan(&FMT_F8, 1e6f);
    expect_enc_nan(&FMT_F8, INFINITY);
    expect_enc_nan(&FMT_F8, -INFINITY);
    expect_enc_nan(&FMT_F8, NAN);
    expect_enc(&FMT_F8, INFINITY, 0x7f);
    expect_enc(&FMT_F8, -INFINITY, 0xff);
    expect_enc(&FMT_F8, 0x1p-9f, 0x01);   /* smallest subnormal */
    expect_enc(&FMT_F8, 0x1p-10f, 0x00);  /* its half: tie to even */
    expect_enc(&FMT_F8, -0x1p-10f, 0x80);
    expect_enc(&FMT_F8, nextafterf(0x1p-10f, 1.0f), 0x01);
    expect_enc(&FMT_F8, 0x1.8p-9f, 0x02); /* 1.5 ulp: tie to even */
    expect_enc(&FMT_F8, 0x1.ep-7f, 0x08); /* 7.5 * 2^-9 ties up to 8 * 2^-9 = 2^-6 (0x08) */
    expect_enc(&FMT_F8, 1e-30f, 0x00);
    expect_enc(&FMT_F8, -0.0f, 0x80);
}

/* The array conversions agree with the scalar ones on every code, from unaligned buffers. */
static void check_arrays(const fmt *f, wk_dtype dt) {
    uint32_t n = fmt_ncodes(f);
    size_t es = wk_dtype_size(dt);
    unsigned char *raw = malloc(n * es + 1), *raw2 = malloc(n * es + 1);
    float *vals = malloc(n * sizeof(float));
    if (!raw || !raw2 || !vals) {
        TU_CHECK(0, "out of memory");
        goto out;
    }
    for (uint32_t c = 0; c < n; c++) {
        if (es == 2) {
            uint16_t h = (uint16_t)c;
            memcpy(raw + 1 + 2 * c, &h, 2);
        } else {
            raw[1 + c] = (uint8_t)c;
        }
    }
    wk_convert_to_f32(vals, raw + 1, dt, n);
    int bad = 0;
    for (uint32_t c = 0; c < n; c++) {
        float s = f->decode(c);
        if (!(isnan(s) ? isnan(vals[c]) : memcmp(&s, &vals[c], 4) == 0)) bad++;
    }
    TU_CHECK(bad == 0, "%s: wk_convert_to_f32 differs from the scalar decode on %d codes",
             f->name, bad);
    wk_convert_from_f32(raw2 + 1, dt, vals, n);
    bad = 0;
    for (uint32_t c = 0; c < n; c++) {
        uint32_t got = 0;
        memcpy(&got, raw2 + 1 + es * c, es);
        if (got != f->encode(vals[c])) bad++;
    }
    TU_CHECK(bad == 0, "%s: wk_convert_from_f32 differs from the scalar encode on %d codes",
             f->name, bad);
out:
    free(raw);
    free(raw2);
    free(vals);
}

int main(void) {
    const fmt *fmts[3] = {&FMT_BF16, &FMT_F16, &FMT_F8};
    const wk_dtype dts[3] = {WK_BF16, WK_F16, WK_F8E4M3};
    for (int i = 0; i < 3; i++) {
        check_decode_roundtrip(fmts[i]);
        check_midpoints(fmts[i]);
        check_arrays(fmts[i], dts[i]);
    }
    check_edges();

    TU_CHECK(wk_dtype_size(WK_F32) == 4 && wk_dtype_size(WK_BF16) == 2 &&
                 wk_dtype_size(WK_F16) == 2 && wk_dtype_size(WK_F8E4M3) == 1,
             "dtype sizes");
    TU_CHECK(strcmp(wk_dtype_name(WK_F32), "f32") == 0 &&
                 strcmp(wk_dtype_name(WK_BF16), "bf16") == 0 &&
                 strcmp(wk_dtype_name(WK_F16), "f16") == 0 &&
                 strcmp(wk_dtype_name(WK_F8E4M3), "f8e4m3") == 0,
             "dtype names");
    TU_CHECK(fmt_value(&FMT_F16, 0x7bff) == 65504.0 && fmt_value(&FMT_F8, 0x7e) == 448.0 &&
                 fmt_value(&FMT_BF16, 0x3f80) == 1.0 && fmt_value(&FMT_F8, 0x01) == 0x1p-9,
             "the reference formula itself (65504, 448, 1, 2^-9)");

    printf("test_dtype: %s (%d failures)\n", tu_failures ? "FAILED" : "OK", tu_failures);
    return tu_failures ? 1 : 0;
}
