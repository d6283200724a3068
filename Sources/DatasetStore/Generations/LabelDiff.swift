import Foundation

/// How two generations' labels differ. schemas/labels-diff.schema.json
public struct LabelDiff: Codable, Sendable {
    public var a: Int
    public var b: Int
    /// Samples labelled in both, in only one.
    public var common: Int
    public var onlyA: Int
    public var onlyB: Int
    /// Common samples whose top class changed, and their share of `common`.
    public var changed: Int
    public var changedShare: Double
    /// change_matrix[i][j]: common samples with top class i in A and j in B.
    public var changeMatrix: [[Int]]
    public var meanConfidenceA: Double
    public var meanConfidenceB: Double
    public var selectionA: String?
    public var selectionB: String?
    /// Entries per class (copies counted) in each selection.
    public var selectionCountsA: [Int]?
    public var selectionCountsB: [Int]?
    /// Samples in B's selection but not A's, and the reverse (counts, and the first ids).
    public var entered: Int
    public var left: Int
    public var enteredIds: [UInt64]
    public var leftIds: [UInt64]
}

extension Store {
    /// Compares generations `a` and `b` over the samples labelled in both, and their
    /// selections (by default each one's `default` selection, when it has one).
    public func diffGenerations(_ a: Int, _ b: Int, selectionA: String? = nil, selectionB: String? = nil,
                                maxIds: Int = 100) throws -> LabelDiff {
        guard let ga = try generation(a) else { throw StoreError(.notFound, "\(path): no generation \(a)") }
        guard let gb = try generation(b) else { throw StoreError(.notFound, "\(path): no generation \(b)") }
        guard ga.classCount == gb.classCount else {
            throw StoreError(.invalidArgument, "generations \(a) and \(b) have \(ga.classCount) and \(gb.classCount) classes")
        }
        try requireIntact(generation: a)
        try requireIntact(generation: b)
        let c = ga.classCount
        // A's tops in id order, then a merge with B's scan.
        var ids: [UInt64] = [], tops: [Int32] = [], confs: [Float] = []
        try forEachLabel(a) { id, v in
            let (t, p) = LabelEncoding.top(v)
            ids.append(id); tops.append(Int32(clamping: t)); confs.append(p)
        }
        var matrix = [[Int]](repeating: [Int](repeating: 0, count: c), count: c)
        var common = 0, changed = 0, onlyB = 0
        var sumA = 0.0, sumB = 0.0
        var i = 0
        try forEachLabel(b) { id, v in
            while i < ids.count && ids[i] < id { i += 1 }
            guard i < ids.count, ids[i] == id else { onlyB += 1; return }
            let (t, p) = LabelEncoding.top(v)
            let ta = Int(tops[i])
            guard ta >= 0, ta < c, t >= 0, t < c else { throw StoreError(.corrupt, "\(path): sample \(id): class out of range") }
            matrix[ta][t] += 1
            common += 1
            if ta != t { changed += 1 }
            sumA += Double(confs[i]); sumB += Double(p)
            i += 1
        }
        let selA = try selectionA ?? (selection(a, "default") != nil ? "default" : nil)
        let selB = try selectionB ?? (selection(b, "default") != nil ? "default" : nil)
        var countsA: [Int]?, countsB: [Int]?
        var entered = 0, left = 0
        var enteredIds: [UInt64] = [], leftIds: [UInt64] = []
        if let selA {
            guard let s = try selection(a, selA) else { throw StoreError(.notFound, "\(path): generation \(a) has no selection '\(selA)'") }
            countsA = s.countsAfter
        }
        if let selB {
            guard let s = try selection(b, selB) else { throw StoreError(.notFound, "\(path): generation \(b) has no selection '\(selB)'") }
            countsB = s.countsAfter
        }
        if let selA, let selB {
            var inA: [UInt64] = []
            try forEachSelectionEntry(a, selA) { id, _ in inA.append(id) }
            var j = 0
            try forEachSelectionEntry(b, selB) { id, _ in
                while j < inA.count && inA[j] < id {
                    left += 1
                    if leftIds.count < maxIds { leftIds.append(inA[j]) }
                    j += 1
                }
                if j < inA.count && inA[j] == id { j += 1; return }
                entered += 1
                if enteredIds.count < maxIds { enteredIds.append(id) }
            }
            while j < inA.count {
                left += 1
                if leftIds.count < maxIds { leftIds.append(inA[j]) }
                j += 1
            }
        }
        return LabelDiff(a: a, b: b, common: common, onlyA: ids.count - common, onlyB: onlyB, changed: changed,
                         changedShare: common > 0 ? Double(changed) / Double(common) : 0, changeMatrix: matrix,
                         meanConfidenceA: common > 0 ? sumA / Double(common) : 0,
                         meanConfidenceB: common > 0 ? sumB / Double(common) : 0,
                         selectionA: selA, selectionB: selB, selectionCountsA: countsA, selectionCountsB: countsB,
                         entered: entered, left: left, enteredIds: enteredIds, leftIds: leftIds)
    }
}
