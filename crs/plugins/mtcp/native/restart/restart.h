/* pycrs-mtcp-restart: the restart program of the mtcp component. This header is what its units
 * share; read it first.
 *
 * A static program with no libc, no ptrace and no Python, linked at a fixed address
 * (RESTART_AREA, 16 TiB) that a process image does not use. opal-restart prepares everything
 * that needs a real library (descriptors, the PID through clone3's set_tid, cwd, limits, the
 * session), writes a plan (crs/plugins/mtcp/restart.py: a flat array of 64-bit words) and execs
 * this program in the process being restored, with the plan's descriptor as its argument.
 *
 * The program then becomes the process in the image: it moves to a stack of its own, unmaps
 * everything outside its area (the stack, vDSO and vvar the kernel gave it), maps the vDSO and
 * every mapping of the image at its address, reads the pages straight into place (checking a
 * CRC-32C per MiB as it goes, or decompressing lzp1 frames), sets protections, mm fields, signal
 * actions and timers, then creates every thread with its TID and lets each one jump to the
 * capture point the kernel recorded for it (callee-saved registers, stack pointer, return
 * address, 1 as the capture's result), with every signal blocked: a thread held in the kernel's
 * signal handler gets its own mask back from its signal frame when it returns from the handler.
 *
 * The program cannot unmap itself while it runs, so it leaves that to the restored kernel: it
 * fills the kernel's resume record (struct mtcp_resume in resume.h, at the address image.json
 * gives) with its area, the descriptors to close and the number of threads to wait for; the
 * restored manager thread waits until every thread is back in the kernel's code, unmaps the
 * area, and tells opal-restart on the error pipe that the process runs ("OK").
 *
 * A failure before the threads are let go is written to the error pipe as "what:errno" and the
 * program exits 127. x86-64 Linux only.
 *
 * The units, one concern each:
 *   main.c     the entry point: the plan mapped, the area cleared, everything else called in
 *              order; the failure report
 *   state.c    the image's mappings, protections, mm fields, signal actions and timers
 *   pages.c    pages.img into place: raw pages checked by a second thread, or lzp1 frames
 *   threads.c  every thread made with its TID and sent to its capture point
 *   libc.c     memcpy and memset, which the compiler may call (there is no libc)
 * Functions and data shared between units start with rs_. The program is built by setup.py
 * (RESTART_FLAGS): static, -nostdlib, linked at 16 TiB.
 */
#ifndef PYCRS_MTCP_RESTART_H
#define PYCRS_MTCP_RESTART_H

#include <stddef.h>
#include <stdint.h>

#include "crc32c.h"
#include "lzpack.h"
#include "stub.h"

#include "../resume.h"

#define PAGE 4096UL
#define STACK_SIZE (256UL << 10)
#define THREAD_STACK (64UL << 10)
#define PLAN_MAGIC 0x3150527372637970ULL   /* "pycrsRP1" (restart.py) */
#define TOP 0x7ffffffff000UL
#define THREAD_FLAGS (0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000) /* VM FS FILES SIGHAND THREAD SYSVSEM */
#define CLONE_CHILD_CLEARTID 0x00200000
#define CLONE_CHILD_SETTID 0x01000000
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_PRIVATE 128

/* system call numbers and flags (x86-64), as in the kernel's uapi headers */
enum {
    NR_read = 0, NR_write = 1, NR_close = 3, NR_fstat = 5, NR_mmap = 9, NR_mprotect = 10,
    NR_munmap = 11, NR_rt_sigaction = 13, NR_pread64 = 17, NR_madvise = 28, NR_setitimer = 38,
    NR_exit = 60, NR_prctl = 157, NR_arch_prctl = 158, NR_sched_setaffinity = 203,
    NR_set_tid_address = 218, NR_timer_create = 222, NR_timer_settime = 223,
    NR_exit_group = 231, NR_setpriority = 141, NR_personality = 135, NR_mlock = 149,
    NR_sigaltstack = 131, NR_set_robust_list = 273, NR_rseq = 334, NR_clone3 = 435,
    NR_futex = 202, NR_fcntl = 72, NR_nanosleep = 35,
};
#define PROT_RW 3
#define MAP_PRIVATE 0x02
#define MAP_ANONYMOUS 0x20
#define MAP_FIXED 0x10
#define MAP_FIXED_NOREPLACE 0x100000
#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define ARCH_MAP_VDSO_64 0x2003
#define PR_SET_NAME 15
#define PR_SET_MM 35
#define PR_SET_MM_MAP 14
#define PR_TIMER_CREATE_RESTORE_IDS 77
#define SS_DISABLE 2
#define EINTR 4
#define EEXIST 17
#define EINVAL 22
#define EIO 5
#define ENOMEM 12
#define EPROTO 71
#define EBADMSG 74

typedef uint64_t u64;
typedef int64_t i64;

/* -- the plan (layout written by restart.py; every field is 64 bits) ------------------------ */

struct plan {
    u64 magic, size;
    i64 pid, err_fd, pages_fd, codec; /* codec: 0 raw pages, 1 lzp1 frames */
    u64 pages_size, chunk, ncrcs, crcs;       /* CRC-32C per chunk of pages.img, at offset crcs */
    u64 vdso_base, resume, stop, personality;
    u64 area, area_len, scratch, scratch_len;  /* our own area, and free room inside it */
    i64 exe_fd;
    u64 mm[11], auxv, auxv_len;
    u64 nvmas, vmas, nruns, runs, sigactions, itimers, ntimers, timers, nthreads, threads;
    u64 nclose, close;     /* descriptors of ours to close before the threads run */
    u64 ncloexec, cloexec; /* the process's close-on-exec descriptors (our exec kept them) */
    u64 drop_caps;         /* in a user namespace of opal-restart's: the restored threads
                            * drop the capabilities we chose their IDs with (resume.h) */
};

struct plan_vma {
    u64 start, end, prot_load, prot, flags;
    i64 fd;
    u64 offset, nadvice, advice[4], lock;
};

struct plan_timer {
    i64 id, clockid, signo, notify, target, value, interval[2], remaining[2];
};

struct plan_thread {
    i64 tid;
    u64 fs_base, gs_base, tid_address, robust_head, robust_len;
    u64 alt_sp, alt_flags, alt_size, rseq_ptr, rseq_size, rseq_sig;
    u64 comm[2];
    u64 naffinity, affinity[16];
    i64 nice, has_nice;
    u64 rbx, rbp, r12, r13, r14, r15, rsp, rip; /* the capture point */
    u64 xstate, xstate_len;                     /* offset in the plan (64-byte aligned) */
};

#define sys stub_syscall /* sys(NR, args...), as everywhere in this program */

/* -- main.c -------------------------------------------------------------------------------- */

extern const struct plan *rs_plan; /* mapped once, read only */
/* "what:errno" on the error pipe, then exit 127. */
void rs_die(const char *what, long err) __attribute__((noreturn));
/* r, unless it is a failed system call's -errno: then rs_die(what, r). */
long rs_must(long r, const char *what);

/* -- pages.c ------------------------------------------------------------------------------- */

/* Where the next logical page bytes go: a cursor over the image's runs (address order). */
struct cursor {
    const u64 *runs; /* (address, pages) pairs */
    u64 nruns, i, off;
};

/* The CRC of the pages.img bytes seen so far, checked at every chunk boundary. */
struct check {
    const uint32_t *crcs;
    u64 ncrcs, chunk, pos;
    uint32_t crc;
};

/* Raw pages straight into place, checked by a second thread (its stack given) behind the reads. */
void rs_load_raw(struct cursor *c, struct check *k, unsigned char *checker_stack);
/* lzp1 frames, read a CRC chunk at a time into buffers (2 frames and a bound), decompressed. */
void rs_load_compressed(struct cursor *c, struct check *k, unsigned char *buffers);

/* -- threads.c ----------------------------------------------------------------------------- */

/* clone3 for a thread: the child runs fn(arg) on the new stack and never returns. */
long rs_clone3_thread(void *args, size_t size, void (*fn)(const void *), const void *arg);
/* Per-thread kernel state, then the jump to the capture point. Runs in the thread itself. */
void rs_become(const struct plan_thread *t) __attribute__((noreturn));
/* A thread with its TID, on the given stack, sent to rs_become. */
void rs_start_thread(const struct plan_thread *t, unsigned char *stack);

/* -- state.c ------------------------------------------------------------------------------- */

void rs_map_memory(void);
void rs_protect_memory(void);
/* mm fields, auxv, personality, signal actions, interval timers; the executable is left to the
 * restored kernel (in r) */
void rs_process_state(struct mtcp_resume *r);
/* POSIX timers, with their IDs, once their target threads exist */
void rs_posix_timers(void);

#endif
