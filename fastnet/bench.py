"""Timing harness and peers shared by ``fastnet bench`` and ``benchmarks/compare.py``.

Contenders are timed in alternating passes (A B C, C B A, A B C), a few
calls each after untimed warm-up calls, so a noisy shared machine slows
them alike and compilation is never timed.  The peers (PyTorch,
JAX, scikit-learn) are built only when installed; each builder returns None
otherwise.  Nothing here is imported by ``import fastnet``.
"""

import os
import platform
import time

import numpy as np

import fastnet
from fastnet import Network

#: fastnet's backends, in the order tables show them.
BACKENDS = ("numpy", "numba", "native")

#: Untimed calls before each contender's timed ones last at least this long.
#: PyTorch's and OpenBLAS's worker threads keep spinning for a while after
#: their last call; on two cores they took the CPUs from the next contender
#: and doubled its time.  Calls (rather than a sleep) also keep the clock up.
WARM_UP_SECONDS = 0.5


def warm_up(call, seconds=WARM_UP_SECONDS):
    """Call ``call`` untimed: once, then again until ``seconds`` have passed."""
    start = time.perf_counter()
    call()
    while time.perf_counter() - start < seconds:
        call()


def time_interleaved(contenders, rounds, passes=3, warm_up_seconds=WARM_UP_SECONDS):
    """Median seconds of each callable of the dict ``contenders``, timed in alternating passes.

    Each pass visits every contender in turn (in reversed order on odd
    passes): untimed calls for ``warm_up_seconds`` (at least one), then
    ``rounds // passes`` timed calls (at least one).  Noise on a shared
    machine thus hits all contenders alike.
    """
    samples = {name: [] for name in contenders}
    per_pass = max(1, rounds // passes)
    for index in range(passes):
        names = list(contenders) if index % 2 == 0 else list(reversed(contenders))
        for name in names:
            warm_up(contenders[name], warm_up_seconds)
            for _ in range(per_pass):
                start = time.perf_counter()
                contenders[name]()
                samples[name].append(time.perf_counter() - start)
    return {name: float(np.median(times)) for name, times in samples.items()}


def networks(layers, bias=True, derivative="exact", loss="mse", seed=0, dtype="float64", backends=BACKENDS):
    """One Network per backend (sigmoid layers), all with the same initial parameters."""
    base = Network(layers, backend="numpy", bias=bias, derivative=derivative, loss=loss, seed=seed, dtype=dtype)
    return {backend: Network(layers, backend=backend, bias=bias, derivative=derivative, loss=loss, dtype=dtype,
                             weights=base.weights, biases=base.biases)
            for backend in backends}


def _torch():
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_model(layers, bias, dtype="float64"):
    """nn.Sequential of Linear + Sigmoid layers in ``dtype``, or None without torch."""
    torch = _torch()
    if torch is None:
        return None
    modules = []
    for fan_in, fan_out in zip(layers[:-1], layers[1:]):
        modules += [torch.nn.Linear(fan_in, fan_out, bias=bias, dtype=getattr(torch, dtype)), torch.nn.Sigmoid()]
    return torch.nn.Sequential(*modules)


def torch_gradient(layers, X, y, bias, loss):
    """PyTorch autograd: one full-batch loss.backward() of squared errors ("sse"
    sums, else the mean), or None without torch."""
    model = torch_model(layers, bias, X.dtype.name)
    if model is None:
        return None
    import torch
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    reduction = "sum" if loss == "sse" else "mean"

    def run():
        model.zero_grad()
        torch.nn.functional.mse_loss(model(tX), ty, reduction=reduction).backward()
    return run


def torch_epoch(X, y, layers, batch_size, lr, optimizer="sgd", loss="mse"):
    """A plain PyTorch epoch: nn.Sequential of sigmoid layers, optim.SGD or optim.Adam
    (``optimizer``), MSELoss or binary cross-entropy (``loss`` "mse" or "bce"), shuffled
    batches; None without torch."""
    model = torch_model(layers, True, X.dtype.name)
    if model is None:
        return None
    import torch
    optimizers = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
    losses = {"mse": torch.nn.functional.mse_loss, "bce": torch.nn.functional.binary_cross_entropy}
    return _epoch_loop(torch, model, optimizers[optimizer](model.parameters(), lr=lr), losses[loss],
                       torch.from_numpy(X), torch.from_numpy(y), batch_size)


def torch_softmax_epoch(X, labels, layers, activation, batch_size, lr):
    """A plain PyTorch epoch of a softmax classifier: nn.Sequential (hidden ``activation``),
    cross-entropy on logits, optim.Adam, shuffled batches; None without torch."""
    torch = _torch()
    if torch is None:
        return None
    dtype = torch.float32 if X.dtype == np.float32 else torch.float64
    hidden = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh}[activation]
    modules = []
    for fan_in, fan_out in zip(layers[:-2], layers[1:-1]):
        modules += [torch.nn.Linear(fan_in, fan_out, dtype=dtype), hidden()]
    model = torch.nn.Sequential(*modules, torch.nn.Linear(layers[-2], layers[-1], dtype=dtype))
    return _epoch_loop(torch, model, torch.optim.Adam(model.parameters(), lr=lr), torch.nn.functional.cross_entropy,
                       torch.from_numpy(X), torch.from_numpy(labels), batch_size)


def _epoch_loop(torch, model, optimizer, loss, tX, ty, batch_size):
    """A callable running one plain PyTorch epoch: shuffled batches, ``loss(model(x), y).backward()``,
    one optimizer step each."""
    def run():
        for rows in torch.randperm(len(tX)).split(batch_size):
            optimizer.zero_grad()
            loss(model(tX[rows]), ty[rows]).backward()
            optimizer.step()
    return run


def _jax():
    """The jax module with float64 enabled (float32 arrays stay float32), or None when it is not installed."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return jax


def _jax_network(jax, layers, bias, dtype, seed=0, hidden="sigmoid", output="sigmoid"):
    """(params, apply) for JAX: params a list of (W, b) pairs (b None without bias), initialised
    as PyTorch's Linear does; apply(params, X) the output of the layers."""
    jnp = jax.numpy
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(layers[:-1], layers[1:]):
        bound = 1 / np.sqrt(fan_in)
        W = jnp.asarray(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype))
        b = jnp.asarray(rng.uniform(-bound, bound, fan_out).astype(dtype)) if bias else None
        params.append((W, b))
    functions = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh, "linear": lambda z: z}

    def apply(params, X):
        for index, (W, b) in enumerate(params):
            z = X @ W if b is None else X @ W + b
            X = functions[hidden if index + 1 < len(params) else output](z)
        return X
    return params, apply


def jax_gradient(layers, X, y, bias, loss):
    """JAX: one jit-compiled full-batch ``jax.value_and_grad`` of squared errors ("sse" sums,
    else the mean) through sigmoid layers, or None without jax."""
    jax = _jax()
    if jax is None:
        return None
    jnp = jax.numpy
    params, apply = _jax_network(jax, layers, bias, X.dtype)
    reduce = jnp.sum if loss == "sse" else jnp.mean
    step = jax.jit(jax.value_and_grad(lambda params, X, y: reduce((apply(params, X) - y) ** 2)))
    jX, jy = jnp.asarray(X), jnp.asarray(y)

    def run():
        jax.block_until_ready(step(params, jX, jy))
    return run


def _jax_epoch_loop(jax, params, state, step, X, Y, batch_size, seed=0):
    """A callable running one epoch: shuffled batches, one jit-compiled ``step`` (gradient and
    update, rows gathered inside it) per batch; params and optimizer state carry over."""
    jnp = jax.numpy
    jX, jY, rng, carry = jnp.asarray(X), jnp.asarray(Y), np.random.default_rng(seed), [params, state]

    def run():
        order = rng.permutation(len(X))
        for first in range(0, len(X), batch_size):
            carry[0], carry[1] = step(carry[0], carry[1], jX, jY, jnp.asarray(order[first:first + batch_size]))
        jax.block_until_ready(carry[0])
    return run


def jax_epoch(X, y, layers, batch_size, lr):
    """A plain JAX epoch (sigmoid layers, mean squared error, SGD, shuffled batches, a
    jit-compiled step per batch), or None without jax."""
    jax = _jax()
    if jax is None:
        return None
    jnp = jax.numpy
    params, apply = _jax_network(jax, layers, True, X.dtype)
    loss = lambda params, X, y: jnp.mean((apply(params, X) - y) ** 2)  # noqa: E731

    @jax.jit
    def step(params, state, X, Y, rows):
        grads = jax.grad(loss)(params, X[rows], Y[rows])
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), state
    return _jax_epoch_loop(jax, params, None, step, X, y, batch_size)


def jax_softmax_epoch(X, labels, layers, activation, batch_size, lr, betas=(0.9, 0.999), eps=1e-8):
    """A plain JAX epoch of a softmax classifier (hidden ``activation``, cross-entropy on the
    logits, Adam written out, shuffled batches, a jit-compiled step per batch), or None without jax."""
    jax = _jax()
    if jax is None:
        return None
    jnp = jax.numpy
    params, apply = _jax_network(jax, layers, True, X.dtype, hidden=activation, output="linear")
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = (zeros, zeros, jnp.zeros((), X.dtype))

    def loss(params, X, labels):
        logits = apply(params, X)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

    @jax.jit
    def step(params, state, X, labels_all, rows):
        grads = jax.grad(loss)(params, X[rows], labels_all[rows])
        first, second, t = state
        t = t + 1
        first = jax.tree_util.tree_map(lambda m, g: betas[0] * m + (1 - betas[0]) * g, first, grads)
        second = jax.tree_util.tree_map(lambda v, g: betas[1] * v + (1 - betas[1]) * g * g, second, grads)
        correction1, correction2 = 1 - betas[0] ** t, 1 - betas[1] ** t
        params = jax.tree_util.tree_map(
            lambda p, m, v: p - lr * (m / correction1) / (jnp.sqrt(v / correction2) + eps), params, first, second)
        return params, (first, second, t)
    return _jax_epoch_loop(jax, params, state, step, X, labels, batch_size)


def sklearn_epoch(X, y, hidden, batch_size, lr):
    """scikit-learn's MLPRegressor(solver="sgd", logistic hidden layers), one epoch per
    call, or None without scikit-learn."""
    try:
        from sklearn.neural_network import MLPRegressor
    except ImportError:
        return None
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    model = MLPRegressor(hidden_layer_sizes=hidden, activation="logistic", solver="sgd", batch_size=batch_size,
                         learning_rate_init=lr, momentum=0.0, max_iter=1, shuffle=True, random_state=0)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(X, y.ravel())
    return run


def machine_line(peers=True):
    """One line: the machine, cores, threads, the versions of Python, numpy, numba,
    fastnet and (``peers``) the peers, the native kernels' SIMD variant, and today's date."""
    import numba
    versions = [f"Python {platform.python_version()}", f"numpy {np.__version__}", f"numba {numba.__version__}",
                f"fastnet {fastnet.__version__}"]
    for peer in ("torch", "jax", "sklearn") if peers else ():
        try:
            versions.append(f"{peer} {__import__(peer).__version__}")
        except ImportError:
            versions.append(f"{peer} not installed")
    from fastnet.backends import native
    return (f"{platform.machine()}, {os.cpu_count()} cores, {fastnet.get_num_threads()} threads; "
            f"{', '.join(versions)}; native kernels: {native.simd()}; {time.strftime('%Y-%m-%d')}")


def side_by_side(layers, rows, batch_size, dtype="float64", rounds=9, quick=False, seed=0, peers=True):
    """Median seconds of a full-batch gradient and of one mini-batch SGD epoch
    (lr 0.1, mean squared error, sigmoid layers) for each backend and, with
    ``peers``, each installed peer.

    Returns ``{contender: {"gradient": s or None, "epoch": s or None}}``,
    backends first.  ``quick``: one pass, one timed call, no warm-up beyond
    one untimed call.
    """
    rng = np.random.default_rng(seed)
    X = rng.random((rows, layers[0])).astype(dtype)
    y = rng.random((rows, layers[-1])).astype(dtype)
    timing = {"rounds": 1, "passes": 1, "warm_up_seconds": 0.0} if quick else {"rounds": rounds}
    nets = networks(layers, dtype=dtype, seed=seed)
    gradient = {name: (lambda net=net: net.gradients(X, y)) for name, net in nets.items()}
    for name, build in (("torch", torch_gradient), ("jax", jax_gradient)) if peers else ():
        peer = build(layers, X, y, True, "mse")
        if peer is not None:
            gradient[name] = peer
    epoch = {name: (lambda net=net: net.fit(X, y, batch_size=batch_size, lr=0.1, seed=seed))
             for name, net in nets.items()}
    peer_epochs = ((("torch", torch_epoch(X, y, layers, batch_size, 0.1)),
                    ("jax", jax_epoch(X, y, layers, batch_size, 0.1)),
                    ("sklearn", sklearn_epoch(X, y, tuple(layers[1:-1]), batch_size, 0.1))) if peers else ())
    for name, peer in peer_epochs:
        if peer is not None:
            epoch[name] = peer
    gradient_times = time_interleaved(gradient, **timing)
    epoch_times = time_interleaved(epoch, **{**timing, "rounds": max(1, timing["rounds"] // 3)})
    names = list(dict.fromkeys([*gradient, *epoch]))
    return {name: {"gradient": gradient_times.get(name), "epoch": epoch_times.get(name)} for name in names}


def markdown_table(times, reference="numba"):
    """``side_by_side``'s times as a Markdown table: milliseconds and how many
    times slower than ``reference`` each contender is."""
    def cell(name, kind):
        seconds = times[name][kind]
        if seconds is None:
            return "- | -"
        base = times.get(reference, {}).get(kind)
        return f"{seconds * 1e3:.2f} | {seconds / base:.2f}x" if base else f"{seconds * 1e3:.2f} | -"
    lines = [f"| contender | full-batch gradient, ms | time / {reference}'s | one epoch, ms | time / {reference}'s |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {cell(name, 'gradient')} | {cell(name, 'epoch')} |" for name in times]
    return "\n".join(lines)
