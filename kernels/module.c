/* fastnet._native: the CPython extension over the C kernels of network.c.
 *
 * Arrays come in through the buffer protocol (numpy arrays, memoryviews, ...),
 * so no numpy headers are needed.  Every buffer is checked for dtype,
 * contiguity and exact length before any kernel runs, so the kernels can never
 * read or write outside their arrays; the GIL is released while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <math.h>

#include "network.h"

static const char FLOAT64[] = "d";  /* struct codes accepted for float64 */
static const char INT64[] = "ql";   /* ... and for int64 (with itemsize 8) */
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

/* Get a C-contiguous buffer of 8-byte items with a format in `codes` (FLOAT64
 * or INT64) from obj, writable if asked.  Returns 0, or -1 with an exception
 * naming the argument; view->obj stays NULL on failure. */
static int acquire(PyObject *obj, Py_buffer *view, const char *codes, int writable, const char *name)
{
    const char *dtype = codes == FLOAT64 ? "float64" : "int64";
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (!PyObject_CheckBuffer(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a %s array (buffer protocol), not %.100s",
                     name, dtype, Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous%s %s array",
                     name, writable ? ", writable" : "", dtype);
        view->obj = NULL;
        return -1;
    }
    if (view->itemsize != 8 || !format_in(view->format, codes)) {
        PyErr_Format(PyExc_ValueError, "%s must hold %s, got format '%s' with itemsize %zd",
                     name, dtype, view->format ? view->format : "B", view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
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
    int64_t n_layers;        /* entries in sizes, L + 1 >= 2 */
    Py_ssize_t n_params;     /* packed length of params and grad */
    Py_ssize_t n_activations; /* sizes[1] + ... + sizes[L]: out's length per row */
} Layout;

/* *total += a * b for a, b >= 0; returns -1 instead if it would pass PY_SSIZE_T_MAX. */
static int add_product(Py_ssize_t *total, int64_t a, int64_t b)
{
    if (a > (PY_SSIZE_T_MAX - *total) / b)
        return -1;
    *total += (Py_ssize_t)(a * b);
    return 0;
}

/* Copy and check sizes (int64, >= 2 entries, each >= 1) and derive the packed
 * lengths.  Returns 0, or -1 with an exception; free layout->sizes with PyMem_Free. */
static int read_layout(PyObject *obj, int has_bias, Layout *layout)
{
    Py_buffer view;
    if (acquire(obj, &view, INT64, 0, "sizes") < 0)
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
    return 0;
fail:
    PyMem_Free(layout->sizes);
    layout->sizes = NULL;
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

/* Check derivative and loss against the codes of fastnet.backends. */
static int check_codes(int derivative, int loss)
{
    if (derivative != FN_DERIVATIVE_EXACT && derivative != FN_DERIVATIVE_ARTICLE) {
        PyErr_Format(PyExc_ValueError, "derivative must be 0 (exact) or 1 (article), got %d", derivative);
        return -1;
    }
    if (loss != FN_LOSS_SSE && loss != FN_LOSS_MSE) {
        PyErr_Format(PyExc_ValueError, "loss must be 0 (sse) or 1 (mse), got %d", loss);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(forward_doc,
"forward($module, X, params, sizes, has_bias, out, /)\n--\n\n"
"Every layer's activations for the batch X, written into out.\n\n"
"X: (n, sizes[0]) C-contiguous float64, n >= 1 (n = len(X.ravel()) // sizes[0]).\n"
"params: 1-D float64, packed W_0 (sizes[0], sizes[1]) row-major, then b_0\n"
"    (sizes[1]) if has_bias, then W_1, b_1, ... (see fastnet.backends).\n"
"sizes: 1-D int64 [n_0, ..., n_L], L >= 1, every width >= 1.\n"
"has_bias: bool.\n"
"out: writable 1-D float64 of length n * (n_1 + ... + n_L); layer l's (n, n_l)\n"
"    activations, row-major, start at n * (n_1 + ... + n_{l-1}).\n\n"
"A_0 = X; A_{l+1} = sigmoid(A_l @ W_l + b_l), with e = exp(-min(|z|, 708)),\n"
"sigmoid(z) = 1/(1+e) if z >= 0 else e/(1+e).\n"
"Raises ValueError/TypeError on a wrong dtype, layout or length, MemoryError\n"
"if the work memory (a few tiles of 256 rows) cannot be allocated.");

static PyObject *native_forward(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *X_arg, *params_arg, *sizes_arg, *out_arg;
    int has_bias;
    if (!PyArg_ParseTuple(args, "OOOpO:forward", &X_arg, &params_arg, &sizes_arg, &has_bias, &out_arg))
        return NULL;
    Layout layout;
    if (read_layout(sizes_arg, has_bias, &layout) < 0)
        return NULL;
    Py_buffer X = {0}, params = {0}, out = {0};
    Py_ssize_t n;
    PyObject *result = NULL;
    if (acquire(X_arg, &X, FLOAT64, 0, "X") < 0 || check_columns(&X, layout.sizes[0], "X", "sizes[0]") < 0
        || count_rows(&X, &layout, &n) < 0
        || acquire(params_arg, &params, FLOAT64, 0, "params") < 0
        || expect_items(&params, 1, layout.n_params, "params", PACKED) < 0
        || acquire(out_arg, &out, FLOAT64, 1, "out") < 0
        || expect_items(&out, n, layout.n_activations, "out", "n * sum(sizes[1:])") < 0)
        goto done;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = fn_forward(X.buf, n, params.buf, layout.sizes, layout.n_layers, has_bias, out.buf);
    Py_END_ALLOW_THREADS
    if (status != 0)
        PyErr_NoMemory();
    else
        result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&X);
    PyBuffer_Release(&params);
    PyBuffer_Release(&out);
    PyMem_Free(layout.sizes);
    return result;
}

PyDoc_STRVAR(gradient_doc,
"gradient($module, X, Y, params, sizes, has_bias, derivative, loss, grad, /)\n--\n\n"
"The loss on (X, Y), returned as a float, and dLoss/dparams written into grad.\n\n"
"X: (n, sizes[0]) and Y: (n, sizes[-1]) C-contiguous float64, n >= 1.\n"
"params, grad: 1-D float64 of the packed length (see forward); grad writable.\n"
"sizes: 1-D int64 [n_0, ..., n_L]; has_bias: bool.\n"
"derivative: 0 exact, f'(a) = a(1-a); 1 article, f'(a) = s(a)(1-s(a)),\n"
"    s the sigmoid, both from a layer's output a.\n"
"loss: 0 sse = sum((A_L - Y)**2); 1 mse = sse / (n * n_L).\n\n"
"delta_L = dLoss/dA_L * f'(A_L); dW_l = A_l.T @ delta_{l+1};\n"
"db_l = delta_{l+1}.sum(axis=0); delta_l = (delta_{l+1} @ W_l.T) * f'(A_l).\n"
"Raises ValueError/TypeError on a wrong dtype, layout, length or code,\n"
"MemoryError if the work memory cannot be allocated.");

static PyObject *native_gradient(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *X_arg, *Y_arg, *params_arg, *sizes_arg, *grad_arg;
    int has_bias, derivative, loss;
    if (!PyArg_ParseTuple(args, "OOOOpiiO:gradient", &X_arg, &Y_arg, &params_arg, &sizes_arg,
                          &has_bias, &derivative, &loss, &grad_arg)
        || check_codes(derivative, loss) < 0)
        return NULL;
    Layout layout;
    if (read_layout(sizes_arg, has_bias, &layout) < 0)
        return NULL;
    Py_buffer X = {0}, Y = {0}, params = {0}, grad = {0};
    Py_ssize_t n;
    PyObject *result = NULL;
    if (acquire(X_arg, &X, FLOAT64, 0, "X") < 0 || check_columns(&X, layout.sizes[0], "X", "sizes[0]") < 0
        || count_rows(&X, &layout, &n) < 0
        || acquire(Y_arg, &Y, FLOAT64, 0, "Y") < 0
        || check_columns(&Y, layout.sizes[layout.n_layers - 1], "Y", "sizes[-1]") < 0
        || expect_items(&Y, n, layout.sizes[layout.n_layers - 1], "Y", "n * sizes[-1]") < 0
        || acquire(params_arg, &params, FLOAT64, 0, "params") < 0
        || expect_items(&params, 1, layout.n_params, "params", PACKED) < 0
        || acquire(grad_arg, &grad, FLOAT64, 1, "grad") < 0
        || expect_items(&grad, 1, layout.n_params, "grad", PACKED) < 0)
        goto done;
    double value;
    int out_of_memory;
    Py_BEGIN_ALLOW_THREADS
    errno = 0;
    value = fn_gradient(X.buf, Y.buf, n, params.buf, layout.sizes, layout.n_layers, has_bias,
                        derivative, loss, grad.buf);
    out_of_memory = isnan(value) && errno == ENOMEM;
    Py_END_ALLOW_THREADS
    if (out_of_memory)
        PyErr_NoMemory();
    else
        result = PyFloat_FromDouble(value);
done:
    PyBuffer_Release(&X);
    PyBuffer_Release(&Y);
    PyBuffer_Release(&params);
    PyBuffer_Release(&grad);
    PyMem_Free(layout.sizes);
    return result;
}

static PyMethodDef methods[] = {
    {"forward", native_forward, METH_VARARGS, forward_doc},
    {"gradient", native_gradient, METH_VARARGS, gradient_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc,
"C kernels of fastnet's native backend: fused, tiled sigmoid network passes.\n\n"
"forward(X, params, sizes, has_bias, out) and\n"
"gradient(X, Y, params, sizes, has_bias, derivative, loss, grad) -> loss\n"
"follow the backend contract of fastnet.backends.  Arrays are passed through\n"
"the buffer protocol (C-contiguous float64, sizes int64) and checked for\n"
"exact lengths; the GIL is released while a kernel runs.  Use it through\n"
"fastnet.backends.native.");

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED}, /* no module state: safe on free-threaded builds */
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
    return PyModuleDef_Init(&native_module);
}
