/* mtcp kernel: the image directory: image.json assembled from the records of every part
 * (threads, process, descriptors, mappings), and the files of the image, each created new
 * (O_EXCL) and held as one of the kernel's own descriptors while it is written. */
#include "kernel.h"

int mtcp_open_out(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return mtcp_fail("creating %s in the image directory: %s", name, errname(errno));
    mtcp_own_add(fd);
    return fd;
}

void mtcp_close_out(int fd)
{
    mtcp_own_del(fd);
    close(fd);
}

/* A new file of the image holding n bytes at p. */
int mtcp_write_whole(int dirfd, const char *name, const void *p, size_t n)
{
    int fd = mtcp_open_out(dirfd, name);
    if (fd < 0)
        return -1;
    int e = fdio_write_all(fd, p, n);
    mtcp_close_out(fd);
    return e < 0 ? mtcp_fail("writing %s: %s", name, errname(-e)) : 0;
}

void mtcp_plan_free(struct plan *P)
{
    struct buf *all[] = {&P->img, &P->tmp, &P->recs, &P->links, &P->sm, &P->vb, &P->runs,
                         &P->crcs, &P->idx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        mtcp_buf_free(all[i]);
}

/* image.json in P->img, and the shared memory objects; the pages are still to be written. */
int mtcp_put_image(struct plan *P, int dirfd, const struct request *q)
{
    struct buf *img = &P->img;
    int rc = 0;
    if (mtcp_puts(img, "{") < 0 || mtcp_kv_str(img, "format", FORMAT) < 0 ||
        mtcp_kv_i64(img, "pid", mtcp.pid) < 0 || mtcp_key(img, "threads") < 0 ||
        mtcp_puts(img, "[") < 0)
        rc = -1;
    for (int i = 0; i < mtcp.nslots && rc == 0; i++)
        if (mtcp.slots[i].parked == 1 && mtcp_put_thread(img, &mtcp.slots[i]) < 0)
            rc = -1;
    if (rc == 0 && (mtcp_put_thread(img, &mtcp.manager) < 0 || mtcp_puts(img, "]") < 0))
        rc = -1;
    if (rc == 0)
        rc = mtcp_put_process(img, &P->tmp);
    if (rc == 0)
        rc = mtcp_put_fds(img, &P->recs, &P->links, &P->tmp, q, dirfd);
    if (rc == 0)
        rc = mtcp_scan_memory(P, q->forked);
    if (rc == 0)
        rc = mtcp_put_vmas(P, dirfd);
    if (rc == 0 && q->level &&
        (mtcp_kv_str(img, "pages_codec", "lzp1") < 0 ||
         mtcp_kv_u64(img, "pages_raw_bytes", P->pages * PAGE) < 0))
        rc = -1;
    if (rc == 0 && mtcp_puts(img, "}") < 0)
        rc = -1;
    return rc;
}

int mtcp_write_json(struct plan *P, int dirfd)
{
    return mtcp_write_whole(dirfd, "image.json", P->img.p, P->img.len);
}
