/* graph_edit.c - small graph edits the techniques share: copy-on-write
 * constant data, dropping unused buffers, committing a rewritten clone. */
#include <stdlib.h>
#include <string.h>

#include "mopt/util.h"
#include "sparsity/sparse_internal.h"

int sp_buffer_users(const mopt_graph *g, uint32_t b) {
    int n = 0;
    for (int t = 0; t < g->n_tensors; t++)
        n += g->tensors[t].buffer == b;
    for (int i = 0; i < g->n_metadata; i++)
        n += g->metadata[i].buffer == b;
    return n;
}

mopt_status sp_tensor_write(mopt_graph *g, int t, const void *data, size_t size) {
    if (!g || t < 0 || t >= g->n_tensors)
        return MOPT_ERR_ARG;
    int64_t nb = mopt_tensor_nbytes(&g->tensors[t]);
    if (nb < 0 || (uint64_t)nb != (uint64_t)size)
        return MOPT_ERR_ARG;
    uint32_t b = g->tensors[t].buffer;
    if (b != 0 && (int)b < g->n_buffers && g->buffers[b].size == size &&
        sp_buffer_users(g, b) == 1) {
        if (size)
            memmove(g->buffers[b].data, data, size);
        return MOPT_OK;
    }
    return mopt_graph_set_tensor_data(g, t, data, size);
}

void sp_compact_buffers(mopt_graph *g) {
    if (!g || g->n_buffers <= 1)
        return;
    int nb = g->n_buffers;
    int32_t *map = malloc((size_t)nb * sizeof *map);
    bool *used = calloc((size_t)nb, sizeof *used);
    if (!map || !used) { /* only an optimisation: leave the graph as it is */
        free(map);
        free(used);
        return;
    }
    used[0] = true;
    for (int t = 0; t < g->n_tensors; t++)
        if (g->tensors[t].buffer < (uint32_t)nb)
            used[g->tensors[t].buffer] = true;
    for (int i = 0; i < g->n_metadata; i++)
        if (g->metadata[i].buffer < (uint32_t)nb)
            used[g->metadata[i].buffer] = true;
    int k = 0;
    for (int b = 0; b < nb; b++) {
        if (used[b]) {
            map[b] = k;
            g->buffers[k++] = g->buffers[b];
        } else {
            map[b] = -1;
            mopt_aligned_free(g->buffers[b].data);
        }
    }
    for (int b = k; b < nb; b++) {
        g->buffers[b].data = NULL;
        g->buffers[b].size = 0;
    }
    g->n_buffers = k;
    for (int t = 0; t < g->n_tensors; t++)
        if (g->tensors[t].buffer < (uint32_t)nb)
            g->tensors[t].buffer = (uint32_t)map[g->tensors[t].buffer];
    for (int i = 0; i < g->n_metadata; i++)
        if (g->metadata[i].buffer < (uint32_t)nb)
            g->metadata[i].buffer = (uint32_t)map[g->metadata[i].buffer];
    free(map);
    free(used);
}

void sp_graph_swap(mopt_graph *a, mopt_graph *b) {
    mopt_graph t = *a;
    *a = *b;
    *b = t;
}
