/* A C program that loads a C++ library RTLD_LOCAL (argv[1]:
 * graph/graph_exceptions.cpp built as a shared library) and calls its
 * gx_outer(), which throws and catches an exception. The library's catch
 * clause reaches the shim's __cxa_begin_catch first (the shim's is in the
 * global scope), while the libstdc++.so.6 it forwards to is only in the
 * library's local scope. Prints gx_outer(5), 103. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2) return 100;
    void *library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!library) { fprintf(stderr, "%s\n", dlerror()); return 101; }
    int (*outer)(int) = (int (*)(int))dlsym(library, "gx_outer");
    if (!outer) return 102;
    printf("gx_outer(5) = %d\n", outer(5));
    return 0;
}
