/* Process attributes: the working directory (WORKDIR/sub dir, argv[1] is the work directory),
 * umask 027, RLIMIT_NOFILE with its soft limit lowered to 200 and RLIMIT_CORE set to a soft and
 * hard value of its own. After the restart getcwd, umask and getrlimit give the same values, and
 * they still act: a relative open lands in the directory with the umask applied, and opening
 * descriptors fails with EMFILE at the soft limit. */
#include "common.h"

#include <sys/resource.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
    char dir[600], cwd[600];
    struct rlimit nofile, core, cur;
    common_init();
    if (argc < 2)
        DIE("usage: proc_state WORKDIR");
    snprintf(dir, sizeof dir, "%s/sub dir", argv[1]);
    if (mkdir(dir, 0755) != 0 || chdir(dir) != 0 || !getcwd(dir, sizeof dir))
        DIE("chdir");
    umask(027);
    getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = 200;
    getrlimit(RLIMIT_CORE, &core);
    if (core.rlim_max == RLIM_INFINITY)
        core = (struct rlimit){12345 * 512, 54321 * 512};
    else
        core.rlim_cur = core.rlim_max / 2;
    if (setrlimit(RLIMIT_NOFILE, &nofile) || setrlimit(RLIMIT_CORE, &core))
        DIE("setrlimit");

    if (sabotage())
        umask(022);
    ready();
    wait_term();

    CHECK(getcwd(cwd, sizeof cwd) && strcmp(cwd, dir) == 0, "cwd is %s, expected %s", cwd, dir);
    mode_t m = umask(027);
    CHECK(m == 027, "umask %03o, expected 027", m);
    getrlimit(RLIMIT_NOFILE, &cur);
    CHECK(cur.rlim_cur == nofile.rlim_cur && cur.rlim_max == nofile.rlim_max,
          "RLIMIT_NOFILE %lu/%lu, expected %lu/%lu", (unsigned long)cur.rlim_cur,
          (unsigned long)cur.rlim_max, (unsigned long)nofile.rlim_cur,
          (unsigned long)nofile.rlim_max);
    getrlimit(RLIMIT_CORE, &cur);
    CHECK(cur.rlim_cur == core.rlim_cur && cur.rlim_max == core.rlim_max,
          "RLIMIT_CORE %lu/%lu, expected %lu/%lu", (unsigned long)cur.rlim_cur,
          (unsigned long)cur.rlim_max, (unsigned long)core.rlim_cur, (unsigned long)core.rlim_max);

    int fd = open("made-here", O_CREAT | O_WRONLY, 0666);
    struct stat st;
    char there[700];
    snprintf(there, sizeof there, "%s/made-here", dir);
    CHECK(fd >= 0 && stat(there, &st) == 0 && (st.st_mode & 0777) == 0640,
          "a relative open did not create %s with mode 0640", there);
    int last = -1, err = 0;
    for (int i = 0; i < 300; i++) {
        int f = open("/dev/null", O_RDONLY);
        if (f < 0) {
            err = errno;
            break;
        }
        last = f;
    }
    CHECK(err == EMFILE && last == 199, "the descriptor limit is not enforced at 200 (last %d, %s)",
          last, strerror(err));
    return finish();
}
