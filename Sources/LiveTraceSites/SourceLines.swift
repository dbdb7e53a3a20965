import CElfutils
#if canImport(Glibc)
import Glibc
#endif

/// libdw, loaded when source lines are first asked for (`livetrace list`):
/// a process linked with it maps libdw, liblzma and libbz2 at every start,
/// and both the CLI and the LD_PRELOAD shim (in every traced program) would
/// pay for that without ever reading a line table (docs/ARCHITECTURE.md,
/// start-up). The types come from elfutils' headers (CElfutils); the
/// functions from dlsym, with the C signatures of <elfutils/libdw.h>.
struct LibDW {
    let begin: @convention(c) (Int32, Dwarf_Cmd) -> OpaquePointer?
    let end: @convention(c) (OpaquePointer?) -> Int32
    let nextcu: @convention(c) (
        OpaquePointer?, Dwarf_Off, UnsafeMutablePointer<Dwarf_Off>?, UnsafeMutablePointer<Int>?,
        UnsafeMutablePointer<Dwarf_Off>?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt8>?
    ) -> Int32
    let offdie: @convention(c) (OpaquePointer?, Dwarf_Off, UnsafeMutablePointer<Dwarf_Die>?) -> UnsafeMutablePointer<Dwarf_Die>?
    let getsrclines: @convention(c) (UnsafeMutablePointer<Dwarf_Die>?, UnsafeMutablePointer<OpaquePointer?>?, UnsafeMutablePointer<Int>?) -> Int32
    let onesrcline: @convention(c) (OpaquePointer?, Int) -> OpaquePointer?
    let lineaddr: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Dwarf_Addr>?) -> Int32
    let lineno: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int32>?) -> Int32
    let lineendsequence: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Bool>?) -> Int32
    let linesrc: @convention(c) (OpaquePointer?, UnsafeMutablePointer<Dwarf_Word>?, UnsafeMutablePointer<Dwarf_Word>?) -> UnsafePointer<CChar>?

    /// nil when libdw.so.1 (Debian's libdw1) or one of its functions is missing.
    static let shared: LibDW? = {
        guard let handle = dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL) else { return nil }
        func load<T>(_ name: String, as type: T.Type) -> T? {
            dlsym(handle, name).map { unsafeBitCast($0, to: type) }
        }
        guard let begin = load("dwarf_begin", as: (@convention(c) (Int32, Dwarf_Cmd) -> OpaquePointer?).self),
              let end = load("dwarf_end", as: (@convention(c) (OpaquePointer?) -> Int32).self),
              let nextcu = load("dwarf_nextcu", as: (@convention(c) (
                  OpaquePointer?, Dwarf_Off, UnsafeMutablePointer<Dwarf_Off>?, UnsafeMutablePointer<Int>?,
                  UnsafeMutablePointer<Dwarf_Off>?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt8>?
              ) -> Int32).self),
              let offdie = load("dwarf_offdie", as: (@convention(c) (OpaquePointer?, Dwarf_Off, UnsafeMutablePointer<Dwarf_Die>?) -> UnsafeMutablePointer<Dwarf_Die>?).self),
              let getsrclines = load("dwarf_getsrclines", as: (@convention(c) (UnsafeMutablePointer<Dwarf_Die>?, UnsafeMutablePointer<OpaquePointer?>?, UnsafeMutablePointer<Int>?) -> Int32).self),
              let onesrcline = load("dwarf_onesrcline", as: (@convention(c) (OpaquePointer?, Int) -> OpaquePointer?).self),
              let lineaddr = load("dwarf_lineaddr", as: (@convention(c) (OpaquePointer?, UnsafeMutablePointer<Dwarf_Addr>?) -> Int32).self),
              let lineno = load("dwarf_lineno", as: (@convention(c) (OpaquePointer?, UnsafeMutablePointer<Int32>?) -> Int32).self),
              let lineendsequence = load("dwarf_lineendsequence", as: (@convention(c) (OpaquePointer?, UnsafeMutablePointer<Bool>?) -> Int32).self),
              let linesrc = load("dwarf_linesrc", as: (@convention(c) (OpaquePointer?, UnsafeMutablePointer<Dwarf_Word>?, UnsafeMutablePointer<Dwarf_Word>?) -> UnsafePointer<CChar>?).self)
        else { return nil }
        return LibDW(
            begin: begin, end: end, nextcu: nextcu, offdie: offdie, getsrclines: getsrclines, onesrcline: onesrcline,
            lineaddr: lineaddr, lineno: lineno, lineendsequence: lineendsequence, linesrc: linesrc)
    }()
}

/// Source file and line of function addresses, from the DWARF line tables
/// through libdw (LibDW).
///
/// All line rows of all compilation units are read once and sorted by
/// address; a lookup is a binary search for the last row at or before the
/// address. A row that ends a sequence covers nothing after it, so an address
/// past the end of every sequence (code without debug info) has no location.
final class SourceLines {
    struct Row {
        var address: UInt64
        var line: Int32
        var file: Int32
        var endsSequence: Bool
    }

    private var rows: [Row] = []
    private var files: [String] = []

    var hasRows: Bool { !rows.isEmpty }

    /// nil when the file cannot be opened or has no DWARF at all, or libdw
    /// cannot be loaded.
    init?(path: String) {
        guard let dw = LibDW.shared else { return nil }
        guard let fd = try? FileSyscalls.open(path) else { return nil }
        defer { FileSyscalls.close(fd) }
        guard let dwarf = dw.begin(fd, DWARF_C_READ) else { return nil }
        defer { _ = dw.end(dwarf) }
        var fileIndexByName: [UnsafePointer<CChar>: Int32] = [:]
        var offset: Dwarf_Off = 0
        var next: Dwarf_Off = 0
        var headerSize: Int = 0
        while dw.nextcu(dwarf, offset, &next, &headerSize, nil, nil, nil) == 0 {
            defer { offset = next }
            var unit = Dwarf_Die()
            guard dw.offdie(dwarf, offset + Dwarf_Off(headerSize), &unit) != nil else { continue }
            var lines: OpaquePointer?
            var count: Int = 0
            guard dw.getsrclines(&unit, &lines, &count) == 0, let lines else { continue }
            if rows.capacity < rows.count + count {
                // Grow geometrically: an exact reserve per unit would copy all rows per unit.
                rows.reserveCapacity(max(rows.count + count, rows.capacity * 2))
            }
            for index in 0..<count {
                guard let line = dw.onesrcline(lines, index) else { continue }
                var address: Dwarf_Addr = 0
                var number: Int32 = 0
                var endsSequence = false
                guard dw.lineaddr(line, &address) == 0, dw.lineno(line, &number) == 0,
                      dw.lineendsequence(line, &endsSequence) == 0 else { continue }
                var file: Int32 = -1
                if !endsSequence, let name = dw.linesrc(line, nil, nil) {
                    if let known = fileIndexByName[name] {
                        file = known
                    } else {
                        file = Int32(files.count)
                        files.append(String(cString: name))
                        fileIndexByName[name] = file
                    }
                }
                rows.append(Row(address: address, line: number, file: file, endsSequence: endsSequence))
            }
            if next <= offset { break }
        }
        // At one address, an end of sequence sorts before the row that starts
        // the next sequence there, so the lookup lands on the start.
        rows.sort { a, b in a.address != b.address ? a.address < b.address : (a.endsSequence && !b.endsSequence) }
    }

    func location(of address: UInt64) -> (file: String, line: Int)? {
        var low = 0, high = rows.count
        while low < high {
            let mid = (low + high) / 2
            if rows[mid].address <= address { low = mid + 1 } else { high = mid }
        }
        guard low > 0 else { return nil }
        let row = rows[low - 1]
        guard !row.endsSequence, row.file >= 0, Int(row.file) < files.count else { return nil }
        return (files[Int(row.file)], Int(row.line))
    }
}
