/* mtcp kernel: the mappings' records in image.json (address, protection, kind, path, VmFlags,
 * the identity of a mapped file, the runs of pages in pages.img) and the data files of shared
 * memory objects, written while threads are held: a forked writer would share their content,
 * not copy it. */
#include "kernel.h"

#include <sys/stat.h>

static const char *kind_names[] = {"anon", "file", "shared-file", "shmem", "vdso", "skip", "vvar",
                                   "anon-copy"};

int mtcp_put_vmas(struct plan *P, int dirfd)
{
    struct buf *b = &P->img, *vb = &P->vb, *runs = &P->runs;
    uint64_t *total_pages = &P->pages;
    const size_t *first = (const size_t *)P->idx.p;
    int n = P->nvmas, rc = 0;
    /* the records */
    if (mtcp_key(b, "vmas") < 0 || mtcp_puts(b, "[") < 0)
        rc = -1;
    *total_pages = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        struct vma *v = (struct vma *)vb->p + i;
        int prot = (v->perms[0] == 'r' ? 1 : 0) | (v->perms[1] == 'w' ? 2 : 0) |
                   (v->perms[2] == 'x' ? 4 : 0);
        if (mtcp_sep(b) < 0 || mtcp_puts(b, "{") < 0 || mtcp_kv_u64(b, "start", v->start) < 0 ||
            mtcp_kv_u64(b, "end", v->end) < 0 || mtcp_kv_i64(b, "prot", prot) < 0 ||
            mtcp_kv_raw(b, "shared", v->perms[3] == 's' ? "true" : "false") < 0 ||
            mtcp_kv_str(b, "kind", kind_names[v->kind]) < 0 ||
            mtcp_kv_str(b, "path", v->path) < 0 || mtcp_kv_u64(b, "offset", v->offset) < 0 ||
            mtcp_kv_u64(b, "inode", v->inode) < 0 || mtcp_key(b, "flags") < 0 ||
            mtcp_puts(b, "[") < 0) {
            rc = -1;
            break;
        }
        /* VmFlags, sorted as the blcr dumper writes them (order does not matter to a reader) */
        for (const char *p = v->flags; *p && rc == 0;) {
            while (*p == ' ')
                p++;
            const char *q = p;
            while (*q && *q != ' ')
                q++;
            if (q > p && (mtcp_sep(b) < 0 || mtcp_put_str(b, p, (size_t)(q - p)) < 0))
                rc = -1;
            p = q;
        }
        if (rc < 0 || mtcp_puts(b, "]") < 0) {
            rc = -1;
            break;
        }
        if (v->kind == K_FILE || v->kind == K_SHARED_FILE) {
            struct stat st;
            if (stat(v->path, &st) < 0) {
                rc = mtcp_fail("mapped file %s: %s", v->path, errname(errno));
                break;
            }
            if (mtcp_key(b, "file_id") < 0 || mtcp_puts(b, "[") < 0 ||
                mtcp_put_u64(b, st.st_dev) < 0 || mtcp_puts(b, ",") < 0 ||
                mtcp_put_u64(b, st.st_ino) < 0 || mtcp_puts(b, ",") < 0 ||
                mtcp_put_i64(b, st.st_size) < 0 || mtcp_puts(b, ",") < 0 ||
                mtcp_put_i64(b, (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec) < 0 ||
                mtcp_puts(b, "]") < 0 ||
                mtcp_kv_raw(b, "may_write", mtcp_has_flag(v->flags, "mw") ? "true" : "false") < 0) {
                rc = -1;
                break;
            }
        }
        if (mtcp_key(b, "runs") < 0 || mtcp_puts(b, "[") < 0) {
            rc = -1;
            break;
        }
        for (size_t k = first[i]; k < first[i + 1]; k++) {
            uint64_t *pr = (uint64_t *)runs->p + 2 * k;
            *total_pages += pr[1];
            if (mtcp_sep(b) < 0 || mtcp_puts(b, "[") < 0 || mtcp_put_u64(b, pr[0]) < 0 ||
                mtcp_puts(b, ",") < 0 || mtcp_put_u64(b, pr[1]) < 0 || mtcp_puts(b, "]") < 0) {
                rc = -1;
                break;
            }
        }
        if (rc == 0 && mtcp_puts(b, "]}") < 0)
            rc = -1;
    }
    if (rc == 0 && mtcp_puts(b, "]") < 0)
        rc = -1;
    /* shared memory objects: their content from the mappings */
    if (rc == 0 && (mtcp_key(b, "shmem") < 0 || mtcp_puts(b, "{") < 0))
        rc = -1;
    for (int i = 0; i < n && rc == 0; i++) {
        struct vma *v = (struct vma *)vb->p + i;
        if (v->kind != K_SHMEM)
            continue;
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= ((struct vma *)vb->p)[j].kind == K_SHMEM &&
                ((struct vma *)vb->p)[j].inode == v->inode;
        if (seen)
            continue;
        char name[64];
        snprintf(name, sizeof name, "shm-%lu.data", (unsigned long)v->inode);
        int fd = mtcp_open_out(dirfd, name);
        if (fd < 0) {
            rc = -1;
            break;
        }
        uint64_t size = 0;
        for (int j = i; j < n && rc == 0; j++) {
            struct vma *u = (struct vma *)vb->p + j;
            if (u->kind != K_SHMEM || u->inode != v->inode)
                continue;
            uint64_t len = u->end - u->start;
            if (u->offset + len > size)
                size = u->offset + len;
            if (u->perms[0] == 'r') {
                if (pwrite(fd, (void *)u->start, len, (off_t)u->offset) != (ssize_t)len)
                    rc = mtcp_fail_errno("writing shared memory content", errno ? errno : EIO);
            } else {
                rc = mtcp_fail("shared mapping %#lx-%#lx is not readable; mtcp cannot save it yet",
                               (unsigned long)u->start, (unsigned long)u->end);
            }
        }
        mtcp_close_out(fd);
        char nm[PATH_MAX];
        const char *p = v->path;
        if (!strncmp(p, "/memfd:", 7))
            p += 7;
        snprintf(nm, sizeof nm, "%s", p);
        if (mtcp_ends_with(nm, " (deleted)"))
            nm[strlen(nm) - 10] = 0;
        char ino[32];
        snprintf(ino, sizeof ino, "%lu", (unsigned long)v->inode);
        if (rc == 0 && (mtcp_key(b, ino) < 0 || mtcp_puts(b, "{") < 0 ||
                        mtcp_kv_str(b, "data", name) < 0 || mtcp_kv_u64(b, "size", size) < 0 ||
                        mtcp_kv_str(b, "name", nm) < 0 || mtcp_puts(b, "}") < 0))
            rc = -1;
    }
    if (rc == 0 && mtcp_puts(b, "}") < 0)
        rc = -1;
    return rc;
}
