// GPAAttributeMap.swift — the shared/private attribute of every byte of
// guest-physical memory, as an interval map with O(log n) updates and
// queries. It is the list of shared regions a migration must copy in the
// clear, and part of the VM state a snapshot saves.
import KVMABI

/// Interval map over `[0, size)`: every byte is shared or private; adjacent
/// ranges with the same attribute are always coalesced, so the map holds the
/// minimum number of ranges.
///
/// Representation: only range *starts* are stored, each with its attribute;
/// a range ends where the next one starts (or at `size`). Coalescing then
/// means "no two neighbouring starts carry the same attribute".
///
/// Why a treap: the standard library and swift-collections have no ordered
/// map, and a sorted array costs O(n) per insertion (n reaches ~10⁶ under a
/// 4 KiB-granular guest). A treap gives expected O(log n) with the fewest
/// moving parts: a range assignment is two `split`s, dropping the middle
/// subtree, and two `merge`s — no rotations or rebalancing cases as an AVL or
/// red-black tree needs. Its balance depends only on node priorities, which
/// come from a per-map generator seeded from the system's entropy, so no
/// choice of addresses by a guest can degrade it. Nodes live in one array
/// addressed by `Int` indices (with a free list), so the map is one
/// allocation, not one object per range, and copies are copy-on-write.
///
/// Cost: `set` is expected O(log n) plus O(k) for the k ranges it swallows;
/// each set creates at most two starts, so that is O(log n) amortized.
/// `attribute(at:)` is expected O(log n). Memory is O(peak range count), and
/// the range count can never exceed `size / 4096` through MAP_GPA_RANGE.
public struct GPAAttributeMap: Sendable, Equatable {
    /// One range start (32 bytes). `left`/`right` are indices into `nodes`,
    /// -1 for none; a 32-bit priority is plenty to keep the treap balanced.
    struct Node: Sendable {
        var start: UInt64
        var left: Int
        var right: Int
        var priority: UInt32
        var attribute: PageAttribute
    }

    /// The bytes covered: `[0, size)`.
    public let size: UInt64
    var nodes: [Node] = []
    /// Indices of released nodes in `nodes`, reused before the array grows.
    var freeList: [Int] = []
    var root: Int = -1
    /// Live nodes = ranges.
    var liveCount: Int = 0
    /// SplitMix64 state for node priorities.
    var rngState: UInt64

    /// The whole `[0, size)` starts as `initial`. A `size` of 0 gives an empty map.
    public init(size: UInt64, initial: PageAttribute = .private) {
        self.size = size
        self.rngState = UInt64.random(in: .min ... .max)
        if size > 0 {
            root = allocate(start: 0, attribute: initial)
        }
    }

    /// Number of (coalesced) ranges.
    public var rangeCount: Int { liveCount }

    // MARK: Queries

    /// The attribute of the byte at `address`; nil outside `[0, size)`.
    public func attribute(at address: UInt64) -> PageAttribute? {
        guard address < size else { return nil }
        let index = floorNode(address)
        return index >= 0 ? nodes[index].attribute : nil
    }

    /// All ranges in address order, coalesced, covering exactly `[0, size)`.
    public var ranges: [(range: Range<UInt64>, attribute: PageAttribute)] {
        var result: [(range: Range<UInt64>, attribute: PageAttribute)] = []
        result.reserveCapacity(liveCount)
        var pending: (start: UInt64, attribute: PageAttribute)?
        forEachInOrder { node in
            if let previous = pending {
                result.append((previous.start..<node.start, previous.attribute))
            }
            pending = (node.start, node.attribute)
        }
        if let last = pending {
            result.append((last.start..<size, last.attribute))
        }
        return result
    }

    /// The shared ranges in address order (what a migration copies in the clear).
    public var sharedRanges: [Range<UInt64>] {
        ranges.compactMap { $0.attribute == .shared ? $0.range : nil }
    }

    /// Total bytes currently shared.
    public var sharedBytes: UInt64 {
        sharedRanges.reduce(0) { $0 + UInt64($1.count) }
    }

    // MARK: Update

    /// Gives every byte of `range` the attribute `attribute`, splitting and
    /// coalescing neighbours as needed. The part of `range` outside
    /// `[0, size)` is ignored; an empty range changes nothing.
    public mutating func set(_ range: Range<UInt64>, to attribute: PageAttribute) {
        let lower = min(range.lowerBound, size)
        let upper = min(range.upperBound, size)
        guard lower < upper else { return }

        // Cut out every start in [lower, upper] (upper included: the range
        // that used to begin there is re-created below if it still differs).
        let (left, rest) = split(root, lower)
        var middle = rest
        var right = -1
        if upper < size {
            // upper < size ≤ UInt64.max, so upper + 1 cannot overflow.
            (middle, right) = split(rest, upper + 1)
        }
        // What the neighbours are now decides which starts survive. Read
        // them off the pieces (their right spines were just walked by the
        // splits, so are in cache) rather than with two more root-to-leaf
        // searches: the byte before `lower` belongs to the last range of
        // `left`; the byte at `upper` to the last start ≤ upper, i.e. the
        // last of `middle`, or of `left` if `middle` is empty.
        let before: PageAttribute? = lower > 0 ? lastAttribute(left) : nil
        let after: PageAttribute? = upper < size ? (lastAttribute(middle) ?? lastAttribute(left)) : nil
        release(middle)

        var newStart = -1
        if before != attribute {
            newStart = allocate(start: lower, attribute: attribute)
        }
        var newEnd = -1
        if let after, after != attribute {
            newEnd = allocate(start: upper, attribute: after)
        }
        root = merge(merge(left, newStart), merge(newEnd, right))
    }

    // MARK: Self-check

    /// Every broken invariant, as text; empty when the map is sound. Checks
    /// the tree (search order, heap order, node count, no shared or cyclic
    /// nodes) and the map (first range at 0, starts below `size`, strictly
    /// increasing, neighbours differ). Used by tests and after restores.
    public func invariantViolations() -> [String] {
        var problems: [String] = []
        var visited = Array(repeating: false, count: nodes.count)
        var previous: Node?
        var seen = 0
        var stack: [Int] = []
        var current = root
        // Iterative in-order walk that refuses to revisit a node, so even a
        // corrupt (cyclic) tree terminates.
        walk: while current >= 0 || !stack.isEmpty {
            while current >= 0 {
                guard current < nodes.count, !visited[current] else {
                    problems.append("node \(current) is out of range or reachable twice")
                    break walk
                }
                visited[current] = true
                let node = nodes[current]
                for child in [node.left, node.right] where child >= 0 && child < nodes.count {
                    if nodes[child].priority > node.priority {
                        problems.append("heap order broken under start \(hex(node.start))")
                    }
                }
                stack.append(current)
                current = node.left
            }
            guard let index = stack.popLast() else { break }
            let node = nodes[index]
            seen += 1
            if let previous {
                if previous.start >= node.start {
                    problems.append("starts out of order: \(hex(previous.start)) then \(hex(node.start))")
                }
                if previous.attribute == node.attribute {
                    problems.append("not coalesced: \(hex(previous.start)) and \(hex(node.start)) are both \(node.attribute.rawValue)")
                }
            } else if node.start != 0 {
                problems.append("first range starts at \(hex(node.start)), not 0")
            }
            if node.start >= size {
                problems.append("start \(hex(node.start)) is not below the size \(hex(size))")
            }
            previous = node
            current = node.right
        }
        if seen != liveCount {
            problems.append("tree holds \(seen) ranges, count says \(liveCount)")
        }
        if size > 0 && seen == 0 {
            problems.append("non-empty memory without any range")
        }
        return problems
    }

    public static func == (lhs: GPAAttributeMap, rhs: GPAAttributeMap) -> Bool {
        guard lhs.size == rhs.size, lhs.liveCount == rhs.liveCount else { return false }
        let a = lhs.ranges, b = rhs.ranges
        return zip(a, b).allSatisfy { $0.range == $1.range && $0.attribute == $1.attribute }
    }

    // MARK: Treap internals

    private mutating func nextPriority() -> UInt32 {
        // SplitMix64: one add and three xor-shift-multiplies per node.
        rngState &+= 0x9E37_79B9_7F4A_7C15
        var z = rngState
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return UInt32(truncatingIfNeeded: (z ^ (z >> 31)) >> 32)
    }

    private mutating func allocate(start: UInt64, attribute: PageAttribute) -> Int {
        let node = Node(start: start, left: -1, right: -1, priority: nextPriority(), attribute: attribute)
        liveCount += 1
        if let index = freeList.popLast() {
            nodes[index] = node
            return index
        }
        nodes.append(node)
        return nodes.count - 1
    }

    /// Returns every node of the subtree at `index` to the free list: O(size of subtree).
    private mutating func release(_ index: Int) {
        guard index >= 0 else { return }
        var stack = [index]
        while let next = stack.popLast() {
            let node = nodes[next]
            if node.left >= 0 { stack.append(node.left) }
            if node.right >= 0 { stack.append(node.right) }
            freeList.append(next)
            liveCount -= 1
        }
    }

    /// Splits the subtree at `index` into (starts < key, starts ≥ key).
    private mutating func split(_ index: Int, _ key: UInt64) -> (Int, Int) {
        guard index >= 0 else { return (-1, -1) }
        if nodes[index].start < key {
            let (low, high) = split(nodes[index].right, key)
            nodes[index].right = low
            return (index, high)
        } else {
            let (low, high) = split(nodes[index].left, key)
            nodes[index].left = high
            return (low, index)
        }
    }

    /// Joins two subtrees where every start in `low` is below every start in `high`.
    private mutating func merge(_ low: Int, _ high: Int) -> Int {
        if low < 0 { return high }
        if high < 0 { return low }
        if nodes[low].priority > nodes[high].priority {
            nodes[low].right = merge(nodes[low].right, high)
            return low
        } else {
            nodes[high].left = merge(low, nodes[high].left)
            return high
        }
    }

    /// Attribute of the greatest start in the subtree at `index`; nil if empty.
    private func lastAttribute(_ index: Int) -> PageAttribute? {
        guard index >= 0 else { return nil }
        var current = index
        while nodes[current].right >= 0 {
            current = nodes[current].right
        }
        return nodes[current].attribute
    }

    /// Index of the node with the greatest start ≤ `address`, or -1.
    private func floorNode(_ address: UInt64) -> Int {
        var best = -1
        var current = root
        while current >= 0 {
            let node = nodes[current]
            if node.start <= address {
                best = current
                current = node.right
            } else {
                current = node.left
            }
        }
        return best
    }

    private func forEachInOrder(_ body: (Node) -> Void) {
        var stack: [Int] = []
        var current = root
        while current >= 0 || !stack.isEmpty {
            while current >= 0 {
                stack.append(current)
                current = nodes[current].left
            }
            guard let index = stack.popLast() else { break }
            body(nodes[index])
            current = nodes[index].right
        }
    }
}
