/* status.c - status codes and one-line error messages. */
#include "mopt/status.h"

#include <stdio.h>
#include <string.h>

const char *mopt_status_str(mopt_status st) {
    switch (st) {
    case MOPT_OK: return "ok";
    case MOPT_ERR_ARG: return "invalid argument";
    case MOPT_ERR_BAD_INPUT: return "bad input";
    case MOPT_ERR_UNSUPPORTED: return "unsupported";
    case MOPT_ERR_IO: return "i/o error";
    case MOPT_ERR_NOMEM: return "out of memory";
    case MOPT_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

/* Keeps messages on one line: a file name or tensor name with a newline in
 * it must not break the "one line on stderr" promise. */
static void one_line(char *s) {
    for (; *s; s++)
        if (*s == '\n' || *s == '\r') *s = ' ';
}

mopt_status mopt_error_set(mopt_error *err, mopt_status st, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        one_line(err->msg);
        err->status = st;
    }
    return st;
}

void mopt_error_prefix(mopt_error *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[MOPT_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[MOPT_ERROR_MSG_MAX];
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    /* Truncation is acceptable here: messages are bounded by design. */
    size_t np = strnlen(prefix, sizeof prefix - 1);
    size_t cap = sizeof err->msg;
    size_t pos = 0;
    memcpy(err->msg, prefix, np < cap - 1 ? np : cap - 1);
    pos = np < cap - 1 ? np : cap - 1;
    for (const char *s = ": "; *s && pos < cap - 1; s++) err->msg[pos++] = *s;
    for (const char *s = old; *s && pos < cap - 1; s++) err->msg[pos++] = *s;
    err->msg[pos] = '\0';
    one_line(err->msg);
}

void mopt_error_clear(mopt_error *err) {
    if (!err) return;
    err->status = MOPT_OK;
    err->msg[0] = '\0';
}

int mopt_status_exit_code(mopt_status st) {
    switch (st) {
    case MOPT_OK: return 0;
    case MOPT_ERR_ARG: return 1;
    case MOPT_ERR_BAD_INPUT:
    case MOPT_ERR_UNSUPPORTED:
    case MOPT_ERR_IO: return 2;
    case MOPT_ERR_NOMEM:
    case MOPT_ERR_INTERNAL: return 3;
    }
    return 3;
}
