// VMMTests: `--disk`, `--net` and `--vsock` values in cloud-hypervisor's
// key=value syntax — what is accepted and the one-line refusals of what is not.
import Foundation
import Testing
import Virtio
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

    @Test func directAndIOEventFDAreSwitches() throws {
        let plain = try DiskConfiguration.parse("path=d.img")
        #expect(!plain.direct && plain.ioEventFD)
        #expect(try DiskConfiguration.parse("path=d.img,direct=on,ioeventfd=off")
                == DiskConfiguration(path: "d.img", direct: true, ioEventFD: false))
        #expect(try DiskConfiguration.parse("ioeventfd=on,direct=off,path=d.img") == plain)
        #expect(try NetConfiguration.parse("tap=t0,ioeventfd=off", index: 0).ioEventFD == false)
        #expect(try NetConfiguration.parse("tap=t0", index: 0).ioEventFD)
    }

    /// Snapshots written before `direct` and `ioeventfd` existed still restore, with the defaults.
    @Test func configurationsWithoutTheNewKeysDecode() throws {
        let disk = try JSONDecoder().decode(DiskConfiguration.self, from: Data(#"{"path":"d.img","readOnly":true,"serial":"S"}"#.utf8))
        #expect(disk == DiskConfiguration(path: "d.img", readOnly: true, serial: "S"))
        let round = try JSONDecoder().decode(DiskConfiguration.self,
                                             from: JSONEncoder().encode(DiskConfiguration(path: "a", direct: true, ioEventFD: false)))
        #expect(round.direct && !round.ioEventFD)
        let net = try JSONDecoder().decode(NetConfiguration.self, from: JSONEncoder().encode(NetConfiguration(tap: "t", mac: NetConfiguration.defaultMAC(index: 0))))
        #expect(net.ioEventFD)
        var object = try #require(JSONSerialization.jsonObject(with: JSONEncoder().encode(net)) as? [String: Any])
        object["ioEventFD"] = nil
        #expect(try JSONDecoder().decode(NetConfiguration.self, from: JSONSerialization.data(withJSONObject: object)) == net)
    }

    @Test(arguments: [
        ("", "is not KEY=VALUE"),
        ("d.img", "is not KEY=VALUE"),
        ("path=", "path is empty"),
        ("readonly=on", "path=FILE is required"),
        ("path=a,readonly=yes", "readonly=yes (on or off)"),
        ("path=a,direct=yes", "direct=yes (on or off)"),
        ("path=a,ioeventfd=1", "ioeventfd=1 (on or off)"),
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

@Suite struct NetAndVsockOptionTests {
    @Test func netTakesATapAndAnOptionalMAC() throws {
        #expect(try NetConfiguration.parse("tap=tap0", index: 0) == NetConfiguration(tap: "tap0", mac: MACAddress("52:54:00:12:34:56")!))
        #expect(try NetConfiguration.parse("tap=tap1", index: 1).mac == MACAddress("52:54:00:12:34:57"))
        #expect(try NetConfiguration.parse("mac=02:00:00:00:00:01,tap=t", index: 0).mac.description == "02:00:00:00:00:01")
    }

    @Test(arguments: [
        ("", "is not KEY=VALUE"), ("mac=02:00:00:00:00:01", "tap=NAME is required"), ("tap=", "1 to 15 bytes"),
        ("tap=sixteen-bytes-xx", "1 to 15 bytes"), ("tap=a/b", "1 to 15 bytes"), ("tap=t,mac=zz:00:00:00:00:01", "not a unicast"),
        ("tap=t,mac=01:00:5e:00:00:01", "not a unicast"), ("tap=t,queues=2", "unknown key queues"), ("tap=t,ioeventfd=no", "ioeventfd=no (on or off)"), ("tap=a,tap=b", "tap given twice"),
    ])
    func malformedNetValuesAreOneLine(text: String, fragment: String) {
        do {
            _ = try NetConfiguration.parse(text, index: 0)
            Issue.record("\(text) was accepted")
        } catch {
            #expect(error.description.hasPrefix("--net \(text): ") && error.description.contains(fragment), "\(error)")
        }
    }

    @Test func vsockTakesACIDAndASocket() throws {
        #expect(try VsockConfiguration.parse("cid=3,socket=/tmp/v.sock") == VsockConfiguration(cid: 3, socket: "/tmp/v.sock"))
        #expect(try VsockConfiguration.parse("socket=s,cid=4294967294").cid == 4_294_967_294)
    }

    @Test(arguments: [
        ("cid=2,socket=s", "not a guest CID"), ("cid=4294967295,socket=s", "not a guest CID"), ("cid=x,socket=s", "not a guest CID"),
        ("socket=s", "cid=N is required"), ("cid=3", "socket=PATH is required"), ("cid=3,socket=", "1 to 96 bytes"),
        ("cid=3,socket=" + String(repeating: "p", count: 97), "1 to 96 bytes"), ("cid=3,socket=s,port=1", "unknown key port"),
    ])
    func malformedVsockValuesAreOneLine(text: String, fragment: String) {
        do {
            _ = try VsockConfiguration.parse(text)
            Issue.record("\(text) was accepted")
        } catch {
            #expect(error.description.hasPrefix("--vsock \(text): ") && error.description.contains(fragment), "\(error)")
        }
    }
}

