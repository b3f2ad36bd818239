/* planner.c - greedy-by-size arena planning (see planner.h). */
#include "runtime/planner.h"

#include <stdint.h>
#include <stdlib.h>

static size_t align_up(size_t v) {
    return (v + MOPT_ARENA_ALIGN - 1) & ~(size_t)(MOPT_ARENA_ALIGN - 1);
}

/* qsort has no context argument: sort an index array carrying the keys. */
typedef struct key {
    size_t size;
    int first;
    int index;
} key;

static int by_size_desc(const void *pa, const void *pb) {
    const key *a = pa, *b = pb;
    if (a->size != b->size) return a->size > b->size ? -1 : 1;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

typedef struct span {
    size_t begin, end;
} span;

static int by_begin(const void *pa, const void *pb) {
    const span *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    return a->end < b->end ? -1 : a->end > b->end;
}

mopt_status mopt_plan_arena(mopt_plan_buf *bufs, int n, size_t *arena_bytes) {
    *arena_bytes = MOPT_ARENA_ALIGN;
    if (n <= 0) return MOPT_OK;
    key *keys = malloc(sizeof *keys * (size_t)n);
    int *placed = malloc(sizeof *placed * (size_t)n);
    span *busy = malloc(sizeof *busy * (size_t)n);
    if (!keys || !placed || !busy) {
        free(keys);
        free(placed);
        free(busy);
        return MOPT_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) keys[i] = (key){align_up(bufs[i].size), bufs[i].first, i};
    qsort(keys, (size_t)n, sizeof *keys, by_size_desc);
    size_t total = 0;
    int n_placed = 0;
    for (int k = 0; k < n; k++) {
        mopt_plan_buf *b = &bufs[keys[k].index];
        size_t size = keys[k].size;
        /* Byte ranges of already placed buffers alive at the same time. */
        int nb = 0;
        for (int p = 0; p < n_placed; p++) {
            const mopt_plan_buf *o = &bufs[placed[p]];
            if (o->first <= b->last && b->first <= o->last)
                busy[nb++] = (span){o->offset, o->offset + align_up(o->size)};
        }
        qsort(busy, (size_t)nb, sizeof *busy, by_begin);
        size_t off = 0;
        for (int s = 0; s < nb; s++) {
            if (busy[s].begin >= off + size) break; /* fits in the gap before */
            if (busy[s].end > off) off = busy[s].end;
        }
        b->offset = off;
        if (off + size > total) total = off + size;
        placed[n_placed++] = keys[k].index;
    }
    free(keys);
    free(placed);
    free(busy);
    *arena_bytes = total > 0 ? total : MOPT_ARENA_ALIGN;
    return MOPT_OK;
}
