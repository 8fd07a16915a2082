/* tokenizer.h: the Wan pipeline's prompt -> (input_ids, attention_mask), in C (prefix tok_).
 *
 * What it is: what WanPipeline._get_t5_prompt_embeds does before the text encoder runs
 * (wan_spec.md §3.3), reproduced so that the ids and masks equal transformers' own:
 *   1. tok_prompt_clean: diffusers' prompt_clean without ftfy:
 *        html.unescape twice, str.strip(), regex.sub(r"\s+", " "), str.strip().
 *      html.unescape follows CPython's rules exactly: the full HTML5 named-reference table with
 *      its no-semicolon forms and longest-prefix matching (tok_html5.c, generated from Python),
 *      numeric references with HTML5's remapping (&#0; and surrogates -> U+FFFD, &#x80;-&#x9F; ->
 *      Windows-1252, controls and noncharacters -> nothing, > U+10FFFF -> U+FFFD).
 *      The two whitespace sets differ, as they do in Python: str.strip() strips str.isspace()
 *      characters, which include U+001C-U+001F, while the `regex` module's \s (the one diffusers
 *      imports) does not collapse those four.
 *   2. tok_encode: transformers 5's T5Tokenizer (the tokenizers-backed one the Wan folders load)
 *      called with padding="max_length", truncation=True, add_special_tokens=True:
 *        - the added tokens of tokenizer.json (<pad>, </s>, <unk>, <extra_id_N>, ...) are split
 *          out of the text first, leftmost-longest, honouring lstrip/rstrip, as tokenizers'
 *          AddedVocabulary does; so a prompt that literally contains "</s>" gets id 1 there;
 *        - every other stretch of text is encoded by libsentencepiece with tokenizer/spiece.model
 *          (the same normaliser, whitespace handling and unigram model that tokenizer.json was
 *          converted from); where the model was trained with byte fallback, which transformers'
 *          T5 conversion drops, each run of <0xXX> byte pieces becomes the one <unk> transformers
 *          gives;
 *        - the ids are cut to max_len - 1, </s> is appended, and <pad> fills up to max_len; the
 *          mask is 1 on the real tokens (</s> included), 0 on the padding.
 * What it is not (differences from the Python pipeline, all documented in tests/fixtures/README.md
 * "text/"):
 *   - ftfy: diffusers calls ftfy.fix_text first when ftfy is installed (the official Wan repo
 *     always does). wanfarm does not: mojibake stays, curly quotes stay curly, C0/C1 controls and
 *     terminal escapes stay, entities are not unescaped a third time when ftfy would have done it.
 *     Fullwidth forms and ligatures, which ftfy also fixes, are folded anyway by umT5's NFKC
 *     normaliser inside spiece.model. (Measured with ftfy 6.3.1: 6 of the 43 golden prompts get
 *     other ids with the NFKC tokenizer; tests/fixtures/README.md lists them.)
 *   - Added tokens marked "normalized": true are matched on the raw text instead of the
 *     normalised text (they differ only when NFKC rewrites the token's own characters, e.g. a
 *     fullwidth "＜extra_id_0＞"); "single_word": true tokens are refused at load.
 *   - Models that keep extra whitespace (remove_extra_whitespaces=false) are refused at load:
 *     transformers' T5 pre-tokenizer splits on whitespace regardless, which SentencePiece on the
 *     stretches between added tokens would not reproduce. For every model that loads, lstrip and
 *     rstrip therefore never change the ids (they are implemented to mirror tokenizers anyway).
 *   - tok_encode on text that was not cleaned: transformers drops tabs and newlines in its
 *     pre-tokenizer while an identity-normalised spiece.model maps them to <unk>; the NFKC
 *     models (umT5's) agree. The pipeline always cleans first (tok_encode_prompt).
 *   - Python's int() refuses decimal references of more than 4300 digits (html.unescape raises
 *     ValueError); wanfarm turns them into U+FFFD like any other reference above U+10FFFF.
 *   - Input is UTF-8 without NUL bytes; invalid UTF-8 (which a Python str cannot hold) is an
 *     error.
 * Tested by: tests/test_tokenizer.c against ids, masks and cleaned strings made by transformers
 *   and diffusers for 43 prompts and three tokenizers (tests/fixtures/text/tokenizer_golden.json,
 *   written by make_text_fixtures.py), and broken tokenizer folders; also under the sanitizer
 *   build.
 */
#ifndef TOK_TOKENIZER_H
#define TOK_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spm_shim.h"
#include "status.h"

/* A token that transformers splits out of the text before the model sees it. */
typedef struct tok_added {
    char *content;       /* UTF-8, e.g. "</s>" */
    size_t len;          /* strlen(content) */
    int32_t id;
    bool lstrip, rstrip; /* swallow Unicode whitespace on that side */
    bool normalized;     /* matched in the second pass (see above) */
    bool special;
} tok_added;

typedef struct tok_tokenizer {
    char *dir;           /* the tokenizer folder, for messages */
    spm_model *spm;      /* tokenizer/spiece.model */
    int32_t n_pieces;    /* SentencePiece vocabulary size */
    int32_t n_ids;       /* 1 + the largest id tok_encode can produce (added tokens may lie past
                          * n_pieces, e.g. umT5's <extra_id_N>) */
    int32_t eos_id;      /* appended after the text: tokenizer_config.json eos_token, "</s>" */
    int32_t pad_id;      /* fills the rest: pad_token, "<pad>" */
    tok_added *added;    /* in tokenizer.json order */
    size_t n_added;
    bool added_from_json;/* false: no tokenizer.json, spiece.model's control/unknown pieces used */
    int32_t unk_id;      /* spiece.model's <unk> */
    bool byte_fallback;  /* tokenizer.json "model"."byte_fallback"; false without tokenizer.json.
                          * When false, a run of <0xXX> byte pieces from a byte-fallback
                          * spiece.model becomes one <unk>, as transformers' T5 conversion
                          * (which never enables byte fallback) gives it */
} tok_tokenizer;

/* Loads a tokenizer folder: spiece.model (required), tokenizer.json (its "added_tokens", and its
 * "model" type, which must be "Unigram", and "byte_fallback"; when absent, spiece.model's control
 * and unknown pieces stand in, as transformers' conversion with extra_ids=0 makes them) and
 * tokenizer_config.json (optional: eos_token, pad_token, padding_side/truncation_side must be
 * "right", extra_ids needs tokenizer.json). Checks that tokenizer.json's added tokens agree with
 * spiece.model where their ids overlap, and refuses a model that keeps extra whitespace. */
wf_status tok_load(tok_tokenizer **out, const char *dir, wf_err *err);
void tok_free(tok_tokenizer **t); /* NULLs *t; accepts NULL */

/* diffusers' prompt_clean (without ftfy) of NUL-terminated UTF-8 text; *out is malloc'd UTF-8
 * the caller frees. WF_EINVAL for invalid UTF-8, naming the byte offset. */
wf_status tok_prompt_clean(const char *text, char **out, wf_err *err);

/* Encodes text as it is (no cleaning) into exactly max_len ids and mask entries (max_len >= 1).
 * n_real (optional): mask ones = real tokens including </s>, at least 1.
 * n_full (optional): the token count before truncation, </s> included (> max_len means the
 * text was cut, which a caller may want to log). */
wf_status tok_encode(const tok_tokenizer *t, const char *text, int64_t max_len, int32_t *ids,
                     int32_t *mask, int64_t *n_real, int64_t *n_full, wf_err *err);

/* The pipeline's path: tok_prompt_clean, then tok_encode. */
wf_status tok_encode_prompt(const tok_tokenizer *t, const char *prompt, int64_t max_len,
                            int32_t *ids, int32_t *mask, int64_t *n_real, int64_t *n_full,
                            wf_err *err);

/* Code point classes used by the cleaning, exposed for the test: Python's str.isspace() and the
 * `regex` module's \s (= Unicode White_Space, also what tokenizers' \s and lstrip/rstrip use). */
bool tok_is_py_space(uint32_t cp);
bool tok_is_white_space(uint32_t cp);

#endif
