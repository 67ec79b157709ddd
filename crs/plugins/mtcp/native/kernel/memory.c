/* mtcp kernel: the mappings of the process. /proc/self/smaps gives them and their flags; the
 * kernel's own memory (thread table, compressor, buffers) is cut out; each mapping gets a kind
 * (anonymous, private or shared file, shared memory, vDSO...) or is refused with a reason; and
 * pagemap (crs/native/pagemap.h) says which of its pages the image must carry. */
#include "kernel.h"

#include "pagemap.h"

int mtcp_has_flag(const char *flags, const char *f)
{
    size_t n = strlen(f);
    for (const char *p = flags; p && *p;) {
        while (*p == ' ')
            p++;
        if (!strncmp(p, f, n) && (p[n] == ' ' || p[n] == 0))
            return 1;
        while (*p && *p != ' ')
            p++;
    }
    return 0;
}

int mtcp_ends_with(const char *s, const char *t)
{
    size_t a = strlen(s), b = strlen(t);
    return a >= b && !strcmp(s + a - b, t);
}

static int classify(struct vma *v)
{
    const char *p = v->path;
    int shared = v->perms[3] == 's';
    if (!strcmp(p, "[vsyscall]") || !strcmp(p, "[vvar]") || !strcmp(p, "[vvar_vclock]"))
        return v->kind = (!strncmp(p, "[vvar", 5) ? K_VVAR : K_SKIP);
    if (!strcmp(p, "[vdso]"))
        return v->kind = K_VDSO;
    static const struct { const char *f, *what; } special[] = {
        {"io", "a device's I/O memory"}, {"pf", "raw device pages"}, {"ht", "hugetlbfs pages"}};
    for (int i = 0; i < 3; i++)
        if (mtcp_has_flag(v->flags, special[i].f))
            return mtcp_fail("mapping %#lx-%#lx (%s) holds %s, which cannot be restored",
                             (unsigned long)v->start, (unsigned long)v->end, p[0] ? p : "anonymous",
                             special[i].what);
    if (p[0] != '/') {
        if (shared)
            return v->kind = K_SHMEM;
        if (p[0] == '[' && strcmp(p, "[heap]") && strcmp(p, "[stack]") && strncmp(p, "[anon:", 6) &&
            strncmp(p, "[anon_shmem:", 12))
            return mtcp_fail("mapping %#lx-%#lx is %s, which cannot be restored", (unsigned long)v->start,
                             (unsigned long)v->end, p);
        return v->kind = K_ANON;
    }
    int deleted = mtcp_ends_with(p, " (deleted)");
    if (shared)
        return v->kind = (deleted || !strncmp(p, "/memfd:", 7) || !strncmp(p, "/SYSV", 5))
                             ? K_SHMEM : K_SHARED_FILE;
    if (deleted || !strncmp(p, "/memfd:", 7) || !strncmp(p, "/dev/", 5))
        return v->kind = K_ANON_COPY;
    return v->kind = K_FILE;
}

/* Parse /proc/self/smaps (in sm, modified in place) into vmas. */
static int parse_smaps(struct buf *sm, struct buf *out)
{
    out->len = 0;
    struct vma *cur = NULL;
    for (char *l = sm->p; l && *l;) {
        char *nl = strchr(l, '\n');
        if (nl)
            *nl = 0;
        if (!strncmp(l, "VmFlags:", 8)) {
            if (cur)
                cur->flags = l + 8;
        } else {
            char *dash = strchr(l, '-'), *sp = strchr(l, ' ');
            if (dash && sp && dash < sp && (sp - l) >= 3) {
                struct vma v;
                memset(&v, 0, sizeof v);
                char *q;
                v.start = strtoull(l, &q, 16);
                v.end = strtoull(q + 1, &q, 16);
                q++;
                memcpy(v.perms, q, 4);
                q += 5;
                v.offset = strtoull(q, &q, 16);
                q++;
                while (*q && *q != ' ')
                    q++; /* dev */
                v.inode = strtoull(q, &q, 10);
                while (*q == ' ')
                    q++;
                v.path = q;
                v.flags = "";
                if (mtcp_put(out, &v, sizeof v) < 0)
                    return -1;
                cur = (struct vma *)(out->p + out->len - sizeof v);
            }
        }
        l = nl ? nl + 1 : NULL;
    }
    return (int)(out->len / sizeof(struct vma));
}

/* A run of pages for the image, appended to the runs buffer (a failure is recorded: the first
 * one recorded is the one reported). */
static long put_run(void *runs, uint64_t addr, uint64_t pages)
{
    uint64_t pair[2] = {addr, pages};
    return mtcp_put(runs, pair, sizeof pair) < 0 ? -ENOMEM : 0;
}

/* Runs (address, pages) of [start, end) the image must carry, appended to runs. */
static int scan_pages(int pagemap, uint64_t start, uint64_t end, int private_file, struct buf *runs)
{
    long r = pagemap_runs(pagemap, start, end, private_file, put_run, runs);
    return r < 0 ? mtcp_fail_errno("reading /proc/self/pagemap", (int)-r) : 0;
}

/* The kernel's own memory: subtracted from the mappings the image records. */
static int own_range(uint64_t *lo, uint64_t *hi, int i)
{
    int k = 0;
    if (mtcp.pool) {
        if (k++ == i) {
            *lo = (uint64_t)mtcp.pool;
            *hi = *lo + mtcp.pool_len;
            return 1;
        }
    }
    if (mtcp.codec) {
        if (k++ == i) {
            *lo = (uint64_t)mtcp.codec;
            *hi = *lo + CODEC_LEN;
            return 1;
        }
    }
    return mtcp_buf_range(i - k, lo, hi); /* the buffers come after those */
}

/* Cut the kernel's own ranges out of the mapping list (a mapping may have merged with one). */
static int subtract_own(struct buf *vb)
{
    for (int i = 0;; i++) {
        uint64_t lo, hi;
        if (!own_range(&lo, &hi, i))
            break;
        int n = (int)(vb->len / sizeof(struct vma));
        for (int j = 0; j < n; j++) {
            struct vma *v = (struct vma *)vb->p + j;
            if (v->end <= lo || hi <= v->start)
                continue;
            struct vma tail = *v;
            int has_tail = hi < v->end;
            if (has_tail) {
                tail.offset += hi - v->start;
                tail.start = hi;
            }
            if (v->start < lo) {
                v->end = lo;
            } else {
                v->start = v->end = 0; /* dropped */
            }
            if (has_tail && mtcp_put(vb, &tail, sizeof tail) < 0)
                return -1;
            vb = vb; /* the buffer may have moved: reload */
        }
    }
    /* drop emptied entries and sort by address */
    struct vma *a = (struct vma *)vb->p;
    int n = (int)(vb->len / sizeof(struct vma)), m = 0;
    for (int j = 0; j < n; j++)
        if (a[j].end > a[j].start)
            a[m++] = a[j];
    for (int i = 1; i < m; i++)
        for (int j = i; j > 0 && a[j - 1].start > a[j].start; j--) {
            struct vma t = a[j];
            a[j] = a[j - 1];
            a[j - 1] = t;
        }
    vb->len = (size_t)m * sizeof(struct vma);
    return m;
}

int mtcp_scan_memory(struct plan *P, int forked)
{
    struct buf *sm = &P->sm, *vb = &P->vb, *runs = &P->runs;
    if (mtcp_read_file("/proc/self/smaps", sm) < 0)
        return -1;
    if (parse_smaps(sm, vb) < 0)
        return -1;
    int n = subtract_own(vb);
    if (n < 0)
        return -1;
    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap < 0)
        return mtcp_fail_errno("opening /proc/self/pagemap", errno);
    mtcp_own_add(pagemap);
    runs->len = 0;
    /* first pass: classify, and collect every mapping's runs (in runs, after a count per vma) */
    size_t *first = NULL;
    int rc = 0;
    P->nvmas = n;
    if (mtcp_buf_reserve(&P->idx, (size_t)(n + 1) * sizeof(size_t)) < 0)
        rc = -1;
    first = (size_t *)P->idx.p;
    for (int i = 0; i < n && rc == 0; i++) {
        struct vma *v = (struct vma *)vb->p + i;
        if (classify(v) < 0) {
            rc = -1;
            break;
        }
        first[i] = runs->len / 16;
        if (v->kind == K_ANON_COPY) {
            uint64_t pair[2] = {v->start, (v->end - v->start) / PAGE};
            if (mtcp_put(runs, pair, sizeof pair) < 0)
                rc = -1;
        } else if (v->kind == K_ANON || v->kind == K_FILE) {
            if (scan_pages(pagemap, v->start, v->end, v->kind == K_FILE, runs) < 0)
                rc = -1;
        }
        int unforked = mtcp_has_flag(v->flags, "dc") ? 1 : mtcp_has_flag(v->flags, "wf") ? 2 : 0;
        if (rc == 0 && forked && unforked && runs->len / 16 > first[i])
            rc = mtcp_fail("mapping %#lx-%#lx (%s) is %s a fork (%s), so a forked checkpoint "
                           "cannot save it; checkpoint without crs_mtcp_forked",
                           (unsigned long)v->start, (unsigned long)v->end,
                           v->path[0] ? v->path : "anonymous",
                           unforked == 1 ? "left out of" : "wiped in",
                           unforked == 1 ? "MADV_DONTFORK" : "MADV_WIPEONFORK");
    }
    first[n] = runs->len / 16;
    close(pagemap);
    mtcp_own_del(pagemap);
    return rc < 0 ? -1 : 0;
}
