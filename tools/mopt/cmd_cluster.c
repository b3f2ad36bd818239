/* cmd_cluster.c - `mopt cluster IN --clusters K -o OUT`: one-shot weight
 * clustering (tfmot's initialisations, optional Lloyd iterations, strip),
 * with the compression report. Centroid fine-tuning (--data) lands with the
 * training engine. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "compress_cli.h"
#include "mopt/cluster.h"

/* Also declared by CLI_COMMANDS in cli.h once registered there; repeated
 * here so this file compiles before the registration. */
extern const cli_command cli_cmd_cluster;

static const cli_option opts[] = {
    {"output", 'o', true},        {"clusters", 'k', true},  {"init", 0, true},
    {"per-channel", 0, false},    {"preserve-sparsity", 0, false}, {"seed", 0, true},
    {"lloyd", 0, true},           {"layers", 0, true},      {"json", 0, false},
    {"eval", 0, true},            {"eval-limit", 0, true},  {"threads", 't', true},
    {"data", 'd', true},          {"epochs", 0, true},      {"batch-size", 0, true},
    {"lr", 0, true},              {"aggregation", 0, true},
};
enum {
    OPT_OUTPUT, OPT_CLUSTERS, OPT_INIT, OPT_PER_CHANNEL, OPT_PRESERVE, OPT_SEED, OPT_LLOYD,
    OPT_LAYERS, OPT_JSON, OPT_EVAL, OPT_EVAL_LIMIT, OPT_THREADS, OPT_DATA, OPT_EPOCHS, OPT_BATCH,
    OPT_LR, OPT_AGG
};

static mopt_status do_cluster(void *vctx, mopt_graph *g, const bool *select, char **notes,
                              mopt_error *err) {
    const mopt_cluster_params *p = vctx;
    mopt_cluster_result res;
    mopt_status st = mopt_cluster_graph(g, select, p, &res, err);
    if (st != MOPT_OK)
        return st;
    for (int i = 0; i < res.n_layers; i++) {
        const mopt_cluster_layer_result *L = &res.layers[i];
        if (L->units > 1)
            notes[L->op] = cc_strdupf("<= %lld values in each of %d channels, rmse %.3g",
                                      (long long)L->max_unique, L->units, sqrt(L->mse));
        else
            notes[L->op] = cc_strdupf("%lld values, rmse %.3g", (long long)L->max_unique,
                                      sqrt(L->mse));
    }
    mopt_cluster_result_free(&res);
    return MOPT_OK;
}

static int cluster_main(int argc, char **argv) {
    cli_parser p;
    cli_parser_init(&p, "cluster", argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])));
    cc_options o;
    memset(&o, 0, sizeof o);
    o.cmd = "cluster";
    mopt_cluster_params cp = mopt_cluster_default_params();
    int64_t k = -1, v;
    const char *data = NULL, *training_opt = NULL, *arg;
    int r;
    while ((r = cli_next(&p, &arg)) != CLI_END) {
        switch (r) {
        case CLI_HELP: return cli_print_help(&cli_cmd_cluster);
        case CLI_BAD: return 1;
        case CLI_POSITIONAL:
            if (o.model)
                return cli_usage_error("cluster", "unexpected argument '%s'", arg);
            o.model = arg;
            break;
        case OPT_OUTPUT: o.output = arg; break;
        case OPT_CLUSTERS:
            if (!cli_parse_int("cluster", "clusters", arg, INT32_MIN, INT32_MAX, &k))
                return 1;
            break;
        case OPT_INIT: {
            int i = mopt_cluster_init_from_name(arg);
            if (i < 0)
                return cli_usage_error("cluster",
                                       "--init expects linear, random, density or kmeans++, got "
                                       "'%s'",
                                       arg);
            cp.init = (mopt_cluster_init)i;
            break;
        }
        case OPT_PER_CHANNEL: cp.per_channel = true; break;
        case OPT_PRESERVE: cp.preserve_sparsity = true; break;
        case OPT_SEED:
            if (!cli_parse_int("cluster", "seed", arg, 0, INT64_MAX, &v))
                return 1;
            cp.seed = (uint64_t)v;
            break;
        case OPT_LLOYD:
            if (!cli_parse_int("cluster", "lloyd", arg, 0, 100000, &v))
                return 1;
            cp.lloyd_iters = (int)v;
            break;
        case OPT_LAYERS: o.layers = arg; break;
        case OPT_JSON: o.json = true; break;
        case OPT_EVAL: o.eval = arg; break;
        case OPT_EVAL_LIMIT:
            if (!cli_parse_int("cluster", "eval-limit", arg, 1, INT64_MAX, &o.eval_limit))
                return 1;
            break;
        case OPT_THREADS:
            if (!cli_parse_int("cluster", "threads", arg, 1, 1024, &o.threads))
                return 1;
            break;
        case OPT_DATA: data = arg; break;
        case OPT_EPOCHS: training_opt = "epochs"; break;
        case OPT_BATCH: training_opt = "batch-size"; break;
        case OPT_LR: training_opt = "lr"; break;
        case OPT_AGG: training_opt = "aggregation"; break;
        default: return cli_usage_error("cluster", "internal: unhandled option");
        }
    }
    if (!o.model)
        return cli_usage_error("cluster", "missing IN (the model to cluster)");
    if (!o.output)
        return cli_usage_error("cluster", "missing -o OUT");
    if (k < 0)
        return cli_usage_error("cluster", "missing --clusters K");
    cp.clusters = k > 65537 ? 65537 : (int)k;
    mopt_error err;
    mopt_error_clear(&err);
    if (mopt_cluster_params_validate(&cp, &err) != MOPT_OK)
        return cli_usage_error("cluster", "%s", err.msg);
    if (training_opt && !data)
        return cli_usage_error("cluster", "--%s: training options need --data (fine-tuning)",
                               training_opt);
    if (data)
        return cli_usage_error("cluster",
                               "--data: fine-tuning is not available yet (the training engine has "
                               "not landed); run without --data for one-shot clustering");
    char settings[256];
    snprintf(settings, sizeof settings,
             "one-shot clustering: %d clusters%s, %s init (seed %llu), %d Lloyd iterations%s",
             cp.clusters, cp.per_channel ? " per output channel" : " per tensor",
             mopt_cluster_init_name(cp.init), (unsigned long long)cp.seed, cp.lloyd_iters,
             cp.preserve_sparsity ? ", zeros preserved" : "");
    o.settings = settings;
    return cc_run(&o, do_cluster, &cp);
}

const cli_command cli_cmd_cluster = {
    "cluster",
    "weight clustering (k-means weight sharing) with the size report",
    "usage: mopt cluster IN --clusters K [options] -o OUT\n"
    "\n"
    "One-shot clustering of the weights of CONV_2D, DEPTHWISE_CONV_2D and\n"
    "FULLY_CONNECTED layers: centroids are initialised as the reference toolkit\n"
    "(tfmot) does, refined by Lloyd iterations, and every weight is replaced by its\n"
    "nearest centroid, so each weight tensor (or each output channel with\n"
    "--per-channel) holds at most K distinct values. Biases are not clustered. The\n"
    "output is a plain float model (zlib compresses it well). A report follows.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT        the clustered model (required)\n"
    "  -k, --clusters K        centroids per tensor / channel: 2..65536 (3.. with\n"
    "                          --preserve-sparsity); at most the weights per unit\n"
    "  --init NAME             linear | random | density | kmeans++ (default kmeans++)\n"
    "  --per-channel           one codebook per output channel (CONV_2D, depthwise and\n"
    "                          FC output axis; tfmot offers it for Conv2D only)\n"
    "  --preserve-sparsity     keep every zero weight exactly zero (one centroid fixed\n"
    "                          at 0, the others split between negative and positive\n"
    "                          weights)\n"
    "  --seed S                seed of the random and kmeans++ initialisations (9)\n"
    "  --lloyd N               k-means (Lloyd) iterations after the initialisation,\n"
    "                          stopping early when nothing moves (default 5); 0 gives\n"
    "                          tfmot's cluster + strip without training. tfmot never\n"
    "                          iterates k-means: it fine-tunes centroids with data\n"
    "  --layers REGEX          only layers whose weight or output tensor name matches\n"
    "  --eval DATA             top-1 accuracy before and after on DATA's test split\n"
    "  --eval-limit N          evaluate the first N samples only\n"
    "  -t, --threads N         threads for --eval\n"
    "  --json                  print the report as JSON\n"
    "\n"
    "The random and kmeans++ draws come from mopt's PCG32 generator, not TF's\n"
    "Philox: same algorithms, different random streams than tfmot.\n"
    "\n"
    "fine-tuning (not available yet; refused): -d, --data DATA  --epochs N\n"
    "  --batch-size N  --lr X  --aggregation sum|avg\n"
    "\n"
    "exit codes: 0 ok, 1 usage error (K < 2, more clusters than weights, --layers\n"
    "matching nothing), 2 bad input (unreadable model, no clusterable layer).\n",
    cluster_main,
};
