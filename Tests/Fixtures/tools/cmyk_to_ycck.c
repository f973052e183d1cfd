// Writes a YCCK JPEG (Adobe-style 4-component colour JPEG) from raw CMYK on stdin: no Python library writes
// YCCK, so make_imaging_fixtures.py compiles this with gcc -ljpeg. Usage: cmyk_to_ycck WIDTH HEIGHT > out.jpg
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int width = atoi(argv[1]), height = atoi(argv[2]);
    unsigned char *cmyk = malloc((size_t)width * height * 4);
    if (fread(cmyk, 4, (size_t)width * height, stdin) != (size_t)width * height) return 3;
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, stdout);
    cinfo.image_width = width;
    cinfo.image_height = height;
    cinfo.input_components = 4;
    cinfo.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&cinfo);
    jpeg_set_colorspace(&cinfo, JCS_YCCK);
    jpeg_set_quality(&cinfo, 90, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    for (int y = 0; y < height; y++) {
        JSAMPROW row = cmyk + (size_t)y * width * 4;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(cmyk);
    return 0;
}
