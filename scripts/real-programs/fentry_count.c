/* A counting __fentry__ for programs built with -pg -mfentry (gcc PIE: the
 * site is `call *__fentry__@GOTPCREL(%rip)`, 6 bytes; clang: `call
 * __fentry__@plt`, 5), preloaded with LD_PRELOAD: the GOT and the PLT
 * resolve to this definition before glibc's. Every
 * call is counted by its return address (site end); at exit the counts go
 * to $FENTRY_COUNT_OUT as "object-path file-offset count" lines, the offset
 * being the return address minus the object's load base.
 *
 * An independent reference for livetrace's counts: no return hooking, no
 * shadow stack, so longjmp cannot disturb it. Build with
 * -mgeneral-regs-only: the counter must not touch the vector registers that
 * carry the traced function's arguments. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SLOTS (1u << 16)
static uintptr_t keys[SLOTS];
static uint64_t counts[SLOTS];
static uint64_t dropped;

__attribute__((used, visibility("hidden"))) void fentry_count(uintptr_t return_address) {
    uint32_t index = (uint32_t)((return_address * 0x9E3779B97F4A7C15ull) >> 48) & (SLOTS - 1);
    for (uint32_t probes = 0; probes < SLOTS; probes++, index = (index + 1) & (SLOTS - 1)) {
        uintptr_t key = __atomic_load_n(&keys[index], __ATOMIC_ACQUIRE);
        if (key == 0) {
            uintptr_t expected = 0;
            if (!__atomic_compare_exchange_n(&keys[index], &expected, return_address, 0, __ATOMIC_ACQ_REL,
                                             __ATOMIC_ACQUIRE))
                key = expected;
            else
                key = return_address;
        }
        if (key == return_address) {
            __atomic_fetch_add(&counts[index], 1, __ATOMIC_RELAXED);
            return;
        }
    }
    __atomic_fetch_add(&dropped, 1, __ATOMIC_RELAXED);
}

/* At the traced function's entry rsp = 8 mod 16; the call to __fentry__
 * makes it 0 mod 16; nine pushes (72 bytes) and 8 more align the call to
 * the counter. Every argument register (and r10, r11, rax) is kept. */
__asm__(".text\n"
        ".globl __fentry__\n"
        ".type __fentry__, @function\n"
        "__fentry__:\n"
        "  push %rax\n  push %rcx\n  push %rdx\n  push %rsi\n  push %rdi\n"
        "  push %r8\n  push %r9\n  push %r10\n  push %r11\n"
        "  mov 72(%rsp), %rdi\n"
        "  sub $8, %rsp\n"
        "  call fentry_count\n"
        "  add $8, %rsp\n"
        "  pop %r11\n  pop %r10\n  pop %r9\n  pop %r8\n"
        "  pop %rdi\n  pop %rsi\n  pop %rdx\n  pop %rcx\n  pop %rax\n"
        "  ret\n"
        ".size __fentry__, . - __fentry__\n");

__attribute__((destructor)) static void fentry_count_dump(void) {
    const char *path = getenv("FENTRY_COUNT_OUT");
    if (path == NULL) return;
    FILE *out = fopen(path, "w");
    if (out == NULL) return;
    for (uint32_t i = 0; i < SLOTS; i++) {
        if (keys[i] == 0) continue;
        Dl_info info;
        if (dladdr((void *)keys[i], &info) == 0 || info.dli_fname == NULL) continue;
        fprintf(out, "%s %lx %lu\n", info.dli_fname, (unsigned long)(keys[i] - (uintptr_t)info.dli_fbase),
                (unsigned long)counts[i]);
    }
    fprintf(out, "dropped 0 %lu\n", (unsigned long)dropped);
    fclose(out);
}
