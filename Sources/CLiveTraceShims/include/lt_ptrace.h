/* ptrace, pidfd and signalfd for `livetrace record -p PID` (the injection,
 * livetrace/AttachInjection.swift; the wait, AttachRecording.swift). C only
 * because ptrace(2) and syscall(2) are variadic, which Swift cannot call,
 * and <sys/signalfd.h> is not in Swift's Glibc module. Each returns the result, or -errno. */
#ifndef LT_PTRACE_H
#define LT_PTRACE_H

#include <sys/types.h>
#include <signal.h>
#include <sys/user.h>

#define LT_PTRACE_CONT 7
#define LT_PTRACE_DETACH 17
#define LT_PTRACE_GETREGS 12
#define LT_PTRACE_SETREGS 13
#define LT_PTRACE_GETREGSET 0x4204
#define LT_PTRACE_SETREGSET 0x4205
#define LT_PTRACE_SEIZE 0x4206
#define LT_PTRACE_INTERRUPT 0x4207
#define LT_PTRACE_GETSIGMASK 0x420a
#define LT_PTRACE_SETSIGMASK 0x420b
#define LT_PTRACE_EVENT_STOP 128
#define LT_NT_X86_XSTATE 0x202
#define LT_WALL 0x40000000

long lt_ptrace(int request, pid_t pid, unsigned long addr, unsigned long data);

/* pidfd_open(pid, 0). */
int lt_pidfd_open(pid_t pid);

/* signalfd(-1, set, SFD_CLOEXEC). */
int lt_signalfd(const sigset_t *set);

/* Reads one signal from a signalfd: its number, or -errno. */
int lt_signalfd_read(int fd);

/* lt_signalfd_read, also storing the signal's si_code in *code (who sent
 * it: <= 0 from a process, kill or sigqueue; > 0 from the kernel). */
int lt_signalfd_read_code(int fd, int *code);

#endif
