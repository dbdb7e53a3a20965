// Discovery fixture for C++ names: methods, namespaces and overloads are
// listed demangled (`fixture::Counter::add(int)`).
#include <cstdio>

namespace fixture {
struct Counter {
    int total = 0;
    __attribute__((noinline)) void add(int x) { total += x; }
    __attribute__((noinline)) void add(double x) { total += static_cast<int>(x); }
};
}

int main(int argc, char **) {
    fixture::Counter counter;
    counter.add(argc);
    counter.add(2.5);
    std::printf("%d\n", counter.total);
    return 0;
}
