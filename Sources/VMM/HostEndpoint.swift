// VMM: a device's host side that only one process can hold at a time — a
// TAP device, a vsock listening socket. A live migration between two
// processes on one host releases it before the receiver builds its machine
// and takes it back when the migration fails, so the guest keeps its
// network and its vsock listener wherever it runs.
protocol HostEndpoint: AnyObject {
    /// The descriptors the device's thread waits on (none of a released endpoint).
    var hostDescriptors: [CInt] { get }
    /// Closes what another process must open (idempotent).
    func release()
    /// Opens it again after `release`; one line naming the option when it cannot.
    func reacquire() throws(MachineError)
}
