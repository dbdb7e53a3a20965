/* lt_unwind.c — unwinders that walk a stack whose return slots hold the
 * function graph's return trampoline (lt_graph.h).
 *
 * The trampoline has no unwind information that leads to the real caller
 * (the original return address lives in the thread's shadow stack, which a
 * DWARF expression cannot reach), so an unwinder that met it would stop:
 * std::terminate for an exception, skipped destructors for pthread_exit.
 * These interposers give the unwinder the real stack first:
 *
 *   _Unwind_RaiseException, _Unwind_Resume_or_Rethrow, _Unwind_ForcedUnwind
 *       (C++ throw, rethrow, forced unwinds called directly):
 *       1. restore every hooked slot of the thread (frames RESTORED);
 *       2. call the real function; it returns only when it failed (no
 *          handler): every frame is still alive, hook them again.
 *   __cxa_begin_catch (every C++ catch clause calls it, in the catching
 *       frame): frames below the catching frame are gone — their exits are
 *       recorded UNWOUND —, the survivors are hooked again.
 *   pthread_exit: the thread's frames are all about to be unwound: restore
 *       them and record their exits UNWOUND now, then exit.
 *   backtrace, _Unwind_Backtrace (stack walks that leave every frame
 *       alive): restore, walk, hook again, so a program's own backtraces
 *       (crash handlers, loggers) see its real callers. From a signal
 *       handler that interrupted the tracer itself nothing is restored and
 *       the walk ends at the return trampoline (its unwind information says
 *       so: lt_return_x86_64.S).
 *
 * Cleanup code that runs during the unwinding (destructors, landing pads)
 * may call traced functions: they are hooked as usual above the restored
 * frames, and the entry rule of lt_graph.c pops the restored frames that
 * are dead by then.
 *
 * Limits, stated: interposition works when these definitions come before
 * libgcc_s/libstdc++/libc in the global lookup scope (the program links
 * liblivetrace.so, or LD_PRELOAD, or links this code statically); a library
 * dlopen'ed RTLD_LOCAL is not in that scope. glibc's thread cancellation
 * (pthread_cancel) reaches the unwinder without a call we can interpose:
 * its unwinding stops at the first hooked frame and ends the thread (C
 * cleanup handlers still run; C++ destructors of older frames do not), and
 * the frames' exits are recorded UNWOUND at thread exit (lt_graph.c).
 * Unwinders that never call
 * __cxa_begin_catch (foreign exceptions caught by a non-C++ runtime) leave
 * their surviving frames RESTORED: their exits are recorded UNWOUND when a
 * later entry or exit finds them dead.
 */
#define _GNU_SOURCE
#include "lt_graph.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* The subset of <unwind.h> these wrappers pass through. */
typedef int lt_unwind_reason_code;
enum { LT_URC_FATAL_PHASE1_ERROR = 3 };
struct _Unwind_Exception;
typedef lt_unwind_reason_code (*lt_unwind_raise_fn)(struct _Unwind_Exception *);
typedef lt_unwind_reason_code (*lt_unwind_forced_fn)(struct _Unwind_Exception *, void *stop, void *stop_argument);
typedef void *(*lt_begin_catch_fn)(void *);
typedef void (*lt_pthread_exit_fn)(void *);
typedef int (*lt_backtrace_fn)(void **, int);
typedef lt_unwind_reason_code (*lt_unwind_backtrace_fn)(void *trace, void *argument);

/* The next definition of `name` after ours, looked up once (dlsym may
 * allocate: these paths are not async-signal-safe, nor are their callers).
 *
 * RTLD_NEXT searches the global scope after this object, which may not hold
 * libstdc++ (__cxa_begin_catch): liblivetrace.so links its own libstdc++
 * statically and hidden (Linker/static-libstdc++), and a C program may
 * dlopen a C++ library RTLD_LOCAL, whose libstdc++.so.6 then serves that
 * library's scope only while its catch clauses still reach this definition
 * first. A name the global scope lacks is looked up in a libstdc++.so.6
 * already loaded; its handle is kept, so the cached function stays mapped. */
static void *lt_unwind_next(void **cache, const char *name) {
    void *function = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (function == NULL) {
        function = dlsym(RTLD_NEXT, name);
        if (function == NULL) {
            void *libstdcxx = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_NOLOAD);
            if (libstdcxx != NULL) function = dlsym(libstdcxx, name);
        }
        __atomic_store_n(cache, function, __ATOMIC_RELEASE);
    }
    return function;
}

static void lt_unwind_missing(const char *name) {
    static const char prefix[] = "livetrace: no next definition of ";
    (void)!write(2, prefix, sizeof prefix - 1);
    size_t length = 0;
    while (name[length]) length++;
    (void)!write(2, name, length);
    (void)!write(2, "\n", 1);
}

static void *lt_next_raise, *lt_next_rethrow, *lt_next_forced, *lt_next_begin_catch, *lt_next_pthread_exit;
static void *lt_next_backtrace, *lt_next_unwind_backtrace;

/* Resolves what is already loaded at start-up, so that the first backtrace
 * from a crash handler need not call dlsym (which takes the loader's lock). */
__attribute__((constructor)) static void lt_unwind_resolve_early(void) {
    (void)lt_unwind_next(&lt_next_backtrace, "backtrace");
    (void)lt_unwind_next(&lt_next_pthread_exit, "pthread_exit");
    (void)lt_unwind_next(&lt_next_unwind_backtrace, "_Unwind_Backtrace");
}

int backtrace(void **buffer, int size) {
    lt_backtrace_fn next = (lt_backtrace_fn)lt_unwind_next(&lt_next_backtrace, "backtrace");
    if (next == NULL) return 0;
    int restored = lt_graph_restore_thread_for_walk();
    int count = next(buffer, size);
    if (restored) lt_graph_resume_thread(0);
    return count;
}

lt_unwind_reason_code _Unwind_Backtrace(void *trace, void *argument) {
    lt_unwind_backtrace_fn next = (lt_unwind_backtrace_fn)lt_unwind_next(&lt_next_unwind_backtrace, "_Unwind_Backtrace");
    if (next == NULL) {
        lt_unwind_missing("_Unwind_Backtrace");
        return LT_URC_FATAL_PHASE1_ERROR;
    }
    int restored = lt_graph_restore_thread_for_walk();
    lt_unwind_reason_code reason = next(trace, argument);
    if (restored) lt_graph_resume_thread(0);
    return reason;
}

lt_unwind_reason_code _Unwind_RaiseException(struct _Unwind_Exception *exception) {
    lt_unwind_raise_fn next = (lt_unwind_raise_fn)lt_unwind_next(&lt_next_raise, "_Unwind_RaiseException");
    if (next == NULL) {
        lt_unwind_missing("_Unwind_RaiseException");
        return LT_URC_FATAL_PHASE1_ERROR;
    }
    /* Step 1. */
    lt_graph_restore_thread();
    /* Step 2. */
    lt_unwind_reason_code reason = next(exception);
    lt_graph_resume_thread(0);
    return reason;
}

lt_unwind_reason_code _Unwind_Resume_or_Rethrow(struct _Unwind_Exception *exception) {
    lt_unwind_raise_fn next = (lt_unwind_raise_fn)lt_unwind_next(&lt_next_rethrow, "_Unwind_Resume_or_Rethrow");
    if (next == NULL) {
        lt_unwind_missing("_Unwind_Resume_or_Rethrow");
        return LT_URC_FATAL_PHASE1_ERROR;
    }
    lt_graph_restore_thread();
    lt_unwind_reason_code reason = next(exception);
    lt_graph_resume_thread(0);
    return reason;
}

lt_unwind_reason_code _Unwind_ForcedUnwind(struct _Unwind_Exception *exception, void *stop, void *stop_argument) {
    lt_unwind_forced_fn next = (lt_unwind_forced_fn)lt_unwind_next(&lt_next_forced, "_Unwind_ForcedUnwind");
    if (next == NULL) {
        lt_unwind_missing("_Unwind_ForcedUnwind");
        return LT_URC_FATAL_PHASE1_ERROR;
    }
    lt_graph_restore_thread();
    lt_unwind_reason_code reason = next(exception, stop, stop_argument);
    lt_graph_resume_thread(0);
    return reason;
}

/* The caller's stack pointer before its call is this frame's address + 16
 * (saved rbp, return address): every frame whose return slot lies below it
 * belonged to a function the exception left. */
__attribute__((noinline)) void *__cxa_begin_catch(void *exception) {
    lt_begin_catch_fn next = (lt_begin_catch_fn)lt_unwind_next(&lt_next_begin_catch, "__cxa_begin_catch");
    lt_graph_resume_thread((uintptr_t)__builtin_frame_address(0) + 16);
    if (next == NULL) {
        lt_unwind_missing("__cxa_begin_catch");
        abort();
    }
    return next(exception);
}

void pthread_exit(void *value) {
    lt_pthread_exit_fn next = (lt_pthread_exit_fn)lt_unwind_next(&lt_next_pthread_exit, "pthread_exit");
    if (next == NULL) {
        lt_unwind_missing("pthread_exit");
        abort();
    }
    lt_graph_unwind_thread();
    next(value);
    __builtin_unreachable();
}
