/* table.c: the growable tables of the layer's object kinds (handles.h: struct table). A freed
 * slot is used again, as MPICH uses its handles again; the application's handle of a slot is
 * made from it (LAYER_HANDLE), so a translation is an index. */
#include "layer.h"

int table_add(struct table *t)
{
    int s = -1;
    if (t->live < t->n)
        for (int k = 0; k < t->n; k++) {
            int i = (t->hint + k) % t->n;
            if (!*(int *)(t->e + (size_t)i * t->size)) { s = i; break; }
        }
    if (s < 0) {
        if (t->n == t->cap) {
            int cap = t->cap ? 2 * t->cap : 64;
            char *e = realloc(t->e, (size_t)cap * t->size);
            if (!e) { fprintf(stderr, "crcp: out of memory\n"); abort(); }
            t->e = e;
            t->cap = cap;
        }
        s = t->n++;
    }
    memset(t->e + (size_t)s * t->size, 0, t->size);
    *(int *)(t->e + (size_t)s * t->size) = 1;
    t->live++;
    t->hint = s + 1;
    return s;
}

void table_del(struct table *t, int slot)
{
    *(int *)(t->e + (size_t)slot * t->size) = 0;
    t->live--;
    while (t->n && !*(int *)(t->e + (size_t)(t->n - 1) * t->size)) t->n--;
}
