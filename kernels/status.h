/* status.h: the project's status codes and error detail (prefix wf_).
 *
 * What it is: the second and third tiers of STYLE.md's error rules. Recoverable failures return a
 * wf_status; a wf_err beside it carries one line of detail that names the file, the tensor, the
 * expected and actual values and what to do. Bugs are WF_ASSERT, which aborts with file:line
 * whatever NDEBUG says. Only main() prints.
 * What it is not: a logging system.
 * Tested by: every test that checks an error message (tests/test_safetensors.c, ...).
 */
#ifndef WF_STATUS_H
#define WF_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum wf_status {
    WF_OK = 0,
    WF_EINVAL,       /* invalid argument: wrong shape, dtype, option value */
    WF_EIO,          /* a file could not be opened, read, written or mapped */
    WF_EFORMAT,      /* a file's content is malformed: safetensors, JSON, config */
    WF_ENOMEM,       /* an allocation failed, or an arena is too small */
    WF_EUNSUPPORTED, /* valid input that this build does not handle (a dtype, a layout) */
    WF_ECUDA,        /* a CUDA, cuBLASLt or NCCL call failed */
    WF_EMPI,         /* an MPI call failed */
    WF_EPROTO,       /* a malformed protocol message */
    WF_ETIMEOUT,     /* a collective or peer did not answer in time */
    WF_EREMOTE,      /* another rank or process reported a failure */
    WF_ESTOPPED,     /* stopped on request (a signal) between two steps */
    WF_STATUS_COUNT
} wf_status;

#define WF_ERR_MSG 1024

typedef struct wf_err {
    wf_status status;
    char msg[WF_ERR_MSG]; /* one line, no trailing newline */
} wf_err;

/* "invalid argument", "I/O error", ... */
const char *wf_status_str(wf_status s);

/* Sets err (if not NULL) to status s and the formatted message; returns s, so that
 * `return wf_fail(err, WF_EINVAL, "...", ...);` is the idiom. */
wf_status wf_fail(wf_err *err, wf_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends context to an existing message: "loading transformer/: " + old message. */
void wf_err_prefix(wf_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void wf_err_clear(wf_err *err);

/* Passing a failure on: the one idiom (STYLE.md: one exit path per function).
 *
 * A function that can fail at more than one step keeps its status in a local `wf_status st`,
 * set to WF_OK, and leaves through one exit label, `out:`, which releases what the function took
 * (buffers, files, arena marks) and returns st:
 *
 *     wf_status st = WF_OK;
 *     WF_TRY(first_step(..., err));
 *     if (bad) {
 *         st = wf_fail(err, WF_EINVAL, "...");
 *         goto out;
 *     }
 *     WF_TRY(second_step(..., err));
 * out:
 *     release(...);
 *     return st;
 *
 * WF_TRY(expr) evaluates expr once, stores it in st and, unless it is WF_OK, jumps to out; it
 * never returns by itself. Checks made before anything is taken may `return wf_fail(...)`, and a
 * function of a few lines with nothing to release may write `if ((st = f(...))) return st;`.
 */
#define WF_TRY(expr)                                                                             \
    do {                                                                                         \
        if ((st = (expr)) != WF_OK) goto out;                                                    \
    } while (0)

/* Aborts with file:line and the expression. For bugs only, never for bad input. */
#define WF_ASSERT(cond)                                                                          \
    do {                                                                                         \
        if (!(cond)) wf_assert_fail(#cond, __FILE__, __LINE__);                                  \
    } while (0)
#ifdef __cplusplus /* the CUDA plug-in's .cu files include this header as C++ */
[[noreturn]] void wf_assert_fail(const char *expr, const char *file, int line);
#else
_Noreturn void wf_assert_fail(const char *expr, const char *file, int line);
#endif

/* Overflow-checked size arithmetic: return 0 on success, 1 on overflow (result untouched). */
static inline int wf_mul_overflow(size_t a, size_t b, size_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline int wf_add_overflow(size_t a, size_t b, size_t *out) {
    return __builtin_add_overflow(a, b, out);
}

#ifdef __cplusplus
}
#endif

#endif
