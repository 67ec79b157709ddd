/* The mtcp kernel's resume record: the one piece of memory the kernel and the restart program
 * share. The kernel keeps it (resume.c) and writes its address in image.json ("mtcp_resume");
 * in a restored process the restart program fills it before it lets the threads go (its own
 * memory, which it cannot unmap while it runs, the descriptors it leaves behind, how many
 * threads must be back in the kernel's code before that memory may go), and the restored
 * manager thread finishes what it says. All zero but the magic in a process that runs as it
 * was started, or that the ptrace restorer rebuilt. */
#ifndef PYCRS_MTCP_RESUME_H
#define PYCRS_MTCP_RESUME_H

#include <stdint.h>

#define RESUME_MAGIC 0x4d5553527063746dULL /* "mtcpRSUM" */

struct mtcp_resume {
    uint64_t magic, area, area_len;
    int64_t exe_fd, err_fd, expect, stop;
    /* drop_caps: the restart program held capabilities (in a user namespace of its own) to
     * choose thread IDs; each restored thread drops them as it comes back, the manager once it
     * has set the executable again */
    int32_t back, drop_caps;
    /* struct prctl_mm_map as the program set it, and the auxv it points to: set again with the
     * executable once the program's own file is no longer mapped (the kernel insists) */
    uint64_t mm_map[13], auxv[64];
};

#endif
