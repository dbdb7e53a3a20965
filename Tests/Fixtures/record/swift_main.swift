// A Swift program with its own Swift runtime (dynamically linked
// libswiftCore), recorded through the LD_PRELOAD shim whose own runtime is
// linked into liblivetrace.so: it calls C functions with entry sites 3 times.
var results: [Int] = []
for round in 1...3 {
    results.append(record_fixture_sum_squares(100 * round))
}
print("sums: \(results.map(String.init).joined(separator: ","))")
