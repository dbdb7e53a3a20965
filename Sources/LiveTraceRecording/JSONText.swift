// JSON text, written and read without Foundation: the trace directory's
// info.json and objects.json are written by code linked into
// liblivetrace.so, which cannot carry Foundation (docs/ARCHITECTURE.md), and
// the project's other JSON outputs (`livetrace list --json`, `livetrace
// report --json`) have a documented, stable key order and layout, so they
// are written by hand rather than through an encoder.
//
// The reader (JSONValue.parse) accepts exactly RFC 8259 text: one value,
// surrounded by optional whitespace. It never traps on bad input: every
// defect is a JSONSyntaxError naming the byte offset, and nesting deeper than
// JSONValue.maximumNesting is refused instead of exhausting the stack.

/// The one JSON string escaper of the project's hand-written JSON outputs.
public enum JSONText {
    /// A JSON string literal (RFC 8259): quote, backslash and control
    /// characters escaped; names whose bytes were not UTF-8 were already
    /// decoded with U+FFFD replacements.
    public static func quoted(_ text: String) -> String {
        var writer = JSONWriter()
        writer.string(text)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}

/// Compact JSON text (no whitespace) appended to a byte buffer; the caller
/// supplies the structure and the key order. A long document (Chrome trace
/// JSON) is written in pieces: `take()` hands out the text so far.
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []

    public init(reservingCapacity capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    /// The text written since the last take; the buffer keeps its capacity.
    public mutating func take(_ body: ([UInt8]) -> Void) {
        body(bytes)
        bytes.removeAll(keepingCapacity: true)
    }

    /// `value / 1000` with exactly three decimals (nanoseconds as
    /// microseconds): a JSON number without floating-point rounding.
    public mutating func thousandths(_ value: UInt64) {
        number(value / 1000)
        let fraction = value % 1000
        bytes.append(UInt8(ascii: "."))
        bytes.append(Self.zero + UInt8(fraction / 100))
        bytes.append(Self.zero + UInt8(fraction / 10 % 10))
        bytes.append(Self.zero + UInt8(fraction % 10))
    }

    private static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
    private static let colon = UInt8(ascii: ":"), comma = UInt8(ascii: ",")
    private static let zero = UInt8(ascii: "0"), minus = UInt8(ascii: "-")
    private static let hexDigits = Array("0123456789abcdef".utf8)
    /// The two-character escapes of RFC 8259 section 7, by the byte they stand for.
    private static func shortEscape(_ byte: UInt8) -> UInt8? {
        switch byte {
        case quote: return quote
        case backslash: return backslash
        case UInt8(ascii: "\n"): return UInt8(ascii: "n")
        case UInt8(ascii: "\r"): return UInt8(ascii: "r")
        case UInt8(ascii: "\t"): return UInt8(ascii: "t")
        default: return nil
        }
    }
    private static let lastControlCharacter: UInt8 = 0x1f

    public mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// JSON text made by another writer (a name quoted once, used often).
    public mutating func raw(json: [UInt8]) { bytes.append(contentsOf: json) }

    /// A string literal: `"`, `\` and control characters escaped, every
    /// other scalar as its UTF-8 bytes. Runs of bytes that need no escape
    /// are copied whole (objects.json holds every symbol of the process).
    public mutating func string(_ text: String) {
        bytes.append(Self.quote)
        var text = text
        text.withUTF8 { utf8 in
            var runStart = 0
            for (index, byte) in utf8.enumerated()
            where byte == Self.quote || byte == Self.backslash || byte <= Self.lastControlCharacter {
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
                escape(byte)
                runStart = index + 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        }
        bytes.append(Self.quote)
    }

    /// The escape of one byte: its two-character form, or \u00XX.
    private mutating func escape(_ byte: UInt8) {
        if let escaped = Self.shortEscape(byte) {
            bytes.append(Self.backslash)
            bytes.append(escaped)
        } else {
            raw("\\u00")
            bytes.append(Self.hexDigits[Int(byte >> 4)])
            bytes.append(Self.hexDigits[Int(byte & 0xf)])
        }
    }

    /// A decimal integer, digits written straight into the buffer.
    public mutating func number(_ value: UInt64) {
        let maximumDigits = 20 // UInt64.max = 18446744073709551615
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: maximumDigits) { digits in
            var remaining = value
            var first = maximumDigits
            repeat {
                first -= 1
                digits[first] = Self.zero + UInt8(remaining % 10)
                remaining /= 10
            } while remaining > 0
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[first...]))
        }
    }

    public mutating func number(_ value: Int) {
        if value < 0 { bytes.append(Self.minus) }
        number(UInt64(value.magnitude))
    }
    public mutating func bool(_ value: Bool) { value ? raw("true") : raw("false") }
    public mutating func null() { raw("null") }

    /// `"key":` — the caller writes the value next.
    public mutating func key(_ key: StaticString) {
        bytes.append(Self.quote)
        raw(key)
        bytes.append(Self.quote)
        bytes.append(Self.colon)
    }

    /// `{ body }`; `body` receives a member writer that places the commas.
    public mutating func object(_ body: (inout JSONMembers) -> Void) {
        raw("{")
        // The text moves into the member writer and back (swap, not copy):
        // one buffer with one owner at all times, so no append copies it.
        var members = JSONMembers()
        swap(&bytes, &members.writer.bytes)
        body(&members)
        swap(&bytes, &members.writer.bytes)
        raw("}")
    }

    /// `[ element, ... ]`.
    public mutating func array<S: Sequence>(_ elements: S, _ element: (inout JSONWriter, S.Element) -> Void) {
        raw("[")
        var first = true
        for item in elements {
            if !first { bytes.append(Self.comma) }
            first = false
            element(&self, item)
        }
        raw("]")
    }

    /// Separates members of the object being written.
    public mutating func memberSeparator() { bytes.append(Self.comma) }
}

/// The members of one JSON object being written, in the order written.
public struct JSONMembers {
    fileprivate var writer = JSONWriter()
    private var count = 0

    /// `"key": value`, where `value` writes the value.
    public mutating func member(_ key: StaticString, _ value: (inout JSONWriter) -> Void) {
        if count > 0 { writer.memberSeparator() }
        count += 1
        writer.key(key)
        value(&writer)
    }
}

// MARK: - reading

/// A parsed JSON value. Numbers keep their text: the trace's numbers are
/// 64-bit unsigned integers (addresses, TSC readings) that a Double cannot
/// hold, so each field converts exactly the kind of number it expects.
enum JSONValue: Equatable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in document order (a later duplicate key wins on lookup).
    case object([(key: String, value: JSONValue)])

    static let maximumNesting = 64

    static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)), let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// Parses one JSON text.
    static func parse(_ bytes: [UInt8]) throws(JSONSyntaxError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { (buffer) throws(JSONSyntaxError) -> JSONValue in
            var parser = JSONParser(buffer)
            return try parser.document()
        }
    }

    var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// Where and why a JSON text is not valid.
struct JSONSyntaxError: Error, CustomStringConvertible {
    var offset: Int
    var reason: String
    var description: String { "\(reason) at byte \(offset)" }
}

/// Recursive descent over the bytes (RFC 8259 grammar).
private struct JSONParser {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0
    private var depth = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    private static let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t")
    private static let newline = UInt8(ascii: "\n"), carriageReturn = UInt8(ascii: "\r")
    private static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
    private static let minus = UInt8(ascii: "-"), plus = UInt8(ascii: "+"), dot = UInt8(ascii: ".")
    private static let zero = UInt8(ascii: "0"), nine = UInt8(ascii: "9")
    private static let lowerE = UInt8(ascii: "e"), upperE = UInt8(ascii: "E")
    private static let lastControlCharacter: UInt8 = 0x1f
    private static let highSurrogates: ClosedRange<UInt32> = 0xD800...0xDBFF
    private static let lowSurrogates: ClosedRange<UInt32> = 0xDC00...0xDFFF

    private func fail(_ reason: String) -> JSONSyntaxError { JSONSyntaxError(offset: index, reason: reason) }

    mutating func document() throws(JSONSyntaxError) -> JSONValue {
        let value = try self.value()
        skipWhitespace()
        guard index == bytes.count else { throw fail("unexpected text after the value") }
        return value
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case Self.space, Self.tab, Self.newline, Self.carriageReturn: index += 1
            default: return
            }
        }
    }

    private mutating func value() throws(JSONSyntaxError) -> JSONValue {
        skipWhitespace()
        guard index < bytes.count else { throw fail("unexpected end of text") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case Self.quote: return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case Self.minus, Self.zero...Self.nine: return .number(try number())
        default: throw fail("unexpected character")
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let count = word.utf8CodeUnitCount
        guard bytes.count - index >= count,
              word.withUTF8Buffer({ $0.elementsEqual(bytes[index..<index + count]) }) else {
            throw fail("invalid literal")
        }
        index += count
    }

    private mutating func enterContainer() throws(JSONSyntaxError) {
        depth += 1
        guard depth <= JSONValue.maximumNesting else { throw fail("nested deeper than \(JSONValue.maximumNesting) levels") }
        index += 1
    }

    /// Consumes `byte` after optional whitespace, or reports `expected`.
    private mutating func expect(_ byte: UInt8, _ expected: String) throws(JSONSyntaxError) {
        skipWhitespace()
        guard index < bytes.count else { throw fail("unexpected end of text, expected \(expected)") }
        guard bytes[index] == byte else { throw fail("expected \(expected)") }
        index += 1
    }

    /// True (and consumed) when the next byte after whitespace is `byte`.
    private mutating func consume(_ byte: UInt8) -> Bool {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func object() throws(JSONSyntaxError) -> JSONValue {
        try enterContainer()
        defer { depth -= 1 }
        var members: [(key: String, value: JSONValue)] = []
        if consume(UInt8(ascii: "}")) { return .object(members) }
        repeat {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == Self.quote else { throw fail("expected a member name") }
            let key = try string()
            try expect(UInt8(ascii: ":"), "':'")
            members.append((key, try value()))
        } while consume(UInt8(ascii: ","))
        try expect(UInt8(ascii: "}"), "',' or '}'")
        return .object(members)
    }

    private mutating func array() throws(JSONSyntaxError) -> JSONValue {
        try enterContainer()
        defer { depth -= 1 }
        var elements: [JSONValue] = []
        if consume(UInt8(ascii: "]")) { return .array(elements) }
        repeat {
            elements.append(try value())
        } while consume(UInt8(ascii: ","))
        try expect(UInt8(ascii: "]"), "',' or ']'")
        return .array(elements)
    }

    /// A string literal; the opening quote is at `index`. Invalid UTF-8 is
    /// decoded with U+FFFD replacements, as the writer's names were.
    private mutating func string() throws(JSONSyntaxError) -> String {
        index += 1
        let start = index
        // Fast path: no escape before the closing quote.
        while index < bytes.count, bytes[index] != Self.quote, bytes[index] != Self.backslash {
            guard bytes[index] > Self.lastControlCharacter else { throw fail("unescaped control character in a string") }
            index += 1
        }
        guard index < bytes.count else { throw fail("unterminated string") }
        if bytes[index] == Self.quote {
            index += 1
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index - 1]), as: UTF8.self)
        }
        var decoded = Array(bytes[start..<index])
        while true {
            guard index < bytes.count else { throw fail("unterminated string") }
            let byte = bytes[index]
            if byte == Self.quote {
                index += 1
                return String(decoding: decoded, as: UTF8.self)
            }
            guard byte > Self.lastControlCharacter else { throw fail("unescaped control character in a string") }
            guard byte == Self.backslash else {
                decoded.append(byte)
                index += 1
                continue
            }
            index += 1
            guard index < bytes.count else { throw fail("unterminated escape") }
            let escape = bytes[index]
            index += 1
            switch escape {
            case Self.quote, Self.backslash, UInt8(ascii: "/"): decoded.append(escape)
            case UInt8(ascii: "b"): decoded.append(0x08)
            case UInt8(ascii: "f"): decoded.append(0x0c)
            case UInt8(ascii: "n"): decoded.append(Self.newline)
            case UInt8(ascii: "r"): decoded.append(Self.carriageReturn)
            case UInt8(ascii: "t"): decoded.append(Self.tab)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if Self.highSurrogates.contains(scalar) {
                    guard bytes.count - index >= 2, bytes[index] == Self.backslash, bytes[index + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired surrogate \\u\(String(scalar, radix: 16))")
                    }
                    index += 2
                    let low = try hex4()
                    guard Self.lowSurrogates.contains(low) else { throw fail("unpaired surrogate \\u\(String(scalar, radix: 16))") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if Self.lowSurrogates.contains(scalar) {
                    throw fail("unpaired surrogate \\u\(String(scalar, radix: 16))")
                }
                guard let unicodeScalar = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape") }
                Unicode.UTF8.encode(unicodeScalar) { decoded.append($0) }
            default:
                index -= 1
                throw fail("invalid escape")
            }
        }
    }

    private mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw fail("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case Self.zero...Self.nine: digit = byte - Self.zero
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw fail("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    /// A number: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
    private mutating func number() throws(JSONSyntaxError) -> String {
        let start = index
        if bytes[index] == Self.minus { index += 1 }
        func digits(_ parser: inout JSONParser) -> Int {
            let first = parser.index
            while parser.index < parser.bytes.count, (Self.zero...Self.nine).contains(parser.bytes[parser.index]) { parser.index += 1 }
            return parser.index - first
        }
        let integerStart = index
        let integerDigits = digits(&self)
        guard integerDigits > 0 else { throw fail("invalid number") }
        guard integerDigits == 1 || bytes[integerStart] != Self.zero else { throw fail("leading zero in a number") }
        if index < bytes.count, bytes[index] == Self.dot {
            index += 1
            guard digits(&self) > 0 else { throw fail("invalid number") }
        }
        if index < bytes.count, bytes[index] == Self.lowerE || bytes[index] == Self.upperE {
            index += 1
            if index < bytes.count, bytes[index] == Self.plus || bytes[index] == Self.minus { index += 1 }
            guard digits(&self) > 0 else { throw fail("invalid number") }
        }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
    }
}

// MARK: - typed fields

/// A JSON object being decoded into a typed value: each accessor names the
/// full path of the field in its error ("missing field clock.start.tsc").
struct JSONFields {
    let members: [(key: String, value: JSONValue)]
    /// Dotted path of this object in the document; empty at the top.
    let path: String

    init(_ value: JSONValue, path: String) throws(JSONDecodingProblem) {
        guard case let .object(members) = value else {
            throw .wrongType(path: path.isEmpty ? "the top level" : path, expected: "an object", found: value.kindName)
        }
        self.members = members
        self.path = path
    }

    func childPath(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    /// The value of `key`; nil when absent.
    func optional(_ key: String) -> JSONValue? {
        members.last { $0.key == key }?.value
    }

    func value(_ key: String) throws(JSONDecodingProblem) -> JSONValue {
        guard let value = optional(key) else { throw .missingField(path: childPath(key)) }
        return value
    }

    func object(_ key: String) throws(JSONDecodingProblem) -> JSONFields {
        try JSONFields(try value(key), path: childPath(key))
    }

    func array(_ key: String) throws(JSONDecodingProblem) -> [JSONValue] {
        let found = try value(key)
        guard case let .array(elements) = found else {
            throw .wrongType(path: childPath(key), expected: "an array", found: found.kindName)
        }
        return elements
    }

    func string(_ key: String) throws(JSONDecodingProblem) -> String {
        try JSONFields.string(try value(key), path: childPath(key))
    }

    /// A string, or nil when the field is absent or null.
    func optionalString(_ key: String) throws(JSONDecodingProblem) -> String? {
        guard let found = optional(key), found != .null else { return nil }
        return try JSONFields.string(found, path: childPath(key))
    }

    func bool(_ key: String) throws(JSONDecodingProblem) -> Bool {
        let found = try value(key)
        guard case let .bool(flag) = found else {
            throw .wrongType(path: childPath(key), expected: "a boolean", found: found.kindName)
        }
        return flag
    }

    func integer<T: FixedWidthInteger>(_ key: String, as type: T.Type = T.self) throws(JSONDecodingProblem) -> T {
        try JSONFields.integer(try value(key), path: childPath(key))
    }

    static func string(_ value: JSONValue, path: String) throws(JSONDecodingProblem) -> String {
        guard case let .string(text) = value else {
            throw .wrongType(path: path, expected: "a string", found: value.kindName)
        }
        return text
    }

    /// An integer that fits `T` exactly (no fraction, no exponent).
    static func integer<T: FixedWidthInteger>(_ value: JSONValue, path: String, as type: T.Type = T.self) throws(JSONDecodingProblem) -> T {
        guard case let .number(text) = value else {
            throw .wrongType(path: path, expected: "an integer", found: value.kindName)
        }
        guard let number = T(text, radix: 10) else {
            throw .wrongType(path: path, expected: "an integer in \(T.min)...\(T.max)", found: text)
        }
        return number
    }
}

/// Why a valid JSON text is not the expected document.
enum JSONDecodingProblem: Error, CustomStringConvertible {
    case missingField(path: String)
    case wrongType(path: String, expected: String, found: String)

    var description: String {
        switch self {
        case let .missingField(path): return "missing field \(path)"
        case let .wrongType(path, expected, found): return "wrong type at \(path): expected \(expected), found \(found)"
        }
    }
}
