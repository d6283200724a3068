import Batches
import Foundation

/// The JSON header of a checkpoint file. schemas/checkpoint.schema.json; the byte
/// layout is in schemas/checkpoint.md.
public struct CheckpointHeader: Codable, Sendable {
    public var format: String
    public var formatVersion: Int
    public var architecture: Architecture
    public var optimizer: SGDConfig
    public var step: Int
    public var seed: UInt64
    /// Where the batch stream stands: training resumes exactly from here.
    public var stream: StreamState?
    /// Parameter names and sizes, in file order.
    public var parameters: [ParameterInfo]
    public var hasEma: Bool
    /// Free-form notes: epochs done, the generation trained on, accuracy.
    public var notes: [String: String]

    public struct ParameterInfo: Codable, Sendable {
        public var name: String
        public var count: Int
    }
}

/// A model, its optimiser state and the stream state, in one file:
/// "NOISYCKP" magic, u32 version 1, u64 header length, the JSON header, then
/// float32 little-endian arrays: every parameter's values, then velocities, then
/// (if present) the EMA weights, in header order. Written to a temporary file and
/// renamed, so a crash leaves the previous checkpoint intact.
public enum Checkpoint {
    static let magic = Array("NOISYCKP".utf8)

    public static func save(path: String, model: Model, optimizer: SGD, seed: UInt64, stream: StreamState?,
                            notes: [String: String] = [:]) throws {
        let params = model.parameters
        let header = CheckpointHeader(format: "noisy-checkpoint", formatVersion: 1, architecture: model.architecture,
                                      optimizer: optimizer.config, step: optimizer.step, seed: seed, stream: stream,
                                      parameters: params.map { .init(name: $0.name, count: $0.value.count) },
                                      hasEma: !optimizer.ema.isEmpty, notes: notes)
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.sortedKeys]
        let json = try e.encode(header)
        var data = Data(magic)
        withUnsafeBytes(of: UInt32(1).littleEndian) { data.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        for p in params { p.value.withUnsafeBytes { data.append(contentsOf: $0) } }
        for p in params { p.velocity.withUnsafeBytes { data.append(contentsOf: $0) } }
        for a in optimizer.ema { a.withUnsafeBytes { data.append(contentsOf: $0) } }
        let tmp = path + ".partial"
        guard FileManager.default.createFile(atPath: tmp, contents: data) else { throw TrainerError(.io, "\(tmp): cannot write") }
        guard rename(tmp, path) == 0 else { throw TrainerError(.io, "\(path): cannot replace (\(String(cString: strerror(errno))))") }
    }

    /// Reads a checkpoint: the model with its weights, and the optimiser state.
    public static func load(path: String) throws -> (header: CheckpointHeader, model: Model, optimizer: SGD) {
        guard let data = FileManager.default.contents(atPath: path) else { throw TrainerError(.io, "\(path): cannot read") }
        let bytes = [UInt8](data)
        guard bytes.count >= 20, Array(bytes[0..<8]) == magic else { throw TrainerError(.checkpoint, "\(path): not a noisy checkpoint") }
        let version = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian }
        guard version == 1 else { throw TrainerError(.checkpoint, "\(path): checkpoint version \(version) is not supported") }
        let hlen = Int(bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 12, as: UInt64.self).littleEndian })
        guard 20 + hlen <= bytes.count else { throw TrainerError(.checkpoint, "\(path): truncated header") }
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        let header: CheckpointHeader
        do { header = try d.decode(CheckpointHeader.self, from: Data(bytes[20..<(20 + hlen)])) } catch {
            throw TrainerError(.checkpoint, "\(path): unreadable checkpoint header: \(error)")
        }
        let model = try Model(header.architecture, seed: header.seed)
        let params = model.parameters
        guard params.map(\.name) == header.parameters.map(\.name), params.map(\.value.count) == header.parameters.map(\.count) else {
            throw TrainerError(.checkpoint, "\(path): parameters do not match the architecture")
        }
        let floats = params.reduce(0) { $0 + $1.value.count }
        let need = 20 + hlen + 4 * floats * (header.hasEma ? 3 : 2)
        guard bytes.count == need else { throw TrainerError(.checkpoint, "\(path): \(bytes.count) bytes, expected \(need) (truncated?)") }
        var at = 20 + hlen
        func read(_ n: Int) -> [Float] {
            let out = bytes.withUnsafeBytes { raw in (0..<n).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: at + 4 * $0, as: UInt32.self).littleEndian) } }
            at += 4 * n
            return out
        }
        for p in params { p.value = read(p.value.count) }
        for p in params { p.velocity = read(p.value.count) }
        let ema = header.hasEma ? params.map { read($0.value.count) } : []
        let opt = SGD(parameters: params, config: header.optimizer)
        opt.restore(step: header.step, ema: ema)
        return (header, model, opt)
    }
}
