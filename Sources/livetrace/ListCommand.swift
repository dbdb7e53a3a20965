import ArgumentParser
import LiveTrace
#if canImport(Glibc)
import Glibc
#endif

/// `livetrace list PROGRAM...`: the sites of ELF files, read from disk (the
/// programs are not run). Text for people, `--json` for tools; the JSON
/// schema is documented and versioned in docs/cli-list.md.
///
/// Exit status: 0 when at least one site was found; 1 when an object could
/// not be read (the others are still listed); 2 when every object was read
/// but none has a site (stderr says which compiler flags make sites).
struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the patchable sites of programs and shared libraries (read from disk, not run).",
        discussion: """
            Addresses are link-time addresses, as printed by nm and objdump. \
            Every site shows its kind, function, source location (from DWARF, \
            when present) and whether it is usable; a rejected site says why. \
            Functions without a site (kind none: Swift code, or C built without \
            the flags) are listed too.
            """
    )

    @Argument(help: "ELF executables or shared libraries. A name without '/' is looked up in PATH.")
    var programs: [String]

    @Flag(help: "Print JSON (schema: docs/cli-list.md).")
    var json = false

    @Flag(name: .customLong("no-lines"), help: "Do not look up source file and line in DWARF.")
    var noLines = false

    @Flag(name: .customLong("sites-only"), help: "Leave out functions that have no site (kind none).")
    var sitesOnly = false

    @Flag(help: "Print only the per-object summary lines (no site rows).")
    var summary = false

    @Option(name: .customLong("match"), help: "Only functions whose name or symbol matches this glob (fnmatch: *, ?, [...]).")
    var match: String?

    static let exitUnreadable: Int32 = 1
    static let exitNoSites: Int32 = 2

    static let howToGetSites = """
        compile C with one of: -fpatchable-function-entry=5 (gcc or clang); \
        -pg -mfentry (gcc or clang); \
        -pg -mfentry -mnop-mcount -mrecord-mcount -fno-pie -no-pie (gcc). \
        functions without a site (Swift code) are reached by prologue relocation (livetrace record -P GLOB)
        """

    func run() throws {
        let paths = programs.map(Self.resolve)
        let options = DiscoveryOptions(sourceLines: !noLines, demangle: true, includeFunctionsWithoutSites: !sitesOnly)
        var table = SiteTable(files: paths, options: options)
        if let match {
            let glob = Glob(match)
            for i in table.objects.indices {
                table.objects[i].sites.removeAll { !glob.matches($0.function) && !glob.matches($0.symbol) }
                table.objects[i].functionsWithoutSites.removeAll { !glob.matches($0.function) && !glob.matches($0.symbol) }
            }
        }
        // Functions without sites: their prologue-relocation verdict (kind
        // `dynamic`).
        var relocations: [String: [UInt: Result<PrologueRelocation, RelocationRefusal>]] = [:]
        if !sitesOnly {
            for object in table.objects where !object.functionsWithoutSites.isEmpty {
                let wanted = Set(object.functionsWithoutSites.map(\.functionAddress))
                let cores = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
                guard let verdicts = try? ElfObject(path: object.path).prologueRelocations(only: wanted, threads: cores) else { continue }
                relocations[object.path] = Dictionary(verdicts.entries.map { ($0.functionAddress, $0.verdict) }, uniquingKeysWith: { a, _ in a })
            }
        }
        let output = json ? ListJSON.render(table, relocations: relocations) : ListText.render(table, rows: !summary, relocations: relocations)
        ListOutput.write(output, to: STDOUT_FILENO)
        for failure in table.failures {
            ListOutput.write("livetrace list: \(failure.error)\n", to: STDERR_FILENO)
        }
        if !table.failures.isEmpty { throw ExitCode(Self.exitUnreadable) }
        let sitesFound = table.objects.contains { !$0.sites.isEmpty }
        if !sitesFound {
            let what = match.map { "no site matches '\($0)'" } ?? "no patchable sites"
            for object in table.objects {
                ListOutput.write("livetrace list: \(object.path): \(what) (looked in: \(Self.describeSources(object))).\n", to: STDERR_FILENO)
            }
            if match == nil { ListOutput.write("livetrace list: to get sites, \(Self.howToGetSites).\n", to: STDERR_FILENO) }
            throw ExitCode(Self.exitNoSites)
        }
    }

    static func describeSources(_ object: ObjectSites) -> String {
        var places = ["__patchable_function_entries", "__mcount_loc"]
        if object.siteSources.contains(where: { $0.contains("scan") }) { places.append("entry calls to __fentry__") }
        return places.joined(separator: ", ")
    }

    /// A bare name that is not a file here is looked up in PATH, like a shell would.
    static func resolve(_ program: String) -> String {
        guard !program.contains("/"), access(program, F_OK) != 0,
              let path = getenv("PATH").map({ String(cString: $0) }) else { return program }
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return program
    }
}

/// Unbuffered output through write(2), retried on EINTR and on short writes.
/// A closed pipe (EPIPE) ends the output quietly: the reader has gone.
enum ListOutput {
    static func write(_ text: String, to fd: Int32) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            guard let written = try? SystemCall.retrying("write", { bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } }) else {
                return
            }
            bytes = bytes.dropFirst(written)
        }
    }
}

/// The text form: one block per object, one line per site, then a summary.
enum ListText {
    typealias Verdicts = [UInt: Result<PrologueRelocation, RelocationRefusal>]

    /// `relocations`: by object path, the prologue-relocation verdicts of its
    /// functions (link-time addresses); a function without a site that has
    /// one is shown as kind `dynamic`, usable when relocatable.
    static func render(_ table: SiteTable, rows showRows: Bool = true, relocations: [String: Verdicts] = [:]) -> String {
        var out = ""
        for object in table.objects {
            let sources = object.siteSources.isEmpty ? "none" : object.siteSources.joined(separator: ", ")
            out += "\(object.path): \(object.type.rawValue), link-time addresses; site lists: \(sources)\n"
            let verdicts = relocations[object.path] ?? [:]
            if showRows { out += renderRows(object, verdicts: verdicts) }
            out += summaryLine(object) + dynamicSummary(object, verdicts) + "\n\n"
        }
        return out
    }

    /// "; dynamic: R relocatable, F refused (reason: n, ...)" over the
    /// functions without sites.
    static func dynamicSummary(_ object: ObjectSites, _ verdicts: Verdicts) -> String {
        guard !verdicts.isEmpty else { return "" }
        let (relocatable, refused) = dynamicCounts(object, verdicts)
        var text = "; dynamic: \(relocatable) relocatable, \(refused.values.reduce(0, +)) refused"
        if !refused.isEmpty {
            text += " (" + refused.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + ")"
        }
        return text
    }

    /// Functions without sites that are relocatable, and the refused ones by
    /// reason code.
    static func dynamicCounts(_ object: ObjectSites, _ verdicts: Verdicts) -> (relocatable: Int, refused: [String: Int]) {
        var relocatable = 0
        var refused: [String: Int] = [:]
        for site in object.functionsWithoutSites {
            switch verdicts[site.functionAddress] {
            case .success?: relocatable += 1
            case let .failure(reason)?: refused[reason.code, default: 0] += 1
            case nil: break
            }
        }
        return (relocatable, refused)
    }

    static func renderRows(_ object: ObjectSites, verdicts: Verdicts = [:]) -> String {
        var out = ""
        let rows = (object.sites + object.functionsWithoutSites).sorted { $0.address < $1.address }
        func label(_ site: Site) -> String {
            site.kind == .none && verdicts[site.functionAddress] != nil ? "dynamic" + (site.hasEndbr ? "+endbr" : "") : kindLabel(site)
        }
        let kindWidth = max(7, rows.map { label($0).count }.max() ?? 7)
        let nameWidth = min(48, max(8, rows.map { $0.function.count }.max() ?? 8))
        out += pad("ADDRESS", 18) + "  " + pad("KIND", kindWidth) + "  USABLE  " + pad("FUNCTION", nameWidth) + "  SOURCE\n"
        for site in rows {
            let verdict = site.kind == .none ? verdicts[site.functionAddress] : nil
            var usable = site.isUsable
            if case .success? = verdict { usable = true }
            var line = pad("0x" + String(site.address, radix: 16), 18) + "  " + pad(label(site), kindWidth)
            line += "  " + pad(usable ? "yes" : "no", 6) + "  " + pad(site.function, nameWidth)
            line += "  " + (site.sourceFile.map { "\($0):\(site.sourceLine ?? 0)" } ?? "-")
            switch verdict {
            case let .success(relocation)?:
                line += "  (relocatable: \(relocation.relocatedLength) bytes moved"
                line += (EntryOnly.isSwiftAsync(site.symbol) ? "; recorded entry only)" : ")")
            case let .failure(reason)?: line += "  (not relocatable: \(reason))"
            case nil: if let rejection = site.rejection { line += "  (\(rejection))" }
            }
            out += line + "\n"
        }
        return out
    }

    static func summaryLine(_ object: ObjectSites) -> String {
        let summary = object.summary
        var text = "summary: \(summary.found) sites found, \(summary.usable) usable, \(summary.rejected) rejected"
        if !summary.rejectedByReason.isEmpty {
            text += " (" + summary.rejectedByReason.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + ")"
        }
        text += "; \(summary.functionsWithoutSites) functions without sites"
        if object.discardedListEntries > 0 { text += "; \(object.discardedListEntries) list entries of discarded functions (0) ignored" }
        if object.ignoredSymbols > 0 { text += "; \(object.ignoredSymbols) function symbols ignored (bad name or address)" }
        if object.ignoredRelocations > 0 { text += "; \(object.ignoredRelocations) relocations ignored (bad symbol index)" }
        return text
    }

    static func kindLabel(_ site: Site) -> String {
        var label = site.kind.rawValue
        if site.kind == .patchable { label += "(\(site.patchableTotal),\(site.patchableBefore))" }
        if site.hasEndbr { label += "+endbr" }
        return label
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }
}

/// The `--json` form, schema version 2 (docs/cli-list.md): snake_case keys,
/// as the trace's and `report --json`'s. Keys are written in a fixed order so
/// the output is byte-stable for the same input.
enum ListJSON {
    static let schemaVersion = 2

    static func render(_ table: SiteTable, relocations: [String: ListText.Verdicts] = [:]) -> String {
        var out = "{\n  \"version\": \(schemaVersion),\n  \"addresses\": \"link-time\",\n  \"objects\": ["
        for (index, object) in table.objects.enumerated() {
            out += index == 0 ? "\n" : ",\n"
            out += "    {\n"
            out += "      \"path\": \(string(object.path)),\n"
            out += "      \"type\": \(string(object.type.rawValue)),\n"
            out += "      \"site_sources\": [\(object.siteSources.map(string).joined(separator: ", "))],\n"
            out += "      \"has_source_lines\": \(object.hasSourceLines),\n"
            let summary = object.summary
            let reasons = summary.rejectedByReason.sorted { $0.key < $1.key }.map { "\(string($0.key)): \($0.value)" }.joined(separator: ", ")
            out += "      \"summary\": {\"found\": \(summary.found), \"usable\": \(summary.usable), \"rejected\": \(summary.rejected), "
            out += "\"rejected_by_reason\": {\(reasons)}, \"functions_without_sites\": \(summary.functionsWithoutSites), "
            out += "\"discarded_list_entries\": \(object.discardedListEntries), "
            out += "\"ignored_symbols\": \(object.ignoredSymbols), \"ignored_relocations\": \(object.ignoredRelocations)"
            let verdicts = relocations[object.path] ?? [:]
            if !verdicts.isEmpty {
                let (relocatable, refused) = ListText.dynamicCounts(object, verdicts)
                let byReason = refused.sorted { $0.key < $1.key }.map { "\(string($0.key)): \($0.value)" }.joined(separator: ", ")
                out += ", \"dynamic\": {\"relocatable\": \(relocatable), \"refused\": \(refused.values.reduce(0, +)), \"refused_by_reason\": {\(byReason)}}"
            }
            out += "},\n"
            out += "      \"sites\": [" + rows(object.sites) + "],\n"
            out += "      \"functions_without_sites\": [" + rows(object.functionsWithoutSites, verdicts: verdicts) + "]\n"
            out += "    }"
        }
        out += table.objects.isEmpty ? "],\n" : "\n  ],\n"
        out += "  \"errors\": ["
        out += table.failures.map { "\n    {\"path\": \(string($0.path)), \"message\": \(string($0.error.description))}" }.joined(separator: ",")
        out += table.failures.isEmpty ? "]\n}\n" : "\n  ]\n}\n"
        return out
    }

    static func rows(_ sites: [Site], verdicts: ListText.Verdicts = [:]) -> String {
        guard !sites.isEmpty else { return "" }
        return "\n" + sites.map { "        " + site($0, verdict: verdicts[$0.functionAddress]) }.joined(separator: ",\n") + "\n      "
    }

    /// A function without a site that has a prologue-relocation verdict is
    /// kind `dynamic`, with a `relocation` object.
    static func site(_ site: Site, verdict: Result<PrologueRelocation, RelocationRefusal>? = nil) -> String {
        let verdict = site.kind == .none ? verdict : nil
        var relocatable = false
        if case .success? = verdict { relocatable = true }
        var fields = [
            "\"function\": \(string(site.function))",
            "\"symbol\": \(string(site.symbol))",
            "\"kind\": \(string(verdict == nil ? site.kind.rawValue : "dynamic"))",
            "\"form\": \(string(site.form.rawValue))",
            "\"address\": \"0x\(String(site.address, radix: 16))\"",
            "\"function_address\": \"0x\(String(site.functionAddress, radix: 16))\"",
            "\"usable\": \(site.isUsable || relocatable)",
            "\"endbr64\": \(site.hasEndbr)",
        ]
        if site.kind == .patchable || site.patchableTotal > 0 {
            fields.append("\"patchable\": {\"total\": \(site.patchableTotal), \"before\": \(site.patchableBefore)}")
        }
        if let file = site.sourceFile {
            fields.append("\"source\": {\"file\": \(string(file)), \"line\": \(site.sourceLine ?? 0)}")
        } else {
            fields.append("\"source\": null")
        }
        if let rejection = site.rejection, !relocatable {
            fields.append("\"rejection\": {\"code\": \(string(rejection.code)), \"reason\": \(string(rejection.description))}")
        } else {
            fields.append("\"rejection\": null")
        }
        switch verdict {
        case let .success(relocation)?:
            fields.append("\"relocation\": {\"relocatable\": true, \"moved_bytes\": \(relocation.relocatedLength)}")
        case let .failure(reason)?:
            fields.append("\"relocation\": {\"relocatable\": false, \"code\": \(string(reason.code)), \"reason\": \(string(reason.description))}")
        case nil:
            break
        }
        return "{" + fields.joined(separator: ", ") + "}"
    }

    static func string(_ text: String) -> String { JSONText.quoted(text) }
}
