// The body scan's byte pre-filter (PrologueRelocationX86_64.swift,
// `mayBranch`): it never misses a direct branch into the relocated bytes.
// Checked against Zydis's full decode, which shares none of its code: over
// the one- and two-byte opcode space with prefixes, and verdict by verdict
// on every function of the toolchain's libswiftCore, Foundation and
// swift-format.
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class RelocationScanTests: XCTestCase {
    /// Every instruction Zydis decodes with a relative immediate, whatever
    /// its prefixes, opcode and following bytes, has its target among the
    /// pre-filter's candidates for the same bytes.
    func testEveryRelativeImmediateZydisDecodesIsACandidate() {
        let prefixes: [[UInt8]] = [[], [0x66], [0x67], [0xf2], [0xf3], [0x48], [0x41], [0x66, 0x48], [0xf2, 0x66],
                                   [0x3e], [0x2e], [0x66, 0x67], [0xf3, 0x48], [0x66, 0x66, 0x66]]
        var openings: [[UInt8]] = (0...255).map { [UInt8($0)] }
        openings += (0...255).map { [0x0f, UInt8($0)] }
        openings += (0...255).map { [0x0f, 0x38, UInt8($0)] } + (0...255).map { [0x0f, 0x3a, UInt8($0)] }
        var generator = SystemRandomNumberGenerator()
        var relative = 0
        var forms = Set<[UInt8]>()
        for prefix in prefixes {
            for opening in openings {
                for lead: UInt8 in [0x00, 0x05, 0xf8, 0xc0, 0x80, 0xff] {
                    var bytes = prefix + opening + [lead]
                    for _ in 0..<12 { bytes.append(UInt8.random(in: 0...255, using: &generator)) }
                    bytes.withUnsafeBytes { code in
                        guard let target = PrologueRelocation.relativeTarget(ofInstructionIn: code) else { return }
                        relative += 1
                        forms.insert(opening)
                        XCTAssertTrue(PrologueRelocation.branchCandidates(in: code).contains(target),
                                      "\(bytes.map { String($0, radix: 16) }) -> \(target)")
                    }
                }
            }
        }
        // The forms of the proof's table, each seen.
        XCTAssertGreaterThan(relative, 1000)
        for opcode: UInt8 in [0x70, 0x7f, 0xeb, 0xe0, 0xe3, 0xe8, 0xe9] { XCTAssertTrue(forms.contains([opcode]), "\(opcode)") }
        XCTAssertTrue(forms.contains([0x0f, 0x80]) && forms.contains([0x0f, 0x8f]))
        XCTAssertTrue(forms.contains([0xc7]), "xbegin")
    }

    /// A candidate is only a reason to decode: the shapes the pre-filter
    /// must see and those it must not.
    func testCandidatesAreTheTargetsOfEachFormAtEveryPosition() {
        func may(_ bytes: [UInt8], _ end: Int) -> Bool {
            bytes.withUnsafeBytes { PrologueRelocation.mayBranch(into: end, code: $0) }
        }
        // jne -8 at offset 6: lands on 0.
        XCTAssertTrue(may([0x55, 0x48, 0x89, 0xe5, 0x90, 0x90, 0x75, 0xf8], 5))
        // jmp rel32 at 3 back to 2; call rel32 to 4.
        XCTAssertTrue(may([0x90, 0x90, 0x90, 0xe9, 0xfa, 0xff, 0xff, 0xff], 5))
        XCTAssertTrue(may([0x90, 0x90, 0x90, 0xe8, 0xfc, 0xff, 0xff, 0xff], 5))
        // jcc (0f 84) at 0, immediate 1: 6 + 1 = 7 read as rel32, 4 + 1 = 5
        // as rel16 (with a 66 prefix): neither lands in 0..<5.
        XCTAssertFalse(may([0x0f, 0x84, 0x01, 0x00, 0x00, 0x00, 0xc3, 0xc3], 5))
        XCTAssertTrue(may([0x0f, 0x84, 0x01, 0x00, 0x00, 0x00, 0xc3, 0xc3], 6))
        // A branch form whose immediate runs past the end is no candidate.
        XCTAssertFalse(may([0x90, 0x90, 0x90, 0x90, 0x90, 0xe9, 0xf0], 5))
        XCTAssertFalse(may([0x55, 0x48, 0x89, 0xe5, 0xc3], 5))
    }

    /// The verdict of every function with the pre-filter equals the verdict
    /// of the full decode of every body.
    func testPrefilteredVerdictsEqualTheFullScanOnLibswiftCoreFoundationAndSwiftFormat() throws {
        let objects = try PrologueRelocationTests.toolchainSwiftObjects()
        for path in objects {
            guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) is not installed") }
            let object = try ElfObject(path: path)
            let analysis = try object.prologueRelocations(threads: 2)
            let filtered = analysis.entries
            let full = try object.prologueRelocations(threads: 2, fullBodyScan: true).entries
            XCTAssertEqual(filtered.count, full.count, path)
            var differ = 0
            for (a, b) in zip(filtered, full) where a.verdict != b.verdict {
                differ += 1
                if differ <= 5 { XCTFail("\(path): \(analysis.symbol(of: a)): \(a.verdict) with the pre-filter, \(b.verdict) decoded whole") }
            }
            XCTAssertEqual(differ, 0, path)
            XCTAssertGreaterThan(full.count, 10_000, path)
        }
    }
}
