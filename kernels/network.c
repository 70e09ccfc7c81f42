/* fastnet native kernels: see network.h for the contract.
 *
 * The batch is streamed in tiles of TILE rows.  Inside a tile every
 * activation and delta is stored feature-major, as (width, TILE) blocks, so
 * each inner loop runs over the tile's rows, contiguous in memory, and the
 * compiler vectorises it whatever the layer widths; the matrix products keep
 * small blocks of sums in registers.  Only the first m <= TILE columns of a
 * tile are ever read or written, so the last tile may be partial.
 *
 * Tiles are grouped in blocks of FN_BLOCK_ROWS rows, the unit of parallel
 * work (OpenMP): each thread has a slot with its own tiles and partial
 * gradient.  All work memory is allocated once per call, in one block.
 */
#include "network.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
/* OMP(omp ...) is the pragma "omp ...", or nothing when built without OpenMP. */
#define OMP(directive) _Pragma(#directive)
#else
#define OMP(directive)
#endif

_Static_assert(FN_BLOCK_ROWS % FN_TILE_ROWS == 0, "a block must be whole tiles");

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

/* sum over t < m of w[t] * x[t]^2, in DOT_LANES partial sums added in a fixed order. */
static double weighted_squares(const double *restrict x, const double *restrict w, int64_t m)
{
    double lane[DOT_LANES] = {0.0};
    int64_t t = 0;
    for (; t + DOT_LANES <= m; t += DOT_LANES)
        for (int l = 0; l < DOT_LANES; l++)
            lane[l] += w[t + l] * (x[t + l] * x[t + l]);
    double total = 0.0;
    for (; t < m; t++)
        total += w[t] * (x[t] * x[t]);
    for (int l = 0; l < DOT_LANES; l++)
        total += lane[l];
    return total;
}

/* log(x) clamped below at -100, as torch.nn.BCELoss (log 0 = -inf gives -100; NaN stays NaN). */
static double clamped_log(double x)
{
    double value = log(x);
    return value < -100.0 ? -100.0 : value;
}

/* The output layer on one tile: delta = scale w (a - Y) f'(a) for squared
 * errors, scale w (a - Y) for bce (the sigmoid's f' cancels the loss's
 * 1/(a(1-a))); returns sum_t w[t] e_t with e_t the row's error (network.h).
 * a, delta (width, TILE); Y (m, width) row-major, this tile's rows; w (m). */
static double output_delta(const double *a, const double *Y, const double *w, int64_t width, int64_t m,
                           int loss, double scale, int derivative, double *delta)
{
    double errors = 0.0;
    for (int64_t j = 0; j < width; j++) {
        const double *aj = a + j * TILE;
        double *d = delta + j * TILE;
        for (int64_t t = 0; t < m; t++)
            d[t] = aj[t] - Y[t * width + j];
        if (loss == FN_LOSS_BCE) {
            for (int64_t t = 0; t < m; t++) {
                double y = Y[t * width + j];
                errors -= w[t] * (y * clamped_log(aj[t]) + (1.0 - y) * clamped_log(1.0 - aj[t]));
            }
        } else {
            errors += weighted_squares(d, w, m);
        }
        for (int64_t t = 0; t < m; t++)
            d[t] *= scale * w[t];
        if (loss != FN_LOSS_BCE)
            times_slope(d, aj, m, derivative);
    }
    return errors;
}

/* ---- work memory ------------------------------------------------------------ */

/* A bump allocator over one block of memory, every region aligned to ALIGN.
 * With base NULL it only measures (take returns NULL, `used` grows), so one
 * carving routine first sizes the block and then lays it out.  `overflow`
 * is set once a size would not fit in size_t. */
typedef struct {
    char *base;
    size_t used;
    int overflow;
} Arena;

/* The next region of count items of `item` bytes (NULL while measuring). */
static void *take(Arena *arena, uint64_t count, size_t item)
{
    size_t start = (arena->used + ALIGN - 1) / ALIGN * ALIGN;
    if (arena->overflow || start < arena->used || count > (SIZE_MAX - start) / item) {
        arena->overflow = 1;
        return NULL;
    }
    arena->used = start + (size_t)count * item;
    return arena->base ? arena->base + start : NULL;
}

/* a + b, saturating at UINT64_MAX (which take then refuses). */
static uint64_t add_saturating(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* a * b, saturating at UINT64_MAX. */
static uint64_t multiply_saturating(uint64_t a, uint64_t b)
{
    return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* ---- the network: layout, slots and whole tiles ------------------------------ */

/* One thread's workspace: tiles of every layer's activations and two delta
 * tiles, and its block's partial gradient and loss. */
typedef struct {
    double *tiles;  /* A_l at tiles + act_start[l], (sizes[l], TILE); deltas at delta_start */
    double *part;   /* (n_params) partial gradient, or NULL when batches are single blocks */
    double errors;  /* sum_i w_i e_i over its block */
} Slot;

typedef struct {
    const int64_t *sizes;
    int64_t n_layers;            /* L + 1 */
    int has_bias;
    int64_t n_params;            /* packed length of params and grad */
    int64_t *w_start, *b_start;  /* [L]: where W_l and b_l start in params and grad */
    int64_t *act_start;          /* [L + 1]: where A_l's tile starts in a slot's tiles */
    int64_t delta_start, widest; /* delta tiles: (widest, TILE) at delta_start and after it */
    double *ones;                /* (TILE) ones: the row weights when there are none */
    int slots;
    Slot *slot;                  /* [slots] */
    double *batch_X, *batch_Y, *batch_w; /* gathered batch rows (train_epoch with an order) */
    void *memory;                /* the one allocation behind all of the above */
} Net;

/* Carve net's arrays from the arena (measuring only when arena->base is NULL):
 * tile_doubles per slot; parts: a partial gradient per slot; gather_rows
 * rows of X, Y (and w when gather_weights) for gathered batches. */
static void net_carve(Net *net, Arena *arena, uint64_t tile_doubles, int parts, int64_t gather_rows,
                      int gather_weights)
{
    int64_t L = net->n_layers - 1;
    net->w_start = take(arena, L, sizeof(int64_t));
    net->b_start = take(arena, L, sizeof(int64_t));
    net->act_start = take(arena, L + 1, sizeof(int64_t));
    net->slot = take(arena, net->slots, sizeof(Slot));
    net->ones = take(arena, TILE, sizeof(double));
    net->batch_X = take(arena, multiply_saturating(gather_rows, net->sizes[0]), sizeof(double));
    net->batch_Y = take(arena, multiply_saturating(gather_rows, net->sizes[L]), sizeof(double));
    net->batch_w = take(arena, gather_weights ? gather_rows : 0, sizeof(double));
    for (int s = 0; s < net->slots; s++) {
        double *tiles = take(arena, tile_doubles, sizeof(double));
        double *part = parts ? take(arena, net->n_params, sizeof(double)) : NULL;
        if (arena->base)
            net->slot[s] = (Slot){tiles, part, 0.0};
    }
}

/* Lay out the packed parameters and allocate all work memory, once per call:
 * one slot per thread that can be busy, i.e. min(threads, blocks in a batch
 * of max_rows rows); with_deltas for gradients; gather_rows > 0 for batch
 * buffers.  Returns 0, or -1 with errno = ENOMEM; errno is unchanged on success. */
static int net_open(Net *net, const int64_t *sizes, int64_t n_layers, int has_bias, int threads,
                    int64_t max_rows, int with_deltas, int64_t gather_rows, int gather_weights)
{
    int64_t blocks = max_rows > FN_BLOCK_ROWS ? (max_rows + FN_BLOCK_ROWS - 1) / FN_BLOCK_ROWS : 1;
    net->sizes = sizes;
    net->n_layers = n_layers;
    net->has_bias = has_bias;
    net->slots = threads < 1 ? 1 : blocks < threads ? (int)blocks : threads;
    net->n_params = 0;
    uint64_t tiles = 0;
    net->widest = 0;
    for (int64_t l = 0; l < n_layers; l++) {
        tiles = add_saturating(tiles, (uint64_t)sizes[l]);
        if (l > 0 && sizes[l] > net->widest)
            net->widest = sizes[l];
        if (l + 1 < n_layers)
            net->n_params += sizes[l] * sizes[l + 1] + (has_bias ? sizes[l + 1] : 0);
    }
    if (with_deltas)
        tiles = add_saturating(tiles, multiply_saturating(2, (uint64_t)net->widest));
    uint64_t tile_doubles = multiply_saturating(tiles, TILE);
    int parts = with_deltas && blocks > 1;

    Arena arena = {NULL, 0, 0};
    net_carve(net, &arena, tile_doubles, parts, gather_rows, gather_weights);
    int saved_errno = errno;
    char *memory = arena.overflow ? NULL : aligned_alloc(ALIGN, (arena.used + ALIGN - 1) / ALIGN * ALIGN);
    if (!memory) {
        errno = ENOMEM;
        return -1;
    }
    errno = saved_errno;
    net->memory = memory;
    arena = (Arena){memory, 0, 0};
    net_carve(net, &arena, tile_doubles, parts, gather_rows, gather_weights);

    int64_t offset = 0, tile = 0;
    for (int64_t l = 0; l < n_layers; l++) {
        net->act_start[l] = tile;
        tile += sizes[l] * TILE;
        if (l + 1 < n_layers) {
            net->w_start[l] = offset;
            offset += sizes[l] * sizes[l + 1];
            net->b_start[l] = offset;
            offset += has_bias ? sizes[l + 1] : 0;
        }
    }
    net->delta_start = tile;
    for (int t = 0; t < TILE; t++)
        net->ones[t] = 1.0;
    return 0;
}

/* Free the work memory of net_open. */
static void net_close(Net *net)
{
    free(net->memory);
}

/* Run m rows of X (the tile's first row at X) through every layer: A_l at tiles + act_start[l]. */
static void forward_tile(const Net *net, double *tiles, const double *X, int64_t m, const double *params)
{
    const int64_t *sizes = net->sizes;
    rows_to_tile(X, sizes[0], m, tiles + net->act_start[0]);
    for (int64_t l = 0; l + 1 < net->n_layers; l++)
        dense_sigmoid(tiles + net->act_start[l], sizes[l], params + net->w_start[l],
                      net->has_bias ? params + net->b_start[l] : NULL, sizes[l + 1], m,
                      tiles + net->act_start[l + 1]);
}

/* Back-propagate one tile after forward_tile: grad += this tile's dLoss/dparams;
 * returns its sum_t w[t] e_t.  Y, w: the tile's first row; scale = c (bce) or 2c. */
static double backward_tile(const Net *net, double *tiles, const double *Y, const double *w, int64_t m,
                            const double *params, int derivative, int loss, double scale, double *grad)
{
    const int64_t *sizes = net->sizes;
    int64_t L = net->n_layers - 1;
    double *delta = tiles + net->delta_start, *delta_in = delta + net->widest * TILE;
    double errors = output_delta(tiles + net->act_start[L], Y, w, sizes[L], m, loss, scale, derivative, delta);
    for (int64_t l = L - 1; l >= 0; l--) {
        const double *a_in = tiles + net->act_start[l];
        weight_gradient(a_in, sizes[l], delta, sizes[l + 1], m, grad + net->w_start[l],
                        net->has_bias ? grad + net->b_start[l] : NULL);
        if (l > 0) {
            back_to_inputs(delta, sizes[l + 1], params + net->w_start[l], sizes[l], a_in, m, derivative,
                           delta_in);
            double *swap = delta;
            delta = delta_in;
            delta_in = swap;
        }
    }
    return errors;
}

/* Rows in the tile or block of `size` rows that starts at row `first` of n. */
static int64_t rows_from(int64_t first, int64_t size, int64_t n)
{
    return n - first < size ? n - first : size;
}

/* grad += the gradient over n rows (X (n, n_0), Y (n, n_L), w (n) or NULL),
 * tile by tile in a slot's tiles; returns their sum_i w_i e_i. */
static double rows_gradient(const Net *net, double *tiles, const double *X, const double *Y,
                            const double *w, int64_t n, const double *params, int derivative, int loss,
                            double scale, double *grad)
{
    int64_t n_in = net->sizes[0], n_out = net->sizes[net->n_layers - 1];
    double errors = 0.0;
    for (int64_t first = 0; first < n; first += TILE) {
        int64_t m = rows_from(first, TILE, n);
        forward_tile(net, tiles, X + first * n_in, m, params);
        errors += backward_tile(net, tiles, Y + first * n_out, w ? w + first : net->ones, m, params,
                                derivative, loss, scale, grad);
    }
    return errors;
}

/* c of the contract for a batch of n rows with weights w (NULL: ones):
 * 1 for sse, 1 / (W n_L) with W = sum_i w_i for mse and bce. */
static double normaliser(const double *w, int64_t n, int64_t n_out, int loss)
{
    return loss == FN_LOSS_SSE ? 1.0 : 1.0 / ((w ? sum(w, n) : (double)n) * (double)n_out);
}

/* grad = dLoss/dparams over a batch of n rows (X, Y, w as in rows_gradient)
 * with normaliser c; returns its sum_i w_i e_i.  Blocks of FN_BLOCK_ROWS rows
 * run net->slots at a time in parallel, each into its slot's partial
 * gradient; partials and losses are added in block order, so the result
 * does not depend on the number of threads.  One block runs serially, straight into grad. */
static double batch_gradient(Net *net, const double *X, const double *Y, const double *w, int64_t n,
                             const double *params, int derivative, int loss, double c, double *grad)
{
    int64_t n_in = net->sizes[0], n_out = net->sizes[net->n_layers - 1];
    int64_t n_blocks = (n + FN_BLOCK_ROWS - 1) / FN_BLOCK_ROWS;
    double scale = loss == FN_LOSS_BCE ? c : 2.0 * c;
    memset(grad, 0, (size_t)net->n_params * sizeof *grad);
    if (n_blocks == 1)
        return rows_gradient(net, net->slot[0].tiles, X, Y, w, n, params, derivative, loss, scale, grad);
    double errors = 0.0;
    for (int64_t wave = 0; wave < n_blocks; wave += net->slots) {
        int count = (int)rows_from(wave, net->slots, n_blocks);
        OMP(omp parallel for num_threads(count) schedule(static))
        for (int s = 0; s < count; s++) {
            Slot *slot = &net->slot[s];
            int64_t first = (wave + s) * FN_BLOCK_ROWS;
            memset(slot->part, 0, (size_t)net->n_params * sizeof *slot->part);
            slot->errors = rows_gradient(net, slot->tiles, X + first * n_in, Y + first * n_out,
                                         w ? w + first : NULL, rows_from(first, FN_BLOCK_ROWS, n), params,
                                         derivative, loss, scale, slot->part);
        }
        for (int s = 0; s < count; s++) {
            for (int64_t i = 0; i < net->n_params; i++)
                grad[i] += net->slot[s].part[i];
            errors += net->slot[s].errors;
        }
    }
    return errors;
}

/* dst (m, width) = rows order[0 .. m) of src (., width), row-major. */
static void gather(const double *src, int64_t width, const int64_t *order, int64_t m, double *dst)
{
    for (int64_t i = 0; i < m; i++)
        memcpy(dst + i * width, src + order[i] * width, (size_t)width * sizeof *dst);
}

/* One optimizer step on params (n_params) from the gradient g, in place;
 * formulas and the layout of hyper and state (2, n_params) in network.h.
 * No restrict: params, g and state may alias when called directly. */
static void update(double *params, const double *g, int64_t n_params, int optimizer, const double *hyper,
                   double *state, int64_t *step)
{
    double lr = hyper[FN_LR];
    if (optimizer == FN_OPTIMIZER_SGD) {
        for (int64_t i = 0; i < n_params; i++)
            params[i] -= lr * g[i];
    } else if (optimizer == FN_OPTIMIZER_MOMENTUM) {
        double mu = hyper[FN_MU], *v = state;
        for (int64_t i = 0; i < n_params; i++) {
            v[i] = mu * v[i] + g[i];
            params[i] -= lr * v[i];
        }
    } else {
        double b1 = hyper[FN_BETA1], b2 = hyper[FN_BETA2], eps = hyper[FN_EPS];
        double *m = state, *v = state + n_params;
        if (*step < INT64_MAX) /* saturate rather than overflow */
            *step += 1;
        double unbias1 = 1.0 - pow(b1, (double)*step), unbias2 = 1.0 - pow(b2, (double)*step);
        for (int64_t i = 0; i < n_params; i++) {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            params[i] -= lr * (m[i] / unbias1) / (sqrt(v[i] / unbias2) + eps);
        }
    }
}

/* ---- entry points (contract in network.h) ------------------------------------ */

#ifdef _OPENMP
/* libgomp's thread pool does not survive fork(): a child that starts a team
 * after its parent has used one hangs.  So a forked child runs serially. */
static atomic_int forked_child;

static void after_fork_in_child(void)
{
    atomic_store(&forked_child, 1);
}

static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, after_fork_in_child);
}
#endif

int fn_threads(int requested)
{
#ifdef _OPENMP
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, watch_forks); /* before this process ever starts a team */
    if (atomic_load(&forked_child))
        return 1;
    return requested >= 1 ? requested : omp_get_max_threads();
#else
    (void)requested;
    return 1;
#endif
}

/* The thread's slot inside a parallel region of at most net->slots threads. */
static int thread_slot(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int fn_forward(const double *X, int64_t n, const double *params,
               const int64_t *sizes, int64_t n_layers, int has_bias, int threads, double *out)
{
    Net net;
    if (net_open(&net, sizes, n_layers, has_bias, threads, n, 0, 0, 0) != 0)
        return -1;
    int64_t n_blocks = (n + FN_BLOCK_ROWS - 1) / FN_BLOCK_ROWS;
    /* Rows are independent: blocks may run on any thread, in any order. */
    OMP(omp parallel for num_threads(net.slots) schedule(static) if (n_blocks > 1))
    for (int64_t block = 0; block < n_blocks; block++) {
        double *tiles = net.slot[thread_slot()].tiles;
        int64_t end = block * FN_BLOCK_ROWS + rows_from(block * FN_BLOCK_ROWS, FN_BLOCK_ROWS, n);
        for (int64_t first = block * FN_BLOCK_ROWS; first < end; first += TILE) {
            int64_t m = rows_from(first, TILE, end);
            forward_tile(&net, tiles, X + first * sizes[0], m, params);
            double *layer_out = out; /* layer l's (n, sizes[l]) block of out */
            for (int64_t l = 1; l < n_layers; l++) {
                tile_to_rows(tiles + net.act_start[l], sizes[l], m, layer_out + first * sizes[l]);
                layer_out += n * sizes[l];
            }
        }
    }
    net_close(&net);
    return 0;
}

int fn_gradient(const double *X, const double *Y, const double *w, int64_t n, const double *params,
                const int64_t *sizes, int64_t n_layers, int has_bias, int derivative, int loss,
                int threads, double *grad, double *loss_value)
{
    Net net;
    if (net_open(&net, sizes, n_layers, has_bias, threads, n, 1, 0, 0) != 0)
        return -1;
    double c = normaliser(w, n, sizes[n_layers - 1], loss);
    *loss_value = c * batch_gradient(&net, X, Y, w, n, params, derivative, loss, c, grad);
    net_close(&net);
    return 0;
}

int fn_train_epoch(const double *X, const double *Y, const double *w, const int64_t *order, int64_t n,
                   int64_t batch_size, double *params, const int64_t *sizes, int64_t n_layers,
                   int has_bias, int derivative, int loss, int optimizer, const double *hyper,
                   double *state, int64_t *step, int threads, double *grad, double *errors)
{
    int64_t rows = batch_size < n ? batch_size : n; /* rows in a full batch */
    Net net;
    if (net_open(&net, sizes, n_layers, has_bias, threads, rows, 1, order ? rows : 0, order && w) != 0)
        return -1;
    int64_t n_in = sizes[0], n_out = sizes[n_layers - 1];
    double total = 0.0;
    for (int64_t first = 0; first < n; first += rows) {
        int64_t m = rows_from(first, rows, n);
        const double *X_batch = X + first * n_in, *Y_batch = Y + first * n_out;
        const double *w_batch = w ? w + first : NULL;
        if (order) {
            gather(X, n_in, order + first, m, net.batch_X);
            gather(Y, n_out, order + first, m, net.batch_Y);
            if (w)
                gather(w, 1, order + first, m, net.batch_w);
            X_batch = net.batch_X, Y_batch = net.batch_Y, w_batch = w ? net.batch_w : NULL;
        }
        double c = normaliser(w_batch, m, n_out, loss);
        total += batch_gradient(&net, X_batch, Y_batch, w_batch, m, params, derivative, loss, c, grad);
        update(params, grad, net.n_params, optimizer, hyper, state, step);
    }
    net_close(&net);
    *errors = total;
    return 0;
}
