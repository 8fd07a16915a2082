/* test_tokenizer.c: the prompt tokenizer (worker/models/text/tokenizer.c, spm_shim.cc) against diffusers'
 * prompt_clean and transformers' T5Tokenizer.
 *
 * From tests/fixtures/text/tokenizer_golden.json (make_text_fixtures.py):
 *   - every prompt (English, Chinese, mixed scripts, emoji, empty, whitespace-only, HTML named /
 *     numeric / nested entities, tabs, NBSP and other Unicode spaces, literal special tokens, added
 *     tokens with lstrip/rstrip and overlapping normalized / non-normalized added tokens, > 512
 *     tokens, exactly 511 and 512 tokens, max_length 1, 2, 16, 77)
 *     cleans to Python's string, and encodes to the same input_ids AND attention_mask as
 *     transformers, for three tokenizers: tiny-wan22's (NFKC, like umT5), text/tokenizer_cjk
 *     (identity normaliser, CJK/emoji pieces, extra ids past the SentencePiece vocabulary) and
 *     text/tokenizer_bytes (trained with byte fallback, which transformers' T5 tokenizer drops:
 *     unknown characters must give one <unk>, not libsentencepiece's <0xXX> pieces);
 *   - ~600 html.unescape edge cases (every legacy entity name on the longest-prefix path, the
 *     two-code-point entities, numeric references around every boundary of Python's rules);
 *   - the two whitespace classes equal Python's over all 0x110000 code points.
 * Exact equality everywhere: token ids have no tolerance.
 * Then broken tokenizer folders and bad input must be refused with messages that name the file.
 * Usage: test_tokenizer FIXTURES_DIR [--verbose]
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_util.h"
#include "tokenizer.h"

static const char *fixtures;
static bool verbose;
static char *tmp;

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = '\0';
    if (len) *len = (size_t)n;
    return b;
}

static void copy_file(const char *src, const char *dst) {
    size_t n;
    char *b = read_all(src, &n);
    if (!b || tu_write_file(dst, b, n)) {
        fprintf(stderr, "cannot copy %s to %s\n", src, dst);
        exit(1);
    }
    free(b);
}

/* ---- golden prompts ---- */

static void test_whitespace(json_t *doc) {
    static const char *names[2] = {"py_isspace", "regex_whitespace"};
    bool (*fns[2])(uint32_t) = {tok_is_py_space, tok_is_white_space};
    for (int k = 0; k < 2; k++) {
        json_t *arr = json_object_get(doc, names[k]);
        TU_CHECK(json_array_size(arr) > 20, "golden %s list", names[k]);
        bool *in = calloc(0x110000, 1);
        for (size_t i = 0; i < json_array_size(arr); i++)
            in[json_integer_value(json_array_get(arr, i))] = true;
        size_t bad = 0;
        for (uint32_t cp = 0; cp < 0x110000; cp++)
            if (fns[k](cp) != in[cp] && bad++ < 5)
                TU_CHECK(false, "%s: U+%04X is %s in Python", names[k], cp,
                         in[cp] ? "space" : "not space");
        printf("  whitespace class %-17s %zu code points, %zu differences\n", names[k],
               json_array_size(arr), bad);
        free(in);
    }
}

static void test_clean_cases(json_t *doc) {
    json_t *cs = json_object_get(doc, "clean_cases");
    size_t n = json_array_size(cs), bad = 0;
    TU_CHECK(n > 500, "golden clean_cases");
    for (size_t i = 0; i < n; i++) {
        const char *in = json_string_value(json_array_get(json_array_get(cs, i), 0));
        const char *want = json_string_value(json_array_get(json_array_get(cs, i), 1));
        char *got = NULL;
        wf_err err = {0};
        wf_status st = tok_prompt_clean(in, &got, &err);
        if (st || strcmp(got, want) != 0) {
            bad++;
            TU_CHECK(false, "prompt_clean(\"%s\") = \"%s\", Python gives \"%s\" %s", in,
                     got ? got : "(error)", want, err.msg);
        }
        free(got);
    }
    printf("  html.unescape edge cases: %zu, %zu differ from Python\n", n, bad);
}

static void test_prompts(json_t *doc) {
    json_t *toks = json_object_get(doc, "tokenizers"), *cases = json_object_get(doc, "cases");
    size_t nc = json_array_size(cases);
    TU_CHECK(nc >= 30, "at least 30 golden prompts (%zu)", nc);
    /* cleaning, once per prompt */
    size_t clean_bad = 0;
    for (size_t i = 0; i < nc; i++) {
        json_t *c = json_array_get(cases, i);
        const char *name = json_string_value(json_object_get(c, "name"));
        char *got = NULL;
        wf_err err = {0};
        TU_CHECK(tok_prompt_clean(json_string_value(json_object_get(c, "prompt")), &got, &err) ==
                     WF_OK,
                 "%s: %s", name, err.msg);
        const char *want = json_string_value(json_object_get(c, "cleaned"));
        if (!got || strcmp(got, want) != 0) {
            clean_bad++;
            TU_CHECK(false, "%s: cleaned \"%s\", Python \"%s\"", name, got ? got : "", want);
        }
        free(got);
    }
    printf("  prompt_clean: %zu prompts, %zu differ\n", nc, clean_bad);
    const char *tname;
    json_t *trel;
    json_object_foreach(toks, tname, trel) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", fixtures, json_string_value(trel));
        tok_tokenizer *t = NULL;
        wf_err err = {0};
        TU_CHECK(tok_load(&t, dir, &err) == WF_OK, "%s: %s", tname, err.msg);
        if (!t) continue;
        size_t bad = 0, truncated = 0;
        for (size_t i = 0; i < nc; i++) {
            json_t *c = json_array_get(cases, i),
                   *g = json_object_get(json_object_get(c, "tokenizers"), tname);
            const char *name = json_string_value(json_object_get(c, "name"));
            int64_t L = json_integer_value(json_object_get(c, "max_length"));
            json_t *gi = json_object_get(g, "input_ids"),
                   *gm = json_object_get(g, "attention_mask");
            int64_t want_full = json_integer_value(json_object_get(g, "n_full"));
            int32_t *ids = malloc((size_t)L * sizeof *ids),
                    *mask = malloc((size_t)L * sizeof *mask);
            int64_t n_real = -1, n_full = -1;
            wf_status st = tok_encode_prompt(t, json_string_value(json_object_get(c, "prompt")), L,
                                             ids, mask, &n_real, &n_full, &err);
            TU_CHECK(st == WF_OK, "%s/%s: %s", tname, name, err.msg);
            int64_t first = -1, ones = 0;
            TU_CHECK((int64_t)json_array_size(gi) == L && (int64_t)json_array_size(gm) == L,
                     "%s/%s: golden length", tname, name);
            for (int64_t j = 0; st == WF_OK && j < L; j++) {
                ones += json_integer_value(json_array_get(gm, j));
                if (first < 0 && (ids[j] != json_integer_value(json_array_get(gi, j)) ||
                                  mask[j] != json_integer_value(json_array_get(gm, j))))
                    first = j;
            }
            if (st == WF_OK && (first >= 0 || n_full != want_full || n_real != ones)) {
                bad++;
                TU_CHECK(
                    false,
                    "%s/%s: first difference at position %lld (id %d vs %lld, mask %d vs %lld); "
                    "n_full %lld vs %lld, n_real %lld vs %lld",
                    tname, name, (long long)first, first >= 0 ? ids[first] : -1,
                    first >= 0 ? (long long)json_integer_value(json_array_get(gi, first)) : -1,
                    first >= 0 ? mask[first] : -1,
                    first >= 0 ? (long long)json_integer_value(json_array_get(gm, first)) : -1,
                    (long long)n_full, (long long)want_full, (long long)n_real, (long long)ones);
            }
            truncated += want_full > L;
            if (verbose)
                printf("    %-10s %-24s L %-3lld real %-3lld full %-4lld %s\n", tname, name,
                       (long long)L, (long long)n_real, (long long)n_full,
                       first < 0 ? "ok" : "DIFFERENT");
            free(ids);
            free(mask);
        }
        printf("  %-10s (%d pieces, %zu added tokens, ids < %d): %zu prompts (%zu truncated), "
               "%zu differ in ids/mask\n",
               tname, t->n_pieces, t->n_added, t->n_ids, nc, truncated, bad);
        tok_free(&t);
        TU_CHECK(t == NULL, "tok_free nulls the pointer");
    }
}

/* ---- broken folders and bad input ---- */

static const char *tiny_dir(char *buf, size_t n) {
    snprintf(buf, n, "%s/tiny-wan22/tokenizer", fixtures);
    return buf;
}

/* tmp/t with spiece.model copied and the given tokenizer.json / tokenizer_config.json texts
 * (NULL: absent). */
static void make_folder(const char *tokjson, const char *config) {
    char src[4400], d[4200], p[4300];
    snprintf(d, sizeof d, "%s/t", tmp);
    tu_rmtree(d);
    mkdir(d, 0755);
    snprintf(src, sizeof src, "%s/spiece.model", tiny_dir(p, sizeof p));
    snprintf(p, sizeof p, "%s/spiece.model", d);
    copy_file(src, p);
    if (tokjson) {
        snprintf(p, sizeof p, "%s/tokenizer.json", d);
        tu_write_file(p, tokjson, strlen(tokjson));
    }
    if (config) {
        snprintf(p, sizeof p, "%s/tokenizer_config.json", d);
        tu_write_file(p, config, strlen(config));
    }
}

static void expect_load_error(const char *what, wf_status want, const char *needle) {
    char d[4200];
    snprintf(d, sizeof d, "%s/t", tmp);
    tok_tokenizer *t = NULL;
    wf_err err = {0};
    wf_status st = tok_load(&t, d, &err);
    TU_CHECK(st == want && t == NULL, "%s: status %d (%s), expected %d", what, (int)st,
             wf_status_str(st), (int)want);
    TU_CHECK(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
    if (verbose) printf("    %-34s -> %s\n", what, err.msg);
    tok_free(&t);
}

/* s with the first occurrence of a replaced by b (malloc'd). */
static char *replace1(const char *s, const char *a, const char *b) {
    const char *k = strstr(s, a);
    TU_CHECK(k != NULL, "fixture text contains '%s'", a);
    if (!k) return strdup(s);
    size_t n = strlen(s) - strlen(a) + strlen(b) + 1;
    char *r = malloc(n);
    snprintf(r, n, "%.*s%s%s", (int)(k - s), s, b, k + strlen(a));
    return r;
}

static void test_broken(void) {
    char p[4300], dir[4200];
    tok_tokenizer *t = NULL;
    wf_err err = {0};
    snprintf(dir, sizeof dir, "%s/does-not-exist", tmp);
    TU_CHECK(tok_load(&t, dir, &err) == WF_EIO && strstr(err.msg, "spiece.model"),
             "missing folder: %s", err.msg);

    /* a model that keeps whitespace */
    snprintf(dir, sizeof dir, "%s/text/tokenizer_keepspace", fixtures);
    TU_CHECK(tok_load(&t, dir, &err) == WF_EUNSUPPORTED && t == NULL &&
                 strstr(err.msg, "remove_extra_whitespaces=false"),
             "a whitespace-keeping model is refused: %s", err.msg);

    snprintf(p, sizeof p, "%s/tokenizer.json", tiny_dir(dir, sizeof dir));
    char *tj = read_all(p, NULL);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", tiny_dir(dir, sizeof dir));
    char *cfg = read_all(p, NULL);
    TU_CHECK(tj && cfg, "fixture tokenizer files");
    if (!tj || !cfg) return;

    /* a corrupt model file */
    make_folder(tj, cfg);
    snprintf(p, sizeof p, "%s/t/spiece.model", tmp);
    tu_write_file(p, "not a protobuf", 14);
    expect_load_error("corrupt spiece.model", WF_EFORMAT, "sentencepiece cannot load it");

    /* tokenizer.json cut short, inside the vocabulary */
    size_t n = strlen(tj);
    char *cut = strndup(tj, n / 2);
    make_folder(cut, cfg);
    expect_load_error("truncated tokenizer.json (vocab)", WF_EFORMAT,
                      "tokenizer.json: malformed JSON");
    free(cut);
    /* ... and inside added_tokens */
    const char *at = strstr(tj, "\"added_tokens\"");
    TU_CHECK(at != NULL, "tokenizer.json has added_tokens");
    cut = strndup(tj, (size_t)(at - tj) + 40);
    make_folder(cut, cfg);
    expect_load_error("truncated tokenizer.json (added_tokens)", WF_EFORMAT, "\"added_tokens\"");
    free(cut);
    /* no added_tokens at all */
    char *noat = replace1(tj, "\"added_tokens\"", "\"added_tokenz\"");
    make_folder(noat, cfg);
    expect_load_error("tokenizer.json without added_tokens", WF_EFORMAT,
                      "no top-level \"added_tokens\"");
    free(noat);
    /* an added token whose id disagrees with spiece.model */
    char *wrong = replace1(tj, "\"id\": 1,", "\"id\": 5,");
    make_folder(wrong, cfg);
    expect_load_error("added token id != spm piece", WF_EFORMAT,
                      "'</s>' has id 5, but spiece.model's piece 5 is");
    free(wrong);
    char *bpe = replace1(tj, "\"type\": \"Unigram\"", "\"type\": \"BPE\"");
    make_folder(bpe, cfg);
    expect_load_error("a BPE tokenizer.json", WF_EUNSUPPORTED, "\"model\".\"type\" is \"BPE\"");
    free(bpe);
    char *sw = replace1(tj, "\"single_word\": false", "\"single_word\": true");
    make_folder(sw, cfg);
    expect_load_error("single_word token", WF_EUNSUPPORTED, "\"single_word\": true");
    free(sw);
    char *left = replace1(cfg, "\"pad_token\"", "\"padding_side\": \"left\", \"pad_token\"");
    make_folder(tj, left);
    expect_load_error("padding_side left", WF_EUNSUPPORTED, "padding_side must be \"right\"");
    free(left);
    char *badeos = replace1(cfg, "\"eos_token\": \"</s>\"", "\"eos_token\": \"<eos>\"");
    make_folder(tj, badeos);
    expect_load_error("unknown eos_token", WF_EFORMAT, "eos_token '<eos>' is neither");
    free(badeos);
    /* no tokenizer.json: extra ids cannot be placed ... */
    char *extra = replace1(cfg, "\"extra_ids\": 0", "\"extra_ids\": 3");
    make_folder(NULL, extra);
    expect_load_error("extra_ids without tokenizer.json", WF_EUNSUPPORTED, "tokenizer.json");
    free(extra);
    /* ... but without extra ids spiece.model's control/unknown pieces stand in, and give the
     * tokenizer.json result on text with literal special tokens */
    make_folder(NULL, cfg);
    snprintf(dir, sizeof dir, "%s/t", tmp);
    TU_CHECK(tok_load(&t, dir, &err) == WF_OK, "no tokenizer.json: %s", err.msg);
    tok_tokenizer *ref = NULL;
    TU_CHECK(tok_load(&ref, tiny_dir(p, sizeof p), &err) == WF_OK, "%s", err.msg);
    if (t && ref) {
        TU_CHECK(!t->added_from_json && t->n_added == 3,
                 "fallback: 3 added tokens from spiece.model (%zu)", t->n_added);
        const char *s = "x <unk>y </s> <pad>z a</s>";
        int32_t a[24], am[24], b[24], bm[24];
        TU_CHECK(tok_encode(t, s, 24, a, am, NULL, NULL, &err) == WF_OK &&
                     tok_encode(ref, s, 24, b, bm, NULL, NULL, &err) == WF_OK &&
                     !memcmp(a, b, sizeof a) && !memcmp(am, bm, sizeof am),
                 "fallback added tokens encode like tokenizer.json's");
    }
    tok_free(&t);

    /* bad input */
    if (ref) {
        int32_t ids[8], mask[8];
        static const char *const bad_utf8[] = {"ab\xC0\xAF", "ab\xED\xA0\x80", "ab\xF4\x90\x80\x80",
                                               "ab\xE2\x82", "ab\x80",         "ab\xFF"};
        for (size_t i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++) {
            TU_CHECK(tok_encode_prompt(ref, bad_utf8[i], 8, ids, mask, NULL, NULL, &err) ==
                             WF_EINVAL &&
                         strstr(err.msg, "invalid UTF-8 at byte 2"),
                     "invalid UTF-8 #%zu: %s", i, err.msg);
            char *c = (char *)1;
            TU_CHECK(tok_prompt_clean(bad_utf8[i], &c, &err) == WF_EINVAL && c == NULL,
                     "prompt_clean refuses invalid UTF-8 #%zu", i);
        }
        TU_CHECK(tok_encode(ref, "a", 0, ids, mask, NULL, NULL, &err) == WF_EINVAL &&
                     strstr(err.msg, "max_sequence_length is 0"),
                 "max_len 0: %s", err.msg);
        /* 4-byte UTF-8 and the edges of the valid range are accepted */
        TU_CHECK(tok_encode(ref, "\xF0\x9F\x90\xB1 \xF4\x8F\xBF\xBF \xEE\x80\x80 \xC2\x80", 8, ids,
                            mask, NULL, NULL, &err) == WF_OK,
                 "valid UTF-8 edges: %s", err.msg);
    }
    tok_free(&ref);
    tok_free(&ref); /* accepts NULL */
    free(tj);
    free(cfg);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_tokenizer FIXTURES_DIR [--verbose]\n");
        return 2;
    }
    fixtures = argv[1];
    verbose = argc > 2 && !strcmp(argv[2], "--verbose");
    char path[4096];
    snprintf(path, sizeof path, "%s/text/tokenizer_golden.json", fixtures);
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc) {
        fprintf(stderr, "%s: %s (regenerate with tests/fixtures/make_text_fixtures.py)\n", path,
                je.text);
        return 1;
    }
    tmp = tu_tmpdir("tok");
    test_whitespace(doc);
    test_clean_cases(doc);
    test_prompts(doc);
    test_broken();
    json_decref(doc);
    tu_rmtree(tmp);
    free(tmp);
    printf("%s\n", tu_failures ? "FAILED" : "OK");
    return tu_failures ? 1 : 0;
}
