/* cmd_train.c - `mopt train`: train a built-in architecture or fine-tune an
 * imported float model on a dataset, export a float .tflite (batch norm
 * folded). A thin shell over mopt_train (include/mopt/train.h). */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mopt/train.h"

static const cli_option opts[] = {
    {"arch", 'a', true},        {"from", 'f', true},      {"data", 'd', true},
    {"epochs", 'e', true},      {"batch", 'b', true},     {"lr", 0, true},
    {"optimizer", 0, true},     {"seed", 's', true},      {"threads", 't', true},
    {"checkpoint", 0, true},    {"resume", 0, false},     {"json", 0, false},
    {"output", 'o', true},      {"width", 0, true},       {"schedule", 0, true},
    {"warmup", 0, true},        {"momentum", 0, true},    {"nesterov", 0, false},
    {"weight-decay", 0, true},  {"clip", 0, true},        {"val-split", 0, true},
    {"augment", 0, true},       {"limit", 'n', true},     {"checkpoint-every", 0, true},
    {"scale", 0, true},         {"min-lr", 0, true},      {"summary", 0, false},
};
enum {
    OPT_ARCH, OPT_FROM, OPT_DATA, OPT_EPOCHS, OPT_BATCH, OPT_LR, OPT_OPTIMIZER, OPT_SEED,
    OPT_THREADS, OPT_CKPT, OPT_RESUME, OPT_JSON, OPT_OUTPUT, OPT_WIDTH, OPT_SCHEDULE, OPT_WARMUP,
    OPT_MOMENTUM, OPT_NESTEROV, OPT_WD, OPT_CLIP, OPT_VAL, OPT_AUGMENT, OPT_LIMIT, OPT_CKPT_EVERY,
    OPT_SCALE, OPT_MIN_LR, OPT_SUMMARY
};

static bool parse_real(const char *opt, const char *s, double min, double max, bool min_open,
                       double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < min || v > max || (min_open && v == min)) {
        cli_usage_error("train", "--%s expects a number in %s%g, %g], got '%s'", opt,
                        min_open ? "(" : "[", min, max, s);
        return false;
    }
    *out = v;
    return true;
}

/* ---- progress ---- */

typedef struct progress {
    bool tty;      /* draw a bar on stderr */
    bool json;     /* collect epochs for the JSON report */
    int n_epochs;
    mopt_epoch_stats *epochs;
    double last_draw;
} progress;

static void fmt_secs(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 359999)
        snprintf(buf, cap, "--:--");
    else if (s >= 3600)
        snprintf(buf, cap, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(buf, cap, "%d:%02d", (int)s / 60, (int)s % 60);
}

static bool on_step(void *user, const mopt_epoch_stats *s) {
    progress *p = user;
    if (!p->tty) return true;
    double now = mopt_now();
    if (s->batch < s->batches && now - p->last_draw < 0.1) return true;
    p->last_draw = now;
    enum { WIDTH = 24 };
    int fill = (int)(WIDTH * s->batch / (s->batches > 0 ? s->batches : 1));
    char bar[WIDTH + 1], eta[32];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = 0;
    double rate = s->seconds > 0 ? (double)s->batch / s->seconds : 0;
    fmt_secs(rate > 0 ? (double)(s->batches - s->batch) / rate : -1, eta, sizeof(eta));
    fprintf(stderr,
            "\r\033[Kepoch %d/%d [%s] %" PRId64 "/%" PRId64 "  loss %.4f  acc %.2f%%  %.0f samples/s"
            "  ETA %s",
            s->epoch, s->epochs, bar, s->batch, s->batches, s->train_loss, 100.0 * s->train_acc,
            s->samples_per_sec, eta);
    fflush(stderr);
    return true;
}

static bool on_epoch(void *user, const mopt_epoch_stats *s) {
    progress *p = user;
    if (p->tty) fputs("\r\033[K", stderr);
    /* One line per epoch: on stderr with --json (stdout carries the JSON). */
    FILE *f = p->json ? stderr : stdout;
    fprintf(f, "epoch %d/%d  loss %.4f  acc %.2f%%", s->epoch, s->epochs, s->train_loss,
            100.0 * s->train_acc);
    if (!isnan(s->val_acc))
        fprintf(f, "  val_loss %.4f  val_acc %.2f%%", s->val_loss, 100.0 * s->val_acc);
    fprintf(f, "  %.1fs  %.0f samples/s\n", s->seconds, s->samples_per_sec);
    fflush(f);
    mopt_epoch_stats *ne = realloc(p->epochs, (size_t)(p->n_epochs + 1) * sizeof(*ne));
    if (ne) {
        p->epochs = ne;
        p->epochs[p->n_epochs++] = *s;
    }
    return true;
}

static int train_main(int argc, char **argv) {
    cli_parser ps;
    cli_parser_init(&ps, "train", argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])));
    const char *arch = NULL, *from = NULL, *data = NULL, *out = NULL, *ckpt = NULL, *arg;
    mopt_train_options to = mopt_train_default_options();
    to.val_fraction = 0.1;
    mopt_arch_options ao = mopt_arch_default_options();
    int64_t limit = 0, iv;
    double dv;
    bool json = false, summary = false, lr_set = false, mom_set = false, nesterov = false;
    double lr = 1e-3, momentum = 0.9, wd = 0.0, clip = 0.0, min_lr = 0.0;
    int optim = MOPT_OPTIM_ADAM;
    int r;
    mopt_scale scale = MOPT_SCALE_01;
    while ((r = cli_next(&ps, &arg)) != CLI_END) {
        switch (r) {
        case CLI_HELP: return cli_print_help(&cli_cmd_train);
        case CLI_BAD: return 1;
        case CLI_POSITIONAL: return cli_usage_error("train", "unexpected argument '%s'", arg);
        case OPT_ARCH: arch = arg; break;
        case OPT_FROM: from = arg; break;
        case OPT_DATA: data = arg; break;
        case OPT_OUTPUT: out = arg; break;
        case OPT_CKPT: ckpt = arg; break;
        case OPT_RESUME: to.resume = true; break;
        case OPT_JSON: json = true; break;
        case OPT_SUMMARY: summary = true; break;
        case OPT_NESTEROV: nesterov = true; break;
        case OPT_EPOCHS:
            if (!cli_parse_int("train", "epochs", arg, 1, 100000, &iv)) return 1;
            to.epochs = (int)iv;
            break;
        case OPT_BATCH:
            if (!cli_parse_int("train", "batch", arg, 1, 65536, &iv)) return 1;
            to.batch_size = (int)iv;
            break;
        case OPT_SEED:
            if (!cli_parse_int("train", "seed", arg, 0, INT64_MAX, &iv)) return 1;
            to.seed = (uint64_t)iv;
            ao.seed = (uint64_t)iv;
            break;
        case OPT_THREADS:
            if (!cli_parse_int("train", "threads", arg, 1, 1024, &iv)) return 1;
            to.num_threads = (int)iv;
            break;
        case OPT_LIMIT:
            if (!cli_parse_int("train", "limit", arg, 1, INT64_MAX, &limit)) return 1;
            break;
        case OPT_WARMUP:
            if (!cli_parse_int("train", "warmup", arg, 0, INT64_MAX, &iv)) return 1;
            to.schedule.warmup_steps = iv;
            break;
        case OPT_CKPT_EVERY:
            if (!cli_parse_int("train", "checkpoint-every", arg, 1, INT64_MAX, &iv)) return 1;
            to.checkpoint_every = iv;
            break;
        case OPT_LR:
            if (!parse_real("lr", arg, 0.0, 1e6, true, &lr)) return 1;
            lr_set = true;
            break;
        case OPT_MIN_LR:
            if (!parse_real("min-lr", arg, 0.0, 1e6, false, &min_lr)) return 1;
            break;
        case OPT_MOMENTUM:
            if (!parse_real("momentum", arg, 0.0, 0.999999, false, &momentum)) return 1;
            mom_set = true;
            break;
        case OPT_WD:
            if (!parse_real("weight-decay", arg, 0.0, 1e3, false, &wd)) return 1;
            break;
        case OPT_CLIP:
            if (!parse_real("clip", arg, 0.0, 1e9, true, &clip)) return 1;
            break;
        case OPT_WIDTH:
            if (!parse_real("width", arg, 0.0, 64.0, true, &dv)) return 1;
            ao.width = (float)dv;
            break;
        case OPT_VAL:
            if (!parse_real("val-split", arg, 0.0, 0.5, false, &to.val_fraction)) return 1;
            break;
        case OPT_OPTIMIZER:
            optim = mopt_optim_kind_from_name(arg);
            if (optim < 0)
                return cli_usage_error("train", "unknown optimizer '%s' (adam, adamw, sgd)", arg);
            break;
        case OPT_SCHEDULE: {
            int k = mopt_lr_kind_from_name(arg);
            if (k < 0)
                return cli_usage_error("train", "unknown schedule '%s' (constant, step, cosine)",
                                       arg);
            to.schedule.kind = (mopt_lr_kind)k;
            break;
        }
        case OPT_AUGMENT: {
            /* comma-separated: crop[=PAD], flip, none */
            char buf[128];
            snprintf(buf, sizeof(buf), "%s", arg);
            to.augment.crop_pad = 0;
            to.augment.hflip = false;
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                if (!strcmp(t, "flip"))
                    to.augment.hflip = true;
                else if (!strcmp(t, "crop"))
                    to.augment.crop_pad = 2;
                else if (!strncmp(t, "crop=", 5)) {
                    if (!cli_parse_int("train", "augment crop", t + 5, 1, 64, &iv)) return 1;
                    to.augment.crop_pad = (int)iv;
                } else if (strcmp(t, "none") != 0)
                    return cli_usage_error("train", "--augment expects crop[=PAD], flip or none, "
                                                    "got '%s'", t);
            }
            break;
        }
        case OPT_SCALE:
            if (!strcmp(arg, "01"))
                scale = MOPT_SCALE_01;
            else if (!strcmp(arg, "pm1"))
                scale = MOPT_SCALE_PM1;
            else if (!strcmp(arg, "none"))
                scale = MOPT_SCALE_NONE;
            else
                return cli_usage_error("train", "--scale expects 01, pm1 or none, got '%s'", arg);
            break;
        default: return cli_usage_error("train", "internal: unhandled option");
        }
    }
    if (!arch == !from) return cli_usage_error("train", "give exactly one of --arch or --from");
    if (!data) return cli_usage_error("train", "missing --data DATA");
    if (!out) return cli_usage_error("train", "missing -o OUT.tflite");
    if (to.resume && !ckpt) return cli_usage_error("train", "--resume needs --checkpoint FILE");
    if (arch && strncmp(arch, "spec:", 5) != 0 && !mopt_arch_spec(arch))
        return cli_usage_error("train", "unknown architecture '%s' (mlp, cnn, dscnn, mobilenet, "
                                        "resnet, or spec:LAYERS)", arch);
    to.optim = mopt_optim_default_params((mopt_optim_kind)optim);
    if (mom_set) to.optim.momentum = (float)momentum;
    to.optim.weight_decay = (float)wd;
    to.optim.clip_norm = (float)clip;
    to.optim.nesterov = nesterov;
    if (nesterov && optim != MOPT_OPTIM_SGD)
        return cli_usage_error("train", "--nesterov applies to --optimizer sgd only");
    if (!lr_set && optim == MOPT_OPTIM_SGD) lr = 0.01;
    to.schedule.base_lr = (float)lr;
    to.schedule.min_lr = (float)min_lr;
    to.checkpoint = ckpt;

    /* Fail before training, not after, when the output cannot be written. */
    {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", out);
        char *slash = strrchr(dir, '/');
        if (!slash)
            snprintf(dir, sizeof(dir), ".");
        else if (slash == dir)
            dir[1] = 0; /* "/name": the root folder */
        else
            *slash = 0;
        if (access(dir, W_OK) != 0)
            return cli_error(MOPT_ERR_IO, "%s: cannot write to folder '%s'", out, dir);
    }
    mopt_error err;
    mopt_error_clear(&err);
    mopt_dataset train, test;
    memset(&train, 0, sizeof(train));
    memset(&test, 0, sizeof(test));
    mopt_tgraph *tg = NULL;
    mopt_graph *g = NULL;
    cli_model m;
    memset(&m, 0, sizeof(m));
    progress prog;
    memset(&prog, 0, sizeof(prog));
    int rc = 0;
    if (mopt_dataset_load(data, MOPT_SPLIT_TRAIN, scale, limit, &train, &err) != MOPT_OK ||
        mopt_dataset_load(data, MOPT_SPLIT_TEST, scale, 0, &test, &err) != MOPT_OK) {
        rc = cli_fail(&err);
        goto done;
    }
    if (!train.labels || !test.labels) {
        rc = cli_error(MOPT_ERR_BAD_INPUT, "%s: training needs labels", data);
        goto done;
    }
    if (arch) {
        ao.in_h = train.h;
        ao.in_w = train.w;
        ao.in_c = train.c;
        ao.num_classes = train.num_classes > test.num_classes ? train.num_classes : test.num_classes;
        if (ao.num_classes < 2) ao.num_classes = 2;
        if (mopt_tgraph_from_arch(arch, &ao, &tg, &err) != MOPT_OK) {
            rc = cli_fail(&err);
            goto done;
        }
    } else {
        if ((rc = cli_model_load(from, false, &m)) != 0) goto done;
        if (mopt_tgraph_from_graph(m.graph, &tg, &err) != MOPT_OK) {
            mopt_error_prefix(&err, "%s", from);
            rc = cli_fail(&err);
            goto done;
        }
    }
    if (summary) {
        char buf[16384];
        mopt_tgraph_summary(tg, buf, sizeof(buf));
        fputs(buf, json ? stderr : stdout);
    }
    prog.tty = isatty(fileno(stderr)) != 0;
    prog.json = json;
    to.on_step = on_step;
    to.on_epoch = on_epoch;
    to.user = &prog;
    mopt_train_result res;
    if (mopt_train(tg, &train, &to, &res, &err) != MOPT_OK) {
        if (prog.tty) fputs("\r\033[K", stderr);
        rc = cli_fail(&err);
        goto done;
    }
    double test_loss = NAN, test_acc = NAN;
    if (mopt_tgraph_evaluate(tg, &test, NULL, 0, 256, &test_loss, &test_acc, &err) != MOPT_OK) {
        rc = cli_fail(&err);
        goto done;
    }
    if (mopt_tgraph_export(tg, NULL, &g, &err) != MOPT_OK ||
        mopt_tflite_write_file(g, out, &err) != MOPT_OK) {
        rc = cli_fail(&err);
        goto done;
    }
    if (json) {
        cli_json j;
        cli_json_init(&j, stdout);
        cli_json_object_begin(&j, NULL);
        if (arch)
            cli_json_string(&j, "arch", arch);
        else
            cli_json_string(&j, "from", from);
        cli_json_string(&j, "data", data);
        cli_json_string(&j, "output", out);
        cli_json_string(&j, "optimizer", mopt_optim_kind_name((mopt_optim_kind)optim));
        cli_json_double(&j, "lr", lr);
        cli_json_int(&j, "batch", to.batch_size);
        cli_json_int(&j, "seed", (int64_t)to.seed);
        cli_json_int(&j, "parameters", mopt_tgraph_param_count(tg));
        cli_json_int(&j, "steps", res.steps);
        cli_json_bool(&j, "resumed", res.resumed);
        cli_json_double(&j, "seconds", res.seconds);
        cli_json_double(&j, "samples_per_sec", res.samples_per_sec);
        cli_json_array_begin(&j, "epochs", false);
        for (int i = 0; i < prog.n_epochs; i++) {
            const mopt_epoch_stats *s = &prog.epochs[i];
            cli_json_object_begin(&j, NULL);
            cli_json_int(&j, "epoch", s->epoch);
            cli_json_double(&j, "loss", s->train_loss);
            cli_json_double(&j, "accuracy", s->train_acc);
            cli_json_double(&j, "val_loss", s->val_loss);
            cli_json_double(&j, "val_accuracy", s->val_acc);
            cli_json_double(&j, "seconds", s->seconds);
            cli_json_double(&j, "samples_per_sec", s->samples_per_sec);
            cli_json_object_end(&j);
        }
        cli_json_array_end(&j);
        cli_json_double(&j, "test_loss", test_loss);
        cli_json_double(&j, "test_accuracy", test_acc);
        cli_json_double(&j, "test_top1_percent", 100.0 * test_acc);
        cli_json_object_end(&j);
        cli_json_finish(&j);
    } else {
        printf("test: loss %.4f  top-1 %.2f%% (%" PRId64 " samples)\n", test_loss, 100.0 * test_acc,
               test.n);
        printf("trained %" PRId64 " steps in %.1fs (%.0f samples/s); wrote %s\n", res.steps,
               res.seconds, res.samples_per_sec, out);
        if (res.resumed)
            printf("resumed from %s at step %" PRId64 "\n", ckpt, res.resumed_step);
    }
done:
    free(prog.epochs);
    mopt_graph_free(g);
    mopt_tgraph_free(tg);
    cli_model_free(&m);
    mopt_dataset_free(&train);
    mopt_dataset_free(&test);
    return rc;
}

const cli_command cli_cmd_train = {
    "train",
    "train a built-in architecture or fine-tune a float model",
    "usage: mopt train (--arch A | --from MODEL) --data DATA -o OUT.tflite\n"
    "                  [--epochs N] [--batch B] [--lr X] [--optimizer adam|adamw|sgd]\n"
    "                  [--seed S] [--threads T] [--checkpoint FILE [--checkpoint-every N]]\n"
    "                  [--resume] [--json] [more options below]\n"
    "\n"
    "Trains on the dataset's training split (minus a validation part), reports\n"
    "validation accuracy after every epoch and test accuracy at the end, and writes\n"
    "a float .tflite with batch 1 and batch norm folded into the convolutions.\n"
    "The same seed and thread count give the same file; the result does not depend\n"
    "on the thread count either.\n"
    "\n"
    "architectures (28x28x1 inputs by default; the data sets the input and classes):\n"
    "  mlp        flatten, fc 512, fc 256 (ReLU, dropout), fc classes\n"
    "  cnn        2 x (conv3x3-BN-ReLU, maxpool) with 32 and 64 channels, fc 128, fc\n"
    "  dscnn      conv3x3 then depthwise-separable blocks (64, 128) with pooling\n"
    "  mobilenet  MobileNetV1-style (ReLU6; --width scales the channels)\n"
    "  resnet     small residual network (6 basic blocks, 16-64 channels)\n"
    "  spec:L     your own layers, e.g. 'spec:conv 16 3 bn relu; maxpool 2; fc classes'\n"
    "\n"
    "options:\n"
    "  -a, --arch A            built-in architecture or spec:LAYERS\n"
    "  -f, --from MODEL        fine-tune a float .tflite (conv/FC weights become trainable)\n"
    "  -d, --data DATA         'fashion-mnist', a folder of IDX files, or IMAGES.npy,LABELS.npy\n"
    "  -o, --output OUT        the trained model (written atomically)\n"
    "  -e, --epochs N          default 5\n"
    "  -b, --batch B           default 64\n"
    "  --lr X                  learning rate (default 0.001; 0.01 for sgd)\n"
    "  --optimizer O           adam (default), adamw, sgd\n"
    "  --momentum M            sgd momentum (default 0.9); --nesterov for Nesterov\n"
    "  --weight-decay WD       L2 for sgd/adam, decoupled for adamw (default 0)\n"
    "  --clip C                clip the global gradient norm to C\n"
    "  --schedule S            cosine (default, to --min-lr over the run), constant, step;\n"
    "                          --warmup N linear warm-up steps\n"
    "  --val-split F           validation fraction of the training data (default 0.1)\n"
    "  --augment A             crop[=PAD], flip, both comma-separated, or none (default)\n"
    "  --width W               channel multiplier of the architecture (default 1)\n"
    "  -s, --seed S            seed of initialisation, shuffling, dropout (default 1)\n"
    "  -t, --threads T         threads (default: all cores)\n"
    "  --checkpoint FILE       save weights, optimizer and position after every epoch\n"
    "  --checkpoint-every N    ... and every N steps\n"
    "  --resume                continue from --checkpoint if it exists (bit-identical)\n"
    "  -n, --limit N           use only the first N training samples\n"
    "  --scale S               pixel scaling: 01 (default), pm1, none\n"
    "  --summary               print the layers and parameter counts first\n"
    "  --json                  JSON report on stdout (epoch lines go to stderr)\n",
    train_main,
};
