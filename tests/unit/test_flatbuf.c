/* Unit tests for src/io/flatbuf_{read,build}.c.
 *
 * The reader is checked first against buffers assembled byte by byte from the
 * wire format rules (not with the builder), then builder output is decoded
 * and checked for the layout properties the format requires (alignment,
 * forward offsets, shared vtables, determinism). Malformed buffers are
 * hand-made mutations of a known-good one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "io/flatbuf.h"

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* A 48-byte buffer assembled by hand:
 *   0: root uoffset -> 16           4: "TEST"
 *   8: vtable {vt_size 8, table size 12, field0 @4, field1 @8}; fields 2+
 *      lie beyond the vtable, i.e. absent
 *  16: table: soffset 8 (vtable at 16-8), 20: int32 -5, 24: uoffset -> 28
 *  28: string "abc" (count 3, bytes, NUL)
 *  36: int32 vector [7, -1] (count at 36), referenced from nowhere yet */
static size_t hand_buffer(uint8_t *b)
{
    memset(b, 0, 48);
    put32(b + 0, 16);
    memcpy(b + 4, "TEST", 4);
    put16(b + 8, 8);
    put16(b + 10, 12);
    put16(b + 12, 4);
    put16(b + 14, 8);
    put32(b + 16, 8);
    put32(b + 20, (uint32_t)-5);
    put32(b + 24, 4);
    put32(b + 28, 3);
    memcpy(b + 32, "abc", 4);
    put32(b + 36, 2);
    put32(b + 40, 7);
    put32(b + 44, (uint32_t)-1);
    return 48;
}

static void test_read_hand_made(void **state)
{
    (void)state;
    uint8_t b[48];
    size_t n = hand_buffer(b);
    fb_reader r;
    fb_table root;
    assert_true(fb_reader_init(&r, b, n, "TEST"));
    assert_true(fb_root(&r, &root));
    assert_int_equal(root.pos, 16);
    assert_int_equal(root.vt, 8);

    int32_t v;
    assert_true(fb_get_i32(&r, &root, 0, 99, &v));
    assert_int_equal(v, -5);
    assert_true(fb_get_i32(&r, &root, 2, 99, &v)); /* beyond the vtable: default */
    assert_int_equal(v, 99);
    assert_true(fb_get_i32(&r, &root, 40, 7, &v));
    assert_int_equal(v, 7);
    assert_true(fb_present(&r, &root, 0));
    assert_false(fb_present(&r, &root, 2));

    const char *s;
    uint32_t len;
    bool present;
    assert_true(fb_get_str(&r, &root, 1, &s, &len, &present));
    assert_true(present);
    assert_int_equal(len, 3);
    assert_string_equal(s, "abc");
    assert_true(fb_get_str(&r, &root, 3, &s, &len, &present));
    assert_false(present);
    assert_null(s);

    /* Wrong identifier and short buffers. */
    assert_false(fb_reader_init(&r, b, n, "TFL3"));
    assert_non_null(strstr(r.why, "identifier"));
    assert_false(fb_reader_init(&r, b, 7, NULL));
    assert_false(fb_reader_init(&r, NULL, 0, NULL));
}

/* Mutates one copy of the hand-made buffer and expects `call` to fail. */
typedef bool (*probe_fn)(fb_reader *r, const fb_table *t);

static bool probe_root(fb_reader *r, const fb_table *t)
{
    (void)r;
    (void)t;
    return true;
}

static bool probe_i32(fb_reader *r, const fb_table *t)
{
    int32_t v;
    return fb_get_i32(r, t, 0, 0, &v);
}

static bool probe_str(fb_reader *r, const fb_table *t)
{
    const char *s;
    uint32_t len;
    return fb_get_str(r, t, 1, &s, &len, NULL);
}

static bool probe_vec(fb_reader *r, const fb_table *t)
{
    fb_vec v;
    return fb_get_vec(r, t, 1, 4, 4, &v, NULL);
}

static void expect_fail(void (*mutate)(uint8_t *b), probe_fn probe, const char *why_part)
{
    uint8_t b[48];
    size_t n = hand_buffer(b);
    mutate(b);
    fb_reader r;
    fb_table root;
    assert_true(fb_reader_init(&r, b, n, NULL));
    bool ok = fb_root(&r, &root) && probe(&r, &root);
    if (ok)
        fail_msg("mutation accepted; expected '%s'", why_part);
    if (strstr(r.why, why_part) == NULL)
        fail_msg("message '%s' does not mention '%s'", r.why, why_part);
}

static void m_root_far(uint8_t *b) { put32(b, 1000); }
static void m_root_zero(uint8_t *b) { put32(b, 0); }
static void m_root_misaligned(uint8_t *b) { put32(b, 18); }
static void m_vtable_neg(uint8_t *b) { put32(b + 16, (uint32_t)-100); }
static void m_vtable_before_start(uint8_t *b) { put32(b + 16, 20); }
static void m_vtable_odd(uint8_t *b) { put32(b + 16, 7); }
static void m_vtable_size_odd(uint8_t *b) { put16(b + 8, 7); }
static void m_vtable_size_huge(uint8_t *b) { put16(b + 8, 0xfffe); }
static void m_table_size_huge(uint8_t *b) { put16(b + 10, 0x1000); }
static void m_table_size_small(uint8_t *b) { put16(b + 10, 2); }
static void m_field_outside(uint8_t *b) { put16(b + 12, 10); } /* 10 + 4 > 12 */
static void m_field_misaligned(uint8_t *b) { put16(b + 12, 6); }
static void m_field_in_soffset(uint8_t *b) { put16(b + 12, 2); }
static void m_str_offset_zero(uint8_t *b) { put32(b + 24, 0); }
static void m_str_offset_far(uint8_t *b) { put32(b + 24, 0x7ffffff0); }
static void m_str_offset_misaligned(uint8_t *b) { put32(b + 24, 5); }
static void m_str_len_huge(uint8_t *b) { put32(b + 28, 0xffffffffu); }
static void m_str_no_nul(uint8_t *b) { b[35] = 'x'; }
static void m_str_inner_nul(uint8_t *b) { b[33] = 0; }
static void m_vec_len_huge(uint8_t *b) { put32(b + 28, 0x40000000u); }

static void test_read_malformed(void **state)
{
    (void)state;
    expect_fail(m_root_far, probe_root, "root offset");
    expect_fail(m_root_zero, probe_root, "root offset");
    expect_fail(m_root_misaligned, probe_root, "aligned");
    expect_fail(m_vtable_neg, probe_root, "vtable");
    expect_fail(m_vtable_before_start, probe_root, "vtable");
    expect_fail(m_vtable_odd, probe_root, "aligned");
    expect_fail(m_vtable_size_odd, probe_root, "invalid size");
    expect_fail(m_vtable_size_huge, probe_root, "past end");
    expect_fail(m_table_size_huge, probe_root, "past end");
    expect_fail(m_table_size_small, probe_root, "inline size");
    expect_fail(m_field_outside, probe_i32, "outside");
    expect_fail(m_field_misaligned, probe_i32, "aligned");
    expect_fail(m_field_in_soffset, probe_i32, "outside");
    expect_fail(m_str_offset_zero, probe_str, "zero");
    expect_fail(m_str_offset_far, probe_str, "past end");
    expect_fail(m_str_offset_misaligned, probe_str, "aligned");
    expect_fail(m_str_len_huge, probe_str, "past end");
    expect_fail(m_str_no_nul, probe_str, "NUL-terminated");
    expect_fail(m_str_inner_nul, probe_str, "NUL byte");
    expect_fail(m_vec_len_huge, probe_vec, "past end");
}

/* Every truncation of a valid buffer is refused or read consistently: the
 * reader never touches bytes past the given length (ASan checks this, the
 * copy is exactly `len` bytes long). */
static void test_read_truncated(void **state)
{
    (void)state;
    uint8_t full[48];
    size_t n = hand_buffer(full);
    for (size_t len = 0; len < n; len++) {
        uint8_t *b = malloc(len ? len : 1);
        assert_non_null(b);
        memcpy(b, full, len);
        fb_reader r;
        fb_table root;
        bool ok = fb_reader_init(&r, b, len, "TEST") && fb_root(&r, &root) && probe_str(&r, &root);
        /* The string ends at byte 36: any shorter buffer must fail. */
        if (len < 36)
            assert_false(ok);
        free(b);
    }
}

/* ---------------------------------------------------------------- builder */

typedef struct built {
    uint8_t *data;
    size_t size;
} built;

/* Builds: root {0: u8 200, 1: i32 -7, 2: u32 3e9, 3: i64 -2^40, 4: f32 1.5,
 * 5: string "hello", 6: [ubyte] 1..37 force_align 16, 7: [long] {1,-2,3},
 * 8: [child] x3 (child {0: i32 i*10}), 9: [string] {"a","bc"},
 * 10: child table {0: i32 42}, 11: [float] {}, 12: u64 max} */
static built build_sample(void)
{
    fb_builder b;
    fb_builder_init(&b);
    uint8_t bytes[37];
    for (int i = 0; i < 37; i++)
        bytes[i] = (uint8_t)(i + 1);
    fb_ref rbytes = fb_create_vec(&b, bytes, 37, 1, 16);
    int64_t longs[3] = {1, -2, 3};
    fb_ref rlongs = fb_create_vec(&b, longs, 3, 8, 8);
    fb_ref kids[3];
    for (int i = 0; i < 3; i++) {
        fb_start_table(&b);
        fb_add_i32(&b, 0, i * 10);
        kids[i] = fb_end_table(&b);
    }
    fb_ref rkids = fb_create_vec_refs(&b, kids, 3);
    fb_ref strs[2] = {fb_create_string(&b, "a", 1), fb_create_string(&b, "bc", 2)};
    fb_ref rstrs = fb_create_vec_refs(&b, strs, 2);
    fb_start_table(&b);
    fb_add_i32(&b, 0, 42);
    fb_ref child = fb_end_table(&b);
    fb_ref rhello = fb_create_string(&b, "hello", 5);
    fb_ref rempty = fb_create_vec(&b, NULL, 0, 4, 4);
    fb_start_table(&b);
    fb_add_u8(&b, 0, 200);
    fb_add_i32(&b, 1, -7);
    fb_add_u32(&b, 2, 3000000000u);
    fb_add_i64(&b, 3, -((int64_t)1 << 40));
    fb_add_f32(&b, 4, 1.5f);
    fb_add_ref(&b, 5, rhello);
    fb_add_ref(&b, 6, rbytes);
    fb_add_ref(&b, 7, rlongs);
    fb_add_ref(&b, 8, rkids);
    fb_add_ref(&b, 9, rstrs);
    fb_add_ref(&b, 10, child);
    fb_add_ref(&b, 11, rempty);
    fb_add_u64(&b, 12, UINT64_MAX);
    fb_ref root = fb_end_table(&b);
    assert_true(fb_finish(&b, root, "SMPL"));
    built out;
    out.data = fb_release(&b, &out.size);
    assert_non_null(out.data);
    fb_builder_free(&b);
    return out;
}

static void test_build_and_read(void **state)
{
    (void)state;
    built s = build_sample();
    /* Header: a 4-aligned root offset, then the identifier. */
    assert_true(s.size >= 8);
    assert_int_equal(get32(s.data) % 4, 0);
    assert_memory_equal(s.data + 4, "SMPL", 4);
    /* force_align 16 implies the whole buffer is a multiple of 16. */
    assert_int_equal(s.size % 16, 0);

    fb_reader r;
    fb_table root, t;
    fb_vec v;
    bool present;
    assert_true(fb_reader_init(&r, s.data, s.size, "SMPL"));
    assert_true(fb_root(&r, &root));
    uint8_t u8;
    int32_t i32;
    uint32_t u32;
    int64_t i64;
    uint64_t u64;
    float f;
    assert_true(fb_get_u8(&r, &root, 0, 0, &u8));
    assert_int_equal(u8, 200);
    assert_true(fb_get_i32(&r, &root, 1, 0, &i32));
    assert_int_equal(i32, -7);
    assert_true(fb_get_u32(&r, &root, 2, 0, &u32));
    assert_int_equal(u32, 3000000000u);
    assert_true(fb_get_i64(&r, &root, 3, 0, &i64));
    assert_true(i64 == -((int64_t)1 << 40));
    assert_true(fb_get_f32(&r, &root, 4, 0, &f));
    assert_true(f == 1.5f);
    assert_true(fb_get_u64(&r, &root, 12, 0, &u64));
    assert_true(u64 == UINT64_MAX);

    const char *str;
    uint32_t len;
    assert_true(fb_get_str(&r, &root, 5, &str, &len, NULL));
    assert_string_equal(str, "hello");

    assert_true(fb_get_vec(&r, &root, 6, 1, 16, &v, &present));
    assert_true(present);
    assert_int_equal(v.n, 37);
    assert_int_equal(v.pos % 16, 0); /* force_align honoured */
    for (uint32_t i = 0; i < 37; i++)
        assert_int_equal(fb_vec_bytes(&r, &v)[i], i + 1);

    assert_true(fb_get_vec(&r, &root, 7, 8, 8, &v, NULL));
    assert_int_equal(v.n, 3);
    assert_int_equal(v.pos % 8, 0);
    assert_true(fb_vec_i64(&r, &v, 1) == -2);

    assert_true(fb_get_vec(&r, &root, 8, 4, 4, &v, NULL));
    assert_int_equal(v.n, 3);
    uint32_t first_vt = 0;
    for (uint32_t i = 0; i < 3; i++) {
        assert_true(fb_vec_table(&r, &v, i, &t));
        assert_true(fb_get_i32(&r, &t, 0, -1, &i32));
        assert_int_equal(i32, (int)i * 10);
        /* Identical vtables are shared. */
        if (i == 0)
            first_vt = t.vt;
        assert_int_equal(t.vt, first_vt);
    }
    assert_false(fb_vec_table(&r, &v, 3, &t));

    assert_true(fb_get_vec(&r, &root, 9, 4, 4, &v, NULL));
    assert_true(fb_vec_str(&r, &v, 1, &str, &len));
    assert_string_equal(str, "bc");

    assert_true(fb_get_table(&r, &root, 10, &t, &present));
    assert_true(present);
    assert_true(fb_get_i32(&r, &t, 0, 0, &i32));
    assert_int_equal(i32, 42);
    /* The child with the same layout as the vector's children shares their vtable. */
    assert_int_equal(t.vt, first_vt);

    assert_true(fb_get_vec(&r, &root, 11, 4, 4, &v, &present));
    assert_true(present);
    assert_int_equal(v.n, 0);

    assert_true(fb_get_table(&r, &root, 13, &t, &present));
    assert_false(present);
    free(s.data);
}

static void test_build_deterministic(void **state)
{
    (void)state;
    built a = build_sample();
    built b = build_sample();
    assert_int_equal(a.size, b.size);
    assert_memory_equal(a.data, b.data, a.size);
    free(a.data);
    free(b.data);
}

static void test_build_misuse(void **state)
{
    (void)state;
    fb_builder b;
    fb_builder_init(&b);
    fb_start_table(&b);
    /* Creating an object while a table is open is a bug: sticky failure. */
    assert_int_equal(fb_create_string(&b, "x", 1), 0);
    fb_end_table(&b);
    assert_true(b.failed);
    assert_false(fb_finish(&b, 4, NULL));
    size_t n;
    assert_null(fb_release(&b, &n));
    fb_builder_free(&b);

    fb_builder_init(&b);
    fb_start_table(&b);
    fb_add_i32(&b, FB_MAX_FIELDS, 1);
    assert_true(b.failed);
    fb_builder_free(&b);

    fb_builder_init(&b);
    fb_start_table(&b);
    fb_add_ref(&b, 0, 1000); /* not written yet */
    assert_true(b.failed);
    fb_builder_free(&b);
}

/* A chain of nested tables deeper than the limit is refused, one within it
 * is read to the bottom. */
static void test_depth_limit(void **state)
{
    (void)state;
    for (int depth = FB_MAX_DEPTH; depth <= FB_MAX_DEPTH + 1; depth++) {
        fb_builder b;
        fb_builder_init(&b);
        fb_ref child = 0;
        for (int i = 0; i <= depth; i++) {
            fb_start_table(&b);
            fb_add_ref(&b, 0, child);
            child = fb_end_table(&b);
        }
        assert_true(fb_finish(&b, child, NULL));
        size_t n;
        uint8_t *data = fb_release(&b, &n);
        fb_builder_free(&b);
        fb_reader r;
        fb_table t;
        assert_true(fb_reader_init(&r, data, n, NULL));
        assert_true(fb_root(&r, &t));
        bool ok = true, present = true;
        int levels = 0;
        while (ok && present) {
            fb_table next;
            ok = fb_get_table(&r, &t, 0, &next, &present);
            if (ok && present) {
                t = next;
                levels++;
            }
        }
        if (depth <= FB_MAX_DEPTH) {
            assert_true(ok);
            assert_int_equal(levels, depth);
        } else {
            assert_false(ok);
            assert_non_null(strstr(r.why, "nested"));
        }
        free(data);
    }
}

/* One table referenced by a huge vector: the table count limit stops the walk. */
static void test_table_count_limit(void **state)
{
    (void)state;
    uint32_t n = FB_MAX_TABLES + 1;
    fb_builder b;
    fb_builder_init(&b);
    fb_start_table(&b);
    fb_add_i32(&b, 0, 1);
    fb_ref t = fb_end_table(&b);
    fb_ref *refs = malloc(n * sizeof *refs);
    assert_non_null(refs);
    for (uint32_t i = 0; i < n; i++)
        refs[i] = t;
    fb_ref v = fb_create_vec_refs(&b, refs, n);
    free(refs);
    fb_start_table(&b);
    fb_add_ref(&b, 0, v);
    fb_ref root = fb_end_table(&b);
    assert_true(fb_finish(&b, root, NULL));
    size_t size;
    uint8_t *data = fb_release(&b, &size);
    fb_builder_free(&b);
    fb_reader r;
    fb_table rt, el;
    fb_vec vec;
    assert_true(fb_reader_init(&r, data, size, NULL));
    assert_true(fb_root(&r, &rt));
    assert_true(fb_get_vec(&r, &rt, 0, 4, 4, &vec, NULL));
    assert_int_equal(vec.n, n);
    uint32_t i = 0;
    while (i < vec.n && fb_vec_table(&r, &vec, i, &el))
        i++;
    assert_true(i < vec.n);
    assert_non_null(strstr(r.why, "tables"));
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_hand_made),    cmocka_unit_test(test_read_malformed),
        cmocka_unit_test(test_read_truncated),    cmocka_unit_test(test_build_and_read),
        cmocka_unit_test(test_build_deterministic), cmocka_unit_test(test_build_misuse),
        cmocka_unit_test(test_depth_limit),       cmocka_unit_test(test_table_count_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
