/* gemm.h - the training engine's float GEMM (internal).
 *
 *   C[M,N] = (accumulate ? C : 0) + A[M,K] * B[K,N]
 *
 * A is read in place (never copied) in one of three forms:
 *   TR_A_ROWS    A(i,k) = a[i*lda + k]            (row-major)
 *   TR_A_KMAJOR  A(i,k) = a[k*lda + i]            (column-major, e.g. dZ^T)
 *   TR_A_CONV    A = im2col(image) of a convolution, rows = output pixels,
 *                columns (ky, kx, ic): read through per-tap row pointers
 *                ("indirect GEMM"), so no im2col buffer exists
 *   TR_A_CONVT   A = im2col(image)^T: rows = im2col columns (ky, kx, ic),
 *                k = output pixels; read through one pointer per pixel to MR
 *                consecutive channels (needs C % MR == 0; weight gradients)
 * B is packed into panels of NR columns, either from a strided matrix
 *   B(k,j) = b[k*b_rs + j*b_cs]   or from im2col(image) (TR_B_CONV, rows =
 *   output pixels, used for weight gradients).
 *
 * Result definition: K is cut into blocks whose boundaries depend only on
 * the shapes (TR_GEMM_KC columns; for TR_A_CONV all taps at once when
 * C <= TR_GEMM_KC, else per tap and TR_GEMM_KC channels); for each block
 * acc = 0, acc = fmaf(A(i,k), B(k,j), acc) in k order, then
 * C(i,j) = (first block && !accumulate) ? acc : C(i,j) + acc.
 * Every micro-kernel follows it, threads split over C tiles only: results
 * are bit-identical for any ISA variant, tile size and thread count.
 */
#ifndef MOPT_TRAIN_GEMM_H
#define MOPT_TRAIN_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TR_GEMM_KC 256
#define TR_GEMM_MC 96
#define TR_GEMM_NC 1024

/* Micro-kernels compute one MR x NR tile from a B panel bp (kc rows of NR
 * floats, row stride ldb: NR when packed, or the matrix's own row stride
 * when B is row-major with a full panel of columns) and write rows < mr,
 * columns < nr of c (row stride ldc): c = acc or c += acc.
 *  rows:   ks taps of kc columns each; a = ks*MR row pointers, tap-major:
 *          A(r, t*kc + k) = a[t*MR + r][k] (rows >= mr repeat a valid row);
 *          bp holds ks*kc rows
 *  kmajor: A(r,k) = a[k*lda + r] for r < MR (all MR rows readable) */
typedef void (*tr_ukernel_rows_fn)(size_t kc, size_t ks, const float *const *a, const float *bp,
                                   size_t ldb, float *c, size_t ldc, size_t mr, size_t nr,
                                   bool accumulate);
typedef void (*tr_ukernel_kmajor_fn)(size_t kc, const float *a, size_t lda, const float *bp,
                                     size_t ldb, float *c, size_t ldc, size_t mr, size_t nr,
                                     bool accumulate);
/* kptr: A(r,k) = a[k][off + r] for r < MR (one pointer per k) */
typedef void (*tr_ukernel_kptr_fn)(size_t kc, const float *const *a, size_t off, const float *bp,
                                   size_t ldb, float *c, size_t ldc, size_t mr, size_t nr,
                                   bool accumulate);

typedef struct tr_ukernel {
    const char *name; /* "f32_gemm_8x32__avx512f", ... */
    int mr, nr;
    tr_ukernel_rows_fn rows;
    tr_ukernel_kmajor_fn kmajor;
    tr_ukernel_kptr_fn kptr;
} tr_ukernel;

extern const tr_ukernel tr_ukernel_ref;    /* scalar reference (defines the result) */
extern const tr_ukernel tr_ukernel_avx2;   /* AVX2 + FMA */
extern const tr_ukernel tr_ukernel_avx512; /* AVX-512F */

/* Best kernel the CPU supports (checked at run time). */
const tr_ukernel *tr_ukernel_best(void);

/* Convolution geometry for implicit im2col (NHWC, weights [OC,KH,KW,IC]). */
typedef struct tr_conv_geom {
    int B, H, W, C, OH, OW, OC;
    int kh, kw, sh, sw, dh, dw, pt, pl;
} tr_conv_geom;

enum { TR_A_ROWS = 0, TR_A_KMAJOR = 1, TR_A_CONV = 2, TR_A_CONVT = 3 };
enum { TR_B_STRIDED = 0, TR_B_CONV = 1 };

typedef struct tr_gemm_a {
    int mode;
    const float *a;            /* matrix, or the image batch (TR_A_CONV) */
    ptrdiff_t lda;
    const tr_conv_geom *conv;  /* TR_A_CONV(T): the convolution over images [0, conv->B) */
    const float *zero;         /* TR_A_CONV(T): at least conv->C zeros (padding taps) */
} tr_gemm_a;

typedef struct tr_gemm_b {
    int mode;
    const float *b;            /* matrix, or the image batch (TR_B_CONV) */
    ptrdiff_t rs, cs;          /* TR_B_STRIDED */
    const tr_conv_geom *conv;  /* TR_B_CONV: B(k,j) = im2col row k, column j */
} tr_gemm_b;

#ifndef MOPT_TRAIN_POOL_T
#define MOPT_TRAIN_POOL_T
typedef struct tr_pool tr_pool;
#endif

/* pool may be NULL (serial). */
void tr_gemm_ex(const tr_ukernel *uk, int64_t M, int64_t N, int64_t K, const tr_gemm_a *a,
                const tr_gemm_b *b, float *c, ptrdiff_t ldc, bool accumulate, tr_pool *pool);

/* Plain strided GEMM with the best kernel: A(i,k) = a[i*a_rs + k*a_cs] must
 * have a_cs == 1 (rows) or a_rs == 1 (k-major). */
void tr_gemm(int64_t M, int64_t N, int64_t K, const float *a, ptrdiff_t a_rs, ptrdiff_t a_cs,
             const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs, float *c, ptrdiff_t ldc,
             bool accumulate, tr_pool *pool);

#endif
