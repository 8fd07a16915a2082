/* spm_shim.h: a minimal C interface to libsentencepiece (prefix spm_).
 *
 * What it is: the one C++ file of wanfarm (spm_shim.cc) behind a plain C header: load a
 * SentencePiece model file, encode UTF-8 text to piece ids, look pieces up, free. Every entry point
 * catches every C++ exception, so none ever crosses into C; failures come back as NULL or a
 * negative count, with libsentencepiece's message copied into the caller's buffer.
 * What it is not: a tokenizer. Prompt cleaning, the special tokens transformers splits out, the
 * appended </s>, truncation and padding live in tokenizer.c (prefix tok_).
 * Tested by: tests/test_tokenizer.c (through tok_*), also under the sanitizer build.
 */
#ifndef SPM_SHIM_H
#define SPM_SHIM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct spm_model spm_model;

/* Loads a model file; NULL on failure with the reason in err (NUL-terminated, may be cut). */
spm_model *spm_load(const char *path, char *err, size_t errlen);
void spm_free(spm_model *m); /* accepts NULL */

/* Encodes len bytes of UTF-8 text (need not be NUL-terminated). On success returns the number of
 * ids and sets *ids to a malloc'd array the caller frees with free() (NULL when the count is 0).
 * On failure returns a negative value, *ids is NULL and err says why. */
long spm_encode(const spm_model *m, const char *text, size_t len, int **ids, char *err,
                size_t errlen);

int spm_vocab_size(const spm_model *m);         /* number of pieces */
int spm_piece_to_id(const spm_model *m, const char *piece); /* the unk id when absent */
/* The piece of id copied into buf (cut to buflen - 1 bytes); returns 0, or -1 if id is out of
 * range. */
int spm_id_to_piece(const spm_model *m, int id, char *buf, size_t buflen);
int spm_is_control(const spm_model *m, int id); /* 1 for <pad>, </s> (CONTROL pieces) */
int spm_is_unknown(const spm_model *m, int id); /* 1 for <unk> */
int spm_is_byte(const spm_model *m, int id);    /* 1 for the <0xXX> pieces of byte fallback */
int spm_unk_id(const spm_model *m);
int spm_eos_id(const spm_model *m); /* -1 when the model has none */
int spm_pad_id(const spm_model *m); /* -1 when the model has none */

/* Trains a unigram SentencePiece model on `text` (UTF-8, one sentence per line) and writes it to
 * model_path (the serialized ModelProto, what spiece.model holds): pad 0, eos 1, unk 2, no bos,
 * about `vocab` pieces (hard_vocab_limit off, so a small corpus may give fewer), one thread and a
 * fixed seed so the result is the same on every run; sentencepiece's log on stderr is silenced.
 * Returns 0, or -1 with the reason in err. */
int spm_train_model(const char *text, const char *model_path, int vocab, char *err,
                    size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
