/* fastnet native kernels: see network.h for the contract.
 *
 * The batch is streamed in tiles of TILE rows.  Inside a tile every
 * activation and delta is stored feature-major, as (width, TILE) blocks, so
 * each inner loop runs over the tile's rows, contiguous in memory, and the
 * compiler vectorises it whatever the layer widths; the matrix products keep
 * small blocks of sums in registers.  All work memory (a few tiles) is
 * allocated once per call.  Only the first m <= TILE columns of a
 * tile are ever read or written, so the last tile may be partial.
 */
#include "network.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    TILE = FN_TILE_ROWS,
    ALIGN = 64,     /* bytes; TILE doubles are a multiple, so every row of a tile is aligned */
    DOT_LANES = 8,  /* independent partial sums in dot(): lets the reduction vectorise */
    /* Register blocks (sums kept in registers, tuned for AVX2/AVX-512 with 256-bit vectors): */
    OUT_BLOCK = 4,  /* affine_block: outputs ... */
    ROW_BLOCK = 8,  /* ... x rows */
    IN_BLOCK = 4,   /* gradient_block: inputs ... */
    GRAD_BLOCK = 4, /* ... x outputs ... */
    GRAD_LANES = 4  /* ... x partial sums over rows */
};

/* ---- exp and the sigmoid, written to vectorise ------------------------- */

/* exp(x) = 2^k exp(r), k = round(x / ln 2), r = x - k ln 2 (Cody-Waite).
 * LN2_HI has its low 32 mantissa bits zero, so k * LN2_HI is exact for
 * |k| < 2^20; LN2_LO = ln 2 - LN2_HI. */
static const double LOG2E = 1.4426950408889634;
static const double LN2_HI = 6.93147180369123816490e-01;
static const double LN2_LO = 1.90821492927058770002e-10;
/* Adding 1.5 * 2^52 rounds to an integer held in the low mantissa bits; the
 * extra 1023 is the exponent bias, so those bits shifted left by 52 are 2^k. */
static const double ROUND_SHIFT = 6755399441055744.0 + 1023.0;

/* exp(r) for |r| <= ln(2)/2: Taylor series to degree 13 in Horner form
 * (truncation error < 1e-17, so the result is within ~1 ulp). */
static inline double exp_reduced(double r)
{
    double p = 1.0 / 6227020800.0; /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    return p * r + 1.0;
}

/* exp(x) for x in [-FN_SIGMOID_CLAMP, 0]: 2^k is then a normal double
 * (k >= -1021), built directly from its bits.  NaN gives NaN. */
static inline double exp_nonpositive(double x)
{
    double shifted = x * LOG2E + ROUND_SHIFT;
    double k = shifted - ROUND_SHIFT;
    uint64_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits <<= 52;
    double two_to_k;
    memcpy(&two_to_k, &bits, sizeof two_to_k);
    return exp_reduced(x - k * LN2_HI - k * LN2_LO) * two_to_k;
}

/* 1 / (1 + exp(-z)) for any finite z, never overflowing:
 * e = exp(-min(|z|, clamp)); z >= 0 ? 1/(1+e) : e/(1+e). */
static inline double sigmoid(double z)
{
    double magnitude = fabs(z);
    double e = exp_nonpositive(-(magnitude > FN_SIGMOID_CLAMP ? FN_SIGMOID_CLAMP : magnitude));
    return (z >= 0.0 ? 1.0 : e) / (1.0 + e);
}

/* ---- loops over the first m rows of a tile ------------------------------- */

/* sum over t < m of x[t] * y[t], in DOT_LANES partial sums added in a fixed order. */
static double dot(const double *restrict x, const double *restrict y, int64_t m)
{
    double lane[DOT_LANES] = {0.0};
    int64_t t = 0;
    for (; t + DOT_LANES <= m; t += DOT_LANES)
        for (int l = 0; l < DOT_LANES; l++)
            lane[l] += x[t + l] * y[t + l];
    double total = 0.0;
    for (; t < m; t++)
        total += x[t] * y[t];
    for (int l = 0; l < DOT_LANES; l++)
        total += lane[l];
    return total;
}

/* sum over t < m of x[t]. */
static double sum(const double *x, int64_t m)
{
    double total = 0.0;
    for (int64_t t = 0; t < m; t++)
        total += x[t];
    return total;
}

/* d[t] *= f'(a[t]) for t < m, from the layer output a:
 * exact f' = a (1 - a); article f' = s(a) (1 - s(a)), s the sigmoid. */
static void times_slope(double *restrict d, const double *restrict a, int64_t m, int derivative)
{
    if (derivative == FN_DERIVATIVE_ARTICLE) {
        for (int64_t t = 0; t < m; t++) {
            double s = sigmoid(a[t]);
            d[t] *= s * (1.0 - s);
        }
    } else {
        for (int64_t t = 0; t < m; t++)
            d[t] *= a[t] * (1.0 - a[t]);
    }
}

/* ---- one layer on one tile, feature-major --------------------------------- */

/* tile[k*TILE + t] = rows[t*width + k] for t < m: (m, width) rows to a (width, TILE) tile. */
static void rows_to_tile(const double *rows, int64_t width, int64_t m, double *tile)
{
    for (int64_t t = 0; t < m; t++)
        for (int64_t k = 0; k < width; k++)
            tile[k * TILE + t] = rows[t * width + k];
}

/* rows[t*width + k] = tile[k*TILE + t] for t < m: the inverse of rows_to_tile. */
static void tile_to_rows(const double *tile, int64_t width, int64_t m, double *rows)
{
    for (int64_t t = 0; t < m; t++)
        for (int64_t k = 0; k < width; k++)
            rows[t * width + k] = tile[k * TILE + t];
}

/* An affine map on a tile: z[o, t] = b[o] + sum_i W(i, o) in[i, t], where
 * W(i, o) = W[i*in_stride + o*out_stride], so one code serves W (forward)
 * and W^T (backward). */
typedef struct {
    const double *in;  /* (n_in, TILE) feature-major */
    int64_t n_in, n_out;
    const double *W;
    int64_t in_stride, out_stride;
    const double *b;   /* (n_out) or NULL for no bias */
} Affine;

/* z[o+p, t+r] of the affine map for p < ob <= OUT_BLOCK, r < rb <= ROW_BLOCK:
 * the ob*rb sums stay in registers while i runs over all inputs. */
static inline void affine_block(const Affine *f, int64_t o, int ob, int64_t t, int rb, double *z)
{
    double acc[OUT_BLOCK][ROW_BLOCK];
    for (int p = 0; p < ob; p++)
        for (int r = 0; r < rb; r++)
            acc[p][r] = f->b ? f->b[o + p] : 0.0;
    for (int64_t i = 0; i < f->n_in; i++) {
        const double *in = f->in + i * TILE + t;
        const double *w = f->W + i * f->in_stride + o * f->out_stride;
        for (int p = 0; p < ob; p++)
            for (int r = 0; r < rb; r++)
                acc[p][r] += w[p * f->out_stride] * in[r];
    }
    for (int p = 0; p < ob; p++)
        for (int r = 0; r < rb; r++)
            z[(o + p) * TILE + t + r] = acc[p][r];
}

/* affine_block for outputs o .. o+ob-1 on all m rows of the tile. */
static inline void affine_outputs(const Affine *f, int64_t o, int ob, int64_t m, double *z)
{
    int64_t t = 0;
    for (; t + ROW_BLOCK <= m; t += ROW_BLOCK)
        affine_block(f, o, ob, t, ROW_BLOCK, z);
    for (; t < m; t++)
        affine_block(f, o, ob, t, 1, z);
}

/* z = the affine map on the first m rows of the tile: z (n_out, TILE). */
static void affine(const Affine *f, int64_t m, double *z)
{
    int64_t o = 0;
    for (; o + OUT_BLOCK <= f->n_out; o += OUT_BLOCK)
        affine_outputs(f, o, OUT_BLOCK, m, z);
    for (; o < f->n_out; o++)
        affine_outputs(f, o, 1, m, z);
}

/* a_out = sigmoid(W^T a_in + b): a_in (fan_in, TILE); W (fan_in, fan_out)
 * row-major; b (fan_out) or NULL; a_out (fan_out, TILE). */
static void dense_sigmoid(const double *a_in, int64_t fan_in, const double *W, const double *b,
                          int64_t fan_out, int64_t m, double *a_out)
{
    Affine f = {a_in, fan_in, fan_out, W, fan_out, 1, b};
    affine(&f, m, a_out);
    for (int64_t j = 0; j < fan_out; j++)
        for (int64_t t = 0; t < m; t++)
            a_out[j * TILE + t] = sigmoid(a_out[j * TILE + t]);
}

/* delta_in = (W delta) * f'(a_in): delta (fan_out, TILE); W (fan_in, fan_out)
 * row-major; a_in, delta_in (fan_in, TILE). */
static void back_to_inputs(const double *delta, int64_t fan_out, const double *W, int64_t fan_in,
                           const double *a_in, int64_t m, int derivative, double *delta_in)
{
    Affine f = {delta, fan_out, fan_in, W, 1, fan_out, NULL};
    affine(&f, m, delta_in);
    for (int64_t k = 0; k < fan_in; k++)
        times_slope(delta_in + k * TILE, a_in + k * TILE, m, derivative);
}

/* dW[k+q, j+p] += sum_{t<m} a_in[k+q, t] delta[j+p, t] for q < kb <= IN_BLOCK,
 * p < GRAD_BLOCK: kb*GRAD_BLOCK dot products, GRAD_LANES partial sums each,
 * kept in registers.  dW is (fan_in, fan_out) row-major. */
static inline void gradient_block(const double *a_in, int64_t k, int kb, const double *delta, int64_t j,
                                  int64_t fan_out, int64_t m, double *dW)
{
    double acc[IN_BLOCK][GRAD_BLOCK][GRAD_LANES] = {{{0.0}}};
    int64_t t = 0;
    for (; t + GRAD_LANES <= m; t += GRAD_LANES)
        for (int q = 0; q < kb; q++)
            for (int p = 0; p < GRAD_BLOCK; p++)
                for (int l = 0; l < GRAD_LANES; l++)
                    acc[q][p][l] += a_in[(k + q) * TILE + t + l] * delta[(j + p) * TILE + t + l];
    for (int q = 0; q < kb; q++)
        for (int p = 0; p < GRAD_BLOCK; p++) {
            double total = 0.0;
            for (int64_t r = t; r < m; r++)
                total += a_in[(k + q) * TILE + r] * delta[(j + p) * TILE + r];
            for (int l = 0; l < GRAD_LANES; l++)
                total += acc[q][p][l];
            dW[(k + q) * fan_out + j + p] += total;
        }
}

/* dW[k+q, :] += a_in[k+q] . delta[j] for q < kb and every output j. */
static inline void gradient_inputs(const double *a_in, int64_t k, int kb, const double *delta,
                                   int64_t fan_out, int64_t m, double *dW)
{
    int64_t j = 0;
    for (; j + GRAD_BLOCK <= fan_out; j += GRAD_BLOCK)
        gradient_block(a_in, k, kb, delta, j, fan_out, m, dW);
    for (; j < fan_out; j++)
        for (int q = 0; q < kb; q++)
            dW[(k + q) * fan_out + j] += dot(a_in + (k + q) * TILE, delta + j * TILE, m);
}

/* dW += a_in delta^T and db += row sums of delta: a_in (fan_in, TILE);
 * delta (fan_out, TILE); dW (fan_in, fan_out) row-major; db (fan_out) or NULL. */
static void weight_gradient(const double *a_in, int64_t fan_in, const double *delta, int64_t fan_out,
                            int64_t m, double *dW, double *db)
{
    int64_t k = 0;
    for (; k + IN_BLOCK <= fan_in; k += IN_BLOCK)
        gradient_inputs(a_in, k, IN_BLOCK, delta, fan_out, m, dW);
    for (; k < fan_in; k++)
        gradient_inputs(a_in, k, 1, delta, fan_out, m, dW);
    if (db)
        for (int64_t j = 0; j < fan_out; j++)
            db[j] += sum(delta + j * TILE, m);
}

/* delta = scale (a - Y) f'(a) for the output layer; returns sum((a - Y)^2).
 * a, delta (width, TILE); Y (m, width) row-major, this tile's rows. */
static double output_delta(const double *a, const double *Y, int64_t width, int64_t m,
                           double scale, int derivative, double *delta)
{
    double squared = 0.0;
    for (int64_t j = 0; j < width; j++) {
        double *d = delta + j * TILE;
        for (int64_t t = 0; t < m; t++)
            d[t] = a[j * TILE + t] - Y[t * width + j];
        squared += dot(d, d, m);
        for (int64_t t = 0; t < m; t++)
            d[t] *= scale;
        times_slope(d, a + j * TILE, m, derivative);
    }
    return squared;
}

/* ---- the network: work memory and whole tiles ------------------------------ */

typedef struct {
    const int64_t *sizes;
    int64_t n_layers;         /* L + 1 */
    int has_bias;
    int64_t n_params;         /* packed length of params and grad */
    int64_t *w_start;         /* [L]: where W_l starts in params and grad */
    int64_t *b_start;         /* [L]: where b_l starts (when has_bias) */
    double **act;             /* [L + 1]: A_l on the tile, (sizes[l], TILE) */
    double *delta, *delta_in; /* (widest, TILE) each, or NULL without deltas */
    void *memory;             /* the one allocation behind all of the above */
} Net;

/* Lay out the packed parameters and allocate the tiles, once per call.
 * Returns 0, or -1 with errno = ENOMEM; errno is unchanged on success. */
static int net_open(Net *net, const int64_t *sizes, int64_t n_layers, int has_bias, int with_deltas)
{
    /* Count work memory in tiles, refusing counts whose byte size could overflow. */
    const uint64_t max_tiles = SIZE_MAX / (4 * TILE * sizeof(double));
    uint64_t tiles = 0, widest = 0;
    for (int64_t l = 0; l < n_layers; l++) {
        if ((uint64_t)sizes[l] > max_tiles - tiles) {
            errno = ENOMEM;
            return -1;
        }
        tiles += (uint64_t)sizes[l];
        if (l > 0 && (uint64_t)sizes[l] > widest)
            widest = (uint64_t)sizes[l];
    }
    if (with_deltas)
        tiles += 2 * widest;
    size_t doubles = (size_t)tiles * TILE;
    size_t bytes = doubles * sizeof(double) + (size_t)n_layers * (2 * sizeof(int64_t) + sizeof(double *));
    int saved_errno = errno;
    char *memory = aligned_alloc(ALIGN, (bytes + ALIGN - 1) / ALIGN * ALIGN);
    if (!memory) {
        errno = ENOMEM;
        return -1;
    }
    errno = saved_errno;

    net->sizes = sizes;
    net->n_layers = n_layers;
    net->has_bias = has_bias;
    net->memory = memory;
    net->w_start = (int64_t *)(void *)(memory + doubles * sizeof(double));
    net->b_start = net->w_start + n_layers;
    net->act = (double **)(void *)(net->b_start + n_layers);
    double *tile = (double *)(void *)memory;
    for (int64_t l = 0; l < n_layers; l++) {
        net->act[l] = tile;
        tile += sizes[l] * TILE;
    }
    net->delta = with_deltas ? tile : NULL;
    net->delta_in = with_deltas ? tile + widest * TILE : NULL;
    int64_t offset = 0;
    for (int64_t l = 0; l + 1 < n_layers; l++) {
        net->w_start[l] = offset;
        offset += sizes[l] * sizes[l + 1];
        net->b_start[l] = offset;
        offset += has_bias ? sizes[l + 1] : 0;
    }
    net->n_params = offset;
    return 0;
}

/* Free the work memory of net_open. */
static void net_close(Net *net)
{
    free(net->memory);
}

/* Run m rows of X (the tile's first row at X) through every layer: act[l] = A_l. */
static void forward_tile(const Net *net, const double *X, int64_t m, const double *params)
{
    const int64_t *sizes = net->sizes;
    rows_to_tile(X, sizes[0], m, net->act[0]);
    for (int64_t l = 0; l + 1 < net->n_layers; l++)
        dense_sigmoid(net->act[l], sizes[l], params + net->w_start[l],
                      net->has_bias ? params + net->b_start[l] : NULL, sizes[l + 1], m, net->act[l + 1]);
}

/* Back-propagate one tile after forward_tile: grad += this tile's dLoss/dparams;
 * returns its sum((A_L - Y)^2).  Y: the tile's first row; scale = dLoss/dA_L / (A_L - Y). */
static double backward_tile(Net *net, const double *Y, int64_t m, const double *params,
                            int derivative, double scale, double *grad)
{
    const int64_t *sizes = net->sizes;
    int64_t L = net->n_layers - 1;
    double squared = output_delta(net->act[L], Y, sizes[L], m, scale, derivative, net->delta);
    for (int64_t l = L - 1; l >= 0; l--) {
        weight_gradient(net->act[l], sizes[l], net->delta, sizes[l + 1], m, grad + net->w_start[l],
                        net->has_bias ? grad + net->b_start[l] : NULL);
        if (l > 0) {
            back_to_inputs(net->delta, sizes[l + 1], params + net->w_start[l], sizes[l], net->act[l], m,
                           derivative, net->delta_in);
            double *swap = net->delta;
            net->delta = net->delta_in;
            net->delta_in = swap;
        }
    }
    return squared;
}

/* Rows in the tile that starts at row `first` of n. */
static int64_t tile_rows(int64_t first, int64_t n)
{
    return n - first < TILE ? n - first : TILE;
}

int fn_forward(const double *X, int64_t n, const double *params,
               const int64_t *sizes, int64_t n_layers, int has_bias, double *out)
{
    Net net;
    if (net_open(&net, sizes, n_layers, has_bias, 0) != 0)
        return -1;
    for (int64_t first = 0; first < n; first += TILE) {
        int64_t m = tile_rows(first, n);
        forward_tile(&net, X + first * sizes[0], m, params);
        double *block = out; /* layer l's (n, sizes[l]) block of out */
        for (int64_t l = 1; l < n_layers; l++) {
            tile_to_rows(net.act[l], sizes[l], m, block + first * sizes[l]);
            block += n * sizes[l];
        }
    }
    net_close(&net);
    return 0;
}

double fn_gradient(const double *X, const double *Y, int64_t n, const double *params,
                   const int64_t *sizes, int64_t n_layers, int has_bias,
                   int derivative, int loss, double *grad)
{
    Net net;
    if (net_open(&net, sizes, n_layers, has_bias, 1) != 0)
        return NAN;
    int64_t n_out = sizes[n_layers - 1];
    double count = (double)(n * n_out);
    double scale = loss == FN_LOSS_MSE ? 2.0 / count : 2.0;
    memset(grad, 0, (size_t)net.n_params * sizeof *grad);
    double squared = 0.0;
    for (int64_t first = 0; first < n; first += TILE) {
        int64_t m = tile_rows(first, n);
        forward_tile(&net, X + first * sizes[0], m, params);
        squared += backward_tile(&net, Y + first * n_out, m, params, derivative, scale, grad);
    }
    net_close(&net);
    return loss == FN_LOSS_MSE ? squared / count : squared;
}
