import CElfutils
#if canImport(Glibc)
import Glibc
#endif

/// Source file and line of function addresses, from the DWARF line tables
/// through libdw.
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

    /// nil when the file cannot be opened or has no DWARF at all.
    init?(path: String) {
        guard let fd = try? FileSyscalls.open(path) else { return nil }
        defer { FileSyscalls.close(fd) }
        guard let dwarf = dwarf_begin(fd, DWARF_C_READ) else { return nil }
        defer { dwarf_end(dwarf) }
        var fileIndexByName: [UnsafePointer<CChar>: Int32] = [:]
        var offset: Dwarf_Off = 0
        var next: Dwarf_Off = 0
        var headerSize: Int = 0
        while dwarf_nextcu(dwarf, offset, &next, &headerSize, nil, nil, nil) == 0 {
            defer { offset = next }
            var unit = Dwarf_Die()
            guard dwarf_offdie(dwarf, offset + Dwarf_Off(headerSize), &unit) != nil else { continue }
            var lines: OpaquePointer?
            var count: Int = 0
            guard dwarf_getsrclines(&unit, &lines, &count) == 0, let lines else { continue }
            if rows.capacity < rows.count + count {
                // Grow geometrically: an exact reserve per unit would copy all rows per unit.
                rows.reserveCapacity(max(rows.count + count, rows.capacity * 2))
            }
            for index in 0..<count {
                guard let line = dwarf_onesrcline(lines, index) else { continue }
                var address: Dwarf_Addr = 0
                var number: Int32 = 0
                var endsSequence = false
                guard dwarf_lineaddr(line, &address) == 0, dwarf_lineno(line, &number) == 0,
                      dwarf_lineendsequence(line, &endsSequence) == 0 else { continue }
                var file: Int32 = -1
                if !endsSequence, let name = dwarf_linesrc(line, nil, nil) {
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
