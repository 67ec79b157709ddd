/* mtcp: the in-process checkpoint kernel of pycrs. This header is what its units share; read it
 * first.
 *
 * A plain shared library, with no Python in it: preloaded into any dynamically linked program
 * (LD_PRELOAD) or loaded by ctypes into a Python process. Its constructor starts a manager thread
 * (every signal blocked in it) that serves requests on a private Unix socket,
 * <control dir>/mtcp-<PID>.sock, one JSON line per request, JSON-line events in reply.
 *
 * A checkpoint: the manager signals every other thread (tgkill, MTCP_SIGNAL); each saves what
 * only it can read about itself (XSAVE state, fs/gs bases, signal mask, alternate stack, tid
 * address, robust list, rseq area, name), records a capture point (callee-saved registers, stack
 * pointer, return address) and waits on a futex. The manager records its own capture point, then
 * writes the image in the format of the blcr component (image.json, pages.img with a CRC-32C per
 * MiB in pages.crc, data files per descriptor or shared memory object), and releases the threads.
 *
 * A restored thread starts at its capture point with 1 as the capture's result (0 the first
 * time), waits for the manager, and returns from the signal handler: sigreturn puts back the
 * context the signal interrupted, FPU state included, from the signal frame restored with the
 * stack. The restored manager makes its socket again and releases the threads.
 *
 * While threads are held the manager calls no libc function that can take a lock another thread
 * may hold (no malloc, no stdio): raw system calls, buffers of its own from mmap, left out of the
 * image. Errors name the step and the errno. x86-64 Linux only.
 *
 * The units, one concern each:
 *   kernel.c      start-up (constructor, XSAVE, the signal, the manager thread), fork, the
 *                 functions the library exports, errors, the kernel's own descriptors
 *   control.c     the control socket and the manager's loop: requests in, events out
 *   checkpoint.c  one checkpoint: threads held, the image saved, threads released
 *   threads.c     stopping threads: the signal handler, capture points, XSAVE, thread records
 *   process.c     process-wide state (mm fields, limits, cwd, argv, auxv, ...)
 *   signals.c     signal actions, interval timers and POSIX timers
 *   fds.c         descriptors: which are there, which are dups, their records
 *   fd_kinds.c    what each descriptor is (file, directory, device, terminal, pipe, socket,
 *                 eventfd, epoll, deleted file, memfd)
 *   memory.c      the mappings (smaps), what kind each is, the pages each must save (pagemap)
 *   vmas.c        the mappings' records in image.json, shared memory objects' data files
 *   image.c       image.json and the files of the image directory
 *   pages.c       pages.img and pages.crc: the page writer
 *   compress.c    lzp1 frames of a compressed pages.img
 *   writer.c      the forked writer: the pages written by a child while the threads run again
 *   resume.c      after a restore: what the restart program left for the kernel to finish
 *   buf.c         buffers of the kernel's own (mmap, left out of the image), the JSON writer
 *   procfs.c      reading /proc without malloc
 * Functions and data shared between units start with mtcp_ and, as everything in the library
 * but mtcp_kernel_ready and mtcp_socket_path, are hidden (-fvisibility=hidden, and the pragma
 * below for declarations).
 */
#ifndef PYCRS_MTCP_KERNEL_H
#define PYCRS_MTCP_KERNEL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "fdio.h"
#include "lzpack.h"

#pragma GCC visibility push(hidden)

#define EXPORT __attribute__((visibility("default")))
#define PAGE 4096UL
#define CHUNK (1UL << 20)
#define MAX_THREADS 4096
#define XSTATE_MAX (16 * 1024)
#define FORMAT "pycrs-process-image 1"

/* The compressor's buffers: a frame, its compressed form behind a header, the workspace. */
#define CODEC_OUT ((LZP_FRAME + LZP_FRAME / 64 + 2 * PAGE) & ~(PAGE - 1))
#define CODEC_LEN (LZP_FRAME + CODEC_OUT + LZP_WORKSPACE)

/* -- buffers and the JSON writer (buf.c) ------------------------------------------------------ */

struct buf {
    char *p;
    size_t len, cap;
};

int mtcp_buf_reserve(struct buf *b, size_t more);
void mtcp_buf_free(struct buf *b);
/* The memory of the i-th live buffer, for leaving it out of the image: 0 when there is none. */
int mtcp_buf_range(int i, uint64_t *lo, uint64_t *hi);
void mtcp_bufs_forget(void); /* a restored process: their memory was left out of the image */
int mtcp_put(struct buf *b, const void *s, size_t n);
int mtcp_puts(struct buf *b, const char *s);
int mtcp_put_i64(struct buf *b, int64_t v);
int mtcp_put_u64(struct buf *b, uint64_t u);
int mtcp_put_hex(struct buf *b, const void *data, size_t n);
int mtcp_put_str(struct buf *b, const char *s, size_t n); /* a JSON string of n bytes */
int mtcp_put_cstr(struct buf *b, const char *s);
int mtcp_key(struct buf *b, const char *k); /* "key": (after a comma where one is due) */
int mtcp_sep(struct buf *b);                /* a comma where one is due */
int mtcp_kv_i64(struct buf *b, const char *k, int64_t v);
int mtcp_kv_u64(struct buf *b, const char *k, uint64_t v);
int mtcp_kv_str(struct buf *b, const char *k, const char *v);
int mtcp_kv_raw(struct buf *b, const char *k, const char *v);

/* -- /proc (procfs.c) ------------------------------------------------------------------------- */

int mtcp_read_file(const char *path, struct buf *b);
int mtcp_readlink(const char *path, char *out, size_t cap);
int mtcp_list_numbers(const char *path, int *out, int max);
int64_t mtcp_stat_field(const char *stat, int n);

/* -- threads (threads.c) ---------------------------------------------------------------------- */

struct ctx {
    uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip;
};

/* What a thread records about itself at its capture point. */
struct slot {
    int tid;
    int parked; /* 1 once captured; 2: gone (ended before it stopped) */
    struct ctx ctx;
    uint64_t fs_base, gs_base, cs, ss, fs, gs;
    uint64_t sigmask, tid_address, robust_head, robust_len;
    uint64_t rseq_ptr, rseq_size;
    uint64_t alt_sp, alt_size;
    int alt_flags, nice;
    char comm[17];
    uint64_t affinity[16];
    int ncpus_words;
    unsigned char *xstate; /* 64-byte aligned, xstate_size bytes */
};

/* setjmp-like: records the callee-saved registers, the stack pointer after the return and the
 * return address; returns 0. A restored thread starts at that return address with rax = 1. */
int mtcp_capture(struct ctx *c) __attribute__((returns_twice));
/* What only the calling thread can read about itself, its XSAVE state included, into s. */
void mtcp_record_self(struct slot *s);
void mtcp_on_signal(int sig, siginfo_t *si, void *uc);
/* Signal every other thread and wait until each is held in the handler (or gone): 0, or -1. */
int mtcp_stop_threads(void);
void mtcp_release_threads(void);
/* A thread's record in image.json. */
int mtcp_put_thread(struct buf *b, struct slot *s);

/* -- the kernel's state (kernel.c) ------------------------------------------------------------ */

struct mtcp_kernel {
    int pid;
    int sig;
    int listen_fd;
    int manager_tid;
    int ready;
    char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    uint64_t xmask;
    uint32_t xsize;
    /* a checkpoint in progress */
    volatile int active;
    int go;     /* futex: 0 while threads are held */
    int parked; /* futex: count of captured threads */
    struct slot *slots;
    int nslots;
    struct slot manager;
    unsigned char *pool;
    size_t pool_len;
    unsigned char *codec; /* the compressor's buffers (CODEC_LEN) */
    int restarts;
    char err[600];
};
extern struct mtcp_kernel mtcp;

/* Record the failure (the first one wins); always returns -1. */
int mtcp_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int mtcp_fail_errno(const char *step, int e);

/* descriptors of the kernel itself, never part of the image */
void mtcp_own_add(int fd);
void mtcp_own_del(int fd);
int mtcp_is_own(int fd);
void mtcp_own_forget(void); /* a restored process: none of them is open */

static inline const char *errname(int e)
{
    const char *d = strerrordesc_np(e);
    return d ? d : "unknown error";
}

static inline long sys_futex(int *addr, int op, int val, const struct timespec *ts)
{
    return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

static inline int gettid_(void) { return (int)syscall(SYS_gettid); }

static inline double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* -- a checkpoint (checkpoint.c, image.c, writer.c) ------------------------------------------- */

/* What a request asks for, and what its checkpoint measured. */
struct request {
    int forked, level;
    int omit_fds[64], n_omit; /* left out of the image: the process makes them again */
    double frozen, total;
    uint64_t threads, raw, stored;
};

/* Everything a checkpoint records while threads are held, and what writing the pages needs
 * afterwards (in this process, or in a forked child from its copy of the memory). */
struct plan {
    struct buf img, tmp, recs, links, sm, vb, runs, crcs, idx;
    int nvmas;
    uint64_t pages;
};

/* 0: written; -1: failed (mtcp.err); 1: this is a restored process (the request is history). */
int mtcp_checkpoint(int conn, const char *dir, struct request *q);
int mtcp_put_image(struct plan *P, int dirfd, const struct request *q);
int mtcp_write_json(struct plan *P, int dirfd);
void mtcp_plan_free(struct plan *P);
int mtcp_open_out(int dirfd, const char *name);
void mtcp_close_out(int fd);
int mtcp_write_whole(int dirfd, const char *name, const void *p, size_t n);
long mtcp_fork_writer(struct plan *P, int dirfd, int level, unsigned char *codec, int *report_fd);
int mtcp_wait_writer(long pid, int fd, uint64_t *stored);

/* -- process state (process.c, signals.c) ----------------------------------------------------- */

int mtcp_put_process(struct buf *b, struct buf *tmp);
int mtcp_put_signals(struct buf *b, struct buf *tmp);

/* -- descriptors (fds.c, fd_kinds.c) ---------------------------------------------------------- */

enum { FD_DUP, FD_FILE, FD_DIR, FD_DEVICE, FD_PIPE, FD_STDIO, FD_TERMINAL, FD_LISTEN, FD_EVENTFD,
       FD_EPOLL, FD_DELETED, FD_MEMFD };

struct fdrec {
    int fd, flags, cloexec, kind, of, stype;
    unsigned mode, uid, gid; /* a deleted file's; a memfd's seals in mode */
    int64_t pos, size;
    uint64_t ino; /* a pipe's inode; an eventfd's count */
    size_t link; /* offset of the link text in the links buffer */
    size_t path; /* offset of the path (listening socket: its address; epoll: its watches) */
    size_t pathlen;
};

int mtcp_put_fds(struct buf *b, struct buf *recs, struct buf *links, struct buf *tmp,
                 const struct request *q, int dirfd);
/* e->kind of the descriptor e->fd, whose link is link (ll bytes) and fdinfo info: 0, or -1 when
 * mtcp cannot restore what it is (a listening socket's address goes to links) */
int mtcp_fd_kind(struct fdrec *e, const char *link, size_t ll, const char *info,
                 struct buf *links);
/* pipes whole here, or at 0-2 the restarter's: 0, or -1 for a pipe to another process */
int mtcp_fd_pipes(struct fdrec *r, int m, const struct buf *links);
/* the unread content of a pipe (read end), in the pipe's record */
int mtcp_put_pipe_data(struct buf *b, int fd, struct buf *tmp);
/* the content of the deleted file or memfd at fd (size bytes), as the image's file `name` */
int mtcp_put_file_data(int dirfd, const char *name, int fd, int64_t size);

/* -- memory (memory.c, vmas.c) ---------------------------------------------------------------- */

struct vma {
    uint64_t start, end, offset, inode;
    char perms[5];
    const char *path;  /* into the smaps buffer, NUL-terminated there */
    const char *flags; /* "rd wr ..." */
    int kind;
};

enum { K_ANON, K_FILE, K_SHARED_FILE, K_SHMEM, K_VDSO, K_SKIP, K_VVAR, K_ANON_COPY };

int mtcp_has_flag(const char *flags, const char *f);
int mtcp_ends_with(const char *s, const char *t);
/* The mappings (the kernel's own memory cut out), each classified, and the runs of pages each
 * must save, into the plan. */
int mtcp_scan_memory(struct plan *P, int forked);
/* The mappings' records, and the shared memory objects (whose content a fork would share, not
 * copy: written now). */
int mtcp_put_vmas(struct plan *P, int dirfd);

/* -- pages.img (pages.c, compress.c) ---------------------------------------------------------- */

struct page_writer {
    int fd, mem_fd;
    uint64_t pos;    /* bytes of pages.img written, as stored */
    uint64_t raw;    /* bytes of the page stream (what an uncompressed pages.img holds) */
    uint64_t synced; /* write-back started below this offset */
    int writeback;   /* 0 once the file system said it cannot */
    struct buf *crcs; /* uint32 per CHUNK of pages.img as stored */
    unsigned char *bounce;
    int level; /* lzpack level; 0: uncompressed */
    unsigned char *frame, *packed; /* the frame being filled; its compressed form */
    size_t fill;
    void *ws;
};

/* pages.img and pages.crc from the runs of the plan, read from this process's memory. */
int mtcp_write_pages(struct plan *P, int dirfd, int level, unsigned char *codec,
                     uint64_t *stored);
int mtcp_store(struct page_writer *w, const unsigned char *p, size_t n);
void mtcp_codec_attach(struct page_writer *w, unsigned char *codec);
int mtcp_emit_pages(struct page_writer *w, const unsigned char *p, size_t n);
int mtcp_flush_frame(struct page_writer *w);

/* -- the control socket (control.c) ----------------------------------------------------------- */

int mtcp_make_socket(void);
void *mtcp_manager_main(void *arg);
void mtcp_progress(int conn, const char *msg);

/* -- after a restore (resume.c) --------------------------------------------------------------- */

/* The restored manager: finish what the restart program left, serve again, let threads go. */
void mtcp_back_from_restart(void);
/* A restored thread is back in the kernel's code (off the restart program's). */
void mtcp_resume_thread_back(void);
uint64_t mtcp_resume_address(void);

#pragma GCC visibility pop

#endif
