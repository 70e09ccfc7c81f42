"""ParamLayout: where every weight and bias lives in the packed parameter vector.

A network's parameters are one C-contiguous 1-D array.  For each weight
layer ``l = 0 .. L-1`` in order it holds ``W_l`` of shape
``(n_l, n_{l+1})`` in row-major order, then ``b_l`` of shape ``(n_{l+1},)``
when the network has biases.  Gradients and optimizer state use the same
layout.  This module is the only place that knows the offsets.
"""

import numpy as np


class ParamLayout:
    """The packed layout for layer widths ``sizes = [n_0, ..., n_L]`` and ``has_bias``.

    ``sizes`` is kept as an int64 array (what the kernels read);
    ``weight_offsets[l]`` and ``bias_offsets[l]`` (int64, (L,)) are where
    ``W_l`` and ``b_l`` start; ``count`` is the vector's length, counted with
    Python integers so that absurd widths give an absurd count rather than
    wrapping around in int64.  Layouts are equal when widths and bias are.
    """

    def __init__(self, sizes, has_bias):
        widths = tuple(int(width) for width in sizes)
        lengths = [i * o + (o if has_bias else 0) for i, o in zip(widths[:-1], widths[1:])]
        self.has_bias = bool(has_bias)
        self.sizes = np.asarray(widths, dtype=np.int64)
        self.count = sum(lengths)
        # Read and compared on every call (work memory is kept per layout): plain tuples are fast.
        self._widths = widths
        self._shapes = tuple(zip(widths[:-1], widths[1:]))
        if self.count < 2**63:  # kernels only ever see layouts that fit int64
            self.weight_offsets = np.asarray([sum(lengths[:l]) for l in range(len(lengths))], dtype=np.int64)
            self.bias_offsets = self.weight_offsets + self.sizes[:-1] * self.sizes[1:]
        else:
            self.weight_offsets = self.bias_offsets = np.empty(0, np.int64)

    @property
    def layers(self):
        """The widths as a list of Python ints."""
        return list(self._widths)

    @property
    def n_inputs(self):
        """Width of the input layer, n_0."""
        return self._widths[0]

    @property
    def n_outputs(self):
        """Width of the output layer, n_L."""
        return self._widths[-1]

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
        return self is other or (isinstance(other, ParamLayout) and self._widths == other._widths
                                 and self.has_bias == other.has_bias)

    def __hash__(self):
        return hash((self._widths, self.has_bias))

    def __repr__(self):
        return f"ParamLayout({list(self._widths)}, has_bias={self.has_bias})"
