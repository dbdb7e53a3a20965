/// The one JSON string escaper of the project's hand-written JSON outputs
/// (`livetrace list --json`, `livetrace report --json`, info.json): their key
/// order and layout are documented and stable, so they are written by hand
/// rather than through an encoder.
public enum JSONText {
    /// A JSON string literal (RFC 8259): quote, backslash and control
    /// characters escaped; names whose bytes were not UTF-8 were already
    /// decoded with U+FFFD replacements.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let digits = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
