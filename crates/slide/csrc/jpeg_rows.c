/* Scanline JPEG decoding with libjpeg(-turbo), for wsiseg's plain-image reader.
 *
 * A JPEG is decoded a band of rows at a time, so a 65000x65000 baseline JPEG
 * never needs more than a band in memory. libjpeg's fatal errors longjmp back
 * here and become an error string; its warnings about corrupt data (premature
 * end of data, bad Huffman codes, restart markers out of place...) are errors
 * too: a mask made from grey filler pixels must never look like a good one.
 */
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} wsj_error;

typedef struct {
    struct jpeg_decompress_struct cinfo;
    wsj_error err;
    FILE *file;
    int started;
    /* CMYK (or YCCK) JPEGs decode to CMYK, converted here row by row. */
    uint8_t *cmyk_row;
    /* Adobe's APP14 marker: the CMYK values are stored inverted. */
    int inverted;
} wsj_reader;

static void wsj_error_exit(j_common_ptr cinfo) {
    wsj_error *err = (wsj_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

/* Level -1 messages are warnings; those about corrupt data fail the read
 * (the ones about metadata, such as an unknown JFIF revision, do not). */
static void wsj_emit_message(j_common_ptr cinfo, int level) {
    if (level >= 0) {
        return;
    }
    switch (cinfo->err->msg_code) {
    case JWRN_JFIF_MAJOR:
    case JWRN_ADOBE_XFORM:
        return;
    default:
        wsj_error_exit(cinfo);
    }
}

static void wsj_copy(char *dst, size_t len, const char *src) {
    if (len == 0) {
        return;
    }
    strncpy(dst, src, len - 1);
    dst[len - 1] = 0;
}

/* Reads the header of the opened file; 0, or -1 with `err` set. */
static int wsj_header(wsj_reader *r, char *err, size_t errlen) {
    r->cinfo.err = jpeg_std_error(&r->err.pub);
    r->err.pub.error_exit = wsj_error_exit;
    r->err.pub.emit_message = wsj_emit_message;
    jpeg_create_decompress(&r->cinfo);
    if (setjmp(r->err.jump)) {
        wsj_copy(err, errlen, r->err.message);
        return -1;
    }
    jpeg_stdio_src(&r->cinfo, r->file);
    jpeg_read_header(&r->cinfo, TRUE);
    return 0;
}

/* Opens `path` and reads its header; NULL with `err` set on failure. */
void *wsj_open(const char *path, char *err, size_t errlen) {
    wsj_reader *r = calloc(1, sizeof(wsj_reader));
    if (!r) {
        wsj_copy(err, errlen, "out of memory");
        return NULL;
    }
    r->file = fopen(path, "rb");
    if (!r->file) {
        wsj_copy(err, errlen, "cannot open the file");
        free(r);
        return NULL;
    }
    if (wsj_header(r, err, errlen) != 0) {
        jpeg_destroy_decompress(&r->cinfo);
        fclose(r->file);
        free(r);
        return NULL;
    }
    return r;
}

/* Width, height, components and whether the file is progressive (whose
 * decoding holds every coefficient of the image: 2 bytes a sample). */
void wsj_info(void *handle, uint32_t *w, uint32_t *h, int *components, int *progressive) {
    wsj_reader *r = handle;
    *w = r->cinfo.image_width;
    *h = r->cinfo.image_height;
    *components = r->cinfo.num_components;
    *progressive = jpeg_has_multiple_scans(&r->cinfo);
}

/* Starts decompressing to RGB (CMYK and YCCK through CMYK, converted
 * per row); libjpeg may use at most `max_memory` bytes for its own buffers
 * (more is an error, not an allocation). */
int wsj_start(void *handle, uint64_t max_memory, char *err, size_t errlen) {
    wsj_reader *r = handle;
    if (setjmp(r->err.jump)) {
        wsj_copy(err, errlen, r->err.message);
        return -1;
    }
    int cmyk = r->cinfo.jpeg_color_space == JCS_CMYK || r->cinfo.jpeg_color_space == JCS_YCCK;
    r->cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    r->cinfo.mem->max_memory_to_use = (long)max_memory;
    jpeg_start_decompress(&r->cinfo);
    r->started = 1;
    if (cmyk) {
        r->inverted = r->cinfo.saw_Adobe_marker;
        r->cmyk_row = malloc((size_t)r->cinfo.output_width * 4);
        if (!r->cmyk_row) {
            wsj_copy(err, errlen, "out of memory for a CMYK row");
            return -1;
        }
    }
    return 0;
}

/* One CMYK row to RGB: R = (1 - C)(1 - K), and so on (values as inks:
 * 0 none; stored inverted under Adobe's marker, as Photoshop writes them). */
static void wsj_cmyk_to_rgb(const wsj_reader *r, uint8_t *rgb) {
    const uint8_t *p = r->cmyk_row;
    for (JDIMENSION x = 0; x < r->cinfo.output_width; x++, p += 4, rgb += 3) {
        unsigned c = p[0], m = p[1], y = p[2], k = p[3];
        if (!r->inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        /* Now each is 255 - ink: the share of light it lets through. */
        rgb[0] = (uint8_t)((c * k + 127) / 255);
        rgb[1] = (uint8_t)((m * k + 127) / 255);
        rgb[2] = (uint8_t)((y * k + 127) / 255);
    }
}

/* Decodes the next `rows` rows as RGB into `out` (rows * width * 3 bytes). */
int wsj_read_rows(void *handle, uint8_t *out, uint32_t rows, char *err, size_t errlen) {
    wsj_reader *r = handle;
    size_t stride = (size_t)r->cinfo.output_width * 3;
    if (setjmp(r->err.jump)) {
        wsj_copy(err, errlen, r->err.message);
        return -1;
    }
    uint32_t done = 0;
    while (done < rows) {
        if (r->cinfo.output_scanline >= r->cinfo.output_height) {
            wsj_copy(err, errlen, "more rows asked for than the image has");
            return -1;
        }
        JSAMPROW row = out + (size_t)done * stride;
        if (r->cmyk_row) {
            JSAMPROW cmyk = r->cmyk_row;
            if (jpeg_read_scanlines(&r->cinfo, &cmyk, 1) == 1) {
                wsj_cmyk_to_rgb(r, row);
                done++;
            }
        } else {
            done += jpeg_read_scanlines(&r->cinfo, &row, 1);
        }
    }
    return 0;
}

void wsj_close(void *handle) {
    wsj_reader *r = handle;
    if (!r) {
        return;
    }
    /* jpeg_abort is safe mid-image, unlike jpeg_finish_decompress. */
    jpeg_destroy_decompress(&r->cinfo);
    fclose(r->file);
    free(r->cmyk_row);
    free(r);
}
