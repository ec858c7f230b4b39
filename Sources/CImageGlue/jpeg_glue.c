#include "CImageGlue.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

// Real progressive files have about 10 scans. A valid progression can have almost 900 per
// component, and each one walks the whole coefficient buffer, so a small file could keep the
// decoder busy for minutes; libjpeg-turbo's TurboJPEG API and its fuzzers stop at 500 too.
#define OCTET_JPEG_MAX_SCANS 500

struct octet_jpeg_decoder {
  struct jpeg_decompress_struct cinfo;
  struct jpeg_error_mgr err;
  struct jpeg_progress_mgr progress;
  jmp_buf jump;
  int has_header;
  char message[JMSG_LENGTH_MAX];
};

// Recovers the decoder from the libjpeg object it embeds.
static octet_jpeg_decoder *decoder_of(j_common_ptr cinfo) {
  return (octet_jpeg_decoder *)((char *)cinfo - offsetof(octet_jpeg_decoder, cinfo));
}

static void fail_with_library_message(j_common_ptr cinfo) {
  octet_jpeg_decoder *decoder = decoder_of(cinfo);
  cinfo->err->format_message(cinfo, decoder->message);
  longjmp(decoder->jump, 1);
}

// Replaces libjpeg's default, which prints the message and calls exit().
static void on_error_exit(j_common_ptr cinfo) { fail_with_library_message(cinfo); }

// Warnings (msg_level -1) are where libjpeg reports corrupt or truncated entropy data and then
// carries on with invented pixels. Stray bytes between markers are the one warning that leaves
// every pixel intact (Pillow accepts such files too), so only that one is tolerated.
static void on_emit_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level >= 0) return;  // trace messages
  cinfo->err->num_warnings++;
  if (cinfo->err->msg_code == JWRN_EXTRANEOUS_DATA) return;
  fail_with_library_message(cinfo);
}

static void on_output_message(j_common_ptr cinfo) { (void)cinfo; }

// libjpeg calls this while it reads scans (jpeg_start_decompress reads a whole progressive file).
static void on_progress(j_common_ptr cinfo) {
  j_decompress_ptr dinfo = (j_decompress_ptr)cinfo;
  if (dinfo->input_scan_number > OCTET_JPEG_MAX_SCANS) {
    octet_jpeg_decoder *decoder = decoder_of(cinfo);
    snprintf(decoder->message, sizeof decoder->message,
             "more than %d scans (a progressive file has about 10)", OCTET_JPEG_MAX_SCANS);
    longjmp(decoder->jump, 1);
  }
}

octet_jpeg_decoder *octet_jpeg_create(void) {
  octet_jpeg_decoder *decoder = calloc(1, sizeof(octet_jpeg_decoder));
  if (!decoder) return NULL;
  decoder->cinfo.err = jpeg_std_error(&decoder->err);
  decoder->err.error_exit = on_error_exit;
  decoder->err.emit_message = on_emit_message;
  decoder->err.output_message = on_output_message;
  if (setjmp(decoder->jump)) {
    // jpeg_create_decompress fails only on a library version mismatch or out of memory.
    jpeg_destroy_decompress(&decoder->cinfo);
    free(decoder);
    return NULL;
  }
  jpeg_create_decompress(&decoder->cinfo);
  decoder->progress.progress_monitor = on_progress;
  decoder->cinfo.progress = &decoder->progress;
  return decoder;
}

void octet_jpeg_destroy(octet_jpeg_decoder *decoder) {
  if (!decoder) return;
  jpeg_destroy_decompress(&decoder->cinfo);
  free(decoder);
}

int octet_jpeg_read_header(
  octet_jpeg_decoder *decoder, const uint8_t *data, size_t size, octet_jpeg_header *header
) {
  decoder->has_header = 0;
  if (setjmp(decoder->jump)) return -1;
  jpeg_mem_src(&decoder->cinfo, data, (unsigned long)size);
  // With require_image = TRUE, a file without a scan is an error, so JPEG_HEADER_OK is the only
  // other outcome for an in-memory source.
  jpeg_read_header(&decoder->cinfo, TRUE);
  header->width = decoder->cinfo.image_width;
  header->height = decoder->cinfo.image_height;
  header->components = decoder->cinfo.num_components;
  header->color_space = (int)decoder->cinfo.jpeg_color_space;
  header->progressive = decoder->cinfo.progressive_mode ? 1 : 0;
  decoder->has_header = 1;
  return 0;
}

int octet_jpeg_decode(
  octet_jpeg_decoder *decoder, uint8_t *pixels, size_t capacity, int *channels
) {
  struct jpeg_decompress_struct *cinfo = &decoder->cinfo;
  if (!decoder->has_header) {
    snprintf(decoder->message, sizeof decoder->message, "no header has been read");
    return -1;
  }
  if (setjmp(decoder->jump)) return -1;

  // Pillow's settings: it asks for RGB (or CMYK for 4-component files) and leaves the IDCT and
  // upsampling at libjpeg's defaults, which are spelled out here so they cannot drift.
  cinfo->out_color_space = cinfo->num_components == 4 ? JCS_CMYK : JCS_RGB;
  cinfo->dct_method = JDCT_ISLOW;
  cinfo->do_fancy_upsampling = TRUE;
  cinfo->scale_num = 1;
  cinfo->scale_denom = 1;
  jpeg_start_decompress(cinfo);

  size_t stride = (size_t)cinfo->output_width * (size_t)cinfo->output_components;
  if (stride != 0 && (size_t)cinfo->output_height > capacity / stride) {
    snprintf(decoder->message, sizeof decoder->message,
             "output buffer of %zu bytes is too small for %ux%u pixels", capacity,
             cinfo->output_width, cinfo->output_height);
    jpeg_abort_decompress(cinfo);
    return -1;
  }
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW rows[16];
    JDIMENSION wanted = cinfo->output_height - cinfo->output_scanline;
    if (wanted > 16) wanted = 16;
    for (JDIMENSION i = 0; i < wanted; i++) {
      rows[i] = pixels + (size_t)(cinfo->output_scanline + i) * stride;
    }
    jpeg_read_scanlines(cinfo, rows, wanted);
  }
  *channels = cinfo->output_components;
  // Reads on to the EOI marker, so a file that lacks only its last bytes is refused too, as Pillow
  // refuses it ("image file is truncated").
  jpeg_finish_decompress(cinfo);
  decoder->has_header = 0;
  return 0;
}

const char *octet_jpeg_message(const octet_jpeg_decoder *decoder) { return decoder->message; }
