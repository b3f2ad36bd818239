/* trainer.c - the training loop, evaluation and single training steps.
 *
 * Reproducibility: everything a step depends on is a function of the seed
 * and the step / epoch / position counters (shuffle order, augmentation,
 * dropout) or is saved in the checkpoint (variables, optimizer state), so a
 * run resumed from a checkpoint ends with the same bits as an uninterrupted
 * one (same seed, same machine; thread count does not matter either).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mopt/util.h"
#include "train/optim_internal.h"

mopt_train_options mopt_train_default_options(void) {
    mopt_train_options o;
    memset(&o, 0, sizeof(o));
    o.epochs = 5;
    o.batch_size = 64;
    o.seed = 1;
    o.num_threads = 0;
    o.optim = mopt_optim_default_params(MOPT_OPTIM_ADAM);
    o.schedule = mopt_lr_default_schedule();
    o.val_fraction = 0.0;
    o.checkpoint_every = 0;
    return o;
}

mopt_status mopt_tgraph_train_step(mopt_tgraph *tg, mopt_optimizer *opt, const float *x,
                                   const int32_t *labels, int batch, float lr, double *loss,
                                   int *correct, mopt_error *err) {
    mopt_status st = mopt_tgraph_forward(tg, x, batch, true, mopt_optimizer_steps(opt), err);
    if (st != MOPT_OK) return st;
    double l = 0.0;
    if ((st = mopt_tgraph_loss_softmax_ce(tg, labels, &l, correct, err)) != MOPT_OK) return st;
    if (loss) *loss = l;
    if (!isfinite(l))
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "loss is %s", isnan(l) ? "NaN" : "infinite");
    if ((st = mopt_tgraph_backward(tg, err)) != MOPT_OK) return st;
    return mopt_optimizer_step(opt, lr, NULL, err);
}

static mopt_status check_data(const mopt_tgraph *tg, const mopt_dataset *d, const char *what,
                              mopt_error *err) {
    if (!d || !d->images || d->n < 1)
        return mopt_error_set(err, MOPT_ERR_ARG, "%s data: no samples", what);
    if (!d->labels) return mopt_error_set(err, MOPT_ERR_BAD_INPUT, "%s data has no labels", what);
    int rank;
    int32_t dims[MOPT_MAX_DIMS];
    int64_t per = mopt_tgraph_input_size(tg, &rank, dims);
    if ((int64_t)d->h * d->w * d->c != per) {
        char shape[64] = "";
        size_t off = 0;
        for (int i = 0; i < rank && off < sizeof(shape); i++)
            off += (size_t)snprintf(shape + off, sizeof(shape) - off, "%s%d", i ? "x" : "",
                                    (int)dims[i]);
        return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                              "%s data samples are %dx%dx%d (%lld values) but the model input is "
                              "%s (%lld values)",
                              what, d->h, d->w, d->c, (long long)d->h * d->w * d->c, shape,
                              (long long)per);
    }
    const int C = mopt_tgraph_num_outputs(tg);
    for (int64_t i = 0; i < d->n; i++)
        if (d->labels[i] < 0 || d->labels[i] >= C)
            return mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                  "%s data: label %d of sample %lld does not fit a model with %d "
                                  "classes",
                                  what, (int)d->labels[i], (long long)i, C);
    return MOPT_OK;
}

mopt_status mopt_tgraph_evaluate(mopt_tgraph *tg, const mopt_dataset *d, const int64_t *indices,
                                 int64_t n, int batch, double *loss, double *acc, mopt_error *err) {
    mopt_status st = check_data(tg, d, "evaluation", err);
    if (st != MOPT_OK) return st;
    if (batch < 1) batch = 256;
    if (!indices) n = d->n;
    if (n < 1) return mopt_error_set(err, MOPT_ERR_ARG, "evaluation: no samples");
    mopt_loader *l = NULL;
    if ((st = mopt_loader_create(d, indices, n, batch, false, 0, NULL, &l, err)) != MOPT_OK)
        return st;
    const int64_t per = (int64_t)d->h * d->w * d->c;
    float *x = malloc((size_t)(batch * per) * sizeof(float));
    int32_t *lab = malloc((size_t)batch * sizeof(int32_t));
    if (!x || !lab) {
        free(x);
        free(lab);
        mopt_loader_free(l);
        return mopt_error_set(err, MOPT_ERR_NOMEM, "evaluation: out of memory");
    }
    mopt_loader_seek(l, 0, 0);
    double tot = 0.0;
    int64_t hits = 0, seen = 0;
    int cnt;
    for (;;) {
        mopt_loader_next(l, x, lab, &cnt);
        if (cnt == 0) break;
        if ((st = mopt_tgraph_forward(tg, x, cnt, false, 0, err)) != MOPT_OK) break;
        double bl;
        int c;
        if ((st = mopt_tgraph_loss_softmax_ce(tg, lab, &bl, &c, err)) != MOPT_OK) break;
        tot += bl * cnt;
        hits += c;
        seen += cnt;
    }
    free(x);
    free(lab);
    mopt_loader_free(l);
    if (st != MOPT_OK) return st;
    if (loss) *loss = tot / (double)seen;
    if (acc) *acc = (double)hits / (double)seen;
    return MOPT_OK;
}

static bool vars_finite(mopt_tgraph *tg) {
    for (int i = 0; i < mopt_tgraph_num_vars(tg); i++) {
        const mopt_tvar *v = mopt_tgraph_var_c(tg, i);
        for (int64_t k = 0; k < v->numel; k++)
            if (!isfinite(v->data[k])) return false;
    }
    return true;
}

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

mopt_status mopt_train(mopt_tgraph *tg, const mopt_dataset *train, const mopt_train_options *o,
                       mopt_train_result *res, mopt_error *err) {
    if (!tg || !o) return mopt_error_set(err, MOPT_ERR_ARG, "train: NULL argument");
    if (o->epochs < 1 || o->batch_size < 1 || o->batch_size > 65536)
        return mopt_error_set(err, MOPT_ERR_ARG,
                              "train: epochs must be >= 1 and batch size in [1, 65536]");
    if (!(o->val_fraction >= 0.0 && o->val_fraction <= 0.5))
        return mopt_error_set(err, MOPT_ERR_ARG, "train: validation fraction %g outside [0, 0.5]",
                              o->val_fraction);
    if (!(o->schedule.base_lr > 0.0f) || !isfinite(o->schedule.base_lr))
        return mopt_error_set(err, MOPT_ERR_ARG, "train: learning rate %g must be positive",
                              (double)o->schedule.base_lr);
    if (o->resume && !o->checkpoint)
        return mopt_error_set(err, MOPT_ERR_ARG, "train: resume needs a checkpoint path");
    mopt_status st = check_data(tg, train, "training", err);
    if (st != MOPT_OK) return st;
    if (o->val && (st = check_data(tg, o->val, "validation", err)) != MOPT_OK) return st;

    mopt_train_result r;
    memset(&r, 0, sizeof(r));
    r.val_loss = r.val_acc = NAN;
    mopt_tgraph_set_num_threads(tg, o->num_threads);
    mopt_tgraph_set_seed(tg, o->seed);

    int64_t *tr_idx = NULL, *va_idx = NULL, n_tr = train->n, n_va = 0;
    const mopt_dataset *val = o->val;
    if (!val && o->val_fraction > 0.0) {
        if ((st = mopt_split_indices(train->n, o->val_fraction, o->seed, &tr_idx, &n_tr, &va_idx,
                                     &n_va, err)) != MOPT_OK)
            return st;
        if (n_va > 0) val = train;
    }
    mopt_loader *ld = NULL;
    mopt_optimizer *opt = NULL;
    float *x = NULL;
    int32_t *lab = NULL;
    st = mopt_loader_create(train, tr_idx, n_tr, o->batch_size, true, o->seed, &o->augment, &ld,
                            err);
    if (st == MOPT_OK) st = mopt_optimizer_create(tg, &o->optim, &opt, err);
    const int64_t per = (int64_t)train->h * train->w * train->c;
    if (st == MOPT_OK) {
        x = malloc((size_t)((int64_t)o->batch_size * per) * sizeof(float));
        lab = malloc((size_t)o->batch_size * sizeof(int32_t));
        if (!x || !lab) st = mopt_error_set(err, MOPT_ERR_NOMEM, "train: out of memory");
    }
    const int64_t spe = st == MOPT_OK ? mopt_loader_batches(ld) : 0;
    mopt_lr_schedule sched = o->schedule;
    if (sched.total_steps <= 0) sched.total_steps = spe * o->epochs;

    mopt_train_state ts;
    memset(&ts, 0, sizeof(ts));
    ts.seed = o->seed;
    ts.batch_size = o->batch_size;
    int64_t last_good = -1; /* step of the last checkpoint written or loaded */
    if (st == MOPT_OK && o->resume && file_exists(o->checkpoint)) {
        st = mopt_checkpoint_load(o->checkpoint, tg, opt, &ts, err);
        if (st == MOPT_OK && (ts.seed != o->seed || ts.batch_size != o->batch_size))
            st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                "%s: checkpoint was made with seed %llu and batch size %lld, this "
                                "run uses seed %llu and batch size %d",
                                o->checkpoint, (unsigned long long)ts.seed,
                                (long long)ts.batch_size, (unsigned long long)o->seed,
                                o->batch_size);
        if (st == MOPT_OK && (ts.batch > spe || ts.step != mopt_optimizer_steps(opt)))
            st = mopt_error_set(err, MOPT_ERR_BAD_INPUT,
                                "%s: checkpoint position (epoch %lld, batch %lld) does not fit "
                                "this data (%lld batches per epoch)",
                                o->checkpoint, (long long)ts.epoch, (long long)ts.batch,
                                (long long)spe);
        if (st == MOPT_OK) {
            r.resumed = true;
            r.resumed_step = ts.step;
            last_good = ts.step;
        }
    }

    const double t_start = mopt_now();
    int64_t samples = 0;
    for (int64_t ep = ts.epoch; st == MOPT_OK && ep < o->epochs && !r.stopped_early; ep++) {
        mopt_loader_seek(ld, ep, ts.batch);
        const double t_ep = mopt_now();
        int64_t ep_samples = 0;
        for (int64_t b = ts.batch; b < spe; b++) {
            int cnt = 0;
            mopt_loader_next(ld, x, lab, &cnt);
            const float lr = mopt_lr_at(&sched, ts.step);
            double loss = 0.0;
            int hits = 0;
            st = mopt_tgraph_train_step(tg, opt, x, lab, cnt, lr, &loss, &hits, err);
            if (st == MOPT_OK && !vars_finite(tg))
                st = mopt_error_set(err, MOPT_ERR_BAD_INPUT, "weights are no longer finite");
            if (st != MOPT_OK) {
                char keep[200] = "", what[MOPT_ERROR_MSG_MAX];
                snprintf(what, sizeof(what), "%s", err ? err->msg : "");
                if (o->checkpoint && last_good >= 0)
                    snprintf(keep, sizeof(keep), "; %s keeps the last good state (step %lld)",
                             o->checkpoint, (long long)last_good);
                if (st == MOPT_ERR_BAD_INPUT)
                    mopt_error_set(err, st,
                                   "training diverged at epoch %lld, step %lld: %s (learning rate "
                                   "%g; try a smaller one)%s",
                                   (long long)ep + 1, (long long)ts.step + 1, what, (double)lr,
                                   keep);
                else
                    mopt_error_prefix(err, "training epoch %lld, step %lld", (long long)ep + 1,
                                      (long long)ts.step + 1);
                break;
            }
            ts.step++;
            ts.batch = b + 1;
            ts.epoch = ep;
            ts.epoch_loss_sum += loss * cnt;
            ts.epoch_correct += hits;
            ts.epoch_seen += cnt;
            ep_samples += cnt;
            samples += cnt;
            if (o->on_step) {
                mopt_epoch_stats s;
                memset(&s, 0, sizeof(s));
                s.epoch = (int)ep + 1;
                s.epochs = o->epochs;
                s.step = ts.step;
                s.batch = b + 1;
                s.batches = spe;
                s.train_loss = ts.epoch_loss_sum / (double)ts.epoch_seen;
                s.train_acc = (double)ts.epoch_correct / (double)ts.epoch_seen;
                s.val_loss = s.val_acc = NAN;
                s.lr = lr;
                s.seconds = mopt_now() - t_ep;
                s.samples_per_sec = s.seconds > 0 ? (double)ep_samples / s.seconds : 0.0;
                if (!o->on_step(o->user, &s)) r.stopped_early = true;
            }
            if (o->checkpoint && o->checkpoint_every > 0 && ts.step % o->checkpoint_every == 0 &&
                b + 1 < spe) {
                if ((st = mopt_checkpoint_save(o->checkpoint, tg, opt, &ts, err)) != MOPT_OK)
                    break;
                last_good = ts.step;
            }
            if (r.stopped_early) break;
        }
        if (st != MOPT_OK) break;
        const double ep_secs = mopt_now() - t_ep;
        mopt_epoch_stats s;
        memset(&s, 0, sizeof(s));
        s.epoch = (int)ep + 1;
        s.epochs = o->epochs;
        s.step = ts.step;
        s.batch = s.batches = spe;
        s.train_loss = ts.epoch_seen ? ts.epoch_loss_sum / (double)ts.epoch_seen : NAN;
        s.train_acc = ts.epoch_seen ? (double)ts.epoch_correct / (double)ts.epoch_seen : NAN;
        s.val_loss = s.val_acc = NAN;
        s.lr = mopt_lr_at(&sched, ts.step > 0 ? ts.step - 1 : 0);
        s.seconds = ep_secs;
        s.samples_per_sec = ep_secs > 0 ? (double)ep_samples / ep_secs : 0.0;
        if (val) {
            st = mopt_tgraph_evaluate(tg, val, va_idx, va_idx ? n_va : val->n, 256, &s.val_loss,
                                      &s.val_acc, err);
            if (st != MOPT_OK) break;
        }
        r.epochs_done = (int)ep + 1;
        r.train_loss = s.train_loss;
        r.train_acc = s.train_acc;
        r.val_loss = s.val_loss;
        r.val_acc = s.val_acc;
        if (r.stopped_early && ts.batch < spe) break; /* stopped inside the epoch */
        /* the epoch is complete: the next one starts at batch 0 */
        ts.epoch = ep + 1;
        ts.batch = 0;
        ts.epoch_loss_sum = 0.0;
        ts.epoch_correct = ts.epoch_seen = 0;
        if (o->checkpoint) {
            if ((st = mopt_checkpoint_save(o->checkpoint, tg, opt, &ts, err)) != MOPT_OK) break;
            last_good = ts.step;
        }
        if (o->on_epoch && !o->on_epoch(o->user, &s)) r.stopped_early = true;
    }
    r.steps = ts.step;
    r.seconds = mopt_now() - t_start;
    r.samples_per_sec = r.seconds > 0 ? (double)samples / r.seconds : 0.0;
    if (res) *res = r;
    free(x);
    free(lab);
    free(tr_idx);
    free(va_idx);
    mopt_loader_free(ld);
    mopt_optimizer_free(opt);
    return st;
}
