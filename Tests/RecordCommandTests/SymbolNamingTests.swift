// One symbol index names a function everywhere: `livetrace list` (discovery)
// and a recorded trace's report (objects.json, written by ObjectCapture) pick
// the same name among a function's aliases.
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class SymbolNamingTests: XCTestCase {
    func testListAndReportNameAnAliasedFunctionAlike() throws {
        let program = try RecordFixtures.build("aliases.c", output: "record-aliases")
        let work = RecordFixtures.scratch("aliases")
        defer { try? FileManager.default.removeItem(atPath: work) }

        // The fixture really has the aliases (nm, not our reader): a weak
        // alias sorting before its global, a global alias of a local.
        let nm = try Fixtures.run(["/usr/bin/nm", program])
        for line in ["W aa_weak_step", "T step_global", "t aa_local_scale", "T scale_public"] {
            XCTAssertTrue(nm.stdout.contains(line), "nm: \(line)\n\(nm.stdout)")
        }

        let traced = try RecordFixtures.record([], trace: "trace", program: [program], in: work)
        XCTAssertEqual(traced.stdout, "sum 34\n", traced.stderr)
        let report = try Fixtures.run([Fixtures.livetraceExecutable, "report", "-d", work + "/trace", "--json"])
        let reportJSON = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any])
        let reported = Dictionary(uniqueKeysWithValues: (reportJSON["functions"] as? [[String: Any]] ?? []).map {
            ($0["function"] as? String ?? "?", $0["calls"] as? Int ?? -1)
        })
        XCTAssertEqual(reported, ["main": 1, "step_global": 5, "scale_public": 3], report.stdout)

        let list = try Fixtures.run([Fixtures.livetraceExecutable, "list", "--json", "--sites-only", "--no-lines", program])
        let listJSON = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [String: Any])
        let sites = try XCTUnwrap((listJSON["objects"] as? [[String: Any]])?.first?["sites"] as? [[String: Any]])
        XCTAssertEqual(Set(sites.compactMap { $0["function"] as? String }), Set(reported.keys), list.stdout)
    }
}
