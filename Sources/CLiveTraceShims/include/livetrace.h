/* livetrace.h — the public C API of LiveTrace: the ftrace_ops model in user
 * space. A program attaches callbacks ("ops") to its own functions, chosen by
 * glob, while it runs; the runtime patches each function's entry site into a
 * jump to a trampoline in JIT memory (docs/ARCHITECTURE.md, "Trampolines and ops").
 *
 * Compile and link in one line (liblivetrace.so is self-contained: the Swift
 * standard library is linked into it):
 *
 *     cc -fpatchable-function-entry=5 prog.c -I<repo>/include \
 *        -L<dir of liblivetrace.so> -llivetrace -Wl,-rpath,<same dir> -o prog
 *
 * Functions with a site: compile them with clang -fpatchable-function-entry=5,
 * gcc -fpatchable-function-entry=5, or gcc -pg -mfentry -mnop-mcount
 * -mrecord-mcount -fno-pie -no-pie. Functions without one are not traced.
 *
 * Errors: every int-returning function returns 0 or a negative LT_E* code;
 * lt_strerror() names it. No function of this API ever kills the program.
 *
 * Threading rules:
 *   - Every function may be called from any thread, concurrently. Changes are
 *     serialized by one internal lock; registrations are applied to all
 *     threads at once through the text-poke protocol.
 *   - Between the return of lt_ops_register() and the start of
 *     lt_ops_unregister(), the callback is called exactly once for every call
 *     of every function in its filter, on the calling thread, before the
 *     function body runs.
 *   - When lt_ops_unregister() returns 0, no thread is inside the callback
 *     nor will enter it again (quiescence), so `data` may be freed.
 *   - A callback may call traced functions: a guard skips trampolines nested
 *     in the same execution context (their calls are not delivered) and
 *     counts them (lt_skipped_calls()). A signal handler that interrupts a
 *     callback (or any other LiveTrace code) is a context of its own: its
 *     calls are delivered like any other, to a nesting of three handlers
 *     that interrupt LiveTrace code; deeper ones are skipped and counted.
 *     (Handlers installed with raw rt_sigaction system calls, which
 *     LiveTrace cannot see, are the exception: their calls that interrupt
 *     LiveTrace code are skipped and counted.)
 *   - A callback must not call lt_ops_register/unregister/destroy
 *     (-LT_EDEADLK): they wait for every thread to leave the callbacks.
 *
 * Small leaf callbacks get a specialized path. When an ops has no flags and
 * its callback is a small leaf function — at most 64 instructions, no call,
 * no loop (no backward branch), every path ending in `ret`, no system call
 * or trap, no SSE/AVX/x87, no fs/gs (thread-local) access, no string
 * instruction or one-operand mul/div, and it does not read `regs` — the
 * runtime reads its machine code once and gives each of its functions a
 * stub that saves only the registers the callback uses and calls it
 * directly (tramp-cost.sh: +1.6 ns a call instead of +6 ns). Such
 * a callback receives ip, parent_ip and ops as usual, but `regs` is
 * undefined, it cannot change errno, and it runs even when the call comes
 * from inside another callback (it cannot recurse). Everything else above
 * holds unchanged, unregister's guarantee included. LIVETRACE_NO_LEAF=1 in
 * the environment (read once) turns the path off.
 */
#ifndef LIVETRACE_H
#define LIVETRACE_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lt_ops lt_ops;
typedef struct lt_regs lt_regs;

/* The callback. `ip` is the address of the function's site (the entry of the
 * function, after endbr64 when present); `parent_ip` is the function's return
 * address (in its caller); `ops` is the registered ops; `regs` the registers
 * saved at the function's entry. Writing an argument register in `regs`
 * changes what the function receives. */
typedef void (*lt_func)(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs);

/* The registers at the function's entry, as the trampoline saved them. The
 * layout is fixed (the trampoline assembly writes it); sizeof == 256. */
struct lt_regs {
    /* Argument registers of the C and Swift conventions (restored from here). */
    uint64_t rdi, rsi, rdx, rcx, r8, r9;
    uint64_t rax;           /* C: number of vector registers of a variadic call */
    uint64_t r10;           /* static chain */
    /* Swift error, self and async context: read-only (callee-saved). */
    uint64_t r12, r13, r14;
    uint64_t rsp;           /* stack pointer at entry: points at parent_ip */
    uint64_t resume;        /* where the function continues; see lt_regs_set_resume */
    const lt_ops *current;  /* internal: the ops being called */
    uint32_t saved_errno;   /* internal: errno at entry, restored after the callbacks */
    uint32_t reserved0;
    uint64_t reserved1;
    uint8_t  xmm[8][16];    /* xmm0..xmm7 (restored from here) */
};

/* Flags of lt_ops_create. */
enum {
    /* The callback reads all of `regs`. Without this flag (and without
     * LT_OPS_MODIFY_RESUME) the trampoline takes a leaner path: `regs` holds
     * the argument registers, rsp and xmm0-7 (still restored from there), but
     * r12, r13, r14 and resume are left undefined. */
    LT_OPS_SAVE_REGS = 1u << 0,
    /* The callback may call lt_regs_set_resume (live patching). At most one
     * such ops per function: a second one gets -LT_EBUSY at register. */
    LT_OPS_MODIFY_RESUME = 1u << 1,
};

/* Error codes (returned negated). */
enum {
    LT_OK = 0,
    LT_EINVAL = 1,      /* a NULL or malformed argument, unknown flag */
    LT_ENOENT = 2,      /* the filter matches no function with a usable site */
    LT_EBUSY = 3,       /* another MODIFY_RESUME ops owns one of the functions */
    LT_EALREADY = 4,    /* registering a registered ops */
    LT_ENOTREG = 5,     /* unregistering an ops that is not registered */
    LT_ENOMEM = 6,      /* no JIT memory within +-2 GiB of a site, or malloc failed */
    LT_EPATCH = 7,      /* the text poke refused or failed (site bytes not as expected...) */
    LT_EPERM = 8,       /* lt_regs_set_resume without LT_OPS_MODIFY_RESUME */
    LT_ETIMEDOUT = 9,   /* quiescence not reached in time: the ops is unregistered,
                           but its callback may still be running; keep `data` alive */
    LT_EDEADLK = 10,    /* called from inside a callback */
    LT_ESITES = 11,     /* the sites of the process could not be read */
    LT_ETRACEDIR = 12,  /* lt_trace_*: the trace directory could not be created
                           or written; errno holds the system's reason */
};

/* Creates an unregistered ops with an empty filter. NULL when func is NULL,
 * flags has unknown bits, or memory is exhausted. */
lt_ops *lt_ops_create(lt_func func, void *data, unsigned flags);
/* The `data` given to lt_ops_create. */
void *lt_ops_data(const lt_ops *ops);
/* Adds a glob (`*`, `?`, `[...]`) over function names — raw symbols and
 * demangled Swift/C++ names — or an address ("0x401136") to the filter. An
 * empty filter means every function with a site (as ftrace). On a registered
 * ops the change is applied immediately. */
int lt_ops_set_filter(lt_ops *ops, const char *glob);
/* Adds a glob or address to the exclusions (they win over the filter). */
int lt_ops_set_notrace(lt_ops *ops, const char *glob);
/* Patches every function of the filter to call the callback. */
int lt_ops_register(lt_ops *ops);
/* Unpatches, then waits until no thread is inside the callback. */
int lt_ops_unregister(lt_ops *ops);
/* Unregisters if needed and frees the ops (after quiescence). */
void lt_ops_destroy(lt_ops *ops);
/* From a LT_OPS_MODIFY_RESUME callback: the function's call continues at
 * `address` (a replacement function with the same signature) instead of the
 * original body; the replacement returns to the original caller. */
int lt_regs_set_resume(lt_regs *regs, uintptr_t address);
/* A static English message for an error code (negative or positive). */
const char *lt_strerror(int error);

/* --- functions without sites (full-dynamic patching) --- */
/* Opt-in: when `on` is nonzero, filters registered from now on also reach
 * functions that have no compiler-made site (Swift code, any library built
 * without the flags), by relocating their prologues; a function that cannot
 * be relocated is never written. Returns the previous setting (0 or 1). */
int lt_include_dynamic(int on);
/* Gives their original bytes back to the relocated functions no ops uses,
 * and frees their stubs after quiescence. 0 or a negative LT_E* code. */
int lt_restore_relocated(void);

/* --- more --- */
/* Calls skipped by the recursion guard, summed over all threads. */
uint64_t lt_skipped_calls(void);
/* Replaces `function` (a name or glob matching exactly one function) by
 * `replacement`: a MODIFY_RESUME ops managed by the runtime. Returns the ops
 * (to lt_ops_destroy to undo) or NULL, with the error in *error. */
lt_ops *lt_replace_function(const char *function, uintptr_t replacement, int *error);

/* ------------------------------------------------------------------------
 * Recording from inside
 *
 * The program records the function graph of its own functions (entry and
 * exit of every call, every thread, with TSC timestamps) into a trace
 * directory that `livetrace report -d DIR` reads, exactly as
 * `livetrace record` would have recorded it from outside:
 *
 *     if (lt_trace_start("trace.data", "parse_*;eval", NULL, 0) != 0) ...
 *     run_the_work();
 *     struct lt_trace_summary summary;
 *     if (lt_trace_stop(&summary) == 0)
 *         printf("%llu events, %llu lost\n", (unsigned long long)summary.events,
 *                (unsigned long long)summary.lost);
 *
 * Threading rules:
 *   - One recording per process at a time. lt_trace_start and lt_trace_stop
 *     may be called from any thread (one internal lock orders them), never
 *     from an lt_ops callback (-LT_EDEADLK) nor from a signal handler.
 *   - Every call of a chosen function, on any thread, that starts after
 *     lt_trace_start returns 0 is recorded with its entry; its exit is
 *     recorded when it returns before lt_trace_stop begins (or is left by
 *     longjmp or an exception: the exit is then flagged unwound). Calls
 *     still running when lt_trace_stop is called — for instance the function
 *     calling it — keep their entry only: the report counts them unfinished.
 *   - The recording runs a drain thread of its own (named livetrace-drain;
 *     every asynchronous signal is blocked in it, so the program's signals
 *     still go to the program's threads). It writes to the directory while
 *     the program runs; a thread whose buffer is full waits for it, briefly
 *     and boundedly, then counts what it could not store: losses are in the
 *     trace (info.json "lost_events", and the summary below), never silent.
 *   - A program that exits (exit() or a return from main) while recording
 *     has the recording stopped and the directory completed at exit. A
 *     process killed by a signal (or ending in _exit) leaves a readable
 *     trace of what the drain had moved, info.json "complete": false, and
 *     DIR/rings, which holds every event published after that.
 *   - After fork, the recording belongs to the parent: lt_trace_stop in the
 *     child returns -LT_ENOTREG (the child's own calls are recorded in the
 *     parent's trace, in streams of the child's pid, until the parent stops).
 *
 * Errors (negated): LT_EINVAL (NULL or empty directory, an empty item or a
 * malformed glob in a list, max_depth above LT_TRACE_MAX_DEPTH), LT_ENOENT
 * (the filter matches no function with a usable site), LT_EALREADY (a
 * recording is already running in this process: lt_trace_start twice, the
 * Swift GraphRecording, or `livetrace record` / the LD_PRELOAD shim),
 * LT_ENOTREG (lt_trace_stop with nothing started by lt_trace_start in this
 * process), LT_ETRACEDIR (errno set; at stop, e.g. a full disk: DIR/rings
 * is kept with the events not yet written), and the patching errors of
 * lt_ops_register (LT_ENOMEM, LT_EPATCH, LT_ESITES, LT_ETIMEDOUT). When
 * lt_trace_start fails, nothing stays patched or running.
 * ------------------------------------------------------------------------ */

/* The deepest max_depth: a thread's shadow stack holds this many frames. */
#define LT_TRACE_MAX_DEPTH 4096u

/* What a recording holds, as lt_trace_stop completed it. */
struct lt_trace_summary {
    uint64_t threads;     /* event streams (one per thread that made a traced call) */
    uint64_t events;      /* entry and exit events stored */
    uint64_t lost;        /* events that could not be stored (counted in the trace) */
    uint64_t functions;   /* distinct functions entered */
    uint64_t bytes;       /* size of the event streams */
};

/* Starts recording into `directory` the calls of the functions matching
 * `filter` minus those matching `notrace`.
 *   - filter, notrace: `;`-separated lists of globs or addresses, as
 *     lt_ops_set_filter takes them ("fib;parse_*"; `;` as in the shim's
 *     LIVETRACE_FILTER, since demangled names contain commas; spaces around
 *     items are ignored). NULL or "" means every function with a site
 *     (filter) and none (notrace).
 *   - max_depth: calls nested deeper are followed but not recorded
 *     (0: LT_TRACE_MAX_DEPTH).
 *   - directory: created if missing; an older trace there is renamed
 *     DIR.old (replacing any DIR.old); a directory holding anything else is
 *     refused (LT_ETRACEDIR, errno ENOTEMPTY). When the start fails, what it
 *     created is removed.
 * Returns 0 or a negative LT_E* code. */
int lt_trace_start(const char *directory, const char *filter, const char *notrace, unsigned max_depth);

/* Unpatches the functions, stores the last events and completes the trace
 * directory. Fills `summary` when it is not NULL (zeroes on failure).
 * Returns 0 or a negative LT_E* code; even on failure the recording is over
 * and a later lt_trace_start may begin a new one. */
int lt_trace_stop(struct lt_trace_summary *summary);

#ifdef __cplusplus
}
#endif
#endif
