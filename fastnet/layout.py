"""ParamLayout: where every weight and bias lives in the packed parameter vector.

A network's parameters are one C-contiguous 1-D array.  For each weight
layer ``l = 0 .. L-1`` in order it holds ``W_l`` of shape
``(n_l, n_{l+1})`` in row-major order, then ``b_l`` of shape ``(n_{l+1},)``
when the network has biases.  Gradients and optimizer state use the same
layout.  This module is the only place that knows the offsets.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ParamLayout:
    """The packed layout for layer widths ``sizes = [n_0, ..., n_L]`` and ``has_bias``.

    ``sizes`` is kept as an int64 array (what the kernels read);
    ``weight_offsets[l]`` and ``bias_offsets[l]`` (int64, (L,)) are where
    ``W_l`` and ``b_l`` start; ``count`` is the vector's length, counted with
    Python integers so that absurd widths give an absurd count rather than
    wrapping around in int64.
    """

    sizes: np.ndarray
    has_bias: bool
    count: int = field(init=False)
    weight_offsets: np.ndarray = field(init=False, repr=False)
    bias_offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        widths = [int(width) for width in self.sizes]
        lengths = [i * o + (o if self.has_bias else 0) for i, o in zip(widths[:-1], widths[1:])]
        starts = [sum(lengths[:l]) for l in range(len(lengths))]
        object.__setattr__(self, "sizes", np.asarray(widths, dtype=np.int64))
        object.__setattr__(self, "has_bias", bool(self.has_bias))
        object.__setattr__(self, "count", sum(lengths))
        if self.count < 2**63:  # kernels only ever see layouts that fit int64
            weight_offsets = np.asarray(starts, dtype=np.int64)
            bias_offsets = weight_offsets + self.sizes[:-1] * self.sizes[1:]
        else:
            weight_offsets = bias_offsets = np.empty(0, np.int64)
        object.__setattr__(self, "weight_offsets", weight_offsets)
        object.__setattr__(self, "bias_offsets", bias_offsets)
        # Compared and read on every call (work memory is kept per layout): plain tuples are fast.
        object.__setattr__(self, "_key", (tuple(widths), self.has_bias))
        object.__setattr__(self, "_shapes", tuple(zip(widths[:-1], widths[1:])))

    @property
    def layers(self):
        """The widths as a list of Python ints."""
        return list(self._key[0])

    @property
    def n_inputs(self):
        """Width of the input layer, n_0."""
        return self._key[0][0]

    @property
    def n_outputs(self):
        """Width of the output layer, n_L."""
        return self._key[0][-1]

    @property
    def weight_shapes(self):
        """``[(n_l, n_{l+1}), ...]``, one per weight layer."""
        return list(self._shapes)

    def unpack(self, packed):
        """Views ``(weights, biases)`` into a packed vector (``biases`` None without bias).

        ``weights[l]`` has shape ``(n_l, n_{l+1})``, ``biases[l]`` ``(n_{l+1},)``;
        both share memory with ``packed``.
        """
        weights, biases = [], [] if self.has_bias else None
        for layer, (fan_in, fan_out) in enumerate(self._shapes):
            start = int(self.weight_offsets[layer])
            weights.append(packed[start:start + fan_in * fan_out].reshape(fan_in, fan_out))
            if self.has_bias:
                start = int(self.bias_offsets[layer])
                biases.append(packed[start:start + fan_out])
        return weights, biases

    def __eq__(self, other):
        return self is other or (isinstance(other, ParamLayout) and self._key == other._key)

    def __hash__(self):
        return hash(self._key)
