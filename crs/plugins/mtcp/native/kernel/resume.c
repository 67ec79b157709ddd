/* mtcp kernel: after a restore. The kernel keeps the resume record (../resume.h) that the
 * restart program fills in a restored process; the restored manager waits until every thread is
 * back in the kernel's code, unmaps the restart program, gives /proc/PID/exe back to the
 * program, forgets what it had open, serves again, tells opal-restart that the process runs,
 * and releases the threads. */
#include "kernel.h"

#include <linux/futex.h>
#include <sys/mman.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "../resume.h"

/* The resume record (resume.h), filled by the restart program in a restored process. */
static struct mtcp_resume R = {.magic = RESUME_MAGIC};

/* Every capability of the calling thread goes (capabilities are per thread). */
static void drop_caps(void)
{
    struct __user_cap_header_struct head = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct none[2] = {{0, 0, 0}, {0, 0, 0}};
    if (syscall(SYS_capset, &head, none) < 0) {
        char msg[96];
        int n = snprintf(msg, sizeof msg, "mtcp: dropping capabilities: %s\n", errname(errno));
        (void)fdio_write_all(2, msg, (size_t)n);
    }
}

void mtcp_resume_thread_back(void)
{
    if (R.drop_caps)
        drop_caps();
    __atomic_add_fetch(&R.back, 1, __ATOMIC_ACQ_REL);
    sys_futex(&R.back, FUTEX_WAKE_PRIVATE, 1, NULL);
}

uint64_t mtcp_resume_address(void) { return (uint64_t)&R; }

/* Restored by the restart program: once every thread is back here, its memory can go. */
static void finish_restart_program(void)
{
    for (int b; (b = __atomic_load_n(&R.back, __ATOMIC_ACQUIRE)) < R.expect;)
        sys_futex(&R.back, FUTEX_WAIT_PRIVATE, b, NULL);
    if (munmap((void *)R.area, R.area_len) < 0) {
        char msg[96];
        int n = snprintf(msg, sizeof msg, "mtcp: unmapping the restart program: %s\n", errname(errno));
        (void)fdio_write_all(2, msg, (size_t)n);
    }
    if (R.exe_fd >= 0) { /* /proc/PID/exe: the program's again, now that the restarter is gone */
        R.mm_map[11] = (uint64_t)R.auxv;
        R.mm_map[12] = (R.mm_map[12] & 0xffffffffULL) | (uint64_t)(uint32_t)R.exe_fd << 32;
        (void)prctl(PR_SET_MM, PR_SET_MM_MAP, R.mm_map, sizeof R.mm_map, 0); /* cosmetic */
        close((int)R.exe_fd);
    }
    if (R.drop_caps)
        drop_caps();
}

/* After a restore: this is the restored process. Everything the kernel had open is gone. */
void mtcp_back_from_restart(void)
{
    struct mtcp_resume r = R;
    if (r.area_len)
        finish_restart_program();
    R = (struct mtcp_resume){.magic = RESUME_MAGIC}; /* the next image starts clean */
    mtcp.restarts++;
    mtcp_own_forget();
    mtcp_bufs_forget();
    mtcp.pool = NULL;
    mtcp.codec = NULL;
    mtcp.slots = NULL;
    mtcp.nslots = 0;
    mtcp.listen_fd = -1;
    mtcp.err[0] = 0;
    if (mtcp_make_socket() < 0) {
        char msg[700];
        int n = snprintf(msg, sizeof msg, "mtcp: process %d restored, but %s\n", mtcp.pid,
                         mtcp.err);
        (void)fdio_write_all(2, msg, (size_t)n);
    }
    if (r.area_len) { /* opal-restart waits for this word: the process runs */
        (void)fdio_write_all((int)r.err_fd, "OK", 2);
        close((int)r.err_fd);
        if (r.stop)
            kill(mtcp.pid, SIGSTOP);
    }
    mtcp_release_threads();
}
