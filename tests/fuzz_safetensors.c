/* fuzz_safetensors.c: libFuzzer target for the safetensors header parser (st_parse) and, when a
 * file parses, for st_tensor_view on every tensor. Built only with clang:
 *   CC=clang cmake -S . -B build-fuzz -DWANFARM_FUZZ=ON -DWANFARM_CUDA=OFF \
 *     -DWANFARM_SANITIZE=address,undefined && cmake --build build-fuzz --target fuzz_safetensors
 *   build-fuzz/tests/fuzz_safetensors -max_total_time=60 tests/fuzz_corpus
 */
#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file *f = NULL;
    wf_err err;
    if (st_parse(&f, data, size, "fuzz", &err) == WF_OK) {
        for (size_t i = 0; i < f->n_tensors; i++) {
            wk_tensor t;
            if (st_tensor_view(&f->tensors[i], &t, &err) == WF_OK && wk_tensor_nbytes(&t) > 0) {
                volatile unsigned char c = ((const unsigned char *)t.data)[wk_tensor_nbytes(&t) - 1];
                (void)c;
            }
        }
        st_close(&f);
    }
    return 0;
}
