/* livetrace.h — the public C API of LiveTrace: the ftrace_ops model in user
 * space. A program attaches callbacks ("ops") to its own functions, chosen by
 * glob, while it runs; the runtime patches each function's entry site into a
 * call to a trampoline in JIT memory (DESIGN.md, "Trampolines and ops").
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
 *   - A callback may call traced functions: a per-thread guard skips nested
 *     trampolines (their calls are not delivered) and counts them
 *     (lt_skipped_calls()).
 *   - A callback must not call lt_ops_register/unregister/destroy
 *     (-LT_EDEADLK): they wait for every thread to leave the callbacks.
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
    /* The callback reads `regs`. Registers are always saved in this
     * implementation; the flag is accepted for ftrace compatibility. */
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

/* --- more --- */
/* Calls skipped by the recursion guard, summed over all threads. */
uint64_t lt_skipped_calls(void);
/* Replaces `function` (a name or glob matching exactly one function) by
 * `replacement`: a MODIFY_RESUME ops managed by the runtime. Returns the ops
 * (to lt_ops_destroy to undo) or NULL, with the error in *error. */
lt_ops *lt_replace_function(const char *function, uintptr_t replacement, int *error);

#ifdef __cplusplus
}
#endif
#endif
