// RecordArguments.scan (the plain forms of `livetrace record`'s arguments,
// read without the argument parser) against the oracle it must agree with:
// swift-argument-parser's own parse of RecordCommand, in this process.
// Every argument vector the scan reads must be read the same by the parser,
// and one whose values do not validate must be refused by the parser with
// the same message; anything the scan is not sure of it leaves to the parser.
import ArgumentParser
import TestSupport
import XCTest
@testable import livetrace

final class RecordArgumentsTests: XCTestCase {
    /// The parser's reading of `arguments` (after `record`), or its error message.
    private func parsed(_ arguments: [String]) -> Result<RecordArguments, ParseFailure> {
        do {
            let command = try RecordCommand.parseAsRoot(arguments)
            guard let record = command as? RecordCommand else { return .failure(ParseFailure(message: "not a RecordCommand")) }
            return .success(record.arguments)
        } catch {
            return .failure(ParseFailure(message: RecordCommand.message(for: error)))
        }
    }

    struct ParseFailure: Error, Equatable { var message: String }

    /// Option spellings with values, good and bad, in every form the
    /// parser knows (and some it refuses).
    private static let options: [(String, [String])] = [
        ("-F", ["main", "fib*", "a;b", " ", "-x"]), ("-P", ["lua_*", "*"]), ("-N", ["printf", "g"]),
        ("-D", ["1", "3", "0", "4097", "x", "-1"]), ("-t", ["500ns", "10us", "2ms", "1s", "7", "soon"]),
        ("-d", ["trace", "dir with space", "--"]), ("--directory", ["out"]), ("-b", ["2", "1024", "1", "y"]),
        ("--wait", ["0", "100", "60001"]), ("-p", ["1", "4242", "abc", "99999999999"]),
        ("--duration", ["10ms", "5", "later"]),
    ]

    private static func vector(_ random: inout SplitMix64) -> [String] {
        var arguments: [String] = []
        for _ in 0..<Int.random(in: 0...4, using: &random) {
            let (spelling, values) = options.randomElement(using: &random)!
            let value = values.randomElement(using: &random)!
            switch Int.random(in: 0..<10, using: &random) {
            case 0 where spelling.hasPrefix("--"): arguments.append(spelling + "=" + value)
            case 1: arguments.append(spelling + "=" + value)   // -X=VALUE: the parser's business
            case 2: arguments.append(spelling)                 // a value missing
            default: arguments += [spelling, value]
            }
        }
        switch Int.random(in: 0..<6, using: &random) {
        case 0: break                                                     // no program
        case 1: arguments += ["./fib", "3", "-d", "--", "x"]             // the program named first
        case 2: arguments += ["--"]                                       // `--` and nothing
        case 3: arguments += ["--", "--help"]                             // a program named like an option
        default: arguments += ["--", "./prog", "-F", "not-ours", "--wait"]
        }
        return arguments
    }

    func testEveryVectorTheScanReadsTheParserReadsTheSame() {
        var random = SplitMix64(state: 0x5EED_2026_1205)
        var read = 0, refused = 0, leftToTheParser = 0
        for _ in 0..<600 {
            let arguments = Self.vector(&random)
            guard let scanned = RecordArguments.scan(arguments) else {
                leftToTheParser += 1
                continue
            }
            switch (parsed(arguments), scanned.problem) {
            case let (.success(reading), nil):
                read += 1
                XCTAssertEqual(scanned, reading, "\(arguments)")
            case let (.failure(failure), problem?):
                refused += 1
                XCTAssertTrue(failure.message.contains(problem), "\(arguments): the parser says \(failure.message), the scan \(problem)")
            case let (parser, problem):
                XCTFail("\(arguments): the parser's \(parser) against the scan's \(problem ?? "no problem")")
            }
        }
        // Each kind of outcome happened often enough to mean something.
        XCTAssertGreaterThan(read, 60)
        XCTAssertGreaterThan(refused, 60)
        XCTAssertGreaterThan(leftToTheParser, 60)
    }

    func testWhatTheScanIsNotSureOfGoesToTheParser() {
        for arguments in [
            ["--help"], ["-h"], ["-help"], ["-D"], ["-D", "x", "--", "p"], ["-d", "--", "p"], ["-t", "1us", "-t", "2us", "--", "p"],
            ["-d=dir", "--", "p"], ["--bogus", "x", "--", "p"], ["-Fmain", "--", "p"], ["--directory", "-x", "--", "p"],
            ["-F", "", "--", "p"], ["-p", "12x"], ["--wait="], ["-", "p"],
        ] {
            XCTAssertNil(RecordArguments.scan(arguments), "\(arguments)")
        }
    }

    func testThePlainFormsAreRead() throws {
        let scanned = try XCTUnwrap(RecordArguments.scan(
            ["-F", "fib", "-F", "main", "-N", "printf", "-P", "lua_*", "-D", "3", "-t", "10us", "--directory=out",
             "-b", "1024", "--wait", "5", "--", "./fib", "-d", "--", "3"]))
        XCTAssertEqual(scanned, RecordArguments(
            filter: ["fib", "main"], dynamicPatterns: ["lua_*"], notrace: ["printf"], depth: 3, minTime: "10us",
            directory: "out", bufferEvents: 1024, waitMilliseconds: 5, programArguments: ["./fib", "-d", "--", "3"]))
        XCTAssertEqual(RecordArguments.scan(["-p", "4242", "--duration", "1s"])?.pid, 4242)
        XCTAssertEqual(RecordArguments.scan(["./fib", "3"])?.programArguments, ["./fib", "3"])
    }
}
