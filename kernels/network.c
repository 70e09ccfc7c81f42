/* fastnet native kernels: see network.h for the contract.
 *
 * The batch is streamed in tiles of TILE rows.  Inside a tile every
 * activation and delta is stored feature-major, as (width, TILE) blocks, so
 * each inner loop runs over the tile's rows, contiguous in memory, and the
 * compiler vectorises it whatever the layer widths; the matrix products keep
 * small blocks of sums in registers.  Only the first m <= TILE columns of a
 * tile are ever read or written, so the last tile may be partial.
 *
 * Tiles are grouped in blocks of block_rows rows (the caller's), the unit of
 * parallel work (OpenMP): each thread has a workspace with its own tiles,
 * each block of a wave its own partial gradient.  All work memory is
 * allocated once per call, in one block.
 *
 * The kernels themselves are dtype-generic, in network_impl.h, included
 * below twice: once with real = double (the _f64 entry points) and once with
 * real = float (_f32).  This file holds what differs per type (exp, expm1,
 * the sigmoid, tanh, the clamp) and what does not depend on it (loss
 * normalisers, work memory).
 *
 * The whole file is compiled once per SIMD variant (CMakeLists.txt: baseline,
 * avx2, avx512, each with its own -m flags and -DFN_VARIANT=<name>); all its
 * functions are static but the table fn_kernels_<name> at the end, so the
 * variants link side by side and runtime.c picks one table at start-up.
 * Nothing here reads the CPU: a variant only runs where runtime.c allows it.
 */
#include "network.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
/* OMP(omp ...) is the pragma "omp ...", or nothing when built without OpenMP. */
#define OMP(directive) _Pragma(#directive)
#else
#define OMP(directive)
#endif

/* The vector registers of the variant being compiled (its -m flags): their
 * width in bytes and how many there are.  The register blocks below are cut
 * to fill them without spilling. */
#if defined(__AVX512F__)
#define VECTOR_BYTES 64
#define VECTOR_REGISTERS 32
#elif defined(__AVX__)
#define VECTOR_BYTES 32
#define VECTOR_REGISTERS 16
#else
#define VECTOR_BYTES 16 /* SSE2, NEON */
#define VECTOR_REGISTERS 16
#endif

/* Items of the current type (`real`, see network_impl.h) in one vector register. */
#define LANES ((int)(VECTOR_BYTES / sizeof(real)))
/* Rows in affine_block's register block: ROW_BLOCK_VECTORS vectors of `real`. */
#define ROW_BLOCK (ROW_BLOCK_VECTORS * LANES)

enum {
    TILE = FN_TILE_ROWS,
    ALIGN = FN_CACHE_LINE_BYTES, /* TILE doubles or floats are a multiple, so every row of a tile is aligned */
    DOT_LANES = 16, /* partial sums in dot() and sum(), lane l over the rows t % 16 == l */
    DOT_INPUTS = 4, /* tile rows whose dot products with one other row dots() computes together */
    /* Register blocks: sums kept in registers while the inner loop runs.
     * affine_block: OUT_BLOCK outputs x ROW_BLOCK_VECTORS vectors of rows
     * (12 sums, plus the loaded inputs and a broadcast weight: 16 registers). */
    OUT_BLOCK = 4,
    ROW_BLOCK_VECTORS = 3,
    /* gradient_block: IN_BLOCK inputs x GRAD_VECTORS vectors of outputs, plus
     * the loaded deltas and a broadcast input: 4 x 3 (16 registers) with 16
     * registers, 4 x 6 (31) with 32. */
    IN_BLOCK = 4,
    GRAD_VECTORS = VECTOR_REGISTERS >= 32 ? 6 : 3,
    FINITE_CHUNK = 1 << 16, /* items per parallel chunk of fn_finite_range */
    SCRATCH_ROWS = 3        /* per-row scratch tiles: softmax's max and sum, cross-entropy's target sum */
};

/* ---- exp, expm1, the sigmoid and tanh, written to vectorise, per type ---- */

/* exp(x) = 2^k exp(r), k = round(x / ln 2), r = x - k ln 2 (Cody-Waite).
 * LN2_HI has its low 32 mantissa bits zero, so k * LN2_HI is exact for
 * |k| < 2^20; LN2_LO = ln 2 - LN2_HI. */
static const double LOG2E = 1.4426950408889634;
static const double LN2_HI = 6.93147180369123816490e-01;
static const double LN2_LO = 1.90821492927058770002e-10;
/* Adding 1.5 * 2^52 rounds to an integer held in the low mantissa bits; the
 * extra 1023 is the exponent bias, so those bits shifted left by 52 are 2^k. */
static const double ROUND_SHIFT = 6755399441055744.0 + 1023.0;

/* q(r) = (exp(r) - 1) / r for |r| <= ln(2)/2: the Taylor series of exp to
 * degree 13, less its constant term, divided by r, in Horner form (truncation
 * error < 1e-17 relative).  exp(r) = q(r) r + 1 and exp(r) - 1 = q(r) r, so
 * the latter never adds and subtracts 1 (no cancellation near r = 0). */
static inline double exp_quotient_f64(double r)
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
    return p * r + 1.0;
}

/* exp(r) for |r| <= ln(2)/2, within ~1 ulp. */
static inline double exp_reduced_f64(double r)
{
    return exp_quotient_f64(r) * r + 1.0;
}

/* k and 2^k of the reduction x = k ln 2 + r, for x in [-FN_SIGMOID_CLAMP, 0]:
 * 2^k is then a normal double (k >= -1021), built directly from its bits;
 * returns r.  NaN gives NaN. */
static inline double reduce_f64(double x, double *two_to_k)
{
    double shifted = x * LOG2E + ROUND_SHIFT;
    double k = shifted - ROUND_SHIFT;
    uint64_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits <<= 52;
    memcpy(two_to_k, &bits, sizeof *two_to_k);
    return x - k * LN2_HI - k * LN2_LO;
}

/* exp(x) for x in [-FN_SIGMOID_CLAMP, 0]: 2^k is then a normal double
 * (k >= -1021), built directly from its bits.  NaN gives NaN. */
static inline double exp_nonpositive_f64(double x)
{
    double two_to_k;
    double r = reduce_f64(x, &two_to_k);
    return exp_reduced_f64(r) * two_to_k;
}

/* exp(x) - 1 for x in [-FN_SIGMOID_CLAMP, 0], within a few ulp relative for
 * every x (also near 0): 2^k (exp(r) - 1) + (2^k - 1), where 2^k - 1 is exact
 * while k >= -53 and the first term carries all of the result when k = 0. */
static inline double expm1_nonpositive_f64(double x)
{
    double two_to_k;
    double r = reduce_f64(x, &two_to_k);
    return two_to_k * (exp_quotient_f64(r) * r) + (two_to_k - 1.0);
}

/* 1 / (1 + exp(-z)) for any finite z, never overflowing:
 * e = exp(-min(|z|, clamp)); z >= 0 ? 1/(1+e) : e/(1+e). */
static inline double sigmoid_f64(double z)
{
    double magnitude = fabs(z);
    double e = exp_nonpositive_f64(-(magnitude > FN_SIGMOID_CLAMP ? FN_SIGMOID_CLAMP : magnitude));
    return (z >= 0.0 ? 1.0 : e) / (1.0 + e);
}

/* tanh(z) for any finite z: m = expm1(-min(2|z|, clamp)), tanh = sign(z) (-m) / (2 + m);
 * exactly +-1 far out, no cancellation near 0, -0 for -0. */
static inline double tanh_f64(double z)
{
    double twice = 2.0 * fabs(z);
    double m = expm1_nonpositive_f64(-(twice > FN_SIGMOID_CLAMP ? FN_SIGMOID_CLAMP : twice));
    return copysign(-m / (2.0 + m), z);
}

/* The same in float, as the Numba backend's float32 kernels: ln 2 split with
 * 9 significant bits in LN2_HI_F32 (k * LN2_HI_F32 exact for |k| < 2^15),
 * shifter 1.5 * 2^23 + 127 (the float exponent bias) with a 23-bit shift.
 * Constants are the float roundings of the double expressions, exactly as
 * np.float32(...) rounds them. */
static const float LOG2E_F32 = (float)1.4426950408889634;
static const float LN2_HI_F32 = 0.693359375f;
static const float LN2_LO_F32 = (float)-2.12194440e-4;
static const float ROUND_SHIFT_F32 = 12582912.0f + 127.0f;

/* q(r) = (exp(r) - 1) / r for |r| <= ln(2)/2 in float: the Taylor series to
 * degree 7 (truncation error < 2e-9, below half a float ulp), as exp_quotient_f64. */
static inline float exp_quotient_f32(float r)
{
    float p = (float)(1.0 / 5040.0);
    p = p * r + (float)(1.0 / 720.0);
    p = p * r + (float)(1.0 / 120.0);
    p = p * r + (float)(1.0 / 24.0);
    p = p * r + (float)(1.0 / 6.0);
    p = p * r + 0.5f;
    return p * r + 1.0f;
}

/* exp(r) for |r| <= ln(2)/2 in float. */
static inline float exp_reduced_f32(float r)
{
    return exp_quotient_f32(r) * r + 1.0f;
}

/* reduce_f64 in float, for x in [-FN_SIGMOID_CLAMP_FLOAT32, 0]: 2^k is then a
 * normal float (k >= -126). */
static inline float reduce_f32(float x, float *two_to_k)
{
    float shifted = x * LOG2E_F32 + ROUND_SHIFT_F32;
    float k = shifted - ROUND_SHIFT_F32;
    uint32_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    bits <<= 23;
    memcpy(two_to_k, &bits, sizeof *two_to_k);
    return x - k * LN2_HI_F32 - k * LN2_LO_F32;
}

/* exp(x) for float x in [-FN_SIGMOID_CLAMP_FLOAT32, 0].  NaN gives NaN. */
static inline float exp_nonpositive_f32(float x)
{
    float two_to_k;
    float r = reduce_f32(x, &two_to_k);
    return exp_reduced_f32(r) * two_to_k;
}

/* exp(x) - 1 for float x in [-FN_SIGMOID_CLAMP_FLOAT32, 0], as expm1_nonpositive_f64
 * (2^k - 1 exact while k >= -24). */
static inline float expm1_nonpositive_f32(float x)
{
    float two_to_k;
    float r = reduce_f32(x, &two_to_k);
    return two_to_k * (exp_quotient_f32(r) * r) + (two_to_k - 1.0f);
}

/* The float sigmoid: e = exp(-min(|z|, 87)), then a plain float division. */
static inline float sigmoid_f32(float z)
{
    float magnitude = fabsf(z);
    float e = exp_nonpositive_f32(-(magnitude > FN_SIGMOID_CLAMP_FLOAT32 ? FN_SIGMOID_CLAMP_FLOAT32 : magnitude));
    return (z >= 0.0f ? 1.0f : e) / (1.0f + e);
}

/* The float tanh: m = expm1(-min(2|z|, 87)), as tanh_f64. */
static inline float tanh_f32(float z)
{
    float twice = 2.0f * fabsf(z);
    float m = expm1_nonpositive_f32(-(twice > FN_SIGMOID_CLAMP_FLOAT32 ? FN_SIGMOID_CLAMP_FLOAT32 : twice));
    return copysignf(-m / (2.0f + m), z);
}

/* The clamp of each type: the largest |x| any exp(-|x|) here takes. */
static const double CLAMP_f64 = FN_SIGMOID_CLAMP;
static const float CLAMP_f32 = FN_SIGMOID_CLAMP_FLOAT32;

/* log(x) clamped below at FN_BCE_LOG_FLOOR, as torch.nn.BCELoss (log 0 = -inf gives the floor;
 * NaN stays NaN).  In double for both types: it only feeds the loss sums. */
static double clamped_log(double x)
{
    double value = log(x);
    return value < FN_BCE_LOG_FLOOR ? FN_BCE_LOG_FLOOR : value;
}

/* ---- loss normalisers (fastnet.backends.loss_normaliser, penalty_normaliser) -- */

/* Each loss's `mean` and `per_output` flags of fastnet.spec.LOSSES, indexed by code. */
static const int LOSS_MEAN[FN_N_LOSS] = FN_LOSS_MEAN_FLAGS;
static const int LOSS_PER_OUTPUT[FN_N_LOSS] = FN_LOSS_PER_OUTPUT_FLAGS;

/* c, which turns a batch's sums into its loss: 1 for a sum loss, 1 / W for
 * a mean one, 1 / (W n_L) for a per_output one, 0 when that denominator is
 * 0 (a batch of zero total weight then has zero loss and gradient, never NaN).
 * total_weight = W = sum_i w_i. */
static double loss_normaliser(int loss, double total_weight, int64_t n_out)
{
    if (!LOSS_MEAN[loss])
        return 1.0;
    double total = total_weight * (LOSS_PER_OUTPUT[loss] ? (double)n_out : 1.0);
    return total > 0.0 ? 1.0 / total : 0.0;
}

/* r, the L2 penalty's factor: 1 / W for a mean loss (0 when W is 0), 1 for a sum loss. */
static double penalty_normaliser(int loss, double total_weight)
{
    if (!LOSS_MEAN[loss])
        return 1.0;
    return total_weight > 0.0 ? 1.0 / total_weight : 0.0;
}

/* The output delta's factor for a normaliser c: c where the output activation's
 * derivative cancels against the loss's (bce after a sigmoid, cross_entropy
 * after a softmax: delta = c w (a - y) or c w (p s - y)), else 2c (the
 * squared errors' 2 (a - y)). */
static double delta_scale(int loss, double c)
{
    return loss == FN_LOSS_BCE || loss == FN_LOSS_CROSS_ENTROPY ? c : 2.0 * c;
}

/* Rows in the tile or block of `size` rows that starts at row `first` of n. */
static int64_t rows_from(int64_t first, int64_t size, int64_t n)
{
    return n - first < size ? n - first : size;
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

/* ---- threads ------------------------------------------------------------------- */

/* The thread's number inside a parallel region of at most net->threads
 * threads: the index of its workspace. */
static int thread_number(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}


/* ---- the kernels, once per type ------------------------------------------------ */

/* Lanes i0..i3 of the eight lanes of vectors a and b (four each): Clang's
 * builtin takes the indices as arguments, GCC's (before GCC 12) as a vector of
 * integers as wide as the lanes, R(four_lanes) of the type being compiled. */
#if defined(__clang__)
#define SHUFFLE4(a, b, i0, i1, i2, i3) __builtin_shufflevector(a, b, i0, i1, i2, i3)
#else
#define SHUFFLE4(a, b, i0, i1, i2, i3) __builtin_shuffle(a, b, (R(four_lanes)){i0, i1, i2, i3})
#endif

#define real double
#define real_bits int64_t
#define R(name) name##_f64
#define SQRT sqrt
#include "network_impl.h"
#undef real
#undef real_bits
#undef R
#undef SQRT

#define real float
#define real_bits int32_t
#define R(name) name##_f32
#define SQRT sqrtf
#include "network_impl.h"
#undef real
#undef real_bits
#undef R
#undef SQRT

/* ---- this variant's table (network.h, FnKernels) ---------------------------------- */

#ifndef FN_VARIANT
#error "compile network.c with -DFN_VARIANT=<variant> (CMakeLists.txt does)"
#endif
#define FN_TABLE_NAME(variant) FN_TABLE_PASTE(variant)
#define FN_TABLE_PASTE(variant) fn_kernels_##variant

#define FN_ENTRIES(suffix)                                                                      \
    .finite_range##suffix = finite_range##suffix, .forward##suffix = forward##suffix,                   \
    .gradient##suffix = gradient##suffix, .train_epoch##suffix = train_epoch##suffix

const FnKernels FN_TABLE_NAME(FN_VARIANT) = {FN_ENTRIES(_f64), FN_ENTRIES(_f32)};
