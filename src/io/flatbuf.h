/* io/flatbuf.h - a small FlatBuffers codec: a bounds-checked reader for
 * untrusted buffers and a back-to-front builder.
 *
 * Wire format (see the FlatBuffers "internals" notes): little-endian; a
 * uoffset is a uint32 counted forward from its own address; a table starts
 * with an int32 soffset to its vtable (vtable = table - soffset); the vtable
 * is uint16 [vtable size, table inline size, field offsets...]; a vector is a
 * uint32 count followed by its elements; a string is a byte vector followed
 * by one NUL that the count does not include.
 *
 * Reader: every call that touches the buffer validates what it reads (64-bit
 * arithmetic, alignment as the official verifier checks it, nesting depth and
 * table count limits) and on failure returns false with a one-line rule in
 * fb_reader.why. Nothing is cached: a table or vector handle is just a
 * validated position, so the reader never allocates.
 *
 * Builder: objects are written from the end of the buffer towards its start,
 * children before parents, so every uoffset points forward (to a higher
 * address) as the format requires. An object is named by its fb_ref: its
 * distance from the end of the buffer. Alignment is kept relative to the end
 * and the finished buffer's size is padded to a multiple of the largest
 * alignment used, so alignment relative to the start follows.
 */
#ifndef MOPT_IO_FLATBUF_H
#define MOPT_IO_FLATBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest buffer the format can address (uoffsets must stay positive as
 * signed 32-bit values in the official implementation). */
#define FB_MAX_SIZE 0x7fffffffu
/* Same limits as the official verifier's defaults. */
#define FB_MAX_DEPTH 64
#define FB_MAX_TABLES 1000000u
/* Highest field id the builder accepts in one table (TFLite uses < 16). */
#define FB_MAX_FIELDS 64

/* ------------------------------------------------------------------ reader */

typedef struct fb_reader {
    const uint8_t *buf;
    uint32_t len;
    uint32_t n_tables; /* tables opened so far, against FB_MAX_TABLES */
    char why[200];     /* the rule the last failing call found broken */
} fb_reader;

/* A validated table: its vtable lies inside the buffer and its inline part
 * (size bytes from pos) too. */
typedef struct fb_table {
    uint32_t pos;
    uint32_t vt;
    uint16_t vt_size;
    uint16_t size;
    int depth;
} fb_table;

/* A validated vector: n elements of elem_size bytes from pos, inside the
 * buffer and aligned as requested. */
typedef struct fb_vec {
    uint32_t pos;
    uint32_t n;
    uint32_t elem_size;
    int depth; /* depth of the table that holds it (for its table elements) */
} fb_vec;

/* Checks the header: size within [8, FB_MAX_SIZE] and, if ident is not NULL,
 * the 4-byte file identifier at bytes 4..7. */
bool fb_reader_init(fb_reader *r, const void *buf, size_t len, const char *ident);
/* Opens the root table. */
bool fb_root(fb_reader *r, fb_table *out);

/* True if field `id` is present in the table (its vtable entry is non-zero). */
bool fb_present(const fb_reader *r, const fb_table *t, unsigned id);

/* Scalar fields: *out gets the stored value or `def` when absent. */
bool fb_get_u8(fb_reader *r, const fb_table *t, unsigned id, uint8_t def, uint8_t *out);
bool fb_get_i8(fb_reader *r, const fb_table *t, unsigned id, int8_t def, int8_t *out);
bool fb_get_bool(fb_reader *r, const fb_table *t, unsigned id, bool def, bool *out);
bool fb_get_u16(fb_reader *r, const fb_table *t, unsigned id, uint16_t def, uint16_t *out);
bool fb_get_i32(fb_reader *r, const fb_table *t, unsigned id, int32_t def, int32_t *out);
bool fb_get_u32(fb_reader *r, const fb_table *t, unsigned id, uint32_t def, uint32_t *out);
bool fb_get_i64(fb_reader *r, const fb_table *t, unsigned id, int64_t def, int64_t *out);
bool fb_get_u64(fb_reader *r, const fb_table *t, unsigned id, uint64_t def, uint64_t *out);
bool fb_get_f32(fb_reader *r, const fb_table *t, unsigned id, float def, float *out);

/* Sub-table field. *present (may be NULL) tells whether it was there; an
 * absent table leaves *out zeroed. */
bool fb_get_table(fb_reader *r, const fb_table *t, unsigned id, fb_table *out, bool *present);

/* Vector field of elem_size-byte elements whose first element must be
 * aligned to `align` (1 = no requirement beyond the count's 4). An absent
 * vector gives n == 0 and *present false. */
bool fb_get_vec(fb_reader *r, const fb_table *t, unsigned id, uint32_t elem_size, uint32_t align,
                fb_vec *out, bool *present);

/* String field: *s points into the buffer (NUL-terminated there), *len is
 * its length. Embedded NULs are refused (callers use C strings). Absent ->
 * *s NULL, *len 0. */
bool fb_get_str(fb_reader *r, const fb_table *t, unsigned id, const char **s, uint32_t *len,
                bool *present);

/* Elements of a vector of tables / strings (the vector must have been read
 * with elem_size 4). */
bool fb_vec_table(fb_reader *r, const fb_vec *v, uint32_t i, fb_table *out);
bool fb_vec_str(fb_reader *r, const fb_vec *v, uint32_t i, const char **s, uint32_t *len);

/* Elements of validated scalar vectors (i < v->n is the caller's duty). */
const uint8_t *fb_vec_bytes(const fb_reader *r, const fb_vec *v);
int32_t fb_vec_i32(const fb_reader *r, const fb_vec *v, uint32_t i);
int64_t fb_vec_i64(const fb_reader *r, const fb_vec *v, uint32_t i);
float fb_vec_f32(const fb_reader *r, const fb_vec *v, uint32_t i);

/* ----------------------------------------------------------------- builder */

/* Position of a written object, counted from the end of the buffer; 0 is
 * never a valid object and means "none". */
typedef uint32_t fb_ref;

typedef struct fb_builder {
    uint8_t *buf; /* content occupies buf[cap - size, cap) */
    size_t cap;
    size_t size;
    size_t minalign;
    bool failed;       /* sticky: out of memory, too large or misuse */
    const char *why;   /* why `failed` was set */
    bool in_table;
    uint32_t table_start;
    int n_fields; /* highest field id added + 1 */
    uint32_t field_loc[FB_MAX_FIELDS];
    uint32_t *vtables; /* refs of vtables written, for sharing identical ones */
    size_t n_vtables, cap_vtables;
} fb_builder;

void fb_builder_init(fb_builder *b);
void fb_builder_free(fb_builder *b);

/* Vector of scalars given in host order (elem_size 1, 2, 4 or 8); `align` is
 * the element alignment to force (e.g. 16 for TFLite Buffer.data). */
fb_ref fb_create_vec(fb_builder *b, const void *data, uint32_t n, uint32_t elem_size,
                     uint32_t align);
/* Vector of offsets to tables or strings written before. */
fb_ref fb_create_vec_refs(fb_builder *b, const fb_ref *refs, uint32_t n);
fb_ref fb_create_string(fb_builder *b, const char *s, size_t len);

/* Tables: fields are added between start and end; no other object may be
 * created meanwhile. The caller decides which values to omit as defaults. */
void fb_start_table(fb_builder *b);
void fb_add_u8(fb_builder *b, unsigned id, uint8_t v);
void fb_add_i32(fb_builder *b, unsigned id, int32_t v);
void fb_add_u32(fb_builder *b, unsigned id, uint32_t v);
void fb_add_i64(fb_builder *b, unsigned id, int64_t v);
void fb_add_u64(fb_builder *b, unsigned id, uint64_t v);
void fb_add_f32(fb_builder *b, unsigned id, float v);
void fb_add_ref(fb_builder *b, unsigned id, fb_ref ref); /* ref 0: nothing added */
fb_ref fb_end_table(fb_builder *b);

/* Writes the header (root offset and the optional 4-byte identifier).
 * Returns false if anything failed along the way (see b->why). */
bool fb_finish(fb_builder *b, fb_ref root, const char *ident);
/* The finished bytes (valid until the builder is freed or released). */
const uint8_t *fb_data(const fb_builder *b);
/* Hands the finished bytes over as a malloc'ed block (free()) and resets the
 * builder; NULL on failure. */
uint8_t *fb_release(fb_builder *b, size_t *size);

#endif
