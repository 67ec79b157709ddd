/* Directory operations that Python's os module does not offer: an atomic exchange of two paths
 * and a rename that refuses to replace. Each returns 0 on success or -errno, so the Python side
 * can raise OSError naming the cause. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static int pycrs_renameat2(const char *from, const char *to, unsigned int flags)
{
    /* The raw system call: older glibc has no renameat2 wrapper. */
    if (syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, flags) != 0)
        return -errno;
    return 0;
}

int pycrs_rename_exchange(const char *a, const char *b)
{
    return pycrs_renameat2(a, b, RENAME_EXCHANGE);
}

int pycrs_rename_noreplace(const char *from, const char *to)
{
    return pycrs_renameat2(from, to, RENAME_NOREPLACE);
}
