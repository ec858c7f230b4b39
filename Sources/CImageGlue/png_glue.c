#include "CImageGlue.h"

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

struct octet_png_decoder {
  png_structp png;
  png_infop info;
  const uint8_t *data;
  size_t size;
  size_t offset;
  int has_header;
  // Owned here rather than on the stack so that a longjmp out of png_read_image cannot leak them.
  uint8_t *pixels;
  png_bytep *rows;
  char message[256];
};

static void on_error(png_structp png, png_const_charp message) {
  octet_png_decoder *decoder = png_get_error_ptr(png);
  snprintf(decoder->message, sizeof decoder->message, "%s", message);
  // Returning would make libpng print the message to stderr before jumping.
  png_longjmp(png, 1);
}

// Warnings are about ancillary chunks (colour profiles, text) that do not change the pixels.
static void on_warning(png_structp png, png_const_charp message) {
  (void)png;
  (void)message;
}

static void read_from_memory(png_structp png, png_bytep out, size_t count) {
  octet_png_decoder *decoder = png_get_io_ptr(png);
  if (count > decoder->size - decoder->offset) png_error(png, "unexpected end of file");
  memcpy(out, decoder->data + decoder->offset, count);
  decoder->offset += count;
}

octet_png_decoder *octet_png_create(void) {
  octet_png_decoder *decoder = calloc(1, sizeof(octet_png_decoder));
  if (!decoder) return NULL;
  decoder->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, decoder, on_error, on_warning);
  if (!decoder->png) {
    free(decoder);
    return NULL;
  }
  // Compressed text and ICC profiles inflate to sizes the file chooses; this libpng build sets no
  // limit. Real ones are far below 8 MB (Pillow refuses text over 1 MB). Chunk lengths themselves
  // are checked against the file size before libpng runs (ImageDecoder.checkChunkLengths).
  png_set_chunk_malloc_max(decoder->png, 8 * 1024 * 1024);
  png_set_chunk_cache_max(decoder->png, 1000);
  decoder->info = png_create_info_struct(decoder->png);
  if (!decoder->info) {
    png_destroy_read_struct(&decoder->png, NULL, NULL);
    free(decoder);
    return NULL;
  }
  return decoder;
}

void octet_png_destroy(octet_png_decoder *decoder) {
  if (!decoder) return;
  png_destroy_read_struct(&decoder->png, &decoder->info, NULL);
  free(decoder->rows);
  free(decoder->pixels);
  free(decoder);
}

int octet_png_read_header(
  octet_png_decoder *decoder, const uint8_t *data, size_t size, octet_png_header *header
) {
  png_structp png = decoder->png;
  png_infop info = decoder->info;
  decoder->has_header = 0;
  if (setjmp(png_jmpbuf(png))) return -1;
  decoder->data = data;
  decoder->size = size;
  decoder->offset = 0;
  png_set_read_fn(png, decoder, read_from_memory);
  png_read_info(png, info);
  header->width = png_get_image_width(png, info);
  header->height = png_get_image_height(png, info);
  header->bit_depth = png_get_bit_depth(png, info);
  header->color_type = png_get_color_type(png, info);
  header->interlaced = png_get_interlace_type(png, info) == PNG_INTERLACE_ADAM7 ? 1 : 0;
  header->has_trns = png_get_valid(png, info, PNG_INFO_tRNS) ? 1 : 0;
  decoder->has_header = 1;
  return 0;
}

int octet_png_decode(
  octet_png_decoder *decoder, const uint8_t **pixels, size_t *row_bytes, int *channels,
  int *bit_depth
) {
  png_structp png = decoder->png;
  png_infop info = decoder->info;
  if (!decoder->has_header) {
    snprintf(decoder->message, sizeof decoder->message, "no header has been read");
    return -1;
  }
  decoder->has_header = 0;
  if (setjmp(png_jmpbuf(png))) return -1;

  int color_type = png_get_color_type(png, info);
  int depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);

  size_t stride = png_get_rowbytes(png, info);
  size_t height = png_get_image_height(png, info);
  if (stride == 0 || height == 0 || height > SIZE_MAX / stride) {
    snprintf(decoder->message, sizeof decoder->message, "image size overflows memory");
    return -1;
  }
  decoder->pixels = malloc(stride * height);
  decoder->rows = malloc(height * sizeof(png_bytep));
  if (!decoder->pixels || !decoder->rows) {
    snprintf(decoder->message, sizeof decoder->message, "out of memory for %zu bytes",
             stride * height);
    return -1;
  }
  for (size_t y = 0; y < height; y++) decoder->rows[y] = decoder->pixels + y * stride;
  // Reads every pass of an interlaced image. The chunks after the image data (png_read_end) are
  // not read: they cannot change a pixel.
  png_read_image(png, decoder->rows);

  *pixels = decoder->pixels;
  *row_bytes = stride;
  *channels = png_get_channels(png, info);
  *bit_depth = png_get_bit_depth(png, info);
  return 0;
}

const char *octet_png_message(const octet_png_decoder *decoder) { return decoder->message; }
