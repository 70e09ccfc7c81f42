"""Data-parallel training and prediction on Dask (``pip install "fastnet-kernels[dask]"``).

``fit(net, X, y, ...)`` trains a ``Network`` in place on dask arrays chunked
by rows, ``predict(net, X)`` is a lazy dask array, ``evaluate(net, X, y)``
a float.  The data never leaves the workers: each row chunk is validated
and converted once where it lives and kept there for the whole fit; what
moves are the network's parameters (kilobytes) and the chunks' partial
sums, added by a fixed tree (groups of FAN_IN neighbours, in chunk order),
never in the order the workers answer.  The client drives the loop and
applies every update, as XGBoost's and LightGBM's Dask interfaces do.

How a step travels
------------------
Each worker's chunks are held, for one fit, by a Dask actor on that worker
(``_Holder``).  A step is one method call on one of them, the holder of
the most chunks: the parameters go straight to its worker (or through the
scheduler's proxy, as the client is configured); it starts the same call
on the other holders, computes its own chunks meanwhile, adds their
answers (each holder adds the groups of the tree it holds whole first)
and answers the client with the tree's root.  A task per chunk would do
the same arithmetic, but every task passes through the scheduler's
bookkeeping and several more messages between the processes, which costs
more than a small step's computing.

The promises
------------
``batch_size=None`` (full batch, synchronous): each epoch is one gradient
step whose gradient is the sum of the chunks' unnormalised sums
(``fastnet.backends``), normalised once, so the result equals
``net.fit(X.compute(), y.compute(), batch_size=None, ...)`` to 1e-12
relative on the same backend, and is bitwise identical from run to run and
for any number of workers given the same chunking (only the order of the
floating-point additions differs from one machine: chunk by chunk here,
block by block there).

``batch_size=k`` (local SGD): every chunk trains its own replica of the
network for ``sync_every`` epochs of shuffled mini-batches of k of its own
rows (one seeded random stream per chunk and round), then the replicas'
parameters and optimizer state are averaged, weighted by their rows, in
chunk order.  Deterministic for a given seed and chunking whatever the
worker count or timing, but NOT single-machine mini-batch SGD: batches
never mix rows of different chunks, each replica takes its own steps from
the same start, and averaging the replicas is not the same as taking their
steps one after another.

If a worker dies, its holder dies with it: the step is abandoned, Dask
recomputes the lost chunks from their source on the workers left, new
holders are made where the chunks now are and the step runs again (up to
Dask's own ``distributed.scheduler.allowed-failures`` times in a row):
the same numbers, so the same result.
"""

try:
    import dask
    import dask.array as da
    import distributed
except ImportError as error:  # pragma: no cover - exercised in a subprocess without dask
    raise ImportError('fastnet.dask needs Dask and its distributed scheduler: '
                      'pip install "fastnet-kernels[dask]"') from error

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fastnet import _validation as check
from fastnet import spec, training
from fastnet.backends import Model, load, loss_normaliser, penalty_normaliser, reference, weight_total
from fastnet.network import Network, exclusive

__all__ = ["fit", "predict", "evaluate"]

#: Partial results added by one node of the reduction tree: a step over c
#: chunks adds ceil(log_FAN_IN(c)) levels of nodes over the chunks' own sums.
FAN_IN = 8

#: Seconds between looks, while a holder's answer is awaited, at whether Dask
#: has reported the holder's worker lost (a call to a dead worker may otherwise
#: wait out Dask's connect timeout).  Only waiting steps look: a step that is
#: answered sooner is not delayed.
LOST_WORKER_POLL = 0.1


# -- what moves between client and workers -----------------------------------------


class _Replica:
    """What a worker needs to run the network's kernels: the backend's name and the
    network's ``Model`` less its parameters (which come with every task)."""

    def __init__(self, net):
        self.backend = net.backend
        self.layout = net.layout
        self.activations = net._activation_codes
        self.derivative = spec.DERIVATIVES[net.derivative].code
        self.loss = spec.LOSSES[net.loss].code

    def model(self, params):
        """The backend's ``Model`` over a writable copy of ``params``: kernels compiled for
        writable parameters are reused (a read-only array, as a deserialised one may be,
        would be a new Numba signature), and training updates the copy."""
        return Model(np.array(params, copy=True), self.layout, self.activations, self.derivative, self.loss)


class _Sums(NamedTuple):
    """One chunk's (or several chunks') ``sum_i w_i e_i`` and its gradient (None when
    only the loss is wanted)."""

    errors: float
    grad: "np.ndarray | None"


class _Replicas(NamedTuple):
    """Local SGD replicas, weighted by their rows: sums of ``n_c`` times each chunk's
    parameters, optimizer state and step count (float64), of ``n_c``, and of the
    ``sum_i w_i e_i`` of each chunk's last epoch."""

    errors: float
    rows: int
    params: np.ndarray
    state: np.ndarray
    step: int


class _Snapshot:
    """A network's state (without the optimizer's) inside a lazy graph: a plain object,
    so Dask does not look into it for keys, and a copy, so later training of the
    network does not change what the graph computes."""

    def __init__(self, net):
        self.state = net.state()
        self.state["optimizer"] = None

    def network(self):
        """A fresh Network of this state (one per task: a Network is not shared by threads)."""
        return Network.from_state(self.state)


# -- worker-side functions -------------------------------------------------------------


def _chunk_names(index, first, n_rows):
    """What messages call chunk ``index`` of X, y and sample_weight."""
    where = f"chunk {index} (rows {first} to {first + n_rows - 1})"
    return f"X {where}", f"y {where}", f"sample_weight {where}"


def _checked_chunk(snapshot, index, first, X, y, sample_weight):
    """Chunk ``index`` (starting at row ``first``) validated and converted by the network's
    own checks, as ``Rows`` with its raw weights (empty for none); errors name the chunk."""
    X_name, y_name, w_name = _chunk_names(index, first, len(X))
    rows = snapshot.network()._rows(X, y, None, names=(X_name, y_name))
    if sample_weight is None:
        return rows
    weights = check.float_array(sample_weight, w_name, rows.X.dtype)
    if weights.shape != (rows.X.shape[0],):
        raise ValueError(f"{w_name} must have shape ({rows.X.shape[0]},), one weight per row; got {weights.shape}")
    if (weights < 0).any():
        raise ValueError(f"{w_name} must be >= 0; it holds negative weights")
    return rows._replace(sample_weight=weights)


def _weight_summary(rows):
    """(largest weight, W = sum of weights in float64) of a chunk with weights."""
    return rows.sample_weight.max(), weight_total(rows.sample_weight, rows.X.shape[0])


def _scaled(rows, largest):
    """The chunk with its weights divided by ``largest``, the largest weight of ALL
    chunks, kept as its ``weight_scale``: elementwise the same weights and the same
    scale as ``Network._rows`` gives the whole data."""
    return rows._replace(sample_weight=rows.sample_weight / rows.sample_weight.dtype.type(largest),
                         weight_scale=largest)


def _chunk_sums(replica, params, rows, with_gradient):
    """The chunk's unnormalised sums by the network's backend (``fastnet.backends``)."""
    model = replica.model(params)
    grad = np.empty_like(model.params)
    errors = load(replica.backend).gradient(model, rows, grad)
    return _Sums(errors, grad if with_gradient else None)


def _local_epochs(replica, params, optimizer_state, rows, seed, epochs, batch_size, shuffle):
    """``epochs`` epochs of mini-batch training of one replica on one chunk, from
    ``params`` and the optimizer's ``state_dict``, shuffled by its own generator
    ``seed``; returns the replica as ``_Replicas`` weighted by the chunk's rows."""
    model = replica.model(params)
    optimizer = training.Optimizer.from_state_dict(optimizer_state, model.params.size, model.params.dtype)
    backend, rng, grad = load(replica.backend), np.random.default_rng(seed), np.empty_like(model.params)
    n_rows = rows.X.shape[0]
    for _ in range(epochs):
        order = training.visiting_order(rng, n_rows, shuffle, batch_size)
        errors = backend.train_epoch(model, rows, order, batch_size, optimizer.for_rows(rows), grad)
    return _Replicas(errors, n_rows, n_rows * model.params.astype(np.float64),
                     n_rows * optimizer.state.astype(np.float64), n_rows * int(optimizer.step[0]))


def _add_in_order(*parts):
    """Field-wise sum of partial results (``_Sums`` or ``_Replicas``), in argument order."""
    total = [value.copy() if isinstance(value, np.ndarray) else value for value in parts[0]]
    for part in parts[1:]:
        for field, value in enumerate(part):
            if isinstance(value, np.ndarray):
                total[field] += value
            elif value is not None:
                total[field] = total[field] + value
    return type(parts[0])(*total)


def _subtrees(nodes, n_chunks, add=_add_in_order):
    """``nodes`` ({(level, position): partial result}, level 0 being the chunks) with
    every node of the fixed tree over ``n_chunks`` chunks whose members are all
    present replaced by their sum (``add``), level by level.

    Level l+1's node j adds level l's nodes FAN_IN*j .. FAN_IN*j + FAN_IN - 1 (those
    that exist), in that order, until a level has one node: the root.  Whoever adds
    a node, and whichever worker held its members, it is the same sum of the same
    numbers in the same order.
    """
    nodes, level, count = dict(nodes), 0, n_chunks
    while count > 1:
        for group, first in enumerate(range(0, count, FAN_IN)):
            members = [(level, position) for position in range(first, min(first + FAN_IN, count))]
            if all(member in nodes for member in members):
                nodes[(level + 1, group)] = add(*(nodes.pop(member) for member in members))
        level, count = level + 1, -(-count // FAN_IN)
    return nodes


def _subtree_keys(positions, n_chunks):
    """The keys, sorted, of ``_subtrees`` over the chunks at ``positions``: the order in
    which a holder of those chunks answers its partial results (values only)."""
    return sorted(_subtrees({(0, position): None for position in positions}, n_chunks, add=lambda *parts: None))


class _WorkerLost(Exception):
    """A holder's worker was lost during a call (the step runs again on new holders)."""


def _lost(holder, ask=False):
    """Whether Dask reports the holder future ``holder`` lost with its worker.  A future
    made on a worker stays "pending" (its client is not told of the key's fate), so
    with ``ask`` the scheduler is asked where the holder is: nowhere is lost."""
    if holder.status not in ("pending", "finished"):
        return True
    return ask and not holder.client.who_has([holder]).get(holder.key)


def _called(holder, actor, method, *args):
    """Start ``method(*args)`` on the actor of the holder future ``holder``: an actor
    call (``distributed.BaseActorFuture``), or _WorkerLost if its worker is gone."""
    if _lost(holder):
        raise _WorkerLost(f"the worker of {holder.key} was lost")
    try:
        return getattr(actor, method)(*args)
    except RuntimeError as error:  # Dask's handle refusing the actor of a lost worker
        raise _WorkerLost(f"the worker of {holder.key} was lost: {error}") from None


def _answer(holder, call):
    """What ``call`` (started by ``_called`` on the holder future ``holder``) returns,
    or _WorkerLost: its connection broke, or Dask reported the holder lost while it
    was awaited (a call to a dead worker may otherwise wait out Dask's connect
    timeout).  Any other failure is the call's own, raised as it is."""
    while True:
        try:
            return call.result(timeout=LOST_WORKER_POLL)
        except TimeoutError:
            if _lost(holder, ask=True):
                raise _WorkerLost(f"the worker of {holder.key} was lost") from None
        except OSError as error:
            raise _WorkerLost(f"the worker of {holder.key} was lost: {error}") from None


class _Holder:
    """On a worker, as a Dask actor for one fit (or evaluation): the validated chunks
    (``Rows``) at ``positions`` of all ``n_chunks`` that this worker holds, and the
    network's ``_Replica``.

    Its methods compute every chunk held here and return ``_subtrees`` of their
    partial results.  One holder of a fit, the one the client calls, also has
    the fit's other holders (``adopt``): it starts the same call on them first,
    so that they compute side by side with it, and adds their answers into the
    tree, so that only the tree's root goes back to the client.
    """

    def __init__(self, replica, n_chunks, positions, *rows):
        self.replica, self.n_chunks, self.others, self.gathers = replica, n_chunks, [], False
        self.chunks = dict(zip(positions, rows))
        worker = distributed.get_worker()
        # Several chunks on a worker of several threads run side by side, on the
        # threads its tasks would run on; otherwise here, on the actor's thread.
        self.executor = worker.executor if worker.state.nthreads > 1 and len(rows) > 1 else None

    def adopt(self, others):
        """Be the holder that gathers: the one the client calls, answering the tree's root,
        over the answers of ``others``, (key, actor, positions) of the other holders (their
        futures are made here, on the worker's own client, to hear of their loss)."""
        self.gathers = True
        if others:
            client = distributed.get_client()
            self.others = [(distributed.Future(key, client), actor, _subtree_keys(positions, self.n_chunks))
                           for key, actor, positions in others]

    def _gathered(self, method, args, function):
        """``function(position, rows)`` over the chunks held here and ``method(*args)``
        over the other holders, added by the tree as far as they go: the root for the
        holder that gathers, else the values of ``_subtrees`` in key order."""
        calls = [(future, _called(future, actor, method, *args), keys) for future, actor, keys in self.others]
        positions = list(self.chunks)
        if self.executor is None:
            parts = [function(position, self.chunks[position]) for position in positions]
        else:
            parts = list(self.executor.map(function, positions, [self.chunks[p] for p in positions]))
        nodes = {(0, position): part for position, part in zip(positions, parts)}
        for future, call, keys in calls:
            nodes.update(zip(keys, _answer(future, call)))
        nodes = _subtrees(nodes, self.n_chunks)
        if self.gathers:
            (root,) = nodes.values()
            return root
        return [nodes[key] for key in sorted(nodes)]

    def sums(self, params, with_gradient):
        """``_Sums`` of the chunks at ``params`` (``_chunk_sums``)."""
        return self._gathered("sums", (params, with_gradient),
                              lambda position, rows: _chunk_sums(self.replica, params, rows, with_gradient))

    def local_round(self, params, optimizer_state, entropy, round_index, epochs, batch_size, shuffle):
        """``_Replicas`` of one local SGD round of every chunk (``_local_epochs``), chunk c
        shuffled by ``SeedSequence(entropy, spawn_key=(round_index, c))``."""
        args = (params, optimizer_state, entropy, round_index, epochs, batch_size, shuffle)
        return self._gathered("local_round", args, lambda position, rows: _local_epochs(
            self.replica, params, optimizer_state, rows,
            np.random.SeedSequence(entropy, spawn_key=(round_index, position)), epochs, batch_size, shuffle))


def count_actor_answers(dask_worker):
    """For ``client.run(count_actor_answers)``: from now on, count in the worker's
    ``actor_answer_bytes`` the size of what every answer to an actor's method call
    carries, as Dask counts a task result it sends (``dask.sizeof``).  Dask's transfer
    accounting (``transfer_outgoing_bytes_total``) sees task results only, and the
    chunks' holders answer their calls directly: the two together are what a worker
    sent.  A diagnostic for benchmarks and tests; it wraps a handler of Dask's worker."""
    from dask.sizeof import sizeof

    if hasattr(dask_worker, "actor_answer_bytes"):
        return
    execute = dask_worker.handlers["actor_execute"]

    async def counted(**message):
        answer = await execute(**message)
        carried = answer.get("result", answer.get("exception"))
        dask_worker.actor_answer_bytes += sizeof(getattr(carried, "data", carried))
        return answer
    dask_worker.actor_answer_bytes = 0
    dask_worker.handlers["actor_execute"] = counted


def _predict_block(block, snapshot, block_info=None):
    """The network's output for one row chunk of X; errors name the chunk."""
    net = snapshot.network()
    index = block_info[0]["chunk-location"][0]
    first = block_info[0]["array-location"][0][0]
    return net.forward(net._checked_inputs(block, _chunk_names(index, first, len(block))[0]))


# -- the client side --------------------------------------------------------------------


def _network(net):
    """Refuse anything but a fastnet Network."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a fastnet.Network; got {type(net).__name__}")


def _one_call_at_a_time(function):
    """``function(net, ...)`` after checking ``net``, holding the network's lock as its
    own methods do (``fastnet.network.exclusive``)."""
    locked = exclusive(function)

    @functools.wraps(function)
    def checked(net, *args, **kwargs):
        _network(net)
        return locked(net, *args, **kwargs)
    return checked


def _client(client):
    """``client``, or the current distributed client; ValueError naming ``client`` if none runs."""
    if client is not None:
        if not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client or None; got {type(client).__name__}")
        return client
    try:
        return distributed.default_client()
    except ValueError:
        raise ValueError("client: no Dask client is running and none was given; start one "
                         "(distributed.Client(...), or Client(LocalCluster()) on one machine) "
                         "or pass client=") from None


def _row_chunked(value, name, n_columns, ndims=(2,)):
    """Refuse anything but a dask array of ``ndims`` dimensions with known row chunks and all
    ``n_columns`` columns in every chunk."""
    if not isinstance(value, da.Array):
        raise TypeError(f"{name} must be a dask array chunked by rows (dask.array.from_array(..., "
                        f"chunks=(rows, -1)) or dask.array.from_zarr...); got {type(value).__name__}")
    if value.ndim not in ndims:
        expected = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name} must be {expected}; got shape {value.shape}")
    if any(math.isnan(size) for size in value.chunks[0]):
        raise ValueError(f"{name} has chunks of unknown size; call {name}.compute_chunk_sizes() first")
    if value.ndim == 2:
        if value.shape[1] != n_columns:
            raise ValueError(f"{name} must have {n_columns} columns; got shape {value.shape}")
        if value.numblocks[1] != 1:
            raise ValueError(f"{name} must be chunked by rows only; its columns are cut into chunks "
                             f"{value.chunks[1]}: use {name}.rechunk({{1: -1}})")
    elif n_columns != 1:
        raise ValueError(f"{name} must be 2-D (n_samples, {n_columns}); got shape {value.shape}")
    if value.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row; got shape {value.shape}")
    return value


def _same_rows(X, other, names):
    """Refuse ``other`` (y or sample_weight) unless it has X's rows in X's row chunks."""
    if other.shape[0] != X.shape[0]:
        raise ValueError(f"{names[1]} must have one row per row of {names[0]} ({X.shape[0]}); "
                         f"got {other.shape[0]} rows")
    if other.chunks[0] != X.chunks[0]:
        raise ValueError(f"{names[1]} must be cut into the same row chunks as {names[0]} "
                         f"({X.chunks[0]}); got {other.chunks[0]}: use {names[1]}.rechunk({{0: {names[0]}.chunks[0]}})")


def _first_failure(futures):
    """Wait for ``futures``; raise the exception of the first failed one in chunk order."""
    distributed.wait(futures)
    for future in futures:
        if future.status == "error":
            future.result()


class _Chunks:
    """Row chunks of (X, y, sample_weight), validated and converted on the workers and
    kept there as ``Rows`` futures; ``total_weight`` is W over all chunks (of the
    weights as the kernels see them) and ``weight_scale`` what the caller's weights
    were divided by, as in one ``Rows`` of all the data."""

    def __init__(self, net, client, X, y, sample_weight=None, names=("X", "y")):
        _row_chunked(X, names[0], net.layout.n_inputs)
        _row_chunked(y, names[1], net.layout.n_outputs, ndims=(1, 2))
        _same_rows(X, y, names)
        if sample_weight is not None:
            _row_chunked(sample_weight, "sample_weight", 1, ndims=(1,))
            _same_rows(X, sample_weight, (names[0], "sample_weight"))
        self.client, self.X, self.n_outputs = client, X, net.layout.n_outputs
        self.replica, self.loss = _Replica(net), spec.LOSSES[net.loss]
        self.futures, self.holders, self.weight_scale = [], [], 1.0
        snapshot, firsts = _Snapshot(net), np.cumsum((0,) + X.chunks[0][:-1])
        checked = dask.delayed(_checked_chunk, pure=False)
        Xs, ys = X.to_delayed().ravel(), y.to_delayed().ravel()
        ws = [None] * len(Xs) if sample_weight is None else sample_weight.to_delayed().ravel()
        # Chunks of no rows (left by filtering, say) add nothing; the others keep their index in messages.
        futures = client.compute([checked(snapshot, index, int(first), X_chunk, y_chunk, w_chunk)
                                  for index, (first, X_chunk, y_chunk, w_chunk, n_rows)
                                  in enumerate(zip(firsts, Xs, ys, ws, X.chunks[0])) if n_rows > 0])
        try:
            _first_failure(futures)
            if sample_weight is None:
                self.total_weight = float(X.shape[0])
            else:
                futures = self._scale_weights(futures)
        except BaseException:
            client.cancel(futures)
            raise
        self.futures = futures

    def _scale_weights(self, futures):
        """The chunks with weights over the largest of all of them (mean losses only, as
        ``Network._rows``), after checking that the weights have a positive sum."""
        summaries = self.client.gather([self.client.submit(_weight_summary, f, pure=False) for f in futures])
        largest = float(max(top for top, _ in summaries))
        if not sum(total for _, total in summaries) > 0:
            raise ValueError("sample_weight must be >= 0 with a positive sum")
        if self.loss.mean:
            self.weight_scale = largest
            futures = [self.client.submit(_scaled, f, largest, pure=False) for f in futures]
            summaries = self.client.gather([self.client.submit(_weight_summary, f, pure=False) for f in futures])
        self.total_weight = 0.0
        for _, total in summaries:
            self.total_weight += total
        return futures

    @property
    def normaliser(self):
        """c of ``fastnet.backends.loss_normaliser`` for all the rows."""
        return loss_normaliser(self.loss.code, self.total_weight, self.n_outputs)

    def _hold(self):
        """One ``_Holder`` per worker over the chunks in its memory (after a lost worker,
        once Dask has recomputed them), as (future, actor) pairs, the one that gathers
        first: the holder of the most chunks, which then gathers the fewest answers."""
        _first_failure(self.futures)
        where = self.client.who_has(self.futures)
        positions = {}
        for position, future in enumerate(self.futures):
            # A chunk Dask has just lost (not yet recomputed) goes wherever Dask puts its holder.
            positions.setdefault(min(where.get(future.key, ()), default=None), []).append(position)
        groups = sorted(positions.items(), key=lambda item: -len(item[1]))
        futures = [self.client.submit(_Holder, self.replica, len(self.futures), group,
                                      *(self.futures[p] for p in group), actor=True,
                                      workers=None if address is None else [address], allow_other_workers=True)
                   for address, group in groups]
        self._positions = {future.key: group for future, (_, group) in zip(futures, groups)}
        self.holders = [(future, None) for future in futures]
        # The actors' handles talk to the worker through this client, whichever is the default.
        with self.client.as_current():
            self.holders = [(future, future.result()) for future in futures]
        (first, actor), others = self.holders[0], self.holders[1:]
        _answer(first, _called(first, actor, "adopt", [(future.key, other, self._positions[future.key])
                                                       for future, other in others]))

    def _drop_holders(self):
        """Let the workers drop the holders (not the chunks), however many handles of
        them the gathering holder's worker has."""
        self.client.cancel([future for future, _ in self.holders], force=True)
        self.holders = []

    def _call(self, method, *args):
        """The sum over every chunk, by the fixed tree, of the holders' ``method(*args)``.
        If a worker is lost meanwhile, the holders are made anew where Dask has
        recomputed the chunks and the call runs again: the same numbers."""
        retries = dask.config.get("distributed.scheduler.allowed-failures")
        for _ in range(retries + 1):
            try:
                if not self.holders:
                    self._hold()
                first, actor = self.holders[0]
                return _answer(first, _called(first, actor, method, *args))
            except _WorkerLost as error:
                lost = error
                self._drop_holders()
        raise RuntimeError(f"fastnet.dask: a worker holding chunks was lost {retries + 1} times in a row "
                           f"(distributed.scheduler.allowed-failures = {retries}); last: {lost}") from lost

    def sums(self, params, with_gradient=True):
        """``_Sums`` over every chunk at ``params``, added in chunk order."""
        return self._call("sums", params, with_gradient)

    def loss_at(self, params):
        """The loss of all the rows at ``params``."""
        return self.sums(params, with_gradient=False).errors * self.normaliser

    def local_round(self, params, optimizer, entropy, round_index, epochs, batch_size, shuffle):
        """``_Replicas`` of one local SGD round over every chunk, added in chunk order."""
        return self._call("local_round", params, optimizer.state_dict(), entropy, round_index, epochs, batch_size,
                          shuffle)

    def release(self):
        """Let the workers drop the holders and the chunks."""
        self._drop_holders()
        self.client.cancel(self.futures)
        self.futures = []


@dataclass
class _Plan:
    """A distributed fit's arguments, validated; what ``training.train`` reads."""

    rows: _Chunks
    optimizer: training.Optimizer
    batch_size: "int | None"
    shuffle: bool
    entropy: int
    epochs: int
    sync_every: int
    validation: object = None
    callback: object = None


def _full_batch_epoch(net, plan, epoch, done=None):
    """One synchronous gradient step over every chunk, updated on the client with the
    rule of ``fastnet.backends`` (normalise, L2 penalty, optimizer); its loss before it.
    (``done``, the progress bar's hook within an epoch, has nothing to report: a step is one piece.)"""
    data, optimizer = plan.rows, plan.optimizer
    # The penalty is divided by the caller's total weight, as one machine's epoch does.
    epoch_optimizer = optimizer.for_rows(data)
    alpha = float(epoch_optimizer.hyper[spec.hyper_index("alpha")])

    def work(params):
        sums = data.sums(params)
        grad = np.array(sums.grad, copy=True)
        grad *= data.normaliser
        reference.add_penalty(grad, params, net.layout, alpha * penalty_normaliser(data.loss.code, data.total_weight))
        reference.update(params, grad, epoch_optimizer)
        return sums.errors * data.normaliser
    return training.guarded_epoch(net, optimizer, epoch, work)


def _local_sgd_round(net, plan, round_index, done=None):
    """One local SGD round (``sync_every`` epochs, fewer at the end); the loss of its
    last epoch, each batch measured on its replica before the batch's update.
    (``done`` as in ``_full_batch_epoch``.)"""
    data, optimizer = plan.rows, plan.optimizer
    first_epoch = round_index * plan.sync_every
    epochs = min(plan.sync_every, plan.epochs - first_epoch)

    def work(params):
        replicas = data.local_round(params, optimizer, plan.entropy, round_index, epochs, plan.batch_size,
                                    plan.shuffle)
        params[...] = replicas.params / replicas.rows
        optimizer.state[...] = replicas.state / replicas.rows
        optimizer.step[...] = round(replicas.step / replicas.rows)
        return replicas.errors * data.normaliser
    return training.guarded_epoch(net, optimizer, first_epoch, work)


@_one_call_at_a_time
def fit(net, X, y, *, client=None, epochs=1, lr=None, optimizer="sgd", batch_size=None, sync_every=1,
        shuffle=True, seed=None, momentum=0.9, alpha=0.0, betas=spec.ADAM_BETAS, eps=spec.ADAM_EPS,
        sample_weight=None, validation_data=None, progress=None, callback=None):
    """Train ``net`` in place on dask arrays, data-parallel; returns a History.

    X : dask array (n_samples, n_inputs), chunked by rows only.
    y : dask array (n_samples, n_outputs) or (n_samples,), in X's row chunks.
    sample_weight : dask array (n_samples,) in X's row chunks, or None.
    client : a ``distributed.Client``; default the current one.
    batch_size : None for synchronous full-batch gradient descent (equal to
        ``net.fit(..., batch_size=None)`` on one machine to 1e-12); k for
        local SGD: each chunk trains its own replica on mini-batches of k
        of its rows for ``sync_every`` epochs, then the replicas'
        parameters and optimizer state are averaged, weighted by rows
        (the module's docstring says how this differs from one machine).
    sync_every : epochs between averagings in local SGD (1 for full batch).
    shuffle, seed : local SGD visits each chunk's rows in a fresh seeded
        permutation each epoch, as ``Network.fit`` would with the
        generator ``default_rng(SeedSequence(e, spawn_key=(r, c)))`` for
        chunk c in round r, where ``e = rng.integers(2**63)`` is drawn once
        per fit from ``default_rng(seed)`` (default: the network's own
        generator).  Adam's step count after a round is the replicas'
        row-weighted mean, rounded to the nearest integer.
    validation_data : (X_val, y_val) as dask arrays (scored on the
        workers) or in-memory arrays (scored here), after each epoch.
    epochs, lr, optimizer, momentum, alpha, betas, eps, progress, callback:
        as in ``Network.fit``.  In local SGD, History, validation and
        callback come once per round of ``sync_every`` epochs (the network
        exists only at the averagings); ``history.loss`` is then the loss
        of the round's last epoch.

    Each chunk is checked, kept and trained on the worker that holds it (or
    that Dask computes it on), so the chunks' split over the workers is the
    work's split: persist X and y evenly first (``client.persist``, then
    ``client.rebalance``) if they are not.

    Every argument is checked, and every chunk validated on its worker,
    before anything changes: bad input raises ValueError/TypeError naming
    the argument or the chunk.  A round that fails or diverges leaves the
    network as it was after the previous one (DivergenceError).
    """
    client = _client(client)
    epochs = check.count(epochs, "epochs")
    batch_size = check.optional_count(batch_size, "batch_size")
    sync_every = check.count(sync_every, "sync_every", minimum=1)
    if batch_size is None and sync_every != 1:
        raise ValueError(f"sync_every applies to local SGD (batch_size=k); full-batch training "
                         f"(batch_size=None) synchronises every step; got sync_every={sync_every}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable; got {type(callback).__name__}")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False; got {type(shuffle).__name__}")
    rng = net._rng if seed is None else check.random_generator(seed)
    trainer = training.Optimizer(optimizer, lr, momentum, net._params.size, net.dtype, alpha=alpha, betas=betas,
                                 eps=eps)
    if validation_data is not None and (not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2):
        raise TypeError(f"validation_data must be a pair (X_val, y_val); got {type(validation_data).__name__}")
    data = validation = None
    try:
        data = _Chunks(net, client, X, y, sample_weight)
        score = None
        if validation_data is not None and any(isinstance(v, da.Array) for v in validation_data):
            validation = _Chunks(net, client, *validation_data, names=("X_val", "y_val"))
            score = lambda chunks: chunks.loss_at(net._params)  # noqa: E731
        elif validation_data is not None:
            validation = net._rows(*validation_data, names=("X_val", "y_val"))
        local = batch_size is not None
        plan = _Plan(rows=data, optimizer=trainer, batch_size=batch_size, shuffle=bool(shuffle),
                     entropy=int(rng.integers(2**63)) if local else 0, epochs=epochs, sync_every=sync_every,
                     validation=validation, callback=callback)
        rounds = -(-epochs // sync_every)
        return training.train(net, plan, rounds, progress, run=_local_sgd_round if local else _full_batch_epoch,
                              score=score)
    finally:
        for chunks in (data, validation):
            if isinstance(chunks, _Chunks):
                chunks.release()


@_one_call_at_a_time
def evaluate(net, X, y, sample_weight=None, *, client=None):
    """The network's loss on dask arrays (X, y), optionally with per-row weights, as a
    float: ``Network.evaluate`` over the chunks, computed where they are."""
    data = _Chunks(net, _client(client), X, y, sample_weight)
    try:
        return data.loss_at(net._params)
    finally:
        data.release()


def predict(net, X):
    """The network's output for a dask array X chunked by rows: a lazy dask array
    (n_samples, n_outputs) in the network's dtype, one row chunk per chunk of X.

    It computes with the parameters the network has now, whatever happens to the
    network later, on any Dask scheduler; a bad chunk raises ValueError naming it.
    """
    _network(net)
    _row_chunked(X, "X", net.layout.n_inputs)
    return X.map_blocks(_predict_block, _Snapshot(net), dtype=net.dtype,
                        chunks=(X.chunks[0], (net.layout.n_outputs,)), meta=np.empty((0, 0), net.dtype))
