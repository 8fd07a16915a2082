/* fuzz_proto.c: libFuzzer target for the farm's wire codec (proto/wire.h): the bytes go to
 * wp_decode as every message kind; what decodes must pass wp_validate and encode again. Built only
 * with clang, beside fuzz_safetensors:
 *   CC=clang cmake -S . -B build-fuzz -DWANFARM_FUZZ=ON -DWANFARM_CUDA=OFF \
 *     -DWANFARM_SANITIZE=address,undefined && cmake --build build-fuzz --target fuzz_proto
 *   build-fuzz/tests/fuzz_proto -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int k = 0; k < WP_NKINDS; k++) {
        ProtobufCMessage *m = NULL;
        wf_err err;
        if (wp_decode((wp_kind)k, data, size, &m, &err) != WF_OK) continue;
        if (wp_validate(m, NULL, &err) != WF_OK) abort(); /* decode let a bad field through */
        uint8_t *out = NULL;
        size_t n = 0;
        if (wp_encode(m, &out, &n, &err) != WF_OK) abort();
        free(out);
        wp_free(m);
    }
    return 0;
}
