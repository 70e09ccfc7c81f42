"""Native backend: a thin wrapper over the C kernels of ``fastnet._native``.

The kernels (``kernels/network.c``) stream the batch in tiles of
``TILE_ROWS`` rows, keep each tile feature-major so every inner loop
vectorises, use their own vectorisable ``exp`` and ``expm1`` (for the
sigmoid, tanh and softmax, each argument in ``[-clamp, 0]``), and allocate
their work memory once per call.  Every activation of ``fastnet.spec``
is a case outside the loops: tanh as ``copysign(-m / (2 + m), z)``,
``m = expm1(-min(2|z|, clamp))``; relu; linear; softmax row-wise over the
output layer's units, ``e_j / sum_k e_k`` with
``e_j = exp(-min(max_k z_k - z_j, clamp))``.  For "cross_entropy" the
gradient and the epoch never soft-max the output in place: the loss is
``-sum_j y_j (z_j - lse)`` from the logits z (finite for any z) and the
output delta ``w (p s - y)``, ``s = sum_j y_j``.  ``train_epoch`` adds the
L2 penalty's gradient ``alpha r W_l`` (``fastnet.backends.penalty_normaliser``)
to each batch's normalised gradient before the update.  Batches are cut into
blocks of ``fastnet.backends.block_rows`` rows that run on OpenMP threads, each
into its own partial gradient, added in block order: results are bitwise
identical for any thread count (see ``set_num_threads``).  As in the Numba
backend, one parallel wave takes as many blocks as ``PARTIAL_GRADIENT_BYTES``
of partial gradients allow, so threads are started (and wait for each
other) rarely, and blocks are handed out dynamically, so a thread slowed
down by other processes does not hold the wave up.  The kernels
release the GIL while they run; ``train_epoch`` runs a whole epoch in C.

The C code is compiled once per instruction-set variant (baseline x86-64,
AVX2 + FMA, AVX-512; only the baseline elsewhere) and the best variant the
CPU runs is chosen at import (``simd()`` says which, ``FASTNET_SIMD`` forces
one), so one wheel runs on any CPU of its architecture; a build with
``FASTNET_MARCH_NATIVE=ON`` has one variant tuned for the building machine.
The variants compute the same formulas; with FMA they round differently.

Arrays pass straight through the buffer protocol: ``Network`` has already
made them C-contiguous, all float64 or all float32 (``sizes``, the
activation codes, ``order`` and ``step`` int64; ``hyper`` always float64).
X's dtype picks the kernels: the C code is written once
(``kernels/network_impl.h``) and compiled for double and for float; float32
runs in float32 throughout, except for the loss sums, the total row weight
and the loss and penalty normalisers, kept in double.
The float32 kernels clamp exp's and expm1's arguments at
``SIGMOID_CLAMP_FLOAT32`` and use degree-7 polynomials, as the Numba
backend's.  The extension still checks dtypes (TypeError for a float array
whose dtype differs from X's), exact lengths, codes (softmax only in the
last layer; "cross_entropy" exactly with a softmax output, "bce" only with
a sigmoid one) and the range of every ``order`` entry, raising
ValueError/TypeError rather than ever touching memory outside an array, and
MemoryError if its work memory cannot be allocated.
"""

from fastnet import _native
from fastnet.backends import block_rows


def forward(model, X, out):
    """Write the activations of the last layers that fill the flat ``out`` (every layer's,
    or the output layer's alone: the contract in ``fastnet.backends``) for X:
    A_{l+1} = f_l(A_l @ W_l + b_l), float64 or float32, in blocks of ``fastnet.backends.block_rows`` rows."""
    _native.forward(X, model.params, model.layout.sizes, model.activations, model.layout.has_bias,
                    block_rows(X.shape[0], model.layout), out)


def gradient(model, rows, grad):
    """Write the gradient of sum_i w_i e_i into ``grad`` (packed like params); return
    that unnormalised sum (the contract in ``fastnet.backends``)."""
    return _native.gradient(rows.X, rows.Y, rows.sample_weight, model.params, model.layout.sizes,
                            model.activations, model.layout.has_bias, model.derivative, model.loss,
                            block_rows(rows.X.shape[0], model.layout), grad)


def train_epoch(model, rows, order, batch_size, optimizer, grad):
    """One epoch of mini-batch training in C, updating params and optimizer state in
    place; returns sum_i w_i e_i over the epoch (the contract in ``fastnet.backends``).
    ``optimizer.hyper`` is rounded to params' dtype inside the kernel."""
    return _native.train_epoch(rows.X, rows.Y, rows.sample_weight, order, batch_size, model.params,
                               model.layout.sizes, model.activations, model.layout.has_bias,
                               model.derivative, model.loss,
                               optimizer.code, optimizer.hyper, optimizer.state, optimizer.step,
                               block_rows(min(int(batch_size), _visits(rows, order)), model.layout), grad)


def _visits(rows, order):
    """How many rows an epoch visits: those of ``order``, or all when it is empty."""
    return order.shape[0] if order.shape[0] else rows.X.shape[0]


def set_num_threads(n):
    """Use up to ``n >= 1`` threads (default: all cores, ``omp_get_max_threads()``).

    Results do not depend on ``n``.  Without OpenMP, and in a child process
    forked after the kernels were first used (OpenMP's threads do not
    survive ``fork``), the kernels use one thread.
    """
    _native.set_num_threads(n)


def get_num_threads():
    """The number of threads the kernels use."""
    return _native.get_num_threads()


def simd():
    """The instruction-set variant of the C kernels this process runs: "baseline",
    "avx2" (AVX2 + FMA), "avx512" (AVX-512 + AVX2 + FMA), or "native" in a build
    made with ``-Ccmake.define.FASTNET_MARCH_NATIVE=ON``.

    The portable build (the default) compiles the kernels once per variant and
    picks, at import, the best one the CPU runs; the environment variable
    ``FASTNET_SIMD`` forces one (the import fails with a RuntimeError naming the
    choices when the CPU lacks it or the build has no such variant).
    """
    return _native.simd()


def simd_variants():
    """Every variant compiled into this build, worst first, mapped to whether this
    CPU runs it: the values ``FASTNET_SIMD`` may take here."""
    return _native.simd_variants()
