// Benchmark of the text poke's batch size (issue 3): time to switch 100,000
// sites from nop to `call` and back in one batch each, against baselines
// measured in the same run:
//   - the same 100k transitions done one site per batch (extrapolated from
//     a sample), i.e. what batching saves;
//   - the /proc/self/mem writer instead of mprotect + stores.
// Usage: livetrace-poke-bench [sites] [worker-threads]
// Generates a C file with `sites` functions, compiles it with clang
// -fpatchable-function-entry=5 into a shared library, dlopens it.
import Foundation
import LiveTrace

#if canImport(Glibc)
import Glibc
#endif

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("livetrace-poke-bench: \(message)\n".utf8))
    exit(1)
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

let arguments = CommandLine.arguments
let siteCount = arguments.count > 1 ? Int(arguments[1]) ?? 100_000 : 100_000
let workerCount = arguments.count > 2 ? Int(arguments[2]) ?? 1 : 1

// 1. Generate and compile the library.
let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("livetrace-poke-bench-\(getpid())")
try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: dir) }
var source = """
    #include <pthread.h>
    #include <stdatomic.h>
    __asm__(".text\\n.globl lt_bench_target\\n.type lt_bench_target,@function\\nlt_bench_target:\\n    ret\\n");

    """
for i in 0..<siteCount {
    source += "void f\(i)(long *c) { __asm__ volatile(\"\" :: \"r\"(c) : \"memory\"); }\n"
}
source += "void (*const lt_bench_functions[])(long *) = {\n"
for i in 0..<siteCount { source += "f\(i),\n" }
source += """
    };
    int lt_bench_count = \(siteCount);
    static atomic_int stop;
    static long calls;
    static void *worker(void *arg) {
        (void)arg;
        unsigned i = 0;
        while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
            lt_bench_functions[i % \(siteCount)](&calls);
            i += 7919;
        }
        return 0;
    }
    static pthread_t threads[64];
    void lt_bench_start(int n) { for (int i = 0; i < n && i < 64; i++) pthread_create(&threads[i], 0, worker, 0); }
    void lt_bench_stop(int n) { atomic_store(&stop, 1); for (int i = 0; i < n && i < 64; i++) pthread_join(threads[i], 0); }

    """
let cPath = dir.appendingPathComponent("sites.c").path
// LIVETRACE_POKE_BENCH_SO: keep the compiled library at this path and reuse it.
let keptLibrary = ProcessInfo.processInfo.environment["LIVETRACE_POKE_BENCH_SO"]
let soPath = keptLibrary ?? dir.appendingPathComponent("sites.so").path
FileManager.default.createFile(atPath: cPath, contents: Data(source.utf8))
let compiler = FileManager.default.isExecutableFile(atPath: "/opt/swift/usr/bin/clang") ? "/opt/swift/usr/bin/clang" : "clang"
let compileStart = now()
if keptLibrary == nil || !FileManager.default.fileExists(atPath: soPath) {
let cc = Process()
cc.executableURL = URL(fileURLWithPath: "/usr/bin/env")
cc.arguments = [compiler, "-O1", "-fPIC", "-shared", "-pthread", "-fpatchable-function-entry=5", cPath, "-o", soPath]
do { try cc.run() } catch { fail("cannot run \(compiler): \(error)") }
cc.waitUntilExit()
guard cc.terminationStatus == 0 else { fail("compiling \(siteCount) functions failed") }
}
let compileSeconds = now() - compileStart

// 2. Load, describe the sites.
guard let handle = dlopen(soPath, RTLD_NOW | RTLD_LOCAL) else { fail(String(cString: dlerror())) }
guard let table = dlsym(handle, "lt_bench_functions"), let targetPointer = dlsym(handle, "lt_bench_target"),
      let startPointer = dlsym(handle, "lt_bench_start"), let stopPointer = dlsym(handle, "lt_bench_stop")
else { fail("symbols missing") }
let functions = table.assumingMemoryBound(to: UInt.self)
let sites = (0..<siteCount).map { i in
    Site(address: functions[i], kind: .nop5, functionAddress: functions[i], symbol: "f\(i)", function: "f\(i)")
}
let target = UInt(bitPattern: targetPointer)
let startWorkers = unsafeBitCast(startPointer, to: (@convention(c) (Int32) -> Void).self)
let stopWorkers = unsafeBitCast(stopPointer, to: (@convention(c) (Int32) -> Void).self)
let poker = TextPoker.shared
let normal = poker.normalize(sites)
guard normal.failedCount == 0 else { fail("normalize: \(normal.failed.prefix(3))") }

func batch(_ to: SiteInstruction, _ subset: ArraySlice<Site>) -> Double {
    let t0 = now()
    let r = poker.apply(subset.map { SiteTransition(site: $0, to: to) })
    let t = now() - t0
    guard r.patchedCount == subset.count else { fail("batch: \(r.failedCount) failed: \(r.failed.prefix(3))") }
    return t
}

startWorkers(Int32(workerCount))
defer { stopWorkers(Int32(workerCount)) }

// 3. Whole batches, alternating rounds (BENCH_RUNS, at least 7): each round
//    switches every site on and off with the mprotect writer, then with the
//    /proc/self/mem writer. Median and range, never the best round.
let rounds = max(7, Int(ProcessInfo.processInfo.environment["BENCH_RUNS"] ?? "") ?? 7)
var onTimes: [Double] = [], offTimes: [Double] = [], memOnTimes: [Double] = [], memOffTimes: [Double] = []
for _ in 0..<rounds {
    onTimes.append(batch(.call(target), sites[...]))
    offTimes.append(batch(.nop, sites[...]))
    poker.configuration.writeMethod = .procSelfMem
    memOnTimes.append(batch(.call(target), sites[...]))
    memOffTimes.append(batch(.nop, sites[...]))
    poker.configuration.writeMethod = .mprotect
}

// 4. Baseline: one site per batch, on a sample, extrapolated.
let sample = min(2_000, siteCount)
var perSite = 0.0
for s in sites.prefix(sample) {
    perSite += batch(.call(target), [s][...])
    perSite += batch(.nop, [s][...])
}
let perSitePer100k = perSite / Double(sample) * 100_000 / 2

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
let scale = 100_000 / Double(siteCount)
func ms(_ seconds: Double) -> String { String(format: "%.1f ms", seconds * 1000) }
func spread(_ values: [Double]) -> String {
    "\(ms(median(values) * scale)) (\(ms(values.min()! * scale))-\(ms(values.max()! * scale)))"
}
let on = median(onTimes), off = median(offTimes), memOn = median(memOnTimes)
print("poke-batch: \(siteCount) sites (compiled in \(String(format: "%.1f", compileSeconds)) s), \(workerCount) worker thread(s) calling them, serialization \(CoreSerializer.preferredMechanism.rawValue); \(rounds) alternating rounds, median (range) per 100k sites")
print("  one batch, mprotect writer:   on \(spread(onTimes)) / off \(spread(offTimes))  (\(String(format: "%.0f", on / Double(siteCount) * 1e9)) ns per site)")
print("  one batch, /proc/self/mem:    on \(spread(memOnTimes)) / off \(spread(memOffTimes))  (x\(String(format: "%.1f", memOn / on)) the mprotect writer)")
print("  baseline, one site per batch: \(ms(perSitePer100k)) per 100k sites (x\(String(format: "%.0f", perSitePer100k / ((on + off) / 2 * scale))) slower than one batch; from \(sample) sites)")
print("  target: under 100 ms per 100k sites; uftrace start-up patching ~55 us per function = 5500 ms per 100k")
if let path = ProcessInfo.processInfo.environment["BENCH_ROWS"], let handle = FileHandle(forWritingAtPath: path) {
    let line = "text poke: switch 100k sites on in one batch\t\(String(format: "%.1f", on * scale * 1000))\t\(String(format: "%.1f", onTimes.min()! * scale * 1000))-\(String(format: "%.1f", onTimes.max()! * scale * 1000))\tms\t< 100 ms\t\(on * scale < 0.1 ? "met" : "NOT met")\n"
    handle.seekToEndOfFile()
    handle.write(line.data(using: .utf8)!)
    handle.closeFile()
}
