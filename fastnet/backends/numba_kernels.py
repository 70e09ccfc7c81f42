"""Numba backend: fused, tiled @njit kernels.

The batch is streamed in tiles of ``tile_rows`` rows (TILE_ROWS, or
NARROW_TILE_ROWS for a narrow network).  Inside a tile every activation and
delta is stored feature-major (one row of tile values per unit, see "Work
memory" below), so each inner loop runs over the tile's
rows, contiguous in memory, and LLVM vectorises it whatever the layer
widths; the matrix products work two rows or four inputs at a time, so
several sums share each load.  There are no whole-batch temporaries: work
memory is a few tiles per thread, allocated in Python (the kernels run
without Numba's runtime, see ``_kernel``) and reused by the thread's next
call of the same shape.

This Numba has no SVML, so ``math.exp`` in a loop would stay scalar.  The
sigmoid therefore uses its own exp (``_exp_nonpositive``), written as plain
arithmetic (with an LLVM bitcast for 2**k) that vectorises.  Nothing
compiles at import: kernels compile on first use, and are cached on disk
when ``fastnet._config.NUMBA_CACHE``.

Compile time is kept down by compiling each piece of code once per dtype,
and only the pieces a network uses.  One kernel, ``_rows``, serves
forward and gradient (see ``_FORWARD``; Python enters it through
``_pass``), and training's ``_train_batches`` calls it for each batch's
gradient; it calls the tile
kernels (products, each activation and its slope, each loss's output
delta, each optimizer's update) at addresses it is handed in a call
table (``_call``, ``_call_table``) rather than linking their code in,
which Numba would optimise and compile again in every caller; so a first
sigmoid network compiles no tanh, relu or softmax code, a network whose
layers are too narrow for them no register-blocked products or
outer-product weight gradient (``_wide_layers``), and a new kind of network
compiles only the kernels it adds.  Inputs are passed as
read-only views, so writable and read-only (memory-mapped) arrays share
one signature; the training loop compiles only once a network is
trained, and the parallel ``_blocks`` only once a call has more than one
block (``fastnet.backends.block_rows``); both call ``_rows`` at its address too.
Measure it with ``benchmarks/compile_time.py``.
"""

import math
import threading

import numba
import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir as llvm_ir
from numba import get_num_threads, get_thread_id, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_jitable, register_model

from fastnet._config import (CACHE_LINE_BYTES, FASTMATH, FASTMATH_REDUCE, INPUT_PASS_BYTES, NUMBA_CACHE,
                             NUMBA_THREADING_LAYER, NARROW_TILE_ROWS, NARROW_WIDTH, PARTIAL_GRADIENT_BYTES,
                             PARAMETER_CHUNK, PRODUCT_CHUNK, PRODUCT_MIN_COLUMNS, SIGMOID_CLAMP, SIGMOID_CLAMP_FLOAT32,
                             TILE_ROWS)

numba.config.THREADING_LAYER = NUMBA_THREADING_LAYER
from fastnet import spec
from fastnet.backends import _round_up, block_rows, checked_first_written_layer

_SIGMOID, _TANH, _RELU, _SOFTMAX = (spec.ACTIVATIONS[name].code for name in ("sigmoid", "tanh", "relu", "softmax"))
_ARTICLE = spec.DERIVATIVES["article"].code
_BCE, _CROSS_ENTROPY = spec.LOSSES["bce"].code, spec.LOSSES["cross_entropy"].code
#: Positions in the hyper-parameter vector (fastnet.spec.HYPER_FIELDS).
_LR, _MOMENTUM, _BETA1, _BETA2, _EPS, _ALPHA = (spec.hyper_index(field) for field in
                                               ("lr", "momentum", "beta1", "beta2", "eps", "alpha"))
_BCE_LOG_FLOOR = spec.BCE_LOG_FLOOR
#: Each loss's ``mean`` and ``per_output`` (fastnet.spec.Loss), indexed by its code.
_LOSS_MEAN = tuple(entry.mean for entry in sorted(spec.LOSSES.values(), key=lambda entry: entry.code))
_LOSS_PER_OUTPUT = tuple(entry.per_output for entry in sorted(spec.LOSSES.values(), key=lambda entry: entry.code))

# exp(x) = 2**k * exp(r), k = round(x / ln 2), r = x - k ln 2 (Cody-Waite).
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 with its low 32 mantissa bits zero
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
# Adding 1.5 * 2**52 rounds to an integer held in the low mantissa bits; the
# extra 1023 is the exponent bias, so those bits shifted left by 52 are 2**k.
_ROUND_SHIFT = 6755399441055744.0 + 1023.0
# The same for float32: ln 2 split with 9 significant bits in the high part,
# and 1.5 * 2**23 plus the float32 exponent bias.
_LN2_HI_FLOAT32 = 0.693359375
_LN2_LO_FLOAT32 = -2.12194440e-4
_ROUND_SHIFT_FLOAT32 = 12582912.0 + 127.0


def _kernel(fastmath=FASTMATH, parallel=False, entry=False):
    """The one njit configuration every kernel here uses.

    ``_nrt=False``: no Numba runtime, so no reference counting.  With it,
    every call and every array view inside a kernel cost atomic increments
    and decrements, a quarter of a batch-32 epoch.  The price: kernels
    cannot allocate, so work memory comes from Python (``_work_memory``).

    No Numba-level inlining (``inline="always"``): it types, lowers and
    optimises the callee again at every call site, which multiplied the
    compile time, and the kernels it merged ran slower.  A plain call is
    still visible to LLVM, which links the callee in and inlines the small
    ones (the sigmoid into its loops) itself; the tile kernels, which LLVM
    never inlined, are called through ``_call`` instead, so their code is
    compiled once, not again inside each caller.

    Integer constants passed to a kernel are written ``np.int64(0)``: a
    bare ``0`` is typed as the literal 0, and Numba would compile the
    callee once more, specialised to it.

    Only ``entry`` kernels, called from Python, get the wrapper that
    converts Python arguments (a sizeable function of its own for a dozen
    arrays); no kernel gets a C-callable wrapper.
    """
    return njit(cache=NUMBA_CACHE, nogil=True, fastmath=set(fastmath), error_model="numpy",
                parallel=parallel, _nrt=False, no_cpython_wrapper=not entry, no_cfunc_wrapper=True)


@intrinsic
def typed(typingctx, value, like):
    """``value`` converted to the float type of ``like`` (an array or a scalar).

    Kernels run in float64 or float32; a bare literal such as ``2.0`` is
    float64 and would silently promote float32 arithmetic, so constants
    go through here.  An intrinsic (a cast emitted in place) rather than an
    overload, which would compile a function for every pair of types.
    """
    target = like.dtype if isinstance(like, types.Array) else like
    if not (isinstance(target, types.Float) and isinstance(value, (types.Float, types.Integer))):
        return None

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], signature.args[0], target)
    return target(value, like), codegen


def _bitcast(targets):
    """An intrinsic reinterpreting a scalar's bits as ``targets[its type]`` (an LLVM bitcast, free)."""
    @intrinsic
    def bitcast(typingctx, value):
        target = targets.get(value)
        if target is None:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(target))
        return target(value), codegen
    return bitcast


_bits_as_float = _bitcast({types.int64: types.float64, types.int32: types.float32})
_float_bits = _bitcast({types.float64: types.int64, types.float32: types.int32})


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c, rounded once, for three floats of one type.

    Written out rather than left to the ``contract`` flag, whose fusing
    depends on where the code is inlined (see fastnet._config.FASTMATH).
    """
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return a(a, b, c), codegen


@intrinsic
def _muladd(typingctx, a, b, c):
    """a * b + c for a running sum, as LLVM's ``fmuladd``: the loop vectoriser
    recognises it as a reduction (it does not recognise ``fma``), and the
    x86 backend always fuses it, wherever the code is inlined."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        kind = args[0].type
        name = "llvm.fmuladd.f64" if a == types.float64 else "llvm.fmuladd.f32"
        muladd = cgutils.get_or_insert_function(builder.module, llvm_ir.FunctionType(kind, [kind] * 3), name)
        return builder.call(muladd, args, fastmath=tuple(FASTMATH_REDUCE))
    return a(a, b, c), codegen


#: The inline-asm constraint of ``_held``: a float in a vector register, handed back
#: in the same one ("x" on x86-64, "w" on aarch64); None elsewhere, where a held
#: value is the value itself.
_HELD_CONSTRAINT = {"x86_64": "=x,0", "aarch64": "=w,0", "arm64": "=w,0"}.get(
    llvm_binding.get_process_triple().split("-")[0])


@intrinsic
def _held(typingctx, value):
    """``value`` (a float), unchanged, but a number LLVM cannot see: an empty
    inline-asm statement hands back the register it was given.

    exp's series needs more constants than there are vector registers.  LLVM
    then re-loads each constant from its constant pool inside the loop, two
    instructions per constant in every iteration (a constant can always be
    loaded again, so it is never spilled).  A held constant is the result of
    a statement that touches no memory, so LLVM hoists it out of the loop and
    keeps it in a register or spills it once to the stack, where the
    multiply-adds read it as a memory operand.  Values, and so results, are
    the same bit for bit; only the loop is shorter.
    """
    if not isinstance(value, types.Float):
        return None

    def codegen(context, builder, signature, args):
        if _HELD_CONSTRAINT is None:
            return args[0]
        kind = args[0].type
        statement = llvm_ir.InlineAsm(llvm_ir.FunctionType(kind, [kind]), "", _HELD_CONSTRAINT, side_effect=False)
        call = builder.call(statement, args)
        call.attributes.add("nounwind")
        call.attributes.add("readnone")  # what lets LLVM hoist it out of loops
        return call
    return value(value), codegen


@intrinsic
def _as_read_only(typingctx, array):
    """``array`` itself, typed read-only: the kernels compiled for read-only inputs
    take it (the readonly flag lives in Numba's type, not in the array's data)."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        return args[0]
    return array.copy(readonly=True)(array), codegen


def _pick(comparison):
    """An intrinsic (a, b) -> b if b ``comparison`` a else a, for two numbers of one type:
    Python's and Numba's min (``<``) and max (``>``) of two numbers, NaN included, emitted
    in place as a compare and a select; Numba's own min and max are each a function
    compiled for every pair of types."""
    @intrinsic
    def pick(typingctx, a, b):
        if not (a == b and isinstance(a, (types.Integer, types.Float))):
            return None

        def codegen(context, builder, signature, args):
            first, second = args
            if isinstance(a, types.Float):
                wins = builder.fcmp_ordered(comparison, second, first)
            elif a.signed:
                wins = builder.icmp_signed(comparison, second, first)
            else:
                wins = builder.icmp_unsigned(comparison, second, first)
            return builder.select(wins, second, first)
        return a(a, b), codegen
    return pick


_smaller, _larger = _pick("<"), _pick(">")

# Kernels called through a compiled address (``_call``), by what they do.  A
# call of ``_rows`` gets a table of addresses (see ``_call_table``): entry k
# holds the kernel of kind k for k < _FIRST_LAYER_CALL, then come each weight
# layer's activation and then each one's slope (0: nothing to call).  Numba compiles a
# direct call of a kernel by linking a copy of the callee's code into the
# caller and optimising and compiling it again there, at every level; a call
# through an address compiles each kernel once, and only the kernels a
# network uses (its activations, its loss, the L2 penalty only when alpha > 0,
# the register-blocked products and the outer-product weight gradient only
# when a layer is wide enough for them).
# The kernels are called once per tile or batch, never inlined, so the
# indirect call costs nothing measurable.
(_CALL_ROWS, _CALL_FORWARD, _CALL_PRODUCTS, _CALL_WEIGHT_GRADIENT, _CALL_OUTPUT_DELTA, _CALL_WRITE, _CALL_UPDATE,
 _CALL_PENALTY, _CALL_OUTER_GRADIENT, _CALL_PARTIAL_SUM, _CALL_CHUNKED_UPDATE) = range(11)
_FIRST_LAYER_CALL = 11
_CALL_ACTIVATION, _CALL_SLOPE = 11, 12


def _signature(kind, f):
    """(return type, argument types) of a kernel of ``kind`` (a _CALL_* code) for floats
    of Numba type ``f``: the one signature each is compiled for and called with."""
    i64, vector, tiles = types.int64, types.Array(f, 1, "C"), types.Array(f, 3, "C")
    indices, matrix = types.Array(types.int64, 1, "C"), types.Array(f, 2, "C")
    read_rows, read_vector = types.Array(f, 2, "C", readonly=True), types.Array(f, 1, "C", readonly=True)
    if kind == _CALL_ROWS:
        return types.float64, (i64, read_rows, read_rows, read_vector, i64, i64, vector, indices, types.boolean,
                               f, indices, indices, tiles, tiles, vector, vector, indices)
    return {
        _CALL_FORWARD: (types.none, (read_rows, vector, indices, types.boolean, indices, indices, tiles, matrix,
                                     indices)),
        _CALL_PRODUCTS: (types.none, (vector, i64, i64, i64, i64, i64, tiles, i64, i64, i64)),
        _CALL_WEIGHT_GRADIENT: (types.none, (tiles, i64, tiles, i64, i64, i64, i64, types.boolean, i64, i64, vector,
                                             i64, types.boolean)),
        _CALL_OUTER_GRADIENT: (types.int64, (tiles, i64, tiles, i64, i64, i64, i64, i64, vector, types.boolean)),
        _CALL_OUTPUT_DELTA: (types.float64, (tiles, i64, read_rows, read_vector, f, tiles)),
        _CALL_WRITE: (types.none, (tiles, indices, i64, i64, i64, vector)),
        _CALL_UPDATE: (types.int64, (vector, vector, types.Array(types.float64, 1, "C"), matrix, i64, i64, i64)),
        _CALL_PARTIAL_SUM: (types.none, (matrix, i64, types.boolean, vector)),
        _CALL_CHUNKED_UPDATE: (types.none, (vector, vector, types.Array(types.float64, 1, "C"), matrix, indices, i64)),
        _CALL_PENALTY: (types.none, (vector, indices, indices, types.float64, types.float64, i64, vector)),
        _CALL_ACTIVATION: (types.none, (tiles, i64, i64, i64, matrix)),
        _CALL_SLOPE: (types.none, (tiles, i64, tiles, i64, i64, i64)),
    }[kind]


@intrinsic(prefer_literal=True)
def _call(typingctx, kind, address, args):
    """kernel(*args) for the kernel of ``kind`` (a _CALL_* constant) compiled at ``address``.

    The arguments must have the types of ``_signature(kind, f)``, f the
    float type of the first float array among them (else a typing error,
    at compile time), and ``address`` must be that of a kernel compiled for
    exactly that signature (``_address``).  The address is an argument, not
    a constant, so that a kernel calling another stays cacheable.
    """
    if not (isinstance(kind, types.IntegerLiteral) and isinstance(address, types.Integer)
            and isinstance(args, types.BaseTuple)):
        return None
    given = tuple(args.types)
    floats = [t.dtype for t in given if isinstance(t, types.Array) and isinstance(t.dtype, types.Float)]
    returns, expected = _signature(kind.literal_value, floats[0])
    if given != expected:
        raise numba.core.errors.TypingError(f"kernel kind {kind.literal_value} called with {given}, "
                                            f"but compiled for {expected}")

    def codegen(context, builder, signature, llargs):
        values = [builder.extract_value(llargs[2], i) for i in range(len(given))]
        kernel_type = context.call_conv.get_function_type(returns, expected)
        kernel = builder.inttoptr(llargs[1], kernel_type.as_pointer())
        status, result = context.call_conv.call_function(builder, kernel, returns, expected, values)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return result
    return returns(kind, address, args), codegen


# ---- vectors: the matrix products' register blocks --------------------------
#
# LLVM's loop vectoriser keeps a running sum in vector registers only when
# it is a reduction over the vectorised loop (a dot product); a block of
# outputs updated along another loop stays in memory, loaded and stored at
# every step.  The products therefore hold their register blocks as
# explicit vectors of an LLVM vector type, in loops emitted as LLVM IR by
# one intrinsic (``_blocked_products``): every lane computes exactly what
# scalar code would (a fused multiply-add per term), with no fast-math flag.


def _host_vector_bytes():
    """Bytes in one vector register of the CPU Numba compiles for: 64 with
    AVX-512F, 32 with AVX, else 16 (also for an explicit NUMBA_CPU_NAME, such
    as ``generic`` for portable caches, where wider vectors would be split)."""
    if numba.config.CPU_NAME:
        return 16
    features = llvm_binding.get_host_cpu_features()
    if features.get("avx512f"):
        return 64
    return 32 if features.get("avx") else 16


#: Bytes per vector in the products' register blocks (a kernel loaded from
#: the cache was compiled for the same CPU: Numba's cache key includes it).
VECTOR_BYTES = _host_vector_bytes()


for _name, _rows_per_tile in (("TILE_ROWS", TILE_ROWS), ("NARROW_TILE_ROWS", NARROW_TILE_ROWS)):
    if _rows_per_tile % (VECTOR_BYTES // 4):
        raise ImportError(f"fastnet._config.{_name} ({_rows_per_tile}) must be a multiple of {VECTOR_BYTES // 4}, the "
                          "float32 items in one vector: the products compute tile rows in whole vectors")


#: The LLVM function attribute that ``_full_width_loops`` sets, on CPUs with 64-byte vectors.
_FULL_WIDTH_ATTRIBUTE = '"prefer-vector-width"="512"' if VECTOR_BYTES == 64 else None


@intrinsic
def _full_width_loops(typingctx):
    """Let LLVM vectorise the calling kernel's plain loops with whole 64-byte vectors
    on AVX-512 CPUs (no effect elsewhere).

    LLVM's tuning for Intel's AVX-512 server CPUs prefers 32-byte vectors in
    the loops it vectorises itself (older Xeons lowered their clock for
    64-byte ones; its tuning for AMD's Zen 4 already takes 64), so the
    sigmoid, slope and update loops would run at half the width that the C
    ``avx512`` variant and the register blocks here use.
    The function attribute ``prefer-vector-width`` overrides that tuning
    for the one function that carries it, as clang's
    ``-mprefer-vector-width=512`` does, leaving every other Numba function
    of the process alone.  llvmlite's ``FunctionAttributes`` accepts only
    LLVM's keyword attributes, so this string attribute goes into the set
    directly; it is printed into the function's definition as is.  An
    llvmlite whose attributes are no longer a set loses the attribute (and
    the speed: tests/backends/test_numba_vector_width.py fails), not the kernel.
    """
    def codegen(context, builder, signature, args):
        if _FULL_WIDTH_ATTRIBUTE:
            try:
                set.add(builder.function.attributes, _FULL_WIDTH_ATTRIBUTE)
            except TypeError:
                pass
        return context.get_dummy_value()
    return types.none(), codegen


def _vector_lanes(dtype):
    """Items of the NumPy ``dtype`` in one vector register (VECTOR_BYTES)."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def _outer_outputs(fan_in, fan_out, lanes):
    """The outputs of a layer that ``_outer_weight_gradient`` takes: its whole vectors
    of ``lanes`` outputs when it has PRODUCT_MIN_COLUMNS inputs or more (fewer are too
    few to repay the transposition), else none."""
    return fan_out - fan_out % lanes if fan_in >= PRODUCT_MIN_COLUMNS else 0


@register_jitable
def _blocked_rows(n_rows, n_cols):
    """The rows of a product that ``_blocked_products``' register blocks take: whole
    fours, when there are PRODUCT_MIN_COLUMNS columns or more, else none."""
    return n_rows - n_rows % 4 if n_cols >= PRODUCT_MIN_COLUMNS else 0


class _Vector(types.Type):
    """VECTOR_BYTES of floats of one type (``dtype``), held in one register."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = VECTOR_BYTES // (dtype.bitwidth // 8)
        super().__init__(name=f"vector({dtype} x {self.lanes})")


@register_model(_Vector)
class _VectorModel(models.PrimitiveModel):
    """An LLVM vector <lanes x float|double>."""

    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, llvm_ir.VectorType(element, fe_type.lanes))


def _item_pointer(context, builder, array_type, array, index):
    """Pointer to item ``index`` of a C-contiguous array's data, counted flat (no checks)."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


def _broadcast(builder, vector_type, value):
    """An LLVM vector of ``vector_type`` with ``value`` in every lane."""
    i32 = llvm_ir.IntType(32)
    first = builder.insert_element(llvm_ir.Constant(vector_type, llvm_ir.Undefined), value, i32(0))
    return builder.shuffle_vector(first, llvm_ir.Constant(vector_type, llvm_ir.Undefined),
                                  llvm_ir.Constant(llvm_ir.VectorType(i32, vector_type.count), [0] * vector_type.count))


def _vector_parts(context, builder, float_type):
    """What the products' IR builds with, for vectors of ``float_type``: (the
    _Vector, its LLVM type, the alignment of its loads and stores, LLVM's
    fused multiply-add of two such vectors)."""
    vector = _Vector(float_type)
    kind = context.get_value_type(vector)
    fma = cgutils.get_or_insert_function(builder.module, llvm_ir.FunctionType(kind, [kind] * 3),
                                         f"llvm.fma.v{vector.lanes}f{vector.dtype.bitwidth}")
    return vector, kind, float_type.bitwidth // 8, fma


def _vector_pointer(context, builder, array, index, kind):
    """Pointer to the vector of LLVM type ``kind`` at array.flat[index]; ``array``
    is an (array type, LLVM value) pair."""
    array_type, data = array
    return builder.bitcast(_item_pointer(context, builder, array_type, data, index), kind.as_pointer())


def _emit_block(context, builder, rows, vectors, sums, inputs, params, out, x, at, width, x_step, row_stride,
                col_stride, count, overwrite=None):
    """LLVM IR for one register block of products: rows x vectors vector sums.

    S[p, v], the vector at sums.flat[out + p width + v lanes], stays in
    registers while, ``count`` times, X_v = the vector at inputs.flat[x + v lanes]
    is loaded, u_p = params.flat[at + p row_stride] broadcast and
    S[p, v] = fma(u_p, X_v, S[p, v]), then x advances by x_step and at by
    col_stride; then the sums are stored back.  ``sums``, ``inputs`` and
    ``params`` are (array type, LLVM value) pairs; the rest are LLVM int64 values.
    ``overwrite``, an LLVM i1 or None: when true, the sums start from zero
    instead of from what they hold (which is then never read).
    """
    params_type, params_data = params
    vector, kind, align, fma = _vector_parts(context, builder, params_type.dtype)

    def offset(first, p, scale, v):
        return builder.add(builder.add(first, builder.mul(scale, scale.type(p))), first.type(v * vector.lanes))

    slots = [cgutils.alloca_once(builder, kind) for _ in range(rows * vectors)]

    def start_from_sums():
        for p in range(rows):
            for v in range(vectors):
                builder.store(builder.load(_vector_pointer(context, builder, sums, offset(out, p, width, v), kind),
                                           align=align), slots[p * vectors + v])
    if overwrite is None:
        start_from_sums()
    else:
        with builder.if_else(overwrite) as (from_zero, from_sums):
            with from_zero:
                for slot in slots:
                    builder.store(llvm_ir.Constant(kind, None), slot)
            with from_sums:
                start_from_sums()
    x_slot, at_slot = cgutils.alloca_once_value(builder, x), cgutils.alloca_once_value(builder, at)
    with cgutils.for_range(builder, count):
        x_now, at_now = builder.load(x_slot), builder.load(at_slot)
        loaded = [builder.load(_vector_pointer(context, builder, inputs, offset(x_now, 0, x_step, v), kind),
                               align=align) for v in range(vectors)]
        for p in range(rows):
            weight = builder.load(_item_pointer(context, builder, params_type, params_data,
                                                builder.add(at_now, builder.mul(row_stride, row_stride.type(p)))))
            weight = _broadcast(builder, kind, weight)
            for v in range(vectors):
                slot = slots[p * vectors + v]
                builder.store(builder.call(fma, [weight, loaded[v], builder.load(slot)]), slot)
        builder.store(builder.add(x_now, x_step), x_slot)
        builder.store(builder.add(at_now, col_stride), at_slot)
    for p in range(rows):
        for v in range(vectors):
            builder.store(builder.load(slots[p * vectors + v]),
                          _vector_pointer(context, builder, sums, offset(out, p, width, v), kind), align=align)


def _emit_stream(context, builder, rows, columns, tiles, params, out, x, at, width, row_stride, col_stride, whole):
    """LLVM IR for one pass of ``_streamed_products``: ``columns`` columns into ``rows`` rows.

    The rows x columns weights u_pc = params[at + p row_stride + c col_stride]
    are broadcast once; then for each vector of tile rows, t = 0, lanes, ...
    below ``whole``, S_p = the vector at tiles.flat[out + p width + t] gets
    S_p = fma(u_pc, X_c, S_p) for c in order, X_c the vector at
    tiles.flat[x + c width + t], and is stored back.  Vectors of different
    t are independent, so the pass runs at the rate of its loads.
    """
    params_type, params_data = params
    vector, kind, align, fma = _vector_parts(context, builder, params_type.dtype)

    def vector_at(index):
        return _vector_pointer(context, builder, tiles, index, kind)

    def scaled(first, count, stride):
        return builder.add(first, builder.mul(stride, stride.type(count)))

    weights = [[_broadcast(builder, kind, builder.load(_item_pointer(
        context, builder, params_type, params_data, scaled(scaled(at, p, row_stride), c, col_stride))))
        for c in range(columns)] for p in range(rows)]

    def add_at(t):
        inputs = [builder.load(vector_at(builder.add(scaled(x, c, width), t)), align=align) for c in range(columns)]
        for p in range(rows):
            where = vector_at(builder.add(scaled(out, p, width), t))
            total = builder.load(where, align=align)
            for c in range(columns):
                total = builder.call(fma, [weights[p][c], inputs[c], total])
            builder.store(total, where, align=align)

    # Two vectors per iteration, then the odd last one: the loop's own
    # instructions would otherwise outnumber a narrow pass's arithmetic.
    lanes = whole.type(vector.lanes)
    pairs = builder.sub(whole, builder.srem(whole, builder.mul(lanes, lanes.type(2))))
    with cgutils.for_range_slice(builder, whole.type(0), pairs, builder.mul(lanes, lanes.type(2))) as (t, _):
        add_at(t)
        add_at(builder.add(t, lanes))
    with builder.if_then(builder.icmp_signed("<", pairs, whole)):
        add_at(pairs)


def _int64_arguments(context, builder, signature, args):
    """An intrinsic's LLVM arguments with every integer cast to int64, arrays as they are."""
    return [value if isinstance(kind, types.Array) else context.cast(builder, value, kind, types.int64)
            for value, kind in zip(args, signature.args)]


def _intrinsic_types(arrays, ndims, integers):
    """Whether an intrinsic takes these Numba types: ``arrays`` C-contiguous arrays of
    one float type, with ``ndims`` dimensions (None: any), ``integers`` all integers."""
    return (all(isinstance(array, types.Array) and array.layout == "C" and isinstance(array.dtype, types.Float)
                and (ndim is None or array.ndim == ndim) for array, ndim in zip(arrays, ndims))
            and all(array.dtype == arrays[0].dtype for array in arrays)
            and all(isinstance(value, types.Integer) for value in integers))


def _tile_extent(context, builder, tiles_type, tiles_data, m, lanes):
    """LLVM int64s of the tiles: (width, a row's length; plane, one layer's items; whole,
    m rounded up to whole vectors of ``lanes``, the tile rows the products compute)."""
    i64 = llvm_ir.IntType(64)
    shape = cgutils.unpack_tuple(builder, context.make_array(tiles_type)(context, builder, tiles_data).shape)
    whole = builder.mul(builder.sdiv(builder.add(m, i64(lanes - 1)), i64(lanes)), i64(lanes))
    return shape[2], builder.mul(shape[1], shape[2]), whole


@intrinsic
def _streamed_products(typingctx, params, weight, row_stride, col_stride, first_row, n_rows, n_cols, tiles, src,
                       dst, m):
    """``_add_products`` for rows first_row .. n_rows - 1, streamed over the tile rows (LLVM IR).

    For the rows a register block does not take (the last n_rows % 4, or
    all when there are few columns): pairs of rows, then the odd last one,
    each gets four columns per pass, then the columns left over one per pass
    (``_emit_stream``), the weights of a pass held in registers.  Each sum
    runs over the columns in order, one fused multiply-add each.  Tile rows
    go in whole vectors, as in ``_blocked_products``.  Emitted as IR: the
    same loops in Python, left to the loop vectoriser, took more compile time
    than every other part of the products.
    """
    integers = (weight, row_stride, col_stride, first_row, n_rows, n_cols, src, dst, m)
    if not _intrinsic_types((params, tiles), (None, 3), integers):
        return None

    def codegen(context, builder, signature, args):
        params_type, tiles_type = signature.args[0], signature.args[7]
        params_data, weight, row_stride, col_stride, first_row, n_rows, n_cols, tiles_data, src, dst, m = \
            _int64_arguments(context, builder, signature, args)
        i64 = llvm_ir.IntType(64)
        lanes = _Vector(params_type.dtype).lanes
        width, plane, whole = _tile_extent(context, builder, tiles_type, tiles_data, m, lanes)
        evens = builder.sub(n_rows, builder.srem(builder.sub(n_rows, first_row), i64(2)))
        quads = builder.sub(n_cols, builder.srem(n_cols, i64(4)))
        tiles, params = (tiles_type, tiles_data), (params_type, params_data)

        def columns_into(rows, r):
            out = builder.add(builder.mul(dst, plane), builder.mul(r, width))
            for first, last, columns in ((i64(0), quads, 4), (quads, n_cols, 1)):
                with cgutils.for_range_slice(builder, first, last, i64(columns)) as (c, _):
                    _emit_stream(context, builder, rows, columns, tiles, params, out,
                                 builder.add(builder.mul(src, plane), builder.mul(c, width)),
                                 builder.add(builder.add(weight, builder.mul(r, row_stride)), builder.mul(c, col_stride)),
                                 width, row_stride, col_stride, whole)

        with cgutils.for_range_slice(builder, first_row, evens, i64(2)) as (r, _):
            columns_into(2, r)
        with builder.if_then(builder.icmp_signed("<", evens, n_rows)):
            columns_into(1, evens)
        return context.get_dummy_value()
    return types.none(params, weight, row_stride, col_stride, first_row, n_rows, n_cols, tiles, src, dst, m), codegen


@intrinsic
def _blocked_products(typingctx, params, weight, row_stride, col_stride, n_rows, n_cols, tiles, src, dst, m):
    """``_add_products`` for a multiple of four rows, as register-blocked micro-kernels (LLVM IR).

    For each chunk of PRODUCT_CHUNK columns (the tile rows a chunk reads stay
    in the L1 cache while every block of rows runs over them): blocks of four
    rows by three vectors of tile rows (12 vector sums, each column step
    loading three vectors of inputs and broadcasting four weights), then
    four rows by two vectors and by one for the tile rows left over
    (``_emit_block``): eight sums in flight hide the latency of a fused
    multiply-add, where four alone would wait on it.
    Each sum runs over the columns in order, one fused multiply-add each.
    Tile rows go in whole vectors: up to lanes - 1 rows past m are computed
    too (from whatever they hold) and never read; a tile is a whole number
    of vectors (checked at import), so they lie inside the tiles.  Emitted
    as IR rather than written in Python: Numba's compile time grows with
    every statement it types and lowers.
    """
    integers = (weight, row_stride, col_stride, n_rows, n_cols, src, dst, m)
    if not _intrinsic_types((params, tiles), (None, 3), integers):
        return None

    def codegen(context, builder, signature, args):
        params_type, tiles_type = signature.args[0], signature.args[6]
        params_data, weight, row_stride, col_stride, n_rows, n_cols, tiles_data, src, dst, m = \
            _int64_arguments(context, builder, signature, args)
        i64 = llvm_ir.IntType(64)
        lanes = _Vector(params_type.dtype).lanes
        width, plane, whole = _tile_extent(context, builder, tiles_type, tiles_data, m, lanes)
        bulk = builder.sub(whole, builder.srem(whole, i64(3 * lanes)))
        pairs = builder.sub(whole, builder.srem(builder.sub(whole, bulk), i64(2 * lanes)))
        tiles, params = (tiles_type, tiles_data), (params_type, params_data)
        with cgutils.for_range_slice(builder, i64(0), n_cols, i64(PRODUCT_CHUNK)) as (c_first, _):
            left = builder.sub(n_cols, c_first)
            count = builder.select(builder.icmp_signed("<", left, i64(PRODUCT_CHUNK)), left, i64(PRODUCT_CHUNK))
            x_first = builder.add(builder.mul(src, plane), builder.mul(c_first, width))
            at_first = builder.add(weight, builder.mul(c_first, col_stride))
            for first, last, step, vectors in ((i64(0), bulk, 3 * lanes, 3), (bulk, pairs, 2 * lanes, 2),
                                               (pairs, whole, lanes, 1)):
                with cgutils.for_range_slice(builder, first, last, i64(step)) as (t, _):
                    with cgutils.for_range_slice(builder, i64(0), n_rows, i64(4)) as (r, _):
                        out = builder.add(builder.add(builder.mul(dst, plane), builder.mul(r, width)), t)
                        _emit_block(context, builder, 4, vectors, tiles, tiles, params, out, builder.add(x_first, t),
                                    builder.add(at_first, builder.mul(r, row_stride)), width, width, row_stride,
                                    col_stride, count)
        return context.get_dummy_value()
    return types.none(params, weight, row_stride, col_stride, n_rows, n_cols, tiles, src, dst, m), codegen


#: The side of the blocks ``_inputs_transposed`` transposes in registers.
_TRANSPOSED_BLOCK = 4

#: The tile rows one pass of ``_outer_weight_gradient`` runs over: the part of
#: the transposed delta a block of outputs reads (rows x three vectors) stays
#: in the L1 cache while every block of inputs runs over it.
OUTER_CHUNK_ROWS = 128

#: The inputs in one of its register blocks; ``_accumulate_weight_gradient``
#: takes the inputs past the last whole block (its dot products go four at a time).
_OUTER_BLOCK_INPUTS = 4


def _transpose_four(builder, rows):
    """Four LLVM vectors of four lanes, rows[i][q], as their transpose: result[q][i].

    First pairs within each half (a 128-bit lane of a float64 vector), then
    halves: the shuffles AVX does in one instruction each, with no lane crossing
    inside a half.
    """
    i32 = llvm_ir.IntType(32)

    def pick(a, b, lanes):
        return builder.shuffle_vector(a, b, llvm_ir.Constant(llvm_ir.VectorType(i32, 4), lanes))
    even01, odd01 = pick(rows[0], rows[1], [0, 4, 2, 6]), pick(rows[0], rows[1], [1, 5, 3, 7])
    even23, odd23 = pick(rows[2], rows[3], [0, 4, 2, 6]), pick(rows[2], rows[3], [1, 5, 3, 7])
    return [pick(even01, even23, [0, 1, 4, 5]), pick(odd01, odd23, [0, 1, 4, 5]),
            pick(even01, even23, [2, 3, 6, 7]), pick(odd01, odd23, [2, 3, 6, 7])]


def _emit_transposed(context, builder, source, source_first, n_rows, row_length, dest, dest_first, dest_width,
                     n_columns):
    """LLVM IR for dest.flat[dest_first + k dest_width + t] = source.flat[source_first + t row_length + k]
    for t < n_rows, k < n_columns (a multiple of four): a block of rows made column-major.

    In passes over the rows, each reading INPUT_PASS_BYTES (a cache line)
    of every row's columns (the last pass the rest), so that each line is
    read once, where one column per pass would read every row, from L2, for
    each column.  Within a pass, blocks of four rows by four columns are
    loaded as four vectors, transposed in registers and stored as four
    vectors; the last n_rows % 4 rows are stored item by item.  ``source``
    and ``dest`` are (array type, LLVM value) pairs of one float type; the
    rest are LLVM int64 values.
    """
    i64, side = llvm_ir.IntType(64), _TRANSPOSED_BLOCK
    float_type = source[0].dtype
    kind = llvm_ir.VectorType(context.get_value_type(float_type), side)
    align = float_type.bitwidth // 8
    whole_rows = builder.sub(n_rows, builder.srem(n_rows, i64(side)))

    def load(t, k):  # source row t, columns k .. k + side - 1, as one vector
        index = builder.add(source_first, builder.add(builder.mul(t, row_length), k))
        return builder.load(builder.bitcast(_item_pointer(context, builder, *source, index), kind.as_pointer()),
                            align=align)

    def target(k, t):  # where column k of row t goes
        index = builder.add(dest_first, builder.add(builder.mul(k, dest_width), t))
        return _item_pointer(context, builder, *dest, index)

    def one_pass(first, last):  # columns first .. last - 1 of every row
        with cgutils.for_range_slice(builder, i64(0), whole_rows, i64(side)) as (t, _):
            with cgutils.for_range_slice(builder, first, last, i64(side)) as (k, _):
                rows = [load(builder.add(t, i64(i)), k) for i in range(side)]
                for q, values in enumerate(_transpose_four(builder, rows)):
                    builder.store(values, builder.bitcast(target(builder.add(k, i64(q)), t), kind.as_pointer()),
                                  align=align)
        with cgutils.for_range_slice(builder, whole_rows, n_rows, i64(1)) as (t, _):
            with cgutils.for_range_slice(builder, first, last, i64(side)) as (k, _):
                values = load(t, k)
                for q in range(side):
                    builder.store(builder.extract_element(values, llvm_ir.IntType(32)(q)),
                                  target(builder.add(k, i64(q)), t))

    per_pass = i64(INPUT_PASS_BYTES // align)
    with cgutils.for_range_slice(builder, i64(0), n_columns, per_pass) as (k, _):
        end = builder.add(k, per_pass)
        one_pass(k, builder.select(builder.icmp_signed("<", end, n_columns), end, n_columns))


@intrinsic
def _inputs_transposed(typingctx, X_rows, n_inputs, acts):
    """acts[0, k, t] = X_rows[t, k] for k < n_inputs (a multiple of four), t < m (LLVM IR,
    ``_emit_transposed``).  Emitted as IR: written in Python, the loop
    vectoriser spent more compile time on this loop than on the rest of
    ``_forward_tile``, and left it scalar.
    """
    if not _intrinsic_types((X_rows, acts), (2, 3), (n_inputs,)):
        return None

    def codegen(context, builder, signature, args):
        rows_type, _, acts_type = signature.args
        rows_data, n_inputs, acts_data = _int64_arguments(context, builder, signature, args)
        m, row_length = cgutils.unpack_tuple(builder, context.make_array(rows_type)(context, builder, rows_data).shape)
        width = cgutils.unpack_tuple(builder, context.make_array(acts_type)(context, builder, acts_data).shape)[2]
        zero = llvm_ir.IntType(64)(0)
        _emit_transposed(context, builder, (rows_type, rows_data), zero, m, row_length, (acts_type, acts_data), zero,
                         width, n_inputs)
        return context.get_dummy_value()
    return types.none(X_rows, n_inputs, acts), codegen


@intrinsic
def _outer_weight_gradient(typingctx, acts, layer, deltas, d, m, fan_in, fan_out, w_first, grad, fresh):
    """dW[k, j] = grad[w_first + k fan_out + j] += sum_t acts[layer, k, t] deltas[d, j, t]
    over the tile's rows t < m, for the first fan_in - fan_in % 4 inputs k (whole blocks
    of _OUTER_BLOCK_INPUTS) and the first J outputs j, J = ``_outer_outputs`` (LLVM IR,
    which computes J as that function does); returns J.  ``fresh`` (an integer, 0 or
    1): 1 writes dW = the sum instead, reading nothing of grad (a call's first tile).

    The outer-product form: the delta tile's first J rows are transposed
    (``_emit_transposed``) into the other half of ``deltas``, free until
    the delta below is written there, as D[t, j] in rows of fan_out + lanes
    items: one vector of padding, so that the rows of a column of D do not
    all fall in the same few sets of the L1 cache (with fan_out 128 they
    would be a multiple of 4 KiB apart; ``deltas`` has a vector's room
    for it).  Then, in chunks of tile rows (OUTER_CHUNK_ROWS), blocks of
    four inputs by three vectors of outputs (12 vector sums, each tile row
    loading three vectors of D and broadcasting four activations), then by
    two vectors and by one (``_emit_block``), add acts[layer, k, t] D[t, j] into vector
    sums held in registers, one fused multiply-add per tile row, in order
    t = 0, 1, ..., m - 1, and add them to dW once per chunk (a fresh tile's
    first chunk starts them from zero).  Unlike dot products over t, nothing
    is summed across a vector's lanes.
    """
    if not _intrinsic_types((acts, deltas, grad), (3, 3, 1), (layer, d, m, fan_in, fan_out, w_first, fresh)):
        return None

    def codegen(context, builder, signature, args):
        acts_type, deltas_type, grad_type = signature.args[0], signature.args[2], signature.args[8]
        acts_data, layer, deltas_data, d, m, fan_in, fan_out, w_first, grad_data, fresh = \
            _int64_arguments(context, builder, signature, args)
        i64 = llvm_ir.IntType(64)
        lanes = _Vector(grad_type.dtype).lanes
        covered = builder.select(builder.icmp_signed(">=", fan_in, i64(PRODUCT_MIN_COLUMNS)),
                                 builder.sub(fan_out, builder.srem(fan_out, i64(lanes))), i64(0))
        acts, deltas, grad = (acts_type, acts_data), (deltas_type, deltas_data), (grad_type, grad_data)
        with builder.if_then(builder.icmp_signed(">", covered, i64(0))):
            # The tile rows rounded up to whole blocks: up to three rows past m
            # (inside the tile: its length is a multiple of four) are transposed
            # too, from whatever they hold, and never read.
            tile, plane, rounded_rows = _tile_extent(context, builder, deltas_type, deltas_data, m, _TRANSPOSED_BLOCK)
            source_first, dest_first = builder.mul(d, plane), builder.mul(builder.sub(i64(1), d), plane)
            d_width = builder.add(fan_out, i64(lanes))
            _emit_transposed(context, builder, deltas, source_first, covered, tile, deltas, dest_first, d_width,
                             rounded_rows)
            a_width, a_plane, _ = _tile_extent(context, builder, acts_type, acts_data, m, lanes)
            a_first = builder.mul(layer, a_plane)
            # Outputs in blocks of three vectors, then two, then one: the one-vector
            # blocks' four sums are too few to hide the multiply-add's latency.
            bulk = builder.sub(covered, builder.srem(covered, i64(3 * lanes)))
            pairs = builder.sub(covered, builder.srem(builder.sub(covered, bulk), i64(2 * lanes)))
            block = i64(_OUTER_BLOCK_INPUTS)
            blocked = builder.sub(fan_in, builder.srem(fan_in, block))
            # Tile rows in chunks of at most OUTER_CHUNK_ROWS, of equal length.
            chunks = builder.sdiv(builder.add(m, i64(OUTER_CHUNK_ROWS - 1)), i64(OUTER_CHUNK_ROWS))
            chunk_rows = builder.sdiv(builder.add(m, builder.sub(chunks, i64(1))), chunks)
            with cgutils.for_range_slice(builder, i64(0), m, chunk_rows) as (t, _):
                left = builder.sub(m, t)
                count = builder.select(builder.icmp_signed("<", left, chunk_rows), left, chunk_rows)
                x_first = builder.add(dest_first, builder.mul(t, d_width))
                overwrite = builder.and_(builder.icmp_signed("!=", fresh, i64(0)), builder.icmp_signed("==", t, i64(0)))
                with cgutils.for_range_slice(builder, i64(0), blocked, block) as (k, _):
                    at = builder.add(builder.add(a_first, builder.mul(k, a_width)), t)
                    for first, last, vectors in ((i64(0), bulk, 3), (bulk, pairs, 2), (pairs, covered, 1)):
                        with cgutils.for_range_slice(builder, first, last, i64(vectors * lanes)) as (j, _):
                            _emit_block(context, builder, _OUTER_BLOCK_INPUTS, vectors, grad, deltas, acts,
                                        builder.add(w_first, builder.add(builder.mul(k, fan_out), j)),
                                        builder.add(x_first, j), at, fan_out, d_width, a_width, i64(1), count,
                                        overwrite)
        return covered
    return types.int64(acts, layer, deltas, d, m, fan_in, fan_out, w_first, grad, fresh), codegen


@_kernel()
def _exp_parts64(x):
    """(2**k, r, q) with exp(x) = 2**k (1 + r q), for float64 x in [-SIGMOID_CLAMP, 0].

    k = round(x log2 e) comes from the shifter trick, r = x - k ln 2 in two
    parts (|r| <= ln(2)/2), q = (exp(r) - 1) / r from exp's Taylor series to
    degree 13 (error ~1e-16), and 2**k straight from its bits (a normal
    double, as k >= -1021).  As arithmetic, so loops over it vectorise.
    """
    shift = _held(_ROUND_SHIFT)
    shifted = _fma(x, _held(_LOG2E), shift)
    k = shifted - shift
    two_to_k = _bits_as_float(_float_bits(shifted) << 52)
    r = _fma(k, _held(-_LN2_LO), _fma(k, _held(-_LN2_HI), x))
    q = _held(1.0 / 6227020800.0)
    q = _fma(q, r, _held(1.0 / 479001600.0))
    q = _fma(q, r, _held(1.0 / 39916800.0))
    q = _fma(q, r, _held(1.0 / 3628800.0))
    q = _fma(q, r, _held(1.0 / 362880.0))
    q = _fma(q, r, _held(1.0 / 40320.0))
    q = _fma(q, r, _held(1.0 / 5040.0))
    q = _fma(q, r, _held(1.0 / 720.0))
    q = _fma(q, r, _held(1.0 / 120.0))
    q = _fma(q, r, _held(1.0 / 24.0))
    q = _fma(q, r, _held(1.0 / 6.0))
    q = _fma(q, r, _held(0.5))
    q = _fma(q, r, _held(1.0))
    return two_to_k, r, q


@_kernel()
def _exp_parts32(x):
    """``_exp_parts64`` for float32 x in [-SIGMOID_CLAMP_FLOAT32, 0]: shifter
    1.5 * 2**23 + 127, 23-bit exponent shift, Taylor degree 7 (error below half a
    float32 ulp)."""
    shift = _held(np.float32(_ROUND_SHIFT_FLOAT32))
    shifted = _fma(x, _held(np.float32(_LOG2E)), shift)
    k = shifted - shift
    two_to_k = _bits_as_float(np.int32(_float_bits(shifted) << 23))
    r = _fma(k, _held(np.float32(-_LN2_LO_FLOAT32)), _fma(k, _held(np.float32(-_LN2_HI_FLOAT32)), x))
    q = _held(np.float32(1.0 / 5040.0))
    q = _fma(q, r, _held(np.float32(1.0 / 720.0)))
    q = _fma(q, r, _held(np.float32(1.0 / 120.0)))
    q = _fma(q, r, _held(np.float32(1.0 / 24.0)))
    q = _fma(q, r, _held(np.float32(1.0 / 6.0)))
    q = _fma(q, r, _held(np.float32(0.5)))
    q = _fma(q, r, _held(np.float32(1.0)))
    return two_to_k, r, q


@_kernel()
def _exp_nonpositive64(x):
    """exp(x) = 2**k (1 + r q) for float64 x in [-SIGMOID_CLAMP, 0] (``_exp_parts64``)."""
    two_to_k, r, q = _exp_parts64(x)
    return _fma(q, r, _held(1.0)) * two_to_k


@_kernel()
def _exp_nonpositive32(x):
    """exp(x) for float32 x in [-SIGMOID_CLAMP_FLOAT32, 0] (``_exp_parts32``)."""
    two_to_k, r, q = _exp_parts32(x)
    return _fma(q, r, _held(np.float32(1.0))) * two_to_k


@_kernel()
def _expm1_nonpositive64(x):
    """exp(x) - 1 for float64 x in [-SIGMOID_CLAMP, 0], accurate near 0:
    2**k (r q) + (2**k - 1) (``_exp_parts64``).  For k = 0 no 1 is added and
    taken away, so small |x| keeps full relative precision."""
    two_to_k, r, q = _exp_parts64(x)
    return _fma(two_to_k, r * q, two_to_k - _held(1.0))


@_kernel()
def _expm1_nonpositive32(x):
    """exp(x) - 1 for float32 x in [-SIGMOID_CLAMP_FLOAT32, 0], as ``_expm1_nonpositive64``."""
    two_to_k, r, q = _exp_parts32(x)
    return _fma(two_to_k, r * q, two_to_k - _held(np.float32(1.0)))


@_kernel()
def _tanh64(z):
    """Float64 tanh: sign(z) (-m) / (2 + m), m = expm1(-min(2 |z|, SIGMOID_CLAMP))."""
    m = _expm1_nonpositive64(-_smaller(2.0 * abs(z), _held(SIGMOID_CLAMP)))
    t = -m / (_held(2.0) + m)
    return t if z >= 0.0 else -t


@_kernel()
def _tanh32(z):
    """Float32 tanh, as ``_tanh64`` with float32's clamp."""
    m = _expm1_nonpositive32(-_smaller(np.float32(2.0) * abs(z), _held(np.float32(SIGMOID_CLAMP_FLOAT32))))
    t = -m / (_held(np.float32(2.0)) + m)
    return t if z >= 0 else -t


@_kernel()
def _exp_of_negative64(d):
    """exp(-min(d, SIGMOID_CLAMP)) for float64 d >= 0: softmax's exp(z_j - max_k z_k)."""
    return _exp_nonpositive64(-_smaller(d, _held(SIGMOID_CLAMP)))


@_kernel()
def _exp_of_negative32(d):
    """exp(-min(d, SIGMOID_CLAMP_FLOAT32)) for float32 d >= 0."""
    return _exp_nonpositive32(-_smaller(d, _held(np.float32(SIGMOID_CLAMP_FLOAT32))))


@_kernel()
def _sigmoid64(z):
    """Float64 sigmoid: e = exp(-min(|z|, clamp)); 1/(1+e) for z >= 0, e/(1+e) below."""
    one = _held(1.0)
    e = _exp_nonpositive64(-_smaller(abs(z), _held(SIGMOID_CLAMP)))
    return (one if z >= 0.0 else e) / (one + e)


@_kernel()
def _sigmoid32(z):
    """Float32 sigmoid, as ``_sigmoid64`` with float32's clamp."""
    one = _held(np.float32(1.0))
    e = _exp_nonpositive32(-_smaller(abs(z), _held(np.float32(SIGMOID_CLAMP_FLOAT32))))
    return (one if z >= 0 else e) / (one + e)


def _sigmoid(z):
    """1 / (1 + exp(-z)) in z's own precision, stable for any finite z."""
    raise NotImplementedError("_sigmoid() is for use inside Numba kernels")


def _tanh(z):
    """tanh(z) in z's own precision (see ``_tanh64``)."""
    raise NotImplementedError("_tanh() is for use inside Numba kernels")


def _exp_of_negative(d):
    """exp(-min(d, clamp)) for d >= 0 in d's own precision."""
    raise NotImplementedError("_exp_of_negative() is for use inside Numba kernels")


def _by_precision(generic, for_float64, for_float32):
    """Make the Numba-only function ``generic`` run ``for_float32``'s code on float32, else ``for_float64``'s.

    The overload's implementation is the kernel's own Python function, not
    a function calling the kernel: one compile fewer for each.
    """
    @overload(generic, jit_options={"fastmath": set(FASTMATH)}, strict=False)
    def for_type(x):
        return (for_float32 if x == types.float32 else for_float64).py_func
    return for_type


_by_precision(_sigmoid, _sigmoid64, _sigmoid32)
_by_precision(_tanh, _tanh64, _tanh32)
_by_precision(_exp_of_negative, _exp_of_negative64, _exp_of_negative32)


# With NUMBA_DISABLE_JIT=1 (to measure the coverage of the kernels' code)
# every kernel runs as plain Python, where the intrinsics and overloads
# above do not exist; these stand in for them.  They round as numpy does
# (a * b + c rounded twice, not once), so results agree with the compiled
# kernels to a few ulp, not bit for bit.
if numba.config.DISABLE_JIT:
    def typed(value, like):  # noqa: F811 - the plain-Python twin of the intrinsic above
        """``value`` converted to the float type of ``like`` (an array or a numpy scalar)."""
        return np.dtype(getattr(like, "dtype", np.float64)).type(value)

    def _fma(a, b, c):
        """a * b + c (rounded twice in plain Python)."""
        return a * b + c

    _muladd = _fma

    def _full_width_loops():  # noqa: F811
        """Nothing: plain Python has no vector loops to widen."""

    def _held(value):  # noqa: F811
        """``value`` itself (the intrinsic only hides it from LLVM)."""
        return value

    def _bits_as_float(bits):
        """An int64's (int32's) bits as a float64 (float32)."""
        bits = np.asarray(bits)
        return bits.view(np.float64 if bits.dtype == np.int64 else np.float32)[()]

    def _float_bits(value):
        """A float64's (float32's) bits as an int64 (int32)."""
        value = np.asarray(value)
        return value.view(np.int64 if value.dtype == np.float64 else np.int32)[()]

    def _lanes(like):
        """Floats per vector (any width computes the same in plain Python)."""
        return _vector_lanes(getattr(like, "dtype", type(like)))

    def _vector_load(array, index):
        """array.flat[index : index + lanes], copied."""
        return array.reshape(-1)[index:index + _lanes(array)].copy()

    def _vector_store(array, index, value):
        """array.flat[index : index + lanes] = value."""
        array.reshape(-1)[index:index + value.shape[0]] = value

    def _vector_splat_at(array, index):
        """lanes copies of array.flat[index]."""
        return np.full(_lanes(array), array.reshape(-1)[index])

    def _blocked_products(params, weight, row_stride, col_stride, n_rows, n_cols, tiles, src, dst, m):  # noqa: F811
        """The plain-Python twin of the intrinsic above: the same loops and sums, on numpy vectors."""
        lanes = _lanes(params)
        width, plane = tiles.shape[2], tiles.shape[1] * tiles.shape[2]
        whole = (m + lanes - 1) // lanes * lanes
        bulk = whole - whole % (3 * lanes)
        pairs = whole - (whole - bulk) % (2 * lanes)
        for c_first in range(0, n_cols, PRODUCT_CHUNK):
            count = min(n_cols - c_first, PRODUCT_CHUNK)
            for first, last, step, vectors in ((0, bulk, 3 * lanes, 3), (bulk, pairs, 2 * lanes, 2),
                                               (pairs, whole, lanes, 1)):
                for t in range(first, last, step):
                    for r in range(0, n_rows, 4):
                        out, x, at = dst * plane + r * width + t, src * plane + c_first * width + t, weight + r * row_stride + c_first * col_stride
                        sums = [_vector_load(tiles, out + p * width + v * lanes) for p in range(4) for v in range(vectors)]
                        for _ in range(count):
                            inputs = [_vector_load(tiles, x + v * lanes) for v in range(vectors)]
                            for p in range(4):
                                u = _vector_splat_at(params, at + p * row_stride)
                                for v in range(vectors):
                                    sums[p * vectors + v] = _fma(u, inputs[v], sums[p * vectors + v])
                            x, at = x + width, at + col_stride
                        for p in range(4):
                            for v in range(vectors):
                                _vector_store(tiles, out + p * width + v * lanes, sums[p * vectors + v])

    def _streamed_products(params, weight, row_stride, col_stride, first_row, n_rows, n_cols, tiles, src, dst,
                           m):  # noqa: F811
        """The plain-Python twin of the intrinsic above: the same passes and sums, on numpy vectors."""
        lanes = _lanes(params)
        width, plane = tiles.shape[2], tiles.shape[1] * tiles.shape[2]
        whole = (m + lanes - 1) // lanes * lanes
        evens, quads = n_rows - (n_rows - first_row) % 2, n_cols - n_cols % 4
        row_blocks = [(r, 2) for r in range(first_row, evens, 2)] + ([(evens, 1)] if evens < n_rows else [])
        for r, rows in row_blocks:
            for c_first, columns in [(c, 4) for c in range(0, quads, 4)] + [(c, 1) for c in range(quads, n_cols)]:
                weights = [[params[weight + (r + p) * row_stride + (c_first + c) * col_stride] for c in range(columns)]
                           for p in range(rows)]
                for t in range(0, whole, lanes):
                    inputs = [_vector_load(tiles, src * plane + (c_first + c) * width + t) for c in range(columns)]
                    for p in range(rows):
                        where = dst * plane + (r + p) * width + t
                        total = _vector_load(tiles, where)
                        for c in range(columns):
                            total = _fma(weights[p][c], inputs[c], total)
                        _vector_store(tiles, where, total)

    def _outer_weight_gradient(acts, layer, deltas, d, m, fan_in, fan_out, w_first, grad, fresh):  # noqa: F811
        """The plain-Python twin of the intrinsic above: the same sums over t in order."""
        covered = _outer_outputs(fan_in, fan_out, _lanes(grad))
        blocked = fan_in - fan_in % _OUTER_BLOCK_INPUTS
        if covered:
            dW = grad[w_first:w_first + blocked * fan_out].reshape(blocked, fan_out)[:, :covered]
            if fresh:
                dW[...] = 0.0
            for t in range(m):
                dW[...] = _fma(acts[layer, :blocked, t, None], deltas[d, None, :covered, t], dW)
        return covered

    def _as_read_only(array):  # noqa: F811
        """A read-only view of ``array``."""
        return _read_only(array)

    def _inputs_transposed(X_rows, n_inputs, acts):  # noqa: F811
        """The plain-Python twin of the intrinsic above."""
        acts[0, :n_inputs, :X_rows.shape[0]] = X_rows[:, :n_inputs].T

    def _sigmoid(z):
        """The sigmoid in z's own precision."""
        return _sigmoid32(z) if isinstance(z, np.float32) else _sigmoid64(z)

    def _tanh(z):
        """tanh in z's own precision."""
        return _tanh32(z) if isinstance(z, np.float32) else _tanh64(z)

    def _exp_of_negative(d):
        """exp(-min(d, clamp)) in d's own precision."""
        return _exp_of_negative32(d) if isinstance(d, np.float32) else _exp_of_negative64(d)

    _smaller, _larger = min, max  # noqa: F811 - Python's min and max of two numbers

    def _call(kind, kernel, args):  # noqa: F811
        """kernel(*args): without the JIT, call tables hold the kernels themselves."""
        return kernel(*args)


# Work memory for one thread, tile = tile_rows(sizes): ``acts`` (n_layers, widest, tile) holds
# layer l's activations for a tile of rows feature-major in acts[l, :sizes[l], :m]
# (layer 0 is the input), ``deltas`` (2, widest output, tile) the current
# and the next delta.  Kernels take the 3-D array and a layer index, and the
# packed parameters and an offset: W_l[k, j] is
# params[w_start[l] + k * sizes[l + 1] + j].  Per-thread slices of the
# workspace are taken once per block.


# The activations of fastnet.spec.ACTIVATIONS, one kernel each (kind
# _CALL_ACTIVATION): acts[layer, r, t] = f(acts[layer, r, t]) for r < n_rows,
# t < m.  Each loop is plain arithmetic that vectorises.  Linear, the
# identity, has none.  ``scratch`` (>= 2, tile) is work memory for softmax.

@_kernel()
def _sigmoid_tile(acts, layer, n_rows, m, scratch):
    """f = the sigmoid (``_sigmoid``) on one layer's tile."""
    _full_width_loops()
    for r in range(n_rows):
        outputs = acts[layer, r]
        for t in range(m):
            outputs[t] = _sigmoid(outputs[t])


@_kernel()
def _tanh_tile(acts, layer, n_rows, m, scratch):
    """f = tanh (``_tanh``) on one layer's tile."""
    _full_width_loops()
    for r in range(n_rows):
        outputs = acts[layer, r]
        for t in range(m):
            outputs[t] = _tanh(outputs[t])


@_kernel()
def _relu_tile(acts, layer, n_rows, m, scratch):
    """f = max(z, 0) on one layer's tile."""
    _full_width_loops()
    zero = typed(0.0, acts)
    for r in range(n_rows):
        outputs = acts[layer, r]
        for t in range(m):
            outputs[t] = _larger(outputs[t], zero)


@_kernel()
def _softmax_tile(acts, layer, n_rows, m, scratch):
    """f = softmax across the layer's units r, for each tile row t: scratch[0] and
    scratch[1] hold the rows' max and sum of exp(z - max)."""
    _full_width_loops()
    top, total = scratch[0], scratch[1]
    _row_max(acts, layer, n_rows, m, top)
    _exponentials(acts, layer, n_rows, m, top, total)
    for r in range(n_rows):
        outputs = acts[layer, r]
        for t in range(m):
            outputs[t] = outputs[t] / total[t]


@_kernel()
def _row_max(acts, layer, n_rows, m, top):
    """top[t] = max over r < n_rows of acts[layer, r, t], for each tile row t < m."""
    _full_width_loops()
    for t in range(m):
        top[t] = acts[layer, 0, t]
    for r in range(1, n_rows):
        z = acts[layer, r]
        for t in range(m):
            top[t] = _larger(top[t], z[t])


@_kernel()
def _exponentials(acts, layer, n_rows, m, top, total):
    """acts[layer, r, t] = exp(z - top[t]) (each exp of at least -clamp), z its value on
    entry, and total[t] = their sum over r < n_rows, for each tile row t < m."""
    _full_width_loops()
    for t in range(m):
        total[t] = 0.0
    for r in range(n_rows):
        z = acts[layer, r]
        for t in range(m):
            z[t] = _exp_of_negative(top[t] - z[t])
            total[t] += z[t]


# Each activation's slope from its output, one kernel each (kind _CALL_SLOPE):
# deltas[d, r, t] *= f'(acts[layer, r, t]) for r < n_rows, t < m.  Linear
# (f' = 1) has none; softmax never needs one (its loss fuses the output delta).

@_kernel()
def _sigmoid_slope(deltas, d, acts, layer, n_rows, m):
    """The sigmoid's exact f' = a (1 - a)."""
    _full_width_loops()
    one = typed(1.0, acts)
    for r in range(n_rows):
        delta, output = deltas[d, r], acts[layer, r]
        for t in range(m):
            a = output[t]
            delta[t] *= a * (one - a)


@_kernel()
def _sigmoid_article_slope(deltas, d, acts, layer, n_rows, m):
    """The article's sigmoid slope f' = s(a) (1 - s(a)), s the sigmoid (see ARTICLE.md)."""
    _full_width_loops()
    one = typed(1.0, acts)
    for r in range(n_rows):
        delta, output = deltas[d, r], acts[layer, r]
        for t in range(m):
            s = _sigmoid(output[t])
            delta[t] *= s * (one - s)


@_kernel()
def _tanh_slope(deltas, d, acts, layer, n_rows, m):
    """tanh's f' = 1 - a^2."""
    _full_width_loops()
    one = typed(1.0, acts)
    for r in range(n_rows):
        delta, output = deltas[d, r], acts[layer, r]
        for t in range(m):
            a = output[t]
            delta[t] *= one - a * a


@_kernel()
def _relu_slope(deltas, d, acts, layer, n_rows, m):
    """relu's f' = 1 where a > 0, else 0."""
    _full_width_loops()
    zero = typed(0.0, acts)
    for r in range(n_rows):
        delta, output = deltas[d, r], acts[layer, r]
        for t in range(m):
            delta[t] = delta[t] if output[t] > zero else zero


@_kernel()
def _add_products(params, weight, row_stride, col_stride, n_rows, n_cols, tiles, src, dst, m):
    """tiles[dst, r, t] += sum_c M[r, c] tiles[src, c, t] for r < n_rows, t < m.

    M[r, c] = params[weight + r * row_stride + c * col_stride]: W.T when the
    rows are a layer's outputs (row_stride 1, col_stride fan_out, forward),
    W when they are its inputs (row_stride fan_out, col_stride 1, backward).
    Columns are added to the running sum in order c = 0, 1, ..., one fused
    multiply-add each, on every path, so each sum is the same.

    With at least PRODUCT_MIN_COLUMNS columns, the rows in whole fours go
    through the register blocks of ``_blocked_products``.  The rest (all of
    them with fewer columns) go through ``_streamed_products``, whose passes
    add four columns into two rows (eight multiply-adds per six loads and
    two stores), or into the odd last row.
    """
    blocked_rows = _blocked_rows(n_rows, n_cols)
    if blocked_rows:
        _blocked_products(params, weight, row_stride, col_stride, blocked_rows, n_cols, tiles, src, dst, m)
    if blocked_rows < n_rows:
        _streamed_products(params, weight, row_stride, col_stride, blocked_rows, n_rows, n_cols, tiles, src, dst, m)


@_kernel()
def _add_streamed_products(params, weight, row_stride, col_stride, n_rows, n_cols, tiles, src, dst, m):
    """``_add_products`` for networks none of whose products reaches the register
    blocks (``_wide_layers``): every row streamed, the same sums, without compiling
    the blocks."""
    _streamed_products(params, weight, row_stride, col_stride, np.int64(0), n_rows, n_cols, tiles, src, dst, m)


@_kernel()
def _add_outer_weight_gradient(acts, layer, deltas, d, m, fan_in, fan_out, w_first, grad, fresh):
    """The part of ``_accumulate_weight_gradient`` that ``_outer_weight_gradient``'s
    register blocks take (it writes deltas[1 - d]); returns the outputs covered.  Its
    own kernel, in the call table of networks with a layer it can take only."""
    return _outer_weight_gradient(acts, layer, deltas, d, m, fan_in, fan_out, w_first, grad, np.int64(fresh))


@register_jitable
def _add_to(grad, i, value, fresh):
    """grad[i] += value, or grad[i] = value when ``fresh`` (what 0 + value would give,
    bar the sign of a zero)."""
    grad[i] = value if fresh else grad[i] + value


@_kernel(FASTMATH_REDUCE)
def _accumulate_weight_gradient(acts, layer, deltas, d, m, fan_in, fan_out, has_bias, w_first, b_first, grad,
                                covered, fresh):
    """dW_l += A_l.T @ delta and db_l += column sums of delta, over one tile (``fresh``, a
    call's first tile: = instead of +=, so that grad need not be zeroed first).

    A_l is acts[layer] and delta is deltas[d], both feature-major, so
    dW[k, j] = grad[w_first + k * fan_out + j] += sum_t acts[layer, k, t] deltas[d, j, t]
    and db[j] = grad[b_first + j] += sum_t deltas[d, j, t], for t < m.
    The first ``covered`` outputs of the inputs in whole fours are done
    already (``_add_outer_weight_gradient``; 0 when it did not run).  The rest
    (every output when fan_out is narrower than a vector) are dot
    products over the tile's rows, a reduction LLVM vectorises (with
    ``reassoc``, its vector sums held in registers): four inputs by one
    output at a time, then the last fan_in % 4 inputs one by one.
    """
    _full_width_loops()
    blocked = fan_in - fan_in % _OUTER_BLOCK_INPUTS
    zero = typed(0.0, grad)
    for k in range(0, blocked, 4):
        in0, in1, in2, in3 = acts[layer, k], acts[layer, k + 1], acts[layer, k + 2], acts[layer, k + 3]
        for j in range(covered, fan_out):
            delta_row = deltas[d, j]
            s0 = s1 = s2 = s3 = zero
            for t in range(m):
                delta = delta_row[t]
                s0, s1 = _muladd(in0[t], delta, s0), _muladd(in1[t], delta, s1)
                s2, s3 = _muladd(in2[t], delta, s2), _muladd(in3[t], delta, s3)
            _add_to(grad, w_first + k * fan_out + j, s0, fresh)
            _add_to(grad, w_first + (k + 1) * fan_out + j, s1, fresh)
            _add_to(grad, w_first + (k + 2) * fan_out + j, s2, fresh)
            _add_to(grad, w_first + (k + 3) * fan_out + j, s3, fresh)
    for k in range(blocked, fan_in):
        inputs = acts[layer, k]
        for j in range(fan_out):
            delta_row, total = deltas[d, j], zero
            for t in range(m):
                total = _muladd(inputs[t], delta_row[t], total)
            _add_to(grad, w_first + k * fan_out + j, total, fresh)
    if has_bias:
        for j in range(fan_out):
            delta_row, total = deltas[d, j], zero
            for t in range(m):
                total += delta_row[t]
            _add_to(grad, b_first + j, total, fresh)


@_kernel(FASTMATH_REDUCE)
def _squared_error_delta(acts, out, Y_rows, w_rows, scale, deltas):
    """deltas[0, j, t] = scale w_t 2 (a - y) on one tile; returns sum_t w_t sum_j (a - y)**2.

    a = acts[out, j, t], the output layer's; Y_rows: the tile's (m, n_out)
    targets, y = Y_rows[t, j]; w_rows: its (m,) row weights, or empty for ones.
    """
    _full_width_loops()
    m, weighted = Y_rows.shape[0], w_rows.shape[0] > 0
    one, twice_scale = typed(1.0, deltas), typed(2.0, deltas) * scale
    total = 0.0
    for j in range(Y_rows.shape[1]):
        outputs, delta = acts[out, j], deltas[0, j]
        for t in range(m):
            weight = w_rows[t] if weighted else one
            diff = outputs[t] - Y_rows[t, j]
            total += weight * diff * diff
            delta[t] = twice_scale * weight * diff
    return total


@_kernel()
def _softmax_cross_entropy_delta(acts, out, Y_rows, w_rows, scale, deltas):
    """deltas[0, j, t] = scale w_t (p_j s_t - y_j); returns sum_t w_t e_t, e the cross-entropy.

    acts[out] holds the output layer's pre-activations z (not soft-maxed):
    with top_t = max_j z_j and S_t = sum_j exp(z_j - top_t),
    e_t = -sum_j y_j (z_j - lse_t) = -sum_j y_j (z_j - top_t) + s_t log S_t,
    lse_t = top_t + log S_t, so e is finite for any z; p = softmax(z) and
    s_t = sum_j y_j (1 for one-hot or probability targets).  deltas[1]
    holds top and S, deltas[0, 0] s until unit 0's delta overwrites it.
    Arguments as in ``_squared_error_delta``; acts[out] is left holding exp(z - top).
    """
    _full_width_loops()
    m, n_out, weighted = Y_rows.shape[0], Y_rows.shape[1], w_rows.shape[0] > 0
    one = typed(1.0, deltas)
    top, sums, shares = deltas[1, 0], deltas[1, 1], deltas[0, 0]
    _row_max(acts, out, n_out, m, top)
    total = 0.0
    for t in range(m):
        share, shifted = typed(0.0, deltas), 0.0
        for j in range(n_out):
            y = Y_rows[t, j]
            share += y
            shifted += y * (acts[out, j, t] - top[t])
        shares[t] = share
        total -= (w_rows[t] if weighted else one) * shifted
    _exponentials(acts, out, n_out, m, top, sums)
    for t in range(m):
        total += (w_rows[t] if weighted else one) * shares[t] * math.log(sums[t])
    # Unit by unit, a loop over the tile's rows that vectorises; the last unit
    # last, since its delta overwrites the shares (deltas[0, 0]) it reads.
    for j in range(n_out - 1, -1, -1):
        exps, delta = acts[out, j], deltas[0, j]
        for t in range(m):
            weight = w_rows[t] if weighted else one
            delta[t] = scale * weight * (exps[t] / sums[t] * shares[t] - Y_rows[t, j])
    return total


@_kernel()
def _binary_cross_entropy_delta(acts, out, Y_rows, w_rows, scale, deltas):
    """deltas[0, j, t] = scale w_i (a - y); returns sum_t w_i e_i, e the binary cross-entropy.

    e = -sum_j [y log a + (1 - y) log(1 - a)], each log at least
    spec.BCE_LOG_FLOOR (as torch.nn.BCELoss).  Arguments as in ``_squared_error_delta``.
    """
    _full_width_loops()
    m, weighted = Y_rows.shape[0], w_rows.shape[0] > 0
    one = typed(1.0, deltas)
    total = 0.0
    for j in range(Y_rows.shape[1]):
        outputs, delta = acts[out, j], deltas[0, j]
        for t in range(m):
            weight = w_rows[t] if weighted else one
            y, a = Y_rows[t, j], outputs[t]
            log_a = math.log(a) if a > 0.0 else _BCE_LOG_FLOOR
            log_not_a = math.log(1.0 - a) if a < 1.0 else _BCE_LOG_FLOOR
            total -= weight * (y * max(log_a, _BCE_LOG_FLOOR) + (1.0 - y) * max(log_not_a, _BCE_LOG_FLOOR))
            delta[t] = scale * weight * (a - y)
    return total


@_kernel()
def _forward_tile(X_rows, params, sizes, has_bias, w_start, b_start, acts, scratch, calls):
    """Run one tile of rows X_rows (m, sizes[0]) through every layer, filling ``acts``.

    acts[0, k, t] = X_rows[t, k] (the tile made feature-major), then per
    layer acts[l + 1] = f_l(W_l.T @ acts[l] + b_l), f_l the activation
    kernel calls[_FIRST_LAYER_CALL + l] (none for 0: linear, or the output
    layer when cross-entropy reads its pre-activations).  scratch:
    (>= 2, tile) for softmax.  The tile of X is a slice indexed from
    0, so LLVM can see that no index is negative and drops Numba's
    wraparound arithmetic from the loop.
    """
    _full_width_loops()
    m, n_inputs, n_weight_layers = X_rows.shape[0], X_rows.shape[1], sizes.shape[0] - 1
    blocked = n_inputs - n_inputs % _TRANSPOSED_BLOCK
    _inputs_transposed(X_rows, blocked, acts)
    for k in range(blocked, n_inputs):
        inputs = acts[0, k]
        for t in range(m):
            inputs[t] = X_rows[t, k]
    for layer in range(n_weight_layers):
        fan_in, fan_out, b_first = sizes[layer], sizes[layer + 1], b_start[layer]
        for j in range(fan_out):
            outputs, start = acts[layer + 1, j], params[b_first + j] if has_bias else typed(0.0, params)
            for t in range(m):
                outputs[t] = start
        _call(_CALL_PRODUCTS, calls[_CALL_PRODUCTS],
              (params, w_start[layer], np.int64(1), fan_out, fan_out, fan_in, acts, layer, layer + 1, m))
        activation = calls[_FIRST_LAYER_CALL + layer]
        if activation:
            _call(_CALL_ACTIVATION, activation, (acts, layer + 1, fan_out, m, scratch))


# What a call of ``_rows`` (or ``_blocks``) computes: forward's activations,
# the gradient, or (``_blocks`` only) one batch of training.  One kernel does
# forward and gradient so that predict, gradient and fit share its compiled
# code; the tile kernels it runs come from its table of addresses (see
# _CALL_ROWS), so it holds none of their code.
_FORWARD, _GRADIENT, _TRAIN = 0, 1, 2


@_kernel()
def _rows(task, X, Y, w, first, last, params, sizes, has_bias, scale, w_start, b_start, acts, deltas, grad, out,
          calls):
    """Rows first .. last - 1 of X, tile by tile, on one thread's tiles acts, deltas (see above).

    _FORWARD: every layer's activations into ``out`` (see ``forward``);
    returns 0.  _GRADIENT: grad = their gradient; returns sum_i w_i e_i.
    X: (n, sizes[0]); Y: (n, sizes[-1]); w: (n,) or empty; scale: the
    factor c of the output delta in params' dtype (1 for the unnormalised
    sums of ``gradient``, a batch's normaliser in training).  Per tile: the
    forward pass, then for the gradient the output delta (see
    fastnet.backends) and, from the last layer down,
    dW_l += A_l.T @ delta_{l+1}, db_l += sum(delta_{l+1}) and
    delta_l = (delta_{l+1} @ W_l.T) * f'(A_l).  ``out`` is read only by
    _FORWARD.  ``calls``: the addresses of the tile kernels
    (``_call_table``): the forward pass, the products, the weight gradient
    (and its outer-product part, 0 when no layer is wide enough for it),
    the loss's output delta, the writer of activations, then each weight
    layer's activation and slope.
    """
    _full_width_loops()
    n, out_layer = X.shape[0], sizes.shape[0] - 1
    slopes = _FIRST_LAYER_CALL + out_layer  # calls[slopes + l]: weight layer l's slope
    # The tile length is the workspace's (``tile_rows``), never a constant: a
    # kernel loaded from Numba's cache keeps the constants it was compiled with
    # (the cache does not see edits to fastnet/_config.py) and must not run
    # past the tiles allocated in Python with today's.
    tile = acts.shape[2]
    total = 0.0
    if task != _FORWARD and first >= last:  # no tile to write the gradient
        for i in range(grad.shape[0]):
            grad[i] = 0.0
    for first_row in range(first, last, tile):
        m = _smaller(tile, last - first_row)
        # The first tile writes every item of grad (each layer's dW and db) rather
        # than adding to it: grad is not zeroed first.
        fresh = first_row == first
        _call(_CALL_FORWARD, calls[_CALL_FORWARD],
              (X[first_row:first_row + m], params, sizes, has_bias, w_start, b_start, acts, deltas[1], calls))
        if task == _FORWARD:
            _call(_CALL_WRITE, calls[_CALL_WRITE], (acts, sizes, first_row, m, n, out))
            continue
        Y_rows = Y[first_row:first_row + m]
        w_rows = w[first_row:first_row + m] if w.shape[0] else w
        total += _call(_CALL_OUTPUT_DELTA, calls[_CALL_OUTPUT_DELTA], (acts, out_layer, Y_rows, w_rows, scale, deltas))
        if calls[slopes + out_layer - 1]:  # none when the loss fuses the output delta
            _call(_CALL_SLOPE, calls[slopes + out_layer - 1],
                  (deltas, np.int64(0), acts, out_layer, sizes[out_layer], m))
        d = np.int64(0)  # which half of ``deltas`` holds the current delta
        for layer in range(out_layer - 1, -1, -1):
            fan_in, fan_out = sizes[layer], sizes[layer + 1]
            covered = np.int64(0)
            if calls[_CALL_OUTER_GRADIENT]:
                covered = _call(_CALL_OUTER_GRADIENT, calls[_CALL_OUTER_GRADIENT],
                                (acts, layer, deltas, d, m, fan_in, fan_out, w_start[layer], grad, fresh))
            _call(_CALL_WEIGHT_GRADIENT, calls[_CALL_WEIGHT_GRADIENT],
                  (acts, layer, deltas, d, m, fan_in, fan_out, has_bias, w_start[layer], b_start[layer], grad,
                   covered, fresh))
            if layer > 0:  # deltas[1 - d] = (W_l @ deltas[d]) * f'(acts[layer])
                below = 1 - d
                for k in range(fan_in):
                    for t in range(m):
                        deltas[below, k, t] = 0.0
                _call(_CALL_PRODUCTS, calls[_CALL_PRODUCTS],
                      (params, w_start[layer], fan_out, np.int64(1), fan_in, fan_out, deltas, d, below, m))
                # acts[layer] came out of weight layer layer - 1's activation.
                if calls[slopes + layer - 1]:
                    _call(_CALL_SLOPE, calls[slopes + layer - 1], (deltas, below, acts, layer, fan_in, m))
                d = below
    return total


@_kernel(entry=True)
def _pass(task, X, Y, w, params, sizes, has_bias, scale, w_start, b_start, acts, deltas, grad, out, calls):
    """``_rows`` (at calls[_CALL_ROWS]) over all rows of X: what Python calls for a serial
    forward or gradient.  Arguments as there.  ``_rows`` itself has no Python-call
    wrapper (a sizeable compile of its own), so that training, which calls it only
    from ``_train_batches``, does not compile one."""
    return _call(_CALL_ROWS, calls[_CALL_ROWS], (task, X, Y, w, np.int64(0), X.shape[0], params, sizes, has_bias,
                                                 scale, w_start, b_start, acts, deltas, grad, out, calls))


@_kernel(entry=True)
def _train_batches(X, Y, w, first, last, params, sizes, has_bias, loss, w_start, b_start, acts, deltas, grad,
                   training, calls):
    """One epoch of mini-batches over visits first .. last - 1 (see ``train_epoch``): each
    batch's gradient, with its own normaliser, into grad (``_rows`` at calls[_CALL_ROWS]),
    then the L2 penalty (calls[_CALL_PENALTY], when alpha > 0) and one update
    (calls[_CALL_UPDATE]); returns the sum_i w_i e_i of the rows visited.

    Arguments as in ``_rows``; ``loss``: the loss's code, for each batch's
    normalisers; ``training``: see ``_training_argument``.  With a visiting
    order, each batch's rows are gathered into batch_X, batch_Y, batch_w and
    read as read-only arrays.
    """
    order, batch_size, hyper, state, step, batch_X, batch_Y, batch_w = training
    total = 0.0
    for batch_first in range(first, last, batch_size):
        batch_last = _smaller(batch_first + batch_size, last)
        rows_X, rows_Y, rows_w, start, stop = X, Y, w, batch_first, batch_last
        if order.shape[0]:
            rows = order[batch_first:batch_last]
            _gather_rows(X, rows, batch_X)
            _gather_rows(Y, rows, batch_Y)
            if w.shape[0]:
                for i in range(rows.shape[0]):
                    batch_w[i] = w[rows[i]]
            rows_X, rows_Y, rows_w = _as_read_only(batch_X), _as_read_only(batch_Y), _as_read_only(batch_w)
            start, stop = np.int64(0), batch_last - batch_first
        weight = _batch_weight(rows_w, start, stop)
        c = typed(_normaliser(weight, sizes[-1], loss), params)
        # grad[:0]: ``_rows``'s ``out``, which a gradient does not write.
        total += _call(_CALL_ROWS, calls[_CALL_ROWS], (np.int64(_GRADIENT), rows_X, rows_Y, rows_w, start, stop, params,
                                                       sizes, has_bias, c, w_start, b_start, acts, deltas, grad,
                                                       grad[:0], calls))
        if calls[_CALL_PENALTY]:
            _call(_CALL_PENALTY, calls[_CALL_PENALTY], (params, sizes, w_start, hyper[_ALPHA], weight, loss, grad))
        step[0] = _call(_CALL_UPDATE, calls[_CALL_UPDATE], (params, grad, hyper, state, step[0], np.int64(0),
                                                            np.int64(params.shape[0])))
    return total


@_kernel()
def _write_activations(acts, sizes, first_row, m, n, out):
    """A tile's activations (rows first_row .. first_row + m - 1) into ``out``, row-major
    per layer, for the last layers f .. L whose blocks fill it (``first_written_layer``,
    checked before the call): layer L's (n, sizes[L]) block ends out, and each layer's
    block ends where the next one's starts.

    A layer of one unit (a regressor's or binary classifier's output) is a
    contiguous copy, a loop LLVM vectorises; in the general loop nest the
    inner loop runs over the units, once for one unit, so every row would
    cost a scalar store and its index arithmetic, a large part of a narrow
    network's whole forward pass."""
    _full_width_loops()
    end = out.shape[0]
    for layer in range(sizes.shape[0] - 1, 0, -1):
        if end == 0:
            break
        width = sizes[layer]
        end -= n * width
        if width == 1:
            single = acts[layer, 0]
            for t in range(m):
                out[end + first_row + t] = single[t]
            continue
        for t in range(m):
            for j in range(width):
                out[end + (first_row + t) * width + j] = acts[layer, j, t]


@_kernel()
def _add_elementwise(target, source):
    """target += source, item by item (1-D arrays of one length and dtype)."""
    _full_width_loops()
    for i in range(target.shape[0]):
        target[i] += source[i]


@_kernel()
def _add_partial_gradients(parts, count, first_wave, grad):
    """grad = (0 in the first wave, else grad) + parts[0] + ... + parts[count - 1], added
    in block order, in the calling thread.  parts: (>= count, >= len(grad)), grad's dtype;
    only the first len(grad) items of each row are read."""
    _full_width_loops()
    if first_wave:
        for i in range(grad.shape[0]):
            grad[i] = 0.0
    for slot in range(count):
        _add_elementwise(grad, parts[slot])


@_kernel(parallel=True)
def _chunked_partial_sum(parts, count, first_wave, grad):
    """``_add_partial_gradients`` on the threads, in chunks of PARAMETER_CHUNK parameters:
    each parameter's sum in block order, whichever thread adds it, so the same bits.
    A kernel of its own (kind _CALL_PARTIAL_SUM), called at its address, so that only
    a fit with batches of several blocks compiles it: a parallel loop costs Numba
    about a third of a second to compile.  Its loop over a chunk's slices is its
    own: ``_add_partial_gradients`` taking a range compiled slower where gradients
    link it in (benchmarks/NOTES.md)."""
    for chunk in prange((grad.shape[0] + PARAMETER_CHUNK - 1) // PARAMETER_CHUNK):
        start = np.int64(chunk) * PARAMETER_CHUNK
        stop = _smaller(start + PARAMETER_CHUNK, grad.shape[0])
        target = grad[start:stop]
        if first_wave:
            for i in range(target.shape[0]):
                target[i] = 0.0
        for slot in range(count):
            _add_elementwise(target, parts[slot, start:stop])


@_kernel(parallel=True)
def _chunked_update(params, grad, hyper, state, step, update):
    """The optimizer's update at address ``update`` (kind _CALL_UPDATE) on all of params,
    on the threads in chunks of PARAMETER_CHUNK parameters, each from the same step
    count step[0], which then becomes the count after the update (an empty range's
    answer).  Elementwise: the same bits as one call.  A kernel of its own, called
    at its address, so that only a fit with batches of several blocks compiles it."""
    t = step[0]
    for chunk in prange((params.shape[0] + PARAMETER_CHUNK - 1) // PARAMETER_CHUNK):
        start = np.int64(chunk) * PARAMETER_CHUNK
        _call(_CALL_UPDATE, update, (params, grad, hyper, state, t, start,
                                     _smaller(start + PARAMETER_CHUNK, params.shape[0])))
    step[0] = _call(_CALL_UPDATE, update, (params, grad, hyper, state, t, np.int64(0), np.int64(0)))


@_kernel(parallel=True, entry=True)
def _blocks(task, X, Y, w, params, sizes, has_bias, loss, scale, block_rows, work, parts, grad, out, training,
            calls):
    """``_rows`` over all rows of X, in blocks of ``block_rows`` rows run in parallel:
    _FORWARD and _GRADIENT as there (grad = the gradient, returns sum_i w_i e_i),
    _TRAIN one batch of training: X, Y, w are the batch, its gradient takes
    the batch's own normaliser (``scale`` unread), then the L2 penalty
    (calls[_CALL_PENALTY], when alpha > 0) and one update (calls[_CALL_UPDATE],
    with ``training``'s hyper, state and step).

    Arguments as in ``_rows`` and ``_train_batches`` (scale may be float64); work and parts as
    ``_work_memory`` returns them; ``_rows`` itself is called at
    calls[_CALL_ROWS], so its code is not compiled again here.  For the
    gradient, waves of ``parts.shape[0]`` blocks run in parallel, each block
    into its own row of ``parts``, and the parts are then added to ``grad``
    in block order.  Block sizes and the order of that sum never depend on
    the number of threads, so neither does the result, bit for bit; nor does
    Numba's schedule (by default an equal share of a wave's blocks for each
    thread: blocks of a batch come in equal lengths, as many as a multiple of
    four where that cuts whole tiles, ``fastnet.backends.block_rows``; the
    caller's chunk size otherwise).  In
    training, that sum and the update run on the threads too
    (calls[_CALL_PARTIAL_SUM] and calls[_CALL_CHUNKED_UPDATE]).
    Forward's blocks are independent: one wave of all.
    """
    # Only the prange below may become parallel: whole-array statements in a
    # parallel function would each launch threads, so these are plain loops.
    w_start, b_start, acts, deltas, errors = work
    c, n, weight, rows_task = typed(scale, params), X.shape[0], 0.0, task
    if task == _TRAIN:
        weight, rows_task = _batch_weight(w, np.int64(0), n), _GRADIENT
        c = typed(_normaliser(weight, sizes[-1], loss), params)
    n_blocks = (n + block_rows - 1) // block_rows
    wave_size = n_blocks if task == _FORWARD else parts.shape[0]
    total = 0.0
    for wave in range(0, n_blocks, wave_size):
        count = _smaller(wave_size, n_blocks - wave)
        for slot in prange(count):
            first, thread = (wave + np.int64(slot)) * block_rows, get_thread_id()  # prange's index is unsigned
            last = _smaller(first + block_rows, n)
            if task == _FORWARD:
                _call(_CALL_ROWS, calls[_CALL_ROWS], (rows_task, X, Y, w, first, last, params, sizes, has_bias, c,
                                                      w_start, b_start, acts[thread], deltas[thread], grad, out, calls))
            else:
                errors[slot] = _call(_CALL_ROWS, calls[_CALL_ROWS],
                                     (rows_task, X, Y, w, first, last, params, sizes, has_bias, c, w_start,
                                      b_start, acts[thread], deltas[thread], parts[slot], out, calls))
        if task != _FORWARD:
            if calls[_CALL_PARTIAL_SUM]:
                _call(_CALL_PARTIAL_SUM, calls[_CALL_PARTIAL_SUM], (parts, count, wave == 0, grad))
            else:
                _add_partial_gradients(parts, count, wave == 0, grad)
            for slot in range(count):
                total += errors[slot]
    if task == _TRAIN:
        hyper, state, step = training[2], training[3], training[4]
        if calls[_CALL_PENALTY]:
            _call(_CALL_PENALTY, calls[_CALL_PENALTY], (params, sizes, w_start, hyper[_ALPHA], weight, loss, grad))
        _call(_CALL_CHUNKED_UPDATE, calls[_CALL_CHUNKED_UPDATE],
              (params, grad, hyper, state, step, calls[_CALL_UPDATE]))
    return total


@_kernel()
def _batch_weight(w, first, last):
    """W = sum of w[first:last] in float64, or last - first when w is empty (every weight 1)."""
    if not w.shape[0]:
        return float(last - first)
    weight = 0.0
    for i in range(first, last):
        weight += w[i]
    return weight


@_kernel()
def _normaliser(weight, n_outputs, loss):
    """c for a batch of total row weight ``weight``: 1 for sums, 1 / W for mean losses,
    1 / (W n_outputs) for per-output ones, 0 when that is 1 / 0 (fastnet.backends.loss_normaliser)."""
    if not _LOSS_MEAN[loss]:
        return 1.0
    total = weight * n_outputs if _LOSS_PER_OUTPUT[loss] else weight
    return 1.0 / total if total > 0 else 0.0


@_kernel()
def _penalty_normaliser(weight, loss):
    """r of the L2 penalty: 1 / W for mean losses (0 for W = 0), 1 for sums
    (fastnet.backends.penalty_normaliser)."""
    if not _LOSS_MEAN[loss]:
        return 1.0
    return 1.0 / weight if weight > 0 else 0.0


@_kernel()
def _add_penalty(params, sizes, w_start, alpha, weight, loss, grad):
    """grad[i] += coefficient * params[i] over every weight matrix W_l (not the biases):
    the L2 penalty's gradient alpha r W for a batch of total row weight ``weight``,
    coefficient = alpha r (float64, rounded once; r from ``_penalty_normaliser``)."""
    _full_width_loops()
    coefficient = alpha * _penalty_normaliser(weight, loss)
    if coefficient == 0.0:
        return
    factor = typed(coefficient, params)
    for layer in range(sizes.shape[0] - 1):
        first, count = w_start[layer], sizes[layer] * sizes[layer + 1]
        # Slices indexed from 0: no index can be negative, so the loop has no
        # wraparound selects and vectorises.
        gradient, weights = grad[first:first + count], params[first:first + count]
        for i in range(count):
            gradient[i] += factor * weights[i]


# The optimizers of fastnet.spec.OPTIMIZERS, one kernel each (kind _CALL_UPDATE):
# one step on params[start:stop] in place, from grad, the hyper-parameters
# (float64, the fields of fastnet.spec.HYPER_FIELDS) and the state (see
# fastnet.backends), each parameter on its own, so that a caller may update
# ranges on several threads.  ``t`` is the step count before the step (Adam's,
# step[0] of the optimizer state); each kernel returns the count after it,
# also for an empty range.  Slices indexed from 0: no index can be negative,
# so the loops have no wraparound selects and vectorise.

@_kernel()
def _sgd_update(params, grad, hyper, state, t, start, stop):
    """p -= lr g; returns t (no step count)."""
    _full_width_loops()
    lr = typed(hyper[_LR], params)
    weights, gradient = params[start:stop], grad[start:stop]
    for i in range(weights.shape[0]):
        weights[i] -= lr * gradient[i]
    return t


@_kernel()
def _momentum_update(params, grad, hyper, state, t, start, stop):
    """v = mu v + g; p -= lr v, the velocity v in state[0]; returns t (no step count)."""
    _full_width_loops()
    lr, momentum = typed(hyper[_LR], params), typed(hyper[_MOMENTUM], params)
    weights, gradient, velocity = params[start:stop], grad[start:stop], state[0, start:stop]
    for i in range(weights.shape[0]):
        velocity[i] = momentum * velocity[i] + gradient[i]
        weights[i] -= lr * velocity[i]
    return t


#: spec.adam_scalars, compiled: the one definition of Adam's per-step scalars.
_adam_scalars = register_jitable(spec.adam_scalars)


@_kernel()
def _adam_update(params, grad, hyper, state, t, start, stop):
    """Adam (fastnet.spec.OPTIMIZERS), step t + 1 (returned): m = b1 m + (1 - b1) g;
    v = b2 v + (1 - b2) g^2; p -= lr_t (m / (sqrt(v) + eps_t)), m and v in state[0]
    and state[1], lr_t and eps_t from ``spec.adam_scalars`` rounded to params' dtype."""
    _full_width_loops()
    beta1, beta2 = typed(hyper[_BETA1], params), typed(hyper[_BETA2], params)
    one = typed(1.0, params)
    t += 1
    lr_t, eps_t = _adam_scalars(hyper[_LR], hyper[_BETA1], hyper[_BETA2], hyper[_EPS], float(t))
    lr_t, eps_t = typed(lr_t, params), typed(eps_t, params)
    weights, gradient = params[start:stop], grad[start:stop]
    first_moment, second_moment = state[0, start:stop], state[1, start:stop]
    for i in range(weights.shape[0]):
        first_moment[i] = beta1 * first_moment[i] + (one - beta1) * gradient[i]
        second_moment[i] = beta2 * second_moment[i] + (one - beta2) * gradient[i] * gradient[i]
        weights[i] -= lr_t * (first_moment[i] / (math.sqrt(second_moment[i]) + eps_t))
    return t


def _aligned_empty(shape, dtype, alignment=CACHE_LINE_BYTES):
    """np.empty(shape, dtype) starting on an ``alignment``-byte boundary.

    numpy's allocator only promises 16 bytes; with tile rows of a multiple of 16
    doubles (whole cache lines), a base 16 bytes off a cache line makes every
    vector load of every tile row straddle two lines (measured: the [64, 128, 1]
    gradient ran 15-20% slower in such runs).
    """
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + nbytes].view(dtype).reshape(shape)


#: Each Python thread's most recent work memory (``key``, ``memory``), reused
#: by its next call of the same shape: allocating it took a fifth of a
#: 10k-row gradient.  Per thread because kernels release the GIL, so two
#: threads may run kernels at once; one thread runs one kernel at a time.
_recent_work = threading.local()

#: Work memory larger than this is not kept between calls: for networks that
#: big, allocating costs little next to the call, and holding tens of MB per
#: thread after the call would surprise.
KEPT_WORK_BYTES = 8 * 2**20


def _work_memory(n_rows, block_rows, params, layout, partial_gradients=True):
    """Work memory for a call on up to n_rows rows in blocks of block_rows, in params' dtype:
    ((w_start, b_start, acts, deltas, errors), parts); ``partial_gradients``
    False (a forward pass, which reads neither) keeps errors and parts to one slot.

    w_start, b_start are the layout's offsets of each W_l and b_l; acts
    (threads, n_layers, widest, tile) and deltas (threads, 2, widest
    output, tile) are each thread's tiles (tile = ``tile_rows(sizes)``), threads = 1 for a single
    block (see "Work memory" above);
    errors (slots,) and parts (slots, _part_stride(params)) the sum_i w_i e_i and
    partial gradient of each block of a parallel wave.  Allocated in
    Python, so that the kernels need no reference counting (see _kernel),
    and, up to KEPT_WORK_BYTES, kept for the calling thread's next call of
    the same shape (kernels overwrite all of it before reading).
    """
    # A batch of at most one block runs serially (``_run``): one thread's tiles,
    # without asking Numba for its thread count, which costs microseconds a call.
    threads = get_num_threads() if n_rows > block_rows else 1
    slots = _slots(-(-n_rows // block_rows), params, threads) if partial_gradients else 1
    key = (layout, threads, slots, params.dtype.char)
    if getattr(_recent_work, "key", None) == key:
        return _recent_work.memory
    _recent_work.key = _recent_work.memory = None  # drop the old memory first
    memory = _allocate_work_memory(threads, slots, params, layout)
    (_, _, acts, deltas, _), parts = memory
    if acts.nbytes + deltas.nbytes + parts.nbytes <= KEPT_WORK_BYTES:
        _recent_work.key, _recent_work.memory = key, memory
    return memory


def tile_rows(sizes):
    """Rows per tile of the Numba kernels for a network of layer widths ``sizes``
    (int64 (L + 1,), inputs first): NARROW_TILE_ROWS when no layer is wider than
    NARROW_WIDTH units, else TILE_ROWS (see fastnet._config)."""
    return NARROW_TILE_ROWS if int(sizes.max()) <= NARROW_WIDTH else TILE_ROWS


def _allocate_work_memory(threads, slots, params, layout):
    """The arrays of ``_work_memory``, freshly allocated."""
    sizes = layout.sizes
    tile = tile_rows(sizes)
    acts = _aligned_empty((threads, sizes.shape[0], int(sizes.max()), tile), params.dtype)
    # One vector more than the widest layer's units: room for the padded rows
    # of the transposed delta (see ``_outer_weight_gradient``).
    units = int(sizes[1:].max()) + _vector_lanes(params.dtype)
    deltas = _aligned_empty((threads, 2, units, tile), params.dtype)
    work = (layout.weight_offsets, layout.bias_offsets, acts, deltas, np.zeros(slots))
    return work, _aligned_empty((slots, _part_stride(params)), params.dtype)


def _part_stride(params):
    """Items per row of the partial gradients of ``params``: its length rounded up to
    whole cache lines, so that each block's partial has lines of its own (fastnet._config)."""
    return _round_up(params.shape[0], CACHE_LINE_BYTES // params.itemsize)


def _read_only(array):
    """A read-only plain-ndarray view of ``array``, without a copy.

    Numba compiles one signature for read-only arrays (a memory-mapped
    .npy file is one) and another for writable ones.  Every kernel is
    handed read-only views of its inputs, so one compiled signature serves
    both, and a memmap subclass is never seen as a new type.
    """
    view = array.view(np.ndarray)
    view.setflags(write=False)
    return view


#: dtype char -> the ``training`` argument of ``_blocks`` for the tasks that do not
#: read it: empty arrays of the right types, made once (a call must stay cheap).
_NO_TRAINING = {}

#: dtype char -> an empty array for an output a task does not write.
_EMPTY = {char: np.empty(0, char) for char in "fd"}


def _empty(dtype):
    """A shared empty 1-D array of ``dtype``: a placeholder output (never written)."""
    return _EMPTY[dtype.char]


def _no_training(dtype):
    """``_blocks``'s ``training`` placeholder for params of ``dtype`` (see _NO_TRAINING)."""
    if dtype.char not in _NO_TRAINING:
        empty, rows = np.empty(0, dtype), np.empty((0, 0), dtype)
        _NO_TRAINING[dtype.char] = (np.empty(0, np.int64), 1, np.zeros(len(spec.HYPER_FIELDS)),
                                    np.empty((spec.STATE_ROWS, 0), dtype), np.zeros(1, np.int64), rows, rows, empty)
    return _NO_TRAINING[dtype.char]


#: Activation code -> its kernel (kind _CALL_ACTIVATION); linear has none.
_ACTIVATION_KERNELS = {_SIGMOID: _sigmoid_tile, _TANH: _tanh_tile, _RELU: _relu_tile, _SOFTMAX: _softmax_tile}

#: (activation code, derivative code) -> its slope's kernel (kind _CALL_SLOPE);
#: linear and softmax have none.
_SLOPE_KERNELS = {(code, derivative.code): kernel
                  for code, kernel in ((_SIGMOID, _sigmoid_slope), (_TANH, _tanh_slope), (_RELU, _relu_slope))
                  for derivative in spec.DERIVATIVES.values()}
_SLOPE_KERNELS[_SIGMOID, _ARTICLE] = _sigmoid_article_slope

#: Optimizer code -> its kernel (kind _CALL_UPDATE).
_UPDATE_KERNELS = {spec.OPTIMIZERS["sgd"].code: _sgd_update, spec.OPTIMIZERS["momentum"].code: _momentum_update,
                   spec.OPTIMIZERS["adam"].code: _adam_update}

#: Loss code -> the kernel of its output delta (kind _CALL_OUTPUT_DELTA).
_OUTPUT_DELTA_KERNELS = {spec.LOSSES["sse"].code: _squared_error_delta, spec.LOSSES["mse"].code: _squared_error_delta,
                         _BCE: _binary_cross_entropy_delta, _CROSS_ENTROPY: _softmax_cross_entropy_delta}

#: (kernel, kind, dtype char) -> the address of the kernel compiled for ``_signature``.
_ADDRESSES = {}

#: (task, optimizer, penalised, dtype char, activation codes, derivative, loss, layer sizes) -> a call
#: table (``_call_table``).
_CALL_TABLES = {}


def _address(kernel, kind, dtype):
    """Where ``kernel``, compiled for ``_signature(kind, ...)`` in ``dtype``, starts.

    Compiles it, or loads it from Numba's cache, on first use.  Without
    the JIT (NUMBA_DISABLE_JIT=1), the kernel itself, which ``_call`` calls.
    """
    if numba.config.DISABLE_JIT:
        return kernel
    key = (kernel, kind, dtype.char)
    found = _ADDRESSES.get(key)
    if found is None:
        returns, argtypes = _signature(kind, numba.from_dtype(dtype))
        kernel.compile(argtypes)
        compiled = kernel.overloads[argtypes]
        if compiled.signature.return_type != returns:
            raise TypeError(f"{kernel.__name__} returns {compiled.signature.return_type}, "
                            f"its calls expect {returns}")
        found = _ADDRESSES[key] = compiled.library.get_pointer_to_function(compiled.fndesc.mangled_name)
    return found


def _call_table(task, model, optimizer=None, penalised=False, chunked=False):
    """The ``calls`` argument of ``_rows`` for ``task`` on ``model``: int64 addresses of
    ``_rows`` itself (which ``_pass``, ``_train_batches`` and ``_blocks`` call) and of the
    kernels it runs (see _CALL_ROWS), each compiled on first use; for _TRAIN the update
    of the optimizer code ``optimizer`` and, if ``penalised`` (alpha > 0), the L2
    penalty; with ``chunked`` (for training in ``_blocks``) the kernels that run the
    sum of partial gradients and the update on the threads.  Made once per kind and shape of network."""
    dtype, codes, loss = model.params.dtype, model.activations, int(model.loss)
    optimizer = None if optimizer is None else int(optimizer)
    penalised, chunked = task == _TRAIN and bool(penalised), task == _TRAIN and bool(chunked)
    sizes = model.layout.sizes
    key = (task, optimizer, penalised, chunked, dtype.char, codes.tobytes(), int(model.derivative), loss,
           sizes.tobytes())
    table = _CALL_TABLES.get(key)
    if table is not None:
        return table
    blocked, outer = _wide_layers(sizes, dtype)
    n_layers = codes.shape[0]
    table = [0] * (_FIRST_LAYER_CALL + 2 * n_layers)
    table[_CALL_FORWARD] = _address(_forward_tile, _CALL_FORWARD, dtype)
    table[_CALL_PRODUCTS] = _address(_add_products if blocked else _add_streamed_products, _CALL_PRODUCTS, dtype)
    table[_CALL_ROWS] = _address(_rows, _CALL_ROWS, dtype)
    if task == _FORWARD:
        table[_CALL_WRITE] = _address(_write_activations, _CALL_WRITE, dtype)
    else:
        table[_CALL_WEIGHT_GRADIENT] = _address(_accumulate_weight_gradient, _CALL_WEIGHT_GRADIENT, dtype)
        if outer:
            table[_CALL_OUTER_GRADIENT] = _address(_add_outer_weight_gradient, _CALL_OUTER_GRADIENT, dtype)
        table[_CALL_OUTPUT_DELTA] = _address(_OUTPUT_DELTA_KERNELS[loss], _CALL_OUTPUT_DELTA, dtype)
    if task == _TRAIN:
        table[_CALL_UPDATE] = _address(_UPDATE_KERNELS[optimizer], _CALL_UPDATE, dtype)
    if chunked:
        table[_CALL_PARTIAL_SUM] = _address(_chunked_partial_sum, _CALL_PARTIAL_SUM, dtype)
        table[_CALL_CHUNKED_UPDATE] = _address(_chunked_update, _CALL_CHUNKED_UPDATE, dtype)
    if penalised:
        table[_CALL_PENALTY] = _address(_add_penalty, _CALL_PENALTY, dtype)
    for layer, code in enumerate(codes.tolist()):
        output = layer == n_layers - 1
        # Cross-entropy reads the output layer's pre-activations, and it and
        # binary cross-entropy fuse the output slope into their delta.
        if code in _ACTIVATION_KERNELS and not (output and task != _FORWARD and loss == _CROSS_ENTROPY):
            table[_FIRST_LAYER_CALL + layer] = _address(_ACTIVATION_KERNELS[code], _CALL_ACTIVATION, dtype)
        slope = _SLOPE_KERNELS.get((code, int(model.derivative)))
        if task != _FORWARD and slope is not None and not (output and loss in (_BCE, _CROSS_ENTROPY)):
            table[_FIRST_LAYER_CALL + n_layers + layer] = _address(slope, _CALL_SLOPE, dtype)
    if not numba.config.DISABLE_JIT:
        table = np.array(table, np.int64)
    _CALL_TABLES[key] = table
    return table


def _wide_layers(sizes, dtype):
    """(blocked, outer): whether a layer of these sizes reaches the register-blocked
    products (``_blocked_rows`` of its forward product, rows its outputs and columns
    its inputs, or of its backward one, computed for every layer but the first) and
    the outer-product weight gradient (``_outer_outputs``).  The call table holds
    those kernels only then, so a first call on a narrow network does not compile
    them."""
    lanes = _vector_lanes(dtype)
    layers = list(zip(sizes[:-1].tolist(), sizes[1:].tolist()))
    blocked = any(_blocked_rows(fan_out, fan_in) or (layer > 0 and _blocked_rows(fan_in, fan_out))
                  for layer, (fan_in, fan_out) in enumerate(layers))
    outer = any(_outer_outputs(fan_in, fan_out, lanes) for fan_in, fan_out in layers)
    return blocked, outer


def _training_calls(model, optimizer, chunked=False):
    """``_call_table`` of _TRAIN for ``model`` trained by ``optimizer`` (a fastnet.backends
    optimizer: its code, and its hyper-parameters' alpha); ``chunked`` for ``_blocks``."""
    return _call_table(_TRAIN, model, optimizer.code, optimizer.hyper[_ALPHA] > 0.0, chunked=chunked)


def _run(task, model, X, Y, w, scale, block_rows, memory, grad, out):
    """``_rows`` over all rows of X (read-only, as Y and w) for _FORWARD or _GRADIENT;
    for _GRADIENT, grad = the gradient and the return value sum_i w_i e_i, scale the
    factor c of the output delta (1: unnormalised sums).

    memory: ``_work_memory``'s for blocks of block_rows rows.  A batch of one
    block runs serially in the calling thread; the parallel ``_blocks`` is
    compiled only once a call has more.
    """
    work, parts = memory
    params, layout = model.params, model.layout
    codes = (bool(layout.has_bias), int(model.loss))
    if X.shape[0] > block_rows:
        return _blocks(task, X, Y, w, params, layout.sizes, *codes, scale, block_rows, work, parts, grad, out,
                       _no_training(params.dtype), _call_table(task, model))
    w_start, b_start, acts, deltas, _ = work
    return _pass(task, X, Y, w, params, layout.sizes, bool(layout.has_bias), params.dtype.type(scale), w_start,
                 b_start, acts[0], deltas[0], grad, out, _call_table(task, model))


def forward(model, X, out):
    """The activations of the last layers that fill ``out`` (every layer's, or the output
    layer's alone), written row-major into the flat ``out``.

    X: (n, sizes[0]) float64 or float32; model.params packed in X's dtype;
    out: X's dtype, layer l as an (n, sizes[l]) block (the contract in
    fastnet.backends).  A_{l+1} = f_l(A_l @ W_l + b_l), in blocks of
    ``fastnet.backends.block_rows`` rows (independent: any block size gives the same rows).
    """
    params, layout = model.params, model.layout
    checked_first_written_layer(layout.sizes, X.shape[0], out)
    no_targets = _read_only(np.empty((0, int(layout.sizes[-1])), params.dtype))
    no_weights = _read_only(_empty(params.dtype))
    rows_per_block = block_rows(X.shape[0], layout)
    memory = _work_memory(X.shape[0], rows_per_block, params, layout, partial_gradients=False)
    _run(_FORWARD, model, _read_only(X), no_targets, no_weights, 1.0, rows_per_block, memory, _empty(params.dtype),
         out)


def _slots(n_blocks, params, threads):
    """Blocks per parallel wave: as many as PARTIAL_GRADIENT_BYTES of partial
    gradients allow (fewer waves, fewer thread wake-ups), at least one per
    thread, and no more than there are blocks."""
    affordable = PARTIAL_GRADIENT_BYTES // (_part_stride(params) * params.itemsize)
    return int(min(n_blocks, max(threads, affordable)))


def gradient(model, rows, grad):
    """Fused unnormalised sums over all rows: writes the gradient of sum_i w_i e_i
    into ``grad`` (packed like params) and returns that sum (the contract in
    fastnet.backends).  float64 or float32 throughout.  Uses up to
    ``numba.get_num_threads()`` threads on more than one block
    (``fastnet.backends.block_rows``), with a result that does not depend on that.
    """
    X, Y, sample_weight = _read_only(rows.X), _read_only(rows.Y), _read_only(rows.sample_weight)
    rows_per_block = block_rows(X.shape[0], model.layout)
    memory = _work_memory(X.shape[0], rows_per_block, model.params, model.layout)
    return _run(_GRADIENT, model, X, Y, sample_weight, 1.0, rows_per_block, memory, grad, _empty(model.params.dtype))


@_kernel()
def _gather_rows(source, rows, target):
    """target[i, :] = source[rows[i], :] for each i: one mini-batch, in the visiting order."""
    _full_width_loops()
    for i in range(rows.shape[0]):
        row = rows[i]
        for j in range(source.shape[1]):
            target[i, j] = source[row, j]


def _training_argument(order, batch_size, optimizer, X, Y, w, dtype):
    """The ``training`` argument of ``_train_batches`` and ``_blocks``: (order, batch_size,
    hyper, state, step, batch_X, batch_Y, batch_w), the batch arrays (of ``dtype``) empty
    unless a visiting order gathers each batch into them."""
    gathered = batch_size if order.shape[0] else 0
    batch_X = np.empty((gathered, X.shape[1]), dtype)
    batch_Y = np.empty((gathered, Y.shape[1]), dtype)
    batch_w = np.empty(gathered if w.shape[0] else 0, dtype)
    return order, batch_size, optimizer.hyper, optimizer.state, optimizer.step, batch_X, batch_Y, batch_w


def _train_split_batches(model, X, Y, w, order, batch_size, rows_per_block, optimizer, grad):
    """One epoch of batches of more than one block of ``rows_per_block`` rows;
    returns sum_i w_i e_i.

    A Python loop over the batches, one compiled call each: ``_blocks``
    (_TRAIN: the batch's gradient in parallel, with its own normaliser, then
    the penalty and one update), or ``_train_batches`` for a last batch of
    one block.  A batch worth splitting (``fastnet.backends.block_rows``) takes
    far longer than the loop.  Arguments as in ``train_epoch``, inputs already read-only.
    """
    params, layout = model.params, model.layout
    training = _training_argument(order, batch_size, optimizer, X, Y, w, params.dtype)
    batch_X, batch_Y, batch_w = training[5:]
    work, parts = _work_memory(batch_size, rows_per_block, params, layout)
    w_start, b_start, acts, deltas, _ = work
    codes, no_output = (bool(layout.has_bias), int(model.loss)), _empty(params.dtype)
    calls = _training_calls(model, optimizer, chunked=True)
    visits, total = (order.shape[0] if order.shape[0] else X.shape[0]), 0.0
    for first in range(0, visits, batch_size):
        last = min(first + batch_size, visits)
        if last - first <= rows_per_block:
            total += _train_batches(X, Y, w, first, last, params, layout.sizes, *codes, w_start, b_start, acts[0],
                                    deltas[0], grad, training, calls)
            continue
        if order.shape[0]:
            rows, m = order[first:last], last - first
            # mode="clip" (the rows are valid indices): with the default "raise" and an
            # out, numpy gathers through a buffer, about three times as slow.
            rows_X, rows_Y = np.take(X, rows, 0, batch_X[:m], "clip"), np.take(Y, rows, 0, batch_Y[:m], "clip")
            rows_w = np.take(w, rows, 0, batch_w[:m], "clip") if w.shape[0] else w
            rows_X, rows_Y, rows_w = _read_only(rows_X), _read_only(rows_Y), _read_only(rows_w)
        else:
            rows_X, rows_Y, rows_w = X[first:last], Y[first:last], w[first:last] if w.shape[0] else w
        total += _blocks(_TRAIN, rows_X, rows_Y, rows_w, params, layout.sizes, *codes, 1.0, rows_per_block, work,
                         parts, grad, no_output, training, calls)
    return total


def train_epoch(model, rows, order, batch_size, optimizer, grad):
    """One epoch of mini-batch gradient descent: one compiled call (``_train_batches``,
    serial) for batches of one block (``fastnet.backends.block_rows``), one
    call per batch for batches of more.

    Shapes, losses and update rules: the contract in fastnet.backends.
    Updates model.params and the optimizer's state and step in place;
    returns the sum_i w_i e_i of the rows visited (all of them, or those of
    ``order``, which may be part of an epoch).  Shuffled batches are gathered into
    batch arrays, which the kernel reads as read-only arrays (``_as_read_only``),
    so that in-place and gathered batches are one type to Numba.
    """
    params, layout = model.params, model.layout
    X, Y, sample_weight = _read_only(rows.X), _read_only(rows.Y), _read_only(rows.sample_weight)
    order = order if order.flags.writeable else order.copy()  # one type: see _blocks's training
    visits = order.shape[0] if order.shape[0] else X.shape[0]
    batch_size = min(int(batch_size), visits)
    rows_per_block = block_rows(batch_size, layout)
    if batch_size > rows_per_block:
        return _train_split_batches(model, X, Y, sample_weight, order, batch_size, rows_per_block, optimizer, grad)
    training = _training_argument(order, batch_size, optimizer, X, Y, sample_weight, params.dtype)
    w_start, b_start, acts, deltas, _ = _work_memory(batch_size, rows_per_block, params, layout)[0]
    return _train_batches(X, Y, sample_weight, 0, visits, params, layout.sizes, bool(layout.has_bias),
                          int(model.loss), w_start, b_start, acts[0], deltas[0], grad, training,
                          _training_calls(model, optimizer))
