"""NetworkClassifier and NetworkRegressor: scikit-learn's own estimator checks, then the
contract of issue 9 (section 3 and its bad input), against independent oracles:
scikit-learn's MLPClassifier/MLPRegressor (same updates from the same weights), hand-written
losses, repeated rows for integer weights, and scikit-learn's model-selection tools.
"""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_blobs, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastnet
from fastnet import Network, NetworkClassifier, NetworkRegressor

#: The backend the tests below train on.
BACKEND = "numba"

#: scikit-learn's checks that each estimator is known to fail, with the reason (at most three).
EXPECTED_FAILED_CHECKS = {
    NetworkClassifier: {},
    NetworkRegressor: {},
}

#: Small and fast, yet able to fit the checks' data sets (their accuracy and R^2 thresholds).
CHECKED = [
    NetworkClassifier(hidden_layer_sizes=(10,), max_iter=100, learning_rate_init=0.01, backend=BACKEND),
    NetworkRegressor(hidden_layer_sizes=(10,), max_iter=100, learning_rate_init=0.01, backend=BACKEND),
]


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS[type(estimator)])
def test_scikit_learn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# -- data ----------------------------------------------------------------------------

def blobs(n=120, classes=3, seed=0):
    X, y = make_blobs(n_samples=n, centers=classes, n_features=4, random_state=seed)
    return StandardScaler().fit_transform(X), y


def regression(n=100, targets=1, seed=0):
    X, y = make_regression(n_samples=n, n_features=5, n_targets=targets, noise=0.1, random_state=seed)
    return StandardScaler().fit_transform(X), y / y.std()


def classifier(**settings):
    return NetworkClassifier(**{"hidden_layer_sizes": (8,), "random_state": 0, "backend": BACKEND, **settings})


def regressor(**settings):
    return NetworkRegressor(**{"hidden_layer_sizes": (8,), "random_state": 0, "backend": BACKEND, **settings})


def quietly(estimator, *args, **kwargs):
    """``estimator.fit(*args)`` without ConvergenceWarning (small max_iter on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(*args, **kwargs)


def same_parameters(a, b, rtol=0.0, atol=0.0):
    for left, right in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(left, right, rtol=rtol, atol=atol)


# -- importing -----------------------------------------------------------------------

def run_python(code, cwd):
    """``code`` in a fresh interpreter, outside the source tree (so it imports the installed fastnet)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_import_fastnet_does_not_import_scikit_learn(tmp_path):
    result = run_python("import sys, fastnet; fastnet.Network; print('sklearn' in sys.modules)", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_without_scikit_learn_the_estimators_name_the_extra(tmp_path):
    result = run_python("import sys; sys.modules['sklearn'] = None\n"
                        "import fastnet\n"
                        "try:\n    fastnet.NetworkClassifier\nexcept ImportError as e:\n    print(e)", tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'pip install "fastnet-kernels[sklearn]"' in result.stdout


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NetworkThing"):
        fastnet.NetworkThing


# -- what MLP computes ---------------------------------------------------------------

def mlp_from(estimator, mlp_class, X, y, **settings):
    """An MLP with ``estimator``'s current weights, ready to continue with ``settings``
    (MLP has no initial-weights argument: one epoch sets it up, then its weights are replaced)."""
    mlp = mlp_class(hidden_layer_sizes=estimator.hidden_layer_sizes, activation=estimator.activation,
                    max_iter=1, random_state=0, **settings)
    quietly(mlp, X, y)
    mlp.coefs_ = [w.copy() for w in estimator.coefs_]
    mlp.intercepts_ = [b.copy() for b in estimator.intercepts_]
    return mlp.set_params(warm_start=True)


@pytest.mark.parametrize("make, mlp_class, data", [
    (classifier, MLPClassifier, blobs(classes=2)),
    (classifier, MLPClassifier, blobs(classes=3)),
    (regressor, MLPRegressor, regression(targets=1)),
    (regressor, MLPRegressor, regression(targets=3)),
], ids=["binary", "multiclass", "regression", "regression-3-targets"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_updates_are_mlps_from_the_same_weights(make, mlp_class, data, momentum):
    """fastnet's loss is k times MLP's; with alpha, lr rescaled the weights follow MLP's exactly."""
    X, y = data
    settings = dict(solver="sgd", momentum=momentum, alpha=0.01, learning_rate_init=0.05, batch_size=30,
                    shuffle=False, tol=0.0, n_iter_no_change=1000)
    ours = quietly(make(activation="tanh", max_iter=2, **settings), X, y)
    mlp = mlp_from(ours, mlp_class, X, y, nesterovs_momentum=False, **settings)
    quietly(ours.set_params(warm_start=True, max_iter=6), X, y)
    quietly(mlp.set_params(max_iter=6), X, y)
    same_parameters(ours, mlp, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("make, mlp_class, data, scale", [
    (classifier, MLPClassifier, blobs(classes=2), 1.0),
    (classifier, MLPClassifier, blobs(classes=3), 1.0),
    (regressor, MLPRegressor, regression(targets=1), 2.0),
], ids=["binary", "multiclass", "regression"])
def test_full_batch_loss_curve_is_mlps_times_k(make, mlp_class, data, scale):
    """loss_ is fastnet's loss plus the L2 term: MLP's loss_ times k (module docstring), exactly
    for full-batch training."""
    X, y = data
    settings = dict(solver="sgd", momentum=0.0, alpha=0.1, learning_rate_init=0.1, batch_size=len(X),
                    tol=0.0, n_iter_no_change=1000)
    ours = quietly(make(activation="logistic", max_iter=1, **settings), X, y)
    mlp = mlp_from(ours, mlp_class, X, y, **settings)
    quietly(ours.set_params(warm_start=True, max_iter=4), X, y)
    quietly(mlp.set_params(max_iter=4), X, y)
    np.testing.assert_allclose(ours.loss_curve_[1:], scale * np.array(mlp.loss_curve_[1:]), rtol=1e-10)
    assert ours.loss_ == ours.loss_curve_[-1]


def relu(z):
    return np.maximum(z, 0.0)


def test_loss_is_the_data_loss_plus_the_penalty_by_hand():
    """Full batch, multiclass: loss_ = mean over rows of -log p(true class) + alpha/(2n) sum W^2,
    at the weights the epoch started from."""
    X, y = blobs(classes=3)
    alpha = 0.5
    model = quietly(classifier(solver="sgd", alpha=alpha, batch_size=len(X), max_iter=3), X, y)
    W, b = [w.copy() for w in model.coefs_], [v.copy() for v in model.intercepts_]
    quietly(model.set_params(warm_start=True, max_iter=1), X, y)
    logits = relu(X @ W[0] + b[0]) @ W[1] + b[1]
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    data = -log_p[np.arange(len(y)), y].mean()
    penalty = alpha / (2 * len(X)) * sum((w ** 2).sum() for w in W)
    assert model.loss_ == pytest.approx(data + penalty, rel=1e-12)


def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(StandardScaler().fit_transform(X), y, test_size=0.25, random_state=0, stratify=y)


def digits_accuracies(seeds, **settings):
    """Test accuracy on digits of NetworkClassifier and of MLPClassifier with the same settings, per seed."""
    X_train, X_test, y_train, y_test = digits_split()
    ours, theirs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for seed in seeds:
            model = NetworkClassifier(random_state=seed, backend=BACKEND, **settings)
            ours.append(model.fit(X_train, y_train).score(X_test, y_test))
            theirs.append(MLPClassifier(random_state=seed, **settings).fit(X_train, y_train).score(X_test, y_test))
    return np.array(ours), np.array(theirs)


def test_digits_accuracy_matches_mlp_small():
    """A small network briefly trained on digits: test accuracy within 1 point of MLPClassifier's."""
    ours, theirs = digits_accuracies(range(2), hidden_layer_sizes=(32,), max_iter=30)
    assert ours.mean() >= theirs.mean() - 0.01 and ours.mean() > 0.9


@pytest.mark.slow
def test_digits_accuracy_matches_mlp():
    """scikit-learn's defaults on digits: test accuracy within 1 point of MLPClassifier's (mean of 5 seeds)."""
    ours, theirs = digits_accuracies(range(5))
    assert ours.mean() >= theirs.mean() - 0.01 and ours.mean() > 0.95


def test_stops_when_mlp_stops():
    """With a tol no epoch can meet, training stops after n_iter_no_change + 2 epochs, as MLP's
    (the first epoch improves on an infinite best loss; then n_iter_no_change + 1 do not)."""
    X, y = blobs()
    ours = classifier(tol=1e9, n_iter_no_change=3).fit(X, y)
    mlp = MLPClassifier(hidden_layer_sizes=(8,), tol=1e9, n_iter_no_change=3, random_state=0).fit(X, y)
    assert ours.n_iter_ == mlp.n_iter_ == 5
    assert len(ours.loss_curve_) == 5 and ours.t_ == 5 * len(X)
    assert ours.best_loss_ == min(ours.loss_curve_)
    assert ours.validation_scores_ is None and ours.best_validation_score_ is None


def test_convergence_warning_when_max_iter_is_reached():
    X, y = blobs()
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\)"):
        classifier(max_iter=3).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        classifier(max_iter=50, tol=1e9, n_iter_no_change=2).fit(X, y)


def test_verbose_prints_each_epoch(capsys):
    X, y = blobs()
    quietly(classifier(max_iter=3, verbose=True), X, y)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == ["Iteration 1", "Iteration 2", "Iteration 3"]


# -- fitted attributes, labels, outputs --------------------------------------------------

def test_fitted_attributes_multiclass():
    X, y = blobs(classes=3)
    model = quietly(classifier(hidden_layer_sizes=(6, 5), max_iter=5), X, y)
    assert list(model.classes_) == [0, 1, 2]
    assert (model.n_features_in_, model.n_outputs_, model.n_layers_, model.n_iter_) == (4, 3, 4, 5)
    assert model.out_activation_ == "softmax"
    assert (model.network_.output, model.network_.loss, model.network_.activation) == ("softmax", "cross_entropy",
                                                                                       "relu")
    assert [w.shape for w in model.coefs_] == [(4, 6), (6, 5), (5, 3)]
    assert [b.shape for b in model.intercepts_] == [(6,), (5,), (3,)]
    assert isinstance(model.network_, Network) and model.network_.layers == [4, 6, 5, 3]
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(model.predict_log_proba(X), np.log(proba))


def test_binary_has_one_sigmoid_output_and_two_probability_columns():
    X, y = blobs(classes=2)
    model = quietly(classifier(max_iter=20), X, y)
    assert model.out_activation_ == "logistic" and model.n_outputs_ == 1
    assert (model.network_.output, model.network_.loss) == ("sigmoid", "bce")
    proba = model.predict_proba(X)
    p = model.network_.forward(X)[:, 0]
    np.testing.assert_allclose(proba, np.column_stack([1 - p, p]))
    np.testing.assert_array_equal(model.predict(X), np.where(p > 0.5, 1, 0))


def test_string_labels_give_the_same_model_as_their_codes():
    X, y = blobs(classes=3)
    names = np.array(["cat", "ant", "bee"])[y]  # sorted: ant=1, bee=2, cat=0 -> a different column order
    by_name = quietly(classifier(max_iter=10), X, names)
    order = np.argsort(["cat", "ant", "bee"])
    codes = np.argsort(order)[y]  # the sorted position of each row's name
    by_code = quietly(classifier(max_iter=10), X, codes)
    assert list(by_name.classes_) == ["ant", "bee", "cat"]
    np.testing.assert_array_equal(by_name.predict_proba(X), by_code.predict_proba(X))
    np.testing.assert_array_equal(by_name.predict(X), by_name.classes_[by_code.predict(X)])


def test_multilabel():
    X, Y = make_multilabel_classification(n_samples=80, n_features=6, n_classes=4, random_state=0)
    model = quietly(classifier(max_iter=100, learning_rate_init=0.01), X, Y)
    assert model.out_activation_ == "logistic" and model.n_outputs_ == 4
    assert (model.network_.output, model.network_.loss) == ("sigmoid", "bce")
    assert list(model.classes_) == [0, 1, 2, 3]
    proba = model.predict_proba(X)
    assert proba.shape == (80, 4)
    np.testing.assert_array_equal(model.predict(X), (proba > 0.5).astype(int))
    mlp = quietly(MLPClassifier(hidden_layer_sizes=(8,), max_iter=100, learning_rate_init=0.01, random_state=0), X, Y)
    assert model.score(X, Y) > max(0.35, mlp.score(X, Y) - 0.1)  # subset accuracy; chance is about 1/16


def test_regressor_predict_follows_y_shape():
    X, y = regression(targets=1)
    assert quietly(regressor(max_iter=5), X, y).predict(X).shape == (100,)
    assert quietly(regressor(max_iter=5), X, y[:, None]).predict(X).shape == (100, 1)
    X, Y = regression(targets=3)
    model = quietly(regressor(max_iter=5), X, Y)
    assert model.predict(X).shape == (100, 3) and model.n_outputs_ == 3
    assert model.out_activation_ == "identity" and (model.network_.output, model.network_.loss) == ("linear", "mse")


def test_regressor_fits_targets_far_outside_0_1():
    X, y = regression()
    y = 25 + 300 * (y - y.min()) / np.ptp(y)
    model = NetworkRegressor(hidden_layer_sizes=(20,), learning_rate_init=0.1, max_iter=300, random_state=0,
                             backend=BACKEND)
    assert quietly(model, X, y).score(X, y) > 0.99


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = blobs()
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    model = quietly(classifier(max_iter=3), frame, y)
    assert list(model.feature_names_in_) == ["a", "b", "c", "d"]
    with pytest.warns(UserWarning, match="feature names"):
        unnamed = model.predict(X)
    np.testing.assert_array_equal(model.predict(frame), unnamed)
    with pytest.raises(ValueError, match="feature names"):
        model.predict(frame[["b", "a", "c", "d"]])


# -- training modes ------------------------------------------------------------------

def test_partial_fit_keeps_adams_state():
    """Full-batch partial_fit twice takes the same steps as a fit of two epochs: the second call
    continues Adam's moments and step count (a fresh Adam would differ)."""
    X, y = blobs()
    settings = dict(batch_size=len(X), learning_rate_init=0.01, shuffle=False)
    streamed = classifier(**settings)
    streamed.partial_fit(X, y, classes=[0, 1, 2])
    streamed.partial_fit(X, y)
    whole = quietly(classifier(max_iter=2, tol=0.0, **settings), X, y)
    same_parameters(streamed, whole)
    assert (streamed.n_iter_, streamed.t_, len(streamed.loss_curve_)) == (1, 2 * len(X), 2)
    restarted = classifier(**settings)
    restarted.partial_fit(X, y, classes=[0, 1, 2])
    quietly(restarted.set_params(warm_start=True, max_iter=1), X, y)  # a fit: a fresh optimizer
    assert not np.allclose(restarted.coefs_[0], whole.coefs_[0])


def test_partial_fit_with_classes_absent_from_the_first_batch():
    X, y = blobs(classes=3)
    model = classifier()
    model.partial_fit(X[y < 2], y[y < 2], classes=np.array([0, 1, 2]))
    assert list(model.classes_) == [0, 1, 2] and model.n_outputs_ == 3
    assert model.predict_proba(X).shape == (len(X), 3)
    model.partial_fit(X[y == 2], y[y == 2])
    assert model.t_ == len(X)


def test_warm_start_continues_from_network_():
    """Plain full-batch SGD keeps no optimizer state, so 3 epochs then 2 warm-started ones are
    the 5 epochs of one fit; and without warm_start a refit starts over."""
    X, y = blobs()
    settings = dict(solver="sgd", momentum=0.0, batch_size=len(X), tol=0.0, learning_rate_init=0.1)
    warm = quietly(classifier(max_iter=3, **settings), X, y)
    quietly(warm.set_params(warm_start=True, max_iter=2), X, y)
    whole = quietly(classifier(max_iter=5, **settings), X, y)
    same_parameters(warm, whole, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(warm.loss_curve_, whole.loss_curve_, rtol=1e-13)
    assert warm.n_iter_ == 2 and warm.t_ == 5 * len(X)
    cold = quietly(classifier(max_iter=3, **settings), X, y)
    quietly(cold.set_params(max_iter=2), X, y)
    same_parameters(cold, quietly(classifier(max_iter=2, **settings), X, y))


def test_early_stopping_restores_the_best_epoch():
    """The parameters kept are those of the epoch with the best validation score: a second run
    that ends at that epoch (same split, same updates) has them."""
    X, y = blobs(n=300, classes=3, seed=1)
    settings = dict(early_stopping=True, validation_fraction=0.2, n_iter_no_change=5, learning_rate_init=0.05,
                    max_iter=200)
    model = classifier(**settings).fit(X, y)
    scores = model.validation_scores_
    best = int(np.argmax(scores))
    assert model.best_validation_score_ == scores[best] and model.best_loss_ is None
    assert best + 1 < model.n_iter_ < 200  # it trained past the best epoch, then stopped...
    until_best = quietly(classifier(**{**settings, "max_iter": best + 1}), X, y)
    assert until_best.validation_scores_ == scores[:best + 1]
    same_parameters(model, until_best)  # ...and went back to it


def test_early_stopping_split_is_stratified():
    """A class of one row cannot be split in proportion: only a stratified split refuses it."""
    X, y = blobs(n=100, classes=2)
    y[0] = 2
    with pytest.raises(ValueError, match="stratified by class"):
        classifier(early_stopping=True).fit(X, y)
    model = quietly(classifier(early_stopping=True, validation_fraction=0.2, max_iter=3), X, np.minimum(y, 1))
    assert model.t_ == 3 * 80 and len(model.validation_scores_) == 3


@pytest.mark.parametrize("solver, momentum", [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.9)])
@pytest.mark.parametrize("make, data", [(classifier, blobs()), (regressor, regression())],
                         ids=["classifier", "regressor"])
def test_integer_sample_weight_equals_repeated_rows(make, data, solver, momentum):
    X, y = data
    weights = np.random.default_rng(0).integers(0, 4, len(X))
    assert weights.sum() < 200  # batch_size="auto" is then the whole data set, weighted or repeated
    settings = dict(solver=solver, momentum=momentum, alpha=0.01, max_iter=5, learning_rate_init=0.05)
    weighted = quietly(make(**settings), X, y, sample_weight=weights)
    repeated = quietly(make(**settings), np.repeat(X, weights, axis=0), np.repeat(y, weights, axis=0))
    same_parameters(weighted, repeated, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-10)


# -- scikit-learn's tools -------------------------------------------------------------

def test_pipeline():
    X, y = blobs(classes=3)
    pipe = quietly(make_pipeline(StandardScaler(), classifier(max_iter=50, learning_rate_init=0.01)), X * 50 + 3, y)
    assert pipe.score(X * 50 + 3, y) > 0.9


def test_clone_copies_parameters_not_fit():
    model = quietly(classifier(max_iter=2, alpha=0.3), *blobs())
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        copy.predict(blobs()[0])


def test_pickle_round_trip_predicts_the_same():
    X, y = blobs()
    model = quietly(classifier(max_iter=5), X, y)
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert back.loss_curve_ == model.loss_curve_
    back.partial_fit(X, y)  # and it can go on training


def test_cross_val_score_is_the_loop_it_stands_for():
    X, y = regression()
    folds = KFold(3, shuffle=True, random_state=0)
    model = regressor(max_iter=20, learning_rate_init=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(model, X, y, cv=folds)
        by_hand = [clone(model).fit(X[train], y[train]).score(X[test], y[test]) for train, test in folds.split(X)]
    np.testing.assert_allclose(scores, by_hand, rtol=1e-12)


def test_grid_search_in_two_processes():
    X, y = blobs(classes=3)
    grid = {"alpha": [1e-4, 10.0], "hidden_layer_sizes": [(2,), (8,)]}
    model = classifier(max_iter=30, learning_rate_init=0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(model, grid, cv=3, n_jobs=2).fit(X, y)
        serial = GridSearchCV(model, grid, cv=3, n_jobs=1).fit(X, y)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])
    assert search.best_params_ == serial.best_params_
    refit = quietly(clone(model).set_params(**search.best_params_), X, y)
    np.testing.assert_array_equal(search.predict_proba(X), refit.predict_proba(X))


# -- reproducibility ------------------------------------------------------------------

BACKEND_CASES = {
    "binary-logistic": (NetworkClassifier, lambda: blobs(classes=2), dict(activation="logistic", alpha=0.0)),
    "softmax-relu-alpha": (NetworkClassifier, lambda: blobs(classes=3), dict(activation="relu", alpha=1e-2)),
    "softmax-tanh-sgd": (NetworkClassifier, lambda: blobs(classes=4), dict(activation="tanh", solver="sgd",
                                                                          learning_rate_init=0.1)),
    "linear-relu-alpha": (NetworkRegressor, lambda: regression(targets=2), dict(activation="relu", alpha=1e-2)),
}


@pytest.mark.parametrize("case", list(BACKEND_CASES))
def test_same_random_state_same_model_on_every_backend_and_thread_count(case):
    """numba and native agree exactly on the predicted labels (and to 1e-9 on the outputs),
    with any thread count, and within 1e-9 of the NumPy reference."""
    estimator, data, settings = BACKEND_CASES[case]
    X, y = data()
    settings = dict(max_iter=10, batch_size=16, random_state=3, hidden_layer_sizes=(8,), **settings)

    def outputs(model):
        return model.predict_proba(X) if estimator is NetworkClassifier else model.predict(X)
    reference_model = quietly(estimator(backend="numpy", **settings), X, y)
    reference = outputs(reference_model)
    threads = fastnet.get_num_threads()
    try:
        for n_threads in sorted({1, threads}):
            fastnet.set_num_threads(n_threads)
            for backend in ("numba", "native"):
                model = quietly(estimator(backend=backend, **settings), X, y)
                np.testing.assert_allclose(outputs(model), reference, rtol=0, atol=1e-9)
                if estimator is NetworkClassifier:
                    np.testing.assert_array_equal(model.predict(X), reference_model.predict(X))
    finally:
        fastnet.set_num_threads(threads)


def test_random_state_none_draws_new_weights():
    X, y = blobs()
    a = quietly(classifier(random_state=None, max_iter=1), X, y)
    b = quietly(classifier(random_state=None, max_iter=1), X, y)
    assert not np.array_equal(a.coefs_[0], b.coefs_[0])


# -- bad input ------------------------------------------------------------------------

@pytest.fixture
def no_training(monkeypatch):
    """Network.fit and partial_fit fail the test if called: bad input is refused before training."""
    def refuse(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(Network, "fit", refuse)
    monkeypatch.setattr(Network, "partial_fit", refuse)


def fitted_state(model):
    """What a failed call must leave as it was."""
    return {name: (value if not isinstance(value, list) else list(value)) for name, value in vars(model).items()
            if name != "network_"}, model.network_.state()["params"].copy()


BAD_SETTINGS = [
    ("activation", "softplus", "activation"),
    ("solver", "lbfgs", "solver"),
    ("alpha", -1.0, "alpha"),
    ("validation_fraction", 0.0, "validation_fraction"),
    ("validation_fraction", 1.0, "validation_fraction"),
    ("validation_fraction", 1.5, "validation_fraction"),
    ("hidden_layer_sizes", (10, 0), "hidden_layer_sizes"),
    ("batch_size", 0, "batch_size"),
    ("learning_rate_init", 0.0, "learning_rate_init"),
    ("max_iter", 0, "max_iter"),
    ("momentum", 1.5, "momentum"),
    ("beta_1", 1.0, "beta_1"),
    ("epsilon", 0.0, "epsilon"),
    ("n_iter_no_change", 0, "n_iter_no_change"),
    ("tol", -1.0, "tol"),
    ("shuffle", "yes", "shuffle"),
    ("backend", "torch", "backend"),
    ("dtype", "int32", "dtype"),
    ("random_state", -1, "random_state"),
]


@pytest.mark.parametrize("make", [classifier, regressor], ids=["classifier", "regressor"])
@pytest.mark.parametrize("name, value, named", BAD_SETTINGS, ids=[f"{n}={v!r}" for n, v, _ in BAD_SETTINGS])
def test_bad_parameter_is_refused_at_fit(make, name, value, named, no_training):
    X, y = (blobs() if make is classifier else regression())
    model = make(**{name: value})  # __init__ only stores
    with pytest.raises(ValueError, match=f"'{named}' parameter"):
        model.fit(X, y)
    with pytest.raises(NotFittedError):
        model.predict(X)


def bad_inputs():
    X, y = blobs(n=60, classes=3)
    nan, inf = X.copy(), X.copy()
    nan[3, 1], inf[5, 2] = np.nan, np.inf
    return X, y, [
        ("fit", (nan, y), {}, ValueError, "NaN"),
        ("fit", (inf, y), {}, ValueError, "infinity"),
        ("fit", (X, y[:-1]), {}, ValueError, "inconsistent numbers of samples"),
        ("fit", (X, np.zeros(len(X), int)), {}, ValueError, "one class"),
        ("fit", (X, X[:, 0]), {}, ValueError, "Unknown label type"),
        ("fit", (X, y), {"sample_weight": -np.ones(len(X))}, ValueError, "sample_weight"),
        ("fit", (X, y), {"sample_weight": np.ones(3)}, ValueError, "sample_weight"),
        ("partial_fit", (X, np.where(y == 2, 7, y)), {}, ValueError, "classes"),
        ("partial_fit", (X[:, :3], y), {}, ValueError, "features"),
        ("predict", (X[:, :3],), {}, ValueError, "features"),
        ("predict", (nan,), {}, ValueError, "NaN"),
        ("predict_proba", (X[:, :3],), {}, ValueError, "features"),
    ]


@pytest.mark.parametrize("case", range(len(bad_inputs()[2])), ids=[f"{c[0]}-{c[4]}" for c in bad_inputs()[2]])
def test_bad_input_leaves_a_fitted_classifier_as_it_was(case, monkeypatch):
    X, y, cases = bad_inputs()
    method, args, kwargs, error, match = cases[case]
    model = quietly(classifier(max_iter=3), X, y)
    before, params = fitted_state(model)
    expected = model.predict_proba(X)
    monkeypatch.setattr(Network, "fit", lambda *a, **k: pytest.fail("training started"))
    monkeypatch.setattr(Network, "partial_fit", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(error, match=match):
        getattr(model, method)(*args, **kwargs)
    after, params_after = fitted_state(model)
    assert after.keys() == before.keys()
    assert all(after[name] is before[name] or after[name] == before[name] for name in before
               if not isinstance(before[name], np.ndarray))
    np.testing.assert_array_equal(params_after, params)
    np.testing.assert_array_equal(model.predict_proba(X), expected)


def test_partial_fit_needs_classes_first(no_training):
    X, y = blobs()
    model = classifier()
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        model.partial_fit(X, y)
    with pytest.raises(ValueError, match=r"classes not in classes_"):
        model.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(NotFittedError):
        model.predict(X)
    assert not hasattr(model, "classes_")


def test_partial_fit_refuses_other_classes_later():
    X, y = blobs()
    model = classifier()
    model.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="not the same as on the first call"):
        model.partial_fit(X, y, classes=[0, 1, 2, 3])


def test_early_stopping_with_too_few_rows(no_training):
    X, y = regression(n=10)
    model = regressor(early_stopping=True, validation_fraction=0.1)
    with pytest.raises(ValueError, match="validation set is too small.*validation_fraction"):
        model.fit(X, y)
    X, y = blobs(n=12, classes=3)
    with pytest.raises(ValueError, match="validation_fraction"):
        classifier(early_stopping=True, validation_fraction=0.1).fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        regressor(early_stopping=True).partial_fit(X, y)


def test_not_fitted_before_fit():
    X, _ = blobs()
    for model in (classifier(), regressor()):
        for method in ("predict",) + (("predict_proba",) if isinstance(model, NetworkClassifier) else ()):
            with pytest.raises(NotFittedError):
                getattr(model, method)(X)
        with pytest.raises(AttributeError):
            model.coefs_


def test_warm_start_refuses_a_different_network():
    X, y = blobs()
    model = quietly(classifier(max_iter=2), X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        model.set_params(warm_start=True, hidden_layer_sizes=(3,)).fit(X, y)
    with pytest.raises(ValueError, match="same classes"):
        model.set_params(hidden_layer_sizes=(8,)).fit(X[y < 2], y[y < 2])
    assert model.network_.layers == [4, 8, 3]


def test_divergence_is_an_error_and_leaves_the_estimator_as_it_was():
    X, y = regression()
    model = quietly(regressor(max_iter=2), X, y)
    before, curve = model.predict(X), list(model.loss_curve_)
    with pytest.raises(fastnet.DivergenceError):
        quietly(model.set_params(solver="sgd", momentum=0.0, learning_rate_init=1.0, warm_start=True), X, y * 1e200)
    np.testing.assert_array_equal(model.predict(X), before)
    assert model.loss_curve_ == curve
