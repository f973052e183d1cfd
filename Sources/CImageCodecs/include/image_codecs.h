#ifndef AUTOANNOTATE_IMAGE_CODECS_H
#define AUTOANNOTATE_IMAGE_CODECS_H

#include <stddef.h>
#include <stdint.h>

/// Outcome of a codec call. Anything but AA_OK leaves a human-readable reason in `message`.
typedef enum {
    AA_OK = 0,
    AA_CORRUPT = 1,   ///< the codec library rejected the data
    AA_TRUNCATED = 2, ///< the data ends before the image does
    AA_TOO_LARGE = 3, ///< width × height above the caller's limit (checked before any pixel buffer exists)
    AA_NO_MEMORY = 4,
} aa_status;

/// A decoded image's size and EXIF data (owned by the struct: free with aa_image_free); its packed RGB8 rows,
/// `width * 3` bytes each, go to the caller's buffer.
typedef struct {
    int width;
    int height;
    /// EXIF data in its TIFF layout, or NULL: for a JPEG the first APP1 marker after its "Exif\0\0" header
    /// (OpenCV reads the first APP1 only), for a PNG the eXIf chunk, before or after the image data.
    uint8_t *exif;
    size_t exif_size;
    char message[256];
} aa_image;

/// Decodes a JPEG the way OpenCV's `imread(IMREAD_COLOR)` does: libjpeg defaults (islow IDCT, fancy
/// upsampling), gray and YCbCr converted to RGB by libjpeg, CMYK/YCCK read as CMYK and converted with
/// OpenCV's integer formula.
/// With `pixels` NULL only the header is read (width and height set); otherwise `pixels` must hold
/// `width * height * 3` bytes (`capacity`), so that the image exists once, in the caller's memory.
aa_status aa_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels, uint8_t *pixels, size_t capacity,
                         aa_image *out);

/// Decodes a PNG with the libpng transforms OpenCV's PNG decoder applies for IMREAD_COLOR: 16-bit stripped
/// to the high byte, alpha stripped (not composited), palette and low-bit gray expanded, gray replicated.
/// `pixels` and `capacity` as for aa_decode_jpeg.
aa_status aa_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels, uint8_t *pixels, size_t capacity,
                        aa_image *out);

void aa_image_free(aa_image *image);

/// Encodes packed RGB8 rows. On success `*out` is a malloc'd buffer the caller frees with aa_buffer_free.
aa_status aa_encode_png(const uint8_t *rgb, int width, int height, uint8_t **out, size_t *out_size, char *message);
aa_status aa_encode_jpeg(const uint8_t *rgb, int width, int height, int quality, uint8_t **out, size_t *out_size,
                         char *message);
void aa_buffer_free(uint8_t *buffer);

#endif
