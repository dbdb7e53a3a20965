/* Holds one thread of another process with its PC *between* five 1-byte
 * nops, so the rescue of the text poke can be tested deterministically
 * (a preempted thread lands there only by chance).
 *
 * usage: rescue_tracer TID SITE_ADDRESS_HEX
 *   1. PTRACE_SEIZE + PTRACE_INTERRUPT the thread.
 *   2. Single-step it until SITE < PC < SITE + 5.
 *   3. Print "ready PC" and wait: the thread stays stopped there.
 *   4. When a signal is about to be delivered to it (the patcher's sync
 *      signal), detach and deliver that signal: its handler sees the PC
 *      between the nops.
 * Exits 0 on success; prints the reason and exits 1 otherwise. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>

static int wait_stop(pid_t tid, int *status) {
    for (;;) {
        pid_t r = waitpid(tid, status, __WALL);
        if (r == tid) return 0;
        if (r < 0 && errno == EINTR) continue;
        return -1;
    }
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: rescue_tracer TID SITE\n"); return 1; }
    pid_t tid = (pid_t)atoi(argv[1]);
    unsigned long site = strtoul(argv[2], NULL, 16);
    int status;
    if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) { perror("PTRACE_SEIZE"); return 1; }
    if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0) { perror("PTRACE_INTERRUPT"); return 1; }
    if (wait_stop(tid, &status) != 0) { perror("waitpid"); return 1; }
    struct user_regs_struct regs;
    for (long steps = 0;; steps++) {
        if (ptrace(PTRACE_GETREGS, tid, 0, &regs) != 0) { perror("PTRACE_GETREGS"); return 1; }
        if (regs.rip > site && regs.rip < site + 5) break;
        if (steps > 10000000) { fprintf(stderr, "never reached the site\n"); return 1; }
        if (ptrace(PTRACE_SINGLESTEP, tid, 0, 0) != 0) { perror("PTRACE_SINGLESTEP"); return 1; }
        if (wait_stop(tid, &status) != 0) { perror("waitpid"); return 1; }
    }
    printf("ready %llx\n", (unsigned long long)regs.rip);
    fflush(stdout);
    /* The thread sits in the SIGTRAP stop of the last single step. Wait
     * until a signal is pending for it (SigPnd in its status), then resume
     * it: it stops again for that signal before executing any instruction
     * (signal-delivery stop); detach delivering the signal, so its handler
     * runs with the PC still between the nops. */
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/status", (int)tid, (int)tid);
    for (int polls = 0;; polls++) {
        FILE *f = fopen(path, "r");
        if (!f) { perror(path); return 1; }
        char line[256];
        unsigned long long pending = 0;
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "SigPnd:", 7) == 0) pending = strtoull(line + 7, NULL, 16);
        }
        fclose(f);
        if (pending) break;
        if (polls > 60000) { fprintf(stderr, "no signal arrived\n"); return 1; }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    if (ptrace(PTRACE_CONT, tid, 0, 0) != 0) { perror("PTRACE_CONT"); return 1; }
    for (;;) {
        if (wait_stop(tid, &status) != 0) { perror("waitpid"); return 1; }
        if (WIFSTOPPED(status) && (status >> 16) == 0) {
            int sig = WSTOPSIG(status);
            if (ptrace(PTRACE_DETACH, tid, 0, (void *)(long)sig) != 0) { perror("PTRACE_DETACH"); return 1; }
            printf("delivered %d\n", sig);
            return 0;
        }
        if (ptrace(PTRACE_CONT, tid, 0, 0) != 0) { perror("PTRACE_CONT"); return 1; }
    }
}
