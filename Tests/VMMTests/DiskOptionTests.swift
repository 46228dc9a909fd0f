// VMMTests: `--disk` values in cloud-hypervisor's key=value syntax — what is
// accepted and the one-line refusals of what is not.
import Testing
@testable import VMM

@Suite struct DiskOptionTests {
    @Test func keysInAnyOrder() throws {
        #expect(try DiskConfiguration.parse("path=/tmp/d.img") == DiskConfiguration(path: "/tmp/d.img"))
        #expect(try DiskConfiguration.parse("serial=ABC-1,readonly=on,path=d.img")
                == DiskConfiguration(path: "d.img", readOnly: true, serial: "ABC-1"))
        #expect(try DiskConfiguration.parse("path=a,readonly=off") == DiskConfiguration(path: "a"))
        // A path may hold '=' after the first one.
        #expect(try DiskConfiguration.parse("path=a=b").path == "a=b")
    }

    @Test(arguments: [
        ("", "is not KEY=VALUE"),
        ("d.img", "is not KEY=VALUE"),
        ("path=", "path is empty"),
        ("readonly=on", "path=FILE is required"),
        ("path=a,readonly=yes", "readonly=yes (on or off)"),
        ("path=a,path=b", "path given twice"),
        ("path=a,cache=none", "unknown key cache"),
        ("path=a,serial=" + String(repeating: "x", count: 21), "at most 20 printable ASCII"),
        ("path=a,serial=tab\there", "at most 20 printable ASCII"),
        ("path=a,,readonly=on", "is not KEY=VALUE"),
    ])
    func malformedValuesAreOneLine(text: String, fragment: String) {
        do {
            _ = try DiskConfiguration.parse(text)
            Issue.record("\(text) was accepted")
        } catch {
            #expect(error.description.hasPrefix("--disk \(text): "), "\(error)")
            #expect(error.description.contains(fragment), "\(error)")
            #expect(!error.description.contains("\n"))
        }
    }
}
