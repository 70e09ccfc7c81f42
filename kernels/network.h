/* fastnet native kernels: fused, tiled forward pass, gradient and training
 * epoch of a fully connected network.  Pure C11 (OpenMP optional),
 * no Python headers.
 *
 * Every kernel comes in two types, with the suffix _f64 (real = double) and
 * _f32 (real = float); one call uses one type for all its float arrays.
 * float32 kernels compute in float throughout, except for the loss sums
 * sum_i w_i e_i, the total weight W and the normaliser c, kept in double.
 *
 * Shapes and layout follow the backend contract (fastnet/backends/__init__.py):
 *   sizes   int64 [n_layers] = [n_0, n_1, ..., n_L], every entry >= 1, n_layers >= 2
 *   activations  int64 [L]: the FN_ACTIVATION_* code of each weight layer,
 *           FN_ACTIVATION_SOFTMAX in the last layer only
 *   X       real (n, n_0) row-major, n >= 1;  Y  real (n, n_L) row-major
 *   w       real (n) row weights w_i, or NULL for every w_i = 1
 *   params  packed: for l = 0 .. L-1, W_l (n_l, n_{l+1}) row-major, then
 *           b_l (n_{l+1}) when has_bias;  grad has the same layout
 *   out     real n * (n_f + ... + n_L) for a first written layer f >= 1 (1:
 *           every layer, L: the output layer alone): layer l's (n, n_l)
 *           activations, row-major, starting at n * (n_f + ... + n_{l-1})
 *
 * A_0 = X;  Z_l = A_l @ W_l + b_l;  A_{l+1} = f_l(Z_l), f_l the activation
 * activations[l], computed with clamp = FN_SIGMOID_CLAMP (double) or
 * FN_SIGMOID_CLAMP_FLOAT32 (float) as
 *   sigmoid  e = exp(-min(|z|, clamp)),  z >= 0 ? 1/(1+e) : e/(1+e)
 *   tanh     m = expm1(-min(2|z|, clamp)),  copysign(-m / (2 + m), z)
 *   relu     max(z, 0);   linear  z
 *   softmax  row-wise over the layer's units: p_j = e_j / sum_k e_k,
 *            e_j = exp(-min(max_k z_k - z_j, clamp))
 * (exp and expm1 the kernels' own, vectorisable, for arguments in [-clamp, 0]).
 *
 * Parallelism: the rows of a batch are cut into blocks of block_rows rows
 * (fastnet.backends.block_rows) that run on up to `threads` threads
 * (OpenMP).  A forward pass's blocks are independent.  A gradient's run in
 * waves (as many blocks as FN_PARTIAL_GRADIENT_BYTES of partial gradients
 * allow), each block into its own partial gradient, and the partials are
 * added in block order, so every result is bitwise identical for any
 * thread count.  A batch of one block runs serially.
 *
 * The kernels do not validate their arguments: the caller (module.c) checks
 * that every array has exactly the length these shapes imply, that codes are
 * in range and paired as `gradient` says, and that every entry of order is
 * in [0, n).
 */
#ifndef FASTNET_NETWORK_H
#define FASTNET_NETWORK_H

#include <stddef.h>
#include <stdint.h>

/* The codes of every layer, loss and optimizer, the hyper-parameter layout and
 * the shared constants (FN_TILE_ROWS, FN_PARTIAL_GRADIENT_BYTES,
 * FN_SIGMOID_CLAMP, FN_SIGMOID_CLAMP_FLOAT32, FN_BCE_LOG_FLOOR) come from
 * fastnet/spec.py and fastnet/_config.py, through this header generated at
 * build time by kernels/generate_header.py. */
#include "fastnet_spec.h"

/* The number of threads the kernels use when asked for `requested`: with
 * OpenMP, requested if >= 1, else omp_get_max_threads(); without OpenMP,
 * and in a process forked from one that called this, always 1 (libgomp's
 * threads do not survive fork).  Call it before every kernel. */
int fn_threads(int requested);

/* The kernels of one type: FN_KERNEL_SIGNATURES(double, _f64, NAME) declares
 * NAME(finite_range_f64), NAME(forward_f64), NAME(gradient_f64) and
 * NAME(train_epoch_f64); FnKernels below holds them as pointers.
 *
 * finite_range: 1 when none of x[0 .. n) is NaN or infinite, else 0 (an
 * input check, run before the other kernels; n may be 0); when 1, *low and
 * *high are the least and greatest item (+inf and -inf for n = 0).
 *
 * forward: the activations of layers f = first_layer .. L for X, written
 * into out (layout above; 1 <= first_layer <= L).  Returns 0, or -1
 * (errno = ENOMEM, out untouched) when its work memory cannot be allocated.
 *
 * gradient: the unnormalised sums of a batch: *errors = sum_i w_i e_i and
 * grad = its gradient with respect to params (c = 1 below, whatever the
 * loss; no L2 penalty): the caller divides both by c of the loss
 * (fastnet.backends.loss_normaliser).  With W = sum_i w_i, the row errors
 *   sse, mse       e_i = sum_j (a_ij - y_ij)^2
 *   bce            e_i = -sum_j [y log a + (1-y) log(1-a)], each log
 *                  clamped at FN_BCE_LOG_FLOOR (after a sigmoid only)
 *   cross_entropy  e_i = -sum_j y_ij (z_ij - lse_i), lse_i = max_k z_ik +
 *                  log sum_k e_ik (softmax's e), z = Z_{L-1} (after a
 *                  softmax only): from the logits, so finite for any z
 * and the normaliser c = 1 for a sum loss (sse), 1/W for a mean one
 * (cross_entropy), 1/(W n_L) for a per_output one (mse, bce): the flags
 * FN_LOSS_MEAN_FLAGS and FN_LOSS_PER_OUTPUT_FLAGS; c = 0 when that
 * denominator is 0 (a batch of zero total weight has zero loss and gradient).
 * f'(a) from a layer output a: sigmoid a(1-a) (FN_DERIVATIVE_EXACT) or
 * s(a)(1-s(a)), s the sigmoid (FN_DERIVATIVE_ARTICLE); tanh 1 - a^2;
 * relu 1 if a > 0 else 0; linear 1 (the derivative code changes the sigmoid only).
 * delta_L = c w_i 2 (A_L - Y) f'(A_L) (sse, mse), c w_i (A_L - Y) (bce),
 * c w_i (P s_i - Y) with P the softmax and s_i = sum_j y_ij (cross_entropy);
 * dW_l = A_l^T delta_{l+1};  db_l = column sums of delta_{l+1};
 * delta_l = (delta_{l+1} W_l^T) * f'(A_l).
 * Returns 0, or -1 with errno = ENOMEM when its work memory cannot be
 * allocated.
 *
 * train_epoch: one epoch of mini-batch training, params updated in place.
 * It visits n rows: order[0 .. n), each an index of a row of X, Y and w
 * (order NULL: rows 0 .. n-1 in place).  Batch b holds the visits
 * b*batch_size .. (b+1)*batch_size - 1, the last batch possibly shorter.  For each
 * batch: g = c times the gradient of `gradient` on its rows (its own W and
 * c), plus the L2 penalty's gradient alpha r W_l on every entry of every
 * weight matrix (not the biases), r = 1/W for a mean loss (0 when W = 0)
 * and 1 for a sum loss; then with hyper = [lr, mu, b1, b2, eps, alpha]
 * (FN_N_HYPER doubles in FN_HYPER_* order, each rounded to real, alpha r
 * rounded once) and state (2, n_params):
 *   sgd       p -= lr g
 *   momentum  v = mu v + g;  p -= lr v                       (v = state row 0)
 *   adam      t += 1;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *             p -= lr_t (m / (sqrt(v) + eps_t)),
 *             lr_t = lr sqrt(1-b2^t) / (1-b1^t), eps_t = eps sqrt(1-b2^t)
 *             (both in double, then rounded to real)
 *                                         (m, v = state rows 0, 1; t = *step)
 * grad (n_params) is work memory.  *errors = sum over all rows of w_i e_i
 * (the data term only), each row with the params its batch saw.  Returns 0,
 * or -1 with errno = ENOMEM (nothing updated) when its work memory cannot be
 * allocated.
 *
 * The caller (module.c) guarantees that codes are in range, softmax is in
 * the last layer only, cross_entropy comes exactly with a softmax last
 * layer and bce with a sigmoid one. */
#define FN_KERNEL_SIGNATURES(real, suffix, NAME)                                                           \
    int NAME(finite_range##suffix)(const real *x, int64_t n, int threads, double *low, double *high);      \
    int NAME(forward##suffix)(const real *X, int64_t n, const real *params, const int64_t *sizes,          \
                              const int64_t *activations, int64_t n_layers, int has_bias, int threads,     \
                              int64_t block_rows, int64_t first_layer, real *out);                           \
    int NAME(gradient##suffix)(const real *X, const real *Y, const real *w, int64_t n, const real *params, \
                               const int64_t *sizes, const int64_t *activations, int64_t n_layers,         \
                               int has_bias, int derivative, int loss, int threads, int64_t block_rows,    \
                               real *grad, double *errors);                                                  \
    int NAME(train_epoch##suffix)(const real *X, const real *Y, const real *w, const int64_t *order,        \
                                  int64_t n, int64_t batch_size, real *params, const int64_t *sizes,        \
                                  const int64_t *activations, int64_t n_layers, int has_bias,               \
                                  int derivative, int loss, int optimizer, const double *hyper,             \
                                  real *state, int64_t *step, int threads, int64_t block_rows, real *grad,  \
                                  double *errors);

/* Every kernel of both types, as pointers: one table per instruction-set
 * variant (network.c compiled once per variant defines fn_kernels_<variant>),
 * the running one returned by fn_kernels(). */
#define FN_POINTER(name) (*name)
typedef struct {
    FN_KERNEL_SIGNATURES(double, _f64, FN_POINTER)
    FN_KERNEL_SIGNATURES(float, _f32, FN_POINTER)
} FnKernels;

/* ---- runtime SIMD dispatch (dispatch.c) ----------------------------------------
 *
 * network.c is compiled once per variant of the instruction set: "baseline"
 * (whatever the target's default is: SSE2 on x86-64), and on x86-64 "avx2"
 * (AVX2 + FMA) and "avx512" (AVX-512 F/DQ/BW/VL + AVX2 + FMA); a build with
 * FASTNET_MARCH_NATIVE=ON has a single variant, "native", tuned for the
 * building machine.  The variants compute the same formulas; with FMA they
 * round differently from baseline (one rounding per multiply-add). */

/* Pick the variant: `request` NULL or "" for the best one this CPU runs, else
 * that variant's name (FASTNET_SIMD).  Returns 0, or -1 with a message in
 * error[0 .. size) when the name is unknown or the CPU lacks the variant's
 * instructions; the choice is then unchanged.  Not thread-safe: call it once,
 * before any kernel (module initialisation).  Until then baseline runs. */
int fn_simd_select(const char *request, char *error, size_t size);

/* The running variant's kernels and name. */
const FnKernels *fn_kernels(void);
const char *fn_simd_name(void);

/* The number of variants compiled in; fn_simd_variant(i, &runs) is the name of
 * variant i (in order of preference, baseline first) and sets runs to whether
 * this CPU has its instructions. */
int fn_simd_count(void);
const char *fn_simd_variant(int i, int *runs);

#endif
