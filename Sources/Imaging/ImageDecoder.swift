import CImageCodecs
import Foundation

/// Reads JPEG and PNG files into RGB8 exactly as OpenCV's `cv2.imread(path)` does (EXIF orientation
/// applied, from a JPEG's APP1 or a PNG's eXIf chunk), refusing damaged or oversized input with a typed error instead of guessing.
///
/// Deliberate difference from OpenCV: a JPEG whose entropy data is truncated or corrupt is an error here,
/// where libjpeg (and so OpenCV) warns and returns the image grey-filled from the damage on.
public enum ImageDecoder {
    /// The default pixel limit: Pillow's decompression-bomb error threshold (2 × 89,478,485 pixels).
    public static let defaultPixelLimit = 178_956_970

    /// Image formats told apart by their first bytes (never by the file extension).
    public enum Format: String, Sendable {
        case jpeg = "JPEG"
        case png = "PNG"
        case bmp = "BMP"
        case gif = "GIF"
        case tiff = "TIFF"
        case webp = "WebP"
        case jpeg2000 = "JPEG 2000"
        case portableAnymap = "PNM"
        case openEXR = "OpenEXR"
        case hdr = "Radiance HDR"
    }

    public static func format(of bytes: some Collection<UInt8>) -> Format? {
        let head = Array(bytes.prefix(12))
        func starts(_ prefix: [UInt8]) -> Bool { head.starts(with: prefix) }
        if starts([0xFF, 0xD8, 0xFF]) { return .jpeg }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if starts([0x42, 0x4D]) { return .bmp }
        if starts(Array("GIF8".utf8)) { return .gif }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return .tiff }
        if starts(Array("RIFF".utf8)) && head.count == 12 && Array(head[8..<12]) == Array("WEBP".utf8) { return .webp }
        if starts([0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20]) || starts([0xFF, 0x4F, 0xFF, 0x51]) {
            return .jpeg2000
        }
        if starts([0x76, 0x2F, 0x31, 0x01]) { return .openEXR }
        if starts(Array("#?RADIANCE".utf8)) || starts(Array("#?RGBE".utf8)) { return .hdr }
        if head.count >= 2 && head[0] == UInt8(ascii: "P") && (UInt8(ascii: "1")...UInt8(ascii: "6")).contains(head[1])
        {
            return .portableAnymap
        }
        return nil
    }

    /// Decodes the image file at `path`.
    public static func decode(path: String, pixelLimit: Int = defaultPixelLimit) throws -> Image {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ImageError.notFound(path: path)
        }
        if isDirectory.boolValue { throw ImageError.unreadable(path: path, reason: "it is a directory") }
        // A pipe, device or socket may never end (or block forever): only regular files are read.
        var status = stat()
        if stat(path, &status) == 0 && status.st_mode & S_IFMT != S_IFREG {
            throw ImageError.unreadable(path: path, reason: "it is not a regular file but a pipe, device or socket")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
        } catch {
            throw ImageError.unreadable(path: path, reason: error.localizedDescription)
        }
        return try decode(data, path: path, pixelLimit: pixelLimit)
    }

    /// Decodes image bytes; `path` names the source in errors.
    public static func decode(_ data: Data, path: String = "<memory>", pixelLimit: Int = defaultPixelLimit) throws
        -> Image
    {
        if data.isEmpty { throw ImageError.empty(path: path) }
        guard let format = format(of: data) else { throw ImageError.unrecognized(path: path) }
        guard format == .jpeg || format == .png else {
            throw ImageError.unsupportedFormat(path: path, format: format.rawValue)
        }
        // The header first, then the pixels straight into the image's own storage: the image exists once in memory.
        func decode(into pixels: UnsafeMutablePointer<UInt8>?, capacity: Int, _ decoded: inout aa_image) -> aa_status {
            data.withUnsafeBytes { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                let limit = UInt64(max(0, pixelLimit))
                return format == .jpeg
                    ? aa_decode_jpeg(bytes.baseAddress, bytes.count, limit, pixels, capacity, &decoded)
                    : aa_decode_png(bytes.baseAddress, bytes.count, limit, pixels, capacity, &decoded)
            }
        }
        func check(_ status: aa_status, _ decoded: aa_image) throws {
            let reason = withUnsafeBytes(of: decoded.message) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            switch status {
            case AA_OK: break
            case AA_TRUNCATED: throw ImageError.truncated(path: path, format: format.rawValue, reason: reason)
            case AA_TOO_LARGE: throw ImageError.tooLarge(path: path, reason: reason)
            default: throw ImageError.corrupt(path: path, format: format.rawValue, reason: reason)
            }
        }
        var header = aa_image()
        defer { aa_image_free(&header) }
        try check(decode(into: nil, capacity: 0, &header), header)
        let count = Int(header.width) * Int(header.height) * 3
        guard count > 0 else { throw ImageError.corrupt(path: path, format: format.rawValue, reason: "no pixels") }
        var decoded = aa_image()
        defer { aa_image_free(&decoded) }
        let pixels = try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            let status = decode(into: buffer.baseAddress, capacity: count, &decoded)
            try check(status, decoded)
            initialized = count
        }
        let image = Image(width: Int(decoded.width), height: Int(decoded.height), pixels: pixels)
        guard let exif = decoded.exif else { return image }
        let orientation = ExifOrientation(exif: UnsafeBufferPointer(start: exif, count: decoded.exif_size))
        return orientation.map { image.oriented($0) } ?? image
    }
}
