/* "The function cannot tell": functions of every calling-convention shape,
 * compiled with a 5-byte entry site, plus hostile callbacks that clobber
 * every register a C callback may clobber. Built as a shared library by
 * TrampolineTests (clang -O2 -fpatchable-function-entry=5 -shared -fPIC). */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include "livetrace.h"

#define NOINLINE __attribute__((noinline, used))
/* Callbacks and drivers have no site: they are the tracer's side. */
#define NOSITE __attribute__((noinline, used, patchable_function_entry(0, 0)))

NOINLINE long lt_fix_many_ints(long a, long b, long c, long d, long e, long f, long g, long h) {
    return a + 2 * b + 3 * c + 5 * d + 7 * e + 11 * f + 13 * g + 17 * h;
}

NOINLINE double lt_fix_many_doubles(double a, double b, double c, double d, double e,
                                    double f, double g, double h, double i, double j) {
    return a + b * 2 + c * 3 + d * 5 + e * 7 + f * 11 + g * 13 + h * 17 + i * 19 + j * 23;
}

NOINLINE double lt_fix_mixed(int a, double b, long c, float d, char e, double f, short g, float h) {
    return a * b + (double)c * d + e - f * g + h;
}

struct lt_fix_big { long a, b, c, d; };
struct lt_fix_pair { long a, b; };
struct lt_fix_dpair { double a, b; };
struct lt_fix_mix { long a; double b; };

NOINLINE struct lt_fix_big lt_fix_make_big(long x, long y) {
    struct lt_fix_big r = { x, y, x * y, x - y };
    return r;
}
NOINLINE struct lt_fix_pair lt_fix_make_pair(long x) {
    struct lt_fix_pair r = { x * 3, x * 5 };
    return r;
}
NOINLINE struct lt_fix_dpair lt_fix_make_dpair(double x) {
    struct lt_fix_dpair r = { x / 3, x * 7 };
    return r;
}
NOINLINE struct lt_fix_mix lt_fix_make_mix(long x, double y) {
    struct lt_fix_mix r = { x + 1, y * 2 };
    return r;
}
NOINLINE long double lt_fix_long_double(long double x, int n) {
    return x * n / 3.0L;
}
NOINLINE int lt_fix_set_errno(int value) {
    errno = value;
    return -1;
}
/* Reads errno as its caller left it: a callback that changed errno would show. */
NOINLINE int lt_fix_read_errno(void) {
    return errno;
}
NOINLINE double lt_fix_variadic(int count, ...) {
    va_list ap;
    va_start(ap, count);
    double total = 0;
    for (int i = 0; i < count; i++) {
        if (i % 2) total += va_arg(ap, double);
        else total += (double)va_arg(ap, long) * 10;
    }
    va_end(ap);
    return total;
}
NOINLINE float lt_fix_float(float a, float b) { return a * b - 1.5f; }

/* Swift-register probe: an entry site, then `ret`. Whatever reaches it
 * through a trampoline must come back with every register as it left. */
__attribute__((naked, used)) void lt_fix_probe(void) { __asm__("ret"); }
__attribute__((naked, used)) void lt_fix_probe_replacement(void) { __asm__("ret"); }

/* The callbacks. */
uint64_t lt_fix_hostile_calls;
uint64_t lt_fix_second_calls;
static volatile char lt_fix_sink[4096];

NOSITE static void clobber(void) {
    errno = 4242;
    memset((char *)lt_fix_sink, (int)lt_fix_hostile_calls, sizeof lt_fix_sink);
    __asm__ volatile(
        "mov $0x1111, %%rax\n mov $0x2222, %%rcx\n mov $0x3333, %%rdx\n"
        "mov $0x4444, %%rsi\n mov $0x5555, %%rdi\n mov $0x6666, %%r8\n"
        "mov $0x7777, %%r9\n mov $0x8888, %%r10\n mov $0x9999, %%r11\n"
        "pcmpeqd %%xmm0, %%xmm0\n pcmpeqd %%xmm1, %%xmm1\n pcmpeqd %%xmm2, %%xmm2\n"
        "pcmpeqd %%xmm3, %%xmm3\n pcmpeqd %%xmm4, %%xmm4\n pcmpeqd %%xmm5, %%xmm5\n"
        "pcmpeqd %%xmm6, %%xmm6\n pcmpeqd %%xmm7, %%xmm7\n"
        ::: "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
            "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "memory");
}

NOSITE void lt_fix_hostile_callback(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent_ip; (void)ops; (void)regs;
    __atomic_fetch_add(&lt_fix_hostile_calls, 1, __ATOMIC_RELAXED);
    clobber();
}

NOSITE void lt_fix_second_callback(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent_ip; (void)ops; (void)regs;
    __atomic_fetch_add(&lt_fix_second_calls, 1, __ATOMIC_RELAXED);
    clobber();
}

/* Calls a traced function from inside a callback: the recursion guard. */
NOSITE void lt_fix_recursive_callback(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent_ip; (void)ops; (void)regs;
    __atomic_fetch_add(&lt_fix_hostile_calls, 1, __ATOMIC_RELAXED);
    float (*volatile traced)(float, float) = lt_fix_float;
    volatile float result = traced(1, 2);
    (void)result;
}

/* Calls every function above through volatile pointers and writes the
 * results as bytes: traced and untraced runs must be byte-identical. */
struct lt_fix_results {
    long many_ints;
    double many_doubles, mixed;
    struct lt_fix_big big;
    struct lt_fix_pair pair;
    struct lt_fix_dpair dpair;
    struct lt_fix_mix mix;
    long double ld;
    int set_errno_result, errno_after_set, errno_seen_at_entry, pad;
    double variadic;
    float flt;
};

NOSITE unsigned long lt_fix_results_size(void) { return sizeof(struct lt_fix_results); }

NOSITE void lt_fix_run_all(struct lt_fix_results *out, long seed) {
    memset(out, 0, sizeof *out);
    long (*volatile ints)(long, long, long, long, long, long, long, long) = lt_fix_many_ints;
    double (*volatile dbls)(double, double, double, double, double, double, double, double, double, double) = lt_fix_many_doubles;
    double (*volatile mixed)(int, double, long, float, char, double, short, float) = lt_fix_mixed;
    struct lt_fix_big (*volatile big)(long, long) = lt_fix_make_big;
    struct lt_fix_pair (*volatile pair)(long) = lt_fix_make_pair;
    struct lt_fix_dpair (*volatile dpair)(double) = lt_fix_make_dpair;
    struct lt_fix_mix (*volatile mix)(long, double) = lt_fix_make_mix;
    long double (*volatile ld)(long double, int) = lt_fix_long_double;
    int (*volatile set_errno)(int) = lt_fix_set_errno;
    int (*volatile read_errno)(void) = lt_fix_read_errno;
    double (*volatile variadic)(int, ...) = lt_fix_variadic;
    float (*volatile flt)(float, float) = lt_fix_float;
    out->many_ints = ints(seed, seed + 1, -seed, 4, 5, 6, seed * 7, 8);
    out->many_doubles = dbls(seed * 0.5, 1.25, 2.5, 3.75, 5, 6.25, 7.5, 8.75, 10, seed * 0.125);
    out->mixed = mixed((int)seed, 2.5, -seed, 1.5f, 'x', 0.25, -7, 3.5f);
    out->big = big(seed, 3);
    out->pair = pair(seed);
    out->dpair = dpair(seed * 1.5);
    out->mix = mix(seed, seed * 0.75);
    out->ld = ld((long double)seed / 7.0L, 11);
    out->set_errno_result = set_errno((int)seed + 100);
    out->errno_after_set = errno;
    errno = (int)seed + 7;
    out->errno_seen_at_entry = read_errno();
    out->variadic = variadic(5, seed, 1.5, 2L, 2.5, seed * 3);
    out->flt = flt(seed * 0.5f, 3.0f);
}
