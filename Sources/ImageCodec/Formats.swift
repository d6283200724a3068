/// The encoded formats noisy reads. Others are recognised only to be refused by name.
public enum ImageFormat: String, Sendable, Codable, CaseIterable {
    case jpeg, png, webp
}

/// What the magic bytes say a file is.
public enum SniffedFormat: Sendable, Equatable {
    case supported(ImageFormat)
    /// A known image format we do not decode (GIF, TIFF, BMP).
    case unsupported(String)
    case unknown
}
