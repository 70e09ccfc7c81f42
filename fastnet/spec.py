"""What fastnet's layers, losses and optimizers ARE: the one specification.

Name-keyed tables, each entry carrying the integer code that every backend
(NumPy, Numba, C) dispatches on and the properties the rest of fastnet
reads.  The C kernels get these codes and the hyper-parameter layout from a
header generated from this file at build time (``kernels/generate_header.py``),
so nothing here is ever copied by hand.

This module imports nothing outside the standard library: the build runs it
without numpy.  Adding an activation is an entry in ``ACTIVATIONS``, one
elementwise function per backend, and its tests.
"""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Activation:
    """A layer's nonlinearity ``a = f(z)``.

    ``slope``: f' written with the output a, or None for softmax, which is
    never differentiated on its own (its loss fuses the output delta).
    ``hidden`` / ``output``: where a network may use it.  ``range``: the
    closed interval of its outputs, which targets must lie in (None: any).
    """

    code: int
    formula: str
    slope: str | None
    hidden: bool
    output: bool
    range: tuple | None = None


@dataclass(frozen=True)
class Derivative:
    """How the backward pass turns a layer's output into the slope it multiplies by."""

    code: int
    formula: str


@dataclass(frozen=True)
class Loss:
    """A loss over rows: ``e_i`` per row, summed with row weights w_i.

    ``mean`` losses divide that sum by the total row weight W, and
    ``per_output`` ones also by the number of outputs n_L (a mean over
    elements).  ``outputs``: the output activations it may follow.
    ``fused_output``: the output activation whose derivative cancels against
    the loss's, so the output delta is fused to ``a - y`` (None: the delta is
    ``2 (a - y) f'(a)``).
    """

    code: int
    row_error: str
    mean: bool
    per_output: bool
    outputs: tuple
    fused_output: str | None = None


@dataclass(frozen=True)
class Optimizer:
    """An update rule; ``state_rows`` rows of per-parameter state (velocity, moments)."""

    code: int
    update: str
    default_lr: float
    state_rows: int


ACTIVATIONS = {
    "sigmoid": Activation(0, "1 / (1 + exp(-z))", "a (1 - a)", hidden=True, output=True, range=(0.0, 1.0)),
    "tanh": Activation(1, "sign(z) (-m) / (2 + m), m = expm1(-min(2 |z|, clamp))", "1 - a^2",
                       hidden=True, output=False),
    "relu": Activation(2, "max(z, 0)", "1 if a > 0 else 0", hidden=True, output=False),
    "linear": Activation(3, "z", "1", hidden=False, output=True),
    "softmax": Activation(4, "exp(z_j - max_k z_k) / sum_k exp(z_k - max_k z_k) over the layer's units",
                          None, hidden=False, output=True, range=(0.0, 1.0)),
}

DERIVATIVES = {
    "exact": Derivative(0, "f'(z) from the output a, the activation's slope (a (1 - a) for the sigmoid)"),
    "article": Derivative(1, "the blog series' s(a) (1 - s(a)): the sigmoid's derivative formula applied to its output"),
}

#: ``row_error`` is e_i summed over the row's outputs j.
LOSSES = {
    "sse": Loss(0, "sum_j (a_ij - y_ij)^2", mean=False, per_output=False, outputs=("sigmoid", "linear")),
    "mse": Loss(1, "sum_j (a_ij - y_ij)^2", mean=True, per_output=True, outputs=("sigmoid", "linear")),
    "bce": Loss(2, "-sum_j [y log a + (1 - y) log(1 - a)], each log at least BCE_LOG_FLOOR",
                mean=True, per_output=True, outputs=("sigmoid",), fused_output="sigmoid"),
    "cross_entropy": Loss(3, "-sum_j y_ij (z_ij - lse_i), lse_i = max_k z_ik + log sum_k exp(z_ik - max_k z_ik), "
                             "z the output layer's pre-activations (log-softmax: finite for any z)",
                          mean=True, per_output=False, outputs=("softmax",), fused_output="softmax"),
}

#: Defaults: the article's 1.0 for plain SGD, smaller where the optimizer accumulates steps.
OPTIMIZERS = {
    "sgd": Optimizer(0, "p -= lr g", default_lr=1.0, state_rows=0),
    "momentum": Optimizer(1, "v = mu v + g; p -= lr v", default_lr=0.1, state_rows=1),
    "adam": Optimizer(2, "t += 1; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; "
                         "p -= lr_t (m / (sqrt(v) + eps_t)), lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), "
                         "eps_t = eps sqrt(1 - b2^t)",
                      default_lr=0.001, state_rows=2),
}

#: The fields of the float64 hyper-parameter vector every backend's update reads, in order.
#: ``alpha`` is the L2 penalty ``alpha/2 sum W^2`` on the weights (not the
#: biases), taken with the loss's row normaliser: its gradient ``alpha r W``
#: is added to each batch's gradient before the update, r = 1/W for the mean
#: losses (W the batch's total row weight) and 1 for "sse"; see
#: ``penalty_normaliser`` in ``fastnet.backends``.
HYPER_FIELDS = ("lr", "momentum", "beta1", "beta2", "eps", "alpha")

#: Rows of optimizer state every network keeps (the most any optimizer needs).
STATE_ROWS = max(optimizer.state_rows for optimizer in OPTIMIZERS.values())

#: Adam's standard constants (Kingma & Ba; torch.optim.Adam's defaults).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

#: Binary cross-entropy takes each log as at least this (as torch.nn.BCELoss),
#: so an output of exactly 0 or 1 still gives a finite loss.
BCE_LOG_FLOOR = -100.0


HIDDEN_ACTIVATIONS = tuple(name for name, entry in ACTIVATIONS.items() if entry.hidden)
OUTPUT_ACTIVATIONS = tuple(name for name, entry in ACTIVATIONS.items() if entry.output)


def default_loss(output):
    """The loss a network gets when none is named: "cross_entropy" after softmax, else "mse"."""
    return "cross_entropy" if output == "softmax" else "mse"


def adam_scalars(lr, beta1, beta2, eps, t):
    """(lr_t, eps_t) of Adam's step t >= 1 (see OPTIMIZERS), in float64:
    lr sqrt(1 - b2^t) / (1 - b1^t) and eps sqrt(1 - b2^t).

    With them, p -= lr_t (m / (sqrt(v) + eps_t)) is Kingma & Ba's
    lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) up to rounding, with
    one division and one square root per parameter instead of three
    divisions and a root, which bound the step's speed.  math.pow, as C's
    pow, so every backend gets the same float64 values; plain Python that
    Numba also compiles (fastnet.backends.numba_kernels)."""
    root = math.sqrt(1.0 - math.pow(beta2, t))
    return lr * root / (1.0 - math.pow(beta1, t)), eps * root


def hyper_index(field):
    """Position of ``field`` (one of HYPER_FIELDS) in the hyper-parameter vector."""
    return HYPER_FIELDS.index(field)


def c_header_lines():
    """The codes above as C enums, their counts and names for error messages, each
    loss's ``mean`` and ``per_output`` as initialisers indexed by code
    (``FN_LOSS_MEAN_FLAGS``, ``FN_LOSS_PER_OUTPUT_FLAGS``), and the
    hyper-parameter layout: the body of the header the build generates."""
    lines = []
    for prefix, table in (("ACTIVATION", ACTIVATIONS), ("DERIVATIVE", DERIVATIVES),
                          ("LOSS", LOSSES), ("OPTIMIZER", OPTIMIZERS)):
        entries = ", ".join(f"FN_{prefix}_{name.upper()} = {entry.code}" for name, entry in table.items())
        lines.append(f"enum {{ {entries}, FN_N_{prefix} = {len(table)} }};")
        names = ", ".join(f"{entry.code} ({name})" for name, entry in table.items())
        lines.append(f'#define FN_{prefix}_NAMES "{names}"')
    for flag in ("mean", "per_output"):
        values = ", ".join(str(int(getattr(entry, flag))) for entry in sorted(LOSSES.values(), key=lambda e: e.code))
        lines.append(f"#define FN_LOSS_{flag.upper()}_FLAGS {{{values}}}")
    fields = ", ".join(f"FN_HYPER_{name.upper()} = {i}" for i, name in enumerate(HYPER_FIELDS))
    lines.append(f"enum {{ {fields}, FN_N_HYPER = {len(HYPER_FIELDS)} }};")
    lines.append(f"#define FN_STATE_ROWS {STATE_ROWS}")
    lines.append(f"#define FN_BCE_LOG_FLOOR ({BCE_LOG_FLOOR!r})")
    return lines
