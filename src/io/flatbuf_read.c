/* io/flatbuf_read.c - bounds-checked FlatBuffers reader (see flatbuf.h).
 *
 * All positions are uint32 (the buffer is at most FB_MAX_SIZE bytes) and
 * every sum that could pass 2^32 is formed in uint64_t before the compare.
 * Alignment is checked relative to the start of the buffer, as the official
 * verifier does; scalars are assembled byte by byte, so the host's alignment
 * and endianness never matter.
 */
#include "io/flatbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static bool fail(fb_reader *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static bool fail(fb_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    return false;
}

static uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32); }

bool fb_reader_init(fb_reader *r, const void *buf, size_t len, const char *ident)
{
    memset(r, 0, sizeof *r);
    r->buf = buf;
    if (buf == NULL && len > 0)
        return fail(r, "no data");
    if (len < 8)
        return fail(r, "file too short for a flatbuffer header (%zu bytes, need 8)", len);
    if (len > FB_MAX_SIZE)
        return fail(r, "file too large for a flatbuffer (%zu bytes, limit %u)", len, FB_MAX_SIZE);
    r->len = (uint32_t)len;
    if (ident != NULL && memcmp(r->buf + 4, ident, 4) != 0) {
        char got[20];
        int k = 0;
        for (int i = 0; i < 4; i++) {
            uint8_t c = r->buf[4 + i];
            /* Show printable bytes as is and others in hex, so the message
             * stays one printable line whatever the file holds. */
            if (c >= 0x20 && c < 0x7f && c != '\\')
                got[k++] = (char)c;
            else
                k += snprintf(got + k, sizeof got - (size_t)k, "\\x%02x", c);
        }
        got[k] = '\0';
        return fail(r, "wrong file identifier \"%s\" (expected \"%.4s\")", got, ident);
    }
    return true;
}

/* Validates the table at pos and fills *out. */
static bool open_table(fb_reader *r, uint64_t pos, int depth, fb_table *out)
{
    memset(out, 0, sizeof *out);
    if (depth > FB_MAX_DEPTH)
        return fail(r, "tables nested deeper than %d", FB_MAX_DEPTH);
    if (++r->n_tables > FB_MAX_TABLES)
        return fail(r, "more than %u tables", FB_MAX_TABLES);
    if (pos % 4 != 0)
        return fail(r, "table at %llu not 4-byte aligned", (unsigned long long)pos);
    if (pos + 4 > r->len)
        return fail(r, "table at %llu past end of file (%u bytes)", (unsigned long long)pos, r->len);
    int32_t soff = (int32_t)ld32(r->buf + pos);
    int64_t vt = (int64_t)pos - (int64_t)soff;
    if (vt < 0 || vt + 4 > (int64_t)r->len)
        return fail(r, "vtable of table at %llu out of range (at %lld, file is %u bytes)",
                    (unsigned long long)pos, (long long)vt, r->len);
    if (vt % 2 != 0)
        return fail(r, "vtable at %lld not 2-byte aligned", (long long)vt);
    uint16_t vt_size = ld16(r->buf + vt);
    uint16_t size = ld16(r->buf + vt + 2);
    if (vt_size < 4 || vt_size % 2 != 0)
        return fail(r, "vtable at %lld has invalid size %u", (long long)vt, vt_size);
    if (vt + vt_size > (int64_t)r->len)
        return fail(r, "vtable at %lld (%u bytes) past end of file (%u bytes)", (long long)vt,
                    vt_size, r->len);
    if (size < 4)
        return fail(r, "table at %llu has invalid inline size %u", (unsigned long long)pos, size);
    if (pos + size > r->len)
        return fail(r, "table at %llu (%u bytes) past end of file (%u bytes)",
                    (unsigned long long)pos, size, r->len);
    out->pos = (uint32_t)pos;
    out->vt = (uint32_t)vt;
    out->vt_size = vt_size;
    out->size = size;
    out->depth = depth;
    return true;
}

bool fb_root(fb_reader *r, fb_table *out)
{
    uint32_t off = ld32(r->buf);
    if (off == 0 || off > r->len - 4)
        return fail(r, "root offset %u out of range (file is %u bytes)", off, r->len);
    return open_table(r, off, 0, out);
}

/* Offset of field id inside the table, 0 when absent. Checks that `size`
 * bytes fit inside the table's inline part and are aligned to `align`. */
static bool field_pos(fb_reader *r, const fb_table *t, unsigned id, uint32_t size, uint32_t align,
                      uint32_t *pos)
{
    *pos = 0;
    uint64_t slot = 4 + 2 * (uint64_t)id;
    if (slot + 2 > t->vt_size)
        return true; /* written by an older schema: field absent */
    uint16_t off = ld16(r->buf + t->vt + slot);
    if (off == 0)
        return true;
    if (off < 4 || (uint64_t)off + size > t->size)
        return fail(r, "field %u at offset %u outside its table (%u bytes)", id, off, t->size);
    uint64_t p = (uint64_t)t->pos + off;
    if (p % align != 0)
        return fail(r, "field %u at %llu not %u-byte aligned", id, (unsigned long long)p, align);
    *pos = (uint32_t)p;
    return true;
}

bool fb_present(const fb_reader *r, const fb_table *t, unsigned id)
{
    uint64_t slot = 4 + 2 * (uint64_t)id;
    if (slot + 2 > t->vt_size)
        return false;
    return ld16(r->buf + t->vt + slot) != 0;
}

/* Reads an n-byte scalar field into a uint64_t (zero-extended). */
static bool get_raw(fb_reader *r, const fb_table *t, unsigned id, uint32_t n, bool *present,
                    uint64_t *raw)
{
    uint32_t p;
    *present = false;
    if (!field_pos(r, t, id, n, n, &p))
        return false;
    if (p == 0)
        return true;
    *present = true;
    switch (n) {
    case 1: *raw = r->buf[p]; break;
    case 2: *raw = ld16(r->buf + p); break;
    case 4: *raw = ld32(r->buf + p); break;
    default: *raw = ld64(r->buf + p); break;
    }
    return true;
}

#define FB_GETTER(fname, type, n, conv)                                                 \
    bool fname(fb_reader *r, const fb_table *t, unsigned id, type def, type *out)       \
    {                                                                                   \
        uint64_t raw = 0;                                                               \
        bool present;                                                                   \
        *out = def;                                                                     \
        if (!get_raw(r, t, id, n, &present, &raw))                                      \
            return false;                                                               \
        if (present)                                                                    \
            *out = conv;                                                                \
        return true;                                                                    \
    }

/* Narrowing through the unsigned type of the same width keeps the bits
 * (implementation-defined in C only for values that do not fit, and every
 * compiler mopt supports wraps two's complement). */
FB_GETTER(fb_get_u8, uint8_t, 1, (uint8_t)raw)
FB_GETTER(fb_get_i8, int8_t, 1, (int8_t)(uint8_t)raw)
FB_GETTER(fb_get_bool, bool, 1, raw != 0)
FB_GETTER(fb_get_u16, uint16_t, 2, (uint16_t)raw)
FB_GETTER(fb_get_i32, int32_t, 4, (int32_t)(uint32_t)raw)
FB_GETTER(fb_get_u32, uint32_t, 4, (uint32_t)raw)
FB_GETTER(fb_get_i64, int64_t, 8, (int64_t)raw)
FB_GETTER(fb_get_u64, uint64_t, 8, raw)

bool fb_get_f32(fb_reader *r, const fb_table *t, unsigned id, float def, float *out)
{
    uint64_t raw = 0;
    bool present;
    *out = def;
    if (!get_raw(r, t, id, 4, &present, &raw))
        return false;
    if (present) {
        uint32_t bits = (uint32_t)raw;
        memcpy(out, &bits, sizeof bits);
    }
    return true;
}

/* Follows the uoffset stored at `at` (which must lie inside the buffer with
 * 4 bytes to spare) and checks the target can hold a 4-byte, 4-aligned item. */
static bool follow(fb_reader *r, uint32_t at, const char *what, uint32_t *target)
{
    uint32_t off = ld32(r->buf + at);
    if (off == 0)
        return fail(r, "%s offset at %u is zero", what, at);
    uint64_t t = (uint64_t)at + off;
    if (t + 4 > r->len)
        return fail(r, "%s offset at %u points past end of file (to %llu, file is %u bytes)", what,
                    at, (unsigned long long)t, r->len);
    if (t % 4 != 0)
        return fail(r, "%s at %llu not 4-byte aligned", what, (unsigned long long)t);
    *target = (uint32_t)t;
    return true;
}

bool fb_get_table(fb_reader *r, const fb_table *t, unsigned id, fb_table *out, bool *present)
{
    uint32_t p, target;
    memset(out, 0, sizeof *out);
    if (present)
        *present = false;
    if (!field_pos(r, t, id, 4, 4, &p))
        return false;
    if (p == 0)
        return true;
    if (!follow(r, p, "table", &target))
        return false;
    if (!open_table(r, target, t->depth + 1, out))
        return false;
    if (present)
        *present = true;
    return true;
}

/* Validates a vector whose count lies at `at`. */
static bool vec_at(fb_reader *r, uint32_t at, uint32_t elem_size, uint32_t align, int depth,
                   fb_vec *out)
{
    uint32_t n = ld32(r->buf + at);
    uint64_t start = (uint64_t)at + 4;
    if (align > 1 && start % align != 0)
        return fail(r, "vector data at %llu not %u-byte aligned", (unsigned long long)start, align);
    /* n < 2^32 and elem_size <= 8: the product fits easily in 64 bits. */
    uint64_t bytes = (uint64_t)n * elem_size;
    if (start + bytes > r->len)
        return fail(r, "vector of %u elements at %u runs past end of file (%u bytes)", n, at,
                    r->len);
    out->pos = (uint32_t)start;
    out->n = n;
    out->elem_size = elem_size;
    out->depth = depth;
    return true;
}

bool fb_get_vec(fb_reader *r, const fb_table *t, unsigned id, uint32_t elem_size, uint32_t align,
                fb_vec *out, bool *present)
{
    uint32_t p, at;
    memset(out, 0, sizeof *out);
    if (present)
        *present = false;
    if (align < elem_size)
        align = elem_size;
    if (!field_pos(r, t, id, 4, 4, &p))
        return false;
    if (p == 0)
        return true;
    if (!follow(r, p, "vector", &at))
        return false;
    if (!vec_at(r, at, elem_size, align, t->depth, out))
        return false;
    if (present)
        *present = true;
    return true;
}

/* Validates the string whose length lies at `at`. */
static bool str_at(fb_reader *r, uint32_t at, const char **s, uint32_t *len)
{
    uint32_t n = ld32(r->buf + at);
    uint64_t start = (uint64_t)at + 4;
    /* The terminating NUL must exist inside the buffer too. */
    if (start + n + 1 > r->len)
        return fail(r, "string of %u bytes at %u runs past end of file (%u bytes)", n, at, r->len);
    const uint8_t *p = r->buf + start;
    if (p[n] != 0)
        return fail(r, "string at %u not NUL-terminated", at);
    if (memchr(p, 0, n) != NULL)
        return fail(r, "string at %u contains a NUL byte", at);
    *s = (const char *)p;
    *len = n;
    return true;
}

bool fb_get_str(fb_reader *r, const fb_table *t, unsigned id, const char **s, uint32_t *len,
                bool *present)
{
    uint32_t p, at;
    *s = NULL;
    *len = 0;
    if (present)
        *present = false;
    if (!field_pos(r, t, id, 4, 4, &p))
        return false;
    if (p == 0)
        return true;
    if (!follow(r, p, "string", &at))
        return false;
    if (!str_at(r, at, s, len))
        return false;
    if (present)
        *present = true;
    return true;
}

bool fb_vec_table(fb_reader *r, const fb_vec *v, uint32_t i, fb_table *out)
{
    uint32_t target;
    memset(out, 0, sizeof *out);
    if (v->elem_size != 4 || i >= v->n)
        return fail(r, "element %u of a %u-element vector requested", i, v->n);
    if (!follow(r, v->pos + 4 * i, "table", &target))
        return false;
    return open_table(r, target, v->depth + 1, out);
}

bool fb_vec_str(fb_reader *r, const fb_vec *v, uint32_t i, const char **s, uint32_t *len)
{
    uint32_t at;
    *s = NULL;
    *len = 0;
    if (v->elem_size != 4 || i >= v->n)
        return fail(r, "element %u of a %u-element vector requested", i, v->n);
    if (!follow(r, v->pos + 4 * i, "string", &at))
        return false;
    return str_at(r, at, s, len);
}

const uint8_t *fb_vec_bytes(const fb_reader *r, const fb_vec *v) { return r->buf + v->pos; }

int32_t fb_vec_i32(const fb_reader *r, const fb_vec *v, uint32_t i)
{
    return (int32_t)ld32(r->buf + v->pos + 4 * (size_t)i);
}

int64_t fb_vec_i64(const fb_reader *r, const fb_vec *v, uint32_t i)
{
    return (int64_t)ld64(r->buf + v->pos + 8 * (size_t)i);
}

float fb_vec_f32(const fb_reader *r, const fb_vec *v, uint32_t i)
{
    uint32_t bits = ld32(r->buf + v->pos + 4 * (size_t)i);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
