/* fastnet._native: the CPython extension over the C kernels of network.c
 * (the SIMD variant runtime.c chose at import, through fn_kernels()).
 *
 * Arrays come in through the buffer protocol (numpy arrays, memoryviews, ...),
 * so no numpy headers are needed.  Every buffer is checked for dtype,
 * contiguity and exact length before any kernel runs, so the kernels can never
 * read or write outside their arrays; the GIL is released while they run.
 * X's dtype (float64 or float32, struct code 'd' or 'f') picks the kernels
 * (the _f64 or _f32 ones of network.h); every other float array of the call
 * must share it (TypeError otherwise), except hyper, always float64.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "network.h"

/* Item types of the buffers the kernels take.  X fixes a call's float type
 * (FLOAT64 or FLOAT32); every other float array must then match it. */
typedef enum { FLOAT64, FLOAT32, INT64, ANY_FLOAT } Dtype;

static const struct {
    const char *name;
    const char *codes;   /* struct codes accepted, in native order */
    Py_ssize_t itemsize;
} DTYPES[] = {
    [FLOAT64] = {"float64", "d", 8},
    [FLOAT32] = {"float32", "f", 4},
    [INT64] = {"int64", "ql", 8},
    [ANY_FLOAT] = {"float64 or float32", "", 0},
};

static const char PACKED[] = "the packed length for sizes and has_bias";

/* Is `format` one of the single struct codes in `codes`, in native order? */
static int format_in(const char *format, const char *codes)
{
    if (!format)
        return 0;
    if (*format == '@' || *format == '=' || (PY_LITTLE_ENDIAN && *format == '<'))
        format++;
    return format[0] != '\0' && format[1] == '\0' && strchr(codes, format[0]) != NULL;
}

/* The Dtype (FLOAT64, FLOAT32 or INT64) of a buffer's items, or -1 for any other. */
static int dtype_of(const Py_buffer *view)
{
    for (int d = FLOAT64; d <= INT64; d++)
        if (view->itemsize == DTYPES[d].itemsize && format_in(view->format, DTYPES[d].codes))
            return d;
    return -1;
}

/* Get a C-contiguous buffer from obj, writable if asked, whose items have
 * dtype `want` (FLOAT64, FLOAT32 or INT64), or with want = ANY_FLOAT either
 * float type, stored in *got (got may be NULL otherwise).  `like` names the
 * argument that fixed a float dtype, for the message, or is NULL.  Returns
 * 0, or -1 with an exception naming the argument (TypeError for a wrong
 * dtype, ValueError for a wrong layout); view->obj stays NULL on failure. */
static int acquire(PyObject *obj, Py_buffer *view, Dtype want, int writable, const char *name,
                   const char *like, Dtype *got)
{
    const char *wanted = DTYPES[want].name;
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (!PyObject_CheckBuffer(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a %s array (buffer protocol), not %.100s",
                     name, wanted, Py_TYPE(obj)->tp_name);
        view->obj = NULL;
        return -1;
    }
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous%s %s array",
                     name, writable ? ", writable" : "", wanted);
        view->obj = NULL;
        return -1;
    }
    int dtype = dtype_of(view);
    if (want == ANY_FLOAT ? dtype == FLOAT64 || dtype == FLOAT32 : dtype == (int)want) {
        if (got)
            *got = (Dtype)dtype;
        return 0;
    }
    if (dtype >= 0 && like)
        PyErr_Format(PyExc_TypeError, "%s must be %s like %s; got %s", name, wanted, like, DTYPES[dtype].name);
    else if (dtype >= 0)
        PyErr_Format(PyExc_TypeError, "%s must hold %s; got %s", name, wanted, DTYPES[dtype].name);
    else
        PyErr_Format(PyExc_TypeError, "%s must hold %s; got format '%s' with itemsize %zd",
                     name, wanted, view->format ? view->format : "B", view->itemsize);
    PyBuffer_Release(view);
    return -1;
}

/* Check that view holds exactly rows * cols items (cols >= 1), without
 * overflow; ValueError naming the argument and the expected `shape` otherwise. */
static int expect_items(const Py_buffer *view, Py_ssize_t rows, Py_ssize_t cols, const char *name,
                        const char *shape)
{
    Py_ssize_t items = view->len / view->itemsize;
    if (items % cols == 0 && items / cols == rows)
        return 0;
    if (rows == 1)
        PyErr_Format(PyExc_ValueError, "%s has %zd elements, expected %zd (%s)", name, items, cols, shape);
    else
        PyErr_Format(PyExc_ValueError, "%s has %zd elements, expected %s = %zd x %zd",
                     name, items, shape, rows, cols);
    return -1;
}

/* The network shape, from the sizes argument. */
typedef struct {
    int64_t *sizes;          /* private copy: cannot change while the GIL is released */
    int64_t *activations;    /* [L] activation codes of the weight layers: a private copy too */
    int64_t n_layers;        /* entries in sizes, L + 1 >= 2 */
    Py_ssize_t n_params;     /* packed length of params and grad */
    Py_ssize_t n_activations; /* sizes[1] + ... + sizes[L]: out's length per row */
} Layout;

/* fastnet.backends.first_written_layer: the first layer f >= 1 of the last ones whose
 * (n, sizes[l]) blocks fill `items` exactly, or 0 when none do (n >= 1). */
static int64_t first_written_layer(const Layout *layout, Py_ssize_t n, Py_ssize_t items)
{
    if (items % n != 0)
        return 0;
    Py_ssize_t per_row = items / n, held = 0;
    for (int64_t l = layout->n_layers - 1; l >= 1 && held < per_row; l--) {
        held += (Py_ssize_t)layout->sizes[l];
        if (held == per_row)
            return l;
    }
    return 0;
}

/* *total += a * b for a, b >= 0; returns -1 instead if it would pass PY_SSIZE_T_MAX. */
static int add_product(Py_ssize_t *total, int64_t a, int64_t b)
{
    if (a > (PY_SSIZE_T_MAX - *total) / b)
        return -1;
    *total += (Py_ssize_t)(a * b);
    return 0;
}

/* Copy and check activations (int64, one code of fastnet.spec.ACTIVATIONS
 * per weight layer; softmax, row-wise over a layer's units, in the last layer
 * only: the kernels never differentiate it alone).  Returns 0, or -1 with an
 * exception. */
static int read_activations(PyObject *obj, Layout *layout)
{
    Py_buffer view;
    if (acquire(obj, &view, INT64, 0, "activations", NULL, NULL) < 0)
        return -1;
    int64_t L = layout->n_layers - 1;
    int status = expect_items(&view, 1, L, "activations", "len(sizes) - 1, one code per weight layer");
    if (status == 0) {
        layout->activations = PyMem_Malloc((size_t)L * sizeof(int64_t));
        if (layout->activations)
            memcpy(layout->activations, view.buf, (size_t)L * sizeof(int64_t));
        else
            status = (PyErr_NoMemory(), -1);
    }
    PyBuffer_Release(&view);
    for (int64_t l = 0; status == 0 && l < L; l++) {
        if (layout->activations[l] < 0 || layout->activations[l] >= FN_N_ACTIVATION) {
            PyErr_Format(PyExc_ValueError, "activations[%lld] must be one of %s; got %lld", (long long)l,
                         FN_ACTIVATION_NAMES, (long long)layout->activations[l]);
            status = -1;
        } else if (layout->activations[l] == FN_ACTIVATION_SOFTMAX && l + 1 < L) {
            PyErr_Format(PyExc_ValueError, "activations[%lld] = %d (softmax) is allowed in the last layer only "
                         "(activations[%lld]); hidden layers take the other codes of %s", (long long)l,
                         FN_ACTIVATION_SOFTMAX, (long long)(L - 1), FN_ACTIVATION_NAMES);
            status = -1;
        }
    }
    return status;
}

/* Free what read_layout copied (safe after a partial failure). */
static void free_layout(Layout *layout)
{
    PyMem_Free(layout->sizes);
    PyMem_Free(layout->activations);
    layout->sizes = NULL;
    layout->activations = NULL;
}

/* Copy and check sizes (int64, >= 2 entries, each >= 1) and activations (see
 * read_activations), and derive the packed lengths.  Returns 0, or -1 with an
 * exception; free_layout either way. */
static int read_layout(PyObject *obj, PyObject *activations, int has_bias, Layout *layout)
{
    Py_buffer view;
    layout->sizes = NULL;
    layout->activations = NULL;
    if (acquire(obj, &view, INT64, 0, "sizes", NULL, NULL) < 0)
        return -1;
    layout->n_layers = view.len / 8;
    layout->sizes = layout->n_layers >= 2 ? PyMem_Malloc(view.len) : NULL;
    if (layout->sizes)
        memcpy(layout->sizes, view.buf, view.len);
    PyBuffer_Release(&view);
    if (layout->n_layers < 2) {
        PyErr_SetString(PyExc_ValueError, "sizes must have at least 2 entries (inputs and outputs)");
        return -1;
    }
    if (!layout->sizes) {
        PyErr_NoMemory();
        return -1;
    }
    const int64_t *sizes = layout->sizes;
    for (int64_t l = 0; l < layout->n_layers; l++) {
        if (sizes[l] < 1 || sizes[l] > PY_SSIZE_T_MAX) {
            PyErr_Format(PyExc_ValueError, "sizes[%lld] = %lld, expected a positive layer width",
                         (long long)l, (long long)sizes[l]);
            goto fail;
        }
    }
    layout->n_params = layout->n_activations = 0;
    for (int64_t l = 0; l + 1 < layout->n_layers; l++) {
        if (add_product(&layout->n_params, sizes[l], sizes[l + 1]) < 0
            || add_product(&layout->n_params, has_bias ? sizes[l + 1] : 0, 1) < 0
            || add_product(&layout->n_activations, sizes[l + 1], 1) < 0) {
            PyErr_SetString(PyExc_ValueError, "sizes describe a network too large to index");
            goto fail;
        }
    }
    if (read_activations(activations, layout) < 0)
        goto fail;
    return 0;
fail:
    free_layout(layout);
    return -1;
}

/* A 2-D buffer must have `width` columns (other shapes are taken as flat rows). */
static int check_columns(const Py_buffer *view, int64_t width, const char *name, const char *expected)
{
    if (view->ndim != 2 || view->shape[1] == width)
        return 0;
    PyErr_Format(PyExc_ValueError, "%s has %zd columns, expected %s = %lld",
                 name, view->shape[1], expected, (long long)width);
    return -1;
}

/* Rows of X: its length divided by sizes[0], which must divide it and leave >= 1. */
static int count_rows(const Py_buffer *X, const Layout *layout, Py_ssize_t *n)
{
    Py_ssize_t items = X->len / X->itemsize;
    if (items == 0 || items % layout->sizes[0] != 0) {
        PyErr_Format(PyExc_ValueError, "X has %zd elements, expected a positive multiple of sizes[0] = %lld",
                     items, (long long)layout->sizes[0]);
        return -1;
    }
    *n = items / layout->sizes[0];
    return 0;
}

/* Check that `code` is in [0, count); ValueError naming the argument and its codes otherwise. */
static int check_code(int code, int count, const char *name, const char *codes)
{
    if (code >= 0 && code < count)
        return 0;
    PyErr_Format(PyExc_ValueError, "%s must be one of %s; got %d", name, codes, code);
    return -1;
}

/* Check derivative and loss against the codes of fastnet.spec (fastnet_spec.h). */
static int check_codes(int derivative, int loss)
{
    return check_code(derivative, FN_N_DERIVATIVE, "derivative", FN_DERIVATIVE_NAMES) < 0
           || check_code(loss, FN_N_LOSS, "loss", FN_LOSS_NAMES) < 0 ? -1 : 0;
}

/* Check that the loss is defined after the last layer's activation `last`
 * (fastnet.spec.Loss.outputs, as far as the kernels depend on it):
 * cross_entropy exactly after a softmax, bce after a sigmoid (their fused
 * output deltas assume these).  ValueError naming both otherwise. */
static int check_loss_pairing(int loss, int64_t last)
{
    if (loss == FN_LOSS_CROSS_ENTROPY && last != FN_ACTIVATION_SOFTMAX) {
        PyErr_Format(PyExc_ValueError, "loss = %d (cross_entropy) needs a softmax last layer, activations[-1] = %d; "
                     "got activations[-1] = %lld", FN_LOSS_CROSS_ENTROPY, FN_ACTIVATION_SOFTMAX, (long long)last);
        return -1;
    }
    if (last == FN_ACTIVATION_SOFTMAX && loss != FN_LOSS_CROSS_ENTROPY) {
        PyErr_Format(PyExc_ValueError, "a softmax last layer (activations[-1] = %d) needs loss = %d (cross_entropy); "
                     "got loss = %d", FN_ACTIVATION_SOFTMAX, FN_LOSS_CROSS_ENTROPY, loss);
        return -1;
    }
    if (loss == FN_LOSS_BCE && last != FN_ACTIVATION_SIGMOID) {
        PyErr_Format(PyExc_ValueError, "loss = %d (bce) needs a sigmoid last layer, activations[-1] = %d; "
                     "got activations[-1] = %lld", FN_LOSS_BCE, FN_ACTIVATION_SIGMOID, (long long)last);
        return -1;
    }
    return 0;
}

/* An integer argument >= 1 (anything with __index__), read into *value;
 * values beyond LLONG_MAX read as LLONG_MAX.  TypeError if not an integer,
 * ValueError if < 1. */
static int read_positive(PyObject *obj, const char *name, long long *value)
{
    if (!PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an integer >= 1, not %.100s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow;
    *value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (*value == -1 && PyErr_Occurred())
        return -1;
    if (overflow > 0)
        *value = LLONG_MAX;
    if (overflow < 0 || *value < 1) {
        PyErr_Format(PyExc_ValueError, "%s must be an integer >= 1, got %R", name, obj);
        return -1;
    }
    return 0;
}

/* Threads the kernels are asked for: 0 until set_num_threads, meaning all
 * cores (omp_get_max_threads()).  Atomic: the module runs without the GIL
 * on free-threaded builds. */
static atomic_int requested_threads;

/* The arguments gradient and train_epoch share, checked and acquired. */
typedef struct {
    Layout layout;
    Py_buffer X, Y, w, params, grad;
    Dtype dtype;      /* FLOAT64 or FLOAT32: X's, and so every float array's but hyper's */
    Py_ssize_t n;     /* rows of X */
    const void *weights; /* w.buf, or NULL when row_weight is empty (all ones) */
} Problem;

/* Acquire and check X (n, n_0), Y (n, n_L), row_weight (n or 0), params
 * (writable if asked) and grad (writable), all float64 or all float32 (X's
 * dtype, into p->dtype), for the layout of sizes, and that `loss` (a valid
 * code) is defined after its last activation.  Returns 0, or -1 with an
 * exception; release_problem either way. */
static int read_problem(Problem *p, PyObject *X, PyObject *Y, PyObject *row_weight, PyObject *params,
                        int params_writable, PyObject *sizes, PyObject *activations, int has_bias, int loss,
                        PyObject *grad)
{
    memset(p, 0, sizeof *p);
    if (read_layout(sizes, activations, has_bias, &p->layout) < 0
        || check_loss_pairing(loss, p->layout.activations[p->layout.n_layers - 2]) < 0)
        return -1;
    int64_t n_in = p->layout.sizes[0], n_out = p->layout.sizes[p->layout.n_layers - 1];
    if (acquire(X, &p->X, ANY_FLOAT, 0, "X", NULL, &p->dtype) < 0
        || check_columns(&p->X, n_in, "X", "sizes[0]") < 0 || count_rows(&p->X, &p->layout, &p->n) < 0
        || acquire(Y, &p->Y, p->dtype, 0, "Y", "X", NULL) < 0
        || check_columns(&p->Y, n_out, "Y", "sizes[-1]") < 0
        || expect_items(&p->Y, p->n, n_out, "Y", "n * sizes[-1]") < 0
        || acquire(row_weight, &p->w, p->dtype, 0, "row_weight", "X", NULL) < 0)
        return -1;
    if (p->w.len != 0 && expect_items(&p->w, 1, p->n, "row_weight", "n, or 0 for all ones") < 0)
        return -1;
    p->weights = p->w.len != 0 ? p->w.buf : NULL;
    if (acquire(params, &p->params, p->dtype, params_writable, "params", "X", NULL) < 0
        || expect_items(&p->params, 1, p->layout.n_params, "params", PACKED) < 0
        || acquire(grad, &p->grad, p->dtype, 1, "grad", "X", NULL) < 0
        || expect_items(&p->grad, 1, p->layout.n_params, "grad", PACKED) < 0)
        return -1;
    return 0;
}

/* Release what read_problem acquired (safe after a partial failure). */
static void release_problem(Problem *p)
{
    PyBuffer_Release(&p->X);
    PyBuffer_Release(&p->Y);
    PyBuffer_Release(&p->w);
    PyBuffer_Release(&p->params);
    PyBuffer_Release(&p->grad);
    free_layout(&p->layout);
}

/* A private copy of order (int64, any number of entries) in *copy and its
 * length in *visits, or NULL and n (every row, in place) when it is empty;
 * every entry checked to be a row index in [0, n).  A copy, so that no other
 * thread can change the indices while the kernel runs without the GIL.
 * Returns 0, or -1 with an exception; free *copy with PyMem_Free. */
static int read_order(PyObject *obj, Py_ssize_t n, int64_t **copy, Py_ssize_t *visits)
{
    Py_buffer view;
    *copy = NULL;
    *visits = n;
    if (acquire(obj, &view, INT64, 0, "order", NULL, NULL) < 0)
        return -1;
    int status = 0;
    Py_ssize_t count = view.len / (Py_ssize_t)sizeof(int64_t);
    if (count != 0) {
        *copy = PyMem_Malloc(view.len);
        if (*copy)
            memcpy(*copy, view.buf, view.len);
        else
            status = (PyErr_NoMemory(), -1);
    }
    PyBuffer_Release(&view);
    for (Py_ssize_t i = 0; status == 0 && *copy && i < count; i++) {
        if ((*copy)[i] < 0 || (*copy)[i] >= n) {
            PyErr_Format(PyExc_ValueError, "order[%zd] = %lld is not a row index in [0, n = %zd)",
                         i, (long long)(*copy)[i], n);
            status = -1;
        }
    }
    if (status != 0) {
        PyMem_Free(*copy);
        *copy = NULL;
    } else if (*copy) {
        *visits = count;
    }
    return status;
}

PyDoc_STRVAR(forward_doc,
"forward($module, X, params, sizes, activations, has_bias, block_rows, out, /)\n--\n\n"
"The activations of the last layers that fill out, for the batch X.\n\n"
"X: (n, sizes[0]) C-contiguous float64 or float32, n >= 1\n"
"    (n = len(X.ravel()) // sizes[0]); X's dtype is the call's: params and out\n"
"    must share it (TypeError otherwise), and the kernels compute in it.\n"
"params: 1-D, packed W_0 (sizes[0], sizes[1]) row-major, then b_0\n"
"    (sizes[1]) if has_bias, then W_1, b_1, ... (see fastnet.backends).\n"
"sizes: 1-D int64 [n_0, ..., n_L], L >= 1, every width >= 1.\n"
"activations: 1-D int64 (L,), the code of fastnet.spec.ACTIVATIONS of each layer;\n"
"    softmax (row-wise over the layer's units) in the last layer only.\n"
"has_bias: bool.\n"
"block_rows: int >= 1, rows per block (fastnet.backends.block_rows): blocks run on up\n"
"    to get_num_threads() threads; rows are independent, so the result does not\n"
"    depend on the blocks.\n"
"out: writable 1-D of length n * (n_f + ... + n_L) for some f >= 1: the\n"
"    activations of layers f .. L (f = 1: every layer's; f = L: the output\n"
"    layer's alone), layer l's (n, n_l) block row-major at n * (n_f + ... + n_{l-1})\n"
"    (fastnet.backends.first_written_layer).\n\n"
"A_0 = X; A_{l+1} = f_l(A_l @ W_l + b_l), f_l = activations[l], with\n"
"clamp = SIGMOID_CLAMP (float64) or SIGMOID_CLAMP_FLOAT32 (float32) of fastnet._config:\n"
"sigmoid: e = exp(-min(|z|, clamp)), 1/(1+e) if z >= 0 else e/(1+e);\n"
"tanh: m = expm1(-min(2|z|, clamp)), copysign(-m / (2 + m), z); relu: max(z, 0);\n"
"linear: z; softmax: p_j = e_j / sum_k e_k, e_j = exp(-min(max_k z_k - z_j, clamp)).\n"
"Raises ValueError/TypeError on a wrong dtype, layout or length, MemoryError\n"
"if the work memory (a few tiles of TILE_ROWS rows per thread) cannot be allocated.");

static PyObject *native_forward(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *X_arg, *params_arg, *sizes_arg, *activations_arg, *block_rows_arg, *out_arg;
    int has_bias;
    long long block_rows;
    if (!PyArg_ParseTuple(args, "OOOOpOO:forward", &X_arg, &params_arg, &sizes_arg, &activations_arg,
                          &has_bias, &block_rows_arg, &out_arg)
        || read_positive(block_rows_arg, "block_rows", &block_rows) < 0)
        return NULL;
    Layout layout;
    if (read_layout(sizes_arg, activations_arg, has_bias, &layout) < 0)
        return NULL;
    Py_buffer X = {0}, params = {0}, out = {0};
    Py_ssize_t n;
    Dtype dtype;
    PyObject *result = NULL;
    if (acquire(X_arg, &X, ANY_FLOAT, 0, "X", NULL, &dtype) < 0
        || check_columns(&X, layout.sizes[0], "X", "sizes[0]") < 0 || count_rows(&X, &layout, &n) < 0
        || acquire(params_arg, &params, dtype, 0, "params", "X", NULL) < 0
        || expect_items(&params, 1, layout.n_params, "params", PACKED) < 0
        || acquire(out_arg, &out, dtype, 1, "out", "X", NULL) < 0)
        goto done;
    int64_t first_layer = first_written_layer(&layout, n, out.len / out.itemsize);
    if (!first_layer) {
        PyErr_Format(PyExc_ValueError, "out has %zd elements, expected n * sum(sizes[f:]) for some f >= 1 "
                     "(every layer: %zd x %zd; the output layer alone: %zd x %lld)", out.len / out.itemsize, n,
                     layout.n_activations, n, (long long)layout.sizes[layout.n_layers - 1]);
        goto done;
    }
    int threads = fn_threads(atomic_load(&requested_threads)), status;
    Py_BEGIN_ALLOW_THREADS
    if (dtype == FLOAT64)
        status = fn_kernels()->forward_f64(X.buf, n, params.buf, layout.sizes, layout.activations, layout.n_layers, has_bias,
                                threads, block_rows, first_layer, out.buf);
    else
        status = fn_kernels()->forward_f32(X.buf, n, params.buf, layout.sizes, layout.activations, layout.n_layers, has_bias,
                                threads, block_rows, first_layer, out.buf);
    Py_END_ALLOW_THREADS
    result = status == 0 ? Py_NewRef(Py_None) : PyErr_NoMemory();
done:
    PyBuffer_Release(&X);
    PyBuffer_Release(&params);
    PyBuffer_Release(&out);
    free_layout(&layout);
    return result;
}

PyDoc_STRVAR(gradient_doc,
"gradient($module, X, Y, row_weight, params, sizes, activations, has_bias, derivative, loss, block_rows,\n"
"         grad, /)\n--\n\n"
"The unnormalised sums of the batch: sum_i w_i e_i returned as a float, and\n"
"its gradient with respect to params written into grad (c = 1 below for every\n"
"loss: the caller divides both by fastnet.backends.loss_normaliser).  No L2 penalty.\n\n"
"X: (n, sizes[0]) and Y: (n, sizes[-1]) C-contiguous, n >= 1, float64 or\n"
"    float32: X's dtype, which every float array of the call must share.\n"
"row_weight: (n,) row weights w_i, or empty for every w_i = 1.\n"
"params, grad: 1-D of the packed length (see forward); grad writable.\n"
"sizes, activations, has_bias: as for forward.\n"
"derivative, loss: codes of fastnet.spec.DERIVATIVES and LOSSES; loss 3\n"
"    (cross_entropy) if and only if the last layer is a softmax, bce only\n"
"    after a sigmoid (ValueError otherwise).  f'(a) from a layer's output a:\n"
"    sigmoid a(1-a) (exact) or s(a)(1-s(a)) (article); tanh 1 - a**2;\n"
"    relu 1 if a > 0 else 0; linear 1.\n"
"e_i = sum_j (a_ij - y_ij)**2 (sse, mse), -sum_j [y log a + (1-y) log(1-a)]\n"
"    with each log at least fastnet.spec.BCE_LOG_FLOOR (bce), or\n"
"    -sum_j y_ij (z_ij - lse_i), lse_i = max_k z_ik + log sum_k e_ik\n"
"    (cross_entropy, from the last layer's pre-activations z: finite for any z).\n\n"
"delta_L = c w_i 2 (A_L - Y) f'(A_L) (sse, mse), c w_i (A_L - Y) (bce) or\n"
"c w_i (P s_i - Y), s_i = sum_j y_ij (cross_entropy, P the softmax);\n"
"dW_l = A_l.T @ delta_{l+1};\n"
"db_l = delta_{l+1}.sum(axis=0); delta_l = (delta_{l+1} @ W_l.T) * f'(A_l).\n"
"block_rows: int >= 1, rows per block (fastnet.backends.block_rows): blocks run on up\n"
"to get_num_threads() threads; their partial gradients are added in block\n"
"order, so the result is the same for any thread count.  float32 runs in\n"
"float32 but for the loss sums (double).\n"
"Raises TypeError on a wrong or mixed dtype, ValueError on a wrong layout,\n"
"length or code, MemoryError if the work memory cannot be allocated.");

PyDoc_STRVAR(finite_range_doc,
"finite_range($module, x, /)\n--\n\n"
"(least, greatest) item of x (any C-contiguous float64 or float32 buffer) as\n"
"floats, or None when an item is NaN or infinite; (inf, -inf) when x is\n"
"empty.  Reads x once, on up to get_num_threads() threads, without the GIL.\n"
"Raises TypeError for another dtype, ValueError for a non-contiguous buffer.");

static PyObject *native_finite_range(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer x;
    Dtype dtype;
    if (acquire(arg, &x, ANY_FLOAT, 0, "x", NULL, &dtype) < 0)
        return NULL;
    int64_t n = (int64_t)(x.len / x.itemsize);
    int threads = fn_threads(atomic_load(&requested_threads)), finite;
    double low, high;
    Py_BEGIN_ALLOW_THREADS
    finite = dtype == FLOAT64 ? fn_kernels()->finite_range_f64(x.buf, n, threads, &low, &high)
                              : fn_kernels()->finite_range_f32(x.buf, n, threads, &low, &high);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&x);
    if (!finite)
        Py_RETURN_NONE;
    return Py_BuildValue("(dd)", low, high);
}

static PyObject *native_gradient(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *X, *Y, *row_weight, *params, *sizes, *activations, *block_rows_arg, *grad;
    int has_bias, derivative, loss;
    long long block_rows;
    if (!PyArg_ParseTuple(args, "OOOOOOpiiOO:gradient", &X, &Y, &row_weight, &params, &sizes, &activations,
                          &has_bias, &derivative, &loss, &block_rows_arg, &grad)
        || check_codes(derivative, loss) < 0
        || read_positive(block_rows_arg, "block_rows", &block_rows) < 0)
        return NULL;
    Problem p;
    PyObject *result = NULL;
    if (read_problem(&p, X, Y, row_weight, params, 0, sizes, activations, has_bias, loss, grad) == 0) {
        int threads = fn_threads(atomic_load(&requested_threads)), status;
        double value = 0.0;
        Py_BEGIN_ALLOW_THREADS
        if (p.dtype == FLOAT64)
            status = fn_kernels()->gradient_f64(p.X.buf, p.Y.buf, p.weights, p.n, p.params.buf, p.layout.sizes,
                                     p.layout.activations, p.layout.n_layers, has_bias, derivative, loss, threads, block_rows,
                                     p.grad.buf, &value);
        else
            status = fn_kernels()->gradient_f32(p.X.buf, p.Y.buf, p.weights, p.n, p.params.buf, p.layout.sizes,
                                     p.layout.activations, p.layout.n_layers, has_bias, derivative, loss, threads, block_rows,
                                     p.grad.buf, &value);
        Py_END_ALLOW_THREADS
        result = status == 0 ? PyFloat_FromDouble(value) : PyErr_NoMemory();
    }
    release_problem(&p);
    return result;
}

PyDoc_STRVAR(train_epoch_doc,
"train_epoch($module, X, Y, row_weight, order, batch_size, params, sizes, activations, has_bias,\n"
"            derivative, loss, optimizer, hyper, state, step, block_rows, grad, /)\n--\n\n"
"One epoch of mini-batch training; params updated in place.  Returns the\n"
"epoch's sum_i w_i e_i, each row with the params its batch saw.\n\n"
"X, Y, row_weight, sizes, activations, has_bias, derivative, loss: as for gradient.\n"
"order: int64 (m,) row indices in [0, n), the rows to visit in that order\n"
"    (a permutation for a whole epoch, a stretch of one for part of it), or\n"
"    empty for 0 .. n-1 (rows then read in place).  batch_size: int >= 1.\n"
"    Batch b holds rows order[b*batch_size:(b+1)*batch_size].\n"
"params: writable, packed; grad: writable, same length (work memory).\n"
"optimizer: 0 sgd p -= lr g; 1 momentum v = mu v + g, p -= lr v;\n"
"    2 adam t += 1, m = b1 m + (1-b1) g, v = b2 v + (1-b2) g**2,\n"
"    p -= lr_t (m / (sqrt(v) + eps_t)), lr_t = lr sqrt(1-b2**t) / (1-b1**t),\n"
"    eps_t = eps sqrt(1-b2**t) (fastnet.spec.adam_scalars).\n"
"hyper: float64 [lr, mu, b1, b2, eps, alpha], fastnet.spec.HYPER_FIELDS\n"
"    (always float64; rounded to X's dtype).\n"
"state: writable (2, len(params)): v (row 0), or m and v (rows 0, 1).\n"
"X, Y, row_weight, params, state, grad: all float64 or all float32.\n"
"step: writable int64 (1,), Adam's t.\n"
"block_rows: int >= 1, rows per block of each batch, as for gradient.\n\n"
"g is each batch's gradient as computed by gradient, times its own c\n"
"(fastnet.backends.loss_normaliser), plus alpha r W_l on every weight matrix\n"
"(not the biases), r = fastnet.backends.penalty_normaliser: 1/W (mean losses,\n"
"0 when W = 0) or 1 (sse).  Runs\n"
"wholly in C without the GIL.  Raises TypeError on a wrong or mixed dtype,\n"
"ValueError on a wrong length, code or order entry (before touching\n"
"anything), MemoryError if the work memory cannot be allocated.");

static PyObject *native_train_epoch(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *X, *Y, *row_weight, *order_arg, *batch_size_arg, *params, *sizes, *activations, *hyper_arg,
        *state_arg, *step_arg, *block_rows_arg, *grad;
    long long batch_size, block_rows;
    int has_bias, derivative, loss, optimizer;
    if (!PyArg_ParseTuple(args, "OOOOOOOOpiiiOOOOO:train_epoch", &X, &Y, &row_weight, &order_arg,
                          &batch_size_arg, &params, &sizes, &activations, &has_bias, &derivative, &loss, &optimizer,
                          &hyper_arg, &state_arg, &step_arg, &block_rows_arg, &grad)
        || read_positive(batch_size_arg, "batch_size", &batch_size) < 0
        || read_positive(block_rows_arg, "block_rows", &block_rows) < 0
        || check_codes(derivative, loss) < 0
        || check_code(optimizer, FN_N_OPTIMIZER, "optimizer", FN_OPTIMIZER_NAMES) < 0)
        return NULL;
    Problem p;
    Py_buffer hyper_view = {0}, state = {0}, step = {0};
    int64_t *order = NULL;
    Py_ssize_t visits = 0;
    double hyper[FN_N_HYPER];
    PyObject *result = NULL;
    if (read_problem(&p, X, Y, row_weight, params, 1, sizes, activations, has_bias, loss, grad) < 0
        || read_order(order_arg, p.n, &order, &visits) < 0
        || acquire(hyper_arg, &hyper_view, FLOAT64, 0, "hyper", NULL, NULL) < 0
        || expect_items(&hyper_view, 1, FN_N_HYPER, "hyper", "the fields of fastnet.spec.HYPER_FIELDS") < 0
        || acquire(state_arg, &state, p.dtype, 1, "state", "X", NULL) < 0
        || expect_items(&state, FN_STATE_ROWS, p.layout.n_params, "state", "STATE_ROWS * len(params)") < 0
        || acquire(step_arg, &step, INT64, 1, "step", NULL, NULL) < 0
        || expect_items(&step, 1, 1, "step", "Adam's t") < 0)
        goto done;
    memcpy(hyper, hyper_view.buf, sizeof hyper);
    int threads = fn_threads(atomic_load(&requested_threads)), status;
    double errors = 0.0;
    Py_BEGIN_ALLOW_THREADS
    if (p.dtype == FLOAT64)
        status = fn_kernels()->train_epoch_f64(p.X.buf, p.Y.buf, p.weights, order, visits, batch_size, p.params.buf,
                                    p.layout.sizes, p.layout.activations, p.layout.n_layers, has_bias,
                                    derivative, loss, optimizer,
                                    hyper, state.buf, step.buf, threads, block_rows, p.grad.buf, &errors);
    else
        status = fn_kernels()->train_epoch_f32(p.X.buf, p.Y.buf, p.weights, order, visits, batch_size, p.params.buf,
                                    p.layout.sizes, p.layout.activations, p.layout.n_layers, has_bias,
                                    derivative, loss, optimizer,
                                    hyper, state.buf, step.buf, threads, block_rows, p.grad.buf, &errors);
    Py_END_ALLOW_THREADS
    result = status == 0 ? PyFloat_FromDouble(errors) : PyErr_NoMemory();
done:
    release_problem(&p);
    PyMem_Free(order);
    PyBuffer_Release(&hyper_view);
    PyBuffer_Release(&state);
    PyBuffer_Release(&step);
    return result;
}

PyDoc_STRVAR(set_num_threads_doc,
"set_num_threads($module, n, /)\n--\n\n"
"Use up to n >= 1 threads in the kernels (default: omp_get_max_threads(),\n"
"i.e. all cores or OMP_NUM_THREADS).  Results do not depend on n.  Without\n"
"OpenMP, and in a child process forked after the first call of a kernel\n"
"(OpenMP's threads do not survive fork), the kernels run on one thread.");

static PyObject *native_set_num_threads(PyObject *self, PyObject *arg)
{
    (void)self;
    long long n;
    if (read_positive(arg, "the number of threads", &n) < 0)
        return NULL;
    if (n > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "the number of threads must be at most %d, got %R", INT_MAX, arg);
        return NULL;
    }
    atomic_store(&requested_threads, (int)n);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_num_threads_doc,
"get_num_threads($module, /)\n--\n\n"
"The number of threads the kernels use (1 without OpenMP or in a forked child).");

static PyObject *native_get_num_threads(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyLong_FromLong(fn_threads(atomic_load(&requested_threads)));
}

PyDoc_STRVAR(simd_doc,
"simd() -> str\n\n"
"The SIMD variant of the kernels this process runs: \"baseline\" (the architecture's\n"
"default instructions), \"avx2\" (AVX2 + FMA), \"avx512\" (AVX-512 + AVX2 + FMA), or\n"
"\"native\" in a build with FASTNET_MARCH_NATIVE=ON.  Chosen once, at import: the best\n"
"variant this CPU runs, or the one the environment variable FASTNET_SIMD names.");

static PyObject *native_simd(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyUnicode_FromString(fn_simd_name());
}

PyDoc_STRVAR(simd_variants_doc,
"simd_variants() -> dict\n\n"
"Every SIMD variant compiled into this build, in order of preference (worst first),\n"
"mapped to whether this CPU can run it (the values FASTNET_SIMD accepts here).");

static PyObject *native_simd_variants(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    PyObject *variants = PyDict_New();
    if (!variants)
        return NULL;
    for (int i = 0; i < fn_simd_count(); i++) {
        int runs;
        const char *name = fn_simd_variant(i, &runs);
        if (PyDict_SetItemString(variants, name, runs ? Py_True : Py_False) != 0) {
            Py_DECREF(variants);
            return NULL;
        }
    }
    return variants;
}

static PyMethodDef methods[] = {
    {"finite_range", native_finite_range, METH_O, finite_range_doc},
    {"forward", native_forward, METH_VARARGS, forward_doc},
    {"gradient", native_gradient, METH_VARARGS, gradient_doc},
    {"train_epoch", native_train_epoch, METH_VARARGS, train_epoch_doc},
    {"set_num_threads", native_set_num_threads, METH_O, set_num_threads_doc},
    {"get_num_threads", native_get_num_threads, METH_NOARGS, get_num_threads_doc},
    {"simd", native_simd, METH_NOARGS, simd_doc},
    {"simd_variants", native_simd_variants, METH_NOARGS, simd_variants_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc,
"C kernels of fastnet's native backend: fused, tiled passes of fully connected networks.\n\n"
"finite_range(x) -> (least, greatest) or None checks input for NaN and infinities;\n"
"forward(X, params, sizes, activations, has_bias, block_rows, out),\n"
"gradient(X, Y, row_weight, params, sizes, activations, has_bias, derivative, loss,\n"
"         block_rows, grad) -> sum_i w_i e_i and\n"
"train_epoch(X, Y, row_weight, order, batch_size, params, sizes, activations, has_bias,\n"
"            derivative, loss, optimizer, hyper, state, step, block_rows, grad) -> sum_i w_i e_i\n"
"follow the backend contract of fastnet.backends.  Arrays are passed through\n"
"the buffer protocol (C-contiguous, all float64 or all float32 in one call\n"
"but hyper, always float64; sizes, order and step int64) and checked for\n"
"exact lengths; the GIL is released while a kernel runs, on up\n"
"to get_num_threads() OpenMP threads (set_num_threads(n) to change), with\n"
"results independent of that number.  simd() names the instruction-set variant\n"
"of the kernels that runs (FASTNET_SIMD forces one; simd_variants() lists them).\n"
"Use it through fastnet.backends.native.");

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED}, /* no module state but an atomic: safe on free-threaded builds */
#endif
    {0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_native",
    .m_doc = module_doc,
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC PyInit__native(void)
{
    /* The SIMD variant is fixed for the process here, before any kernel runs:
     * a wrong FASTNET_SIMD fails the import rather than running something else. */
    char error[512];
    if (fn_simd_select(getenv("FASTNET_SIMD"), error, sizeof error) != 0) {
        PyErr_SetString(PyExc_RuntimeError, error);
        return NULL;
    }
    fn_threads(0); /* watch for fork() from import on (see fn_threads) */
    return PyModuleDef_Init(&native_module);
}
