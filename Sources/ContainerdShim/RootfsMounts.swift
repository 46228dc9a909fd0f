// ContainerdShim: the task's root filesystem from containerd's snapshotter —
// the mounts of Create's `rootfs` (overlay, bind) mounted one after the other
// onto BUNDLE/rootfs and unmounted on Delete, as containerd's runc shim does
// (its mount package: options split into mount(2) flags and a data string).
#if canImport(Glibc)
import Glibc
#endif

/// One mount's options as mount(2) takes them.
struct MountOptions: Equatable {
    var flags: UInt = 0
    /// Options that are not flags (overlay's lowerdir=…, upperdir=…), comma-joined.
    var data: String = ""

    // mount(2)'s flags (<sys/mount.h>): Glibc declares them as an enum Swift
    // does not import under one type, so they are spelled here.
    static let readOnly: UInt = 1, noSetUID: UInt = 2, noDevices: UInt = 4, noExec: UInt = 8
    static let synchronous: UInt = 16, remount: UInt = 32, mandatoryLocks: UInt = 64, dirSync: UInt = 128
    static let noAccessTime: UInt = 1 << 10, noDirAccessTime: UInt = 1 << 11, bind: UInt = 1 << 12
    static let recursive: UInt = 1 << 14, silent: UInt = 1 << 15
    static let unbindable: UInt = 1 << 17, `private`: UInt = 1 << 18, slave: UInt = 1 << 19, shared: UInt = 1 << 20
    static let relativeAccessTime: UInt = 1 << 21, strictAccessTime: UInt = 1 << 24
    static let propagation = unbindable | `private` | slave | shared

    /// Each flag option: whether it clears its bit (`rw` clears MS_RDONLY) and the bit.
    private static let flagOptions: [String: (clear: Bool, flag: UInt)] = [
        "async": (true, synchronous), "atime": (true, noAccessTime), "bind": (false, bind), "defaults": (false, 0),
        "dev": (true, noDevices), "diratime": (true, noDirAccessTime), "dirsync": (false, dirSync), "exec": (true, noExec),
        "mand": (false, mandatoryLocks), "noatime": (false, noAccessTime), "nodev": (false, noDevices),
        "nodiratime": (false, noDirAccessTime), "noexec": (false, noExec), "nomand": (true, mandatoryLocks),
        "norelatime": (true, relativeAccessTime), "nostrictatime": (true, strictAccessTime), "nosuid": (false, noSetUID),
        "rbind": (false, bind | recursive), "relatime": (false, relativeAccessTime), "remount": (false, remount),
        "ro": (false, readOnly), "rw": (true, readOnly), "strictatime": (false, strictAccessTime), "suid": (true, noSetUID),
        "sync": (false, synchronous),
        "private": (false, `private`), "rprivate": (false, `private` | recursive), "shared": (false, shared),
        "rshared": (false, shared | recursive), "slave": (false, slave), "rslave": (false, slave | recursive),
        "unbindable": (false, unbindable), "runbindable": (false, unbindable | recursive),
    ]

    /// containerd's split: known names become flags, the rest is the data string.
    init(_ options: [String]) throws(RootfsMountError) {
        var data: [String] = []
        for option in options {
            if option == "loop" { throw RootfsMountError(description: "loop mounts are not supported") }
            if option == "remount" { throw RootfsMountError(description: "a remount is not a root filesystem mount") }
            if let known = Self.flagOptions[option] {
                flags = known.clear ? flags & ~known.flag : flags | known.flag
            } else {
                data.append(option)
            }
        }
        self.data = data.joined(separator: ",")
    }
}

public struct RootfsMountError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

enum RootfsMounts {
    /// The kernel takes at most one page of mount data.
    static let maximumDataLength = 4096

    /// Mounts each of `mounts` onto `target` in order; on a failure, what was
    /// mounted is unmounted again.
    static func mount(_ mounts: [Containerd_Task_V2_Mount], onto target: String) throws(RootfsMountError) {
        if Glibc.mkdir(target, 0o711) != 0, errno != EEXIST {
            throw RootfsMountError(description: "cannot create \(target): \(String(cString: strerror(errno)))")
        }
        do {
            for mount in mounts { try self.mount(mount, onto: target) }
        } catch {
            unmountAll(target)
            throw error
        }
    }

    /// One mount, as containerd's Mount.Mount: the mount with every
    /// non-propagation flag, then the propagation change, then a read-only
    /// remount for a read-only bind (a bind mount ignores MS_RDONLY).
    private static func mount(_ mount: Containerd_Task_V2_Mount, onto target: String) throws(RootfsMountError) {
        let options = try MountOptions(mount.options)
        let what = "\(mount.type) mount of \(mount.source) on \(target)"
        guard options.data.utf8.count < maximumDataLength else {
            throw RootfsMountError(description: "\(what): options are longer than a page (\(options.data.utf8.count) bytes)")
        }
        let plain = options.flags & ~MountOptions.propagation
        try call(what, mount.source, target, mount.type, plain, options.data)
        if options.flags & MountOptions.propagation != 0 {
            let propagation = options.flags & (MountOptions.propagation | MountOptions.recursive | MountOptions.silent)
            try call("\(what) (propagation)", "", target, "", propagation, "")
        }
        let readOnlyBind = MountOptions.bind | MountOptions.readOnly
        if plain & readOnlyBind == readOnlyBind {
            try call("\(what) (read-only remount)", "", target, "", plain | MountOptions.remount, "")
        }
    }

    private static func call(_ what: String, _ source: String, _ target: String, _ type: String,
                             _ flags: UInt, _ data: String) throws(RootfsMountError) {
        let result = data.withCString { Glibc.mount(source, target, type, flags, $0) }
        guard result == 0 else { throw RootfsMountError(description: "\(what): \(String(cString: strerror(errno)))") }
    }

    /// Unmounts everything stacked on `target` (containerd's UnmountAll):
    /// until it is no mount point (EINVAL) or does not exist (ENOENT); a busy
    /// one is detached. Bounded: nothing the shim mounted is stacked 64 deep.
    static func unmountAll(_ target: String) {
        for _ in 0..<64 {
            if umount2(target, 0) == 0 { continue }
            guard errno == EBUSY, umount2(target, Int32(MNT_DETACH)) == 0 else { return }
        }
    }
}
