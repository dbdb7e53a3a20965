/* Function-graph fixture: functions with known call trees, loaded into the
 * test process and traced there (Tests/FunctionGraphTests). Compiled with
 * clang -O0 -fpatchable-function-entry=5 (every call stays a call; the tail
 * call is forced with musttail). Functions named g_* are traced; the
 * expected entry/exit sequence of each scenario is written in the test. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOSITE __attribute__((patchable_function_entry(0, 0)))

int g_leaf(int x) { return x * 2; }
int g_mid(int x) { return g_leaf(x) + g_leaf(x + 1); }
int g_top(int x) { return g_mid(x) + 1; }
int g_fib(int n) { return n < 2 ? n : g_fib(n - 1) + g_fib(n - 2); }

/* A tail call: g_tail's frame is replaced by g_leaf's, which returns to
 * g_tail's caller through g_tail's hooked slot. */
int g_tail(int x) { __attribute__((musttail)) return g_leaf(x + 1); }
int g_tail_host(int x) { return g_tail(x) + 1; }

/* ---- return registers ---------------------------------------------------- */
struct g_big { long a, b, c, d; };          /* memory (rdi in, rax out) */
struct g_mixed { long a; double b; };        /* rax + xmm0 */
struct g_two_doubles { double a, b; };       /* xmm0 + xmm1 */

long double g_long_double(long double x) { return x * 3.0L + 0.25L; }
_Complex long double g_complex_long_double(long double x) { return x + 2.0Li * x; }
double g_double(double x) { return x / 4.0; }
float g_float(float x) { return x * 1.5f; }
__int128 g_int128(long x) { return ((__int128)x << 64) | (unsigned long)(x + 7); }
struct g_big g_struct_big(long x) { struct g_big r = { x, x + 1, x + 2, x + 3 }; return r; }
struct g_mixed g_struct_mixed(long x) { struct g_mixed r = { x, (double)x / 8.0 }; return r; }
struct g_two_doubles g_struct_doubles(double x) { struct g_two_doubles r = { x, -x }; return r; }
int g_set_errno(int value) { errno = value; return -1; }

/* Compares every result with the one computed here without a call.
 * Returns 0, or the bit of the first check that failed. */
NOSITE int g_check_returns(void) {
    volatile long double ld_in = 1.5L;
    if (g_long_double(ld_in) != 1.5L * 3.0L + 0.25L) return 1 << 0;
    _Complex long double c = g_complex_long_double(ld_in);
    if (__real__ c != 1.5L || __imag__ c != 3.0L) return 1 << 1;
    if (g_double(10.0) != 2.5) return 1 << 2;
    if (g_float(2.0f) != 3.0f) return 1 << 3;
    __int128 wide = g_int128(5);
    if ((long)(wide >> 64) != 5 || (unsigned long)wide != 12) return 1 << 4;
    struct g_big big = g_struct_big(40);
    if (big.a != 40 || big.b != 41 || big.c != 42 || big.d != 43) return 1 << 5;
    struct g_mixed mixed = g_struct_mixed(16);
    if (mixed.a != 16 || mixed.b != 2.0) return 1 << 6;
    struct g_two_doubles two = g_struct_doubles(0.5);
    if (two.a != 0.5 || two.b != -0.5) return 1 << 7;
    errno = 0;
    if (g_set_errno(EDOM) != -1 || errno != EDOM) return 1 << 8;
    /* The x87 stack is empty again: eight pushes fit without a fault. */
    unsigned short status;
    __asm__ volatile("fnstsw %0" : "=m"(status));
    if (((status >> 11) & 7) != 0) return 1 << 9;
    return 0;
}

/* ---- longjmp ------------------------------------------------------------- */
static jmp_buf g_jump_buffer;
void g_jumper(int x) { g_leaf(x); longjmp(g_jump_buffer, 1); }
void g_deep2(int x) { g_jumper(x); }
void g_deep1(int x) { g_deep2(x); }
int g_longjmp_host(void) {
    if (setjmp(g_jump_buffer) == 0) g_deep1(1);
    return g_leaf(5);
}

/* ---- signal handlers ------------------------------------------------------ */
static sigjmp_buf g_signal_jump_buffer;
void g_jumping_handler(int signal) { (void)signal; g_leaf(3); siglongjmp(g_signal_jump_buffer, 1); }
void g_returning_handler(int signal) { (void)signal; g_leaf(4); }
void g_raise_deep(int signal) { raise(signal); }

NOSITE static void g_install(int signal, void (*handler)(int), int flags) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = flags;
    sigemptyset(&action.sa_mask);
    sigaction(signal, &action, NULL);
}

/* The handler calls a traced function and returns normally. */
int g_signal_host(void) {
    g_install(SIGUSR2, g_returning_handler, 0);
    g_raise_deep(SIGUSR2);
    g_install(SIGUSR2, SIG_DFL, 0);
    return g_leaf(6);
}

/* ---- a handler that interrupts LiveTrace's own code ------------------------ */
/* An ops callback on g_ctx_trigger raises SIGUSR1 from inside LiveTrace's
 * callback section: the handler runs in an execution context of its own
 * (lt_context.h), records into its own ring, and either returns or leaves
 * by siglongjmp, abandoning the section it interrupted. */
NOSITE void g_ctx_raise_callback(uintptr_t ip, uintptr_t parent, void *ops, void *regs) {
    (void)ip; (void)parent; (void)ops; (void)regs;
    raise(SIGUSR1);
}
static sigjmp_buf g_ctx_jump_buffer;
static int g_ctx_jump;
void g_ctx_handler(int signal) {
    (void)signal;
    g_leaf(8);
    if (g_ctx_jump) siglongjmp(g_ctx_jump_buffer, 1);
}
int g_ctx_trigger(int x) { return x + 1; }
int g_ctx_host(int jump) {
    g_ctx_jump = jump;
    g_install(SIGUSR1, g_ctx_handler, 0);
    if (sigsetjmp(g_ctx_jump_buffer, 1) == 0) g_ctx_trigger(1);
    int result = g_leaf(9);
    g_install(SIGUSR1, SIG_DFL, 0);
    return result;
}

/* The handler leaves by siglongjmp: its frames and the interrupted ones die. */
int g_siglongjmp_host(void) {
    g_install(SIGUSR1, g_jumping_handler, 0);
    if (sigsetjmp(g_signal_jump_buffer, 1) == 0) g_raise_deep(SIGUSR1);
    g_install(SIGUSR1, SIG_DFL, 0);
    return g_leaf(7);
}

/* On an alternate signal stack mapped before the thread's own stack (so,
 * usually, above it): the handler's calls must not pop the thread's frames. */
static void *g_altstack;
static uintptr_t g_altstack_above;
int g_altstack_body(void) {
    stack_t stack = { .ss_sp = g_altstack, .ss_size = 1 << 16, .ss_flags = 0 };
    sigaltstack(&stack, NULL);
    g_install(SIGUSR2, g_returning_handler, SA_ONSTACK);
    int local;
    g_altstack_above = (uintptr_t)g_altstack > (uintptr_t)&local;
    g_raise_deep(SIGUSR2);
    g_install(SIGUSR2, SIG_DFL, 0);
    stack.ss_flags = SS_DISABLE;
    sigaltstack(&stack, NULL);
    return g_leaf(8);
}
NOSITE static void *g_altstack_thread(void *unused) { (void)unused; return (void *)(intptr_t)g_altstack_body(); }
NOSITE int g_altstack_run(int *above) {
    g_altstack = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pthread_t thread;
    void *result;
    pthread_create(&thread, NULL, g_altstack_thread, NULL);
    pthread_join(thread, &result);
    munmap(g_altstack, 1 << 16);
    *above = (int)g_altstack_above;
    return (int)(intptr_t)result;
}

/* ---- threads ------------------------------------------------------------- */
void *g_worker(void *argument) { return (void *)(intptr_t)g_fib((int)(intptr_t)argument); }
/* Runs g_worker(n) on `count` threads; returns the sum of results and their
 * thread ids in `tids`. */
static pid_t g_tids[64];
NOSITE static void *g_worker_start(void *argument) {
    g_tids[(intptr_t)argument >> 8] = gettid();
    return g_worker((void *)((intptr_t)argument & 0xff));
}
NOSITE long g_threads_run(int count, int n, int *tids) {
    pthread_t threads[64];
    long total = 0;
    for (int i = 0; i < count; i++) pthread_create(&threads[i], NULL, g_worker_start, (void *)(((intptr_t)i << 8) | n));
    for (int i = 0; i < count; i++) {
        void *result;
        pthread_join(threads[i], &result);
        total += (long)(intptr_t)result;
        tids[i] = g_tids[i];
    }
    return total;
}

/* ---- pthread_exit -------------------------------------------------------- */
static pid_t g_exit_tid;
static int g_cleanup_ran;
NOSITE static void g_cleanup(void *unused) { (void)unused; g_cleanup_ran = 1; }
void g_exiter2(int x) { g_leaf(x); pthread_exit((void *)(intptr_t)(x + 40)); }
void g_exiter1(int x) {
    pthread_cleanup_push(g_cleanup, NULL);
    g_exiter2(x);
    pthread_cleanup_pop(0);
}
void *g_exit_body(void *unused) { (void)unused; g_exit_tid = gettid(); g_exiter1(2); return NULL; }
/* Returns the exit value (42), the cleanup flag and the thread id. */
NOSITE long g_pthread_exit_run(int *cleanup_ran, int *tid) {
    pthread_t thread;
    void *result;
    pthread_create(&thread, NULL, g_exit_body, NULL);
    pthread_join(thread, &result);
    *cleanup_ran = g_cleanup_ran;
    *tid = g_exit_tid;
    return (long)(intptr_t)result;
}

/* ---- fork ------------------------------------------------------------------ */
void g_child_work(int x) { g_leaf(x); }
/* Returns the child's exit status (0 when it ran) and its pid. */
int g_fork_host(int *child_pid) {
    pid_t pid = fork();
    g_leaf(pid == 0);
    if (pid == 0) {
        g_child_work(9);
        _exit(0);
    }
    int status = -1;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    *child_pid = pid;
    return status;
}

/* ---- signals at any instruction ----------------------------------------- */
/* One thread makes `calls` calls of g_top while another sends it SIGUSR2
 * continuously; the handler calls traced functions. Signals land anywhere:
 * in the entry trampoline, in the middle of a shadow-stack push or pop, in
 * the return trampoline. Returns the number of handler runs (pending
 * signals of one number coalesce: fewer than were sent); *sum_ok is 1 when
 * every g_top result was right. */
static volatile int g_stress_stop;
static volatile long g_stress_handled;
static pid_t g_stress_tid;
static volatile int g_stress_started;
void g_stress_handler(int signal) { (void)signal; g_stress_handled++; g_leaf(1); }
NOSITE static void *g_stress_body(void *calls) {
    g_stress_tid = gettid();
    g_stress_started = 1;
    long bad = 0;
    for (long i = 0; i < (long)(intptr_t)calls; i++)
        if (g_top((int)(i & 1023)) != 4 * (int)(i & 1023) + 3) bad++;
    g_stress_stop = 1;
    return (void *)(intptr_t)bad;
}
NOSITE long g_stress_run(long calls, int *sum_ok, int *tid) {
    g_stress_stop = 0;
    g_stress_started = 0;
    g_stress_handled = 0;
    g_install(SIGUSR2, g_stress_handler, SA_RESTART);
    pthread_t thread;
    pthread_create(&thread, NULL, g_stress_body, (void *)(intptr_t)calls);
    while (!g_stress_started) sched_yield();
    for (long n = 0; !g_stress_stop; n++) {
        pthread_kill(thread, SIGUSR2);
        for (volatile int spin = 0; spin < 200 + (int)(n % 97) * 7; spin++) {}
    }
    void *bad;
    pthread_join(thread, &bad);
    g_install(SIGUSR2, SIG_DFL, 0);
    *sum_ok = bad == NULL;
    *tid = g_stress_tid;
    return g_stress_handled;
}

/* ---- backtraces through hooked frames -------------------------------------- */
#include <execinfo.h>
/* backtrace() from inside g_backtrace_inner, called by g_backtrace_outer:
 * returns the number of frames and the last one in *last. */
static void *g_frames[64];
int g_backtrace_inner(uintptr_t *last) {
    int count = backtrace(g_frames, 64);
    *last = count > 0 ? (uintptr_t)g_frames[count - 1] : 0;
    return count;
}
int g_backtrace_outer(uintptr_t *last) { return g_backtrace_inner(last); }

/* ---- exec ------------------------------------------------------------------ */
/* A failed execve returns into hooked frames; a successful one (in a forked
 * child) replaces the image under them. Returns the child's exit status
 * (the new image's: 0) or -errno of the failed exec in *failed. */
int g_exec_host(int *failed) {
    char *const argv[] = {"/bin/true", NULL};
    char *const envp[] = {NULL};
    *failed = execve("/nonexistent/livetrace-graph", argv, envp) == -1 ? -errno : 0;
    g_leaf(10);
    pid_t pid = fork();
    if (pid == 0) {
        g_leaf(11);
        execve("/bin/true", argv, envp);
        _exit(127);
    }
    int status = -1;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return status;
}

/* ---- deeper than the shadow stack ---------------------------------------- */
long g_recurse(long n) { return n == 0 ? 0 : 1 + g_recurse(n - 1); }

/* The real _Unwind_Backtrace of libgcc_s, reached through its own handle
 * (as glibc's backtrace does), so no interposer restores the stack. */
#include <dlfcn.h>
#include <unwind.h>
struct g_walk { int count; uintptr_t last; };
NOSITE static _Unwind_Reason_Code g_walk_frame(struct _Unwind_Context *context, void *argument) {
    struct g_walk *walk = argument;
    uintptr_t ip = _Unwind_GetIP(context);
    if (ip == 0) return _URC_END_OF_STACK;
    walk->last = ip;
    walk->count++;
    return walk->count < 64 ? _URC_NO_REASON : _URC_END_OF_STACK;
}
int g_backtrace_raw_inner(uintptr_t *last) {
    void *libgcc = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (libgcc == NULL) libgcc = dlopen("libgcc_s.so.1", RTLD_NOW);
    _Unwind_Reason_Code (*walk_stack)(_Unwind_Trace_Fn, void *) =
        (_Unwind_Reason_Code (*)(_Unwind_Trace_Fn, void *))dlsym(libgcc, "_Unwind_Backtrace");
    struct g_walk walk = {0, 0};
    walk_stack(g_walk_frame, &walk);
    *last = walk.last;
    return walk.count;
}
int g_backtrace_raw_outer(uintptr_t *last) { return g_backtrace_raw_inner(last); }

/* ---- pthread_cancel ---------------------------------------------------------- */
static pid_t g_cancel_tid;
static volatile int g_cancel_waiting;
void g_cancel_wait(int x) { (void)x; g_cancel_waiting = 1; for (;;) pause(); }
void *g_cancel_body(void *unused) { (void)unused; g_cancel_tid = gettid(); g_cancel_wait(1); return NULL; }
/* Cancels a thread blocked in pause() under two hooked frames; returns 1
 * when it ended as cancelled, its thread id in *tid. */
NOSITE int g_cancel_run(int *tid) {
    pthread_t thread;
    g_cancel_waiting = 0;
    pthread_create(&thread, NULL, g_cancel_body, NULL);
    while (!g_cancel_waiting) sched_yield();
    pthread_cancel(thread);
    void *result;
    pthread_join(thread, &result);
    *tid = g_cancel_tid;
    return result == PTHREAD_CANCELED;
}
