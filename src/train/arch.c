/* arch.c - built-in architectures as data (spec strings) and the spec
 * parser that builds a training graph from them (grammar in train.h). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/tg_internal.h"

/* The built-in architectures for 28x28x1 inputs. The channel counts of
 * conv/dw/sep/res scale with the width multiplier. */
static const struct {
    const char *name;
    const char *spec;
} k_arch[] = {
    {"mlp", "flatten; fc 512 relu; dropout 0.2; fc 256 relu; dropout 0.2; fc classes"},
    {"cnn", "conv 32 3 bn relu; maxpool 2; conv 64 3 bn relu; maxpool 2; "
            "flatten; fc 128 relu; dropout 0.3; fc classes"},
    {"dscnn", "conv 32 3 bn relu; sep 64 3; maxpool 2; sep 128 3; maxpool 2; "
              "flatten; dropout 0.3; fc classes"},
    {"mobilenet", "conv 32 3 s 2 bn relu6; sep 64 3 relu6; sep 128 3 s 2 relu6; sep 128 3 relu6; "
                  "sep 256 3 s 2 relu6; sep 256 3 relu6; gap; dropout 0.2; fc classes"},
    {"resnet", "conv 16 3 bn relu; res 16; res 16; res 32 s 2; res 32; res 64 s 2; res 64; "
               "gap; fc classes"},
};
#define N_ARCH ((int)(sizeof(k_arch) / sizeof(k_arch[0])))

static const char *const k_arch_names[] = {"mlp", "cnn", "dscnn", "mobilenet", "resnet", NULL};

const char *const *mopt_arch_names(void) { return k_arch_names; }

const char *mopt_arch_spec(const char *name) {
    if (!name) return NULL;
    for (int i = 0; i < N_ARCH; i++)
        if (strcmp(k_arch[i].name, name) == 0) return k_arch[i].spec;
    return NULL;
}

mopt_arch_options mopt_arch_default_options(void) {
    mopt_arch_options o;
    memset(&o, 0, sizeof(o));
    o.in_h = 28;
    o.in_w = 28;
    o.in_c = 1;
    o.num_classes = 10;
    o.width = 1.0f;
    o.bn_momentum = 0.99f;
    o.bn_eps = 1e-3f;
    o.seed = 1;
    return o;
}

/* ---- parser ---- */

#define MAX_TOK 16
#define MAX_MARKS 32

typedef struct layer {
    int ntok;
    char tok[MAX_TOK][32];
} layer;

typedef struct pstate {
    mopt_tgraph *tg;
    const mopt_arch_options *o;
    int cur;       /* current value */
    int index;     /* 1-based layer number (messages) */
    const char *word;
    int n_marks;
    char mark_name[MAX_MARKS][32];
    int mark_val[MAX_MARKS];
} pstate;

typedef struct lopts {
    int pos[4];
    int npos;
    double fpos;       /* first positional as a real (dropout) */
    bool classes;      /* "classes" positional */
    int s, d, m;
    mopt_padding pad;
    bool pad_set;
    bool bn, nobias;
    int act_kind;      /* 0 none, else MOPT_OP_RELU/RELU6/TANH/LOGISTIC/HARD_SWISH */
    const char *name;  /* mark/add/concat */
} lopts;

static mopt_status perr(pstate *p, mopt_error *err, const char *fmt, const char *arg) {
    char msg[200];
    snprintf(msg, sizeof(msg), fmt, arg);
    return mopt_error_set(err, MOPT_ERR_ARG, "architecture spec: layer %d '%s': %s", p->index,
                          p->word, msg);
}

static bool parse_int(const char *s, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 0 || v > 1000000) return false;
    *out = (int)v;
    return true;
}

static int act_from_word(const char *w) {
    if (!strcmp(w, "relu")) return MOPT_OP_RELU;
    if (!strcmp(w, "relu6")) return MOPT_OP_RELU6;
    if (!strcmp(w, "tanh")) return MOPT_OP_TANH;
    if (!strcmp(w, "sigmoid") || !strcmp(w, "logistic")) return MOPT_OP_LOGISTIC;
    if (!strcmp(w, "hswish") || !strcmp(w, "hard_swish")) return MOPT_OP_HARD_SWISH;
    return 0;
}

static mopt_status parse_opts(pstate *p, const layer *l, lopts *o, mopt_error *err) {
    memset(o, 0, sizeof(*o));
    o->s = 1;
    o->d = 1;
    o->m = 1;
    o->pad = MOPT_PAD_SAME;
    for (int i = 1; i < l->ntok; i++) {
        const char *t = l->tok[i];
        int v;
        if (!strcmp(t, "s") || !strcmp(t, "d") || !strcmp(t, "m")) {
            if (i + 1 >= l->ntok || !parse_int(l->tok[i + 1], &v) || v < 1)
                return perr(p, err, "option '%s' needs a positive integer", t);
            if (t[0] == 's') o->s = v;
            if (t[0] == 'd') o->d = v;
            if (t[0] == 'm') o->m = v;
            i++;
        } else if (!strcmp(t, "valid") || !strcmp(t, "same")) {
            o->pad = t[0] == 'v' ? MOPT_PAD_VALID : MOPT_PAD_SAME;
            o->pad_set = true;
        } else if (!strcmp(t, "bn")) {
            o->bn = true;
        } else if (!strcmp(t, "nobias")) {
            o->nobias = true;
        } else if (act_from_word(t)) {
            o->act_kind = act_from_word(t);
        } else if (!strcmp(t, "classes")) {
            if (o->npos >= 4) return perr(p, err, "too many numbers ('%s')", t);
            o->classes = true;
            o->pos[o->npos++] = p->o->num_classes;
        } else if (isdigit((unsigned char)t[0]) || t[0] == '.') {
            if (o->npos >= 4) return perr(p, err, "too many numbers ('%s')", t);
            char *end;
            double f = strtod(t, &end);
            if (*end) return perr(p, err, "bad number '%s'", t);
            if (o->npos == 0) o->fpos = f;
            if (f != floor(f) || f > 1000000) {
                if (o->npos != 0) return perr(p, err, "expected an integer, got '%s'", t);
                o->pos[o->npos++] = -1;
            } else {
                o->pos[o->npos++] = (int)f;
            }
        } else if (!o->name && (!strcmp(l->tok[0], "mark") || !strcmp(l->tok[0], "add") ||
                                !strcmp(l->tok[0], "concat"))) {
            o->name = t;
        } else {
            return perr(p, err, "unknown option '%s'", t);
        }
    }
    return MOPT_OK;
}

static int scaled(const pstate *p, int c) {
    long v = lround((double)c * (double)p->o->width);
    return v < 1 ? 1 : (int)v;
}

static const char *uname(pstate *p, const char *prefix, char *buf, size_t cap) {
    tg_unique_name(p->tg, prefix, buf, cap);
    return buf;
}

static mopt_activation fused_of(int act_kind) {
    switch (act_kind) {
    case MOPT_OP_RELU: return MOPT_ACT_RELU;
    case MOPT_OP_RELU6: return MOPT_ACT_RELU6;
    case MOPT_OP_TANH: return MOPT_ACT_TANH;
    default: return MOPT_ACT_NONE;
    }
}

static mopt_status node_result(pstate *p, int node, mopt_error *err) {
    if (node < 0) {
        mopt_error_prefix(err, "architecture spec: layer %d '%s'", p->index, p->word);
        return err ? err->status : MOPT_ERR_ARG;
    }
    p->cur = p->tg->nodes[node].out;
    return MOPT_OK;
}

static mopt_status add_act(pstate *p, int act_kind, mopt_error *err) {
    if (!act_kind) return MOPT_OK;
    char nb[48];
    const char *pre = act_kind == MOPT_OP_RELU       ? "relu"
                      : act_kind == MOPT_OP_RELU6    ? "relu6_"
                      : act_kind == MOPT_OP_TANH     ? "tanh"
                      : act_kind == MOPT_OP_LOGISTIC ? "sigmoid"
                                                     : "hswish";
    return node_result(p, tgb_unary(p->tg, act_kind, p->cur, uname(p, pre, nb, sizeof(nb)), err),
                       err);
}

static mopt_status add_bn(pstate *p, mopt_activation act, mopt_error *err) {
    char nb[48];
    return node_result(p,
                       tgb_bn(p->tg, p->cur, uname(p, "bn", nb, sizeof(nb)), p->o->bn_momentum,
                              p->o->bn_eps, act, err),
                       err);
}

/* conv / dw / fc with optional bn and activation: a ReLU-type activation is
 * fused into the last node (the op, or the bn after it: op -> bn+act);
 * sigmoid and hard-swish get their own node. */
static mopt_status add_weighted(pstate *p, int kind, int ch, int k, const lopts *o,
                                mopt_error *err) {
    char nb[48];
    mopt_activation fused = fused_of(o->act_kind);
    bool bias = !o->bn && !o->nobias;
    int node;
    if (kind == MOPT_OP_CONV_2D)
        node = tgb_conv(p->tg, p->cur, uname(p, "conv", nb, sizeof(nb)), ch, k, k, o->s, o->s,
                        o->d, o->d, o->pad, bias, o->bn ? MOPT_ACT_NONE : fused, err);
    else if (kind == MOPT_OP_DEPTHWISE_CONV_2D)
        node = tgb_dwconv(p->tg, p->cur, uname(p, "dw", nb, sizeof(nb)), o->m, k, k, o->s, o->s,
                          o->d, o->d, o->pad, bias, o->bn ? MOPT_ACT_NONE : fused, err);
    else
        node = tgb_fc(p->tg, p->cur, uname(p, "fc", nb, sizeof(nb)), ch, bias, false,
                      o->bn ? MOPT_ACT_NONE : fused, err);
    mopt_status st = node_result(p, node, err);
    if (st != MOPT_OK) return st;
    if (o->bn && (st = add_bn(p, fused, err)) != MOPT_OK) return st;
    if (fused == MOPT_ACT_NONE) return add_act(p, o->act_kind, err);
    return MOPT_OK;
}

static int find_mark(const pstate *p, const char *name) {
    for (int i = 0; i < p->n_marks; i++)
        if (!strcmp(p->mark_name[i], name)) return p->mark_val[i];
    return -1;
}

static mopt_status build_layer(pstate *p, const layer *l, mopt_error *err) {
    const char *w = l->tok[0];
    p->word = w;
    lopts o;
    mopt_status st = parse_opts(p, l, &o, err);
    if (st != MOPT_OK) return st;
    char nb[48];
    if (!strcmp(w, "conv")) {
        if (o.npos != 2 || o.pos[0] < 1 || o.pos[1] < 1)
            return perr(p, err, "%susage: conv CHANNELS KERNEL [s S] [d D] [valid] [bn] [act]", "");
        return add_weighted(p, MOPT_OP_CONV_2D, scaled(p, o.pos[0]), o.pos[1], &o, err);
    }
    if (!strcmp(w, "dw")) {
        if (o.npos != 1 || o.pos[0] < 1)
            return perr(p, err, "%susage: dw KERNEL [s S] [d D] [m M] [valid] [bn] [act]", "");
        return add_weighted(p, MOPT_OP_DEPTHWISE_CONV_2D, 0, o.pos[0], &o, err);
    }
    if (!strcmp(w, "sep")) {
        if (o.npos < 1 || o.npos > 2 || o.pos[0] < 1 || (o.npos == 2 && o.pos[1] < 1))
            return perr(p, err, "%susage: sep CHANNELS [KERNEL] [s S] [act]", "");
        lopts a = o;
        a.bn = true;
        if (!a.act_kind) a.act_kind = MOPT_OP_RELU;
        a.m = 1;
        if ((st = add_weighted(p, MOPT_OP_DEPTHWISE_CONV_2D, 0, o.npos == 2 ? o.pos[1] : 3, &a,
                               err)) != MOPT_OK)
            return st;
        a.s = 1;
        a.d = 1;
        a.pad = MOPT_PAD_SAME;
        return add_weighted(p, MOPT_OP_CONV_2D, scaled(p, o.pos[0]), 1, &a, err);
    }
    if (!strcmp(w, "res")) {
        if (o.npos != 1 || o.pos[0] < 1) return perr(p, err, "%susage: res CHANNELS [s S]", "");
        const int ch = scaled(p, o.pos[0]);
        const int in = p->cur;
        const tval *iv = &p->tg->vals[in];
        if (iv->rank != 4) return perr(p, err, "%sneeds an image (NHWC) input", "");
        lopts a;
        memset(&a, 0, sizeof(a));
        a.s = o.s;
        a.d = 1;
        a.m = 1;
        a.pad = MOPT_PAD_SAME;
        a.bn = true;
        a.act_kind = MOPT_OP_RELU;
        if ((st = add_weighted(p, MOPT_OP_CONV_2D, ch, 3, &a, err)) != MOPT_OK) return st;
        a.s = 1;
        a.act_kind = 0;
        if ((st = add_weighted(p, MOPT_OP_CONV_2D, ch, 3, &a, err)) != MOPT_OK) return st;
        const int main_out = p->cur;
        int shortcut = in;
        if (o.s != 1 || iv->dims[3] != ch) {
            p->cur = in;
            a.s = o.s;
            if ((st = add_weighted(p, MOPT_OP_CONV_2D, ch, 1, &a, err)) != MOPT_OK) return st;
            shortcut = p->cur;
        }
        if ((st = node_result(p,
                              tgb_binary(p->tg, MOPT_OP_ADD, main_out, shortcut,
                                         uname(p, "add", nb, sizeof(nb)), MOPT_ACT_NONE, err),
                              err)) != MOPT_OK)
            return st;
        return add_act(p, MOPT_OP_RELU, err);
    }
    if (!strcmp(w, "fc")) {
        if (o.npos != 1 || o.pos[0] < 1) return perr(p, err, "%susage: fc UNITS|classes [act] [bn]", "");
        if (p->tg->vals[p->cur].rank != 2) {
            /* Dense layers act on flat features: flatten implicitly. */
            int32_t dims[2] = {1, -1};
            if ((st = node_result(p,
                                  tgb_reshape(p->tg, p->cur, uname(p, "flatten", nb, sizeof(nb)),
                                              2, dims, err),
                                  err)) != MOPT_OK)
                return st;
        }
        return add_weighted(p, MOPT_OP_FULLY_CONNECTED, o.pos[0], 0, &o, err);
    }
    if (!strcmp(w, "bn")) {
        if (o.npos) return perr(p, err, "%stakes no numbers", "");
        if ((st = add_bn(p, fused_of(o.act_kind), err)) != MOPT_OK) return st;
        return fused_of(o.act_kind) == MOPT_ACT_NONE ? add_act(p, o.act_kind, err) : MOPT_OK;
    }
    if (act_from_word(w)) {
        if (o.npos) return perr(p, err, "%stakes no numbers", "");
        return add_act(p, act_from_word(w), err);
    }
    if (!strcmp(w, "maxpool") || !strcmp(w, "avgpool")) {
        if (o.npos != 1 || o.pos[0] < 1) return perr(p, err, "%susage: maxpool|avgpool K [s S] [same]", "");
        int k = o.pos[0];
        bool has_s = false;
        for (int i = 1; i < l->ntok; i++)
            if (!strcmp(l->tok[i], "s")) has_s = true;
        int s = has_s ? o.s : k;
        mopt_padding pad = o.pad_set ? o.pad : MOPT_PAD_VALID;
        int kind = w[0] == 'm' ? MOPT_OP_MAX_POOL_2D : MOPT_OP_AVERAGE_POOL_2D;
        return node_result(p,
                           tgb_pool(p->tg, kind, p->cur, uname(p, w, nb, sizeof(nb)), k, k, s, s,
                                    pad, MOPT_ACT_NONE, err),
                           err);
    }
    if (!strcmp(w, "gap")) {
        if (p->tg->vals[p->cur].rank != 4) return perr(p, err, "%sneeds an image (NHWC) input", "");
        bool axes[MOPT_MAX_DIMS] = {false, true, true, false, false, false};
        return node_result(p, tgb_mean(p->tg, p->cur, uname(p, "gap", nb, sizeof(nb)), axes,
                                       false, err),
                           err);
    }
    if (!strcmp(w, "flatten")) {
        int32_t dims[2] = {1, -1};
        return node_result(p,
                           tgb_reshape(p->tg, p->cur, uname(p, "flatten", nb, sizeof(nb)), 2,
                                       dims, err),
                           err);
    }
    if (!strcmp(w, "dropout")) {
        if (o.npos != 1 || !(o.fpos >= 0.0 && o.fpos < 1.0))
            return perr(p, err, "%susage: dropout RATE with 0 <= RATE < 1", "");
        return node_result(p,
                           tgb_dropout(p->tg, p->cur, uname(p, "dropout", nb, sizeof(nb)),
                                       (float)o.fpos, err),
                           err);
    }
    if (!strcmp(w, "mark")) {
        if (!o.name || o.npos) return perr(p, err, "%susage: mark NAME", "");
        if (p->n_marks >= MAX_MARKS) return perr(p, err, "%stoo many marks", "");
        if (find_mark(p, o.name) >= 0) return perr(p, err, "mark '%s' already defined", o.name);
        snprintf(p->mark_name[p->n_marks], sizeof(p->mark_name[0]), "%s", o.name);
        p->mark_val[p->n_marks++] = p->cur;
        return MOPT_OK;
    }
    if (!strcmp(w, "add") || !strcmp(w, "concat")) {
        if (!o.name || o.npos) return perr(p, err, "%susage: add|concat NAME", "");
        int other = find_mark(p, o.name);
        if (other < 0) return perr(p, err, "unknown mark '%s'", o.name);
        int node;
        if (w[0] == 'a') {
            node = tgb_binary(p->tg, MOPT_OP_ADD, p->cur, other, uname(p, "add", nb, sizeof(nb)),
                              MOPT_ACT_NONE, err);
        } else {
            int ins[2] = {other, p->cur};
            node = tgb_concat(p->tg, ins, 2, uname(p, "concat", nb, sizeof(nb)), -1,
                              MOPT_ACT_NONE, err);
        }
        if ((st = node_result(p, node, err)) != MOPT_OK) return st;
        return add_act(p, o.act_kind, err);
    }
    return perr(p, err, "%sunknown layer type", "");
}

/* Splits the spec into layers of whitespace-separated tokens. */
static mopt_status tokenize(const char *spec, layer **out, int *n_out, mopt_error *err) {
    size_t len = strlen(spec);
    int cap = 8, n = 0;
    layer *ls = malloc((size_t)cap * sizeof(*ls));
    if (!ls) return mopt_error_set(err, MOPT_ERR_NOMEM, "architecture spec: out of memory");
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && spec[j] != ';' && spec[j] != '\n') j++;
        layer l;
        memset(&l, 0, sizeof(l));
        size_t k = i;
        while (k < j) {
            while (k < j && isspace((unsigned char)spec[k])) k++;
            if (k >= j) break;
            size_t s = k;
            while (k < j && !isspace((unsigned char)spec[k])) k++;
            if (l.ntok >= MAX_TOK || k - s >= sizeof(l.tok[0])) {
                free(ls);
                return mopt_error_set(err, MOPT_ERR_ARG,
                                      "architecture spec: layer %d is too long", n + 1);
            }
            memcpy(l.tok[l.ntok], spec + s, k - s);
            l.tok[l.ntok][k - s] = 0;
            l.ntok++;
        }
        if (l.ntok > 0) {
            if (n == cap) {
                cap *= 2;
                layer *nl = realloc(ls, (size_t)cap * sizeof(*nl));
                if (!nl) {
                    free(ls);
                    return mopt_error_set(err, MOPT_ERR_NOMEM, "architecture spec: out of memory");
                }
                ls = nl;
            }
            ls[n++] = l;
        }
        i = j + 1;
    }
    *out = ls;
    *n_out = n;
    return MOPT_OK;
}

static void init_weights(mopt_tgraph *tg, uint64_t seed) {
    for (int i = 0; i < tg->n_vars; i++) {
        mopt_tvar *v = &tg->vars[i]->pub;
        if (v->role != MOPT_TVAR_WEIGHT) continue;
        int kind = tg->nodes[v->node].kind;
        int64_t fin, fout;
        if (kind == MOPT_OP_FULLY_CONNECTED) {
            fin = v->dims[1];
            fout = v->dims[0];
        } else if (kind == MOPT_OP_CONV_2D) {
            fin = (int64_t)v->dims[1] * v->dims[2] * v->dims[3];
            fout = (int64_t)v->dims[1] * v->dims[2] * v->dims[0];
        } else { /* depthwise [1,KH,KW,C*M]: Keras fans of [KH,KW,C,M] */
            const tnode *n = &tg->nodes[v->node];
            int64_t m = n->p.conv.depth_mult;
            fin = (int64_t)v->dims[1] * v->dims[2] * (v->dims[3] / m);
            fout = (int64_t)v->dims[1] * v->dims[2] * m;
        }
        tr_init_glorot(v->data, v->numel, fin, fout, seed, (uint64_t)i + 1);
    }
}

mopt_status mopt_tgraph_from_spec(const char *spec, const mopt_arch_options *opts,
                                  mopt_tgraph **out, mopt_error *err) {
    if (!spec || !out) return mopt_error_set(err, MOPT_ERR_ARG, "architecture spec: NULL");
    *out = NULL;
    mopt_arch_options o = opts ? *opts : mopt_arch_default_options();
    if (o.in_h < 1 || o.in_w < 1 || o.in_c < 1 || o.num_classes < 2 || !(o.width > 0.0f) ||
        o.width > 64.0f)
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "architecture: input %dx%dx%d, %d classes and width %g are not "
                              "valid (need positive sizes, >= 2 classes, 0 < width <= 64)",
                              o.in_h, o.in_w, o.in_c, o.num_classes, (double)o.width);
    layer *ls = NULL;
    int nl = 0;
    mopt_status st = tokenize(spec, &ls, &nl, err);
    if (st != MOPT_OK) return st;
    if (nl == 0) {
        free(ls);
        return mopt_error_set(err, MOPT_ERR_ARG, "architecture spec is empty");
    }
    mopt_tgraph *tg = tg_new();
    if (!tg) {
        free(ls);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "architecture: out of memory");
    }
    int32_t in_dims[4] = {1, o.in_h, o.in_w, o.in_c};
    tg->input = tg_add_value(tg, 4, in_dims, true);
    tg->input_name = malloc(6);
    if (tg->input < 0 || !tg->input_name) {
        free(ls);
        mopt_tgraph_free(tg);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "architecture: out of memory");
    }
    memcpy(tg->input_name, "input", 6);
    tg->vals[tg->input].producer = -1;
    pstate p;
    memset(&p, 0, sizeof(p));
    p.tg = tg;
    p.o = &o;
    p.cur = tg->input;
    for (int i = 0; i < nl && st == MOPT_OK; i++) {
        p.index = i + 1;
        st = build_layer(&p, &ls[i], err);
    }
    free(ls);
    if (st == MOPT_OK) {
        const tval *ov = &tg->vals[p.cur];
        if (ov->rank != 2 || ov->dims[1] != o.num_classes)
            st = mopt_error_set(err, MOPT_ERR_ARG,
                                "architecture spec: the last layer must produce [N, %d] logits "
                                "(end with 'fc classes')",
                                o.num_classes);
    }
    if (st == MOPT_OK) st = tg_finalize(tg, p.cur, err);
    if (st != MOPT_OK) {
        mopt_tgraph_free(tg);
        return st;
    }
    init_weights(tg, o.seed);
    tg->end_softmax = true;
    tg->seed = o.seed;
    *out = tg;
    return MOPT_OK;
}

mopt_status mopt_tgraph_from_arch(const char *name, const mopt_arch_options *opts,
                                  mopt_tgraph **out, mopt_error *err) {
    if (!name) return mopt_error_set(err, MOPT_ERR_ARG, "architecture: no name");
    if (!strncmp(name, "spec:", 5)) return mopt_tgraph_from_spec(name + 5, opts, out, err);
    const char *spec = mopt_arch_spec(name);
    if (!spec)
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "unknown architecture '%s' (known: mlp, cnn, dscnn, mobilenet, "
                              "resnet, or spec:LAYERS)",
                              name);
    return mopt_tgraph_from_spec(spec, opts, out, err);
}
