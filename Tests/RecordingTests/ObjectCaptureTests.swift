// objects.json from a live process: biases from executable mappings only,
// so a library that is also mapped as plain data (as ELF readers do) keeps
// its function names.
import Foundation
import LiveTraceRecording
import LiveTraceSites
import XCTest

final class ObjectCaptureTests: XCTestCase {
    func testDataMappingOfALoadedLibraryDoesNotMoveItsSymbols() throws {
        let before = try ObjectCapture.capture(pid: getpid())
        let libc = try XCTUnwrap(before.objects.first { $0.path.hasSuffix("/libc.so.6") }?.path)
        // A read-only data mapping of the same file, at offset 0, below
        // every real mapping of it.
        let fd = open(libc, O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        let hint = UnsafeMutableRawPointer(bitPattern: 0x1000_0000)
        let data = try XCTUnwrap(mmap(hint, 4 * 4096, PROT_READ, MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, 0))
        XCTAssertNotEqual(data, MAP_FAILED)
        defer { munmap(data, 4 * 4096) }

        let table = try ObjectCapture.capture(pid: getpid())
        let malloc = UInt64(UInt(bitPattern: dlsym(dlopen(nil, RTLD_NOW), "malloc")))
        let name = Symbolizer(table).name(of: malloc)
        XCTAssertTrue(name?.contains("malloc") == true, "malloc named \(String(describing: name))")
        let objects = table.objects.filter { $0.path == libc }
        XCTAssertEqual(objects.count, 1, "one load of libc, the data mapping is not an object")
        XCTAssertNil(objects.first?.symbolsError)
        XCTAssertNotNil(objects.first?.buildId)
    }

    /// A process that exits before its map is read (`record -p` while the
    /// target ends): with the map read earlier the capture still names its
    /// functions from the files; without it, it says it could not read.
    func testAnExitedProcessIsCapturedFromItsEarlierMap() throws {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sleep")
        child.arguments = ["1"]
        try child.run()
        // The loader maps libc some time after the spawn returns.
        var earlier: [ProcessMapping] = []
        let deadline = Date().addingTimeInterval(10)
        while !earlier.contains(where: { $0.path.hasSuffix("/libc.so.6") && $0.executable }) && Date() < deadline {
            earlier = (try? ProcessMaps.read(pid: child.processIdentifier)) ?? []
            usleep(1000)
        }
        XCTAssertTrue(earlier.contains { $0.path.hasSuffix("/libc.so.6") && $0.executable })
        child.waitUntilExit()
        XCTAssertThrowsError(try ObjectCapture.capture(pid: child.processIdentifier))
        let table = try ObjectCapture.capture(pid: child.processIdentifier, earlierMap: earlier)
        let libc = try XCTUnwrap(table.objects.first { $0.path.hasSuffix("/libc.so.6") })
        XCTAssertNil(libc.symbolsError)
        XCTAssertFalse(libc.symbols.isEmpty, "libc's functions are named from its file")
    }
}
