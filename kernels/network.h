/* fastnet native kernels: fused, tiled forward pass and gradient of a
 * fully connected sigmoid network.  Pure C11, no Python headers.
 *
 * Shapes and layout follow the backend contract (fastnet/backends/__init__.py):
 *   sizes   int64 [n_layers] = [n_0, n_1, ..., n_L], every entry >= 1, n_layers >= 2
 *   X       double (n, n_0) row-major, n >= 1;  Y  double (n, n_L) row-major
 *   params  packed: for l = 0 .. L-1, W_l (n_l, n_{l+1}) row-major, then
 *           b_l (n_{l+1}) when has_bias;  grad has the same layout
 *   out     double n * (n_1 + ... + n_L): layer l's (n, n_l) activations,
 *           row-major, starting at n * (n_1 + ... + n_{l-1})
 *
 * A_0 = X;  A_{l+1} = sigmoid(A_l @ W_l + b_l), with
 *   e = exp(-min(|z|, FN_SIGMOID_CLAMP)),  sigmoid(z) = z >= 0 ? 1/(1+e) : e/(1+e).
 *
 * The kernels do not validate their arguments: the caller (module.c) checks
 * that every array has exactly the length these shapes imply.
 */
#ifndef FASTNET_NETWORK_H
#define FASTNET_NETWORK_H

#include <stdint.h>

/* Rows per tile.  MUST equal TILE_ROWS in fastnet/_config.py. */
#define FN_TILE_ROWS 256

/* |z| beyond this saturates the sigmoid.  MUST equal SIGMOID_CLAMP in
 * fastnet/_config.py. */
#define FN_SIGMOID_CLAMP 708.0

/* Codes of fastnet.backends.DERIVATIVE_CODES and LOSS_CODES. */
enum { FN_DERIVATIVE_EXACT = 0, FN_DERIVATIVE_ARTICLE = 1 };
enum { FN_LOSS_SSE = 0, FN_LOSS_MSE = 1 };

/* Every layer's activations for X, written into out (layout above).
 * Returns 0, or -1 (errno = ENOMEM, out untouched) when its work memory
 * cannot be allocated. */
int fn_forward(const double *X, int64_t n, const double *params,
               const int64_t *sizes, int64_t n_layers, int has_bias, double *out);

/* Loss of the network on (X, Y), and its gradient dLoss/dparams in grad.
 *   loss FN_LOSS_SSE: sum((A_L - Y)^2);  FN_LOSS_MSE: that / (n * n_L).
 *   derivative FN_DERIVATIVE_EXACT: f'(a) = a(1-a) from a layer output a;
 *              FN_DERIVATIVE_ARTICLE: f'(a) = s(a)(1-s(a)), s the sigmoid.
 * delta_L = dLoss/dA_L * f'(A_L);  dW_l = A_l^T delta_{l+1};
 * db_l = column sums of delta_{l+1};  delta_l = (delta_{l+1} W_l^T) * f'(A_l).
 * Returns the loss, or NaN with errno = ENOMEM when its work memory cannot
 * be allocated. */
double fn_gradient(const double *X, const double *Y, int64_t n, const double *params,
                   const int64_t *sizes, int64_t n_layers, int has_bias,
                   int derivative, int loss, double *grad);

#endif
