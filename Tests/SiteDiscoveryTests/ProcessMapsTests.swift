// The one /proc/PID/maps parser (ProcessMaps.swift) against facts it does
// not produce: a mapping this test makes with mmap (its exact bounds and
// protection), libc's code holding malloc, and lines with awkward paths.
import CLiveTraceShims
import Foundation
import Glibc
import Synchronization
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

    /// The mask the kernel shows for this thread is the one it was given
    /// (pthread_sigmask), read through `SystemCall.hexField`; malformed or
    /// missing lines are nil.
    func testSigBlkOfThisThreadIsTheMaskItBlocked() throws {
        var set = sigset_t(), old = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGUSR2)
        sigaddset(&set, SIGWINCH)
        pthread_sigmask(SIG_BLOCK, &set, &old)
        defer { pthread_sigmask(SIG_SETMASK, &old, nil) }
        let status = try SystemCall.readFile("/proc/thread-self/status")
        let mask = try XCTUnwrap(SystemCall.hexField("SigBlk:", in: status))
        XCTAssertNotEqual(mask & (1 << UInt64(SIGUSR2 - 1)), 0)
        XCTAssertNotEqual(mask & (1 << UInt64(SIGWINCH - 1)), 0)
        XCTAssertNil(SystemCall.hexField("NoSuchField:", in: status))
        XCTAssertNil(SystemCall.hexField("SigBlk:", in: Array("SigBlk:\tzz\n".utf8)))
        XCTAssertEqual(SystemCall.hexField("SigBlk:", in: Array("Name:\tx\nSigBlk:\t00000000000000a0\n".utf8)), 0xa0)
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

    func testTaskSyscallSeesAThreadBlockedInReadAndParsesEveryForm() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        let reader = fds[0]
        let readerTid = TidBox()
        let thread = Thread {
            readerTid.value.withLock { $0 = Int32(truncatingIfNeeded: lt_sys_gettid()) }
            var byte: UInt8 = 0
            _ = read(reader, &byte, 1)
        }
        thread.start()
        var state: TaskSyscall?
        for _ in 0..<2000 {
            let tid = readerTid.value.withLock { $0 }
            if tid != 0, case .blocked? = try TaskSyscall.of(tid) { state = try TaskSyscall.of(tid); break }
            usleep(1000)
        }
        // The kernel's own number for read(2) on x86-64 is 0.
        guard case let .blocked(number, pc)? = state else { return XCTFail("never seen blocked: \(String(describing: state))") }
        XCTAssertEqual(number, 0)
        XCTAssertNotEqual(pc, 0)
        var byte: UInt8 = 1
        XCTAssertEqual(write(fds[1], &byte, 1), 1)

        XCTAssertEqual(TaskSyscall.parse(Array("running\n".utf8)), .running)
        XCTAssertEqual(TaskSyscall.parse(Array("-1 0x7ffc0 0x401000\n".utf8)), .notInSystemCall(pc: 0x401000))
        XCTAssertEqual(TaskSyscall.parse(Array("7 0x1 0x2 0x3 0x4 0x5 0x6 0x7ffc0 0x7f00aa\n".utf8)), .blocked(number: 7, pc: 0x7f00aa))
        XCTAssertNil(TaskSyscall.parse(Array("garbage".utf8)))
    }
}

private final class TidBox: Sendable {
    let value = Mutex<Int32>(0)
}
