/* io/flatbuf_build.c - back-to-front FlatBuffers builder (see flatbuf.h).
 *
 * The content grows downwards from the end of `buf`; `size` bytes are in use.
 * A ref is the value of `size` right after an object was written, i.e. the
 * object's distance from the end. In the finished buffer of F bytes the
 * object sits at F - ref, so a uoffset stored at ref s that targets ref t
 * holds s - t (positive because children are written first), and alignment
 * "from the end" equals alignment from the start once F is a multiple of
 * minalign (fb_finish pads it so).
 *
 * Every byte that ends up in the output is written explicitly (padding is
 * zeroed), so the same calls always give the same bytes.
 */
#include "io/flatbuf.h"

#include <stdlib.h>
#include <string.h>

static void set_failed(fb_builder *b, const char *why)
{
    if (!b->failed) {
        b->failed = true;
        b->why = why;
    }
}

void fb_builder_init(fb_builder *b)
{
    memset(b, 0, sizeof *b);
    b->minalign = 1;
}

void fb_builder_free(fb_builder *b)
{
    free(b->buf);
    free(b->vtables);
    memset(b, 0, sizeof *b);
}

/* Makes room for `need` more bytes below the current content. */
static bool reserve(fb_builder *b, size_t need)
{
    if (b->failed)
        return false;
    if (need > FB_MAX_SIZE || b->size > FB_MAX_SIZE - need) {
        set_failed(b, "flatbuffer would exceed 2 GiB");
        return false;
    }
    if (b->cap - b->size >= need)
        return true;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - b->size < need)
        cap = cap > FB_MAX_SIZE / 2 ? (size_t)FB_MAX_SIZE + 1 : cap * 2;
    uint8_t *nb = malloc(cap);
    if (nb == NULL) {
        set_failed(b, "out of memory");
        return false;
    }
    if (b->size > 0)
        memcpy(nb + cap - b->size, b->buf + b->cap - b->size, b->size);
    free(b->buf);
    b->buf = nb;
    b->cap = cap;
    return true;
}

/* Pointer to the byte at distance `ref` from the end. */
static uint8_t *at_ref(fb_builder *b, uint32_t ref) { return b->buf + b->cap - ref; }

/* Pushes n bytes (already little-endian) below the content. */
static void push(fb_builder *b, const void *p, size_t n)
{
    if (!reserve(b, n))
        return;
    b->size += n;
    if (n > 0)
        memcpy(at_ref(b, (uint32_t)b->size), p, n);
}

static void push_zeros(fb_builder *b, size_t n)
{
    if (!reserve(b, n))
        return;
    b->size += n;
    if (n > 0)
        memset(at_ref(b, (uint32_t)b->size), 0, n);
}

/* Pads so that after writing `extra` more bytes the size is a multiple of
 * `align` (a power of two): the object written next then ends up aligned. */
static void prep(fb_builder *b, size_t align, size_t extra)
{
    if (align > b->minalign)
        b->minalign = align;
    size_t pad = (size_t)(0 - (b->size + extra)) & (align - 1);
    push_zeros(b, pad);
}

static void store_le(uint8_t *dst, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        dst[i] = (uint8_t)(v >> (8 * i));
}

static void push_scalar(fb_builder *b, uint64_t v, unsigned n)
{
    uint8_t tmp[8];
    store_le(tmp, v, n);
    prep(b, n, 0);
    push(b, tmp, n);
}

static bool not_in_table(fb_builder *b)
{
    if (b->in_table) {
        set_failed(b, "object created while a table is open");
        return false;
    }
    return !b->failed;
}

/* uoffset value for a slot written at ref size + 4 pointing at `target`. */
static uint32_t refer_to(fb_builder *b, fb_ref target)
{
    prep(b, 4, 0);
    if (target == 0 || target > b->size) {
        set_failed(b, "reference to an object not written yet");
        return 0;
    }
    return (uint32_t)(b->size + 4 - target);
}

fb_ref fb_create_vec(fb_builder *b, const void *data, uint32_t n, uint32_t elem_size,
                     uint32_t align)
{
    if (!not_in_table(b))
        return 0;
    if (elem_size != 1 && elem_size != 2 && elem_size != 4 && elem_size != 8) {
        set_failed(b, "bad vector element size");
        return 0;
    }
    if (align < elem_size)
        align = elem_size;
    size_t bytes = (size_t)n * elem_size;
    if (bytes > FB_MAX_SIZE) {
        set_failed(b, "flatbuffer would exceed 2 GiB");
        return 0;
    }
    /* The count (4 bytes) must be aligned and directly followed by the first
     * element, which must be aligned to `align`. */
    prep(b, 4, bytes);
    prep(b, align, bytes);
    if (!reserve(b, bytes))
        return 0;
    b->size += bytes;
    uint8_t *dst = at_ref(b, (uint32_t)b->size);
    const uint8_t *src = data;
    if (elem_size == 1) {
        if (bytes > 0)
            memcpy(dst, src, bytes);
    } else {
        for (uint32_t i = 0; i < n; i++) {
            uint64_t v = 0;
            switch (elem_size) {
            case 2: { uint16_t x; memcpy(&x, src + 2 * (size_t)i, 2); v = x; break; }
            case 4: { uint32_t x; memcpy(&x, src + 4 * (size_t)i, 4); v = x; break; }
            default: memcpy(&v, src + 8 * (size_t)i, 8); break;
            }
            store_le(dst + (size_t)i * elem_size, v, elem_size);
        }
    }
    push_scalar(b, n, 4);
    return b->failed ? 0 : (fb_ref)b->size;
}

fb_ref fb_create_vec_refs(fb_builder *b, const fb_ref *refs, uint32_t n)
{
    if (!not_in_table(b))
        return 0;
    prep(b, 4, (size_t)n * 4);
    /* Elements go in back to front, each relative to its own slot. */
    for (uint32_t i = n; i-- > 0;) {
        uint32_t v = refer_to(b, refs[i]);
        push_scalar(b, v, 4);
    }
    push_scalar(b, n, 4);
    return b->failed ? 0 : (fb_ref)b->size;
}

fb_ref fb_create_string(fb_builder *b, const char *s, size_t len)
{
    if (!not_in_table(b))
        return 0;
    if (len > FB_MAX_SIZE) {
        set_failed(b, "flatbuffer would exceed 2 GiB");
        return 0;
    }
    prep(b, 4, len + 1);
    push_zeros(b, 1);
    push(b, s, len);
    push_scalar(b, len, 4);
    return b->failed ? 0 : (fb_ref)b->size;
}

void fb_start_table(fb_builder *b)
{
    if (!not_in_table(b))
        return;
    /* Pad before the table starts, so that the padding a vtable written
     * just before leaves does not count as inline size (identical tables
     * then get identical, shareable vtables). */
    prep(b, 4, 0);
    b->in_table = true;
    b->table_start = (uint32_t)b->size;
    b->n_fields = 0;
    memset(b->field_loc, 0, sizeof b->field_loc);
}

static void add_field(fb_builder *b, unsigned id, uint64_t v, unsigned n)
{
    if (!b->in_table || id >= FB_MAX_FIELDS) {
        set_failed(b, "field added outside a table or with a bad id");
        return;
    }
    push_scalar(b, v, n);
    b->field_loc[id] = (uint32_t)b->size;
    if ((int)id + 1 > b->n_fields)
        b->n_fields = (int)id + 1;
}

void fb_add_u8(fb_builder *b, unsigned id, uint8_t v) { add_field(b, id, v, 1); }
void fb_add_i32(fb_builder *b, unsigned id, int32_t v) { add_field(b, id, (uint32_t)v, 4); }
void fb_add_u32(fb_builder *b, unsigned id, uint32_t v) { add_field(b, id, v, 4); }
void fb_add_i64(fb_builder *b, unsigned id, int64_t v) { add_field(b, id, (uint64_t)v, 8); }
void fb_add_u64(fb_builder *b, unsigned id, uint64_t v) { add_field(b, id, v, 8); }

void fb_add_f32(fb_builder *b, unsigned id, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    add_field(b, id, bits, 4);
}

void fb_add_ref(fb_builder *b, unsigned id, fb_ref ref)
{
    if (ref == 0)
        return;
    if (!b->in_table) {
        set_failed(b, "field added outside a table");
        return;
    }
    add_field(b, id, refer_to(b, ref), 4);
}

fb_ref fb_end_table(fb_builder *b)
{
    if (!b->in_table) {
        set_failed(b, "table ended without being started");
        return 0;
    }
    /* Placeholder for the soffset to the vtable, patched below. */
    push_scalar(b, 0, 4);
    b->in_table = false;
    if (b->failed)
        return 0;
    uint32_t table = (uint32_t)b->size;
    uint32_t inline_size = table - b->table_start;
    size_t vt_size = 4 + 2 * (size_t)b->n_fields;
    if (inline_size > 0xffff) {
        set_failed(b, "table too large");
        return 0;
    }
    uint8_t vt[4 + 2 * FB_MAX_FIELDS];
    store_le(vt, vt_size, 2);
    store_le(vt + 2, inline_size, 2);
    for (int i = 0; i < b->n_fields; i++) {
        uint32_t loc = b->field_loc[i];
        store_le(vt + 4 + 2 * i, loc ? table - loc : 0, 2);
    }
    /* Share an identical vtable written before, as the official builder does. */
    uint32_t vt_ref = 0;
    for (size_t i = 0; i < b->n_vtables; i++) {
        const uint8_t *old = at_ref(b, b->vtables[i]);
        /* Compare the sizes first: a shorter old vtable may end the buffer. */
        if (memcmp(old, vt, 2) == 0 && memcmp(old, vt, vt_size) == 0) {
            vt_ref = b->vtables[i];
            break;
        }
    }
    if (vt_ref == 0) {
        push(b, vt, vt_size);
        if (b->failed)
            return 0;
        vt_ref = (uint32_t)b->size;
        if (b->n_vtables == b->cap_vtables) {
            size_t nc = b->cap_vtables ? 2 * b->cap_vtables : 16;
            uint32_t *nv = realloc(b->vtables, nc * sizeof *nv);
            if (nv == NULL) {
                set_failed(b, "out of memory");
                return 0;
            }
            b->vtables = nv;
            b->cap_vtables = nc;
        }
        b->vtables[b->n_vtables++] = vt_ref;
    }
    /* vtable address = table address - soffset; addresses are F - ref. */
    int64_t soff = (int64_t)vt_ref - (int64_t)table;
    store_le(at_ref(b, table), (uint32_t)(int32_t)soff, 4);
    return table;
}

bool fb_finish(fb_builder *b, fb_ref root, const char *ident)
{
    if (!not_in_table(b))
        return false;
    prep(b, b->minalign, 4 + (ident ? 4 : 0));
    if (ident)
        push(b, ident, 4);
    uint32_t v = refer_to(b, root);
    push_scalar(b, v, 4);
    return !b->failed;
}

const uint8_t *fb_data(const fb_builder *b) { return b->buf + b->cap - b->size; }

uint8_t *fb_release(fb_builder *b, size_t *size)
{
    *size = 0;
    if (b->failed || b->size == 0)
        return NULL;
    size_t n = b->size;
    memmove(b->buf, b->buf + b->cap - n, n);
    uint8_t *out = realloc(b->buf, n);
    if (out == NULL)
        out = b->buf; /* shrinking failed: the larger block is fine */
    b->buf = NULL;
    fb_builder_free(b);
    *size = n;
    return out;
}
