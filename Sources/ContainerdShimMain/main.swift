// containerd-shim-deflect-v1: containerd's runtime v2 shim for Deflect VMs
// (`ctr run --runtime io.containerd.deflect.v1`). Exit statuses: 0 done, 64
// bad usage, 1 the action failed.
import ContainerdShim
import ReadableErrors
import Foundation

func fail(_ message: String, status: Int32) -> Never {
    FileHandle.standardError.write(Data("containerd-shim-deflect-v1: error: \(message)\n".utf8))
    exit(status)
}

let arguments: ShimArguments
do {
    arguments = try ShimArguments.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    fail(error.description, status: 64)
}
do {
    switch arguments.action {
    case "start":
        print(try ShimCommands.start(arguments), terminator: "")
    case "delete":
        FileHandle.standardOutput.write(Data(try ShimCommands.delete(arguments)))
    case "pause":
        SandboxPlaceholder.hold()
    default:
        try ShimCommands.serve(arguments)
    }
} catch {
    fail("\(arguments.action): \(ReadableError.reason(error))", status: 1)
}
