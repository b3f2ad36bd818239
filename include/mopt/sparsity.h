/* mopt/sparsity.h - magnitude pruning: schedules, masks (element-wise, block,
 * M:N), one-shot pruning of a graph, and channel pruning (a graph rewrite that
 * really removes output channels).
 *
 * Semantics follow the reference toolkit (tfmot, sparsity/keras
 * pruning_schedule.py, pruning_impl.py, pruning_utils.py) exactly, including
 * its float32 arithmetic, EXCEPT that everything here works on mopt's TFLite
 * layouts:
 *   CONV_2D weights            [OC, KH, KW, IC]      (Keras: [KH, KW, IC, OC])
 *   DEPTHWISE_CONV_2D weights  [1, KH, KW, C*M]      (Keras: [KH, KW, C, M])
 *   FULLY_CONNECTED weights    [units, depth]        (Keras: [depth, units])
 * Where the layout matters (block shapes, M:N groups) the mapping to tfmot's
 * parameters is spelled out at the function.
 *
 * Masks are byte arrays with one entry per weight: 1 = keep, 0 = pruned.
 * Nothing here prints; errors name the layer (tensor index and name) or the
 * option and the rule.
 */
#ifndef MOPT_SPARSITY_H
#define MOPT_SPARSITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mopt/graph.h"
#include "mopt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Pruning schedules (tfmot ConstantSparsity / PolynomialDecay)
 * ====================================================================== */

typedef enum mopt_schedule_kind {
    MOPT_SCHEDULE_CONSTANT = 0,  /* ConstantSparsity(target, begin, end=-1, frequency=100) */
    MOPT_SCHEDULE_POLYNOMIAL = 1 /* PolynomialDecay(initial, final, begin, end, power=3, frequency=100) */
} mopt_schedule_kind;

/* Sparsities are kept in double because tfmot keeps them as Python floats and
 * rounds to float32 only where TF does (see mopt_prune_schedule_sparsity). */
typedef struct mopt_prune_schedule {
    mopt_schedule_kind kind;
    double initial_sparsity; /* POLYNOMIAL only, [0, 1) */
    double final_sparsity;   /* the target sparsity (CONSTANT) or the final one, [0, 1) */
    int64_t begin_step;      /* >= 0 */
    int64_t end_step;        /* >= begin_step; -1 = never ends (CONSTANT only) */
    int64_t frequency;       /* > 0: prune every `frequency` steps */
    double power;            /* POLYNOMIAL exponent (tfmot default 3) */
} mopt_prune_schedule;

mopt_prune_schedule mopt_prune_schedule_constant(double target, int64_t begin_step,
                                                 int64_t end_step, int64_t frequency);
mopt_prune_schedule mopt_prune_schedule_polynomial(double initial, double final_sparsity,
                                                   int64_t begin_step, int64_t end_step,
                                                   double power, int64_t frequency);

/* tfmot's checks, with its messages: begin_step >= 0; end_step == -1 or
 * >= begin_step (-1 refused for POLYNOMIAL); frequency > 0; sparsities in
 * [0, 1). Two checks tfmot lacks: POLYNOMIAL needs end_step > begin_step
 * (tfmot divides by end - begin) and a finite power > 0. */
mopt_status mopt_prune_schedule_validate(const mopt_prune_schedule *s, mopt_error *err);

/* The gate: step >= begin AND (step <= end OR end < 0) AND
 * (step - begin) mod frequency == 0. */
bool mopt_prune_schedule_should_prune(const mopt_prune_schedule *s, int64_t step);

/* Sparsity at `step` in tfmot's float32 arithmetic. CONSTANT: (float)target.
 * POLYNOMIAL: p = clip((float)(step - begin) / (float)(end - begin), 0, 1);
 * s = (float)(initial - final) * powf(1 - p, (float)power) + (float)final,
 * each operation rounded to float32. Meaningful whatever the gate says. */
float mopt_prune_schedule_sparsity(const mopt_prune_schedule *s, int64_t step);

/* ======================================================================
 * Masks on raw arrays (the reference definitions)
 * ====================================================================== */

/* Number of weights kept at `sparsity` out of n, as tfmot computes it:
 * k = max(round_half_even((float)n * (1.0f - (float)sparsity)), 1) in
 * float32. */
int64_t mopt_prune_keep_count(int64_t n, float sparsity);

/* Magnitude mask of n weights: threshold = the k-th largest |w| (k from
 * mopt_prune_keep_count); mask[i] = |w[i]| >= threshold, so weights tied with
 * the threshold are all kept and more than k may survive. *threshold (may be
 * NULL) gets the threshold. NaN weights sort below every number and are
 * pruned. Allocates n floats of scratch. */
mopt_status mopt_mask_magnitude(const float *w, int64_t n, float sparsity, uint8_t *mask,
                                float *threshold, mopt_error *err);

typedef enum mopt_block_pool { MOPT_BLOCK_POOL_AVG = 0, MOPT_BLOCK_POOL_MAX = 1 } mopt_block_pool;

/* Block mask of a row-major [rows, cols] matrix: |w| is pooled (average or
 * max) over blocks of bh x bw with TF 'SAME' padding (ceil(rows/bh) x
 * ceil(cols/bw) pooled values; the padding is split before/after as TF does,
 * and padded cells do not count in averages), the magnitude rule above is
 * applied to the pooled matrix, every pooled entry is expanded back to a
 * bh x bw block anchored at (0, 0) (tfmot's expand_tensor) and cropped.
 * Pooling runs along the columns first, then along the rows, in float32.
 *
 * Layout mapping: for FULLY_CONNECTED weights [units, depth], tfmot's
 * block_size=(a, b) on the Keras kernel [depth, units] is bh = b, bw = a
 * here (same blocks, same pooling order). */
mopt_status mopt_mask_block(const float *w, int64_t rows, int64_t cols, int bh, int bw,
                            mopt_block_pool pool, float sparsity, uint8_t *mask,
                            float *threshold, mopt_error *err);

/* M:N mask of a row-major [rows, cols] matrix: in every group of n
 * consecutive entries of a row (groups start at column 0; the last one may be
 * short) the n - m largest |w| are kept (the lower column wins ties, as TF's
 * top_k) and the other m are zeroed. A short last group keeps
 * min(n - m, its length) entries (tfmot pads it with zeros, which lose ties).
 * Requires 0 < m < n. */
mopt_status mopt_mask_m_by_n(const float *w, int64_t rows, int64_t cols, int m, int n,
                             uint8_t *mask, mopt_error *err);

/* ======================================================================
 * Weight layers of a graph
 * ====================================================================== */

/* A prunable / clusterable layer: an op with constant float32 weights. */
typedef struct mopt_weight_layer {
    int op;               /* operator index */
    mopt_op_type type;    /* CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED */
    int weights;          /* weight tensor (op input 1) */
    int bias;             /* bias tensor (op input 2), -1 if none or not constant */
    int channel_axis;     /* output-channel axis of the weights: 0, or 3 for depthwise */
    const char *name;     /* the weight tensor's name (owned by the graph) */
} mopt_weight_layer;

/* Lists CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED ops whose weights are
 * constant float32 tensors of the expected rank (4, 4, 2), in op order. A
 * weight tensor used by several ops is listed once (at its first op).
 * *out is malloc'ed (free(); NULL when *n == 0). */
mopt_status mopt_weight_layers_list(const mopt_graph *g, mopt_weight_layer **out, int *n,
                                    mopt_error *err);

/* selected[i] = layer i's weight tensor name or its op's output tensor name
 * matches the POSIX extended regular expression (searched anywhere in the
 * name; anchor with ^...$). *n_matched (may be NULL) gets the count. An
 * invalid regex is MOPT_ERR_ARG. */
mopt_status mopt_weight_layers_match(const mopt_graph *g, const mopt_weight_layer *layers, int n,
                                     const char *regex, bool *selected, int *n_matched,
                                     mopt_error *err);

/* ======================================================================
 * One-shot magnitude pruning of a graph
 * ====================================================================== */

typedef enum mopt_prune_pattern {
    MOPT_PRUNE_ELEMENT = 0, /* element-wise magnitude */
    MOPT_PRUNE_BLOCK = 1,   /* blocks (FULLY_CONNECTED only) */
    MOPT_PRUNE_M_BY_N = 2   /* m zeros in every n input channels */
} mopt_prune_pattern;

typedef struct mopt_prune_params {
    float sparsity;             /* fraction of zeros per tensor, [0, 1); ignored with M:N */
    int block_h, block_w;       /* block on FC weights [units, depth]; 1x1 = element-wise */
    mopt_block_pool block_pool; /* default AVG (tfmot's default) */
    int m, n;                   /* M:N (m zeros per n); 0, 0 = off */
} mopt_prune_params;

/* sparsity 0.5, block 1x1 AVG, no M:N. */
mopt_prune_params mopt_prune_default_params(void);
/* sparsity in [0, 1); block dims >= 1; M:N off or 0 < m < n <= 65536; block
 * and M:N not both. Messages name the option (sparsity, block, m-by-n). */
mopt_status mopt_prune_params_validate(const mopt_prune_params *p, mopt_error *err);

/* Mask of one weight tensor of a layer of type `type` with TFLite dims
 * (depth_multiplier: DEPTHWISE_CONV_2D's M, dims[3] = C*M; ignored otherwise).
 *  - M:N (p->m > 0): groups run along the input channels in TFLite layout,
 *    as tfmot's weights_rearrange does: FC [units, depth] rows; CONV_2D
 *    [OC,KH,KW,IC] as [OC*KH*KW, IC]; DEPTHWISE [1,KH,KW,C*M] as rows
 *    (M, KH, KW) x columns C (tfmot's [KH,KW,C,M] -> [M*KH*KW, C]).
 *  - block (block_h * block_w > 1) on FULLY_CONNECTED weights;
 *  - otherwise (and for conv / depthwise weights when a block is set, since
 *    tfmot only block-prunes rank-2 weights) element-wise.
 * *pattern (may be NULL) gets what was applied; *threshold (may be NULL) the
 * magnitude threshold (999 for M:N, as tfmot returns). */
mopt_status mopt_prune_mask(mopt_op_type type, int rank, const int32_t *dims,
                            int depth_multiplier, const float *w, const mopt_prune_params *p,
                            uint8_t *mask, mopt_prune_pattern *pattern, float *threshold,
                            mopt_error *err);

typedef struct mopt_prune_layer_result {
    int op, weights;
    mopt_prune_pattern pattern;
    int64_t numel;
    int64_t zeros_before, zeros_after;
    float threshold;
} mopt_prune_layer_result;

typedef struct mopt_prune_result {
    int n_layers;
    mopt_prune_layer_result *layers; /* malloc'ed; mopt_prune_result_free */
} mopt_prune_result;

void mopt_prune_result_free(mopt_prune_result *r); /* NULL ok; zeroes *r */

/* Prunes the weights of the selected layers in place (weights *= mask; a
 * buffer shared with another tensor is copied first, and buffers no tensor
 * uses any more are dropped). `select` has g->n_ops entries (true = prune
 * that op's weights; ops that are not weight layers are ignored) or is NULL
 * for every weight layer. Fails without touching the graph if a selected
 * layer's weights hold NaN or infinity, or if nothing is selected
 * (MOPT_ERR_BAD_INPUT "no prunable layer"). res may be NULL. */
mopt_status mopt_prune_graph(mopt_graph *g, const bool *select, const mopt_prune_params *p,
                             mopt_prune_result *res, mopt_error *err);

/* ======================================================================
 * Channel pruning: remove whole output channels
 * ====================================================================== */

typedef enum mopt_channel_norm { MOPT_CHANNEL_L1 = 0, MOPT_CHANNEL_L2 = 1 } mopt_channel_norm;

typedef struct mopt_channel_prune_params {
    float sparsity;         /* fraction of channels removed in each coupled group, [0, 1) */
    mopt_channel_norm norm; /* filter norm that ranks channels (default L1) */
} mopt_channel_prune_params;

mopt_channel_prune_params mopt_channel_prune_default_params(void);

typedef struct mopt_channel_prune_layer {
    int op;                  /* the CONV_2D / FULLY_CONNECTED op (index in the graph) */
    int channels_before;
    int channels_after;
    int group;               /* layers with the same group are pruned together (residual ADDs) */
    bool frozen;             /* no channel of this layer could be removed */
    const char *reason;      /* static string: why frozen, or NULL */
    int n_removed;
    int32_t *removed;        /* removed output channels, ascending (malloc'ed) */
} mopt_channel_prune_layer;

typedef struct mopt_channel_prune_result {
    int n_layers;
    mopt_channel_prune_layer *layers;
    int64_t params_before, params_after;
} mopt_channel_prune_result;

void mopt_channel_prune_result_free(mopt_channel_prune_result *r); /* NULL ok */

/* Removes output channels of the selected CONV_2D and FULLY_CONNECTED layers
 * (select as for mopt_prune_graph; NULL = all) and rewrites every tensor and
 * op the channels flow through: pass-through ops (activations, pools, PAD
 * without channel padding, MEAN over other axes, depthwise convolutions with
 * multiplier 1 - whose filters and biases lose the same channels),
 * broadcasting ADD / SUB / MUL (constants sliced; both activation operands
 * lose the same channels, so residual branches stay consistent),
 * CONCATENATION (channel offsets), RESHAPE that flattens NHWC to [N, H*W*C]
 * (the FC consumer loses the H*W columns of each channel, channel-minor), and
 * the consumers' weights (next conv's input channels, FC input columns).
 *
 * Channels are tracked individually through the graph and grouped into
 * classes that must be removed together; a class that reaches a graph input
 * or output, an unselected layer, SOFTMAX, TRANSPOSE, a depthwise conv with
 * multiplier > 1, a channel-padding PAD or an unsupported reshape is kept.
 * Within each group of coupled layers, keep = max(round_half_even(T * (1 -
 * sparsity)), 1) of the T channel classes by descending norm (the summed L1,
 * or the root of the summed squares, of the filters producing the class;
 * lower channel index wins ties), and every tensor keeps at least one
 * channel. Op indices stay stable; constants are copied when shared with a
 * tensor that must not change, and unused buffers are dropped. The result
 * passes mopt_graph_validate (checked; a failure is MOPT_ERR_INTERNAL).
 * Only float32 graphs without quantized tensors are accepted. On failure the
 * graph is unchanged. res may be NULL. */
mopt_status mopt_channel_prune(mopt_graph *g, const bool *select,
                               const mopt_channel_prune_params *p, mopt_channel_prune_result *res,
                               mopt_error *err);

#ifdef __cplusplus
}
#endif
#endif
