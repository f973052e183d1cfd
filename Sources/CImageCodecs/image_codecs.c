// JPEG and PNG through libjpeg-turbo and libpng, set up as OpenCV's imgcodecs sets them up (grfmt_jpeg.cpp,
// grfmt_png.cpp of OpenCV 4.10), so that decoded pixels equal `cv2.imread(path)` (after BGR → RGB).
// Both libraries report fatal errors by longjmp; every setjmp lives here, never in Swift.

#include <stdio.h> // jpeglib.h needs FILE and size_t first
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "image_codecs.h"

void aa_image_free(aa_image *image) {
    free(image->exif);
    image->exif = NULL;
}

void aa_buffer_free(uint8_t *buffer) { free(buffer); }

static void copy_exif(aa_image *out, const uint8_t *data, size_t size) {
    out->exif = malloc(size);
    if (out->exif == NULL) return; // orientation is lost, the image is not
    memcpy(out->exif, data, size);
    out->exif_size = size;
}

// ------------------------------------------------------------------------------------------------------------
// JPEG

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;
    char *message;
} jpeg_failure;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_failure *failure = (jpeg_failure *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, failure->message);
    longjmp(failure->jump, 1);
}

// libjpeg recovers from damaged data with a warning and grey-fills what it could not read; OpenCV accepts
// that. We do not: a truncated or corrupt entropy stream would become a half-grey image that a detector then
// labels. Other warnings (extraneous bytes, unknown markers) are harmless and ignored as OpenCV does.
static void jpeg_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;
    int code = cinfo->err->msg_code;
    if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE) {
        jpeg_failure *failure = (jpeg_failure *)cinfo->err;
        failure->truncated = (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER);
        (*cinfo->err->format_message)(cinfo, failure->message);
        longjmp(failure->jump, 1);
    }
}

aa_status aa_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels, uint8_t *pixels, size_t capacity,
                         aa_image *out) {
    memset(out, 0, sizeof(*out));
    struct jpeg_decompress_struct cinfo;
    jpeg_failure failure;
    uint8_t *volatile cmyk_row = NULL;

    cinfo.err = jpeg_std_error(&failure.pub);
    failure.pub.error_exit = jpeg_fail;
    failure.pub.emit_message = jpeg_message;
    failure.truncated = 0;
    failure.message = out->message;
    if (setjmp(failure.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(cmyk_row);
        free(out->exif);
        out->exif = NULL;
        out->exif_size = 0;
        return failure.truncated ? AA_TRUNCATED : AA_CORRUPT;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(&cinfo, TRUE);

    for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != NULL; m = m->next) {
        if (m->marker != JPEG_APP0 + 1) continue;
        if (m->data_length > 6 && memcmp(m->data, "Exif\0\0", 6) == 0) copy_exif(out, m->data + 6, m->data_length - 6);
        break;
    }

    uint64_t w = cinfo.image_width, h = cinfo.image_height;
    if (w * h > max_pixels) {
        snprintf(out->message, sizeof(out->message), "%llu x %llu pixels is above the limit of %llu pixels",
                 (unsigned long long)w, (unsigned long long)h, (unsigned long long)max_pixels);
        jpeg_destroy_decompress(&cinfo);
        free(out->exif);
        out->exif = NULL;
        out->exif_size = 0;
        return AA_TOO_LARGE;
    }

    // OpenCV: 4 components are read as CMYK (libjpeg turns YCCK into CMYK) and converted by its own formula;
    // anything else is converted to RGB by libjpeg itself.
    int is_cmyk = cinfo.num_components == 4;
    cinfo.out_color_space = is_cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_calc_output_dimensions(&cinfo);
    out->width = (int)cinfo.output_width;
    out->height = (int)cinfo.output_height;
    size_t stride = (size_t)cinfo.output_width * 3;
    if (pixels == NULL || capacity < stride * cinfo.output_height) {
        jpeg_destroy_decompress(&cinfo);
        if (pixels == NULL) return AA_OK; // the header was asked for
        snprintf(out->message, sizeof(out->message), "the pixel buffer is smaller than the image");
        free(out->exif);
        out->exif = NULL;
        out->exif_size = 0;
        return AA_CORRUPT;
    }
    jpeg_start_decompress(&cinfo);
    if (is_cmyk) cmyk_row = malloc((size_t)cinfo.output_width * 4);
    if (is_cmyk && cmyk_row == NULL) {
        snprintf(out->message, sizeof(out->message), "out of memory");
        jpeg_destroy_decompress(&cinfo);
        free(out->exif);
        out->exif = NULL;
        out->exif_size = 0;
        return AA_NO_MEMORY;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *row = pixels + stride * cinfo.output_scanline;
        if (!is_cmyk) {
            JSAMPROW rows[1] = {row};
            jpeg_read_scanlines(&cinfo, rows, 1);
            continue;
        }
        JSAMPROW rows[1] = {cmyk_row};
        jpeg_read_scanlines(&cinfo, rows, 1);
        // icvCvt_CMYK2BGR_8u_C4C3R (OpenCV imgcodecs/utils.cpp), written out in RGB order.
        for (size_t x = 0; x < cinfo.output_width; x++) {
            int c = cmyk_row[4 * x], m = cmyk_row[4 * x + 1], y = cmyk_row[4 * x + 2], k = cmyk_row[4 * x + 3];
            row[3 * x + 0] = (uint8_t)(k - ((255 - c) * k >> 8));
            row[3 * x + 1] = (uint8_t)(k - ((255 - m) * k >> 8));
            row[3 * x + 2] = (uint8_t)(k - ((255 - y) * k >> 8));
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(cmyk_row);
    return AA_OK;
}

aa_status aa_encode_jpeg(const uint8_t *rgb, int width, int height, int quality, uint8_t **out, size_t *out_size,
                         char *message) {
    struct jpeg_compress_struct cinfo;
    jpeg_failure failure;
    unsigned char *volatile buffer = NULL;
    unsigned long buffer_size = 0;

    *out = NULL;
    *out_size = 0;
    cinfo.err = jpeg_std_error(&failure.pub);
    failure.pub.error_exit = jpeg_fail;
    failure.truncated = 0;
    failure.message = message;
    if (setjmp(failure.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(buffer);
        return AA_CORRUPT;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, (unsigned char **)&buffer, &buffer_size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW rows[1] = {(JSAMPROW)(rgb + (size_t)cinfo.next_scanline * (size_t)width * 3)};
        jpeg_write_scanlines(&cinfo, rows, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *out = buffer;
    *out_size = buffer_size;
    return AA_OK;
}

// ------------------------------------------------------------------------------------------------------------
// PNG

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t offset;
} png_source;

static void png_read_memory(png_structp png, png_bytep target, png_size_t length) {
    png_source *source = (png_source *)png_get_io_ptr(png);
    if (length > source->size - source->offset) png_error(png, "truncated: the data ends before the image does");
    memcpy(target, source->data + source->offset, length);
    source->offset += length;
}

static void png_fail(png_structp png, png_const_charp text) {
    char *message = (char *)png_get_error_ptr(png);
    snprintf(message, 256, "%s", text);
    png_longjmp(png, 1);
}

static void png_warn(png_structp png, png_const_charp text) {
    (void)png;
    (void)text; // libpng recovers from what it warns about (e.g. a bad CRC in an ancillary chunk), as OpenCV
}

// Every chunk's declared length must fit in the bytes that follow it: libpng sizes (and clears) a buffer from a
// declared length before it reads, so a 355-byte file declaring a 2 GB text chunk would cost 2 GB.
static int png_chunks_fit(const uint8_t *data, size_t size, char *message) {
    size_t offset = 8;
    while (offset + 12 <= size) {
        uint32_t length = (uint32_t)data[offset] << 24 | (uint32_t)data[offset + 1] << 16 |
                          (uint32_t)data[offset + 2] << 8 | data[offset + 3];
        if (length > size - offset - 12) {
            snprintf(message, 256, "truncated: chunk %.4s declares %u bytes, more than the file holds",
                     (const char *)data + offset + 4, (unsigned)length);
            return 0;
        }
        if (memcmp(data + offset + 4, "IEND", 4) == 0) return 1;
        offset += 12 + (size_t)length;
    }
    return 1; // a file cut short is libpng's to report, where the image data ends
}

aa_status aa_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels, uint8_t *pixels, size_t capacity,
                        aa_image *out) {
    memset(out, 0, sizeof(*out));
    if (!png_chunks_fit(data, size, out->message)) return AA_TRUNCATED;
    png_source source = {data, size, 0};
    png_bytep *volatile rows = NULL;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, out->message, png_fail, png_warn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_infop end_info = png ? png_create_info_struct(png) : NULL;
    if (png == NULL || info == NULL || end_info == NULL) {
        png_destroy_read_struct(&png, &info, &end_info);
        snprintf(out->message, sizeof(out->message), "out of memory");
        return AA_NO_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, &end_info);
        free(rows);
        free(out->exif);
        out->exif = NULL;
        out->exif_size = 0;
        return strncmp(out->message, "truncated", 9) == 0 ? AA_TRUNCATED : AA_CORRUPT;
    }
    png_set_read_fn(png, &source, png_read_memory);
    // No ancillary chunk (ICC profile, text, EXIF) may ask for more than 16 MB, nor decompress to more.
    png_set_chunk_malloc_max(png, 16 << 20);
    png_read_info(png, info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, NULL, NULL, NULL);
    if ((uint64_t)width * height > max_pixels) {
        snprintf(out->message, sizeof(out->message), "%u x %u pixels is above the limit of %llu pixels",
                 (unsigned)width, (unsigned)height, (unsigned long long)max_pixels);
        png_destroy_read_struct(&png, &info, &end_info);
        return AA_TOO_LARGE;
    }

    // The transforms of OpenCV's PngDecoder::readData for an 8-bit, 3-channel result.
    if (bit_depth > 8) png_set_strip_16(png);
    png_set_strip_alpha(png);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if ((color_type & PNG_COLOR_MASK_COLOR) == 0 && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if ((color_type & PNG_COLOR_MASK_COLOR) == 0) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    size_t stride = (size_t)width * 3;
    if (png_get_rowbytes(png, info) != stride) png_error(png, "unexpected row layout after transforms");
    out->width = (int)width;
    out->height = (int)height;
    if (pixels == NULL) { // the header was asked for
        png_destroy_read_struct(&png, &info, &end_info);
        return AA_OK;
    }
    if (capacity < stride * height) png_error(png, "the pixel buffer is smaller than the image");
    rows = malloc(sizeof(png_bytep) * height);
    if (rows == NULL) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + stride * y;
    png_read_image(png, rows);
    png_read_end(png, end_info);
    png_uint_32 exif_size = 0;
    png_bytep exif = NULL;
    if (png_get_eXIf_1(png, info, &exif_size, &exif) || png_get_eXIf_1(png, end_info, &exif_size, &exif))
        copy_exif(out, exif, exif_size);
    png_destroy_read_struct(&png, &info, &end_info);
    free(rows);
    return AA_OK;
}

typedef struct {
    uint8_t *data;
    size_t size;
    size_t capacity;
} png_sink;

static void png_write_memory(png_structp png, png_bytep chunk, png_size_t length) {
    png_sink *sink = (png_sink *)png_get_io_ptr(png);
    if (sink->size + length > sink->capacity) {
        size_t capacity = sink->capacity ? sink->capacity : 4096;
        while (capacity < sink->size + length) capacity *= 2;
        uint8_t *grown = realloc(sink->data, capacity);
        if (grown == NULL) png_error(png, "out of memory");
        sink->data = grown;
        sink->capacity = capacity;
    }
    memcpy(sink->data + sink->size, chunk, length);
    sink->size += length;
}

static void png_flush_memory(png_structp png) { (void)png; }

aa_status aa_encode_png(const uint8_t *rgb, int width, int height, uint8_t **out, size_t *out_size, char *message) {
    *out = NULL;
    *out_size = 0;
    png_sink sink = {NULL, 0, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, message, png_fail, png_warn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (png == NULL || info == NULL) {
        png_destroy_write_struct(&png, &info);
        snprintf(message, 256, "out of memory");
        return AA_NO_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(sink.data);
        return AA_CORRUPT;
    }
    png_set_write_fn(png, &sink, png_write_memory, png_flush_memory);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * (size_t)width * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out = sink.data;
    *out_size = sink.size;
    return AA_OK;
}
