/* cli.h - shared pieces of the mopt command-line tool.
 *
 * Every subcommand lives in its own cmd_<name>.c and defines one
 * `const cli_command cli_cmd_<name>`. Adding a subcommand = writing that file
 * and adding one X(name) entry to CLI_COMMANDS below.
 *
 * Conventions: commands return the process exit code (0 ok, 1 usage error,
 * 2 bad input, 3 internal error; see mopt_status_exit_code); every error is
 * one line on stderr starting with "mopt: ". Results go to stdout.
 */
#ifndef MOPT_CLI_H
#define MOPT_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "mopt/mopt.h"

/* The command table, in the order `mopt --help` lists them. */
#define CLI_COMMANDS(X) \
    X(inspect)          \
    X(run)              \
    X(eval)             \
    X(bench)            \
    X(copy)             \
    X(train)            \
    X(quantize)         \
    X(prune)            \
    X(cluster)

typedef struct cli_command {
    const char *name;
    const char *summary;                /* one line for `mopt --help` */
    const char *help;                   /* full text for `mopt help CMD` (starts with "usage:") */
    int (*main)(int argc, char **argv); /* argv[0] is the command name */
} cli_command;

#define CLI_DECLARE(name) extern const cli_command cli_cmd_##name;
CLI_COMMANDS(CLI_DECLARE)
#undef CLI_DECLARE

/* ---- errors ---- */

/* Prints "mopt: <message>" (one line) and returns the exit code of status. */
int cli_fail(const mopt_error *err);
/* Prints "mopt: CMD: <message> (see 'mopt help CMD')" and returns 1. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Prints "mopt: <message>" and returns exit code of st. */
int cli_error(mopt_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- argument parsing ----
 * A small getopt_long-like scanner. Options may come before or after
 * positionals; "--name=value", "--name value" and "-x value" are accepted;
 * "--" ends the options. "-h"/"--help" are recognised for every command. */

typedef struct cli_option {
    const char *name; /* long name without "--" */
    char short_name;  /* 0 = none */
    bool has_arg;
} cli_option;

enum {
    CLI_END = -1,        /* no more arguments */
    CLI_POSITIONAL = -2, /* *arg is a positional argument */
    CLI_HELP = -3,       /* -h / --help */
    CLI_BAD = -4         /* error already printed; exit code 1 */
};

typedef struct cli_parser {
    const char *cmd;
    int argc;
    char **argv;
    int i;
    bool only_positional;
    const cli_option *opts;
    int n_opts;
} cli_parser;

void cli_parser_init(cli_parser *p, const char *cmd, int argc, char **argv, const cli_option *opts,
                     int n_opts);
/* Returns the index of the option in opts (>= 0) with *arg its value (or
 * NULL), or one of the CLI_* codes above. */
int cli_next(cli_parser *p, const char **arg);

/* Parse numbers; on failure print a usage error naming the option and
 * return false. */
bool cli_parse_int(const char *cmd, const char *opt, const char *s, int64_t min, int64_t max,
                   int64_t *out);
/* Prints the command's help to stdout and returns 0. */
int cli_print_help(const cli_command *c);

/* ---- model loading ---- */

typedef struct cli_model {
    const char *path;
    mopt_graph *graph;
    uint8_t *file_data; /* the file's bytes (kept only if asked for) */
    size_t file_size;
} cli_model;

/* Reads and validates a model (mopt_tflite_read_* then mopt_graph_validate,
 * whose message gets the file name as prefix). On failure prints the error
 * and returns the exit code; 0 on success. keep_bytes keeps the file bytes
 * in m->file_data. */
int cli_model_load(const char *path, bool keep_bytes, cli_model *m);
void cli_model_free(cli_model *m);

/* Creates an interpreter with num_threads (<= 0: library default). Prints
 * "mopt: PATH: <message>" on failure and returns the exit code; 0 on success. */
int cli_interp_create(const cli_model *m, int num_threads, mopt_interp **out);
/* As cli_interp_create with a requantization rounding mode (mopt_rounding). */
int cli_interp_create_rounding(const cli_model *m, int num_threads, int rounding,
                               mopt_interp **out);
/* Parses --rounding double|single|fp32 into a mopt_rounding; prints a usage
 * error naming the command and returns false on anything else. */
bool cli_parse_rounding(const char *cmd, const char *arg, int *out);

/* Copies s into buf for terminal output: control characters become '?', and
 * names longer than max bytes are cut (on a UTF-8 boundary) and end in "...".
 * cap must exceed max + 3. Returns buf. */
const char *cli_printable(const char *s, size_t max, char *buf, size_t cap);

/* Formats a tensor shape as "[1,28,28,1]" into buf. */
const char *cli_shape_str(const int64_t *dims, int rank, char *buf, size_t cap);
const char *cli_tensor_shape_str(const mopt_tensor *t, char *buf, size_t cap);

/* ---- JSON writer (pretty-printed, valid JSON: escaped strings, no NaN) ---- */

#define CLI_JSON_MAX_DEPTH 16

typedef struct cli_json {
    FILE *f;
    int depth;
    bool first[CLI_JSON_MAX_DEPTH];   /* nothing written yet at this level */
    bool inline_[CLI_JSON_MAX_DEPTH]; /* print this container on one line */
} cli_json;

void cli_json_init(cli_json *j, FILE *f);
/* key is the member name inside objects, NULL inside arrays / at top level. */
void cli_json_object_begin(cli_json *j, const char *key);
void cli_json_object_end(cli_json *j);
/* inline_: write the array on one line (for short numeric arrays). */
void cli_json_array_begin(cli_json *j, const char *key, bool inline_);
void cli_json_array_end(cli_json *j);
void cli_json_string(cli_json *j, const char *key, const char *s);
void cli_json_int(cli_json *j, const char *key, int64_t v);
/* %.9g; NaN and infinities become null (JSON has no literal for them). */
void cli_json_double(cli_json *j, const char *key, double v);
void cli_json_bool(cli_json *j, const char *key, bool v);
void cli_json_null(cli_json *j, const char *key);
/* Ends the document with a newline. */
void cli_json_finish(cli_json *j);

/* ---- aligned text tables ---- */

typedef struct cli_table {
    int ncols;
    int nrows, cap;
    char **cells; /* nrows * ncols strings (owned) */
    bool *right;  /* per column: right-align (numbers) */
} cli_table;

/* header: ncols column titles; align: one 'l' or 'r' per column. */
bool cli_table_init(cli_table *t, int ncols, const char *const *header, const char *align);
/* Adds a row of ncols strings (copied). Returns false when out of memory. */
bool cli_table_add(cli_table *t, const char *const *cells);
void cli_table_print(const cli_table *t, FILE *f, const char *indent);
void cli_table_free(cli_table *t);

/* ---- progress bar (stderr, only when stderr is a terminal) ---- */

typedef struct cli_progress {
    bool active;
    int64_t total;
    double start;
    double last_draw;
    const char *label;
} cli_progress;

void cli_progress_begin(cli_progress *p, const char *label, int64_t total);
void cli_progress_update(cli_progress *p, int64_t done);
void cli_progress_end(cli_progress *p);

/* ---- small numeric helpers ---- */

/* Deterministic PRNG (splitmix64) for benchmark inputs. */
uint64_t cli_rand_next(uint64_t *state);
/* Fills a tensor-sized buffer with random values suited to the dtype. */
void cli_fill_random(void *data, mopt_dtype dt, int64_t n, uint64_t *state);

#endif
