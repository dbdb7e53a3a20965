/* fork and exec under `livetrace record`:
 *   parent_work 3 times; fork; the child calls child_work 4 times and
 *   exits; the parent waits. With argument "then-exec" the parent then execs
 *   this program again with "exec", whose image calls after_exec 5 times.
 * The child traces into its own ring (its own stream); the exec'd image
 * loads the shim again from the inherited environment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif

static volatile long sink;

NOINLINE void parent_work(int i) { sink += i; }
NOINLINE void child_work(int i) { sink += i; }
NOINLINE void after_exec(int i) { sink += i; }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "exec") == 0) {
        for (int i = 0; i < 5; i++) after_exec(i);
        printf("after exec\n");
        return 0;
    }
    for (int i = 0; i < 3; i++) parent_work(i);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < 4; i++) child_work(i);
        exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    printf("child exited %d\n", WEXITSTATUS(status));
    if (argc > 1 && strcmp(argv[1], "then-exec") == 0) {
        fflush(stdout);
        execl("/proc/self/exe", argv[0], "exec", (char *)NULL);
        return 1;
    }
    return 0;
}
