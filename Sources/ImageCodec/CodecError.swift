internal import CNoisyCodec

/// A codec failure with the library's own reason. Codes can grow without
/// breaking callers, as in swift-system's `Errno`.
public struct CodecError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let corrupt = Code(rawValue: Int32(NC_ERR_CORRUPT.rawValue))
        public static let tooLarge = Code(rawValue: Int32(NC_ERR_TOO_LARGE.rawValue))
        public static let unsupported = Code(rawValue: Int32(NC_ERR_UNSUPPORTED.rawValue))
        public static let argument = Code(rawValue: Int32(NC_ERR_ARGUMENT.rawValue))
        public static let noMemory = Code(rawValue: Int32(NC_ERR_NO_MEMORY.rawValue))
        public static let io = Code(rawValue: Int32(NC_ERR_IO.rawValue))
        public static let buffer = Code(rawValue: Int32(NC_ERR_BUFFER.rawValue))
        /// The bytes carry no known image signature (decided in Swift, not by a C library).
        public static let notAnImage = Code(rawValue: 100)
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// Calls a C codec function with a message buffer and turns its status into a throw.
@inline(__always)
func checked(_ body: (UnsafeMutablePointer<CChar>) -> Int32) throws(CodecError) {
    // A stack buffer: decoding in steady state should not touch the heap for this.
    let failure: CodecError? = withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(NC_ERROR_CAPACITY)) { buffer in
        guard let base = buffer.baseAddress else { return CodecError(.noMemory, "no message buffer") }
        base[0] = 0
        let status = body(base)
        guard status != 0 else { return nil }
        let message = String(cString: base)
        return CodecError(CodecError.Code(rawValue: status), message.isEmpty ? "codec error \(status)" : message)
    }
    if let failure { throw failure }
}
