/* status.c: status names and error-detail formatting (see status.h). */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *wf_status_str(wf_status s) {
    static const char *names[WF_STATUS_COUNT] = {
        [WF_OK] = "ok",
        [WF_EINVAL] = "invalid argument",
        [WF_EIO] = "I/O error",
        [WF_EFORMAT] = "malformed input",
        [WF_ENOMEM] = "out of memory",
        [WF_EUNSUPPORTED] = "unsupported",
        [WF_ECUDA] = "CUDA error",
        [WF_EMPI] = "MPI error",
        [WF_EPROTO] = "protocol error",
        [WF_ETIMEOUT] = "timeout",
        [WF_EREMOTE] = "remote failure",
        [WF_ESTOPPED] = "stopped",
    };
    if ((int)s < 0 || s >= WF_STATUS_COUNT) return "unknown status";
    return names[s];
}

wf_status wf_fail(wf_err *err, wf_status s, const char *fmt, ...) {
    if (err) {
        err->status = s;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}

void wf_err_prefix(wf_err *err, const char *fmt, ...) {
    if (!err) return;
    char head[WF_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    size_t hl = strlen(head), ol = strnlen(err->msg, sizeof err->msg - 1);
    if (hl > sizeof err->msg - 1) hl = sizeof err->msg - 1;
    if (hl + ol > sizeof err->msg - 1) ol = sizeof err->msg - 1 - hl; /* keep the start */
    memmove(err->msg + hl, err->msg, ol);
    memcpy(err->msg, head, hl);
    err->msg[hl + ol] = '\0';
}

void wf_err_clear(wf_err *err) {
    if (!err) return;
    err->status = WF_OK;
    err->msg[0] = '\0';
}

void wf_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
    abort();
}
