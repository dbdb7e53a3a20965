// Full-dynamic patching cost (Benchmarks/reloc-batch.sh): for every function
// of an object loaded in this process, the relocation analysis (symbols and
// verdicts, from the file, once), the stubs, one batch relocating every
// relocatable entry, one batch restoring them. Prints microseconds per
// function for each phase and in total, wall clock and process CPU time.
//
// A shared object is loaded with dlopen. A position-independent executable
// (swift-format, the 60k-function binary), which glibc refuses to
// dlopen, has its PT_LOAD segments mapped from the file at a free address
// with their protections, and is never run: its code is what is patched, as
// it would be in its own process (the text poke's writes, serializations and
// rescue signals are the same; no thread of this process runs that code).
// Usage: livetrace-reloc-bench OBJECT (RELOC_THREADS=N: analysis threads;
// RELOC_SEQUENTIAL=1: the stubs after the analysis, each phase timed alone)
import Glibc
import LiveTrace

func now(_ clock: clockid_t) -> Double {
    var t = timespec()
    clock_gettime(clock, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// Minor page faults of the process so far (a text page's first write is a
/// copy-on-write fault; fresh heap and JIT pages fault on first touch).
func minorFaults() -> Int {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return usage.ru_minflt
}

func fail(_ message: String, status: Int32 = 1) -> Never {
    let text = Array("livetrace-reloc-bench: \(message)\n".utf8)
    _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(status)
}

/// Maps the PT_LOAD segments of the PIE `object` (file `path`) at an
/// address the kernel picks; returns the load bias.
func mapExecutable(_ object: ElfObject, path: String) -> UInt {
    let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
    guard let low = object.segments.map(\.address).min(),
          let high = object.segments.map({ $0.address + $0.memorySize }).max() else { fail("\(path): no loadable segment") }
    let start = UInt(low) & ~(page - 1)
    let span = Int((UInt(high) - start + page - 1) & ~(page - 1))
    guard let reserved = mmap(nil, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), reserved != MAP_FAILED else {
        fail("mmap of \(span) bytes failed (errno \(errno))")
    }
    let bias = UInt(bitPattern: reserved) &- start
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { fail("\(path): open failed (errno \(errno))") }
    defer { close(fd) }
    for segment in object.segments where segment.fileSize > 0 {
        let address = (UInt(segment.address) & ~(page - 1)) &+ bias
        let lead = UInt(segment.address) & (page - 1)
        let protection = (segment.isReadable ? PROT_READ : 0) | (segment.isExecutable ? PROT_EXEC : 0)
        let mapped = mmap(UnsafeMutableRawPointer(bitPattern: address), Int(UInt(segment.fileSize) + lead), protection,
                          MAP_PRIVATE | MAP_FIXED, fd, off_t(segment.fileOffset) - off_t(lead))
        guard mapped != MAP_FAILED else { fail("\(path): mmap of a segment failed (errno \(errno))") }
    }
    return bias
}

let arguments = CommandLine.arguments
guard arguments.count == 2 else { fail("usage: livetrace-reloc-bench OBJECT", status: 2) }
let path = arguments[1]
let object: ElfObject
do { object = try ElfObject(path: path) } catch { fail("\(error)") }

// Loading is not measured: a traced program has its objects loaded already.
var bias: UInt = 0
switch object.type {
case .sharedObject:
    guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else { fail(String(cString: dlerror())) }
    // The load bias, from the first exported function dlsym finds.
    let symbols: [FunctionSymbol]
    do { symbols = try object.functionSymbols() } catch { fail("\(error)") }
    guard let found = symbols.lazy.compactMap({ symbol in dlsym(handle, symbol.name).map { (symbol, $0) } }).first else {
        fail("no exported function in \(path)")
    }
    bias = UInt(bitPattern: found.1) &- UInt(found.0.address)
case .pieExecutable:
    bias = mapExecutable(object, path: path)
case .executable:
    fail("\(path): a position-dependent executable cannot be mapped beside this program; give a shared object or a PIE")
}

// The analysis shares the online cores (a tool's process, not a traced one).
// RELOC_THREADS: another count (1: the analysis a traced process does).
// RELOC_SEQUENTIAL=1: the stubs placed after the whole analysis, each phase
// timed on its own (by default the calling thread places each run of
// verdicts' stubs as soon as it is analyzed, while the others analyze on).
let cores = getenv("RELOC_THREADS").flatMap { Int(String(cString: $0)) }.map { max(1, $0) }
    ?? max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
let sequential = getenv("RELOC_SEQUENTIAL").map { String(cString: $0) == "1" } ?? false
let arena = RelocatedStubArena()
var unplaced = 0
let relocations: ObjectRelocations
let entries: [RelocatedEntry]
let w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID), f0 = minorFaults()
var w1 = w0, c1 = c0, f1 = f0
do {
    if sequential {
        relocations = try object.prologueRelocations(threads: cores)
        (w1, c1, f1) = (now(CLOCK_MONOTONIC), now(CLOCK_PROCESS_CPUTIME_ID), minorFaults())
        entries = arena.placeEveryRelocatableFunction(of: relocations, loadBias: bias) { _, _ in unplaced += 1 }
    } else {
        (relocations, entries) = try arena.analyzeAndPlaceEveryRelocatableFunction(of: object, loadBias: bias, threads: cores) { _, _ in
            unplaced += 1
        }
    }
} catch { fail("\(error)") }
let w2 = now(CLOCK_MONOTONIC), c2 = now(CLOCK_PROCESS_CPUTIME_ID), f2 = minorFaults()
let relocated = TextPoker.shared.relocate(entries)
let w3 = now(CLOCK_MONOTONIC), c3 = now(CLOCK_PROCESS_CPUTIME_ID), f3 = minorFaults()
let restored = TextPoker.shared.restore(entries)
let w4 = now(CLOCK_MONOTONIC), c4 = now(CLOCK_PROCESS_CPUTIME_ID), f4 = minorFaults()

let summary = relocations.summary()
guard summary.functions > 0 else { fail("\(path): no function symbol of 5 bytes or more (a stripped file?)") }
let n = Double(summary.functions)
let m = Double(max(entries.count, 1))
func fixed(_ value: Double) -> String {
    let hundredths = Int((value * 100).rounded())
    let fraction = hundredths % 100
    return "\(hundredths / 100)." + (fraction < 10 ? "0" : "") + "\(fraction)"
}
func us(_ seconds: Double, _ count: Double) -> String { fixed(seconds / count * 1e6) }
let share = fixed(Double(entries.count) / n * 100)
print("object: \(path) (\(object.type.rawValue)); analysis on \(cores) threads; "
      + (sequential ? "stubs after the analysis" : "stubs placed as the analysis goes"))
print("functions >= 5 bytes: \(summary.functions); relocatable: \(entries.count) (\(share)%); stub not placed: \(unplaced)")
let counts = "relocated \(relocated.patchedCount), failed \(relocated.failed.count); restored \(restored.patchedCount), failed \(restored.failed.count)"
print(counts + "; threads rescued \(relocated.threadsRescued)")
// Phases per relocated function (m). Overlapped, the analysis and the
// stubs are one phase; sequential, the analysis is per function (n).
func phases(_ t0: Double, _ t1: Double, _ t2: Double, _ t3: Double, _ t4: Double) -> String {
    (sequential ? "analysis " + us(t1 - t0, n) + "  stubs " + us(t2 - t1, m) : "analysis and stubs " + us(t2 - t0, m))
        + "  relocate batch " + us(t3 - t2, m) + "  restore batch " + us(t4 - t3, m)
}
print("us/function (wall): " + phases(w0, w1, w2, w3, w4))
print("us/function (cpu):  " + phases(c0, c1, c2, c3, c4))
print("page faults: " + (sequential ? "analysis \(f1 - f0)  stubs \(f2 - f1)" : "analysis and stubs \(f2 - f0)")
      + "  relocate batch \(f3 - f2)  restore batch \(f4 - f3)")
print("total us/function (analysis, stub, relocate, restore): " + us(w4 - w0, m))
print("total cpu us/function: " + us(c4 - c0, m))
exit(relocated.failed.isEmpty && restored.failed.isEmpty ? 0 : 1)
