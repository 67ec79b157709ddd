/* mtcp kernel: a compressed pages.img: the page stream cut into frames of LZP_FRAME bytes, each
 * stored as its lzp1 form behind a frame header (crs/native/lzpack.h), or raw when that is not
 * smaller. The compressor's buffers are mapped before threads are held (checkpoint.c). */
#include "kernel.h"

/* One frame of a compressed image (format in lzpack.h): compressed, or raw when that is not
 * smaller. */
static int store_frame(struct page_writer *w, const unsigned char *p, size_t n)
{
    size_t c = lzp_compress(p, n, w->packed + LZP_FRAME_HEADER, n - 1, w->level, w->ws);
    lzp_put_le32(w->packed, (uint32_t)n);
    lzp_put_le32(w->packed + 4, c ? (uint32_t)c : LZP_STORED_RAW | (uint32_t)n);
    if (c)
        return mtcp_store(w, w->packed, LZP_FRAME_HEADER + c);
    return mtcp_store(w, w->packed, LZP_FRAME_HEADER) < 0 ? -1 : mtcp_store(w, p, n);
}

/* Bytes of the page stream, p stable for the call. */
int mtcp_emit_pages(struct page_writer *w, const unsigned char *p, size_t n)
{
    w->raw += n;
    if (!w->level)
        return mtcp_store(w, p, n);
    while (n) {
        if (w->fill == 0 && n >= LZP_FRAME) { /* a whole frame in place: no copy */
            if (store_frame(w, p, LZP_FRAME) < 0)
                return -1;
            p += LZP_FRAME;
            n -= LZP_FRAME;
            continue;
        }
        size_t take = LZP_FRAME - w->fill < n ? LZP_FRAME - w->fill : n;
        memcpy(w->frame + w->fill, p, take);
        w->fill += take;
        p += take;
        n -= take;
        if (w->fill == LZP_FRAME) {
            w->fill = 0;
            if (store_frame(w, w->frame, LZP_FRAME) < 0)
                return -1;
        }
    }
    return 0;
}

/* The frame being filled, when there is one. */
int mtcp_flush_frame(struct page_writer *w)
{
    if (!w->fill)
        return 0;
    size_t n = w->fill;
    w->fill = 0;
    return store_frame(w, w->frame, n);
}

/* Carve the compressor's buffers (CODEC_LEN bytes at codec) for w. */
void mtcp_codec_attach(struct page_writer *w, unsigned char *codec)
{
    w->frame = codec;
    w->packed = codec + LZP_FRAME;
    w->ws = codec + LZP_FRAME + CODEC_OUT;
}
