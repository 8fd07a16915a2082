/* dtype.c: dtype sizes, names and the f16 / fp8-e4m3fn conversions (see dtype.h). */
#include "dtype.h"

#include <math.h>

size_t wk_dtype_size(wk_dtype dt) {
    switch (dt) {
    case WK_F32: return 4;
    case WK_BF16: return 2;
    case WK_F16: return 2;
    case WK_F8E4M3: return 1;
    case WK_I32: return 4;
    default: return 0;
    }
}

const char *wk_dtype_name(wk_dtype dt) {
    switch (dt) {
    case WK_F32: return "f32";
    case WK_BF16: return "bf16";
    case WK_F16: return "f16";
    case WK_F8E4M3: return "f8e4m3";
    case WK_I32: return "i32";
    default: return "?";
    }
}

float wk_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13); /* inf or NaN (payload kept) */
    } else if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: value = man * 2^-24, exact in f32 */
            float f = (float)man * 0x1p-24f;
            memcpy(&u, &f, 4);
            u |= sign;
        }
    } else {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t wk_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((a >> 13) & 0x3ffu); /* NaN */
    if (a >= 0x47800000u) return sign | 0x7c00u;     /* >= 65536: inf (also rounds there) */
    if (a < 0x38800000u) {                           /* below 2^-14: subnormal or zero */
        /* value / 2^-24 rounded to nearest even; float maths is exact here */
        float fa;
        memcpy(&fa, &a, 4);
        float q = fa * 0x1p24f;
        float r = nearbyintf(q); /* default rounding mode: to nearest even */
        return sign | (uint16_t)r;
    }
    uint32_t mant = a + 0xfffu + ((a >> 13) & 1u); /* RNE at bit 13 */
    uint32_t e = (mant >> 23) - 112u;
    if (e >= 0x1f) return sign | 0x7c00u;
    return sign | (uint16_t)((e << 10) | ((mant >> 13) & 0x3ffu));
}

float wk_f8e4m3_to_f32(uint8_t b) {
    uint32_t sign = b >> 7, exp = (b >> 3) & 0xfu, man = b & 0x7u;
    float v;
    if (exp == 0xf && man == 0x7) return sign ? -NAN : NAN;
    if (exp == 0) v = (float)man * 0x1p-9f; /* subnormal: man/8 * 2^-6 */
    else v = ldexpf(1.0f + (float)man / 8.0f, (int)exp - 7);
    return sign ? -v : v;
}

uint8_t wk_f32_to_f8e4m3(float f) {
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (isnan(a) || isinf(a)) return sign | 0x7f;
    /* The largest finite value is 448 = 1.110b * 2^8. The next code (1.111b * 2^8 = 480) is NaN,
     * so anything that rounds above 448 is NaN; the tie 464 rounds to even, i.e. to 448. */
    if (a > 464.0f) return sign | 0x7f;
    if (a < 0x1p-6f) { /* subnormal range: multiples of 2^-9 */
        float r = nearbyintf(a * 0x1p9f);
        return sign | (uint8_t)r; /* r == 8 becomes exp 1, man 0: correct encoding */
    }
    int e;
    float m = frexpf(a, &e);          /* a = m * 2^e, m in [0.5, 1) */
    float q = nearbyintf(m * 16.0f);  /* 8..16: 1.xxx with 3 mantissa bits */
    if (q >= 16.0f) { q = 8.0f; e++; }
    int exp = e - 1 + 7;
    if (exp > 15 || (exp == 15 && q - 8.0f >= 7.0f)) return sign | 0x7f;
    return sign | (uint8_t)((exp << 3) | ((int)q - 8));
}

void wk_convert_to_f32(float *dst, const void *src, wk_dtype dt, size_t n) {
    const unsigned char *s = src;
    switch (dt) {
    case WK_F32: memcpy(dst, src, n * 4); break;
    case WK_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = wk_bf16_to_f32(h);
        }
        break;
    case WK_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = wk_f16_to_f32(h);
        }
        break;
    case WK_F8E4M3:
        for (size_t i = 0; i < n; i++) dst[i] = wk_f8e4m3_to_f32(s[i]);
        break;
    default: break;
    }
}

void wk_convert_from_f32(void *dst, wk_dtype dt, const float *src, size_t n) {
    unsigned char *d = dst;
    switch (dt) {
    case WK_F32: memcpy(dst, src, n * 4); break;
    case WK_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = wk_f32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        break;
    case WK_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = wk_f32_to_f16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        break;
    case WK_F8E4M3:
        for (size_t i = 0; i < n; i++) d[i] = wk_f32_to_f8e4m3(src[i]);
        break;
    default: break;
    }
}
