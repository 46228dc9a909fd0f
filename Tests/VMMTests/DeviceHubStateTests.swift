// DeviceHubStateTests.swift — the machine's device set saved and restored
// through DeviceHub: the states of the standard devices survive into a new
// hub, and a refused state set changes nothing.

import Testing
@testable import VMM
import Devices

@Suite struct DeviceHubStateTests {
    @Test func standardDevicesRoundTrip() throws {
        let original = try DeviceHub(serialOutput: BufferSink())
        var anomalies: [DeviceAnomaly] = []
        _ = original.write(port: 0x3FF, size: 1, value: 0xA5, anomalies: &anomalies)   // UART scratch
        _ = original.write(port: 0x80, size: 1, value: 0x42, anomalies: &anomalies)    // POST code
        _ = original.write(port: 0x500, size: 4, value: 3, anomalies: &anomalies)      // guest phase
        original.serialInput(Array("ok".utf8))
        let states = original.exportDeviceStates()
        #expect(states.keys.sorted() == ["guest-sync@0x500", "i8042@0x60", "post-code@0x80", "serial16550@0x3f8"])

        let restored = try DeviceHub(serialOutput: BufferSink())
        try restored.importDeviceStates(states)
        #expect(restored.exportDeviceStates() == states)
        for port: UInt16 in [0x3FF, 0x80, 0x500, 0x3F8, 0x3F8, 0x3FD] {
            #expect(restored.read(port: port, size: 1, anomalies: &anomalies)
                    == original.read(port: port, size: 1, anomalies: &anomalies))
        }
    }

    @Test func refusedStatesChangeNothing() throws {
        let hub = try DeviceHub(serialOutput: BufferSink())
        var states = hub.exportDeviceStates()
        let before = states
        states["post-code@0x80"] = .postCode(PostCodePort.State(lastValue: 9))
        // Ports in order: 0x60, 0x80 (imported), 0x3f8, 0x500 (wrong kind: refused).
        states["guest-sync@0x500"] = before["i8042@0x60"]
        #expect(throws: DeviceStateError.self) { try hub.importDeviceStates(states) }
        #expect(hub.exportDeviceStates() == before)
    }
}
