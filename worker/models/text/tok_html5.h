/* tok_html5.h: the HTML5 character-reference tables behind tokenizer.c's html.unescape
 * (prefix tok_html5_).
 *
 * What it is: declarations of the generated tables in tok_html5.c (scripts/gen_html_entities.py
 * writes them from CPython's `html` module and checks these counts).
 * What it is not: the unescape itself (tokenizer.c).
 * Tested by: tests/test_tokenizer.c (entity prompts against Python's prompt_clean).
 */
#ifndef TOK_HTML5_H
#define TOK_HTML5_H

#include <stdint.h>

#define TOK_HTML5_N_ENTITIES 2231
#define TOK_HTML5_N_INVALID_CHARREFS 34
#define TOK_HTML5_N_INVALID_CODEPOINTS 126

typedef struct tok_html5_entity {
    const char *name;  /* "amp;", "amp", "NotEqualTilde;" (ASCII, as html.entities.html5 keys) */
    const char *value; /* UTF-8 replacement, 1 or 2 code points */
} tok_html5_entity;

typedef struct tok_html5_charref {
    uint32_t num;      /* the numeric reference */
    uint32_t cp;       /* the code point it becomes */
} tok_html5_charref;

/* sorted bytewise by name */
extern const tok_html5_entity tok_html5_entities[TOK_HTML5_N_ENTITIES];
/* sorted by num */
extern const tok_html5_charref tok_html5_invalid_charrefs[TOK_HTML5_N_INVALID_CHARREFS];
/* sorted */
extern const uint32_t tok_html5_invalid_codepoints[TOK_HTML5_N_INVALID_CODEPOINTS];

#endif
