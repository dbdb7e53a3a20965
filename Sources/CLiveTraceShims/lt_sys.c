/* Thin system-call wrappers (see include/lt_sys.h for the convention). */
#define _GNU_SOURCE
#include "lt_sys.h"
#include <sys/platform/x86.h>
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <linux/fs.h>

/* glibc exports its real sigaction also as __sigaction; lt_sigmask.c
 * interposes the public name. */
extern int __sigaction(int, const struct sigaction *, struct sigaction *);

/* Raw syscall returning -errno, preserving the caller's errno: the trap
 * and sync handlers call these and must not disturb the program's errno. */
static long lt_raw_result(long r) {
    return r == -1 ? -(long)errno : r;
}

long lt_sys_membarrier(int cmd, unsigned int flags) {
    int saved = errno;
    long r = lt_raw_result(syscall(SYS_membarrier, cmd, flags, 0));
    errno = saved;
    return r;
}

_Static_assert(SYS_gettid == 186, "lt_sys_gettid_raw's system call number");

long lt_sys_gettid(void) {
    return lt_sys_gettid_raw();
}

long lt_sys_membarrier_private_expedited(void) {
    static int registered;
    if (!__atomic_load_n(&registered, __ATOMIC_ACQUIRE)) {
        long r = lt_sys_membarrier(LT_MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0);
        if (r < 0) return r;
        __atomic_store_n(&registered, 1, __ATOMIC_RELEASE);
    }
    long r;
    do { r = lt_sys_membarrier(LT_MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0); } while (r == -EINTR);
    return r < 0 ? r : 0;
}

long lt_sys_tgkill(long tgid, long tid, int sig) {
    int saved = errno;
    long r = lt_raw_result(syscall(SYS_tgkill, tgid, tid, sig));
    errno = saved;
    return r;
}

long lt_sys_rt_sigprocmask(int how, const sigset_t *set, sigset_t *old) {
    int saved = errno;
    /* The kernel's sigset is 64 bits (_NSIG / 8), not glibc's 1024. */
    long r = lt_raw_result(syscall(SYS_rt_sigprocmask, how, set, old, (long)(_NSIG / 8)));
    errno = saved;
    return r;
}

long lt_sys_libc_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    int saved = errno;
    long r = __sigaction(sig, act, old) == 0 ? 0 : -(long)errno;
    errno = saved;
    return r;
}

void lt_sys_raise_sigtrap(void) {
    raise(SIGTRAP);
}

void lt_sys_execute_int3(void) {
    __asm__ volatile("int3" ::: "memory");
}

/* SERIALIZE (0f 01 e8; Intel since Alder Lake and Sapphire Rapids) where
 * glibc found it, else CPUID. Both are architecturally serializing; CPUID
 * always exits to the hypervisor in a virtual machine (about 9 us on the
 * project machine, three times per text-poke batch), SERIALIZE does not. */
void lt_sys_serialize_this_core(void) {
    if (CPU_FEATURE_ACTIVE(SERIALIZE)) {
        __asm__ volatile(".byte 0x0f, 0x01, 0xe8" ::: "memory");
        return;
    }
    unsigned int eax = 0, ebx, ecx = 0, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx) :: "memory");
}

int lt_sys_sigrtmax(void) {
    return SIGRTMAX;
}

int lt_sys_sigrtmin(void) {
    return SIGRTMIN;
}

long lt_sys_rename_exchange(const char *from, const char *to) {
    return lt_raw_result(syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_EXCHANGE));
}
