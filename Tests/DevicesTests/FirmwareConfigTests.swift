// FirmwareConfigTests.swift — fw_cfg: fixed items, the file directory, unknown
// selectors, reads past the end, offset reset on select, odd access widths,
// addFile validation and registration on the port bus.

import Testing
import Devices

@Suite struct FirmwareConfigTests {
    func device(ram: UInt64 = 64 << 20, cpus: Int = 2, maxCPUs: Int = 8) -> FirmwareConfig {
        FirmwareConfig(ramSize: ram, cpuCount: cpus, maxCPUs: maxCPUs)
    }

    @Test func signatureAndFeatureBits() {
        let fw = device()
        #expect(fw.name == "fw_cfg")
        #expect(fw.item(FirmwareConfig.Selector.signature, 4) == Array("QEMU".utf8))
        // Traditional interface only: no DMA bit.
        #expect(le(fw.item(FirmwareConfig.Selector.id, 4)) == 1)
    }

    @Test(arguments: [UInt64(1) << 20, 64 << 20, 3 << 30, 0x1_2345_6789_ABCD])
    func ramSizeIsLittleEndian64(ram: UInt64) {
        let fw = device(ram: ram)
        #expect(le(fw.item(FirmwareConfig.Selector.ramSize, 8)) == ram)
    }

    @Test(arguments: [(1, 1), (2, 4), (64, 64), (300, 0x1_0000)])
    func cpuCounts(cpus: Int, maxCPUs: Int) {
        let fw = device(cpus: cpus, maxCPUs: maxCPUs)
        #expect(le(fw.item(FirmwareConfig.Selector.cpuCount, 2)) == UInt64(cpus))
        // 16-bit item: values past 0xFFFF are clamped.
        #expect(le(fw.item(FirmwareConfig.Selector.maxCPUs, 2)) == UInt64(min(maxCPUs, 0xFFFF)))
    }

    @Test func fileDirectoryDecodesAndFilesRead() throws {
        let fw = device()
        #expect(be(fw.item(FirmwareConfig.Selector.fileDirectory, 4)) == 0)
        let version = Array("deflect 0.1\n".utf8)
        try fw.addFile(name: "etc/deflect/version", bytes: version)
        try fw.addFile(name: "zz/last", bytes: [9])
        try fw.addFile(name: "aa/first", bytes: [])

        fw.select(FirmwareConfig.Selector.fileDirectory)
        let count = Int(be(fw.readData(4)))
        #expect(count == 3)
        var entries: [(name: String, size: Int, selector: UInt16)] = []
        for _ in 0..<count {
            let entry = fw.readData(64)
            let nameBytes = entry[8...].prefix { $0 != 0 }
            entries.append((String(decoding: nameBytes, as: UTF8.self), Int(be(entry[0..<4])),
                            UInt16(be(entry[4..<6]))))
            #expect(entry[6] == 0 && entry[7] == 0)
        }
        // Sorted by name, selectors from 0x20 in directory order.
        #expect(entries.map(\.name) == ["aa/first", "etc/deflect/version", "zz/last"])
        #expect(entries.map(\.selector) == [0x20, 0x21, 0x22])
        #expect(entries.map(\.size) == [0, version.count, 1])
        #expect(fw.selector(ofFile: "etc/deflect/version") == 0x21)
        #expect(fw.selector(ofFile: "nope") == nil)

        #expect(fw.item(0x21, version.count) == version)
        #expect(fw.item(0x22, 2) == [9, 0])
        #expect(fw.item(0x20, 1) == [0])
        #expect(fw.unknownSelectorReads == 0)
        #expect(fw.drainAnomalies().anomalies.isEmpty)
    }

    @Test func unknownSelectorReadsZeroAndIsReported() {
        let fw = device()
        #expect(fw.lastUnknownSelector == nil)
        #expect(fw.item(0x1234, 4) == [0, 0, 0, 0])
        #expect(fw.unknownSelectorReads == 4)
        #expect(fw.lastUnknownSelector == 0x1234)
        // A file selector with no file behind it is unknown too.
        #expect(fw.item(0x20, 1) == [0])
        #expect(fw.lastUnknownSelector == 0x20)
        let drained = fw.drainAnomalies()
        // One record per selection, not per byte.
        #expect(drained.anomalies.map(\.kind) == [.unknownSelector(0x1234), .unknownSelector(0x20)])
        #expect(drained.dropped == 0)
        #expect(fw.drainAnomalies().anomalies.isEmpty)
        // Selecting a known item again works normally.
        #expect(fw.item(FirmwareConfig.Selector.signature, 4) == Array("QEMU".utf8))
        #expect(fw.unknownSelectorReads == 5)
    }

    @Test func readsPastTheEndReturnZero() {
        let fw = device()
        #expect(fw.item(FirmwareConfig.Selector.signature, 8) == Array("QEMU".utf8) + [0, 0, 0, 0])
        #expect(fw.item(FirmwareConfig.Selector.cpuCount, 3) == [2, 0, 0])
        #expect(fw.drainAnomalies().anomalies.isEmpty)
    }

    @Test func selectResetsTheOffset() {
        let fw = device()
        fw.select(FirmwareConfig.Selector.signature)
        #expect(fw.readData(2) == Array("QE".utf8))
        fw.select(FirmwareConfig.Selector.signature)
        #expect(fw.readData(4) == Array("QEMU".utf8))
        // Reselecting after reading past the end starts over too.
        #expect(fw.readData(2) == [0, 0])
        fw.select(FirmwareConfig.Selector.signature)
        #expect(fw.readData(1) == Array("Q".utf8))
    }

    @Test func writeChannelBitIsIgnoredForReads() {
        let fw = device()
        #expect(fw.item(FirmwareConfig.Selector.writeChannel | FirmwareConfig.Selector.signature, 4)
                == Array("QEMU".utf8))
    }

    @Test func oddAccessesGetDefinedAnswers() {
        let fw = device()
        fw.select(FirmwareConfig.Selector.signature)
        // Wide reads: all ones, offset unchanged, reported.
        #expect(fw.read(offset: 1, size: 2) == 0xFFFF)
        #expect(fw.read(offset: 1, size: 4) == 0xFFFF_FFFF)
        // Byte reads at the selector port read data too (QEMU's combined region).
        #expect(fw.read(offset: 0, size: 1) == UInt32(UInt8(ascii: "Q")))
        #expect(fw.read(offset: 1, size: 1) == UInt32(UInt8(ascii: "E")))
        // Byte writes (old data-write path) and dword writes are ignored.
        #expect(fw.write(offset: 1, size: 1, value: 0x55) == .none)
        #expect(fw.write(offset: 0, size: 4, value: 0x0003) == .none)
        #expect(fw.read(offset: 1, size: 1) == UInt32(UInt8(ascii: "M")))
        // A 16-bit write at the data port selects as well.
        #expect(fw.write(offset: 1, size: 2, value: 0x0005) == .none)
        #expect(fw.readData(2) == [2, 0])
        let kinds = fw.drainAnomalies().anomalies.map(\.kind)
        #expect(kinds == [.unsupportedAccess, .unsupportedAccess, .writeIgnored, .unsupportedAccess])
    }

    @Test func addFileValidation() throws {
        let fw = device()
        #expect(throws: FirmwareConfigError.invalidName("")) { try fw.addFile(name: "", bytes: []) }
        let long = String(repeating: "x", count: 56)
        #expect(throws: FirmwareConfigError.invalidName(long)) { try fw.addFile(name: long, bytes: []) }
        #expect(throws: FirmwareConfigError.invalidName("a\0b")) { try fw.addFile(name: "a\0b", bytes: []) }
        try fw.addFile(name: String(repeating: "y", count: 55), bytes: [1])
        try fw.addFile(name: "etc/a", bytes: [1])
        #expect(throws: FirmwareConfigError.duplicateName("etc/a")) { try fw.addFile(name: "etc/a", bytes: []) }
        for i in 2..<FirmwareConfig.maxFiles {
            try fw.addFile(name: "f\(i)", bytes: [UInt8(i)])
        }
        #expect(throws: FirmwareConfigError.tooManyFiles(limit: 32)) { try fw.addFile(name: "one-more", bytes: []) }
        #expect(be(fw.item(FirmwareConfig.Selector.fileDirectory, 4)) == 32)
        #expect(FirmwareConfigError.tooManyFiles(limit: 32).description.contains("32"))
    }

    @Test func worksThroughThePortBus() throws {
        var bus = PortBus()
        let fw = device(cpus: 4)
        try bus.register(fw, base: FirmwareConfig.basePort, count: FirmwareConfig.portCount)
        #expect(bus.write(port: 0x510, size: 2, value: 0x0005) == DeviceEffect.none)
        #expect(bus.read(port: 0x511, size: 1) == 4)
        #expect(bus.read(port: 0x511, size: 1) == 0)
        // DMA is not emulated: 0x514 stays unowned.
        #expect(bus.read(port: FirmwareConfig.dmaPort, size: 4) == nil)
    }

    @Test func anomalyLogIsBounded() {
        let fw = device()
        for _ in 0..<(DeviceAnomalyLog.defaultCapacity + 10) {
            _ = fw.read(offset: 1, size: 4)
        }
        let drained = fw.drainAnomalies()
        #expect(drained.anomalies.count == DeviceAnomalyLog.defaultCapacity)
        #expect(drained.dropped == 10)
        #expect(fw.anomalies.total == DeviceAnomalyLog.defaultCapacity + 10)
        #expect(drained.anomalies[0].description.contains("fw_cfg"))
    }
}
