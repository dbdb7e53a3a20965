// The one /proc/PID/maps parser (ProcessMaps.swift) against facts it does
// not produce: a mapping this test makes with mmap (its exact bounds and
// protection), libc's code holding malloc, and lines with awkward paths.
import Glibc
import LiveTraceSites
import XCTest

final class ProcessMapsTests: XCTestCase {
    func testTheLiveMapShowsWhatMmapAndTheLoaderMade() throws {
        let size = 3 * 4096
        let raw = try XCTUnwrap(mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        XCTAssertNotEqual(raw, MAP_FAILED)
        defer { munmap(raw, size) }
        // The middle page read-only: the kernel splits the mapping in three.
        XCTAssertEqual(mprotect(raw + 4096, 4096, PROT_READ), 0)
        let base = UInt(bitPattern: raw)

        let maps = try ProcessMaps.read()
        XCTAssertEqual(maps.map(\.start), maps.map(\.start).sorted(), "in address order")
        let middle = try XCTUnwrap(maps.first { $0.start == base + 4096 })
        XCTAssertEqual(middle.end, base + 8192)
        XCTAssertEqual([middle.readable, middle.writable, middle.executable], [true, false, false])
        XCTAssertEqual(middle.path, "")
        XCTAssertFalse(middle.isFile)

        let mallocAddress = UInt(bitPattern: try XCTUnwrap(dlsym(nil, "malloc")))
        let libc = try XCTUnwrap(maps.first { $0.start <= mallocAddress && mallocAddress < $0.end })
        XCTAssertTrue(libc.executable)
        XCTAssertTrue(libc.isFile)
        XCTAssertTrue(libc.path.hasSuffix("libc.so.6"), libc.path)
        var status = stat()
        XCTAssertEqual(stat(libc.path, &status), 0)
        XCTAssertEqual(libc.inode, UInt64(status.st_ino), "inode as stat(2) gives it")
    }

    func testLinesWithSpacesDeletedFilesAndNoPathParse() {
        let text = """
            00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/with space
            7f0000001000-7f0000002000 rw-p 00001000 08:02 99 /tmp/gone (deleted)
            7ffd1000-7ffd2000 r--p 00000000 00:00 0
            not a line
            7fff0000-7fff1000 rwxp 0000a000 fd:01 123456789012 [stack]
            """
        let maps = ProcessMaps.parse(Array(text.utf8))
        XCTAssertEqual(maps.count, 4)
        XCTAssertEqual(maps[0].path, "/usr/bin/with space")
        XCTAssertEqual(maps[0].inode, 173_521)
        XCTAssertTrue(maps[0].isFile)
        XCTAssertEqual(maps[1].offset, 0x1000)
        XCTAssertFalse(maps[1].isFile, "a deleted file is not opened by its path")
        XCTAssertEqual(maps[2].path, "")
        XCTAssertEqual(maps[3].start, 0x7fff_0000)
        XCTAssertEqual(maps[3].offset, 0xa000)
        XCTAssertEqual(maps[3].inode, 123_456_789_012)
        XCTAssertEqual([maps[3].readable, maps[3].writable, maps[3].executable], [true, true, true])
    }
}
