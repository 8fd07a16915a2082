/* dtype.h: the compute dtypes of the tensor runtime (prefix wk_dtype_) and their conversions.
 *
 * What it is: f32, bf16, f16 and fp8-e4m3fn as storage types. On the CPU every op computes in
 * f32: weights stored narrower are widened blockwise by the op that reads them.
 * Conversions round to nearest even, as torch's .to() does:
 *   - bf16: NaN stays NaN (quiet), overflow rounds to +-inf.
 *   - f16: IEEE binary16 with subnormals; overflow gives +-inf.
 *   - fp8 e4m3fn (bias 7, no inf, NaN = S.1111.111, max 448): |x| that rounds past 448 gives NaN,
 *     as torch's float8_e4m3fn cast does (it does not saturate); inf gives NaN.
 * What it is not: the safetensors dtype list (worker/io/safetensors.h has all of those).
 * Tested by: tests/test_dtype.c (exhaustive decode, round-trip and rounding ties).
 */
#ifndef WK_DTYPE_H
#define WK_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum wk_dtype {
    WK_F32 = 0,
    WK_BF16,
    WK_F16,
    WK_F8E4M3,
    WK_DTYPE_COUNT, /* the float storage types are the ones below this */
    WK_I32 = 16     /* an index type (token ids, masks): never widened or converted */
} wk_dtype;

size_t wk_dtype_size(wk_dtype dt);        /* bytes per element */
const char *wk_dtype_name(wk_dtype dt);   /* "f32", "bf16", "f16", "f8e4m3" */

static inline float wk_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t wk_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                            /* RNE */
    return (uint16_t)(u >> 16);
}

float wk_f16_to_f32(uint16_t h);
uint16_t wk_f32_to_f16(float f);
float wk_f8e4m3_to_f32(uint8_t b);
uint8_t wk_f32_to_f8e4m3(float f);

/* Widens n elements of src (dtype dt) to f32. src may be unaligned. */
void wk_convert_to_f32(float *dst, const void *src, wk_dtype dt, size_t n);
/* Narrows n f32 values to dtype dt, rounding to nearest even. */
void wk_convert_from_f32(void *dst, wk_dtype dt, const float *src, size_t n);

#ifdef __cplusplus
}
#endif

#endif
