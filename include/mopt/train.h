/* mopt/train.h - the training engine: training graphs, forward/backward
 * passes, weight and activation transforms (the hooks pruning, clustering
 * and quantization-aware training build on), optimizers, learning-rate
 * schedules, the data pipeline, the trainer loop, export and checkpoints.
 *
 * Overview
 * --------
 *   mopt_tgraph   a training graph: nodes (ops) in execution order, the
 *                 values they produce (activations with a variable batch
 *                 dimension) and variables (mopt_tvar: weights, biases,
 *                 batch-norm parameters and statistics, and any variable a
 *                 transform registers). Built from a float mopt_graph
 *                 (mopt_tgraph_from_graph) or from an architecture spec
 *                 (mopt_tgraph_from_arch / mopt_tgraph_from_spec).
 *   forward       mopt_tgraph_forward(training) keeps every activation so
 *                 that mopt_tgraph_backward can run after a loss seeded the
 *                 output gradient (mopt_tgraph_loss_softmax_ce, or
 *                 mopt_tgraph_set_output_grad for any other loss).
 *   optimizer     mopt_optimizer updates every trainable variable from its
 *                 gradient (SGD with momentum / Nesterov, Adam, AdamW).
 *   trainer       mopt_train runs epochs over a mopt_dataset with seeded
 *                 shuffling, augmentation, validation, callbacks and
 *                 checkpoints.
 *   export        mopt_tgraph_export writes a batch-1 float mopt_graph with
 *                 batch norm folded into the preceding conv / FC, ready for
 *                 mopt_tflite_write_file.
 *
 * Layouts are TFLite's everywhere, so exported tensors and trainable
 * variables have the same shapes: activations NHWC; CONV_2D weights
 * [OC,KH,KW,IC]; DEPTHWISE_CONV_2D weights [1,KH,KW,IC*M]; FULLY_CONNECTED
 * weights [units, depth]; biases [OC]; batch-norm variables [C].
 *
 * Determinism: every reduction (GEMM, bias and batch-norm sums, the loss) is
 * evaluated in a fixed order and work is split over outputs only, so for a
 * given machine (instruction set) results are bit-identical across runs AND
 * across thread counts. Randomness comes from explicit seeds only: dropout
 * and augmentation draw from counter-based hashes of (seed, step, position),
 * shuffling from a PCG32 stream seeded by (seed, epoch).
 *
 * Threading: a tgraph is not thread-safe; one tgraph per thread. Inside a
 * call the engine runs on the tgraph's own pool of worker threads
 * (mopt_tgraph_set_num_threads), created on first use and joined by
 * mopt_tgraph_free. The calling thread always works too and never waits for
 * a worker that has not started, so a busy machine degrades to one-thread
 * speed rather than stalling.
 *
 * Errors: as everywhere in mopt, functions return a mopt_status and fill the
 * optional mopt_error with one line naming the node / variable / file and
 * the rule broken. Nothing here prints or exits.
 */
#ifndef MOPT_TRAIN_H
#define MOPT_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mopt/data.h"
#include "mopt/graph.h"
#include "mopt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Random numbers: PCG32 (O'Neill's pcg32_random_r, XSH-RR 64/32) with
 * explicit state. No hidden global state; copy the struct to fork a stream.
 * ====================================================================== */

typedef struct mopt_rng {
    uint64_t state;
    uint64_t inc; /* stream selector, always odd */
} mopt_rng;

/* Seeds a generator; different `stream` values give independent sequences. */
void mopt_rng_seed(mopt_rng *r, uint64_t seed, uint64_t stream);
uint32_t mopt_rng_u32(mopt_rng *r);
/* Uniform integer in [0, bound) without modulo bias; bound >= 1. */
uint32_t mopt_rng_below(mopt_rng *r, uint32_t bound);
/* Uniform float in [0, 1) with 24 random bits. */
float mopt_rng_uniform(mopt_rng *r);
/* Standard normal (Box-Muller, consumes two u32 per call). */
float mopt_rng_normal(mopt_rng *r);
/* A stateless 64-bit mix of (key, counter) (splitmix64 finaliser), used for
 * counter-based randomness that is independent of evaluation order. */
uint64_t mopt_hash64(uint64_t key, uint64_t counter);

/* ======================================================================
 * Training graph
 * ====================================================================== */

typedef struct mopt_tgraph mopt_tgraph;

/* Node kinds. Values below 1000 are mopt_op_type codes (the TFLite
 * BuiltinOperator of the same op); the others exist only in training. */
enum {
    MOPT_TNODE_BATCH_NORM = 1000, /* per-channel (last axis) batch norm */
    MOPT_TNODE_DROPOUT = 1001     /* inverted dropout; identity in inference */
};

/* What a variable is for. */
typedef enum mopt_tvar_role {
    MOPT_TVAR_WEIGHT = 0,  /* CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weights */
    MOPT_TVAR_BIAS = 1,
    MOPT_TVAR_BN_GAMMA = 2,
    MOPT_TVAR_BN_BETA = 3,
    MOPT_TVAR_BN_MEAN = 4, /* running mean (state, not trainable) */
    MOPT_TVAR_BN_VAR = 5,  /* running variance (state, not trainable) */
    MOPT_TVAR_EXTRA = 6    /* registered by a transform (centroids, masks, ranges) */
} mopt_tvar_role;

/* Variable flags. */
#define MOPT_TVAR_TRAINABLE 1u /* has a gradient; the optimizer updates it */
#define MOPT_TVAR_DECAY 2u     /* weight decay applies (default: weights only) */

/* A variable. Owned by the tgraph; the pointer and `data` stay valid until
 * mopt_tgraph_free. Every variable is float32 and is saved in checkpoints
 * (trainable or not). `flags` may be edited (e.g. to freeze a layer) before
 * the next optimizer step; the rest is read-only except the contents of
 * `data` (and of `grad` inside a transform's backward). */
typedef struct mopt_tvar {
    char *name;          /* unique in the graph, e.g. "conv2/weights" */
    mopt_tvar_role role;
    unsigned flags;      /* MOPT_TVAR_* */
    int node;            /* owning node, or -1 */
    int rank;
    int32_t dims[MOPT_MAX_DIMS];
    int64_t numel;
    float *data;         /* numel floats, 64-byte aligned: the LATENT values */
    float *grad;         /* numel floats for weights, biases, BN gamma/beta and
                            variables added with MOPT_TVAR_TRAINABLE (also while
                            frozen); NULL for state (BN statistics, masks) */
} mopt_tvar;

/* Read-only description of a node (for transforms and techniques). */
typedef struct mopt_tnode_info {
    int kind;             /* mopt_op_type code or MOPT_TNODE_* */
    const char *name;     /* unique, e.g. "conv2", "bn2", or the imported output tensor name */
    int n_inputs;         /* inputs that are node outputs or the graph input */
    const int *inputs;    /* producer node indices; -1 = the graph input */
    int n_consumers;      /* nodes reading this node's output */
    bool is_output;       /* produces the graph output (the logits) */
    mopt_activation act;  /* fused activation (CONV/DW/FC/ADD/SUB/MUL/POOL) */
    int weights, bias;    /* variable indices or -1 (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED) */
    int bn_gamma, bn_beta, bn_mean, bn_var; /* variable indices or -1 (BATCH_NORM) */
    float bn_eps, bn_momentum;
    float dropout_rate;
    int rank;             /* output shape; dims[0] is the batch (1 here) */
    int32_t dims[MOPT_MAX_DIMS];
} mopt_tnode_info;

void mopt_tgraph_free(mopt_tgraph *tg); /* NULL is a no-op */

/* ---- construction from an architecture ----
 *
 * Architectures are data: a spec string of ';'-separated layers applied in
 * order to the input, e.g. the built-in "cnn" is
 *   "conv 32 3 bn relu; maxpool 2; conv 64 3 bn relu; maxpool 2; flatten;
 *    fc 128 relu; dropout 0.3; fc classes"
 * Layer words (C = channels, K = kernel size; options in any order):
 *   conv C K [s S] [d D] [valid] [bn] [relu|relu6|tanh|sigmoid|hswish]
 *   dw K [s S] [d D] [m M] [valid] [bn] [act]     depthwise conv
 *   sep C [K] [s S] [act]  depthwise-separable block: dw K s S bn act; conv C 1 bn act
 *                     (K default 3, act default relu)
 *   res C [s S]       basic residual block (conv-bn-relu, conv-bn, 1x1 projection
 *                     shortcut when the shape changes, add, relu)
 *   fc N [act] [bn]   fully connected (flattens first if needed); "fc classes" =
 *                     the number of classes
 *   bn | relu | relu6 | tanh | sigmoid | hswish
 *   maxpool K [s S] [same] | avgpool K [s S] [same]   (default stride K, VALID)
 *   gap               global average pooling (MEAN over H and W)
 *   flatten           reshape to [batch, features]
 *   dropout P         0 <= P < 1
 *   mark NAME | add NAME | concat NAME   named skip connections
 * Channel counts of conv/dw/sep/res (not fc) are scaled by the width
 * multiplier (rounded, at least 1). With bn, a conv/dw/fc has no bias and a
 * ReLU/ReLU6/TANH is fused into the batch norm node; without, into the op.
 * Nodes are named by kind and count ("conv1", "bn2", "fc1"); variables
 * "<node>/weights", "/bias", "/gamma", "/beta", "/moving_mean",
 * "/moving_variance". The last layer's output is the logits. */

typedef struct mopt_arch_options {
    int in_h, in_w, in_c;  /* input sample shape (default 28, 28, 1) */
    int num_classes;       /* default 10 */
    float width;           /* width multiplier (default 1) */
    float bn_momentum;     /* running = m*running + (1-m)*batch (Keras convention; default 0.99) */
    float bn_eps;          /* default 1e-3 (Keras) */
    uint64_t seed;         /* weight initialisation seed (default 1) */
} mopt_arch_options;

mopt_arch_options mopt_arch_default_options(void);

/* Names of the built-in architectures ("mlp", "cnn", "dscnn", "mobilenet",
 * "resnet"), NULL-terminated; and the spec of one (NULL if unknown). */
const char *const *mopt_arch_names(void);
const char *mopt_arch_spec(const char *name);

/* Builds a tgraph from a built-in architecture name, or from a spec string
 * when `name` starts with "spec:". Weights are Glorot-uniform (Keras'
 * default) from opts->seed; biases and BN beta 0, gamma 1, running mean 0,
 * running variance 1. opts may be NULL (defaults). */
mopt_status mopt_tgraph_from_arch(const char *name, const mopt_arch_options *opts,
                                  mopt_tgraph **out, mopt_error *err);
mopt_status mopt_tgraph_from_spec(const char *spec, const mopt_arch_options *opts,
                                  mopt_tgraph **out, mopt_error *err);

/* ---- construction from an imported float graph ----
 * The graph must have one float32 input whose dim 0 is the batch (1 in the
 * file) and one float32 output. CONV_2D, DEPTHWISE_CONV_2D and
 * FULLY_CONNECTED weights and biases become trainable variables named after
 * their tensors; fused activations are kept; other constants stay constant
 * (DEQUANTIZE of a constant is folded). A trailing SOFTMAX is removed (the
 * loss fuses it) and re-added on export. Ops must not mix the batch axis with
 * others (RESHAPE keeps dim 0, CONCATENATION / MEAN / PAD / TRANSPOSE leave
 * axis 0 alone); QUANTIZE and integer tensors are refused. The graph is not
 * kept. */
mopt_status mopt_tgraph_from_graph(const mopt_graph *g, mopt_tgraph **out, mopt_error *err);

/* ---- queries ---- */

int mopt_tgraph_num_nodes(const mopt_tgraph *tg);
mopt_status mopt_tgraph_node_info(const mopt_tgraph *tg, int node, mopt_tnode_info *out,
                                  mopt_error *err);
int mopt_tgraph_num_vars(const mopt_tgraph *tg);
mopt_tvar *mopt_tgraph_var(mopt_tgraph *tg, int i);          /* NULL if out of range */
const mopt_tvar *mopt_tgraph_var_c(const mopt_tgraph *tg, int i);
int mopt_tgraph_find_var(const mopt_tgraph *tg, const char *name); /* -1 if absent */
/* The weights the ops last used (after the transform chain), numel floats;
 * equals data when the variable has no transform. Valid until the next
 * forward. */
const float *mopt_tgraph_var_effective(const mopt_tgraph *tg, int i);
/* Per-sample input shape (without batch) and element count; output classes. */
int64_t mopt_tgraph_input_size(const mopt_tgraph *tg, int *rank, int32_t *dims);
int mopt_tgraph_num_outputs(const mopt_tgraph *tg); /* logits per sample */
int64_t mopt_tgraph_param_count(const mopt_tgraph *tg); /* trainable elements */
/* A multi-line human-readable summary (one line per node) into buf. */
void mopt_tgraph_summary(const mopt_tgraph *tg, char *buf, size_t cap);

/* ---- execution ---- */

/* Threads for the next calls (<= 0: all cores). Results do not depend on it. */
void mopt_tgraph_set_num_threads(mopt_tgraph *tg, int n);
/* Seed of the counter-based noise (dropout). */
void mopt_tgraph_set_seed(mopt_tgraph *tg, uint64_t seed);
/* Ask backward to also compute the gradient of the input (off by default). */
void mopt_tgraph_set_input_grad(mopt_tgraph *tg, bool on);
/* Frozen batch norm: training forwards normalise with the moving statistics
 * and do not update them (fine-tuning, QAT's freeze_bn_delay); gamma and
 * beta still train unless their TRAINABLE flag is cleared. */
void mopt_tgraph_set_bn_frozen(mopt_tgraph *tg, bool frozen);

/* Runs the graph on `batch` samples x (batch * input_size floats, NHWC).
 * training: batch norm uses (and updates the running statistics with) the
 * batch statistics, dropout is active with noise keyed by (seed, step), the
 * weight transforms run with training = true, and everything backward needs
 * is kept. `step` is the optimizer step (used as noise key and passed to the
 * transforms). Buffers grow to the largest batch seen. */
mopt_status mopt_tgraph_forward(mopt_tgraph *tg, const float *x, int batch, bool training,
                                int64_t step, mopt_error *err);
/* Logits of the last forward: [batch, num_outputs]. */
const float *mopt_tgraph_output(const mopt_tgraph *tg);
/* Gradient of the last forward's input (set_input_grad on, after backward). */
const float *mopt_tgraph_input_grad(const mopt_tgraph *tg);

/* Fused, numerically stable softmax cross-entropy on the logits of the last
 * forward (log-sum-exp with the max subtracted), mean over the batch.
 * labels: batch values in [0, num_outputs). Seeds the output gradient
 * (softmax - onehot) / batch for backward. loss / correct (top-1 hits) may
 * be NULL. */
mopt_status mopt_tgraph_loss_softmax_ce(mopt_tgraph *tg, const int32_t *labels, double *loss,
                                        int *correct, mopt_error *err);
/* Seeds the output gradient directly (batch * num_outputs floats), for other
 * losses and for gradient checks. */
mopt_status mopt_tgraph_set_output_grad(mopt_tgraph *tg, const float *dy, mopt_error *err);
/* Back-propagates the seeded output gradient of the last training forward:
 * zeroes, then fills the grad of every trainable variable (through the
 * weight-transform chains down to the latent weights and the transforms'
 * own variables). */
mopt_status mopt_tgraph_backward(mopt_tgraph *tg, mopt_error *err);

/* ======================================================================
 * Transforms: the hooks pruning, clustering and QAT plug into.
 *
 * Weight transforms: each weight variable may carry a chain of transforms.
 * Before every forward, the chain turns the latent weights into the
 * effective weights the op uses:
 *     eff = T_n( ... T_2( T_1(latent) ) )
 * (pruning: w*mask; clustering: gather(centroids, argmin assignment); QAT:
 * fake-quant). In backward, the op's gradient w.r.t. eff flows back through
 * each transform's backward (its straight-through rule) down to the latent
 * weights' grad; transforms also ADD the gradients of the variables they own
 * (e.g. centroids) into those variables' grad. Transforms register their own
 * variables with mopt_tgraph_add_var so that the optimizer trains them and
 * checkpoints save them; non-trainable variables hold transform state
 * (masks, assignments, EMA ranges) and are checkpointed too.
 *
 * Activation transforms: at most one per node, applied to the node's output
 * (QAT activation fake-quant with moving-average ranges).
 * ====================================================================== */

typedef struct mopt_wt_args {
    mopt_tgraph *tg;
    int var;               /* index of the weight variable */
    const mopt_tvar *v;    /* its name, shape and node */
    int64_t n;             /* elements */
    float *latent;         /* latent values (v->data); forward MAY edit them in place,
                              e.g. pruning re-zeroes masked weights as tfmot does */
    const float *in;       /* this stage's input: latent for the first, else the
                              previous stage's output (valid in forward and backward) */
    float *out;            /* forward: write all n effective values. Backward: the
                              values written by the last forward (read-only) */
    const float *dout;     /* backward: gradient w.r.t. out (NULL in forward) */
    float *din;            /* backward: WRITE the gradient w.r.t. in, all n values */
    bool training;         /* false for evaluation and export: do not update state */
    int64_t step;          /* optimizer steps done so far */
    int num_threads;
} mopt_wt_args;

typedef struct mopt_weight_transform {
    const char *name;      /* for messages and summaries, e.g. "prune" */
    void *state;           /* owned by the transform; passed back to each callback */
    mopt_status (*forward)(void *state, const mopt_wt_args *a, mopt_error *err);
    /* NULL means straight-through identity: din = dout. */
    mopt_status (*backward)(void *state, const mopt_wt_args *a, mopt_error *err);
    /* Frees state when the tgraph is freed or the chain cleared (may be NULL). */
    void (*destroy)(void *state);
} mopt_weight_transform;

typedef struct mopt_at_args {
    mopt_tgraph *tg;
    int node;
    int rank;              /* output shape, dims[0] = batch */
    const int32_t *dims;
    int64_t n;             /* elements (batch included) */
    const float *in;       /* the node's raw output */
    float *out;            /* forward: write n values; backward: last forward's output */
    const float *dout;     /* backward: gradient w.r.t. out */
    float *din;            /* backward: WRITE the gradient w.r.t. in */
    bool training;
    int64_t step;
    int num_threads;
} mopt_at_args;

typedef struct mopt_act_transform {
    const char *name;
    void *state;
    mopt_status (*forward)(void *state, const mopt_at_args *a, mopt_error *err);
    mopt_status (*backward)(void *state, const mopt_at_args *a, mopt_error *err); /* NULL: identity */
    void (*destroy)(void *state);
} mopt_act_transform;

/* Appends a transform to weight variable `var`'s chain (role WEIGHT or
 * BIAS). The tgraph takes ownership of t->state (destroy is called even
 * when this fails). */
mopt_status mopt_tgraph_push_weight_transform(mopt_tgraph *tg, int var,
                                              const mopt_weight_transform *t, mopt_error *err);
/* Removes var's transforms (destroying their state); the effective weights
 * become the latent ones again. */
void mopt_tgraph_clear_weight_transforms(mopt_tgraph *tg, int var);
int mopt_tgraph_num_weight_transforms(const mopt_tgraph *tg, int var);
/* Sets (replaces) node's activation transform; t == NULL removes it. */
mopt_status mopt_tgraph_set_act_transform(mopt_tgraph *tg, int node,
                                          const mopt_act_transform *t, mopt_error *err);

/* Registers a variable (zero-filled) owned by a transform. flags: MOPT_TVAR_*.
 * Names must be unique. Returns its index in *out_index. Adding variables
 * after an optimizer was created is fine (it sizes its state lazily). */
mopt_status mopt_tgraph_add_var(mopt_tgraph *tg, const char *name, int rank, const int32_t *dims,
                                unsigned flags, int *out_index, mopt_error *err);

/* The identity transform (effective = latent, straight-through backward). */
mopt_weight_transform mopt_identity_transform(void);

/* Writes the effective weights (through the chains, training = false) into
 * the latent values and clears the chains: "strip" for techniques whose
 * export is the effective weights. */
mopt_status mopt_tgraph_bake_transforms(mopt_tgraph *tg, mopt_error *err);

/* ======================================================================
 * Optimizers and learning-rate schedules
 * ====================================================================== */

typedef enum mopt_optim_kind {
    MOPT_OPTIM_SGD = 0,   /* v = mu*v + g; w -= lr*v  (Nesterov: w -= lr*(g + mu*v)) */
    MOPT_OPTIM_ADAM = 1,  /* L2 weight decay added to the gradient */
    MOPT_OPTIM_ADAMW = 2  /* decoupled weight decay: w -= lr*wd*w */
} mopt_optim_kind;

typedef struct mopt_optim_params {
    mopt_optim_kind kind;
    float momentum;       /* SGD; default 0.9 */
    bool nesterov;        /* SGD; default false */
    float beta1, beta2;   /* Adam(W); defaults 0.9, 0.999 */
    float eps;            /* Adam(W); default 1e-7 (Keras) */
    float weight_decay;   /* default 0; applied to MOPT_TVAR_DECAY variables */
    float clip_norm;      /* > 0: scale gradients so their global L2 norm <= clip_norm */
} mopt_optim_params;

mopt_optim_params mopt_optim_default_params(mopt_optim_kind kind);
/* "sgd", "adam", "adamw" -> kind; -1 if unknown. */
int mopt_optim_kind_from_name(const char *name);
const char *mopt_optim_kind_name(mopt_optim_kind kind);

typedef struct mopt_optimizer mopt_optimizer;

/* The optimizer keeps a pointer to tg (which must outlive it). */
mopt_status mopt_optimizer_create(mopt_tgraph *tg, const mopt_optim_params *p,
                                  mopt_optimizer **out, mopt_error *err);
void mopt_optimizer_free(mopt_optimizer *o); /* NULL is a no-op */
/* One update of every trainable variable with learning rate lr from the
 * gradients of the last backward. Adam's bias correction uses the step count
 * kept in the optimizer. *grad_norm (may be NULL) gets the global gradient
 * norm before clipping. A non-finite gradient norm is refused (nothing is
 * updated) with MOPT_ERR_BAD_INPUT. */
mopt_status mopt_optimizer_step(mopt_optimizer *o, float lr, double *grad_norm, mopt_error *err);
int64_t mopt_optimizer_steps(const mopt_optimizer *o);

typedef enum mopt_lr_kind {
    MOPT_LR_CONSTANT = 0,
    MOPT_LR_STEP = 1,   /* base * gamma^floor((step - warmup) / step_size) */
    MOPT_LR_COSINE = 2  /* min + (base - min) * (1 + cos(pi * t)) / 2, t = (step - warmup)/(total - warmup) */
} mopt_lr_kind;

typedef struct mopt_lr_schedule {
    mopt_lr_kind kind;
    float base_lr;        /* default 1e-3 */
    int64_t warmup_steps; /* linear warm-up from base/warmup to base over these steps */
    int64_t step_size;    /* STEP; default 1000 */
    float gamma;          /* STEP; default 0.1 */
    int64_t total_steps;  /* COSINE; 0 = set by mopt_train to epochs * steps per epoch */
    float min_lr;         /* COSINE floor; default 0 */
} mopt_lr_schedule;

/* Cosine from base_lr 1e-3 to 0 over total_steps (0: set by mopt_train). */
mopt_lr_schedule mopt_lr_default_schedule(void);
/* Learning rate for optimizer step `step` (0-based). During warm-up
 * (step < warmup_steps) it is base * (step + 1) / warmup_steps. */
float mopt_lr_at(const mopt_lr_schedule *s, int64_t step);
/* "constant", "step", "cosine" -> kind; -1 if unknown. */
int mopt_lr_kind_from_name(const char *name);

/* ======================================================================
 * Data pipeline
 * ====================================================================== */

typedef struct mopt_augment {
    int crop_pad;   /* > 0: pad by this many zero pixels, take a random crop of the original size */
    bool hflip;     /* random horizontal flip with probability 1/2 */
} mopt_augment;

/* Batches over a subset of a dataset (which must outlive the loader). Each
 * epoch's order is a Fisher-Yates shuffle from PCG32 seeded by (seed, epoch),
 * so an epoch can be replayed from any batch (resume). Augmentation draws
 * from a hash of (seed, epoch, position). */
typedef struct mopt_loader mopt_loader;

/* indices: the samples to use (copied; NULL = all of d). shuffle false keeps
 * the given order. aug may be NULL. */
mopt_status mopt_loader_create(const mopt_dataset *d, const int64_t *indices, int64_t n,
                               int batch, bool shuffle, uint64_t seed, const mopt_augment *aug,
                               mopt_loader **out, mopt_error *err);
void mopt_loader_free(mopt_loader *l);
int64_t mopt_loader_batches(const mopt_loader *l);   /* per epoch (the last may be short) */
int64_t mopt_loader_size(const mopt_loader *l);
/* Positions the loader at batch `batch_index` of epoch `epoch` (0-based). */
void mopt_loader_seek(mopt_loader *l, int64_t epoch, int64_t batch_index);
/* Fills x (batch * h*w*c floats) and labels with the next batch; *count gets
 * the number of samples (0 at the end of the epoch). */
void mopt_loader_next(mopt_loader *l, float *x, int32_t *labels, int *count);

/* Splits [0, d->n) into a training and a validation index set: a seeded
 * permutation, the last round(n * val_fraction) samples for validation.
 * Arrays are malloc'ed (free()); n_val may be 0 (then *val is NULL). */
mopt_status mopt_split_indices(int64_t n, double val_fraction, uint64_t seed, int64_t **train,
                               int64_t *n_train, int64_t **val, int64_t *n_val, mopt_error *err);

/* ======================================================================
 * Trainer
 * ====================================================================== */

typedef struct mopt_epoch_stats {
    int epoch;              /* 1-based */
    int epochs;
    int64_t step;           /* optimizer steps done */
    int64_t batch, batches; /* progress inside the epoch (for per-step callbacks) */
    double train_loss, train_acc; /* running mean over the epoch so far */
    double val_loss, val_acc;     /* NAN when there is no validation set (epoch end only) */
    double lr;
    double seconds;         /* since the epoch started */
    double samples_per_sec;
} mopt_epoch_stats;

/* Return false to stop training early (the result records it). */
typedef bool (*mopt_train_callback)(void *user, const mopt_epoch_stats *s);

typedef struct mopt_train_options {
    int epochs;                 /* default 5 */
    int batch_size;             /* default 64 */
    uint64_t seed;              /* default 1 */
    int num_threads;            /* <= 0: all cores */
    mopt_optim_params optim;    /* default Adam */
    mopt_lr_schedule schedule;  /* default cosine from 1e-3 to 0 over the run */
    double val_fraction;        /* held-out part of the training data, [0, 0.5]; default 0 */
    const mopt_dataset *val;    /* explicit validation set; overrides val_fraction */
    mopt_augment augment;       /* default none */
    const char *checkpoint;     /* path or NULL */
    int64_t checkpoint_every;   /* steps; 0 = at the end of each epoch */
    bool resume;                /* continue from `checkpoint` if it exists */
    mopt_train_callback on_epoch; /* after each epoch (with validation); may be NULL */
    mopt_train_callback on_step;  /* after each optimizer step; may be NULL */
    void *user;
} mopt_train_options;

mopt_train_options mopt_train_default_options(void);

typedef struct mopt_train_result {
    int epochs_done;
    int64_t steps;
    double train_loss, train_acc;  /* last epoch */
    double val_loss, val_acc;      /* last epoch; NAN without validation */
    double seconds;                /* training time of this call */
    double samples_per_sec;
    bool resumed;                  /* continued from a checkpoint */
    int64_t resumed_step;
    bool stopped_early;            /* a callback returned false */
} mopt_train_result;

/* Trains tg on `train` (sample shape must match the tgraph input, labels in
 * [0, num_outputs)). On a non-finite loss it stops with MOPT_ERR_BAD_INPUT
 * naming the epoch and step; the checkpoint file (if any) keeps the last
 * good state. res may be NULL. */
mopt_status mopt_train(mopt_tgraph *tg, const mopt_dataset *train, const mopt_train_options *o,
                       mopt_train_result *res, mopt_error *err);

/* Inference-mode loss and top-1 accuracy over a dataset (or over `indices`
 * of it when not NULL). loss / acc may be NULL. */
mopt_status mopt_tgraph_evaluate(mopt_tgraph *tg, const mopt_dataset *d, const int64_t *indices,
                                 int64_t n, int batch, double *loss, double *acc, mopt_error *err);

/* One optimizer step on a batch: forward (training), softmax CE, backward,
 * optimizer step with learning rate lr. loss / correct may be NULL. */
mopt_status mopt_tgraph_train_step(mopt_tgraph *tg, mopt_optimizer *opt, const float *x,
                                   const int32_t *labels, int batch, float lr, double *loss,
                                   int *correct, mopt_error *err);

/* ======================================================================
 * Export
 * ====================================================================== */

typedef struct mopt_export_options {
    bool fold_bn;           /* fold batch norm into the preceding conv/FC (default true);
                               other batch norms become MUL + ADD */
    bool apply_transforms;  /* export the effective weights (default true) */
    bool softmax;           /* end with SOFTMAX (default true; for imported graphs:
                               exactly when the original ended with one) */
} mopt_export_options;

mopt_export_options mopt_export_default_options(void);

/* A float mopt_graph with batch 1 in inference mode: dropout removed, batch
 * norm folded (w' = w * gamma / sqrt(var + eps) per output channel,
 * b' = (b - mean) * gamma / sqrt(var + eps) + beta), a following RELU/RELU6
 * fused when possible. Tensor names: weights keep their variable names; each
 * activation is named after the last node fused into it. opts may be NULL. */
mopt_status mopt_tgraph_export(const mopt_tgraph *tg, const mopt_export_options *opts,
                               mopt_graph **out, mopt_error *err);

/* ======================================================================
 * Checkpoints
 *
 * A checkpoint holds every variable, the optimizer's state and step count,
 * and the training position. File layout (little-endian): magic
 * "MOPTCKPT", format version, a fingerprint of the graph (variable names and
 * shapes), the sections, and a zlib crc32 of everything before it. Writes
 * are atomic (temporary file + rename). A file with another version, another
 * fingerprint or a bad CRC is refused with a message saying which.
 * ====================================================================== */

typedef struct mopt_train_state {
    int64_t step;          /* optimizer steps done */
    int64_t epoch;         /* epoch in progress (0-based) */
    int64_t batch;         /* batches of that epoch already done */
    uint64_t seed;
    int64_t batch_size;
    double epoch_loss_sum; /* running sums of the epoch in progress */
    int64_t epoch_correct, epoch_seen;
} mopt_train_state;

mopt_status mopt_checkpoint_save(const char *path, mopt_tgraph *tg, const mopt_optimizer *opt,
                                 const mopt_train_state *st, mopt_error *err);
/* Loads into an existing tgraph of the same architecture (and optimizer of
 * the same kind, which may be NULL to skip optimizer state). Nothing is
 * modified when the file is refused. */
mopt_status mopt_checkpoint_load(const char *path, mopt_tgraph *tg, mopt_optimizer *opt,
                                 mopt_train_state *st, mopt_error *err);

#ifdef __cplusplus
}
#endif
#endif
