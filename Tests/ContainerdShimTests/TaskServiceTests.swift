// The Task service's state machine over ttrpc, with a stand-in for deflect
// (/bin/false: starts, exits 1) so no KVM or containerd is needed.
import Foundation
import SwiftProtobuf
import Testing
import TTRPC
@testable import ContainerdShim

@Suite struct TaskServiceTests {
    /// A bundle whose config.json points at a root filesystem with a valid deflect.json.
    private func bundle() throws -> String {
        let bundle = NSTemporaryDirectory() + "deflect-bundle-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: bundle + "/guest", withIntermediateDirectories: true)
        try Data(#"{"root": {"path": "guest"}}"#.utf8).write(to: URL(fileURLWithPath: bundle + "/config.json"))
        try Data([0xF4]).write(to: URL(fileURLWithPath: bundle + "/guest/g.bin"))
        try Data(#"{"image": "g.bin", "mode": "real"}"#.utf8).write(to: URL(fileURLWithPath: bundle + "/guest/deflect.json"))
        return bundle
    }

    private func call<Response: SwiftProtobuf.Message>(_ registry: TTRPCServiceRegistry, _ method: String,
                                                       _ request: some SwiftProtobuf.Message, as _: Response.Type) throws -> Response {
        var envelope = Ttrpc_Request()
        envelope.service = TaskService.serviceName
        envelope.method = method
        envelope.payload = try request.serializedData()
        let response = registry.respond(to: envelope)
        if response.hasStatus, response.status.code != 0 {
            throw TTRPCError(TTRPCStatusCode(rawValue: response.status.code) ?? .unknown, response.status.message)
        }
        return try Response(serializedBytes: response.payload)
    }

    @Test func lifecycleAndRefusals() throws {
        let registry = TTRPCServiceRegistry()
        let service = TaskService(deflectBinary: "/bin/false", events: EventPublisher(address: nil, namespace: "t")) {}
        service.register(in: registry)
        let path = try bundle()

        var create = Containerd_Task_V2_CreateTaskRequest()
        create.id = "vm"
        create.bundle = path
        _ = try call(registry, "Create", create, as: Containerd_Task_V2_CreateTaskResponse.self)
        #expect(throws: TTRPCError.self) { try call(registry, "Create", create, as: Containerd_Task_V2_CreateTaskResponse.self) }

        var state = Containerd_Task_V2_StateRequest()
        state.id = "vm"
        #expect(try call(registry, "State", state, as: Containerd_Task_V2_StateResponse.self).status == .created)

        var start = Containerd_Task_V2_StartRequest()
        start.id = "vm"
        let started = try call(registry, "Start", start, as: Containerd_Task_V2_StartResponse.self)
        #expect(started.pid > 0)
        #expect(throws: TTRPCError(.failedPrecondition, "task vm was already started")) {
            try call(registry, "Start", start, as: Containerd_Task_V2_StartResponse.self)
        }

        var wait = Containerd_Task_V2_WaitRequest()
        wait.id = "vm"
        #expect(try call(registry, "Wait", wait, as: Containerd_Task_V2_WaitResponse.self).exitStatus == 1)
        let stopped = try call(registry, "State", state, as: Containerd_Task_V2_StateResponse.self)
        #expect(stopped.status == .stopped && stopped.exitStatus == 1 && stopped.pid == started.pid)

        var kill = Containerd_Task_V2_KillRequest()
        kill.id = "vm"
        kill.execID = "shell"
        kill.signal = 9
        #expect(throws: TTRPCError(.notFound, "exec shell not found: a VM task has no exec processes")) {
            try call(registry, "Kill", kill, as: Google_Protobuf_Empty.self)
        }
        kill.execID = ""
        #expect(throws: TTRPCError(.notFound, "task vm: process already finished")) {
            try call(registry, "Kill", kill, as: Google_Protobuf_Empty.self)
        }
        var other = Containerd_Task_V2_StateRequest()
        other.id = "nope"
        #expect(throws: TTRPCError(.notFound, "task nope not found in this shim")) {
            try call(registry, "State", other, as: Containerd_Task_V2_StateResponse.self)
        }
        #expect(throws: TTRPCError(.unimplemented, "containerd.task.v2.Task/Exec is not implemented")) {
            try call(registry, "Exec", Containerd_Task_V2_ExecProcessRequest(), as: Google_Protobuf_Empty.self)
        }

        var delete = Containerd_Task_V2_DeleteRequest()
        delete.id = "vm"
        let deleted = try call(registry, "Delete", delete, as: Containerd_Task_V2_DeleteResponse.self)
        #expect(deleted.exitStatus == 1 && deleted.pid == started.pid)
    }

    @Test func createRefusesABadDescriptionAndMounts() throws {
        let registry = TTRPCServiceRegistry()
        TaskService(deflectBinary: "/bin/false", events: EventPublisher(address: nil, namespace: "t")) {}.register(in: registry)
        let path = try bundle()
        try Data(#"{"image": "/../../../../../../../../etc/passwd"}"#.utf8).write(to: URL(fileURLWithPath: path + "/guest/deflect.json"))
        var create = Containerd_Task_V2_CreateTaskRequest()
        create.id = "vm"
        create.bundle = path
        let error = #expect(throws: TTRPCError.self) { try call(registry, "Create", create, as: Containerd_Task_V2_CreateTaskResponse.self) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("outside the root filesystem") == true, "\(String(describing: error))")
        create.rootfs = [Containerd_Task_V2_Mount()]
        let mounts = #expect(throws: TTRPCError.self) { try call(registry, "Create", create, as: Containerd_Task_V2_CreateTaskResponse.self) }
        #expect(mounts?.code == .unimplemented)
    }
}
