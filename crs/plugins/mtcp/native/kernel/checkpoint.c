/* mtcp kernel: one checkpoint, from the manager thread: the thread table and the compressor's
 * buffers mapped first (nothing can fail for want of memory once threads are held), every other
 * thread held, the manager's own capture point, the image written here or handed to a forked
 * writer, the threads released. A restored process comes back out of the manager's capture
 * point, here. */
#include "kernel.h"

#include <sys/mman.h>

/* While threads are held: the image, written here, or handed to a forked writer (*writer). */
static int save(int dirfd, struct request *q, unsigned char *codec, long *writer, int *report_fd)
{
    struct plan P;
    memset(&P, 0, sizeof P);
    int rc = mtcp_put_image(&P, dirfd, q);
    if (rc == 0 && q->forked) {
        *writer = mtcp_fork_writer(&P, dirfd, q->level, codec, report_fd);
        rc = *writer < 0 ? -1 : 0;
    } else if (rc == 0) {
        rc = mtcp_write_pages(&P, dirfd, q->level, codec, &q->stored);
        if (rc == 0)
            rc = mtcp_write_json(&P, dirfd);
    }
    q->raw = P.pages * PAGE;
    mtcp_plan_free(&P);
    return rc;
}

/* 0: written; -1: failed (mtcp.err); 1: this is a restored process (the request is history). */
int mtcp_checkpoint(int conn, const char *dir, struct request *q)
{
    mtcp.err[0] = 0;
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return mtcp_fail("image directory %s: %s", dir, errname(errno));
    mtcp_own_add(dirfd);
    struct sigaction cur;
    if (sigaction(mtcp.sig, NULL, &cur) < 0 || !(cur.sa_flags & SA_SIGINFO) ||
        cur.sa_sigaction != mtcp_on_signal) {
        close(dirfd);
        mtcp_own_del(dirfd);
        return mtcp_fail("the handler of signal %d (used by the mtcp kernel) was replaced by the "
                         "application", mtcp.sig);
    }
    /* the compressor's buffers before threads are held: nothing to fail once they are */
    unsigned char *codec = NULL;
    if (q->level) {
        codec = mmap(NULL, CODEC_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (codec == MAP_FAILED) {
            close(dirfd);
            mtcp_own_del(dirfd);
            return mtcp_fail_errno("allocating the compressor's buffers", errno);
        }
        mtcp.codec = codec;
    }
    /* XSAVE areas (one per thread, the manager's last), then the slots */
    mtcp.pool_len =
        (size_t)(MAX_THREADS + 1) * XSTATE_MAX + (size_t)MAX_THREADS * sizeof(struct slot);
    mtcp.pool = mmap(NULL, mtcp.pool_len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mtcp.pool == MAP_FAILED) {
        mtcp.pool = NULL;
        if (codec)
            munmap(codec, CODEC_LEN);
        mtcp.codec = NULL;
        close(dirfd);
        mtcp_own_del(dirfd);
        return mtcp_fail_errno("allocating the thread table", errno);
    }
    mtcp.slots = (struct slot *)(mtcp.pool + (size_t)(MAX_THREADS + 1) * XSTATE_MAX);
    mtcp.nslots = 0;
    mtcp.parked = 0;
    mtcp.go = 0;
    long writer = 0;
    int report_fd = -1;
    double t0 = now();
    __atomic_store_n(&mtcp.active, 1, __ATOMIC_SEQ_CST);
    int rc = mtcp_stop_threads();
    if (rc == 0) {
        char msg[64];
        int held = 0;
        for (int i = 0; i < mtcp.nslots; i++)
            held += mtcp.slots[i].parked == 1;
        q->threads = (uint64_t)held + 1;
        snprintf(msg, sizeof msg, "%d threads held", held + 1);
        mtcp_progress(conn, msg);
        memset(&mtcp.manager, 0, sizeof mtcp.manager);
        mtcp.manager.tid = mtcp.manager_tid;
        mtcp.manager.xstate = mtcp.pool + (size_t)MAX_THREADS * XSTATE_MAX;
        mtcp_record_self(&mtcp.manager);
        if (mtcp_capture(&mtcp.manager.ctx) != 0) {
            mtcp_back_from_restart();
            return 1;
        }
        rc = save(dirfd, q, codec, &writer, &report_fd);
    }
    mtcp_release_threads();
    q->frozen = now() - t0;
    munmap(mtcp.pool, mtcp.pool_len);
    mtcp.pool = NULL;
    mtcp.slots = NULL;
    mtcp.nslots = 0;
    if (rc == 0 && writer > 0) {
        mtcp_progress(conn, "threads released; a forked writer writes the image");
        rc = mtcp_wait_writer(writer, report_fd, &q->stored);
    }
    q->total = now() - t0;
    if (codec)
        munmap(codec, CODEC_LEN);
    mtcp.codec = NULL;
    close(dirfd);
    mtcp_own_del(dirfd);
    return rc;
}
