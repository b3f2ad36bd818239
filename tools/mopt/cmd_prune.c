/* cmd_prune.c - `mopt prune IN --sparsity S -o OUT`: one-shot magnitude
 * pruning (element-wise, block or M:N) or channel pruning, with the
 * compression report. Fine-tuning (--data) lands with the training engine. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "compress_cli.h"
#include "mopt/sparsity.h"

/* Also declared by CLI_COMMANDS in cli.h once registered there; repeated
 * here so this file compiles before the registration. */
extern const cli_command cli_cmd_prune;

static const cli_option opts[] = {
    {"output", 'o', true},       {"sparsity", 's', true},   {"structure", 0, true},
    {"norm", 0, true},           {"block", 0, true},        {"block-pool", 0, true},
    {"m-by-n", 0, true},         {"layers", 0, true},       {"json", 0, false},
    {"eval", 0, true},           {"eval-limit", 0, true},   {"threads", 't', true},
    {"data", 'd', true},         {"schedule", 0, true},     {"begin-step", 0, true},
    {"end-step", 0, true},       {"frequency", 0, true},    {"power", 0, true},
    {"initial-sparsity", 0, true}, {"epochs", 0, true},     {"batch-size", 0, true},
    {"lr", 0, true},
};
enum {
    OPT_OUTPUT, OPT_SPARSITY, OPT_STRUCTURE, OPT_NORM, OPT_BLOCK, OPT_BLOCK_POOL, OPT_M_BY_N,
    OPT_LAYERS, OPT_JSON, OPT_EVAL, OPT_EVAL_LIMIT, OPT_THREADS, OPT_DATA, OPT_SCHEDULE,
    OPT_BEGIN, OPT_END, OPT_FREQ, OPT_POWER, OPT_INITIAL, OPT_EPOCHS, OPT_BATCH, OPT_LR
};

typedef struct prune_ctx {
    bool channels;
    mopt_prune_params p;
    mopt_channel_prune_params cp;
} prune_ctx;

static const char *pattern_note(const mopt_prune_params *p, mopt_prune_pattern pat, char *buf,
                                size_t cap) {
    switch (pat) {
    case MOPT_PRUNE_M_BY_N: snprintf(buf, cap, "%d:%d", p->m, p->n); break;
    case MOPT_PRUNE_BLOCK:
        snprintf(buf, cap, "block %dx%d %s", p->block_h, p->block_w,
                 p->block_pool == MOPT_BLOCK_POOL_MAX ? "max" : "avg");
        break;
    default: snprintf(buf, cap, "element"); break;
    }
    return buf;
}

static mopt_status do_prune(void *vctx, mopt_graph *g, const bool *select, char **notes,
                            mopt_error *err) {
    prune_ctx *c = vctx;
    if (c->channels) {
        mopt_channel_prune_result res;
        mopt_status st = mopt_channel_prune(g, select, &c->cp, &res, err);
        if (st != MOPT_OK)
            return st;
        for (int i = 0; i < res.n_layers; i++) {
            const mopt_channel_prune_layer *L = &res.layers[i];
            if (L->frozen)
                notes[L->op] = cc_strdupf("kept %d ch: %s", L->channels_before,
                                          L->reason ? L->reason : "no removable channel");
            else
                notes[L->op] = cc_strdupf("%d -> %d ch (group %d)", L->channels_before,
                                          L->channels_after, L->group);
        }
        mopt_channel_prune_result_free(&res);
        return MOPT_OK;
    }
    mopt_prune_result res;
    mopt_status st = mopt_prune_graph(g, select, &c->p, &res, err);
    if (st != MOPT_OK)
        return st;
    for (int i = 0; i < res.n_layers; i++) {
        char b[64];
        const mopt_prune_layer_result *L = &res.layers[i];
        if (L->pattern == MOPT_PRUNE_M_BY_N)
            notes[L->op] = cc_strdupf("%s", pattern_note(&c->p, L->pattern, b, sizeof b));
        else
            notes[L->op] = cc_strdupf("%s, |w| >= %.4g", pattern_note(&c->p, L->pattern, b, sizeof b),
                                      (double)L->threshold);
    }
    mopt_prune_result_free(&res);
    return MOPT_OK;
}

static int prune_main(int argc, char **argv) {
    cli_parser p;
    cli_parser_init(&p, "prune", argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])));
    cc_options o;
    memset(&o, 0, sizeof o);
    o.cmd = "prune";
    prune_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.p = mopt_prune_default_params();
    ctx.cp = mopt_channel_prune_default_params();
    double sparsity = NAN, initial = 0.0, power = 3.0;
    int64_t begin = 0, end = -2, freq = 100;
    const char *data = NULL, *schedule = NULL, *arg, *training_opt = NULL, *sched_opt = NULL;
    bool have_block = false, have_norm = false, have_pool = false;
    int r;
    while ((r = cli_next(&p, &arg)) != CLI_END) {
        switch (r) {
        case CLI_HELP: return cli_print_help(&cli_cmd_prune);
        case CLI_BAD: return 1;
        case CLI_POSITIONAL:
            if (o.model)
                return cli_usage_error("prune", "unexpected argument '%s'", arg);
            o.model = arg;
            break;
        case OPT_OUTPUT: o.output = arg; break;
        case OPT_SPARSITY:
            if (!cc_parse_real("prune", "sparsity", arg, 0.0, 1.0, true, &sparsity))
                return 1;
            break;
        case OPT_STRUCTURE:
            if (strcmp(arg, "channels") == 0)
                ctx.channels = true;
            else if (strcmp(arg, "element") == 0 || strcmp(arg, "weights") == 0)
                ctx.channels = false;
            else
                return cli_usage_error("prune", "--structure expects element or channels, got '%s'",
                                       arg);
            break;
        case OPT_NORM:
            have_norm = true;
            if (strcmp(arg, "l1") == 0 || strcmp(arg, "L1") == 0)
                ctx.cp.norm = MOPT_CHANNEL_L1;
            else if (strcmp(arg, "l2") == 0 || strcmp(arg, "L2") == 0)
                ctx.cp.norm = MOPT_CHANNEL_L2;
            else
                return cli_usage_error("prune", "--norm expects l1 or l2, got '%s'", arg);
            break;
        case OPT_BLOCK:
            if (!cc_parse_pair("prune", "block", arg, 'x', &ctx.p.block_h, &ctx.p.block_w))
                return 1;
            if (ctx.p.block_h < 1 || ctx.p.block_w < 1)
                return cli_usage_error("prune", "--block %s: both sides must be at least 1", arg);
            have_block = true;
            break;
        case OPT_BLOCK_POOL:
            have_pool = true;
            if (strcmp(arg, "avg") == 0)
                ctx.p.block_pool = MOPT_BLOCK_POOL_AVG;
            else if (strcmp(arg, "max") == 0)
                ctx.p.block_pool = MOPT_BLOCK_POOL_MAX;
            else
                return cli_usage_error("prune", "--block-pool expects avg or max, got '%s'", arg);
            break;
        case OPT_M_BY_N:
            if (!cc_parse_pair("prune", "m-by-n", arg, ':', &ctx.p.m, &ctx.p.n))
                return 1;
            if (ctx.p.m < 1 || ctx.p.m >= ctx.p.n)
                return cli_usage_error("prune",
                                       "--m-by-n %s: needs 0 < M < N (M zeros in every N "
                                       "consecutive input channels)",
                                       arg);
            break;
        case OPT_LAYERS: o.layers = arg; break;
        case OPT_JSON: o.json = true; break;
        case OPT_EVAL: o.eval = arg; break;
        case OPT_EVAL_LIMIT:
            if (!cli_parse_int("prune", "eval-limit", arg, 1, INT64_MAX, &o.eval_limit))
                return 1;
            break;
        case OPT_THREADS:
            if (!cli_parse_int("prune", "threads", arg, 1, 1024, &o.threads))
                return 1;
            break;
        case OPT_DATA: data = arg; break;
        case OPT_SCHEDULE:
            if (strcmp(arg, "constant") != 0 && strcmp(arg, "polynomial") != 0)
                return cli_usage_error("prune", "--schedule expects constant or polynomial, got '%s'",
                                       arg);
            schedule = arg;
            sched_opt = "schedule";
            break;
        case OPT_BEGIN:
            if (!cli_parse_int("prune", "begin-step", arg, INT64_MIN, INT64_MAX, &begin))
                return 1;
            sched_opt = "begin-step";
            break;
        case OPT_END:
            if (!cli_parse_int("prune", "end-step", arg, INT64_MIN, INT64_MAX, &end))
                return 1;
            sched_opt = "end-step";
            break;
        case OPT_FREQ:
            if (!cli_parse_int("prune", "frequency", arg, INT64_MIN, INT64_MAX, &freq))
                return 1;
            sched_opt = "frequency";
            break;
        case OPT_POWER:
            if (!cc_parse_real("prune", "power", arg, -1e9, 1e9, false, &power))
                return 1;
            sched_opt = "power";
            break;
        case OPT_INITIAL:
            if (!cc_parse_real("prune", "initial-sparsity", arg, 0.0, 1.0, true, &initial))
                return 1;
            sched_opt = "initial-sparsity";
            break;
        case OPT_EPOCHS: training_opt = "epochs"; break;
        case OPT_BATCH: training_opt = "batch-size"; break;
        case OPT_LR: training_opt = "lr"; break;
        default: return cli_usage_error("prune", "internal: unhandled option");
        }
    }
    if (!o.model)
        return cli_usage_error("prune", "missing IN (the model to prune)");
    if (!o.output)
        return cli_usage_error("prune", "missing -o OUT");
    const bool mn = ctx.p.m > 0;
    if (isnan(sparsity) && !mn)
        return cli_usage_error("prune", "missing --sparsity S (fraction of weights to zero, in [0, 1))");
    if (!isnan(sparsity) && mn)
        return cli_usage_error("prune", "--sparsity and --m-by-n exclude each other (M:N fixes the "
                                        "sparsity at M/N)");
    if (mn && have_block)
        return cli_usage_error("prune", "--m-by-n and --block exclude each other");
    if (have_pool && !have_block)
        return cli_usage_error("prune", "--block-pool needs --block");
    if (ctx.channels && (mn || have_block))
        return cli_usage_error("prune", "--structure channels removes whole channels; it takes "
                                        "no --block or --m-by-n");
    if (have_norm && !ctx.channels)
        return cli_usage_error("prune", "--norm applies to --structure channels only");
    ctx.p.sparsity = mn ? 0.0f : (float)sparsity;
    ctx.cp.sparsity = (float)sparsity;
    mopt_error err;
    mopt_error_clear(&err);
    if (!ctx.channels && mopt_prune_params_validate(&ctx.p, &err) != MOPT_OK)
        return cli_usage_error("prune", "%s", err.msg);

    /* Schedule and training options belong to fine-tuning: check them (so a
     * bad schedule is reported as such), then refuse what is not there yet. */
    if (sched_opt) {
        double final_s = isnan(sparsity) ? 0.5 : sparsity;
        bool poly = !schedule || strcmp(schedule, "polynomial") == 0;
        int64_t e = end == -2 ? -1 : end; /* tfmot's default end_step */
        mopt_prune_schedule s = poly
                                    ? mopt_prune_schedule_polynomial(initial, final_s, begin, e,
                                                                     power, freq)
                                    : mopt_prune_schedule_constant(final_s, begin, e, freq);
        if (mopt_prune_schedule_validate(&s, &err) != MOPT_OK)
            return cli_usage_error("prune", "pruning schedule: %s", err.msg);
        if (!data)
            return cli_usage_error("prune",
                                   "--%s: schedules apply to fine-tuning with --data; one-shot "
                                   "pruning applies --sparsity at once",
                                   sched_opt);
    }
    if (training_opt && !data)
        return cli_usage_error("prune", "--%s: training options need --data (fine-tuning)",
                               training_opt);
    if (data)
        return cli_usage_error("prune",
                               "--data: fine-tuning is not available yet (the training engine has "
                               "not landed); run without --data for one-shot pruning");

    char settings[256];
    if (ctx.channels)
        snprintf(settings, sizeof settings,
                 "one-shot channel pruning: remove %.4g of the output channels per layer group "
                 "(%s filter norm)",
                 sparsity, ctx.cp.norm == MOPT_CHANNEL_L2 ? "L2" : "L1");
    else if (mn)
        snprintf(settings, sizeof settings,
                 "one-shot %d:%d pruning: %d zeros in every %d consecutive input channels",
                 ctx.p.m, ctx.p.n, ctx.p.m, ctx.p.n);
    else if (have_block)
        snprintf(settings, sizeof settings,
                 "one-shot magnitude pruning to %.4g sparsity, %dx%d %s blocks on "
                 "FULLY_CONNECTED weights (element-wise elsewhere)",
                 sparsity, ctx.p.block_h, ctx.p.block_w,
                 ctx.p.block_pool == MOPT_BLOCK_POOL_MAX ? "max" : "avg");
    else
        snprintf(settings, sizeof settings,
                 "one-shot magnitude pruning to %.4g sparsity per weight tensor (no fine-tuning)",
                 sparsity);
    o.settings = settings;
    return cc_run(&o, do_prune, &ctx);
}

const cli_command cli_cmd_prune = {
    "prune",
    "magnitude pruning (element-wise, block, M:N) and channel pruning, with a size report",
    "usage: mopt prune IN --sparsity S [options] -o OUT\n"
    "       mopt prune IN --m-by-n M:N [options] -o OUT\n"
    "       mopt prune IN --structure channels --sparsity S [--norm l1|l2] -o OUT\n"
    "\n"
    "One-shot pruning of the weights of CONV_2D, DEPTHWISE_CONV_2D and\n"
    "FULLY_CONNECTED layers, with the reference toolkit's (tfmot) mask rules:\n"
    "per weight tensor keep k = max(round_half_even(N * (1 - S)), 1) weights, i.e.\n"
    "every |w| >= the k-th largest |w| (ties are kept). The output is a plain float\n"
    "model, written only when everything succeeded. A report follows: per-layer\n"
    "sparsity and distinct values, parameters, size raw and zlib-compressed, and\n"
    "top-1 accuracy with --eval.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT       the pruned model (required)\n"
    "  -s, --sparsity S       fraction of weights to zero per tensor, in [0, 1)\n"
    "  --block HxW            block sparsity on FULLY_CONNECTED weights [units, depth]:\n"
    "                         H units x W input features per block (tfmot's\n"
    "                         block_size=(W, H) on the Keras kernel); other layers\n"
    "                         are pruned element-wise\n"
    "  --block-pool avg|max   block score: mean or max of |w| (default avg)\n"
    "  --m-by-n M:N           M zeros in every N consecutive input channels (e.g. 2:4),\n"
    "                         tfmot's sparsity_m_by_n; replaces --sparsity\n"
    "  --structure channels   remove whole output channels of CONV_2D / FULLY_CONNECTED\n"
    "                         layers (the model really shrinks); --sparsity is the\n"
    "                         fraction of channels removed per layer, consumers are\n"
    "                         rewritten (next conv / depthwise / FC inputs, residual\n"
    "                         ADDs pruned identically on both branches)\n"
    "  --norm l1|l2           channel ranking for --structure channels (default l1)\n"
    "  --layers REGEX         only layers whose weight or output tensor name matches\n"
    "                         (POSIX extended regex; see 'mopt inspect' for names)\n"
    "  --eval DATA            measure top-1 accuracy before and after on DATA's test\n"
    "                         split (fashion-mnist, a folder, or IMAGES.npy,LABELS.npy)\n"
    "  --eval-limit N         evaluate the first N samples only\n"
    "  -t, --threads N        threads for --eval\n"
    "  --json                 print the report as JSON\n"
    "\n"
    "fine-tuning (not available yet; these options are checked, then refused):\n"
    "  -d, --data DATA  --schedule constant|polynomial  --begin-step N  --end-step N\n"
    "  --frequency N  --power P  --initial-sparsity S  --epochs N  --batch-size N  --lr X\n"
    "\n"
    "exit codes: 0 ok, 1 usage error (bad option values, --layers matching nothing),\n"
    "2 bad input (unreadable model, no prunable layer, data not fitting the model).\n",
    prune_main,
};
