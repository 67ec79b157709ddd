/* File mappings (argv[1] is a work directory):
 *   private.bin - 8 pages mapped MAP_PRIVATE, pages 1, 3 and 6 written after mapping (copy on
 *                 write): the mapping shows the writes, the file never does, the other pages
 *                 still show the file, and the mapping still names the file;
 *   shared.bin  - 8 pages mapped MAP_SHARED and written through the mapping: after the restart
 *                 a write through the mapping reaches the file and a pwrite to the file shows
 *                 in the mapping. */
#include "common.h"

#include <sys/mman.h>

#define PAGES 8
#define PG 4096
#define SIZE (PAGES * PG)

static int make_file(const char *dir, const char *name, uint64_t seed, char *path, size_t n)
{
    uint8_t buf[SIZE];
    snprintf(path, n, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        DIE(path);
    fill_pattern(buf, SIZE, seed);
    if (write(fd, buf, SIZE) != SIZE)
        DIE("write");
    return fd;
}

int main(int argc, char **argv)
{
    char ppath[512], spath[512], perms[5] = "", mpath[512] = "";
    uint8_t page[PG];

    common_init();
    if (argc < 2)
        DIE("usage: mem_file WORKDIR");
    int pfd = make_file(argv[1], "private.bin", 10, ppath, sizeof ppath);
    int sfd = make_file(argv[1], "shared.bin", 20, spath, sizeof spath);
    uint8_t *priv = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, pfd, 0);
    uint8_t *shared = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
    if (priv == MAP_FAILED || shared == MAP_FAILED)
        DIE("mmap");
    close(pfd);
    for (int p = 1; p < PAGES; p += 2 + (p == 3))
        fill_pattern(priv + p * PG, PG, 100 + p); /* pages 1, 3, 6 */
    fill_pattern(shared, SIZE, 30);

    if (sabotage())
        shared[SIZE / 2] ^= 1;
    ready();
    wait_term();

    for (int p = 0; p < PAGES; p++) {
        int cow = p == 1 || p == 3 || p == 6;
        uint8_t want[PG];
        if (cow) {
            fill_pattern(want, PG, 100 + p);
        } else {
            uint8_t file[SIZE];
            fill_pattern(file, SIZE, 10);
            memcpy(want, file + p * PG, PG);
        }
        CHECK(memcmp(priv + p * PG, want, PG) == 0, "private file mapping: page %d (%s) differs",
              p, cow ? "written" : "as in the file");
    }
    int rfd = open(ppath, O_RDONLY);
    uint8_t file[SIZE];
    CHECK(rfd >= 0 && read(rfd, file, SIZE) == SIZE && check_pattern(file, SIZE, 10) < 0,
          "private.bin changed on disk: private writes leaked into the file");
    CHECK(maps_lookup(priv, perms, mpath, sizeof mpath) && strcmp(perms, "rw-p") == 0 &&
              strcmp(mpath, ppath) == 0,
          "the private mapping is not a rw-p mapping of %s any more (%s %s)", ppath, perms, mpath);

    CHECK(check_pattern(shared, SIZE, 30) < 0, "shared file mapping: content changed");
    CHECK(pread(sfd, file, SIZE, 0) == SIZE && check_pattern(file, SIZE, 30) < 0,
          "shared.bin does not hold what was written through the mapping");
    CHECK(maps_lookup(shared, perms, mpath, sizeof mpath) && strcmp(perms, "rw-s") == 0 &&
              strcmp(mpath, spath) == 0,
          "the shared mapping is not a rw-s mapping of %s any more", spath);
    shared[5 * PG + 7] = 0xAB;
    CHECK(pread(sfd, page, 1, 5 * PG + 7) == 1 && page[0] == 0xAB,
          "a write through the shared mapping does not reach shared.bin");
    page[0] = 0xCD;
    CHECK(pwrite(sfd, page, 1, 2 * PG + 3) == 1 && shared[2 * PG + 3] == 0xCD,
          "a write to shared.bin does not show in the shared mapping");
    return finish();
}
