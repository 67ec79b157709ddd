/* finalize_stack.c: MPICH's stack of finalize callbacks, emptied after every teardown.
 *
 * MPICH (5.0.2, and its main branch) keeps what its finalize must call on a fixed stack of 256
 * (init_util.c: fstack, fstack_sp). A finalize calls each callback and clears it, but never moves
 * the stack pointer back, and every new session pushes again one callback for each kind of
 * object it then allocates. Plain MPICH aborts ("overflow in finalize stack!") after some 25-55
 * MPI_Session_init / MPI_Session_finalize cycles of a process; the layer makes one at every
 * checkpoint, so a job would die at about its 30th. After a teardown, when every callback on the
 * stack has been called, the layer sets the pointer back to 0: the next session reuses the slots.
 *
 * MPICH does not export the stack. It is found once, in libmpi's code, from the one function that
 * prints the overflow message: the RIP-relative load of the pointer compared with 255 right
 * before a jump to that message, and the first RIP-relative address taken after it (the stack).
 * Everything found must agree (in libmpi's writable data, a pointer of at most 256, every slot
 * below it cleared) or the layer leaves MPICH alone; PYCRS_CRCP_VERBOSE says which. */
#include "layer.h"

#include <link.h>

#define OVERFLOW_MESSAGE "overflow in finalize stack"
#define STACK_SLOTS 256
struct slot { void *f; void *extra; int priority; }; /* MPICH's Finalize_func_t */

struct segment { uintptr_t start, end; int flags; };
struct libmpi { uintptr_t base; struct segment seg[16]; int nseg; };

static int *stack_pointer;      /* fstack_sp */
static struct slot *stack_base; /* fstack */
static int searched;

static int find_libmpi(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct libmpi *lib = data;
    if (!info->dlpi_name || !strstr(info->dlpi_name, "libmpi.so.12")) return 0;
    lib->base = info->dlpi_addr;
    for (int i = 0; i < info->dlpi_phnum && lib->nseg < 16; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) continue;
        lib->seg[lib->nseg++] = (struct segment){ info->dlpi_addr + ph->p_vaddr,
                                                  info->dlpi_addr + ph->p_vaddr + ph->p_memsz,
                                                  (int)ph->p_flags };
    }
    return 1;
}

static int within_segment(const struct libmpi *lib, uintptr_t a, size_t len, int want, int refuse)
{
    for (int i = 0; i < lib->nseg; i++)
        if (a >= lib->seg[i].start && a + len <= lib->seg[i].end)
            return (lib->seg[i].flags & want) == want && !(lib->seg[i].flags & refuse);
    return 0;
}

/* the target of a RIP-relative operand whose 32-bit displacement is at `disp` and whose
 * instruction ends at `next` */
static uintptr_t rip_target(const unsigned char *disp, const unsigned char *next)
{
    int32_t d;
    memcpy(&d, disp, 4);
    return (uintptr_t)next + d;
}
static int rip_modrm(unsigned char m) { return (m & 0xC7) == 0x05; }

/* `lea MSG(%rip), reg` of the overflow message, in executable code */
static const unsigned char *message_reference(const struct libmpi *lib, uintptr_t msg)
{
    for (int i = 0; i < lib->nseg; i++) {
        if (!(lib->seg[i].flags & PF_X)) continue;
        const unsigned char *p = (const unsigned char *)lib->seg[i].start;
        const unsigned char *end = (const unsigned char *)lib->seg[i].end - 7;
        for (; p < end; p++)
            if ((p[0] & 0xFB) == 0x48 && p[1] == 0x8D && rip_modrm(p[2]) &&
                rip_target(p + 3, p + 7) == msg)
                return p;
    }
    return NULL;
}

/* before `to` (at most 256 bytes): `mov SP(%rip), reg; cmp $0xff, reg; jg to`; returns SP */
static int *pointer_checked_before(const unsigned char *to, const unsigned char **after)
{
    for (const unsigned char *p = to - 16; p > to - 256; p--) {
        if (p[0] != 0x8B || !rip_modrm(p[1])) continue;
        const unsigned char *c = p + 6, *j;
        int reg = (p[1] >> 3) & 7;
        if (reg == 0 && c[0] == 0x3D && !memcmp(c + 1, "\xff\0\0\0", 4)) j = c + 5;
        else if (c[0] == 0x81 && c[1] == (0xF8 | reg) && !memcmp(c + 2, "\xff\0\0\0", 4)) j = c + 6;
        else continue;
        const unsigned char *target = NULL;
        if (j[0] == 0x7F) target = j + 2 + (int8_t)j[1];
        else if (j[0] == 0x0F && j[1] == 0x8F) target = (const unsigned char *)rip_target(j + 2, j + 6);
        if (target != to) continue;
        *after = j;
        return (int *)rip_target(p + 2, p + 6);
    }
    return NULL;
}

/* the first `lea X(%rip), reg` within 64 bytes after `from`: the stack */
static struct slot *stack_after(const unsigned char *from)
{
    for (const unsigned char *p = from; p < from + 64; p++)
        if ((p[0] & 0xFB) == 0x48 && p[1] == 0x8D && rip_modrm(p[2]))
            return (struct slot *)rip_target(p + 3, p + 7);
    return NULL;
}

static void search(void)
{
    struct libmpi lib = {0};
    searched = 1;
    if (!dl_iterate_phdr(find_libmpi, &lib) || !lib.nseg) return;
    uintptr_t msg = 0;
    for (int i = 0; i < lib.nseg && !msg; i++) {
        if (lib.seg[i].flags & (PF_X | PF_W)) continue;
        void *m = memmem((void *)lib.seg[i].start, lib.seg[i].end - lib.seg[i].start,
                         OVERFLOW_MESSAGE, sizeof OVERFLOW_MESSAGE - 1);
        msg = (uintptr_t)m;
    }
    const unsigned char *ref = msg ? message_reference(&lib, msg) : NULL;
    const unsigned char *after = NULL;
    int *sp = ref ? pointer_checked_before(ref, &after) : NULL;
    struct slot *stack = sp ? stack_after(after) : NULL;
    if (!stack || !within_segment(&lib, (uintptr_t)sp, sizeof *sp, PF_R | PF_W, PF_X) ||
        !within_segment(&lib, (uintptr_t)stack, STACK_SLOTS * sizeof *stack, PF_R | PF_W, PF_X)) {
        if (verbose) fprintf(stderr, "crcp: MPICH's finalize stack not found in libmpi: a job may "
                             "abort after some dozens of checkpoints\n");
        return;
    }
    stack_pointer = sp;
    stack_base = stack;
}

/* After MPICH finalized every session: its finalize stack emptied, if every callback on it has
 * been called (an application's own session still open keeps it as it is). */
void finalize_stack_empty(void)
{
    if (!searched) search();
    if (!stack_pointer) return;
    int n = *stack_pointer;
    if (n < 0 || n > STACK_SLOTS) return;
    for (int i = 0; i < n; i++)
        if (stack_base[i].f) {
            if (verbose) fprintf(stderr, "crcp: MPICH's finalize stack kept (a callback of %d "
                                 "not called yet: a session still open)\n", n);
            return;
        }
    *stack_pointer = 0;
}
