// ControlAPI: the server's open connections and who goes when one more
// would exceed the limit: the connection that has waited longest without a
// whole request (idle, silent, or still trickling its body in), and only
// when every connection has a request being answered, the newest. So a
// flood of idle or slow clients can neither hold the API nor push out a
// connection that is being answered (an operator's `deflect ctl events`, a
// snapshot in progress).
import NIOCore
import Synchronization

final class ConnectionTable: Sendable {
    /// What happens to a connection that has just been accepted.
    enum Admission {
        /// Served; `evicted` (if any) was closed to make room for it.
        case admitted(id: Int, evicted: (any Channel)?)
        /// Over the limit with a request answered on every connection: closed at once.
        case shed
    }

    private struct Entry {
        let channel: any Channel
        /// Since when it waits for its next whole request; nil while one is answered.
        var waitingSince: NIODeadline?
    }

    let maximum: Int
    private let state = Mutex<(next: Int, entries: [Int: Entry])>((0, [:]))

    init(maximum: Int) {
        self.maximum = max(1, maximum)
    }

    /// Admits `channel`, waiting for its first request head from now.
    func admit(_ channel: any Channel) -> Admission {
        let now = NIODeadline.now()
        return state.withLock { state in
            var evicted: (any Channel)?
            if state.entries.count >= maximum {
                let longestWaiting = state.entries.compactMap { id, entry in entry.waitingSince.map { (id, $0) } }
                    .min { $0.1 < $1.1 }
                guard let (id, _) = longestWaiting else { return .shed }
                evicted = state.entries.removeValue(forKey: id)?.channel
            }
            state.next += 1
            state.entries[state.next] = Entry(channel: channel, waitingSince: now)
            return .admitted(id: state.next, evicted: evicted)
        }
    }

    /// A whole request arrived on connection `id` and is being answered.
    func requestStarted(_ id: Int) {
        state.withLock { $0.entries[id]?.waitingSince = nil }
    }

    /// Connection `id` answered everything it was asked and waits again.
    func requestsFinished(_ id: Int) {
        let now = NIODeadline.now()
        state.withLock { $0.entries[id]?.waitingSince = now }
    }

    func remove(_ id: Int) {
        _ = state.withLock { $0.entries.removeValue(forKey: id) }
    }

    /// How many connections are open.
    var count: Int { state.withLock { $0.entries.count } }
}
