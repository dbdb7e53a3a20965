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
// Usage: livetrace-reloc-bench OBJECT (RELOC_THREADS=N: analysis threads)
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
var handle: UnsafeMutableRawPointer?
var bias: UInt = 0
switch object.type {
case .sharedObject:
    guard let opened = dlopen(path, RTLD_NOW | RTLD_LOCAL) else { fail(String(cString: dlerror())) }
    handle = opened
case .pieExecutable:
    bias = mapExecutable(object, path: path)
case .executable:
    fail("\(path): a position-dependent executable cannot be mapped beside this program; give a shared object or a PIE")
}

let w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID), f0 = minorFaults()
let relocations: ObjectRelocations
// The analysis shares the online cores (a tool's process, not a traced one).
// RELOC_THREADS: another count (1: the analysis a traced process does).
let cores = getenv("RELOC_THREADS").flatMap { Int(String(cString: $0)) }.map { max(1, $0) }
    ?? max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
do { relocations = try object.prologueRelocations(threads: cores) } catch { fail("\(error)") }
let w1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID), f1 = minorFaults()
if let handle {
    // The load bias, from the first exported function dlsym finds.
    guard let entry = relocations.entries.first(where: { dlsym(handle, $0.symbol) != nil }) else {
        fail("no exported function in \(path)")
    }
    bias = UInt(bitPattern: dlsym(handle, entry.symbol)) &- entry.functionAddress
}
let w1b = now(CLOCK_MONOTONIC), c1b = now(CLOCK_PROCESS_CPUTIME_ID), f1b = minorFaults()
let arena = RelocatedStubArena()
var unplaced = 0
let entries = arena.placeEveryRelocatableFunction(of: relocations, loadBias: bias) { _, _ in unplaced += 1 }
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
print("object: \(path) (\(object.type.rawValue)); analysis on \(cores) threads")
print("functions >= 5 bytes: \(summary.functions); relocatable: \(entries.count) (\(share)%); stub not placed: \(unplaced)")
let counts = "relocated \(relocated.patchedCount), failed \(relocated.failed.count); restored \(restored.patchedCount), failed \(restored.failed.count)"
print(counts + "; threads rescued \(relocated.threadsRescued)")
// Phases per function they handle: the analysis every function (n), the
// others the relocated ones (m); the total, everything per relocated function.
print("us/function (wall): analysis " + us(w1 - w0, n) + "  stubs " + us(w2 - w1b, m)
      + "  relocate batch " + us(w3 - w2, m) + "  restore batch " + us(w4 - w3, m))
print("us/function (cpu):  analysis " + us(c1 - c0, n) + "  stubs " + us(c2 - c1b, m)
      + "  relocate batch " + us(c3 - c2, m) + "  restore batch " + us(c4 - c3, m))
print("page faults: analysis \(f1 - f0)  stubs \(f2 - f1b)  relocate batch \(f3 - f2)  restore batch \(f4 - f3)")
print("total us/function (analysis, stub, relocate, restore): " + us((w1 - w0) + (w4 - w1b), m))
print("total cpu us/function: " + us((c1 - c0) + (c4 - c1b), m))
exit(relocated.failed.isEmpty && restored.failed.isEmpty ? 0 : 1)
