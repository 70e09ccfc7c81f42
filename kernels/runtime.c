/* What exists once per process, whatever the SIMD variant: the choice of that
 * variant (network.h: fn_simd_select, fn_kernels) and the thread count
 * (fn_threads).  Compiled for the baseline target only, so it runs on any
 * CPU of the architecture and may decide, before any variant runs, which
 * variants this CPU can execute.
 *
 * CMakeLists.txt defines FN_HAVE_AVX2 / FN_HAVE_AVX512 when it compiled those
 * variants of network.c (x86-64 only), and FN_MARCH_NATIVE when the single
 * variant was built with -march=native.
 */
#include "network.h"

#include <stdio.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#endif

/* ---- SIMD variants -------------------------------------------------------------- */

extern const FnKernels fn_kernels_baseline;
#ifdef FN_HAVE_AVX2
extern const FnKernels fn_kernels_avx2;
#endif
#ifdef FN_HAVE_AVX512
extern const FnKernels fn_kernels_avx512;
#endif

static int always(void)
{
    return 1;
}

#if defined(FN_HAVE_AVX2) || defined(FN_HAVE_AVX512)
/* __builtin_cpu_supports also checks that the OS saves the vector registers
 * (XGETBV), so a feature reported here is one a thread can use. */
static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

#ifdef FN_HAVE_AVX512
static int cpu_has_avx512(void)
{
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}
#endif

typedef struct {
    const char *name;        /* FASTNET_SIMD's value for it */
    const char *needs;       /* the instructions it needs, for error messages */
    const FnKernels *kernels;
    int (*runs)(void);       /* 1 when this CPU has those instructions */
} Variant;

/* In order of preference, worst first: the default is the last one that runs. */
static const Variant VARIANTS[] = {
#ifdef FN_MARCH_NATIVE
    {"native", "the building machine's instructions (-march=native)", &fn_kernels_baseline, always},
#else
    {"baseline", "the architecture's baseline", &fn_kernels_baseline, always},
#endif
#ifdef FN_HAVE_AVX2
    {"avx2", "AVX2 and FMA", &fn_kernels_avx2, cpu_has_avx2},
#endif
#ifdef FN_HAVE_AVX512
    {"avx512", "AVX-512 (F, DQ, BW, VL), AVX2 and FMA", &fn_kernels_avx512, cpu_has_avx512},
#endif
};
enum { N_VARIANTS = sizeof VARIANTS / sizeof VARIANTS[0] };

static const Variant *running = &VARIANTS[0];

/* "a, b, c": the names of the variants that run here (runnable) or of all (!runnable). */
static void list_names(int runnable, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < N_VARIANTS; i++) {
        if (runnable && !VARIANTS[i].runs())
            continue;
        int wrote = snprintf(out + used, size - used, "%s%s", used ? ", " : "", VARIANTS[i].name);
        if (wrote < 0 || (size_t)wrote >= size - used)
            return;
        used += (size_t)wrote;
    }
}

int fn_simd_select(const char *request, char *error, size_t size)
{
    char names[128];
    if (!request || !*request) {
        running = &VARIANTS[0]; /* baseline runs everywhere */
        for (int i = N_VARIANTS - 1; i > 0; i--)
            if (VARIANTS[i].runs()) {
                running = &VARIANTS[i];
                break;
            }
        return 0;
    }
    for (int i = 0; i < N_VARIANTS; i++) {
        if (strcmp(request, VARIANTS[i].name) != 0)
            continue;
        if (!VARIANTS[i].runs()) {
            list_names(1, names, sizeof names);
            snprintf(error, size, "FASTNET_SIMD=%s: the %s kernels need %s, which this CPU lacks; it runs: %s",
                     request, request, VARIANTS[i].needs, names);
            return -1;
        }
        running = &VARIANTS[i];
        return 0;
    }
    list_names(0, names, sizeof names);
    snprintf(error, size, "FASTNET_SIMD=%s: no such kernel variant in this build; expected one of: %s "
             "(or unset, for the best this CPU runs)", request, names);
    return -1;
}

const FnKernels *fn_kernels(void)
{
    return running->kernels;
}

const char *fn_simd_name(void)
{
    return running->name;
}

int fn_simd_count(void)
{
    return N_VARIANTS;
}

const char *fn_simd_variant(int i, int *runs)
{
    *runs = VARIANTS[i].runs();
    return VARIANTS[i].name;
}

/* ---- threads ------------------------------------------------------------------- */

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
