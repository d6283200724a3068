import Foundation

/// Reads one generation's labels as training targets.
public struct GenerationReader: Sendable {
    public let store: Store
    public let record: GenerationRecord
    public let precision: LabelPrecision
    public var options: LabelReadOptions

    public init(store: Store, generation k: Int, options: LabelReadOptions = .init()) throws {
        guard let g = try store.generation(k) else { throw StoreError(.notFound, "\(store.path): no generation \(k)") }
        guard let p = LabelPrecision(g.precision) else {
            throw StoreError(.incompatible, "\(store.path): generation \(k) has unknown precision '\(g.precision)'")
        }
        guard g.classCount == (try store.classes().count) else {
            throw StoreError(.incompatible, "\(store.path): generation \(k) was made for \(g.classCount) classes, the store has \(try store.classes().count)")
        }
        // Checked once per open: a damaged label must not reach training or an export.
        try store.requireIntact(generation: k)
        self.store = store; record = g; precision = p; self.options = options
    }

    public var classCount: Int { record.classCount }

    /// Decodes a stored value and applies temperature / hard mode.
    public func decode(_ v: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<Float>) throws {
        try LabelEncoding.decode(v, precision: precision, into: out)
        options.apply(out)
    }

    /// Sample `id`'s target distribution.
    public func distribution(of id: UInt64, into out: UnsafeMutableBufferPointer<Float>) throws {
        try store.withLabel(record.generation, id) { v in
            guard let v else { throw StoreError(.notFound, "\(store.path): sample \(id) has no label in generation \(record.generation)") }
            try decode(v, into: out)
        }
    }

    /// The selection a reader uses when none is named: `default` if it exists, else none.
    public func defaultSelection() throws -> String? {
        try store.selection(record.generation, "default") != nil ? "default" : nil
    }

    /// The epoch's items: each selected id repeated by its copies, or (no selection)
    /// every labelled sample once.
    public func entries(selection: String?) throws -> [UInt64] {
        var out: [UInt64] = []
        if let selection {
            guard try store.selection(record.generation, selection) != nil else {
                let names = try store.selections(of: record.generation).map(\.name)
                throw StoreError(.notFound, "\(store.path): generation \(record.generation) has no selection '\(selection)'" +
                                 (names.isEmpty ? " (it has none; run noisy labels filter)" : " (selections: \(names.joined(separator: ", ")))"))
            }
            try store.forEachSelectionEntry(record.generation, selection) { id, copies in
                out.append(contentsOf: repeatElement(id, count: copies))
            }
        } else {
            out.reserveCapacity(record.samples)
            try store.forEachLabel(record.generation) { id, _ in out.append(id) }
        }
        return out
    }
}
