/* A file deleted while open (argv[1] is a work directory): gone.bin, 100 KiB, open O_RDWR at
 * fd 20 with offset 777 (and O_NOFOLLOW, as shm_open opens, e.g. MPICH's shared memory),
 * unlinked, and also mapped MAP_SHARED. After the restart the descriptor
 * is still a deleted file (no link) with the same size, content and offset, the mapping and the
 * descriptor are still the same file, and the name has not come back in the directory. */
#include "common.h"

#include <sys/mman.h>
#include <sys/stat.h>

#define SIZE (100 * 1024)

int main(int argc, char **argv)
{
    char path[512];
    static uint8_t buf[SIZE];
    common_init();
    if (argc < 2)
        DIE("usage: fd_deleted WORKDIR");
    snprintf(path, sizeof path, "%s/gone.bin", argv[1]);
    int f = open(path, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
    if (f < 0 || dup2(f, 20) != 20)
        DIE(path);
    close(f);
    fill_pattern(buf, SIZE, 5);
    if (write(20, buf, SIZE) != SIZE || lseek(20, 777, SEEK_SET) != 777)
        DIE("write");
    uint8_t *map = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, 20, 0);
    if (map == MAP_FAILED)
        DIE("mmap");
    if (unlink(path) != 0)
        DIE("unlink");

    if (sabotage() && pwrite(20, "x", 1, 50000) != 1)
        DIE("pwrite");
    ready();
    wait_term();

    struct stat st;
    CHECK(fstat(20, &st) == 0 && S_ISREG(st.st_mode), "fd 20 is not a regular file");
    CHECK(st.st_nlink == 0, "the deleted file has %lu links", (unsigned long)st.st_nlink);
    CHECK(st.st_size == SIZE, "the deleted file has %ld bytes, expected %d", (long)st.st_size, SIZE);
    CHECK(lseek(20, 0, SEEK_CUR) == 777, "offset %ld, expected 777", (long)lseek(20, 0, SEEK_CUR));
    CHECK(pread(20, buf, SIZE, 0) == SIZE && check_pattern(buf, SIZE, 5) < 0,
          "the deleted file's content changed");
    CHECK(check_pattern(map, SIZE, 5) < 0, "the mapping of the deleted file changed");
    map[4096] ^= 0xff;
    uint8_t b;
    CHECK(pread(20, &b, 1, 4096) == 1 && b == map[4096],
          "the mapping and the descriptor are no longer the same deleted file");
    CHECK(access(path, F_OK) != 0, "%s exists again", path);
    return finish();
}
