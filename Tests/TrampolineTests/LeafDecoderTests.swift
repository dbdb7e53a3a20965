// The leaf decoder (LeafCallbackX86_64.swift) against a reference: objdump's
// disassembly of real compiled code. Every instruction the decoder accepts
// must have objdump's length, objdump's branch target, a whitelisted
// mnemonic, and every register objdump names among the decoder's mentioned
// registers; and rcx must be proven written before a leaf mentions it.
import Foundation
import Glibc
import LiveTrace
@testable import LiveTraceTrampolines
import TestSupport
import LiveTraceSites
import XCTest

final class LeafDecoderTests: XCTestCase {
    struct Line {
        var address: UInt
        var length: Int
        var text: String
    }

    /// objdump -d of `path`, as (address, length, text) for every
    /// instruction whose successor in the same block gives its length.
    static func disassemble(_ path: String, maxLines: Int) throws -> [Line] {
        let result = try Fixtures.run(["/usr/bin/objdump", "-d", "--no-show-raw-insn", "-w", path])
        XCTAssertEqual(result.status, 0, result.stderr)
        var lines: [Line] = []
        var previous: (address: UInt, text: String)?
        var count = 0
        for raw in result.stdout.split(separator: "\n", omittingEmptySubsequences: false) {
            count += 1
            if count > maxLines { break }
            let parts = raw.split(separator: "\t", maxSplits: 1)
            guard parts.count == 2, let colon = parts[0].lastIndex(of: ":"),
                  let address = UInt(parts[0][..<colon].trimmingCharacters(in: .whitespaces), radix: 16) else {
                previous = nil                                   // a block ends: lengths unknown
                continue
            }
            if let p = previous { lines.append(Line(address: p.address, length: Int(address - p.address), text: p.text)) }
            previous = (address, String(parts[1]))
        }
        return lines
    }

    static let registerNames: [String: GPR] = {
        var names: [String: GPR] = [:]
        let legacy: [(GPR, [String])] = [
            (.rax, ["rax", "eax", "ax", "al", "ah"]), (.rcx, ["rcx", "ecx", "cx", "cl", "ch"]),
            (.rdx, ["rdx", "edx", "dx", "dl", "dh"]), (.rbx, ["rbx", "ebx", "bx", "bl", "bh"]),
            (.rsp, ["rsp", "esp", "sp", "spl"]), (.rbp, ["rbp", "ebp", "bp", "bpl"]),
            (.rsi, ["rsi", "esi", "si", "sil"]), (.rdi, ["rdi", "edi", "di", "dil"]),
        ]
        for (register, list) in legacy { for name in list { names[name] = register } }
        for n in 8...15 { for suffix in ["", "d", "w", "b"] { names["r\(n)\(suffix)"] = GPR(rawValue: n)! } }
        return names
    }()

    /// Mnemonic roots of the whitelist, as objdump (AT&T) spells them.
    static let whitelistRoots = ["add", "adc", "sub", "sbb", "and", "or", "xor", "cmp", "test", "inc", "dec",
                                 "neg", "not", "shl", "shr", "sar", "sal", "rol", "ror", "rcl", "rcr", "imul",
                                 "set", "cmov", "xchg", "xadd", "cmpxchg", "push", "pop", "j", "ret", "lea",
                                 "nop", "endbr64", "mov", "cltq", "cqto", "cltd", "cwtl", "cbtw", "cwtd",
                                 "lfence", "mfence", "sfence"]
    static let ignoredPrefixes: Set<String> = ["lock", "cs", "ds", "ss", "es", "data16", "rex", "rex.W", "rex.B", "repz", "rep", "bnd", "notrack"]

    func check(_ path: String, base: UInt, maxLines: Int) throws -> (accepted: Int, total: Int) {
        let lines = try Self.disassemble(path, maxLines: maxLines)
        XCTAssertGreaterThan(lines.count, 10, path)
        var accepted = 0
        for line in lines {
            let address = base + line.address
            guard let bytes = try? Sys.readOwnMemory(at: address, count: 15), !bytes.isEmpty,
                  let instruction = try? X86Instruction.decode(bytes, at: address) else { continue }
            accepted += 1
            let where_ = "\(path) 0x\(String(line.address, radix: 16)): \(line.text)"
            XCTAssertEqual(instruction.length, line.length, "length of \(where_)")
            let tokens = line.text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            let mnemonic = tokens.first { !Self.ignoredPrefixes.contains($0) } ?? ""
            XCTAssertTrue(Self.whitelistRoots.contains { mnemonic.hasPrefix($0) }, "accepted outside the whitelist: \(where_)")
            for forbidden in ["%xmm", "%ymm", "%zmm", "%mm", "%st", "%fs", "%gs", "%es:"] {
                XCTAssertFalse(line.text.contains(forbidden), "accepted \(forbidden): \(where_)")
            }
            // Multi-byte nops (and `66 90`) name registers they never access.
            if mnemonic.hasPrefix("nop") || line.text.contains("%ax,%ax") { continue }
            // Every register objdump names must be mentioned.
            var named = GPRSet()
            var rest = Substring(line.text)
            while let percent = rest.firstIndex(of: "%") {
                let name = rest[rest.index(after: percent)...].prefix { $0.isLetter || $0.isNumber }
                if let register = Self.registerNames[String(name)] { named.insert(GPRSet(register)) }
                rest = rest[rest.index(after: percent)...]
            }
            XCTAssertTrue(instruction.mentioned.isSuperset(of: named),
                          "mentioned \(instruction.mentioned) misses \(named.subtracting(instruction.mentioned)): \(where_)")
            // Branch targets: objdump prints the link-time target.
            switch instruction.flow {
            case let .jump(target), let .conditional(target):
                let printed = tokens.dropFirst().first { UInt($0, radix: 16) != nil }.flatMap { UInt($0, radix: 16) }
                XCTAssertEqual(target, printed.map { base + $0 }, "branch target of \(where_)")
            case .return:
                XCTAssertTrue(mnemonic.hasPrefix("ret"), where_)
            case .next:
                break
            }
        }
        return (accepted, lines.count)
    }

    func testDecoderAgreesWithObjdumpOnEveryInstructionItAcceptsInGccClangAndLibcCode() throws {
        var report: [String] = []
        for compiler in ["gcc", "clang"] {
            let handle = try LeafStubTests.leafLibrary(compiler)
            _ = handle
            let path = try Self.mappedPath(where: { $0.hasSuffix("/libltfix_leaf_\(compiler).so") })
            let (accepted, total) = try check(path, base: try Self.loadBase(where: { $0 == path }), maxLines: .max)
            report.append("\(compiler) fixture \(accepted)/\(total)")
        }
        // libc: a large body of real optimized code (the first 60,000 lines;
        // all of it with LIVETRACE_SOAK=1).
        let libc = try Self.mappedPath(where: { $0.hasSuffix("/libc.so.6") })
        let (accepted, total) = try check(libc, base: try Self.loadBase(where: { $0 == libc }), maxLines: LoadTests.soak ? .max : 60_000)
        XCTAssertGreaterThan(accepted, total / 4, "most of libc's instructions are plain integer code")
        report.append("libc \(accepted)/\(total)")
        print("decoder vs objdump, instructions accepted/compared: " + report.joined(separator: ", "))
    }

    /// (start, file offset, path) of every file mapping of this process.
    static func mappings() throws -> [(start: UInt, offset: UInt, path: String)] {
        try ProcessMaps.read().filter(\.isFile).map { ($0.start, UInt($0.offset), $0.path) }
    }

    static func mappedPath(where matches: (String) -> Bool) throws -> String {
        guard let mapping = try mappings().first(where: { matches($0.path) }) else {
            throw FixtureError.compileFailed(command: "find in /proc/self/maps", output: "no such mapping")
        }
        return mapping.path
    }

    /// The load base of a mapped ELF file: its mapping at file offset 0.
    static func loadBase(where matches: (String) -> Bool) throws -> UInt {
        guard let mapping = try mappings().first(where: { $0.offset == 0 && matches($0.path) }) else {
            throw FixtureError.compileFailed(command: "find in /proc/self/maps", output: "no mapping at offset 0")
        }
        return mapping.start
    }

    func testRcxIsAllowedOnlyWhenWrittenBeforeReadOnEveryPath() throws {
        let library = try TrampolineFixtures.library("ltfix_leaf_clobber", sources: ["leaf_clobber.S"])
        func verdict(_ name: String) -> Result<LeafCallback, LeafRejection> {
            LeafCallbackAnalysis.analyze(UInt(bitPattern: TrampolineFixtures.address(library, name)))
        }
        guard case let .success(scratch) = verdict("lt_leaf_rcx_scratch_callback") else {
            return XCTFail("rcx zeroed first: \(verdict("lt_leaf_rcx_scratch_callback"))")
        }
        XCTAssertTrue(scratch.saved.contains(GPRSet(.rcx)), "the stub saves rcx when the callback uses it")
        XCTAssertEqual(LeafStubTests.failure(verdict("lt_leaf_rcx_one_path_callback")), .readsRegisters,
                       "rcx written on one path only")
    }

    func testRcxCountsAsWrittenAfterAnyWholeWriteThatDoesNotReadIt() throws {
        let library = try TrampolineFixtures.library("ltfix_leaf_clobber", sources: ["leaf_clobber.S"])
        func verdict(_ name: String) -> Result<LeafCallback, LeafRejection> {
            LeafCallbackAnalysis.analyze(UInt(bitPattern: TrampolineFixtures.address(library, name)))
        }
        guard case let .success(moved) = verdict("lt_leaf_rcx_moved_callback") else {
            return XCTFail("`mov %edi, %ecx` (89 f9) writes rcx whole: \(verdict("lt_leaf_rcx_moved_callback"))")
        }
        XCTAssertEqual(moved.saved, [GPRSet(.rcx), GPRSet(.rdi)])
        XCTAssertEqual(LeafStubTests.failure(verdict("lt_leaf_rcx_partial_callback")), .readsRegisters, "cl only")
        XCTAssertEqual(LeafStubTests.failure(verdict("lt_leaf_rcx_self_callback")), .readsRegisters, "lea reads rcx")
    }
}
