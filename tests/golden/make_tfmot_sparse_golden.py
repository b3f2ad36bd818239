#!/usr/bin/env python3
"""Records the reference toolkit's (tfmot) pruning and clustering numbers as a
C header, tests/golden/tfmot_sparse_golden.h, that tests/unit/test_sparsity.c
and tests/unit/test_cluster.c compare mopt against.

Nothing here is computed by mopt: inputs are seeded numpy arrays, outputs come
from tfmot's own functions (pruning schedules, Pruning._update_mask /
_maybe_update_block_mask / _update_mask_sparsity_m_by_n, the centroid
initialisers, ClusteringAlgorithm.get_pulling_indices, cluster_weights +
strip_clustering). Keras layouts are converted to mopt's TFLite layouts here
(Dense kernel [in, out] -> [out, in]; Conv2D [kh, kw, in, out] ->
[out, kh, kw, in]; DepthwiseConv2D [kh, kw, c, m] -> [1, kh, kw, c*m]).

Run (a separate venv; tfmot needs tf-keras):
    python -m venv /tmp/tfmotvenv
    /tmp/tfmotvenv/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0 \
        tensorflow-model-optimization==0.8.1 dm-tree
    TF_USE_LEGACY_KERAS=1 /tmp/tfmotvenv/bin/python tests/golden/make_tfmot_sparse_golden.py
"""
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl  # noqa: E402
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule  # noqa: E402
from tensorflow_model_optimization.python.core.clustering.keras import clustering_centroids as cc  # noqa: E402
from tensorflow_model_optimization.python.core.clustering.keras import clustering_algorithm as ca  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tfmot_sparse_golden.h")
rng = np.random.default_rng(20240607)
lines = []


def emit(s=""):
    lines.append(s)


def f32(x):
    x = float(np.float32(x))
    if x == 0:
        return "-0.0f" if np.signbit(x) else "0.0f"
    return "%.9ef" % x


def farr(name, a):
    a = np.asarray(a, dtype=np.float32).ravel()
    body = ", ".join(f32(v) for v in a)
    emit("static const float %s[%d] = {%s};" % (name, max(len(a), 1), body or "0"))


def u8arr(name, a):
    a = np.asarray(a).astype(np.uint8).ravel()
    emit("static const unsigned char %s[%d] = {%s};" % (name, len(a), ",".join(str(int(v)) for v in a)))


def i32arr(name, a):
    a = np.asarray(a).astype(np.int64).ravel()
    emit("static const int %s[%d] = {%s};" % (name, len(a), ",".join(str(int(v)) for v in a)))


# ---------------------------------------------------------------- schedules
def schedules():
    cases = [
        ("constant", pruning_schedule.ConstantSparsity(0.5, 100, 1000, 100),
         dict(initial=0.0, final=0.5, begin=100, end=1000, power=3.0, freq=100)),
        ("constant", pruning_schedule.ConstantSparsity(0.8, 0, -1, 7),
         dict(initial=0.0, final=0.8, begin=0, end=-1, power=3.0, freq=7)),
        ("polynomial", pruning_schedule.PolynomialDecay(0.0, 0.9, 0, 1000, 3, 100),
         dict(initial=0.0, final=0.9, begin=0, end=1000, power=3.0, freq=100)),
        ("polynomial", pruning_schedule.PolynomialDecay(0.2, 0.75, 10, 213, 2.5, 3),
         dict(initial=0.2, final=0.75, begin=10, end=213, power=2.5, freq=3)),
        ("polynomial", pruning_schedule.PolynomialDecay(0.5, 0.5, 5, 6, 1, 1),
         dict(initial=0.5, final=0.5, begin=5, end=6, power=1.0, freq=1)),
        ("polynomial", pruning_schedule.PolynomialDecay(0.3, 0.1, 0, 77, 3, 11),
         dict(initial=0.3, final=0.1, begin=0, end=77, power=3.0, freq=11)),
    ]
    steps = [0, 1, 2, 3, 5, 6, 7, 9, 10, 13, 14, 33, 44, 50, 77, 88, 99, 100, 101, 150, 200, 201,
             212, 213, 214, 300, 500, 777, 999, 1000, 1001, 1100, 5000]
    emit("/* Pruning schedules: kind (0 constant, 1 polynomial), parameters, then per step")
    emit(" * the gate and the float32 sparsity tfmot returns. */")
    emit("typedef struct golden_sched { int kind; double initial, final_s; long long begin, end;")
    emit("    double power; long long freq; } golden_sched;")
    emit("typedef struct golden_sched_pt { int sched; long long step; int prune; float sparsity; } golden_sched_pt;")
    emit("static const golden_sched golden_scheds[] = {")
    for kind, _, p in cases:
        emit("    {%d, %r, %r, %d, %d, %r, %d}," % (0 if kind == "constant" else 1, p["initial"], p["final"],
                                                   p["begin"], p["end"], p["power"], p["freq"]))
    emit("};")
    emit("static const golden_sched_pt golden_sched_pts[] = {")
    for ci, (_, s, _) in enumerate(cases):
        for st in steps:
            prune, sp = s(tf.constant(st, dtype=tf.int64))
            emit("    {%d, %d, %d, %s}," % (ci, st, int(bool(prune.numpy())), f32(sp.numpy())))
    emit("};")
    emit()


# ---------------------------------------------------------------- masks
def pruning_obj(weights_var, sparsity, block=(1, 1), pool="AVG", m_by_n=None):
    sched = pruning_schedule.ConstantSparsity(sparsity, 0)
    mask = tf.Variable(tf.ones_like(weights_var))
    thr = tf.Variable(0.0)
    step = tf.Variable(1, dtype=tf.int64)
    return pruning_impl.Pruning(lambda: step, [(weights_var, mask, thr)], sched, block, pool, m_by_n)


def magnitude_masks():
    cases = []
    w = rng.standard_normal(200).astype(np.float32)
    cases += [(w, 0.5), (w, 0.0), (w, 0.9), (w, 0.999), (w, 0.3333)]
    # ties at the threshold: few distinct magnitudes
    t = (np.round(rng.standard_normal(64) * 2) / 4).astype(np.float32)
    cases += [(t, 0.5), (t, 0.75), (t, 0.2)]
    # k exactly at .5: 10 * 0.75 = 7.5 -> 8 ; 6 * 0.75 = 4.5 -> 4 (half to even)
    cases += [(rng.standard_normal(10).astype(np.float32), 0.25),
              (rng.standard_normal(6).astype(np.float32), 0.25),
              (rng.standard_normal(7).astype(np.float32), 0.5)]
    emit("/* Magnitude masks (Pruning._update_mask, element-wise). */")
    for i, (w, s) in enumerate(cases):
        v = tf.Variable(w)
        p = pruning_obj(v, s)
        thr, mask = p._update_mask(v)
        farr("golden_mag%d_w" % i, w)
        u8arr("golden_mag%d_mask" % i, mask.numpy())
        emit("static const float golden_mag%d_s = %s, golden_mag%d_thr = %s;" % (i, f32(s), i, f32(thr.numpy())))
    emit("typedef struct golden_mag { const float *w; int n; float s; const unsigned char *mask; float thr; } golden_mag;")
    emit("static const golden_mag golden_mags[] = {")
    for i, (w, s) in enumerate(cases):
        emit("    {golden_mag%d_w, %d, golden_mag%d_s, golden_mag%d_mask, golden_mag%d_thr}," % (i, len(w), i, i, i))
    emit("};")
    emit()


def block_masks():
    # Keras Dense kernels [in, out] and tfmot block sizes (a, b).
    cases = [((7, 10), (2, 3), "AVG", 0.5), ((7, 10), (2, 3), "MAX", 0.5), ((5, 9), (4, 4), "AVG", 0.5),
             ((5, 9), (4, 4), "MAX", 0.3), ((16, 12), (1, 4), "AVG", 0.75), ((12, 16), (4, 1), "MAX", 0.6),
             ((9, 5), (3, 2), "AVG", 0.4)]
    emit("/* Block masks (Pruning._maybe_update_block_mask) on Dense kernels, converted to")
    emit(" * mopt's [units, depth] layout: rows = units, cols = depth, block bh x bw = b x a. */")
    recs = []
    for i, (shape, blk, pool, s) in enumerate(cases):
        w = rng.standard_normal(shape).astype(np.float32)
        v = tf.Variable(w)
        p = pruning_obj(v, s, blk, pool)
        thr, mask = p._maybe_update_block_mask(v)
        farr("golden_blk%d_w" % i, w.T)
        u8arr("golden_blk%d_mask" % i, mask.numpy().T)
        recs.append((i, shape[1], shape[0], blk[1], blk[0], 1 if pool == "MAX" else 0, s, float(thr.numpy())))
    emit("typedef struct golden_blk { const float *w; int rows, cols, bh, bw, pool; float s;")
    emit("    const unsigned char *mask; float thr; } golden_blk;")
    emit("static const golden_blk golden_blks[] = {")
    for i, r, c, bh, bw, pool, s, thr in recs:
        emit("    {golden_blk%d_w, %d, %d, %d, %d, %d, %s, golden_blk%d_mask, %s}," % (i, r, c, bh, bw, pool, f32(s), i, f32(thr)))
    emit("};")
    emit()


def m_by_n_masks():
    # (kind, keras shape, (m, n)); kind 0 FC, 1 conv, 2 depthwise
    cases = [(0, (10, 6), (2, 4)), (0, (16, 3), (2, 4)), (0, (13, 5), (1, 4)), (0, (20, 4), (3, 8)),
             (1, (3, 3, 6, 4), (2, 4)), (1, (1, 1, 8, 5), (2, 4)), (2, (3, 3, 5, 2), (2, 4)),
             (2, (3, 3, 8, 1), (1, 4))]
    emit("/* M:N masks (Pruning._update_mask_sparsity_m_by_n), in TFLite layout. kind 0 FC")
    emit(" * [units, depth], 1 CONV_2D [OC,KH,KW,IC], 2 DEPTHWISE [1,KH,KW,C*M]. */")
    recs = []
    for i, (kind, shape, mn) in enumerate(cases):
        w = rng.standard_normal(shape).astype(np.float32)
        if i % 2 == 1:  # ties inside groups
            w = (np.round(w * 2) / 2).astype(np.float32)
        v = tf.Variable(w)
        p = pruning_obj(v, 0.5, (1, 1), "AVG", mn)
        _, mask = p._maybe_update_block_mask(v)
        mask = mask.numpy()
        if kind == 0:
            tw, tm, dims = w.T, mask.T, (shape[1], shape[0], 1, 1)
            mult = 1
        elif kind == 1:
            tw, tm = w.transpose(3, 0, 1, 2), mask.transpose(3, 0, 1, 2)
            dims = (shape[3], shape[0], shape[1], shape[2])
            mult = 1
        else:
            kh, kw, c, m = shape
            tw, tm = w.reshape(1, kh, kw, c * m), mask.reshape(1, kh, kw, c * m)
            dims = (1, kh, kw, c * m)
            mult = m
        farr("golden_mn%d_w" % i, tw)
        u8arr("golden_mn%d_mask" % i, tm)
        recs.append((i, kind, dims, mult, mn))
    emit("typedef struct golden_mn { int kind; int dims[4]; int mult, m, n; const float *w;")
    emit("    const unsigned char *mask; } golden_mn;")
    emit("static const golden_mn golden_mns[] = {")
    for i, kind, dims, mult, mn in recs:
        emit("    {%d, {%d, %d, %d, %d}, %d, %d, %d, golden_mn%d_w, golden_mn%d_mask}," % ((i, kind) + tuple(dims) + (mult,) + mn + (i, i))[1:])
    emit("};")
    emit()


# ---------------------------------------------------------------- clustering
def centroid_inits():
    init_cls = {0: cc.LinearCentroidsInitialisation, 2: cc.DensityBasedCentroidsInitialisation}
    wsets = []
    wsets.append(rng.standard_normal(300).astype(np.float32) * 0.1)
    wsets.append(rng.uniform(-1, 1, 97).astype(np.float32))
    s = rng.standard_normal(400).astype(np.float32) * 0.05
    s[rng.random(400) < 0.7] = 0.0  # sparse, for sparsity preservation
    wsets.append(s)
    s2 = np.abs(rng.standard_normal(50).astype(np.float32))  # no negatives
    s2[::3] = 0.0
    wsets.append(s2)
    wsets.append(rng.standard_normal(64).astype(np.float32) * 0.004)  # small range (< 0.27)
    emit("/* Centroid initialisations (clustering_centroids.py), exact float32. init 0 LINEAR,")
    emit(" * 2 DENSITY_BASED. */")
    for j, w in enumerate(wsets):
        farr("golden_cw%d" % j, w)
    recs = []
    i = 0
    for j, w in enumerate(wsets):
        for init in (0, 2):
            for k in (2, 3, 8, 16, 17):
                for preserve in (False, True):
                    if preserve and k < 3:
                        continue
                    obj = init_cls[init](tf.constant(w), k, False, "channels_last", preserve)
                    c = obj.get_cluster_centroids().numpy().astype(np.float32).ravel()
                    farr("golden_cinit%d_c" % i, c)
                    recs.append((i, j, len(w), init, k, int(preserve), len(c)))
                    i += 1
    emit("typedef struct golden_cinit { const float *w; int n, init, k, preserve, n_c; const float *c; } golden_cinit;")
    emit("static const golden_cinit golden_cinits[] = {")
    for i, j, n, init, k, pr, nc in recs:
        emit("    {golden_cw%d, %d, %d, %d, %d, %d, golden_cinit%d_c}," % (j, n, init, k, pr, nc, i))
    emit("};")
    emit()


def assignments():
    emit("/* Nearest-centroid assignment (ClusteringAlgorithm.get_pulling_indices), ties included. */")
    cent = np.array([0.0, 1.0, 0.5, 0.5, -0.25, 2.0, 1.0], dtype=np.float32)
    w = np.concatenate([np.array([0.25, 0.75, 0.5, 1.5, -0.125, 1.0, 3.0, -5.0, 0.0, -0.0, 0.1, 0.3],
                                 dtype=np.float32),
                        rng.uniform(-1, 3, 200).astype(np.float32)])
    alg = ca.ClusteringAlgorithm(tf.Variable(cent))
    idx = alg.get_pulling_indices(tf.constant(w)).numpy()
    farr("golden_asg_c", cent)
    farr("golden_asg_w", w)
    i32arr("golden_asg_idx", idx)
    emit("enum { GOLDEN_ASG_K = %d, GOLDEN_ASG_N = %d };" % (len(cent), len(w)))
    emit()


def strip_clustering():
    """cluster_weights + strip_clustering on whole layers (no training)."""
    CI = tfmot.clustering.keras.CentroidInitialization
    emit("/* cluster_weights(...) + strip_clustering, no training: the stripped weights in")
    emit(" * TFLite layout. kind 0 FC [units, depth], 1 CONV_2D [OC,KH,KW,IC]. */")
    cases = [(0, (40, 12), 8, CI.LINEAR, False, False), (0, (40, 12), 16, CI.DENSITY_BASED, False, False),
             (1, (3, 3, 4, 6), 4, CI.LINEAR, True, False), (0, (30, 10), 6, CI.LINEAR, False, True),
             (1, (3, 3, 5, 4), 5, CI.DENSITY_BASED, True, True), (0, (25, 8), 5, CI.DENSITY_BASED, False, True)]
    recs = []
    for i, (kind, shape, k, init, per_ch, preserve) in enumerate(cases):
        w = rng.standard_normal(shape).astype(np.float32) * 0.2
        if preserve:
            w[rng.random(shape) < 0.6] = 0.0
        # With a bias: tfmot's per-channel weight-count check reads the channel
        # count from the layer's last trainable weight (the bias), and skips
        # the layer when it has none.
        if kind == 0:
            layer = keras.layers.Dense(shape[1], input_shape=(shape[0],))
        else:
            layer = keras.layers.Conv2D(shape[3], shape[:2], input_shape=(8, 8, shape[2]))
        model = keras.Sequential([layer])
        layer.set_weights([w, np.zeros(shape[-1], np.float32)])
        cm = tfmot.clustering.keras.cluster_weights(model, number_of_clusters=k, cluster_centroids_init=init,
                                                    preserve_sparsity=preserve, cluster_per_channel=per_ch)
        assert "ClusterWeights" in type(cm.layers[0]).__name__, "tfmot did not cluster case %d" % i
        sm = tfmot.clustering.keras.strip_clustering(cm)
        out = sm.layers[0].get_weights()[0].astype(np.float32)
        if kind == 0:
            tw, to, dims = w.T, out.T, (shape[1], shape[0], 1, 1)
        else:
            tw, to = w.transpose(3, 0, 1, 2), out.transpose(3, 0, 1, 2)
            dims = (shape[3], shape[0], shape[1], shape[2])
        farr("golden_strip%d_w" % i, tw)
        farr("golden_strip%d_out" % i, to)
        recs.append((i, kind, dims, k, 0 if init == CI.LINEAR else 2, int(per_ch), int(preserve)))
    emit("typedef struct golden_strip { int kind; int dims[4]; int k, init, per_channel, preserve;")
    emit("    const float *w, *out; } golden_strip;")
    emit("static const golden_strip golden_strips[] = {")
    for i, kind, dims, k, init, pc, pr in recs:
        emit("    {%d, {%d, %d, %d, %d}, %d, %d, %d, %d, golden_strip%d_w, golden_strip%d_out}," %
             ((kind,) + tuple(dims) + (k, init, pc, pr, i, i)))
    emit("};")
    emit()


def main():
    emit("/* tfmot_sparse_golden.h - GENERATED by tests/golden/make_tfmot_sparse_golden.py; do not edit.")
    emit(" * tensorflow %s, tf-keras %s, tensorflow-model-optimization %s, numpy %s, python %s." %
         (tf.__version__, keras.__version__, tfmot.__version__, np.__version__, sys.version.split()[0]))
    emit(" */")
    emit("#ifndef MOPT_TFMOT_SPARSE_GOLDEN_H")
    emit("#define MOPT_TFMOT_SPARSE_GOLDEN_H")
    emit()
    schedules()
    magnitude_masks()
    block_masks()
    m_by_n_masks()
    centroid_inits()
    assignments()
    strip_clustering()
    emit("#endif")
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", OUT, len(lines), "lines")


if __name__ == "__main__":
    main()
