// HostThread: pthreads for the VMM's long-running loops, named, detached,
// and a failed start reported instead of lost.
import Foundation
import Glibc
@testable import KVM
import Synchronization
import Testing

@Suite struct HostThreadTests {
    @Test func runsTheBodyOnANewNamedThread() async throws {
        let seen = Mutex<(name: String, sameThread: Bool)?>(nil)
        let caller = pthread_self()
        let done = DispatchSemaphore(value: 0)
        try HostThread.start(name: "deflect-test-thread-name") {
            let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
            seen.withLock { $0 = (name.trimmingCharacters(in: .newlines), pthread_equal(pthread_self(), caller) != 0) }
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        let result = try #require(seen.withLock { $0 })
        #expect(result.name == "deflect-test-th", "the kernel keeps 15 bytes of a thread's name")
        #expect(!result.sameThread)
    }

    @Test func aStackTheHostCannotGiveIsAnError() {
        // More address space than any host maps for one stack.
        #expect(throws: HostThread.StartError.self) {
            try HostThread.start(name: "huge", stackBytes: 1 << 62) {}
        }
        let error = HostThread.StartError(name: "vcpu0", errno: EAGAIN)
        #expect(error.description == "cannot start thread vcpu0: \(String(cString: strerror(EAGAIN)))")
    }

    @Test func sleepWaitsAtLeastTheTimeAsked() {
        let start = DispatchTime.now().uptimeNanoseconds
        HostThread.sleep(seconds: 0.02)
        #expect(DispatchTime.now().uptimeNanoseconds - start >= 20_000_000)
        let quick = DispatchTime.now().uptimeNanoseconds
        HostThread.sleep(seconds: -1)
        HostThread.sleep(seconds: .nan)
        #expect(DispatchTime.now().uptimeNanoseconds - quick < 5_000_000)
    }
}
