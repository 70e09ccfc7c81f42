"""Calls of fastnet._native with wrong arguments, and the interpreter prelude they run after.

Shared by tests/backends/test_native_module.py (all calls in one child
interpreter, fast tier) and tests/slow/test_native_bad_calls.py (one child
interpreter per call, slow tier).  Each call changes one argument of a call
that works (the PRELUDE's forward, gradient, train and their float32 twins,
on the article's data from naive.py).
"""

import textwrap

from conftest import TESTS_DIR

PRELUDE = textwrap.dedent(f"""
    import sys
    import numpy as np
    import fastnet._native as native
    from fastnet import spec
    from fastnet._config import BLOCK_ROWS
    sys.path.insert(0, {TESTS_DIR!r})
    import naive
    f32 = np.float32
    X, Y = naive.X, naive.Y
    params = np.concatenate([naive.W1.ravel(), naive.W2.ravel()])
    sizes = np.array([4, 1, 1], dtype=np.int64)
    sigmoids = np.full(2, spec.ACTIVATIONS["sigmoid"].code, np.int64)
    SIGMOID, TANH, RELU, LINEAR, SOFTMAX = (spec.ACTIVATIONS[name].code
                                            for name in ("sigmoid", "tanh", "relu", "linear", "softmax"))
    SSE, MSE, BCE, CROSS_ENTROPY = (spec.LOSSES[name].code for name in ("sse", "mse", "bce", "cross_entropy"))
    none = np.empty(0)
    out = np.empty(6)
    grad = np.empty(5)
    hyper = np.array([0.1, 0.9, 0.9, 0.999, 1e-8, 0.0])  # fastnet.spec.HYPER_FIELDS
    X32, Y32, params32, none32 = X.astype(f32), Y.astype(f32), params.astype(f32), none.astype(f32)

    def forward(X=X, params=params, sizes=sizes, activations=sigmoids, has_bias=False, block_rows=BLOCK_ROWS, out=out):
        return native.forward(X, params, sizes, activations, has_bias, block_rows, out)

    def gradient(X=X, Y=Y, row_weight=none, params=params, sizes=sizes, activations=sigmoids, has_bias=False,
                 derivative=1, loss=0, block_rows=BLOCK_ROWS, grad=grad):
        return native.gradient(X, Y, row_weight, params, sizes, activations, has_bias, derivative, loss, block_rows,
                               grad)

    def train(X=X, Y=Y, row_weight=none, order=np.array([2, 0, 1], np.int64), batch_size=2, params=None,
              sizes=sizes, activations=sigmoids, has_bias=False, derivative=0, loss=1, optimizer=2, hyper=hyper,
              state=None, step=None, block_rows=BLOCK_ROWS, grad=None):
        dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
        params = params if params is not None else globals()["params"].astype(dtype)
        state = state if state is not None else np.zeros((2, 5), dtype)
        step = step if step is not None else np.zeros(1, np.int64)
        grad = grad if grad is not None else np.empty(5, dtype)
        return native.train_epoch(X, Y, row_weight, order, batch_size, params, sizes, activations, has_bias,
                                  derivative, loss, optimizer, hyper, state, step, block_rows, grad)

    def forward32(**changes):
        return forward(**dict(dict(X=X32, params=params32, out=np.empty(6, f32)), **changes))

    def gradient32(**changes):
        return gradient(**dict(dict(X=X32, Y=Y32, row_weight=none32, params=params32, grad=np.empty(5, f32)),
                               **changes))

    def train32(**changes):
        return train(**dict(dict(X=X32, Y=Y32, row_weight=none32), **changes))

    def readonly(a):
        a = a.copy()
        a.flags.writeable = False
        return a
""")

#: A float array of the other dtype than X's: the message must say so.
MIXED = r"must be (float32|float64) like X; got (float64|float32)"

#: (id, call, regex the error message must match: the argument's name).
BAD_CALLS = [
    # finite_range
    ("finite-range-int64", "native.finite_range(np.arange(4))", r"\bx\b.*float64 or float32"),
    ("finite-range-list", "native.finite_range([1.0, 2.0])", r"\bx\b.*buffer"),
    ("finite-range-strided", "native.finite_range(X[:, ::2])", r"\bx\b.*C-contiguous"),
    # forward
    ("forward-block-rows-zero", "forward(block_rows=0)", r"\bblock_rows\b.*>= 1"),
    ("forward-block-rows-negative", "forward(block_rows=-3)", r"\bblock_rows\b.*>= 1"),
    ("forward-block-rows-float", "forward(block_rows=2.0)", r"\bblock_rows\b.*integer"),
    ("forward-out-too-short", "forward(out=np.empty(5))", r"\bout\b"),
    ("forward-out-too-long", "forward(out=np.empty(7))", r"\bout\b"),
    ("forward-out-empty", "forward(out=np.empty(0))", r"\bout\b"),
    ("forward-out-float32", "forward(out=np.empty(6, np.float32))", r"^out " + MIXED),
    ("forward-out-int64", "forward(out=np.empty(6, np.int64))", r"\bout\b"),
    ("forward-out-strided", "forward(out=np.empty(12)[::2])", r"\bout\b"),
    ("forward-out-read-only", "forward(out=readonly(out))", r"\bout\b|read-?only|writ"),
    ("forward-params-too-short", "forward(params=params[:4].copy())", r"\bparams\b"),
    ("forward-params-too-long", "forward(params=np.append(params, 1.0))", r"\bparams\b"),
    ("forward-params-for-bias", "forward(has_bias=True)", r"\bparams\b"),
    ("forward-params-float32", "forward(params=params.astype(np.float32))", r"^params " + MIXED),
    ("forward-sizes-float64", "forward(sizes=sizes.astype(np.float64))", r"\bsizes\b"),
    ("forward-sizes-int32", "forward(sizes=sizes.astype(np.int32))", r"\bsizes\b"),
    ("forward-sizes-one-layer", "forward(sizes=np.array([4], dtype=np.int64))", r"\bsizes\b"),
    ("forward-sizes-negative", "forward(sizes=np.array([4, -1, 1], dtype=np.int64))", r"\bsizes\b"),
    ("forward-sizes-huge", "forward(sizes=np.array([4, 2**40, 1], dtype=np.int64))", r"\bsizes\b|\bparams\b"),
    # 4*2**62 + 2**62*4 + 4*1 wraps to 4 in 64-bit arithmetic: a 4-element params must not pass
    ("forward-sizes-overflow", "forward(sizes=np.array([4, 2**62, 4, 1], dtype=np.int64), params=np.ones(4))",
     r"\bsizes\b|\bparams\b|\bout\b"),
    ("forward-activations-too-short", "forward(activations=sigmoids[:1].copy())", r"\bactivations\b"),
    ("forward-activations-too-long", "forward(activations=np.zeros(3, np.int64))", r"\bactivations\b"),
    ("forward-activations-int32", "forward(activations=sigmoids.astype(np.int32))", r"\bactivations\b"),
    ("forward-activations-unknown", "forward(activations=np.array([0, 99], np.int64))", r"\bactivations\[1\]"),
    ("forward-activations-negative", "forward(activations=np.array([-1, 0], np.int64))", r"\bactivations\[0\]"),
    ("gradient-activations-unknown", "gradient(activations=np.array([0, 99], np.int64))", r"\bactivations\b"),
    ("train-activations-too-short", "train(activations=sigmoids[:1].copy())", r"\bactivations\b"),
    ("forward-X-wrong-columns", "forward(X=np.ones((3, 5)))", r"\bX\b"),
    ("forward-X-float32", "forward(X=X.astype(np.float32))", r"^params " + MIXED),
    ("forward-X-float16", "forward(X=X.astype(np.float16))", r"\bX\b"),
    ("forward-X-int64", "forward(X=np.ones((3, 4), dtype=np.int64))", r"\bX\b"),
    ("forward-X-fortran", "forward(X=np.asfortranarray(np.ones((3, 4))))", r"\bX\b"),
    ("forward-X-no-rows", "forward(X=np.empty((0, 4)))", r"\bX\b|\bout\b"),
    ("forward-X-not-an-array", "forward(X=None)", r"\bX\b"),
    # gradient
    ("gradient-block-rows-zero", "gradient(block_rows=0)", r"\bblock_rows\b.*>= 1"),
    ("gradient-block-rows-negative", "gradient(block_rows=-64)", r"\bblock_rows\b.*>= 1"),
    ("gradient-block-rows-none", "gradient(block_rows=None)", r"\bblock_rows\b.*integer"),
    ("gradient-grad-too-short", "gradient(grad=np.empty(4))", r"\bgrad\b"),
    ("gradient-grad-too-long", "gradient(grad=np.empty(6))", r"\bgrad\b"),
    ("gradient-grad-float32", "gradient(grad=np.empty(5, np.float32))", r"^grad " + MIXED),
    ("gradient-grad-read-only", "gradient(grad=readonly(grad))", r"\bgrad\b|read-?only|writ"),
    ("gradient-params-too-short", "gradient(params=params[:3].copy())", r"\bparams\b"),
    ("gradient-params-for-bias", "gradient(has_bias=True)", r"\bparams\b"),
    ("gradient-params-float32", "gradient(params=params32)", r"^params " + MIXED),
    ("gradient-Y-fewer-rows", "gradient(Y=Y[:2].copy())", r"\bY\b"),
    ("gradient-Y-more-rows", "gradient(Y=np.ones((4, 1)))", r"\bY\b"),
    ("gradient-Y-wrong-columns", "gradient(Y=np.ones((3, 2)))", r"\bY\b"),
    ("gradient-Y-float32", "gradient(Y=Y.astype(np.float32))", r"^Y " + MIXED),
    ("gradient-X-wrong-columns", "gradient(X=np.ones((3, 3)))", r"\bX\b"),
    ("gradient-X-int64", "gradient(X=np.ones((3, 4), dtype=np.int64))", r"\bX\b"),
    ("gradient-X-float32", "gradient(X=X32)", r"^Y " + MIXED),
    ("gradient-row-weight-too-short", "gradient(row_weight=np.ones(2))", r"\brow_weight\b"),
    ("gradient-row-weight-too-long", "gradient(row_weight=np.ones(4))", r"\brow_weight\b"),
    ("gradient-row-weight-2d", "gradient(row_weight=np.ones((3, 2)))", r"\brow_weight\b"),
    ("gradient-row-weight-int64", "gradient(row_weight=np.ones(3, np.int64))", r"\brow_weight\b"),
    ("gradient-row-weight-float32", "gradient(row_weight=np.ones(3, np.float32))", r"^row_weight " + MIXED),
    ("gradient-row-weight-empty-float32", "gradient(row_weight=none32)", r"^row_weight " + MIXED),
    ("gradient-sizes-float64", "gradient(sizes=sizes.astype(np.float64))", r"\bsizes\b"),
    ("gradient-derivative-unknown", "gradient(derivative=7)", r"\bderivative\b"),
    ("gradient-loss-unknown", "gradient(loss=9)", r"\bloss\b"),
    ("gradient-loss-negative", "gradient(loss=-1)", r"\bloss\b"),
    # layer and loss codes the kernels do not define together
    ("forward-softmax-hidden", "forward(activations=np.array([SOFTMAX, SIGMOID], np.int64))",
     r"^activations\[0\] = \d+ \(softmax\).*last layer"),
    ("forward-softmax-everywhere", "forward(activations=np.array([SOFTMAX, SOFTMAX], np.int64))",
     r"^activations\[0\].*softmax"),
    ("gradient-softmax-hidden", "gradient(activations=np.array([SOFTMAX, SOFTMAX], np.int64), loss=CROSS_ENTROPY)",
     r"^activations\[0\].*softmax"),
    ("gradient-cross-entropy-after-sigmoid", "gradient(loss=CROSS_ENTROPY)",
     r"^loss = \d+ \(cross_entropy\) needs a softmax"),
    ("gradient-cross-entropy-after-linear", "gradient(activations=np.array([SIGMOID, LINEAR], np.int64), "
     "loss=CROSS_ENTROPY)", r"^loss = \d+ \(cross_entropy\).*activations\[-1\]"),
    ("gradient-mse-after-softmax", "gradient(activations=np.array([SIGMOID, SOFTMAX], np.int64), loss=MSE)",
     r"softmax.*needs loss = \d+ \(cross_entropy\)"),
    ("gradient-bce-after-linear", "gradient(activations=np.array([TANH, LINEAR], np.int64), loss=BCE)",
     r"^loss = \d+ \(bce\) needs a sigmoid"),
    ("gradient32-bce-after-softmax", "gradient32(activations=np.array([RELU, SOFTMAX], np.int64), loss=BCE)",
     r"\bloss\b.*cross_entropy|\bbce\b"),
    ("train-cross-entropy-after-sigmoid", "train(loss=CROSS_ENTROPY)", r"^loss = \d+ \(cross_entropy\)"),
    ("train-sse-after-softmax", "train(activations=np.array([TANH, SOFTMAX], np.int64), loss=SSE)",
     r"softmax.*\bloss\b"),
    ("train32-softmax-hidden", "train32(activations=np.array([SOFTMAX, SOFTMAX], np.int64), loss=CROSS_ENTROPY)",
     r"^activations\[0\].*softmax"),
    # float32 buffers of the wrong length
    ("forward32-out-too-short", "forward32(out=np.empty(5, f32))", r"\bout\b"),
    ("forward32-out-too-long", "forward32(out=np.empty(7, f32))", r"\bout\b"),
    ("forward32-params-too-long", "forward32(params=np.ones(6, f32))", r"\bparams\b"),
    ("forward32-X-wrong-columns", "forward32(X=np.ones((3, 5), f32))", r"\bX\b"),
    ("forward32-out-float64", "forward32(out=np.empty(6))", r"^out " + MIXED),
    ("gradient32-grad-too-short", "gradient32(grad=np.empty(4, f32))", r"\bgrad\b"),
    ("gradient32-params-too-short", "gradient32(params=np.ones(4, f32))", r"\bparams\b"),
    ("gradient32-params-for-bias", "gradient32(has_bias=True)", r"\bparams\b"),
    ("gradient32-Y-fewer-rows", "gradient32(Y=np.ones((2, 1), f32))", r"\bY\b"),
    ("gradient32-row-weight-too-short", "gradient32(row_weight=np.ones(2, f32))", r"\brow_weight\b"),
    ("gradient32-row-weight-empty-float64", "gradient32(row_weight=none)", r"^row_weight " + MIXED),
    ("gradient32-grad-float64", "gradient32(grad=np.empty(5))", r"^grad " + MIXED),
    ("train32-state-too-short", "train32(state=np.zeros((2, 4), f32))", r"\bstate\b"),
    ("train32-state-one-row", "train32(state=np.zeros((1, 5), f32))", r"\bstate\b"),
    ("train32-params-too-long", "train32(params=np.ones(6, f32))", r"\bparams\b"),
    ("train32-grad-too-short", "train32(grad=np.empty(4, f32))", r"\bgrad\b"),
    ("train32-row-weight-too-long", "train32(row_weight=np.ones(4, f32))", r"\brow_weight\b"),
    ("train32-state-float64", "train32(state=np.zeros((2, 5)))", r"^state " + MIXED),
    ("train32-params-float64", "train32(params=params.copy())", r"^params " + MIXED),
    ("train32-hyper-float32", "train32(hyper=hyper.astype(f32))", r"\bhyper\b.*float64"),
    # train_epoch
    ("train-order-entry-too-large", "train(order=np.array([2, 3, 1], np.int64))", r"\border\b"),
    ("train-order-entry-huge", "train(order=np.array([0, 2**62, 1], np.int64))", r"\border\b"),
    ("train-order-entry-negative", "train(order=np.array([0, -1, 1], np.int64))", r"\border\b"),
    ("train-order-too-long-and-out-of-range", "train(order=np.array([0, 1, 2, 3], np.int64))", r"\border\b"),
    ("train-order-float64", "train(order=np.array([0.0, 1.0, 2.0]))", r"\border\b"),
    ("train-order-int32", "train(order=np.array([0, 1, 2], np.int32))", r"\border\b"),
    ("train-order-strided", "train(order=np.repeat(np.arange(3, dtype=np.int64), 2)[::2])", r"\border\b"),
    ("train-batch-size-zero", "train(batch_size=0)", r"\bbatch_size\b"),
    ("train-batch-size-negative", "train(batch_size=-2)", r"\bbatch_size\b"),
    ("train-batch-size-float", "train(batch_size=2.5)", r"\bbatch_size\b"),
    ("train-block-rows-zero", "train(block_rows=0)", r"\bblock_rows\b.*>= 1"),
    ("train-block-rows-float", "train(block_rows=64.0)", r"\bblock_rows\b.*integer"),
    ("train-optimizer-unknown", "train(optimizer=3)", r"\boptimizer\b"),
    ("train-optimizer-negative", "train(optimizer=-1)", r"\boptimizer\b"),
    ("train-derivative-unknown", "train(derivative=2)", r"\bderivative\b"),
    ("train-loss-unknown", "train(loss=len(spec.LOSSES))", r"\bloss\b"),
    ("train-hyper-too-short", "train(hyper=hyper[:4].copy())", r"\bhyper\b"),
    ("train-hyper-without-alpha", "train(hyper=hyper[:5].copy())", r"\bhyper\b.*HYPER_FIELDS"),
    ("train-hyper-too-long", "train(hyper=np.append(hyper, 0.0))", r"\bhyper\b"),
    ("train-state-too-short", "train(state=np.zeros((2, 4)))", r"\bstate\b"),
    ("train-state-one-row", "train(state=np.zeros(5))", r"\bstate\b"),
    ("train-state-read-only", "train(state=readonly(np.zeros((2, 5))))", r"\bstate\b|read-?only|writ"),
    ("train-state-float32", "train(state=np.zeros((2, 5), f32))", r"^state " + MIXED),
    ("train-step-too-long", "train(step=np.zeros(2, np.int64))", r"\bstep\b"),
    ("train-step-empty", "train(step=np.zeros(0, np.int64))", r"\bstep\b"),
    ("train-step-float64", "train(step=np.zeros(1))", r"\bstep\b"),
    ("train-step-read-only", "train(step=readonly(np.zeros(1, np.int64)))", r"\bstep\b|read-?only|writ"),
    ("train-params-read-only", "train(params=readonly(params))", r"\bparams\b|read-?only|writ"),
    ("train-params-too-short", "train(params=params[:4].copy())", r"\bparams\b"),
    ("train-params-for-bias", "train(has_bias=True)", r"\bparams\b"),
    ("train-grad-too-long", "train(grad=np.empty(6))", r"\bgrad\b"),
    ("train-grad-read-only", "train(grad=readonly(grad))", r"\bgrad\b|read-?only|writ"),
    ("train-Y-fewer-rows", "train(Y=Y[:2].copy())", r"\bY\b"),
    ("train-row-weight-too-short", "train(row_weight=np.ones(2))", r"\brow_weight\b"),
    ("train-X-float32", "train(X=X32, params=params.copy(), state=np.zeros((2, 5)), grad=np.empty(5))",
     r"^Y " + MIXED),
    ("train-row-weight-float32", "train(row_weight=np.ones(3, f32))", r"^row_weight " + MIXED),
    ("train-grad-float32", "train(grad=np.empty(5, f32))", r"^grad " + MIXED),
    ("train-X-no-rows", "train(X=np.empty((0, 4)), Y=np.empty((0, 1)), order=np.empty(0, np.int64))",
     r"\bX\b"),
]
