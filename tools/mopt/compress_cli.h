/* compress_cli.h - the flow `mopt prune` and `mopt cluster` share: load and
 * validate the model, select layers by regex, measure accuracy and sizes
 * before / after, write the output atomically, print the compression report
 * (text or JSON). Each command supplies the transform. */
#ifndef MOPT_COMPRESS_CLI_H
#define MOPT_COMPRESS_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "cli.h"

typedef struct cc_options {
    const char *cmd;       /* "prune" / "cluster" */
    const char *model;     /* IN */
    const char *output;    /* -o OUT */
    const char *layers;    /* --layers REGEX or NULL */
    const char *eval;      /* --eval DATA or NULL */
    int64_t eval_limit;    /* --eval-limit N (0 = all) */
    int64_t threads;       /* --threads N (0 = default) */
    bool json;
    const char *settings;  /* one line for the report */
} cc_options;

/* The technique: edits g in place. `select` has g->n_ops entries. `notes`
 * has g->n_ops slots: set a short note (malloc'ed, freed by the caller) for
 * the ops it handled. Returns MOPT_OK or an error filled into err. */
typedef mopt_status (*cc_transform)(void *ctx, mopt_graph *g, const bool *select, char **notes,
                                    mopt_error *err);

/* Runs the whole command; returns the exit code. */
int cc_run(const cc_options *o, cc_transform fn, void *ctx);

/* Parses a real number in [lo, hi) (hi_open) or [lo, hi]; prints a usage
 * error naming --opt and returns false otherwise. */
bool cc_parse_real(const char *cmd, const char *opt, const char *s, double lo, double hi,
                   bool hi_open, double *out);
/* Parses "AxB" (sep 'x') or "A:B" (sep ':') of positive integers. */
bool cc_parse_pair(const char *cmd, const char *opt, const char *s, char sep, int *a, int *b);
/* malloc'ed printf (NULL on failure). */
char *cc_strdupf(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

#endif
