/* cli_util.c - argument parsing, model loading, JSON and table output and a
 * progress bar, shared by the subcommands. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* ---- errors ---- */

int cli_fail(const mopt_error *err) {
    fprintf(stderr, "mopt: %s\n", err->msg[0] ? err->msg : mopt_status_str(err->status));
    return mopt_status_exit_code(err->status);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mopt: %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'mopt help %s')\n", cmd);
    va_end(ap);
    return 1;
}

int cli_error(mopt_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("mopt: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return mopt_status_exit_code(st);
}

/* ---- argument parsing ---- */

void cli_parser_init(cli_parser *p, const char *cmd, int argc, char **argv, const cli_option *opts,
                     int n_opts) {
    p->cmd = cmd;
    p->argc = argc;
    p->argv = argv;
    p->i = 1; /* argv[0] is the command name */
    p->only_positional = false;
    p->opts = opts;
    p->n_opts = n_opts;
}

int cli_next(cli_parser *p, const char **arg) {
    *arg = NULL;
    if (p->i >= p->argc)
        return CLI_END;
    const char *a = p->argv[p->i++];
    if (p->only_positional || a[0] != '-' || a[1] == '\0') { /* "-" is a positional (stdin) */
        *arg = a;
        return CLI_POSITIONAL;
    }
    if (strcmp(a, "--") == 0) {
        p->only_positional = true;
        return cli_next(p, arg);
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
        return CLI_HELP;

    int found = -1;
    const char *inline_val = NULL;
    if (a[1] == '-') {
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        for (int k = 0; k < p->n_opts; k++)
            if (strlen(p->opts[k].name) == len && strncmp(p->opts[k].name, name, len) == 0)
                found = k;
        if (found < 0) {
            cli_usage_error(p->cmd, "unknown option '--%.*s'", (int)len, name);
            return CLI_BAD;
        }
        if (eq) {
            if (!p->opts[found].has_arg) {
                cli_usage_error(p->cmd, "option '--%s' takes no value", p->opts[found].name);
                return CLI_BAD;
            }
            inline_val = eq + 1;
        }
    } else {
        for (int k = 0; k < p->n_opts; k++)
            if (p->opts[k].short_name && p->opts[k].short_name == a[1])
                found = k;
        if (found < 0) {
            cli_usage_error(p->cmd, "unknown option '%s'", a);
            return CLI_BAD;
        }
        if (a[2] != '\0') {
            if (!p->opts[found].has_arg) {
                cli_usage_error(p->cmd, "unknown option '%s'", a);
                return CLI_BAD;
            }
            inline_val = a + 2; /* "-ofile" */
        }
    }
    if (p->opts[found].has_arg) {
        if (inline_val) {
            *arg = inline_val;
        } else if (p->i < p->argc) {
            *arg = p->argv[p->i++];
        } else {
            cli_usage_error(p->cmd, "option '--%s' needs a value", p->opts[found].name);
            return CLI_BAD;
        }
    }
    return found;
}

bool cli_parse_int(const char *cmd, const char *opt, const char *s, int64_t min, int64_t max,
                   int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        cli_usage_error(cmd, "--%s expects an integer in %" PRId64 "..%" PRId64 ", got '%s'", opt,
                        min, max, s);
        return false;
    }
    *out = v;
    return true;
}

int cli_print_help(const cli_command *c) {
    fputs(c->help, stdout);
    return 0;
}

/* ---- model loading ---- */

int cli_model_load(const char *path, bool keep_bytes, cli_model *m) {
    memset(m, 0, sizeof(*m));
    m->path = path;
    mopt_error err;
    mopt_error_clear(&err);
    mopt_status st;
    if (keep_bytes) {
        st = mopt_file_read_all(path, 0, &m->file_data, &m->file_size, &err);
        if (st == MOPT_OK)
            st = mopt_tflite_read_mem(m->file_data, m->file_size, path, &m->graph, &err);
    } else {
        st = mopt_tflite_read_file(path, &m->graph, &err);
    }
    if (st == MOPT_OK) {
        st = mopt_graph_validate(m->graph, &err);
        if (st != MOPT_OK)
            mopt_error_prefix(&err, "%s", path);
    }
    if (st != MOPT_OK) {
        cli_model_free(m);
        return cli_fail(&err);
    }
    return 0;
}

void cli_model_free(cli_model *m) {
    mopt_graph_free(m->graph);
    free(m->file_data);
    m->graph = NULL;
    m->file_data = NULL;
    m->file_size = 0;
}

int cli_interp_create(const cli_model *m, int num_threads, mopt_interp **out) {
    return cli_interp_create_rounding(m, num_threads, MOPT_ROUND_DOUBLE, out);
}

bool cli_parse_rounding(const char *cmd, const char *arg, int *out) {
    if (strcmp(arg, "double") == 0)
        *out = MOPT_ROUND_DOUBLE;
    else if (strcmp(arg, "single") == 0)
        *out = MOPT_ROUND_SINGLE;
    else if (strcmp(arg, "fp32") == 0)
        *out = MOPT_ROUND_FP32;
    else {
        cli_usage_error(cmd, "--rounding must be double, single or fp32, not '%s'", arg);
        return false;
    }
    return true;
}

int cli_interp_create_rounding(const cli_model *m, int num_threads, int rounding,
                               mopt_interp **out) {
    mopt_interp_options o = mopt_interp_default_options();
    o.rounding = (mopt_rounding)rounding;
    if (num_threads > 0)
        o.num_threads = num_threads;
    mopt_error err;
    mopt_error_clear(&err);
    mopt_status st = mopt_interp_create(m->graph, &o, out, &err);
    if (st != MOPT_OK) {
        *out = NULL;
        mopt_error_prefix(&err, "%s", m->path);
        return cli_fail(&err);
    }
    return 0;
}

const char *cli_printable(const char *s, size_t max, char *buf, size_t cap) {
    if (!s)
        s = "";
    if (max + 4 > cap)
        max = cap > 4 ? cap - 4 : 0;
    size_t len = strlen(s);
    size_t n = len;
    if (len > max) {
        n = max >= 3 ? max - 3 : 0;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--; /* do not split a UTF-8 sequence */
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (len > max) {
        memcpy(buf + n, "...", 4);
    } else {
        buf[n] = '\0';
    }
    return buf;
}

const char *cli_shape_str(const int64_t *dims, int rank, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    n += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? "," : "", dims[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
    return buf;
}

const char *cli_tensor_shape_str(const mopt_tensor *t, char *buf, size_t cap) {
    int64_t d[MOPT_MAX_DIMS];
    int rank = t->rank < 0 ? 0 : t->rank > MOPT_MAX_DIMS ? MOPT_MAX_DIMS : t->rank;
    for (int i = 0; i < rank; i++)
        d[i] = t->dims[i];
    return cli_shape_str(d, rank, buf, cap);
}

/* ---- JSON ---- */

void cli_json_init(cli_json *j, FILE *f) {
    memset(j, 0, sizeof(*j));
    j->f = f;
    j->first[0] = true;
}

static void json_indent(cli_json *j) {
    fputc('\n', j->f);
    for (int i = 0; i < j->depth; i++)
        fputs("  ", j->f);
}

/* Writes s as a JSON string literal. Control characters are escaped and
 * invalid UTF-8 bytes become U+FFFD, so the output is always valid JSON
 * whatever a model file puts in its tensor names. */
static void json_write_string(FILE *f, const char *s) {
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    fputc('"', f);
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            p++;
        } else if (c < 0x20) {
            switch (c) {
            case '\n': fputs("\\n", f); break;
            case '\t': fputs("\\t", f); break;
            case '\r': fputs("\\r", f); break;
            default: fprintf(f, "\\u%04x", c); break;
            }
            p++;
        } else if (c < 0x80) {
            fputc(c, f);
            p++;
        } else {
            /* Length and minimum value of a well-formed UTF-8 sequence. */
            int len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
            uint32_t cp = len == 2 ? c & 0x1fu : len == 3 ? c & 0x0fu : c & 0x07u;
            bool ok = len > 0;
            for (int k = 1; ok && k < len; k++) {
                if ((p[k] & 0xc0) != 0x80)
                    ok = false;
                else
                    cp = cp << 6 | (p[k] & 0x3fu);
            }
            if (ok) {
                static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
                ok = cp >= min_cp[len] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
            }
            if (ok) {
                fwrite(p, 1, (size_t)len, f);
                p += len;
            } else {
                fputs("\\ufffd", f);
                p++;
            }
        }
    }
    fputc('"', f);
}

/* Separator, newline/indent and "key": before a value. */
static void json_prefix(cli_json *j, const char *key) {
    if (j->depth > 0) {
        if (!j->first[j->depth])
            fputc(',', j->f);
        if (j->inline_[j->depth]) {
            if (!j->first[j->depth])
                fputc(' ', j->f);
        } else {
            json_indent(j);
        }
    }
    j->first[j->depth] = false;
    if (key) {
        json_write_string(j->f, key);
        fputs(": ", j->f);
    }
}

static void json_open(cli_json *j, const char *key, char c, bool inline_) {
    json_prefix(j, key);
    fputc(c, j->f);
    if (j->depth + 1 < CLI_JSON_MAX_DEPTH) {
        j->depth++;
        j->first[j->depth] = true;
        /* Containers inside an inline container are inline too. */
        j->inline_[j->depth] = inline_ || j->inline_[j->depth - 1];
    }
}

static void json_close(cli_json *j, char c) {
    bool empty = j->first[j->depth];
    bool inl = j->inline_[j->depth];
    j->depth--;
    if (!empty && !inl)
        json_indent(j);
    fputc(c, j->f);
}

void cli_json_object_begin(cli_json *j, const char *key) {
    json_open(j, key, '{', false);
}
void cli_json_object_end(cli_json *j) {
    json_close(j, '}');
}
void cli_json_array_begin(cli_json *j, const char *key, bool inline_) {
    json_open(j, key, '[', inline_);
}
void cli_json_array_end(cli_json *j) {
    json_close(j, ']');
}

void cli_json_string(cli_json *j, const char *key, const char *s) {
    json_prefix(j, key);
    json_write_string(j->f, s);
}

void cli_json_int(cli_json *j, const char *key, int64_t v) {
    json_prefix(j, key);
    fprintf(j->f, "%" PRId64, v);
}

void cli_json_double(cli_json *j, const char *key, double v) {
    json_prefix(j, key);
    if (isfinite(v))
        fprintf(j->f, "%.9g", v);
    else
        fputs("null", j->f);
}

void cli_json_bool(cli_json *j, const char *key, bool v) {
    json_prefix(j, key);
    fputs(v ? "true" : "false", j->f);
}

void cli_json_null(cli_json *j, const char *key) {
    json_prefix(j, key);
    fputs("null", j->f);
}

void cli_json_finish(cli_json *j) {
    fputc('\n', j->f);
}

/* ---- tables ---- */

bool cli_table_init(cli_table *t, int ncols, const char *const *header, const char *align) {
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    t->right = calloc((size_t)ncols, sizeof(bool));
    if (!t->right)
        return false;
    for (int c = 0; c < ncols; c++)
        t->right[c] = align && align[c] == 'r';
    return cli_table_add(t, header);
}

bool cli_table_add(cli_table *t, const char *const *cells) {
    if (t->nrows == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        char **nc = realloc(t->cells, (size_t)cap * (size_t)t->ncols * sizeof(char *));
        if (!nc)
            return false;
        t->cells = nc;
        t->cap = cap;
    }
    char **row = t->cells + (size_t)t->nrows * (size_t)t->ncols;
    for (int c = 0; c < t->ncols; c++) {
        row[c] = strdup(cells[c] ? cells[c] : "");
        if (!row[c]) {
            for (int k = 0; k < c; k++)
                free(row[k]);
            return false;
        }
    }
    t->nrows++;
    return true;
}

void cli_table_print(const cli_table *t, FILE *f, const char *indent) {
    size_t *w = calloc((size_t)t->ncols, sizeof(size_t));
    if (!w)
        return;
    for (int r = 0; r < t->nrows; r++)
        for (int c = 0; c < t->ncols; c++) {
            size_t len = strlen(t->cells[(size_t)r * (size_t)t->ncols + (size_t)c]);
            if (len > w[c])
                w[c] = len;
        }
    for (int r = 0; r < t->nrows; r++) {
        char **row = t->cells + (size_t)r * (size_t)t->ncols;
        /* Trailing empty left-aligned cells would only add trailing spaces. */
        int lastc = t->ncols - 1;
        while (lastc > 0 && !t->right[lastc] && row[lastc][0] == '\0')
            lastc--;
        fputs(indent ? indent : "", f);
        for (int c = 0; c <= lastc; c++) {
            const char *s = row[c];
            bool last = c == lastc;
            if (t->right[c])
                fprintf(f, "%*s", (int)w[c], s);
            else if (last)
                fputs(s, f); /* no trailing spaces */
            else
                fprintf(f, "%-*s", (int)w[c], s);
            if (!last)
                fputs("  ", f);
        }
        fputc('\n', f);
    }
    free(w);
}

void cli_table_free(cli_table *t) {
    for (int i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->right);
    memset(t, 0, sizeof(*t));
}

/* ---- progress bar ---- */

void cli_progress_begin(cli_progress *p, const char *label, int64_t total) {
    memset(p, 0, sizeof(*p));
    /* Only for a person watching: never in pipes, logs or test output. */
    p->active = total > 0 && isatty(fileno(stderr));
    p->total = total;
    p->label = label;
    p->start = mopt_now();
    p->last_draw = 0;
}

static void format_secs(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 359999)
        snprintf(buf, cap, "--:--");
    else if (s >= 3600)
        snprintf(buf, cap, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(buf, cap, "%d:%02d", (int)s / 60, (int)s % 60);
}

void cli_progress_update(cli_progress *p, int64_t done) {
    if (!p->active)
        return;
    double now = mopt_now();
    if (done < p->total && now - p->last_draw < 0.1)
        return; /* redraw at most 10 times a second */
    p->last_draw = now;
    enum { WIDTH = 30 };
    int fill = (int)(WIDTH * done / p->total);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    double el = now - p->start;
    double rate = el > 0 ? (double)done / el : 0;
    char eta[32];
    format_secs(rate > 0 ? (double)(p->total - done) / rate : -1, eta, sizeof(eta));
    fprintf(stderr, "\r%s [%s] %" PRId64 "/%" PRId64 "  %.1f/s  ETA %s ", p->label, bar, done,
            p->total, rate, eta);
    fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
    if (!p->active)
        return;
    /* Erase the bar so that results start on a clean line. */
    fputs("\r\033[K", stderr);
    fflush(stderr);
    p->active = false;
}

/* ---- random inputs ---- */

uint64_t cli_rand_next(uint64_t *state) {
    /* splitmix64 */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void cli_fill_random(void *data, mopt_dtype dt, int64_t n, uint64_t *state) {
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = cli_rand_next(state);
        switch (dt) {
        case MOPT_FLOAT32: /* uniform in [-1, 1) */
            ((float *)data)[i] = (float)((double)(r >> 11) * 0x1.0p-52 - 1.0);
            break;
        case MOPT_INT8: ((int8_t *)data)[i] = (int8_t)(uint8_t)r; break;
        case MOPT_UINT8: ((uint8_t *)data)[i] = (uint8_t)r; break;
        case MOPT_BOOL: ((uint8_t *)data)[i] = (uint8_t)(r & 1); break;
        case MOPT_INT16: ((int16_t *)data)[i] = (int16_t)(uint16_t)r; break;
        /* Integer tensors fed by users are often indices or shapes: keep them small. */
        case MOPT_INT32: ((int32_t *)data)[i] = (int32_t)(r % 16); break;
        case MOPT_INT64: ((int64_t *)data)[i] = (int64_t)(r % 16); break;
        default: break; /* other types (float16): left as the caller initialised them */
        }
    }
}
