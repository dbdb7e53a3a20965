/* Functions compiled with -pg -mfentry: gcc (PIC) emits
 * `call *__fentry__@GOTPCREL(%rip)` (ff 15, 6 bytes), clang `call __fentry__`
 * (e8, 5 bytes). This library brings its own __fentry__, which counts its
 * calls and preserves every register. */
#include <stdatomic.h>

__attribute__((visibility("hidden"))) long lt_fentry_calls;

__asm__(
    ".text\n"
    ".globl __fentry__\n"
    ".type __fentry__,@function\n"
    "__fentry__:\n"
    "    lock incq lt_fentry_calls(%rip)\n"
    "    ret\n"
    ".size __fentry__, .-__fentry__\n"
    ".globl lt_fentry_target\n"
    ".type lt_fentry_target,@function\n"
    "lt_fentry_target:\n"
    "    incq 0(%rdi)\n"
    "    ret\n"
    ".size lt_fentry_target, .-lt_fentry_target\n");

__attribute__((noinline)) long lt_fentry_site(long *counter) {
    __asm__ volatile("" ::"r"(counter) : "memory");
    return 42;
}

__attribute__((no_instrument_function)) long lt_fentry_count(void) { return __atomic_load_n(&lt_fentry_calls, __ATOMIC_SEQ_CST); }
