/* fastnet native kernels, dtype-generic: included by network.c once per
 * floating type, never on its own (so no include guard).  Before each
 * inclusion network.c defines
 *   real     the element type of every array: double or float;
 *   R(name)  name with the type's suffix (name##_f64, name##_f32), so each
 *            inclusion defines its own functions and types;
 *   SQRT     sqrt or sqrtf;
 * and network.c defines the per-type arithmetic R(exp_nonpositive),
 * R(sigmoid), R(tanh) and the clamp R(CLAMP).  Shared, type-free helpers
 * (TILE and the register blocks, Arena, rows_from, clamped_log, the loss
 * normalisers, thread_number) come from network.c too.
 *
 * Arithmetic stays in `real`: every literal goes through a cast such as
 * (real)1, so float code never silently widens to double (the build warns
 * with -Wdouble-promotion / -Wfloat-conversion).  Deliberately double: the
 * loss sums sum_i w_i e_i (and bce's logs, cross-entropy's lse), the total
 * weight W, the normalisers c and r, each converted explicitly; c reaches the
 * deltas as (real)c, alpha r the penalty as (real)(alpha r).
 */

/* ---- vectors: one register of LANES reals (GCC/Clang vector extensions) ---- */

/* The matrix products keep their sums in vector registers explicitly, rather
 * than hoping the vectoriser finds the register block: + and * act lane by
 * lane (fused into FMA where the variant has it, as scalar code is), so every
 * lane computes what scalar code would. */
typedef real R(vec) __attribute__((vector_size(VECTOR_BYTES)));

/* The LANES reals at p (any alignment). */
static inline R(vec) R(load)(const real *p)
{
    R(vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Store v's LANES reals at p (any alignment). */
static inline void R(store)(real *p, R(vec) v)
{
    memcpy(p, &v, sizeof v);
}

/* A vector of LANES copies of x: the scalar operand of x - 0 is broadcast, and
 * x - (+0) is x for every x, -0 and NaN included, so the compiler drops the
 * subtraction and emits one broadcast (a loop setting each lane compiles to a
 * chain of inserts instead). */
static inline R(vec) R(splat)(real x)
{
    return x - (R(vec)){0};
}

/* ---- loops over the first m rows of a tile ------------------------------- */

/* The DOT_LANES partial sums of dot() and sum() are PARTS vectors of
 * PART_LANES reals, each at most one register wide and at least two of them:
 * written as vectors, not as an array of scalars, so every variant's compiler
 * keeps them in registers (with 16-float registers, an array of eight floats
 * was vectorised across two blocks of rows and taken apart lane by lane in
 * every iteration); never wider than a register (a vector of eight doubles on
 * AVX2 is split through memory); two or more, so that the additions run in
 * independent chains instead of waiting on one register's latency.  Which
 * lanes share a vector changes the speed, never a sum. */
#define PART_LANES (LANES < DOT_LANES / 2 ? LANES : DOT_LANES / 2)
#define PARTS (DOT_LANES / PART_LANES)
typedef real R(part) __attribute__((vector_size(PART_LANES * sizeof(real))));

/* The PART_LANES reals at p (any alignment). */
static inline R(part) R(load_part)(const real *p)
{
    R(part) v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* total + the DOT_LANES partial sums, added in lane order. */
static inline real R(add_parts)(real total, const R(part) *parts)
{
    for (int p = 0; p < PARTS; p++)
        for (int l = 0; l < PART_LANES; l++)
            total += parts[p][l];
    return total;
}

/* sum over t < m of x[t] * y[t]: DOT_LANES partial sums, lane l summing the
 * terms t % DOT_LANES == l of the whole blocks, then the last m % DOT_LANES
 * terms, then the lanes in order. */
static real R(dot)(const real *restrict x, const real *restrict y, int64_t m)
{
    R(part) parts[PARTS] = {{0}};
    int64_t t = 0;
    for (; t + DOT_LANES <= m; t += DOT_LANES)
        for (int p = 0; p < PARTS; p++)
            parts[p] += R(load_part)(x + t + p * PART_LANES) * R(load_part)(y + t + p * PART_LANES);
    real total = 0;
    for (; t < m; t++)
        total += x[t] * y[t];
    return R(add_parts)(total, parts);
}

/* The dot() of each of the DOT_INPUTS tile rows x + q TILE (q < DOT_INPUTS) with the
 * one y, into out[q]: the same sums bit for bit, with each load of y shared by
 * all of them (a weight gradient's inputs against one output's delta). */
static void R(dots)(const real *restrict x, const real *restrict y, int64_t m, real out[DOT_INPUTS])
{
    R(part) parts[DOT_INPUTS][PARTS] = {{{0}}};
    int64_t t = 0;
    for (; t + DOT_LANES <= m; t += DOT_LANES)
        for (int p = 0; p < PARTS; p++) {
            R(part) y_part = R(load_part)(y + t + p * PART_LANES);
            for (int q = 0; q < DOT_INPUTS; q++)
                parts[q][p] += R(load_part)(x + q * TILE + t + p * PART_LANES) * y_part;
        }
    for (int q = 0; q < DOT_INPUTS; q++) {
        real total = 0;
        for (int64_t u = t; u < m; u++)
            total += x[q * TILE + u] * y[u];
        out[q] = R(add_parts)(total, parts[q]);
    }
}

/* sum over t < m of x[t], in the order of dot() (one running sum would be a
 * chain of m dependent additions). */
static real R(sum)(const real *x, int64_t m)
{
    R(part) parts[PARTS] = {{0}};
    int64_t t = 0;
    for (; t + DOT_LANES <= m; t += DOT_LANES)
        for (int p = 0; p < PARTS; p++)
            parts[p] += R(load_part)(x + t + p * PART_LANES);
    real total = 0;
    for (; t < m; t++)
        total += x[t];
    return R(add_parts)(total, parts);
}

/* ---- the activations of fastnet.spec.ACTIVATIONS: one case each ------------ */

/* Row-wise softmax parts of the (width, TILE) tile z on its first m rows:
 * top[t] = max_k z[k, t], e[j, t] = exp(-min(top[t] - z[j, t], clamp)) and
 * total[t] = sum_k e[k, t] (summed in k order).  e may be z itself. */
static void R(softmax_parts)(const real *z, int64_t width, int64_t m, real *restrict top, real *restrict total,
                             real *e)
{
    const real clamp = R(CLAMP);
    for (int64_t t = 0; t < m; t++)
        top[t] = z[t];
    for (int64_t j = 1; j < width; j++)
        for (int64_t t = 0; t < m; t++)
            top[t] = z[j * TILE + t] > top[t] ? z[j * TILE + t] : top[t];
    for (int64_t t = 0; t < m; t++)
        total[t] = (real)0;
    for (int64_t j = 0; j < width; j++)
        for (int64_t t = 0; t < m; t++) {
            real gap = top[t] - z[j * TILE + t];
            real e_jt = R(exp_nonpositive)(-(gap > clamp ? clamp : gap));
            e[j * TILE + t] = e_jt;
            total[t] += e_jt;
        }
}

/* The layer's pre-activations z (width, TILE) become its outputs f(z) on the
 * first m rows, f the activation `code`.  Elementwise activations run unit by
 * unit; softmax, row-wise over the layer's units, p[j, t] = e[j, t] / total[t]
 * (softmax_parts), needs scratch of 2 TILE.  The switch is outside the loops,
 * so each loop is plain arithmetic that vectorises. */
static void R(activate)(real *z, int64_t width, int64_t m, int64_t code, real *scratch)
{
    switch (code) {
    case FN_ACTIVATION_TANH:
        for (int64_t t = 0; t < width * TILE; t += TILE)
            for (int64_t i = t; i < t + m; i++)
                z[i] = R(tanh)(z[i]);
        break;
    case FN_ACTIVATION_RELU:
        for (int64_t t = 0; t < width * TILE; t += TILE)
            for (int64_t i = t; i < t + m; i++)
                z[i] = z[i] > (real)0 ? z[i] : (real)0;
        break;
    case FN_ACTIVATION_LINEAR:
        break;
    case FN_ACTIVATION_SOFTMAX: {
        real *top = scratch, *total = scratch + TILE;
        R(softmax_parts)(z, width, m, top, total, z);
        for (int64_t j = 0; j < width; j++)
            for (int64_t t = 0; t < m; t++)
                z[j * TILE + t] /= total[t];
        break;
    }
    case FN_ACTIVATION_SIGMOID:
    default:
        for (int64_t t = 0; t < width * TILE; t += TILE)
            for (int64_t i = t; i < t + m; i++)
                z[i] = R(sigmoid)(z[i]);
    }
}

/* d[t] *= f'(a[t]) for t < m, from the layer output a of activation `code`
 * (fastnet.spec.Activation.slope).  sigmoid: exact f' = a (1 - a), article
 * f' = s(a) (1 - s(a)), s the sigmoid; tanh 1 - a^2; relu 1 where a > 0,
 * else 0; linear 1.  The derivative code changes the sigmoid only; softmax
 * is never differentiated alone (its loss fuses the output delta), and the
 * caller (module.c) lets it be the last layer only. */
static void R(times_slope)(real *restrict d, const real *restrict a, int64_t m, int64_t code, int derivative)
{
    switch (code) {
    case FN_ACTIVATION_TANH:
        for (int64_t t = 0; t < m; t++)
            d[t] *= (real)1 - a[t] * a[t];
        break;
    case FN_ACTIVATION_RELU:
        for (int64_t t = 0; t < m; t++)
            d[t] = a[t] > (real)0 ? d[t] : (real)0;
        break;
    case FN_ACTIVATION_LINEAR:
    case FN_ACTIVATION_SOFTMAX:
        break;
    case FN_ACTIVATION_SIGMOID:
    default:
        if (derivative == FN_DERIVATIVE_ARTICLE) {
            for (int64_t t = 0; t < m; t++) {
                real s = R(sigmoid)(a[t]);
                d[t] *= s * ((real)1 - s);
            }
        } else {
            for (int64_t t = 0; t < m; t++)
                d[t] *= a[t] * ((real)1 - a[t]);
        }
    }
}

/* ---- one layer on one tile, feature-major --------------------------------- */

/* Four reals, and four indices of their width (GCC's shuffle masks): the 4 x 4
 * blocks rows_to_tile transposes in registers (each variant's compiler lowers
 * the shuffles to its own instructions). */
typedef real R(four) __attribute__((vector_size(4 * sizeof(real))));
typedef real_bits R(four_lanes) __attribute__((vector_size(4 * sizeof(real))));

/* The four reals at p (any alignment). */
static inline R(four) R(load_four)(const real *p)
{
    R(four) v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Store v's four reals at p (any alignment). */
static inline void R(store_four)(real *p, R(four) v)
{
    memcpy(p, &v, sizeof v);
}

/* The 4 x 4 block rows[t + i][k + q] (rows of width reals), stored transposed
 * at tile[(k + q) * TILE + t + i]: four vector loads, pairs interleaved within
 * each half, then halves, four vector stores. */
static inline void R(transpose_block)(const real *rows, int64_t width, real *tile)
{
    R(four) r0 = R(load_four)(rows), r1 = R(load_four)(rows + width);
    R(four) r2 = R(load_four)(rows + 2 * width), r3 = R(load_four)(rows + 3 * width);
    R(four) even01 = SHUFFLE4(r0, r1, 0, 4, 2, 6), odd01 = SHUFFLE4(r0, r1, 1, 5, 3, 7);
    R(four) even23 = SHUFFLE4(r2, r3, 0, 4, 2, 6), odd23 = SHUFFLE4(r2, r3, 1, 5, 3, 7);
    R(store_four)(tile, SHUFFLE4(even01, even23, 0, 1, 4, 5));
    R(store_four)(tile + TILE, SHUFFLE4(odd01, odd23, 0, 1, 4, 5));
    R(store_four)(tile + 2 * TILE, SHUFFLE4(even01, even23, 2, 3, 6, 7));
    R(store_four)(tile + 3 * TILE, SHUFFLE4(odd01, odd23, 2, 3, 6, 7));
}

/* tile[k*TILE + t] = rows[t*width + k] for k < width, t < m: m rows made
 * feature-major.  In passes over the rows, each reading FN_INPUT_PASS_BYTES (a
 * cache line) of every row's inputs (so each line is read once), in 4 x 4 blocks transposed in
 * registers; the last m % 4 rows and width % 4 inputs item by item. */
static void R(rows_to_tile)(const real *rows, int64_t width, int64_t m, real *tile)
{
    const int64_t per_pass = FN_INPUT_PASS_BYTES / (int64_t)sizeof(real);
    int64_t whole_rows = m - m % 4, whole_inputs = width - width % 4;
    for (int64_t k0 = 0; k0 < whole_inputs; k0 += per_pass) {
        int64_t k1 = k0 + rows_from(k0, per_pass, whole_inputs);
        for (int64_t t = 0; t < whole_rows; t += 4)
            for (int64_t k = k0; k < k1; k += 4)
                R(transpose_block)(rows + t * width + k, width, tile + k * TILE + t);
        for (int64_t t = whole_rows; t < m; t++)
            for (int64_t k = k0; k < k1; k++)
                tile[k * TILE + t] = rows[t * width + k];
    }
    for (int64_t k = whole_inputs; k < width; k++)
        for (int64_t t = 0; t < m; t++)
            tile[k * TILE + t] = rows[t * width + k];
}

/* rows[t*width + k] = tile[k*TILE + t] for t < m: the inverse of rows_to_tile. */
static void R(tile_to_rows)(const real *tile, int64_t width, int64_t m, real *rows)
{
    for (int64_t t = 0; t < m; t++)
        for (int64_t k = 0; k < width; k++)
            rows[t * width + k] = tile[k * TILE + t];
}

/* An affine map on a tile: z[o, t] = b[o] + sum_i W(i, o) in[i, t], where
 * W(i, o) = W[i*in_stride + o*out_stride], so one code serves W (forward)
 * and W^T (backward). */
typedef struct {
    const real *in;  /* (n_in, TILE) feature-major */
    int64_t n_in, n_out;
    const real *W;
    int64_t in_stride, out_stride;
    const real *b;   /* (n_out) or NULL for no bias */
} R(Affine);

/* z[o+p, t .. t + nv LANES) of the affine map for p < ob <= OUT_BLOCK and
 * nv <= ROW_BLOCK_VECTORS, over inputs i0 .. i1 - 1 only: the ob x nv vector
 * sums start from b (i0 == 0) or from z (the sums of the inputs before i0),
 * then stay in registers while those inputs pass, each step loading nv
 * vectors of inputs and broadcasting ob weights.  Every sum runs from b in
 * input order i = 0, 1, ... */
static inline __attribute__((always_inline)) void R(affine_block)(const R(Affine) *f, int64_t o, int ob, int64_t t, int nv, int64_t i0,
                                   int64_t i1, real *z)
{
    R(vec) acc[OUT_BLOCK][ROW_BLOCK_VECTORS];
    for (int p = 0; p < ob; p++)
        for (int v = 0; v < nv; v++)
            acc[p][v] = i0 > 0 ? R(load)(z + (o + p) * TILE + t + v * LANES)
                               : R(splat)(f->b ? f->b[o + p] : (real)0);
    for (int64_t i = i0; i < i1; i++) {
        const real *in = f->in + i * TILE + t;
        const real *w = f->W + i * f->in_stride + o * f->out_stride;
        R(vec) x[ROW_BLOCK_VECTORS];
        for (int v = 0; v < nv; v++)
            x[v] = R(load)(in + v * LANES);
        for (int p = 0; p < ob; p++) {
            R(vec) weight = R(splat)(w[p * f->out_stride]);
            for (int v = 0; v < nv; v++)
                acc[p][v] += weight * x[v];
        }
    }
    for (int p = 0; p < ob; p++)
        for (int v = 0; v < nv; v++)
            R(store)(z + (o + p) * TILE + t + v * LANES, acc[p][v]);
}

/* affine_block over inputs i0 .. i1 - 1 for rows t .. t + nv LANES and every
 * output, OUT_BLOCK at a time. */
static inline __attribute__((always_inline)) void R(affine_rows)(const R(Affine) *f, int64_t t, int nv, int64_t i0, int64_t i1, real *z)
{
    int64_t o = 0;
    for (; o + OUT_BLOCK <= f->n_out; o += OUT_BLOCK)
        R(affine_block)(f, o, OUT_BLOCK, t, nv, i0, i1, z);
    for (; o < f->n_out; o++)
        R(affine_block)(f, o, 1, t, nv, i0, i1, z);
}

/* z = the affine map on the first m rows of the tile: z (n_out, TILE), and
 * on the padded rows up to the next whole vector, which hold numbers
 * (zero_padding) and are never read for a result: one vector instead of up
 * to LANES - 1 rows in scalars, each a pass over every weight.  The
 * inputs come in chunks of FN_PRODUCT_CHUNK: the tile rows of one chunk
 * stay in the L1 cache while every block of outputs runs over them, where a
 * block running over all inputs would stream the whole input tile (which
 * may not fit in L2) once per block.  Rows go ROW_BLOCK at a time, then two
 * vectors (more sums in flight than one vector's, to hide the latency of
 * each multiply-add), then one vector at a time. */
static void R(affine)(const R(Affine) *f, int64_t m, real *z)
{
    int64_t i0 = 0;
    do {
        int64_t i1 = i0 + rows_from(i0, FN_PRODUCT_CHUNK, f->n_in);
        int64_t t = 0;
        for (; t + ROW_BLOCK <= m; t += ROW_BLOCK)
            R(affine_rows)(f, t, ROW_BLOCK_VECTORS, i0, i1, z);
        for (; t + 2 * LANES <= m; t += 2 * LANES)
            R(affine_rows)(f, t, 2, i0, i1, z);
        for (; t < m; t += LANES)
            R(affine_rows)(f, t, 1, i0, i1, z);
        i0 = i1;
    } while (i0 < f->n_in);
}

/* a_out = f(W^T a_in + b), f the activation `code` (code < 0: none, a_out = z):
 * a_in (fan_in, TILE); W (fan_in, fan_out) row-major; b (fan_out) or NULL;
 * a_out (fan_out, TILE); scratch (2 TILE) for softmax. */
static void R(dense)(const real *a_in, int64_t fan_in, const real *W, const real *b,
                     int64_t fan_out, int64_t m, int64_t code, real *scratch, real *a_out)
{
    R(Affine) f = {a_in, fan_in, fan_out, W, fan_out, 1, b};
    R(affine)(&f, m, a_out);
    if (code >= 0)
        R(activate)(a_out, fan_out, m, code, scratch);
}

/* delta_in = (W delta) * f'(a_in), a_in the output of activation `code`:
 * delta (fan_out, TILE); W (fan_in, fan_out) row-major; a_in, delta_in (fan_in, TILE). */
static void R(back_to_inputs)(const real *delta, int64_t fan_out, const real *W, int64_t fan_in,
                              const real *a_in, int64_t m, int64_t code, int derivative, real *delta_in)
{
    R(Affine) f = {delta, fan_out, fan_in, W, 1, fan_out, NULL};
    R(affine)(&f, m, delta_in);
    for (int64_t k = 0; k < fan_in; k++)
        R(times_slope)(delta_in + k * TILE, a_in + k * TILE, m, code, derivative);
}

/* dW[k+q, j .. j + jv LANES) += sum_{t<m} a_in[k+q, t] rows[t, j ..] for
 * q < kb <= IN_BLOCK, jv <= GRAD_VECTORS: rows is delta transposed, (m, fan_out)
 * row-major, so each step is an outer product of kb broadcast inputs and jv
 * vectors of deltas, summed in registers (kb x jv vectors) over
 * the rows t = 0, 1, ... in order, then added to dW (fan_in, fan_out)
 * row-major.  No horizontal sums: each lane is one weight's own sum. */
static inline __attribute__((always_inline)) void R(gradient_block)(const real *a_in, int64_t k, int kb, const real *rows, int64_t j,
                                     int jv, int64_t fan_out, int64_t m, real *dW)
{
    R(vec) acc[IN_BLOCK][GRAD_VECTORS];
    for (int q = 0; q < kb; q++)
        for (int v = 0; v < jv; v++)
            acc[q][v] = R(splat)((real)0);
    for (int64_t t = 0; t < m; t++) {
        R(vec) d[GRAD_VECTORS];
        for (int v = 0; v < jv; v++)
            d[v] = R(load)(rows + t * fan_out + j + v * LANES);
        for (int q = 0; q < kb; q++) {
            R(vec) a = R(splat)(a_in[(k + q) * TILE + t]);
            for (int v = 0; v < jv; v++)
                acc[q][v] += a * d[v];
        }
    }
    for (int q = 0; q < kb; q++)
        for (int v = 0; v < jv; v++) {
            real *out = dW + (k + q) * fan_out + j + v * LANES;
            R(store)(out, R(load)(out) + acc[q][v]);
        }
}

/* dW += a_in delta^T and db += row sums of delta: a_in (fan_in, TILE);
 * delta (fan_out, TILE); dW (fan_in, fan_out) row-major; db (fan_out) or NULL;
 * rows (TILE, fan_out) work memory.  Outputs in whole vectors go through
 * gradient_block on delta transposed into rows (the transposition is 1/fan_in
 * of the products' work), GRAD_VECTORS vectors at a time, then one.  Inputs
 * are the outer loop: their IN_BLOCK tile rows stay in the L1 cache while
 * every output passes (the transposed delta, TILE x fan_out, is read from
 * L2), where a strip of outputs running over all inputs would stream the
 * whole input tile once per strip.  The last fan_out % LANES outputs (all of
 * a layer narrower than a vector) are dot products over the tile's rows, four
 * inputs at a time against each output's delta (dots). */
static void R(weight_gradient)(const real *a_in, int64_t fan_in, const real *delta, int64_t fan_out,
                               int64_t m, real *dW, real *db, real *rows)
{
    int64_t vectored = fan_out >= LANES ? fan_out - fan_out % LANES : 0;
    if (vectored) {
        R(tile_to_rows)(delta, fan_out, m, rows);
        for (int64_t k = 0; k < fan_in; k += IN_BLOCK) {
            int kb = fan_in - k < IN_BLOCK ? (int)(fan_in - k) : IN_BLOCK;
            int64_t j = 0;
            if (kb == IN_BLOCK) {
                for (; j + GRAD_VECTORS * LANES <= vectored; j += GRAD_VECTORS * LANES)
                    R(gradient_block)(a_in, k, IN_BLOCK, rows, j, GRAD_VECTORS, fan_out, m, dW);
                for (; j < vectored; j += LANES)
                    R(gradient_block)(a_in, k, IN_BLOCK, rows, j, 1, fan_out, m, dW);
            } else {
                for (int q = 0; q < kb; q++)
                    for (j = 0; j < vectored; j += LANES)
                        R(gradient_block)(a_in, k + q, 1, rows, j, 1, fan_out, m, dW);
            }
        }
    }
    int64_t k = 0;
    for (; k + DOT_INPUTS <= fan_in; k += DOT_INPUTS)
        for (int64_t r = vectored; r < fan_out; r++) {
            real sums[DOT_INPUTS];
            R(dots)(a_in + k * TILE, delta + r * TILE, m, sums);
            for (int q = 0; q < DOT_INPUTS; q++)
                dW[(k + q) * fan_out + r] += sums[q];
        }
    for (; k < fan_in; k++)
        for (int64_t r = vectored; r < fan_out; r++)
            dW[k * fan_out + r] += R(dot)(a_in + k * TILE, delta + r * TILE, m);
    if (db)
        for (int64_t r = 0; r < fan_out; r++)
            db[r] += R(sum)(delta + r * TILE, m);
}

/* sum over t < m of w[t] * x[t]^2, in DOT_LANES partial sums added in a fixed
 * order; each term in real, the sums in double. */
static double R(weighted_squares)(const real *restrict x, const real *restrict w, int64_t m)
{
    double lane[DOT_LANES] = {0.0};
    int64_t t = 0;
    for (; t + DOT_LANES <= m; t += DOT_LANES)
        for (int l = 0; l < DOT_LANES; l++)
            lane[l] += (double)(w[t + l] * (x[t + l] * x[t + l]));
    double total = 0.0;
    for (; t < m; t++)
        total += (double)(w[t] * (x[t] * x[t]));
    for (int l = 0; l < DOT_LANES; l++)
        total += lane[l];
    return total;
}

/* Cross-entropy after a softmax on one tile, from the output layer's
 * pre-activations z (width, TILE), never from log(p), so finite for any z:
 * with top, e, total of softmax_parts, lse_t = top_t + log(total_t) (in
 * double) and s_t = sum_j Y[t, j],
 *   delta[j, t] = scale w[t] (p[j, t] s_t - Y[t, j]),  p = e / total;
 * returns sum_t w[t] e_t, e_t = -sum_j Y[t, j] (z[j, t] - lse_t), in double.
 * Y (m, width) row-major; scratch (3 TILE). */
static double R(cross_entropy_delta)(const real *z, const real *Y, const real *w, int64_t width, int64_t m,
                                     real scale, real *scratch, real *delta)
{
    real *top = scratch, *total = scratch + TILE, *target = scratch + 2 * TILE;
    R(softmax_parts)(z, width, m, top, total, delta);
    for (int64_t t = 0; t < m; t++)
        target[t] = (real)0;
    for (int64_t j = 0; j < width; j++)
        for (int64_t t = 0; t < m; t++)
            target[t] += Y[t * width + j];
    for (int64_t j = 0; j < width; j++) {
        real *d = delta + j * TILE;
        for (int64_t t = 0; t < m; t++)
            d[t] = scale * w[t] * (d[t] / total[t] * target[t] - Y[t * width + j]);
    }
    double errors = 0.0;
    for (int64_t t = 0; t < m; t++) {
        double lse = (double)top[t] + log((double)total[t]), row = 0.0;
        for (int64_t j = 0; j < width; j++)
            row += (double)Y[t * width + j] * ((double)z[j * TILE + t] - lse);
        errors -= (double)w[t] * row;
    }
    return errors;
}

/* The output layer on one tile: delta = scale w (a - Y) f'(a) for squared
 * errors, scale w (a - Y) for bce (the sigmoid's f' cancels the loss's
 * 1/(a(1-a)); module.c pairs bce with a sigmoid output), and for
 * cross_entropy (after a softmax) cross_entropy_delta, where a holds the
 * pre-activations z; returns sum_t w[t] e_t with e_t the row's error
 * (network.h), summed in double (the logs too).  a, delta (width, TILE),
 * a the output of activation `code`; Y (m, width) row-major, this tile's
 * rows; w (m); scratch (3 TILE). */
static double R(output_delta)(const real *a, const real *Y, const real *w, int64_t width, int64_t m,
                              int loss, real scale, int64_t code, int derivative, real *scratch, real *delta)
{
    if (loss == FN_LOSS_CROSS_ENTROPY)
        return R(cross_entropy_delta)(a, Y, w, width, m, scale, scratch, delta);
    double errors = 0.0;
    for (int64_t j = 0; j < width; j++) {
        const real *aj = a + j * TILE;
        real *d = delta + j * TILE;
        for (int64_t t = 0; t < m; t++)
            d[t] = aj[t] - Y[t * width + j];
        if (loss == FN_LOSS_BCE) {
            for (int64_t t = 0; t < m; t++) {
                double y = (double)Y[t * width + j], a_t = (double)aj[t];
                errors -= (double)w[t] * (y * clamped_log(a_t) + (1.0 - y) * clamped_log(1.0 - a_t));
            }
        } else {
            errors += R(weighted_squares)(d, w, m);
        }
        for (int64_t t = 0; t < m; t++)
            d[t] *= scale * w[t];
        if (loss != FN_LOSS_BCE)
            R(times_slope)(d, aj, m, code, derivative);
    }
    return errors;
}

/* ---- the network: layout, workspaces and whole tiles ---------------------------- */

/* The layout of one call and its work memory.  Each thread has a workspace:
 * tiles of every layer's activations, A_l at act_start[l] (sizes[l], TILE),
 * SCRATCH_ROWS per-row values at scratch_start (softmax's and cross-entropy's
 * row maxima and sums), and at delta_start two delta tiles and a transposed one
 * (TILE, widest) for weight_gradient.  A parallel wave computes up to `wave`
 * blocks, each into its own partial gradient, summed afterwards in block order. */
typedef struct {
    const int64_t *sizes;
    const int64_t *activations;  /* [L]: the activation code of each weight layer */
    int64_t n_layers;            /* L + 1 */
    int has_bias;
    int64_t n_params;            /* packed length of params and grad */
    int64_t *w_start, *b_start;  /* [L]: where W_l and b_l start in params and grad */
    int64_t *act_start;          /* [L + 1]: where A_l's tile starts in a workspace */
    int64_t scratch_start;       /* (SCRATCH_ROWS, TILE) per-row scratch */
    int64_t delta_start, widest; /* delta tiles: 3 (widest, TILE) from delta_start */
    real *ones;                  /* (TILE) ones: the row weights when there are none */
    int64_t block_rows;          /* rows per block of a batch (the last may be shorter) */
    int threads;                 /* workspaces: min(threads, blocks in the largest batch) */
    uint64_t tile_items;         /* reals per workspace */
    real *tiles;                 /* workspace t at tiles + t * tile_items */
    int64_t wave;                /* blocks per parallel wave (1 when batches are single blocks) */
    int64_t part_stride;         /* reals from one partial gradient to the next: n_params
                                  * rounded up to whole cache lines (FN_CACHE_LINE_BYTES) */
    real *parts;                 /* (wave, part_stride) partial gradients, or NULL for single blocks */
    double *errors;              /* (wave) the wave's blocks' sum_i w_i e_i */
    real *batch_X, *batch_Y, *batch_w; /* gathered batch rows (train_epoch with an order) */
    void *memory;                /* the one allocation behind all of the above */
} R(Net);

/* Carve net's arrays from the arena (measuring only when arena->base is NULL):
 * net->threads workspaces, partial gradients when parts, gather_rows rows of
 * X, Y (and w when gather_weights) for gathered batches. */
static void R(net_carve)(R(Net) *net, Arena *arena, int parts, int64_t gather_rows, int gather_weights)
{
    int64_t L = net->n_layers - 1;
    net->w_start = take(arena, L, sizeof(int64_t));
    net->b_start = take(arena, L, sizeof(int64_t));
    net->act_start = take(arena, L + 1, sizeof(int64_t));
    net->ones = take(arena, TILE, sizeof(real));
    net->batch_X = take(arena, multiply_saturating(gather_rows, net->sizes[0]), sizeof(real));
    net->batch_Y = take(arena, multiply_saturating(gather_rows, net->sizes[L]), sizeof(real));
    net->batch_w = take(arena, gather_weights ? gather_rows : 0, sizeof(real));
    net->errors = take(arena, net->wave, sizeof(double));
    net->tiles = take(arena, multiply_saturating(net->tile_items, net->threads), sizeof(real));
    net->parts = parts ? take(arena, multiply_saturating(net->part_stride, net->wave), sizeof(real)) : NULL;
}

/* Lay out the packed parameters and allocate all work memory, once per call:
 * a workspace per thread that can be busy, i.e. min(threads, blocks of
 * block_rows rows in a batch of max_rows rows); with_deltas for gradients, then partial gradients
 * for waves of as many blocks as FN_PARTIAL_GRADIENT_BYTES allows (at least
 * one per thread, at most all blocks): fewer waves, fewer thread wake-ups;
 * gather_rows > 0 for batch buffers.  Returns 0, or -1 with errno = ENOMEM;
 * errno is unchanged on success. */
static int R(net_open)(R(Net) *net, const int64_t *sizes, const int64_t *activations, int64_t n_layers,
                       int has_bias, int threads, int64_t max_rows, int64_t block_rows, int with_deltas,
                       int64_t gather_rows, int gather_weights)
{
    int64_t blocks = max_rows > block_rows ? (max_rows - 1) / block_rows + 1 : 1;
    net->block_rows = block_rows;
    net->sizes = sizes;
    net->activations = activations;
    net->n_layers = n_layers;
    net->has_bias = has_bias;
    net->threads = threads < 1 ? 1 : blocks < threads ? (int)blocks : threads;
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
    tiles = add_saturating(tiles, SCRATCH_ROWS);
    if (with_deltas)
        tiles = add_saturating(tiles, multiply_saturating(3, (uint64_t)net->widest));
    net->tile_items = multiply_saturating(tiles, TILE);
    int parts = with_deltas && blocks > 1;
    int64_t line = ALIGN / (int64_t)sizeof(real);
    net->part_stride = (net->n_params + line - 1) / line * line;
    int64_t affordable = FN_PARTIAL_GRADIENT_BYTES / (net->part_stride * (int64_t)sizeof(real));
    net->wave = !parts ? 1 : affordable > net->threads ? (affordable < blocks ? affordable : blocks) : net->threads;

    Arena arena = {NULL, 0, 0};
    R(net_carve)(net, &arena, parts, gather_rows, gather_weights);
    int saved_errno = errno;
    char *memory = arena.overflow ? NULL : aligned_alloc(ALIGN, (arena.used + ALIGN - 1) / ALIGN * ALIGN);
    if (!memory) {
        errno = ENOMEM;
        return -1;
    }
    errno = saved_errno;
    net->memory = memory;
    arena = (Arena){memory, 0, 0};
    R(net_carve)(net, &arena, parts, gather_rows, gather_weights);

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
    net->scratch_start = tile;
    net->delta_start = tile + SCRATCH_ROWS * TILE;
    for (int t = 0; t < TILE; t++)
        net->ones[t] = (real)1;
    return 0;
}

/* Free the work memory of net_open. */
static void R(net_close)(R(Net) *net)
{
    free(net->memory);
}

/* Run m rows of X (the tile's first row at X) through every layer: A_l at
 * tiles + act_start[l].  With logits, the last layer keeps its pre-activations
 * Z_{L-1} (its activation is left to the loss: cross_entropy's log-softmax). */
/* Zero rows m .. (m rounded up to a whole vector) - 1 of a (width, TILE)
 * tile: affine computes whole vectors of rows, and these padded rows of its
 * inputs must hold numbers (garbage could be subnormal, and slow).  The
 * padded rows of the later tiles are then computed from numbers too
 * (forward from the biases, backward from zeros). */
static void R(zero_padding)(real *tile, int64_t width, int64_t m)
{
    int64_t padded = (m + LANES - 1) / LANES * LANES;
    for (int64_t k = 0; padded > m && k < width; k++)
        memset(tile + k * TILE + m, 0, (size_t)(padded - m) * sizeof *tile);
}

static void R(forward_tile)(const R(Net) *net, real *tiles, const real *X, int64_t m, const real *params,
                            int logits)
{
    const int64_t *sizes = net->sizes;
    int64_t L = net->n_layers - 1;
    R(rows_to_tile)(X, sizes[0], m, tiles + net->act_start[0]);
    R(zero_padding)(tiles + net->act_start[0], sizes[0], m);
    for (int64_t l = 0; l < L; l++)
        R(dense)(tiles + net->act_start[l], sizes[l], params + net->w_start[l],
                 net->has_bias ? params + net->b_start[l] : NULL, sizes[l + 1], m,
                 logits && l == L - 1 ? -1 : net->activations[l], tiles + net->scratch_start,
                 tiles + net->act_start[l + 1]);
}

/* Back-propagate one tile after forward_tile (with logits for cross_entropy):
 * grad += this tile's dLoss/dparams; returns its sum_t w[t] e_t.  Y, w: the
 * tile's first row; scale = delta_scale(loss, c). */
static double R(backward_tile)(const R(Net) *net, real *tiles, const real *Y, const real *w, int64_t m,
                               const real *params, int derivative, int loss, real scale, real *grad)
{
    const int64_t *sizes = net->sizes;
    int64_t L = net->n_layers - 1;
    real *delta = tiles + net->delta_start, *delta_in = delta + net->widest * TILE;
    real *rows = delta_in + net->widest * TILE; /* (TILE, widest): weight_gradient's transposed delta */
    double errors = R(output_delta)(tiles + net->act_start[L], Y, w, sizes[L], m, loss, scale,
                                    net->activations[L - 1], derivative, tiles + net->scratch_start, delta);
    R(zero_padding)(delta, sizes[L], m);
    for (int64_t l = L - 1; l >= 0; l--) {
        const real *a_in = tiles + net->act_start[l];
        R(weight_gradient)(a_in, sizes[l], delta, sizes[l + 1], m, grad + net->w_start[l],
                           net->has_bias ? grad + net->b_start[l] : NULL, rows);
        if (l > 0) {
            /* a_in = A_l came out of weight layer l - 1's activation. */
            R(back_to_inputs)(delta, sizes[l + 1], params + net->w_start[l], sizes[l], a_in, m,
                              net->activations[l - 1], derivative, delta_in);
            real *swap = delta;
            delta = delta_in;
            delta_in = swap;
        }
    }
    return errors;
}

/* grad += the gradient over n rows (X (n, n_0), Y (n, n_L), w (n) or NULL),
 * tile by tile in a workspace's tiles; returns their sum_i w_i e_i. */
static double R(rows_gradient)(const R(Net) *net, real *tiles, const real *X, const real *Y,
                               const real *w, int64_t n, const real *params, int derivative, int loss,
                               real scale, real *grad)
{
    int64_t n_in = net->sizes[0], n_out = net->sizes[net->n_layers - 1];
    double errors = 0.0;
    for (int64_t first = 0; first < n; first += TILE) {
        int64_t m = rows_from(first, TILE, n);
        R(forward_tile)(net, tiles, X + first * n_in, m, params, loss == FN_LOSS_CROSS_ENTROPY);
        errors += R(backward_tile)(net, tiles, Y + first * n_out, w ? w + first : net->ones, m, params,
                                   derivative, loss, scale, grad);
    }
    return errors;
}

/* W = sum_i w_i (in double) for n rows with weights w, n when w is NULL. */
static double R(weight_total)(const real *w, int64_t n)
{
    if (!w)
        return (double)n;
    double total = 0.0;
    for (int64_t i = 0; i < n; i++)
        total += (double)w[i];
    return total;
}

/* grad[i] += coefficient params[i] over every weight matrix W_l (not the
 * biases): the gradient of the L2 penalty, coefficient = alpha r rounded to
 * real; nothing at all when it is 0 (as the reference, so zeros keep their sign). */
static void R(add_penalty)(const R(Net) *net, real *grad, const real *params, double coefficient)
{
    if (coefficient == 0.0)
        return;
    real k = (real)coefficient;
    for (int64_t l = 0; l + 1 < net->n_layers; l++) {
        int64_t start = net->w_start[l], end = start + net->sizes[l] * net->sizes[l + 1];
        for (int64_t i = start; i < end; i++)
            grad[i] += k * params[i];
    }
}

/* grad = dLoss/dparams over a batch of n rows (X, Y, w as in rows_gradient)
 * with normaliser c; returns its sum_i w_i e_i.  Blocks of net->block_rows rows
 * run in waves of net->wave blocks, handed out one at a time (dynamic
 * schedule: a thread slowed by other processes takes fewer) to up to
 * net->threads threads, each block into its own partial gradient, on the
 * workspace of whichever thread runs it; partials and losses are then
 * added in block order (the partials on the threads, in chunks of
 * FN_PARAMETER_CHUNK parameters), so the result does not depend on the
 * number of threads (nor on the wave size).  One block runs serially, straight into grad. */
static double R(batch_gradient)(R(Net) *net, const real *X, const real *Y, const real *w, int64_t n,
                                const real *params, int derivative, int loss, double c, real *grad)
{
    int64_t n_in = net->sizes[0], n_out = net->sizes[net->n_layers - 1];
    int64_t block_rows = net->block_rows, n_blocks = (n - 1) / block_rows + 1;
    real scale = (real)delta_scale(loss, c);
    if (n_blocks == 1) {
        memset(grad, 0, (size_t)net->n_params * sizeof *grad);
        return R(rows_gradient)(net, net->tiles, X, Y, w, n, params, derivative, loss, scale, grad);
    }
    int64_t n_params = net->n_params, chunks = (n_params + FN_PARAMETER_CHUNK - 1) / FN_PARAMETER_CHUNK;
    double errors = 0.0;
    for (int64_t wave = 0; wave < n_blocks; wave += net->wave) {
        int64_t count = rows_from(wave, net->wave, n_blocks);
        OMP(omp parallel for num_threads(count < net->threads ? (int)count : net->threads) schedule(dynamic))
        for (int64_t s = 0; s < count; s++) {
            real *tiles = net->tiles + (uint64_t)thread_number() * net->tile_items;
            real *part = net->parts + s * net->part_stride;
            int64_t first = (wave + s) * block_rows;
            memset(part, 0, (size_t)net->n_params * sizeof *part);
            net->errors[s] = R(rows_gradient)(net, tiles, X + first * n_in, Y + first * n_out,
                                              w ? w + first : NULL, rows_from(first, block_rows, n), params,
                                              derivative, loss, scale, part);
        }
        /* Each parameter's sum in block order, whichever thread adds its chunk. */
        OMP(omp parallel for num_threads(net->threads) schedule(static) if (chunks > 1))
        for (int64_t chunk = 0; chunk < chunks; chunk++) {
            int64_t start = chunk * FN_PARAMETER_CHUNK, end = start + rows_from(start, FN_PARAMETER_CHUNK, n_params);
            if (wave == 0)
                memset(grad + start, 0, (size_t)(end - start) * sizeof *grad);
            for (int64_t s = 0; s < count; s++) {
                const real *part = net->parts + s * net->part_stride;
                for (int64_t i = start; i < end; i++)
                    grad[i] += part[i];
            }
        }
        for (int64_t s = 0; s < count; s++)
            errors += net->errors[s];
    }
    return errors;
}

/* dst (m, width) = rows order[0 .. m) of src (., width), row-major. */
static void R(gather)(const real *src, int64_t width, const int64_t *order, int64_t m, real *dst)
{
    for (int64_t i = 0; i < m; i++)
        memcpy(dst + i * width, src + order[i] * width, (size_t)width * sizeof *dst);
}

/* One optimizer step on params[start .. stop) from the gradient g, in place,
 * at step count t (Adam's, after this step's increment): each parameter on
 * its own, so ranges may run on separate threads.  Formulas and the layout
 * of hyper and state (2, n_params) in network.h.  hyper is double; its
 * entries and Adam's bias corrections (computed in double) are rounded to
 * real once, and the update runs in real.  No restrict: params, g and state
 * may alias when called directly. */
static void R(update_range)(real *params, const real *g, int64_t n_params, int optimizer, const double *hyper,
                            real *state, int64_t t, int64_t start, int64_t stop)
{
    real lr = (real)hyper[FN_HYPER_LR];
    if (optimizer == FN_OPTIMIZER_SGD) {
        for (int64_t i = start; i < stop; i++)
            params[i] -= lr * g[i];
    } else if (optimizer == FN_OPTIMIZER_MOMENTUM) {
        real mu = (real)hyper[FN_HYPER_MOMENTUM], *v = state;
        for (int64_t i = start; i < stop; i++) {
            v[i] = mu * v[i] + g[i];
            params[i] -= lr * v[i];
        }
    } else {
        real b1 = (real)hyper[FN_HYPER_BETA1], b2 = (real)hyper[FN_HYPER_BETA2];
        real *m = state, *v = state + n_params;
        /* lr_t and eps_t as fastnet.spec.adam_scalars computes them */
        double root = sqrt(1.0 - pow(hyper[FN_HYPER_BETA2], (double)t));
        real lr_t = (real)(hyper[FN_HYPER_LR] * root / (1.0 - pow(hyper[FN_HYPER_BETA1], (double)t)));
        real eps_t = (real)(hyper[FN_HYPER_EPS] * root);
        for (int64_t i = start; i < stop; i++) {
            m[i] = b1 * m[i] + ((real)1 - b1) * g[i];
            v[i] = b2 * v[i] + ((real)1 - b2) * g[i] * g[i];
            params[i] -= lr_t * (m[i] / (SQRT(v[i]) + eps_t));
        }
    }
}

/* One optimizer step on all of params (n_params), Adam's t (*step) counted
 * first, on up to `threads` threads in chunks of FN_PARAMETER_CHUNK. */
static void R(update)(real *params, const real *g, int64_t n_params, int optimizer, const double *hyper,
                      real *state, int64_t *step, int threads)
{
    if (optimizer == FN_OPTIMIZER_ADAM && *step < INT64_MAX) /* saturate rather than overflow */
        *step += 1;
    int64_t t = *step, chunks = (n_params + FN_PARAMETER_CHUNK - 1) / FN_PARAMETER_CHUNK;
    if (threads < 2 || chunks < 2) {
        /* not even a parallel region with a false if clause: it costs a call into
         * libgomp, and a small network's epoch makes one update per few rows */
        R(update_range)(params, g, n_params, optimizer, hyper, state, t, 0, n_params);
        return;
    }
    OMP(omp parallel for num_threads(threads) schedule(static))
    for (int64_t chunk = 0; chunk < chunks; chunk++) {
        int64_t first = chunk * FN_PARAMETER_CHUNK;
        R(update_range)(params, g, n_params, optimizer, hyper, state, t, first,
                        first + rows_from(first, FN_PARAMETER_CHUNK, n_params));
    }
}

/* ---- entry points (contract in network.h) ------------------------------------ */

/* x - x is 0 for a finite x and NaN for NaN or an infinity, and NaN == 0 is
 * false: one subtraction and one comparison per item.  Minimum and maximum
 * are exact whatever the order, so `omp simd` may keep them in vector lanes
 * (without it GCC will not vectorise a floating-point min); chunks run on
 * threads (it is a memory read). */
static int R(finite_range)(const real *x, int64_t n, int threads, double *low, double *high)
{
    int bad = 0;
    real lo = (real)INFINITY, hi = (real)-INFINITY;
    int64_t chunks = (n + FINITE_CHUNK - 1) / FINITE_CHUNK;
    OMP(omp parallel for num_threads(threads) schedule(static) reduction(|:bad) reduction(min:lo)
        reduction(max:hi) if (chunks > 1))
    for (int64_t c = 0; c < chunks; c++) {
        int64_t first = c * FINITE_CHUNK, end = first + rows_from(first, FINITE_CHUNK, n);
        int chunk_bad = 0;
        real chunk_lo = (real)INFINITY, chunk_hi = (real)-INFINITY;
        OMP(omp simd reduction(|:chunk_bad) reduction(min:chunk_lo) reduction(max:chunk_hi))
        for (int64_t i = first; i < end; i++) {
            real v = x[i];
            chunk_bad |= !(v - v == (real)0);
            chunk_lo = v < chunk_lo ? v : chunk_lo;
            chunk_hi = v > chunk_hi ? v : chunk_hi;
        }
        bad |= chunk_bad;
        lo = chunk_lo < lo ? chunk_lo : lo;
        hi = chunk_hi > hi ? chunk_hi : hi;
    }
    *low = (double)lo;
    *high = (double)hi;
    return !bad;
}

static int R(forward)(const real *X, int64_t n, const real *params, const int64_t *sizes,
                  const int64_t *activations, int64_t n_layers, int has_bias, int threads,
                  int64_t block_rows, int64_t first_layer, real *out)
{
    R(Net) net;
    if (R(net_open)(&net, sizes, activations, n_layers, has_bias, threads, n, block_rows, 0, 0, 0) != 0)
        return -1;
    int64_t n_blocks = (n - 1) / block_rows + 1;
    /* Rows are independent: blocks may run on any thread, in any order. */
    OMP(omp parallel for num_threads(net.threads) schedule(dynamic) if (n_blocks > 1))
    for (int64_t block = 0; block < n_blocks; block++) {
        real *tiles = net.tiles + (uint64_t)thread_number() * net.tile_items;
        int64_t start = block * block_rows, end = start + rows_from(start, block_rows, n);
        for (int64_t first = start; first < end; first += TILE) {
            int64_t m = rows_from(first, TILE, end);
            R(forward_tile)(&net, tiles, X + first * sizes[0], m, params, 0);
            real *layer_out = out; /* layer l's (n, sizes[l]) block of out */
            for (int64_t l = first_layer; l < n_layers; l++) {
                R(tile_to_rows)(tiles + net.act_start[l], sizes[l], m, layer_out + first * sizes[l]);
                layer_out += n * sizes[l];
            }
        }
    }
    R(net_close)(&net);
    return 0;
}

static int R(gradient)(const real *X, const real *Y, const real *w, int64_t n, const real *params,
                   const int64_t *sizes, const int64_t *activations, int64_t n_layers, int has_bias,
                   int derivative, int loss, int threads, int64_t block_rows, real *grad, double *errors)
{
    R(Net) net;
    if (R(net_open)(&net, sizes, activations, n_layers, has_bias, threads, n, block_rows, 1, 0, 0) != 0)
        return -1;
    /* c = 1: unnormalised sums, so that callers adding several calls' results
     * (a distributed reduction) normalise once, as a single call would. */
    *errors = R(batch_gradient)(&net, X, Y, w, n, params, derivative, loss, 1.0, grad);
    R(net_close)(&net);
    return 0;
}

static int R(train_epoch)(const real *X, const real *Y, const real *w, const int64_t *order, int64_t n,
                      int64_t batch_size, real *params, const int64_t *sizes, const int64_t *activations,
                      int64_t n_layers, int has_bias, int derivative, int loss, int optimizer,
                      const double *hyper, real *state, int64_t *step, int threads, int64_t block_rows,
                      real *grad, double *errors)
{
    int64_t rows = batch_size < n ? batch_size : n; /* rows in a full batch */
    R(Net) net;
    if (R(net_open)(&net, sizes, activations, n_layers, has_bias, threads, rows, block_rows, 1, order ? rows : 0,
                    order && w) != 0)
        return -1;
    int64_t n_in = sizes[0], n_out = sizes[n_layers - 1];
    double total = 0.0;
    for (int64_t first = 0; first < n; first += rows) {
        int64_t m = rows_from(first, rows, n);
        const real *X_batch = X + first * n_in, *Y_batch = Y + first * n_out;
        const real *w_batch = w ? w + first : NULL;
        if (order) {
            R(gather)(X, n_in, order + first, m, net.batch_X);
            R(gather)(Y, n_out, order + first, m, net.batch_Y);
            if (w)
                R(gather)(w, 1, order + first, m, net.batch_w);
            X_batch = net.batch_X, Y_batch = net.batch_Y, w_batch = w ? net.batch_w : NULL;
        }
        double batch_weight = R(weight_total)(w_batch, m);
        double c = loss_normaliser(loss, batch_weight, n_out);
        total += R(batch_gradient)(&net, X_batch, Y_batch, w_batch, m, params, derivative, loss, c, grad);
        R(add_penalty)(&net, grad, params, hyper[FN_HYPER_ALPHA] * penalty_normaliser(loss, batch_weight));
        R(update)(params, grad, net.n_params, optimizer, hyper, state, step, net.threads);
    }
    R(net_close)(&net);
    *errors = total;
    return 0;
}
