/* ptrace and pidfd wrappers (see include/lt_ptrace.h). */
#define _GNU_SOURCE
#include "lt_ptrace.h"
#include <errno.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

long lt_ptrace(int request, pid_t pid, unsigned long addr, unsigned long data) {
    errno = 0;
    long r = ptrace((enum __ptrace_request)request, pid, (void *)addr, (void *)data);
    return r == -1 && errno != 0 ? -(long)errno : r;
}

int lt_pidfd_open(pid_t pid) {
    long r = syscall(SYS_pidfd_open, pid, 0);
    return r < 0 ? -errno : (int)r;
}

int lt_signalfd(const sigset_t *set) {
    int fd = signalfd(-1, set, SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int lt_signalfd_read(int fd) {
    int code;
    return lt_signalfd_read_code(fd, &code);
}

int lt_signalfd_read_code(int fd, int *code) {
    struct signalfd_siginfo info;
    ssize_t n;
    do { n = read(fd, &info, sizeof info); } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    if (n != (ssize_t)sizeof info) return -EIO;
    *code = info.ssi_code;
    return (int)info.ssi_signo;
}
