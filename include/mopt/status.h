/* mopt/status.h - status codes and error messages.
 *
 * Library functions never exit and never print. They return a mopt_status and,
 * when given a non-NULL mopt_error, fill it with one line that names the file,
 * the object (operator or tensor index and name) and the rule that was broken.
 * There is no global "last error": the caller owns the mopt_error.
 */
#ifndef MOPT_STATUS_H
#define MOPT_STATUS_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mopt_status {
    MOPT_OK = 0,
    MOPT_ERR_ARG = 1,         /* invalid argument or option (a usage error) */
    MOPT_ERR_BAD_INPUT = 2,   /* malformed file or graph, wrong shapes */
    MOPT_ERR_UNSUPPORTED = 3, /* well-formed but not supported (unknown op, dtype) */
    MOPT_ERR_IO = 4,          /* open/read/write/rename failed */
    MOPT_ERR_NOMEM = 5,       /* allocation failed */
    MOPT_ERR_INTERNAL = 6     /* a bug in mopt */
} mopt_status;

#define MOPT_ERROR_MSG_MAX 512

typedef struct mopt_error {
    mopt_status status;
    char msg[MOPT_ERROR_MSG_MAX]; /* one line, no trailing newline */
} mopt_error;

/* Short constant name of a status ("ok", "bad input", ...). Never NULL. */
const char *mopt_status_str(mopt_status st);

/* Fills err (if not NULL) with st and a printf-formatted message; returns st.
 * Typical use: return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s: ...", path); */
mopt_status mopt_error_set(mopt_error *err, mopt_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prepends "prefix: " to an existing message (e.g. a file name). */
void mopt_error_prefix(mopt_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Resets err to MOPT_OK with an empty message. NULL is a no-op. */
void mopt_error_clear(mopt_error *err);

/* Process exit code the CLI uses for a status: 0 ok, 1 usage error,
 * 2 bad input (malformed, unsupported, unreadable), 3 internal error. */
int mopt_status_exit_code(mopt_status st);

#ifdef __cplusplus
}
#endif
#endif
