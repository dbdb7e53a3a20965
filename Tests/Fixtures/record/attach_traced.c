/* A process another tracer already holds (AttachTests.swift): the child
 * asks its parent to trace it (PTRACE_TRACEME) and sleeps; the parent
 * prints the child's pid and waits for it. */
#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    pid_t child = fork();
    if (child == 0) {
        ptrace(PTRACE_TRACEME, 0, NULL, NULL);
        for (;;) pause();
    }
    printf("child %d\n", (int)child);
    fflush(stdout);
    int status;
    while (waitpid(child, &status, 0) == child && !WIFEXITED(status) && !WIFSIGNALED(status)) {
        /* Pass every signal on: the parent is its tracer. */
        ptrace(PTRACE_CONT, child, NULL, (void *)(long)(WIFSTOPPED(status) ? WSTOPSIG(status) : 0));
    }
    return 0;
}
