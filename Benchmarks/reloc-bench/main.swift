// Full-dynamic patching cost (Benchmarks/reloc-batch.sh): for every function
// of a shared object loaded in this process, the relocation analysis (from
// the file, then live), the stubs, one batch relocating every relocatable
// entry with threads of the process running, one batch restoring them.
// Prints microseconds per function for each phase and in total.
// Usage: livetrace-reloc-bench OBJECT.so
import Glibc
import LiveTrace

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

func fail(_ message: String, status: Int32 = 1) -> Never {
    let text = Array("livetrace-reloc-bench: \(message)\n".utf8)
    _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(status)
}

let arguments = CommandLine.arguments
guard arguments.count == 2 else { fail("usage: livetrace-reloc-bench OBJECT.so", status: 2) }
let path = arguments[1]
guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else { fail(String(cString: dlerror())) }

let t0 = now()
let relocations: ObjectRelocations
do { relocations = try ElfObject(path: path).prologueRelocations() } catch {
    fail("\(error)")
}
let t1 = now()
// The load bias, from the first exported function dlsym finds.
var bias: UInt = 0
var found = false
for entry in relocations.entries {
    if let address = dlsym(handle, entry.symbol) {
        bias = UInt(bitPattern: address) &- entry.functionAddress
        found = true
        break
    }
}
if !found { fail("no exported function in \(path)") }
let arena = RelocatedStubArena()
var live: [(relocation: PrologueRelocation, symbol: String)] = []
var refusedLive = 0
for entry in relocations.entries where entry.size >= 5 {
    guard case .success = entry.verdict else { continue }
    // The live analysis reads the loaded bytes: what the text poke verifies.
    switch PrologueRelocation.analyze(functionAt: UInt(bias) + entry.functionAddress, size: entry.size) {
    case let .success(relocation): live.append((relocation, entry.symbol))
    case .failure: refusedLive += 1
    }
}
var entries: [RelocatedEntry] = []
for placed in arena.place(live) {
    if case let .success(entry) = placed { entries.append(entry) } else { refusedLive += 1 }
}
let t2 = now()
let relocated = TextPoker.shared.relocate(entries)
let t3 = now()
let restored = TextPoker.shared.restore(entries)
let t4 = now()
let summary = relocations.summary()
let n = Double(summary.functions)
let m = Double(max(entries.count, 1))
func fixed(_ value: Double) -> String {
    let hundredths = Int((value * 100).rounded())
    let fraction = hundredths % 100
    return "\(hundredths / 100)." + (fraction < 10 ? "0" : "") + "\(fraction)"
}
func us(_ seconds: Double, _ count: Double) -> String { fixed(seconds / count * 1e6) }
let share = fixed(Double(entries.count) / n * 100)
print("object: \(path)")
print("functions >= 5 bytes: \(summary.functions); relocatable: \(entries.count) (\(share)%); refused live: \(refusedLive)")
let counts = "relocated \(relocated.patchedCount), failed \(relocated.failed.count); restored \(restored.patchedCount), failed \(restored.failed.count)"
print(counts + "; threads rescued \(relocated.threadsRescued)")
let phases: String = "analysis(file) " + us(t1 - t0, n) + "  live analysis+stub " + us(t2 - t1, m)
    + "  relocate batch " + us(t3 - t2, m) + "  restore batch " + us(t4 - t3, m)
print("us/function: " + phases)
print("total us/function (analysis, stub, relocate, restore): " + us(t4 - t0, m))
exit(relocated.failed.isEmpty && restored.failed.isEmpty ? 0 : 1)
