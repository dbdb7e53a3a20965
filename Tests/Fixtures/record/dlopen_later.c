/* Loads a library after the shim's start (argv[1]) and calls its
 * later_answer(): `livetrace record` must name it in objects.json, which the
 * shim's exit message makes the CLI capture. Exit status: the answer. */
#include <dlfcn.h>
#include <stdio.h>

__attribute__((noinline)) int before_load(int x) { return x + 1; }

int main(int argc, char **argv) {
    if (argc < 2) return 100;
    int base = before_load(40);
    void *library = dlopen(argv[1], RTLD_NOW);
    if (!library) { fprintf(stderr, "%s\n", dlerror()); return 101; }
    int (*answer)(int) = (int (*)(int))dlsym(library, "later_answer");
    if (!answer) return 102;
    return answer(base);
}
