/* optim_internal.h - optimizer state (shared with the checkpoint code). */
#ifndef MOPT_TRAIN_OPTIM_INTERNAL_H
#define MOPT_TRAIN_OPTIM_INTERNAL_H

#include "train/tg_internal.h"

struct mopt_optimizer {
    mopt_tgraph *tg;
    mopt_optim_params p;
    int64_t t;       /* steps done */
    int n_slots;     /* variables with state arrays allocated (prefix of the var list) */
    float **m, **v;  /* per variable: first / second moment (SGD: m = velocity); NULL if none */
};

/* Allocates state for variables added since the last call. */
mopt_status tr_optim_ensure(mopt_optimizer *o, mopt_error *err);
/* State arrays per variable: 1 (SGD) or 2 (Adam, AdamW). */
int tr_optim_slots(const mopt_optimizer *o);

#endif
