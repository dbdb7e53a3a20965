// Prologue relocation verdicts (PrologueRelocation.swift) on compiled
// fixtures: the assembly shapes of Tests/Fixtures/relocation/prologues.c get
// their exact verdict; gcc, clang and swiftc code gets the verdict its
// disassembly implies; the moved instructions' boundaries equal objdump's.
// Coverage on the toolchain's libswiftCore.so and swift-format is printed.
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class PrologueRelocationTests: XCTestCase {
    func verdicts(_ path: String) throws -> [String: ObjectRelocations.Entry] {
        let relocations = try ElfObject(path: path).prologueRelocations()
        return Dictionary(relocations.entries.map { (relocations.symbol(of: $0), $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Link-time addresses of symbols, from nm (an oracle sharing no code).
    func nmAddresses(_ path: String) throws -> [String: UInt] {
        let result = try Fixtures.run(["/usr/bin/nm", "--defined-only", path])
        var out: [String: UInt] = [:]
        for line in result.stdout.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 3, let address = UInt(fields[0], radix: 16) { out[String(fields[2])] = address }
        }
        return out
    }

    /// Instruction offsets of `symbol` as objdump decodes them.
    func objdumpOffsets(_ path: String, _ symbol: String, address: UInt) throws -> [Int] {
        let result = try Fixtures.run(["/usr/bin/objdump", "-d", "--no-show-raw-insn", "--disassemble=\(symbol)", path])
        var offsets: [Int] = []
        for line in result.stdout.split(separator: "\n") {
            let trimmed = line.drop { $0 == " " }
            guard let colon = trimmed.firstIndex(of: ":"), line.hasPrefix(" "),
                  let value = UInt(trimmed[..<colon], radix: 16) else { continue }
            offsets.append(Int(value - address))
        }
        return offsets
    }

    func testAssemblyShapesGetTheirExactVerdicts() throws {
        let lib = try Fixtures.compile(["relocation/prologues.c"], compiler: "gcc", flags: ["-O2", "-shared", "-fPIC"], output: "prologues-asm.so")
        let v = try verdicts(lib)
        let nm = try nmAddresses(lib)
        func success(_ name: String) throws -> PrologueRelocation {
            let entry = try XCTUnwrap(v[name], name)
            switch entry.verdict {
            case let .success(r): return r
            case let .failure(reason): XCTFail("\(name): refused: \(reason)"); throw reason
            }
        }
        func refusal(_ name: String) -> RelocationRefusal? {
            guard case let .failure(reason)? = v[name]?.verdict else { XCTFail("\(name): not refused"); return nil }
            return reason
        }
        let load = try success("rel_rip_load")
        XCTAssertEqual(load.instructions.map(\.offset), [0])
        XCTAssertEqual(load.instructions.first?.fixup, .ripRelative(dispOffset: 2, target: try XCTUnwrap(nm["rel_counter"])))
        let lea = try success("rel_rip_lea")
        XCTAssertEqual(lea.instructions.first?.fixup, .ripRelative(dispOffset: 3, target: try XCTUnwrap(nm["rel_table"])))
        XCTAssertEqual(lea.relocatedLength, 7)
        let inside = try success("rel_jcc_inside")
        XCTAssertEqual(inside.instructions.map(\.offset), [0, 2, 4])
        XCTAssertEqual(inside.instructions[1].fixup, .conditionalJump(condition: 0x8, target: inside.functionAddress + 9))
        let after = try success("rel_jcc_after")
        XCTAssertEqual(after.relocatedLength, 5)
        XCTAssertEqual(after.instructions.map(\.fixup), [.none, .none])
        let endbr = try success("rel_endbr")
        XCTAssertTrue(endbr.hasEndbr)
        XCTAssertEqual(endbr.patchAddress, endbr.functionAddress + 4)
        XCTAssertEqual(endbr.instructions.map(\.offset), [0, 1, 4])
        let jmp = try success("rel_jmp_inside")
        XCTAssertEqual(jmp.instructions[1].fixup, .jump(target: jmp.functionAddress + 5))

        XCTAssertEqual(refusal("rel_call_first"), .cannotMove(offset: 0, mnemonic: "call"))
        XCTAssertEqual(refusal("rel_short"), .tooShort(size: 3))
        XCTAssertEqual(refusal("rel_loop_entry"), .branchToEntry(from: 3))
        XCTAssertEqual(refusal("rel_branch_into"), .branchIntoRelocated(from: 8, to: 2))
        XCTAssertEqual(refusal("rel_jrcxz"), .cannotMove(offset: 0, mnemonic: "jrcxz"))
        XCTAssertEqual(refusal("rel_undecodable"), .undecodable(offset: 0))
        XCTAssertEqual(refusal("rel_syscall_inside"), .cannotMove(offset: 2, mnemonic: "system call"))
        XCTAssertEqual(try success("rel_pause2").instructions.map(\.offset), [0, 2, 4])
        // Bytes that do not decode after the moved ones: refused only when
        // the byte scan finds a possible branch into them (rule 4).
        XCTAssertEqual(try success("rel_data_tail").relocatedLength, 5)
        XCTAssertEqual(refusal("rel_data_candidate"), .undecodable(offset: 6))
        let decodedWhole = try ElfObject(path: lib).prologueRelocations(fullBodyScan: true)
        XCTAssertEqual(decodedWhole.entries.first { decodedWhole.symbol(of: $0) == "rel_data_tail" }?.verdict, .failure(.undecodable(offset: 6)))

        let tracer = try ElfObject(path: lib).prologueRelocations(tracer: true)
        XCTAssertFalse(tracer.entries.isEmpty)
        XCTAssertTrue(tracer.entries.allSatisfy { if case .failure(.tracerCode) = $0.verdict { true } else { false } })
    }

    func testListShowsFunctionsWithoutSitesAsDynamicWithVerdictAndSummary() throws {
        let lib = try Fixtures.compile(["relocation/prologues.c"], compiler: "gcc", flags: ["-O2", "-shared", "-fPIC"], output: "prologues-list.so")
        let result = try Fixtures.run([Fixtures.livetraceExecutable, "list", "--no-lines", lib])
        XCTAssertEqual(result.status, 2, "no compiler-made site: the exit status stays 'no sites'")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        func row(_ name: String) -> [String]? {
            lines.first { $0.split(separator: " ").count > 3 && $0.split(separator: " ")[3] == name }?
                .split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        }
        XCTAssertEqual(row("rel_rip_load")?[1...2], ["dynamic", "yes"])
        XCTAssertTrue(lines.contains { $0.contains("rel_rip_load") && $0.hasSuffix("(relocatable: 6 bytes moved)") })
        XCTAssertEqual(row("rel_call_first")?[1...2], ["dynamic", "no"])
        XCTAssertTrue(lines.contains { $0.contains("rel_call_first") && $0.hasSuffix("(not relocatable: call at +0 cannot be moved)") })
        let verdicts = try ElfObject(path: lib).prologueRelocations()
        let relocatable = verdicts.entries.filter { if case .success = $0.verdict { true } else { false } }.count
        let summary = try XCTUnwrap(lines.first { $0.hasPrefix("summary:") })
        XCTAssertTrue(summary.contains("; dynamic: \(relocatable) relocatable, \(verdicts.entries.count - relocatable) refused ("), summary)
        XCTAssertTrue(summary.contains("cannot-move: 4"), summary)
    }

    func testListJSONCarriesTheRelocationVerdictOfEachFunctionWithoutASite() throws {
        let lib = try Fixtures.compile(["relocation/prologues.c"], compiler: "gcc", flags: ["-O2", "-shared", "-fPIC"], output: "prologues-json.so")
        let result = try Fixtures.run([Fixtures.livetraceExecutable, "list", "--json", "--no-lines", lib])
        XCTAssertEqual(result.status, 2, result.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(json["version"] as? Int, 2)
        let object = try XCTUnwrap((json["objects"] as? [[String: Any]])?.first)
        let functions = try XCTUnwrap(object["functions_without_sites"] as? [[String: Any]])
        func entry(_ name: String) throws -> [String: Any] { try XCTUnwrap(functions.first { $0["symbol"] as? String == name }, name) }

        let moved = try entry("rel_rip_load")
        XCTAssertEqual(moved["kind"] as? String, "dynamic")
        XCTAssertEqual(moved["usable"] as? Bool, true)
        XCTAssertTrue(moved["rejection"] is NSNull)
        let relocation = try XCTUnwrap(moved["relocation"] as? [String: Any])
        XCTAssertEqual(relocation["relocatable"] as? Bool, true)
        XCTAssertEqual(relocation["moved_bytes"] as? Int, 6)

        let refused = try XCTUnwrap(try entry("rel_call_first")["relocation"] as? [String: Any])
        XCTAssertEqual(refused["relocatable"] as? Bool, false)
        XCTAssertEqual(refused["code"] as? String, "cannot-move")

        // The summary agrees with the analysis the patcher runs, not with the CLI's own counting.
        let verdicts = try ElfObject(path: lib).prologueRelocations()
        let relocatable = verdicts.entries.filter { if case .success = $0.verdict { true } else { false } }.count
        let dynamic = try XCTUnwrap((object["summary"] as? [String: Any])?["dynamic"] as? [String: Any])
        XCTAssertEqual(dynamic["relocatable"] as? Int, relocatable)
        XCTAssertEqual(dynamic["refused"] as? Int, verdicts.entries.count - relocatable)
        XCTAssertEqual((dynamic["refused_by_reason"] as? [String: Int])?["cannot-move"], 4)
        XCTAssertNil(object["siteSources"], "keys are snake_case since version 2")
    }

    func testCompiledCFunctionsAreRelocatedOnObjdumpsInstructionBoundaries() throws {
        for compiler in ["gcc", "clang"] {
            for level in ["-O0", "-O2"] {
                let lib = try Fixtures.compile(["relocation/prologues.c"], compiler: compiler, flags: [level, "-shared", "-fPIC"],
                                               output: "prologues-\(compiler)\(level).so")
                let v = try verdicts(lib)
                let expected = level == "-O0" ? ["c_mix", "c_sum", "c_calls", "rel_helper"] : ["c_mix", "c_sum"]
                for name in expected {
                    let entry = try XCTUnwrap(v[name])
                    guard case let .success(r) = entry.verdict else {
                        XCTFail("\(compiler) \(level) \(name): \(entry.verdict)"); continue
                    }
                    try checkBoundaries(lib, name, r)
                }
                if level == "-O2" {
                    // lea eax, [rdi + 1]; ret
                    XCTAssertEqual(v["rel_helper"].flatMap { try? $0.verdict.get() }, nil)
                    if case let .failure(reason)? = v["rel_helper"]?.verdict { XCTAssertEqual(reason, .tooShort(size: 4)) }
                }
            }
        }
    }

    func testSwiftFunctionsAreRelocatedAtOnoneAndO() throws {
        for level in ["-Onone", "-O"] {
            let lib = try Fixtures.compile(["relocation/prologues.swift"], compiler: "swiftc",
                                           flags: [level, "-emit-library", "-module-name", "Reloc"], output: "libreloc\(level).so")
            let v = try verdicts(lib)
            for name in ["$s5Reloc7relAreaySiAA5PointVF", "$s5Reloc6relSumySiSaySiGF", "$s5Reloc10RelCounterC4bump2byS2i_tF"] {
                let entry = try XCTUnwrap(v[name], "\(level) \(name) missing")
                guard case let .success(r) = entry.verdict else { XCTFail("\(level) \(name): \(entry.verdict)"); continue }
                try checkBoundaries(lib, name, r)
            }
            let summary = try ElfObject(path: lib).prologueRelocations().summary()
            XCTAssertGreaterThan(summary.relocatable, 0)
        }
    }

    /// Async functions, their await/suspend partial functions and coroutine
    /// continuations are relocated like any function and named entry-only
    /// (`EntryOnly.isSwiftAsync`: the function graph never hooks their
    /// return); an ordinary function beside them is relocated and not.
    func testSwiftAsyncFunctionsAndContinuationsAreRelocatedAndEntryOnly() throws {
        let lib = try Fixtures.compile(["relocation/async.swift"], compiler: "swiftc",
                                       flags: ["-O", "-emit-library", "-module-name", "RelAsync"], output: "librelasync.so")
        let v = try verdicts(lib)
        let plain = try XCTUnwrap(v["$s8RelAsync8relPlainyS2iF"], "relPlain missing: \(v.keys.sorted())")
        guard case .success = plain.verdict else { return XCTFail("relPlain: \(plain.verdict)") }
        // relAsync(_:) (its name mangled with a word substitution:
        // $s8RelAsync03relB0yS2iYaF), its partial functions (…TQ0_, …TY1_),
        // and the _read/_modify coroutines' continuations (….resume.0).
        let asyncNames = v.keys.filter { $0.hasPrefix("$s8RelAsync03relB0yS2iYaF") || $0.contains(".resume.") }
        XCTAssertGreaterThanOrEqual(asyncNames.filter { $0.contains("YaF") }.count, 3, "the async function and its partial functions: \(v.keys.sorted())")
        XCTAssertGreaterThanOrEqual(asyncNames.filter { $0.contains(".resume.") }.count, 2, "the coroutines' continuations: \(v.keys.sorted())")
        for name in asyncNames {
            XCTAssertTrue(EntryOnly.isSwiftAsync(name), name)
            switch v[name]?.verdict {
            case .success?, .failure(.tooShort)?: break  // a continuation may be a lone ret
            default: XCTFail("\(name): \(String(describing: v[name]?.verdict))")
            }
        }
        XCTAssertFalse(EntryOnly.isSwiftAsync("$s8RelAsync8relPlainyS2iF"))
        XCTAssertTrue(EntryOnly.isSwiftAsync("$s8RelAsync6RelBoxV5twiceSivM.resume.0"))
        XCTAssertFalse(EntryOnly.isSwiftAsync("relPlain"), "C names are never taken for Swift async")
        // Reabstraction thunks of async closures (implementation type with
        // H) and the async main's entry; a synchronous thunk is not.
        XCTAssertTrue(EntryOnly.isSwiftAsync("$sIetH_yts5Error_pIegHrzo_TR"))
        XCTAssertTrue(EntryOnly.isSwiftAsync("$sxIeAgHr_xs5Error_pIegHrzo_s8SendableRzlTRTA"))
        XCTAssertTrue(EntryOnly.isSwiftAsync("async_Main"))
        XCTAssertFalse(EntryOnly.isSwiftAsync("$sSiIegd_SiIegr_TR"))
    }

    /// The one-pass marker search of `EntryOnly.isSwiftAsync` gives, on
    /// every function symbol of libswiftCore and swift-format (from `nm`),
    /// the verdict of a reference written with `String.contains`, one
    /// search per marker (the rule in PrologueRelocation.swift).
    func testEntryOnlyMarkerSearchEqualsAPlainReferenceOnEveryToolchainSymbol() throws {
        func reference(_ name: String) -> Bool {
            if name.contains(".resume.") || name.hasPrefix("async_Main") { return true }
            guard ["$s", "_$s", "$S", "_$S"].contains(where: { name.hasPrefix($0) }) else { return false }
            if name.contains("Ya") || name.contains("TQ") || name.contains("TY") { return true }
            // An implementation function type `I…_` of lower-case letters holding an `H`.
            return name.contains("TR") && name.contains(/I[a-z]*H[a-zH]*_/)
        }
        let objects = try Self.toolchainSwiftObjects()
        for path in [objects[0], objects[3]] {
            let listing = try Fixtures.run(["/usr/bin/env", "nm", "--defined-only", path]).stdout
            let names = listing.split(separator: "\n").compactMap { line -> String? in
                let fields = line.split(separator: " ")
                return fields.count == 3 && "tTwW".contains(fields[1]) ? String(fields[2]) : nil
            }
            XCTAssertGreaterThan(names.count, 10_000, path)
            let asyncCount = names.filter { EntryOnly.isSwiftAsync($0) }.count
            XCTAssertGreaterThan(asyncCount, 0, path)
            for name in names where EntryOnly.isSwiftAsync(name) != reference(name) {
                XCTFail("\(path): \(name): isSwiftAsync \(EntryOnly.isSwiftAsync(name)), reference \(reference(name))")
            }
        }
    }

    func checkBoundaries(_ lib: String, _ name: String, _ r: PrologueRelocation) throws {
        let offsets = try objdumpOffsets(lib, name, address: r.functionAddress)
        let start = r.hasEndbr ? 4 : 0
        let moved = r.instructions.map { $0.offset + start }
        XCTAssertEqual(Array(offsets.prefix(moved.count + (r.hasEndbr ? 1 : 0))), (r.hasEndbr ? [0] : []) + moved, name)
        XCTAssertTrue(offsets.contains(start + r.relocatedLength), "\(name): the moved bytes do not end on an instruction")
    }

    /// libswiftCore, libFoundation, libFoundationEssentials and swift-format
    /// of the Swift toolchain on PATH.
    /// A program's entry point (`_start`, the header's e_entry) is refused,
    /// `entry-point`: it is entered with argc, not a return address, at the
    /// stack pointer. It is the only function refused so.
    func testTheProgramsEntryPointIsRefused() throws {
        let path = try Fixtures.compile(["discovery/sites.c"], compiler: "gcc", flags: ["-O1"], output: "reloc-entry-point.exe")
        let relocations = try ElfObject(path: path).prologueRelocations()
        let start = try XCTUnwrap(relocations.entries.first { relocations.symbol(of: $0) == "_start" })
        XCTAssertEqual(start.verdict, .failure(.entryPoint))
        XCTAssertEqual(relocations.entries.filter { $0.verdict == .failure(.entryPoint) }.count, 1)
    }

    /// The function index under the analysis (symbol tables that list
    /// locals first, sorted by address with a radix sort; names left in the
    /// string table and read only through `symbol(of:)`) against binutils:
    /// on libswiftCore and swift-format, every analyzed function is a text
    /// symbol `nm` lists at that address under that name, every address `nm`
    /// lists a text symbol at is analyzed, and the entries ascend.
    func testAnalyzedFunctionsAreNmsTextSymbolsInAddressOrder() throws {
        let objects = try Self.toolchainSwiftObjects()
        for path in [objects[0], objects[3]] {
            guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) is not installed") }
            var nm: [UInt: Set<String>] = [:]
            for line in try Fixtures.run(["/usr/bin/env", "nm", "--defined-only", path]).stdout.split(separator: "\n") {
                let fields = line.split(separator: " ")
                guard fields.count == 3, "tTwWi".contains(fields[1]), let address = UInt(fields[0], radix: 16), address != 0 else { continue }
                nm[address, default: []].insert(String(fields[2]))
            }
            let relocations = try ElfObject(path: path).prologueRelocations(threads: 2)
            XCTAssertGreaterThan(relocations.entries.count, 10_000, path)
            XCTAssertTrue(zip(relocations.entries, relocations.entries.dropFirst()).allSatisfy { $0.functionAddress < $1.functionAddress },
                          "\(path): entries ascend, one per address")
            for entry in relocations.entries where nm[entry.functionAddress]?.contains(relocations.symbol(of: entry)) != true {
                XCTFail("\(path): \(relocations.symbol(of: entry)) at 0x\(String(entry.functionAddress, radix: 16)); nm: \(nm[entry.functionAddress] ?? [])")
                break
            }
            XCTAssertEqual(Set(relocations.entries.map(\.functionAddress)), Set(nm.keys), path)
        }
    }

    static func toolchainSwiftObjects() throws -> [String] {
        let swift = try Fixtures.run(["/usr/bin/env", "which", "swift"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let toolchain = URL(fileURLWithPath: swift).resolvingSymlinksInPath().deletingLastPathComponent()
        return [toolchain.appendingPathComponent("../lib/swift/linux/libswiftCore.so").standardized.path,
                toolchain.appendingPathComponent("../lib/swift/linux/libFoundation.so").standardized.path,
                toolchain.appendingPathComponent("../lib/swift/linux/libFoundationEssentials.so").standardized.path,
                toolchain.appendingPathComponent("swift-format").path]
    }

    /// Share of the functions of ≥ 5 bytes relocated, and the refusals by reason.
    /// The issue's target: at least 95% of the functions of 5 bytes or more
    /// of libswiftCore, Foundation (libFoundation and libFoundationEssentials)
    /// and swift-format (about 60,000 functions)
    /// can be relocated.
    func testCoverageOnLibswiftCoreFoundationAndSwiftFormat() throws {
        let objects = try Self.toolchainSwiftObjects()
        for path in objects {
            guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) is not installed") }
            let start = Date()
            let summary = try ElfObject(path: path).prologueRelocations().summary()
            let seconds = Date().timeIntervalSince(start)
            let share = Double(summary.relocatable) / Double(max(summary.functions, 1))
            let reasons = summary.refusedByReason.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            print("relocation coverage: \(path): \(summary.relocatable) of \(summary.functions) functions of >= 5 bytes (\(String(format: "%.1f", share * 100))%); refused: \(reasons); analysis \(String(format: "%.2f", seconds)) s")
            XCTAssertGreaterThanOrEqual(share, 0.95, path)
        }
    }

    /// The file's analysis moved to the load address equals the analysis of
    /// the loaded bytes, function by function (what lets a batch analyze
    /// once, from the file): libFoundation as this process loaded it. Each
    /// stub's announced length is the length of the bytes built.
    func testRebasedFileAnalysisEqualsTheLiveAnalysisOfTheLoadedObject() throws {
        let swift = try Fixtures.run(["/usr/bin/env", "which", "swift"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let toolchain = URL(fileURLWithPath: swift).resolvingSymlinksInPath().deletingLastPathComponent()
        let path = toolchain.appendingPathComponent("../lib/swift/linux/libFoundation.so").standardized.path
        guard FileManager.default.fileExists(atPath: path), let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw XCTSkip("\(path) cannot be loaded")
        }
        defer { dlclose(handle) }
        let relocations = try ElfObject(path: path).prologueRelocations()
        let exported = try XCTUnwrap(relocations.entries.first { dlsym(handle, relocations.symbol(of: $0)) != nil })
        let bias = UInt(bitPattern: dlsym(handle, relocations.symbol(of: exported))) &- exported.functionAddress
        var compared = 0, withFixups = 0
        for entry in relocations.entries {
            guard case let .success(relocation) = entry.verdict else { continue }
            let live = PrologueRelocation.analyze(functionAt: entry.functionAddress &+ bias, size: entry.size)
            XCTAssertEqual(live, .success(relocation.rebased(by: bias)), relocations.symbol(of: entry))
            let moved = relocation.rebased(by: bias)
            XCTAssertEqual(moved.stubLength, try moved.stubBytes(at: moved.functionAddress).bytes.count, relocations.symbol(of: entry))
            compared += 1
            if relocation.instructions.contains(where: { $0.fixup != .none }) { withFixups += 1 }
        }
        XCTAssertGreaterThan(compared, 10_000)
        XCTAssertGreaterThan(withFixups, 100, "rip-relative and branch fixups were compared too")
    }

    /// The analysis shared by threads gives the same entries, in the same
    /// order, as one thread: swift-format (about 63,000 functions, 4 threads
    /// whatever the cores), and a set of `only` addresses.
    func testAnalysisOnSeveralThreadsEqualsTheAnalysisOnOne() throws {
        let swift = try Fixtures.run(["/usr/bin/env", "which", "swift"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let path = URL(fileURLWithPath: swift).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("swift-format").path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) is not installed") }
        let object = try ElfObject(path: path)
        let oneThread = try object.prologueRelocations(), fourThreads = try object.prologueRelocations(threads: 4)
        let one = oneThread.entries, four = fourThreads.entries
        XCTAssertGreaterThan(one.count, 4 * 2048)
        XCTAssertEqual(one.count, four.count)
        for (a, b) in zip(one, four) {
            let symbol = oneThread.symbol(of: a)
            XCTAssertTrue(a.functionAddress == b.functionAddress && a.size == b.size && symbol == fourThreads.symbol(of: b)
                          && a.verdict == b.verdict, symbol)
        }
        let only = Set(one.indices.filter { $0 % 3 == 0 }.map { one[$0].functionAddress })
        let some = try object.prologueRelocations(only: only, threads: 4).entries
        XCTAssertEqual(some.map(\.functionAddress), one.map(\.functionAddress).filter { only.contains($0) })
    }
}
