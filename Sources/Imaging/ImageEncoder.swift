import CImageCodecs
import Foundation

/// Writes RGB8 images as PNG or JPEG (for overlays and debugging output).
public enum ImageEncoder {
    public static func png(_ image: Image) throws -> Data {
        try encode(image, format: "PNG") { rgb, out, size, message in
            aa_encode_png(rgb, Int32(image.width), Int32(image.height), out, size, message)
        }
    }

    public static func jpeg(_ image: Image, quality: Int = 95) throws -> Data {
        try encode(image, format: "JPEG") { rgb, out, size, message in
            aa_encode_jpeg(
                rgb, Int32(image.width), Int32(image.height), Int32(min(100, max(1, quality))), out, size, message)
        }
    }

    private static func encode(
        _ image: Image, format: String,
        _ call: (
            UnsafePointer<UInt8>, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>, UnsafeMutablePointer<Int>,
            UnsafeMutablePointer<CChar>
        ) -> aa_status
    ) throws -> Data {
        guard image.width > 0 && image.height > 0 else {
            throw ImageError.encodingFailed(
                format: format, reason: "the image is empty (\(image.width)×\(image.height))")
        }
        var buffer: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = image.pixels.withUnsafeBufferPointer { rgb in call(rgb.baseAddress!, &buffer, &size, &message) }
        defer { aa_buffer_free(buffer) }
        guard status == AA_OK, let buffer else {
            throw ImageError.encodingFailed(
                format: format, reason: String(decoding: message.prefix { $0 != 0 }.map(UInt8.init), as: UTF8.self))
        }
        return Data(bytes: buffer, count: size)
    }
}
