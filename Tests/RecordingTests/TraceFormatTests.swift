// The trace directory format: round trip with an injected clock, and clear
// errors for every kind of damage.
import Foundation
import LiveTraceRecording
import XCTest

final class TraceFormatTests: XCTestCase {
    /// A trace whose clock is injected: 1 tick = 2.5 ns from (tsc 1000,
    /// monotonic 5000).
    static func sampleTrace() -> Trace {
        let clock = ClockCalibration(
            start: ClockPair(tsc: 1_000, monotonicNs: 5_000), end: ClockPair(tsc: 1_001_000, monotonicNs: 2_505_000))
        let info = TraceInfo(command: ["prog", "arg with space"], pid: 4242, clock: clock, lostWithoutRing: 3, lostEvents: 10)
        let objects = ObjectTable(objects: [
            TraceObject(
                path: "/usr/bin/prog", buildId: "0123abcd", loadBias: 0x5555_0000_0000,
                ranges: [[0x5555_0000_1000, 0x5555_0000_9000]],
                symbols: [TraceSymbol(name: "main", address: 0x1100, size: 0x40), TraceSymbol(name: "work", address: 0x1140, size: 0x20)])
        ])
        let streams = [
            ThreadStream(identity: StreamIdentity(pid: 4242, tid: 4242, ring: 0, generation: 1), events: [
                TraceEvent(kind: .entry, address: 0x5555_0000_1100, timestamp: 2_000, depth: 0),
                TraceEvent(kind: .entry, address: 0x5555_0000_1140, timestamp: 2_100, depth: 1),
                TraceEvent(kind: .lost, address: 7, timestamp: 2_150, depth: 1),
                TraceEvent(kind: .exit, address: 0x5555_0000_1140, timestamp: 2_300, depth: 1, flags: TraceEvent.flagUnwound),
                TraceEvent(kind: .exit, address: 0x5555_0000_1100, timestamp: 2_900, depth: 0),
            ]),
            ThreadStream(identity: StreamIdentity(pid: 4242, tid: 4250, ring: 3, generation: 2), events: []),
        ]
        return Trace(info: info, objects: objects, streams: streams)
    }

    func testRoundTripPreservesEveryFieldWithInjectedClock() throws {
        let dir = RecordingFixtures.scratchDirectory("roundtrip")
        let trace = Self.sampleTrace()
        try TraceWriter.write(trace, to: dir)
        let back = try TraceReader.read(directory: dir)
        XCTAssertEqual(back, trace)
        XCTAssertEqual(back.info.clock.monotonicNs(tsc: 2_000), 5_000 + 1_000 * 2.5)
        XCTAssertEqual(back.info.clock.nanoseconds(ticks: 400), 1_000)
        XCTAssertTrue(back.streams[0].events[3].isUnwound)
        XCTAssertEqual(Symbolizer(back.objects).describe(0x5555_0000_1150), "work")
        XCTAssertEqual(Symbolizer(back.objects).describe(0x5555_0000_1160), "0x555500001160")
    }

    func testStreamFileHoldsTheDocumentedBytes() throws {
        let dir = RecordingFixtures.scratchDirectory("bytes")
        try TraceWriter.write(Self.sampleTrace(), to: dir)
        let path = dir + "/streams/" + StreamIdentity(pid: 4242, tid: 4242, ring: 0, generation: 1).fileName
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(Array(bytes[0..<8]), Array("LTSTREAM".utf8))
        XCTAssertEqual(Array(bytes[8..<12]), [3, 0, 0, 0], "format version 3")
        XCTAssertEqual(Array(bytes[16..<20]), [8, 0, 0, 0], "8-byte records")
        XCTAssertEqual(Array(bytes[64..<68]), Array("LTCK".utf8))
        XCTAssertEqual(bytes[68], 10)  // record count: 5 events, 5 metadata records
        XCTAssertEqual(bytes.count, 64 + 16 + 10 * 8)
        let records = stride(from: 80, to: bytes.count, by: 8).map { Array(bytes[$0..<$0 + 8]) }
        XCTAssertEqual(records, [
            // Metadata (kind 3 in bits 62-63, type in bits 56-60): EPOCH 0,
            // TSC 2000 = 0x7d0, BASE 0x5555 (address bits 32-47), DEPTH 0.
            [0, 0, 0, 0, 0, 0, 0, 0xC4],
            [0xd0, 0x07, 0, 0, 0, 0, 0, 0xC1],
            [0x55, 0x55, 0, 0, 0, 0, 0, 0xC2],
            [0, 0, 0, 0, 0, 0, 0, 0xC3],
            // ENTRY (kind 1): address bits 0-31, TSC delta 0 in bits 32-60.
            [0x00, 0x11, 0, 0, 0, 0, 0, 0x40],
            // ENTRY 100 ticks later; its depth 1 is derived.
            [0x40, 0x11, 0, 0, 100, 0, 0, 0x40],
            // TSC 2150 = 0x866, then LOST 7 with depth 1 in bits 43-55.
            [0x66, 0x08, 0, 0, 0, 0, 0, 0xC1],
            [7, 0, 0, 0, 0, 0x08, 0, 0xC0],
            // EXIT (kind 2) with UNWOUND (bit 61), 150 ticks later.
            [0x40, 0x11, 0, 0, 150, 0, 0, 0xA0],
            // EXIT of the first function, 600 = 0x258 ticks later.
            [0x00, 0x11, 0, 0, 0x58, 0x02, 0, 0x80],
        ])
    }

    func testEntryOnlyFlagRoundTripsAndIsBit61OfAnEntry() throws {
        let dir = RecordingFixtures.scratchDirectory("entry-only")
        var trace = Self.sampleTrace()
        let events = [
            TraceEvent(kind: .entry, address: 0x7f00_0000_2000, timestamp: 10, depth: 0),
            TraceEvent(kind: .entry, address: 0x7f00_0000_3000, timestamp: 20, depth: 1, flags: TraceEvent.flagEntryOnly),
            TraceEvent(kind: .exit, address: 0x7f00_0000_2000, timestamp: 30, depth: 0),
        ]
        trace.streams = [ThreadStream(identity: StreamIdentity(pid: 1, tid: 1), events: events)]
        try TraceWriter.write(trace, to: dir)
        let back = try TraceReader.read(directory: dir).streams[0].events
        XCTAssertEqual(back, events)
        XCTAssertTrue(back[1].isEntryOnly)
        XCTAssertFalse(back[1].isUnwound)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/streams/" + trace.streams[0].identity.fileName)))
        // EPOCH, TSC, BASE, DEPTH, ENTRY, then the flagged ENTRY: kind 1, bit 61.
        XCTAssertEqual(bytes[80 + 5 * 8 + 7], 0x60)
    }

    /// Version 2 bytes of `events`, written here from the layout in
    /// docs/FORMAT.md (not through the library): one chunk.
    static func version2Stream(_ identity: StreamIdentity, _ events: [TraceEvent]) -> [UInt8] {
        var out: [UInt8] = Array("LTSTREAM".utf8)
        func le<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
        le(UInt32(2)); le(UInt32(64)); le(UInt32(16)); le(identity.ring); le(identity.pid); le(identity.tid); le(identity.generation)
        out += [UInt8](repeating: 0, count: 64 - out.count)
        var body: [UInt8] = []
        for e in events {
            let flag: UInt64 = e.flags == 0 ? 0 : 1
            let word = e.address | UInt64(min(e.depth, 8191)) << 48 | flag << 61 | UInt64(e.kind.rawValue) << 62
            withUnsafeBytes(of: e.timestamp.littleEndian) { body.append(contentsOf: $0) }
            withUnsafeBytes(of: word.littleEndian) { body.append(contentsOf: $0) }
        }
        out += Array("LTCK".utf8)
        le(UInt32(events.count)); le(crc32(body)); le(UInt32(0))
        return out + body
    }

    func testVersion2TracesAreStillRead() throws {
        let dir = RecordingFixtures.scratchDirectory("version2")
        var trace = Self.sampleTrace()
        // A version 2 entry with bit 61 is ENTRY_ONLY (as version 3's).
        trace.streams[0].events.insert(
            TraceEvent(kind: .entry, address: 0x5555_0000_1160, timestamp: 2_200, depth: 1, flags: TraceEvent.flagEntryOnly), at: 3)
        try TraceWriter.write(trace, to: dir)
        for stream in trace.streams {
            let path = dir + "/streams/" + stream.identity.fileName
            try Data(Self.version2Stream(stream.identity, stream.events)).write(to: URL(fileURLWithPath: path))
        }
        for file in ["info.json", "objects.json"] {
            try mutate(dir + "/" + file) { bytes in
                bytes = Array(String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\"version\":3", with: "\"version\":2").utf8)
            }
        }
        let back = try TraceReader.read(directory: dir)
        XCTAssertEqual(back.info.version, 2)
        XCTAssertEqual(back.streams, trace.streams)
        XCTAssertEqual(try StreamReader(path: dir + "/streams/" + trace.streams[0].identity.fileName).version, 2)
        // Bit 61 on a version 2 LOST event is damage.
        try mutate(streamPath(dir)) { bytes in
            var events = Array(bytes[80...])
            events[2 * 16 + 15] |= 0x20
            bytes.replaceSubrange(80..., with: events)
            withUnsafeBytes(of: Self.crc32(events).littleEndian) { for i in 0..<4 { bytes[72 + i] = $0[i] } }
        }
        assertDamaged(dir, mentions: ["event 2 at offset 112", "UNWOUND/ENTRY_ONLY flag on an event of kind lost"])
    }

    func testPackedFieldsRoundTripAtTheirLimits() throws {
        let dir = RecordingFixtures.scratchDirectory("limits")
        var trace = Self.sampleTrace()
        let widest = TraceFormat.addressMax
        trace.streams = [ThreadStream(identity: StreamIdentity(pid: 1, tid: 1), events: [
            TraceEvent(kind: .entry, address: widest, timestamp: .max, depth: TraceFormat.depthMax - 1),
            TraceEvent(kind: .entry, address: 0, timestamp: 0, depth: 100_000),
            TraceEvent(kind: .lost, address: TraceFormat.lostCountMax * 2 + 5, timestamp: 7, depth: 3),
            TraceEvent(kind: .exit, address: widest, timestamp: 8, depth: TraceFormat.depthMax, flags: TraceEvent.flagUnwound),
        ])]
        try TraceWriter.write(trace, to: dir)
        let events = try TraceReader.read(directory: dir).streams[0].events
        XCTAssertEqual(events, [
            TraceEvent(kind: .entry, address: widest, timestamp: .max, depth: TraceFormat.depthMax - 1),
            // A depth beyond the field saturates (the writer's rule too).
            TraceEvent(kind: .entry, address: 0, timestamp: 0, depth: TraceFormat.depthMax),
            // A count wider than the field is split, never cut.
            TraceEvent(kind: .lost, address: TraceFormat.lostCountMax, timestamp: 7, depth: 3),
            TraceEvent(kind: .lost, address: TraceFormat.lostCountMax, timestamp: 7, depth: 3),
            TraceEvent(kind: .lost, address: 5, timestamp: 7, depth: 3),
            TraceEvent(kind: .exit, address: widest, timestamp: 8, depth: TraceFormat.depthMax, flags: TraceEvent.flagUnwound),
        ])
    }

    func testEventsTheFormatCannotHoldAreRefusedNotCut() throws {
        for (name, event) in [
            ("wide", TraceEvent(kind: .entry, address: TraceFormat.addressMax + 1, timestamp: 1)),
            ("flagged-lost", TraceEvent(kind: .lost, address: 3, timestamp: 1, flags: TraceEvent.flagUnwound)),
            ("flag", TraceEvent(kind: .exit, address: 0x1000, timestamp: 1, flags: 4)),
        ] {
            var trace = Self.sampleTrace()
            trace.streams = [ThreadStream(identity: StreamIdentity(pid: 1, tid: 1), events: [event])]
            XCTAssertThrowsError(try TraceWriter.write(trace, to: RecordingFixtures.scratchDirectory(name)), name) { error in
                XCTAssertTrue("\(error)".contains("does not fit the version 3 event"), "\(error)")
            }
        }
    }

    func testSymbolsOfOneObjectNeverNameAnotherObjectsAddresses() {
        // "bogus" claims symbols at link addresses that, with its bias,
        // would land inside "real"'s range; lookups in "real"'s range use
        // only "real"'s symbols.
        let table = ObjectTable(objects: [
            TraceObject(path: "/real", buildId: nil, loadBias: 0x7000_0000, ranges: [[0x7000_1000, 0x7000_2000]],
                        symbols: [TraceSymbol(name: "real_function", address: 0x1800, size: 0x10)]),
            TraceObject(path: "/bogus", buildId: nil, loadBias: 0x7000_0000, ranges: [[0x7100_0000, 0x7100_1000]],
                        symbols: [TraceSymbol(name: "huge", address: 0x1000, size: 0x10_0000)]),
        ])
        let symbolizer = Symbolizer(table)
        XCTAssertEqual(symbolizer.name(of: 0x7000_1800), "real_function")
        XCTAssertEqual(symbolizer.name(of: 0x7000_1808), "real_function")
        XCTAssertNil(symbolizer.name(of: 0x7000_1900), "inside real's range, outside its symbols")
        XCTAssertNil(symbolizer.name(of: 0x7000_0800), "outside every range")
    }

    // MARK: - damage

    private func damagedTrace(_ name: String, _ damage: (String) throws -> Void) throws -> String {
        let dir = RecordingFixtures.scratchDirectory(name)
        try TraceWriter.write(Self.sampleTrace(), to: dir)
        try damage(dir)
        return dir
    }

    private func assertDamaged(_ dir: String, mentions fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try TraceReader.read(directory: dir), file: file, line: line) { error in
            let text = "\(error)"
            for fragment in fragments {
                XCTAssertTrue(text.contains(fragment), "'\(text)' does not mention '\(fragment)'", file: file, line: line)
            }
        }
    }

    private func streamPath(_ dir: String) -> String {
        dir + "/streams/" + StreamIdentity(pid: 4242, tid: 4242, ring: 0, generation: 1).fileName
    }

    private func mutate(_ path: String, _ change: (inout [UInt8]) -> Void) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        change(&bytes)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    func testTruncatedStreamIsRejectedNamingTheChunk() throws {
        let dir = try damagedTrace("truncated") { try self.mutate(self.streamPath($0)) { $0.removeLast(30) } }
        assertDamaged(dir, mentions: ["damaged trace file", ".lts", "truncated chunk at offset 64", "10 events announced, 6 present"])
    }

    func testTruncatedHeaderIsRejected() throws {
        let dir = try damagedTrace("short") { try self.mutate(self.streamPath($0)) { $0.removeLast($0.count - 20) } }
        assertDamaged(dir, mentions: ["truncated header: 20 bytes"])
    }

    func testFlippedBitIsCaughtByTheChecksum() throws {
        let dir = try damagedTrace("bitflip") { try self.mutate(self.streamPath($0)) { $0[92] ^= 0x04 } }
        assertDamaged(dir, mentions: ["checksum mismatch in chunk at offset 64", "events 0..<10"])
    }

    /// The sample's first stream alone, with `change` applied to the bytes of
    /// its events and the chunk's checksum recomputed: damage the checksum
    /// cannot see.
    private func rewrittenEvents(_ name: String, _ change: @escaping (inout [UInt8]) -> Void) throws -> String {
        let dir = RecordingFixtures.scratchDirectory(name)
        var trace = Self.sampleTrace()
        trace.streams = [trace.streams[0]]
        try TraceWriter.write(trace, to: dir)
        try mutate(streamPath(dir)) { bytes in
            var events = Array(bytes[80...])
            change(&events)
            bytes.replaceSubrange(80..., with: events)
            let crc = Self.crc32(events)
            withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { bytes[72 + i] = $0[i] } }
        }
        return dir
    }

    func testUnknownEventKindIsRejected() throws {
        // Kind 0 (bits 62-63 of the record clear): a slot no writer wrote.
        let dir = try rewrittenEvents("kind") { $0[4 * 8 + 7] &= 0x3F }
        assertDamaged(dir, mentions: ["event 4 at offset 112", "unknown kind 0"])
    }

    func testFlagOnAMetadataRecordAndUnknownTypeAreRejected() throws {
        let flagged = try rewrittenEvents("meta-flag") { $0[7] |= 0x20 }
        assertDamaged(flagged, mentions: ["event 0 at offset 80", "flag bit 61 on a metadata record"])
        let unknown = try rewrittenEvents("meta-type") { $0[8 + 7] = 0xC0 | 9 }
        assertDamaged(unknown, mentions: ["event 1 at offset 88", "unknown metadata record type 9"])
    }

    func testRecordsWhoseAddressOrDepthCannotBeKnownAreRejected() throws {
        // The BASE record turned into a DEPTH record: the entry has no base.
        let noBase = try rewrittenEvents("no-base") { $0[2 * 8 + 7] = 0xC3 }
        assertDamaged(noBase, mentions: ["event 4 at offset 112", "before any BASE record"])
        // The DEPTH record turned into a second BASE: nothing to derive from.
        let noDepth = try rewrittenEvents("no-depth") { $0[3 * 8 + 7] = 0xC2 }
        assertDamaged(noDepth, mentions: ["event 4 at offset 112", "depth cannot be derived"])
    }

    /// Bit 61 on an entry is ENTRY_ONLY (a Swift async function: no exit
    /// follows): written and read back as such; the report counts the call,
    /// entry only, with no time, and its caller's times are untouched.
    func testEntryOnlyEntryRoundTripsAndIsReportedAsSuch() throws {
        let dir = RecordingFixtures.scratchDirectory("entry-only")
        var trace = Self.sampleTrace()
        trace.streams = [ThreadStream(identity: StreamIdentity(pid: 4242, tid: 4242), events: [
            TraceEvent(kind: .entry, address: 0x5555_0000_1100, timestamp: 2_000, depth: 0),
            TraceEvent(kind: .entry, address: 0x5555_0000_1140, timestamp: 2_100, depth: 1, flags: TraceEvent.flagEntryOnly),
            TraceEvent(kind: .entry, address: 0x5555_0000_1140, timestamp: 2_200, depth: 1, flags: TraceEvent.flagEntryOnly),
            TraceEvent(kind: .exit, address: 0x5555_0000_1100, timestamp: 2_400, depth: 0),
        ])]
        try TraceWriter.write(trace, to: dir)
        let back = try TraceReader.read(directory: dir)
        XCTAssertEqual(back.streams[0].events.map(\.isEntryOnly), [false, true, true, false])
        XCTAssertFalse(back.streams[0].events[1].isUnwound)
        let report = TraceReport(trace: back, sort: .name)
        let work = try XCTUnwrap(report.functions.first { $0.function == "work" })
        XCTAssertEqual(work.calls, 2)
        XCTAssertEqual(work.entryOnly, 2)
        XCTAssertEqual(work.totalNs, 0)
        let main = try XCTUnwrap(report.functions.first { $0.function == "main" })
        XCTAssertEqual(main.totalNs, 1_000, "400 ticks of 2.5 ns")
        XCTAssertEqual(main.selfNs, 1_000)
        XCTAssertTrue(report.text().contains("work  (2 entry only)"), report.text())
        XCTAssertTrue(report.json(sort: .name).contains("\"entry_only\": 2"), report.json(sort: .name))
    }

    func testBadMagicAndFutureVersionAreRejected() throws {
        let magic = try damagedTrace("magic") { try self.mutate(self.streamPath($0)) { $0[0] = UInt8(ascii: "X") } }
        assertDamaged(magic, mentions: ["bad magic"])
        let version = try damagedTrace("version") { try self.mutate(self.streamPath($0)) { $0[8] = 7 } }
        assertDamaged(version, mentions: ["stream format version 7", "knows versions 2 and 3"])
        let sizes = try damagedTrace("event-size") { try self.mutate(self.streamPath($0)) { $0[16] = 24 } }
        assertDamaged(sizes, mentions: ["header or event size differs from version 3"])
    }

    func testDamagedInfoJSONIsRejected() throws {
        let cut = try damagedTrace("info-cut") { try self.mutate($0 + "/info.json") { $0.removeLast(10) } }
        assertDamaged(cut, mentions: ["info.json", "invalid JSON"])
        let missingField = try damagedTrace("info-field") { dir in
            try self.mutate(dir + "/info.json") { bytes in
                let text = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\"clock\"", with: "\"clocks\"")
                bytes = Array(text.utf8)
            }
        }
        assertDamaged(missingField, mentions: ["info.json", "missing field clock"])
        let future = try damagedTrace("info-version") { dir in
            try self.mutate(dir + "/info.json") { bytes in
                let text = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\"version\":3", with: "\"version\":99")
                bytes = Array(text.utf8)
            }
        }
        assertDamaged(future, mentions: ["version 99"])
    }

    func testMissingFilesAreNamed() throws {
        let noObjects = try damagedTrace("no-objects") { try FileManager.default.removeItem(atPath: $0 + "/objects.json") }
        assertDamaged(noObjects, mentions: ["not a LiveTrace trace", "objects.json is missing"])
        let empty = RecordingFixtures.scratchDirectory("empty")
        assertDamaged(empty, mentions: ["info.json is missing"])
    }

    func testBadObjectRangeIsRejected() throws {
        let dir = try damagedTrace("ranges") { dir in
            try self.mutate(dir + "/objects.json") { bytes in
                let text = String(decoding: bytes, as: UTF8.self)
                    .replacingOccurrences(of: "[[\(0x5555_0000_1000),\(0x5555_0000_9000)]]", with: "[[5]]")
                bytes = Array(text.utf8)
            }
        }
        assertDamaged(dir, mentions: ["objects.json", "bad address range [5]"])
    }

    func testChunkChecksumIsCRC32CAsSpecified() throws {
        // The check value of CRC-32C for "123456789" is 0xE3069283; and the
        // fast path agrees with the bitwise reference on odd lengths.
        XCTAssertEqual(Self.crc32(Array("123456789".utf8)), 0xE306_9283)
        let dir = RecordingFixtures.scratchDirectory("crc")
        try TraceWriter.write(Self.sampleTrace(), to: dir)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: streamPath(dir))))
        let stored = UInt32(bytes[72]) | UInt32(bytes[73]) << 8 | UInt32(bytes[74]) << 16 | UInt32(bytes[75]) << 24
        XCTAssertEqual(stored, Self.crc32(Array(bytes[80...])))
    }

    /// Bitwise CRC-32C, the reference.
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? 0x82F6_3B78 ^ (crc >> 1) : crc >> 1 }
        }
        return crc ^ 0xFFFF_FFFF
    }
}
