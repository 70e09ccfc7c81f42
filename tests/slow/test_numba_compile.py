"""A fresh process compiles only the Numba kernels a network uses, and ``_rows`` once per dtype.

Slow: one fresh interpreter with a private, initially empty NUMBA_CACHE_DIR.
"""

import json
import textwrap

import pytest

from conftest import TESTS_DIR, run_python

pytestmark = pytest.mark.slow

#: Kernels whose compiled signatures the child reports.
KERNELS = ["_rows", "_pass", "_train_batches", "_blocks", "_add_products", "_add_streamed_products",
           "_accumulate_weight_gradient", "_add_outer_weight_gradient", "_sigmoid_tile", "_tanh_tile",
           "_relu_tile", "_softmax_tile", "_sigmoid_slope", "_sigmoid_article_slope", "_tanh_slope", "_relu_slope",
           "_squared_error_delta", "_binary_cross_entropy_delta", "_softmax_cross_entropy_delta",
           "_write_activations", "_sgd_update", "_momentum_update", "_adam_update", "_add_penalty"]


def test_a_sigmoid_gradient_compiles_no_other_activation_or_loss_and_later_calls_reuse_rows(tmp_path):
    """A first sigmoid-mse gradient compiles only its own kernels (no training loop); a fit,
    a predict and gradients in parallel blocks add the training loop, their update, writer
    and parallel kernel but no second ``_rows``; a relu-softmax classifier adds its
    activation, slope and loss, not a second training loop; the L2 penalty compiles
    only for the first fit with alpha > 0; a wide network adds the register-blocked
    products and the outer-product weight gradient, which the narrow ones never reach."""
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        sys.path.insert(0, {TESTS_DIR!r})
        from fastnet import Network
        from fastnet.backends import numba_kernels as kernels
        from conftest import random_data
        def compiled():
            return {{name: len(getattr(kernels, name).signatures) for name in {KERNELS!r}}}
        X, y = random_data([4, 8, 1], 20_000, seed=1)
        net = Network([4, 8, 1], backend="numba", seed=0)
        net.gradients(X[:1000], y[:1000])
        first = compiled()
        net.fit(X[:1000], y[:1000], batch_size=32, optimizer="adam")
        net.predict(X[:1000])
        net.gradients(X, y)
        net.fit(X, y, batch_size=10_000)
        later = compiled()
        labels = np.eye(3)[np.arange(1000) % 3]
        Network([4, 6, 3], backend="numba", activation="relu", output="softmax", seed=0).fit(
            X[:1000], labels, batch_size=32, optimizer="adam")
        classifier = compiled()
        net.fit(X[:1000], y[:1000], batch_size=32, optimizer="adam", alpha=1e-3)
        penalised = compiled()
        X_wide, y_wide = random_data([20, 16, 1], 1000, seed=2)
        Network([20, 16, 1], backend="numba", seed=0).gradients(X_wide, y_wide)
        print(json.dumps([first, later, classifier, penalised, compiled()]))
    """)
    result = run_python("-c", code, timeout=900, extra_env={"NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")})
    assert result.returncode == 0, result.stdout + result.stderr
    first, later, classifier, penalised, wide = json.loads(result.stdout.splitlines()[-1])
    used = {"_rows", "_pass", "_add_streamed_products", "_accumulate_weight_gradient", "_sigmoid_tile",
            "_sigmoid_slope", "_squared_error_delta"}
    assert first == {name: int(name in used) for name in KERNELS}
    # Fit, predict and the parallel blocks run the same _rows; each optimizer its own update.
    assert later == {**first, "_train_batches": 1, "_blocks": 1, "_write_activations": 1, "_adam_update": 1,
                     "_sgd_update": 1}
    # A relu-softmax classifier adds its own kernels, not a second _rows.
    assert classifier == {**later, "_relu_tile": 1, "_relu_slope": 1, "_softmax_cross_entropy_delta": 1}
    assert penalised == {**classifier, "_add_penalty": 1}
    # Layers of 16 or more: the register blocks, in kernels of their own.
    assert wide == {**penalised, "_add_products": 1, "_add_outer_weight_gradient": 1}
