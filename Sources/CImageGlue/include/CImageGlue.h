// C glue between Swift and the libjpeg / libpng decoders.
//
// Both libraries report errors by longjmp-ing out of the failing call (libjpeg's default handler
// even calls exit()). Swift cannot call setjmp, and a longjmp must never cross a Swift frame, so
// every call into either library happens inside one of the functions below, each of which sets its
// own setjmp point and turns a library error into a return value of -1 plus a message.
//
// The header deliberately avoids jpeglib.h and png.h: Swift sees only opaque handles and plain C
// types.
#ifndef CIMAGEGLUE_H
#define CIMAGEGLUE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: JPEG (libjpeg-turbo)

typedef struct octet_jpeg_decoder octet_jpeg_decoder;

typedef struct {
  uint32_t width;
  uint32_t height;
  /// Components in the frame header: 1 (gray), 3 (YCbCr or RGB) or 4 (CMYK or YCCK).
  int components;
  /// libjpeg's J_COLOR_SPACE of the file: 1 gray, 2 RGB, 3 YCbCr, 4 CMYK, 5 YCCK.
  int color_space;
  int progressive;
} octet_jpeg_header;

/// Returns NULL only when out of memory.
octet_jpeg_decoder *octet_jpeg_create(void);
void octet_jpeg_destroy(octet_jpeg_decoder *decoder);

/// Reads the markers up to the first scan. `data` must stay valid until `octet_jpeg_decode`
/// returns. Returns 0, or -1 with `octet_jpeg_message` set.
int octet_jpeg_read_header(
  octet_jpeg_decoder *decoder, const uint8_t *data, size_t size, octet_jpeg_header *header);

/// Decodes the whole image into `pixels` (row-major, interleaved), with islow IDCT and fancy
/// upsampling. 1- and 3-component files come out as RGB (3 bytes a pixel); 4-component files as
/// the CMYK values stored in the file (4 bytes a pixel, not inverted). `*channels` says which.
/// Every libjpeg warning except "extraneous bytes before marker" is treated as an error, because
/// the others mean libjpeg made up pixel data (a truncated file is padded with grey).
/// Returns 0, or -1 with `octet_jpeg_message` set.
int octet_jpeg_decode(
  octet_jpeg_decoder *decoder, uint8_t *pixels, size_t capacity, int *channels);

const char *octet_jpeg_message(const octet_jpeg_decoder *decoder);

// MARK: PNG (libpng)

typedef struct octet_png_decoder octet_png_decoder;

typedef struct {
  uint32_t width;
  uint32_t height;
  int bit_depth;   // 1, 2, 4, 8 or 16
  int color_type;  // 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA
  int interlaced;  // 1 for Adam7
  int has_trns;
} octet_png_header;

octet_png_decoder *octet_png_create(void);
void octet_png_destroy(octet_png_decoder *decoder);

/// Reads the chunks up to the first IDAT. `data` must stay valid until `octet_png_decode`
/// returns. Returns 0, or -1 with `octet_png_message` set.
int octet_png_read_header(
  octet_png_decoder *decoder, const uint8_t *data, size_t size, octet_png_header *header);

/// Decodes the whole image (de-interlacing if needed) into a buffer owned by the decoder.
/// Palette images are expanded to RGB and 1/2/4-bit gray to 8-bit gray; everything else keeps its
/// channels (alpha included) and its bit depth (16-bit samples stay big-endian). On success
/// `*pixels` points at `height` rows of `*row_bytes` bytes with `*channels` samples of
/// `*bit_depth` bits a pixel. Returns 0, or -1 with `octet_png_message` set.
int octet_png_decode(
  octet_png_decoder *decoder, const uint8_t **pixels, size_t *row_bytes, int *channels,
  int *bit_depth);

const char *octet_png_message(const octet_png_decoder *decoder);

#ifdef __cplusplus
}
#endif

#endif
