// Records the bits `k_quant_dots_equal_ggml_bits`, `low_bit_dots_equal_ggml_bits` and
// `q4_k_equals_ggml_repacked_gemm_bits` (crates/backend-cpu/src/qmatmul/tests.rs) hold: ggml's own
// x86 `quantize_row_q8_K` and `ggml_vec_dot_{q5_K,q6_K,q2_K,q3_K,iq4_xs}_q8_K` on LCG-made blocks,
// `quantize_row_q8_0` and `ggml_vec_dot_iq4_nl_q8_0` on 15 IQ4_NL blocks per row (an odd count:
// ggml's scalar tail block), and for Q4_K what llama.cpp runs on x86: rows
// repacked 8 at a time (`make_block_q4_Kx8`, transcribed below from repack.cpp), activations by
// `ggml_quantize_mat_q8_K_4x8`, dots by `ggml_gemm_q4_K_8x8_q8_K` (its AVX-512 path for 16 rows).
//
//   B=.cache/llama.cpp/build/bin   # scripts/llama-cpp-build.sh
//   gcc -O2 scripts/ggml-kquant-dots.c -o target/ggml-kquant-dots -L$B -lggml-cpu -lggml-base \
//       -Wl,-rpath,$B && target/ggml-kquant-dots
//
// Prints, per type, the 8 dots [activation row][weight row] as f32 bit patterns, then the Q4_K
// GEMM's 64 (4 activation rows x 16 weight rows).
//
// The activation rows are `x[i] = ((i * 7919) % 2003 - 1001) * 0.00137` (4 x 512; IQ4_NL 4 x 480).
#include <stdio.h>
#include <stdint.h>
#include <string.h>
void quantize_row_q8_K(const float * x, void * y, int64_t k);
void ggml_vec_dot_q4_K_q8_K(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nrc);
void ggml_vec_dot_q5_K_q8_K(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nrc);
void ggml_vec_dot_q6_K_q8_K(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nrc);
void ggml_vec_dot_q2_K_q8_K(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nrc);
void ggml_vec_dot_q3_K_q8_K(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nrc);
void ggml_vec_dot_iq4_xs_q8_K(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nrc);
void ggml_vec_dot_iq4_nl_q8_0(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nrc);
void quantize_row_q8_0(const float * x, void * y, int64_t k);
#define C 512 // two super-blocks per row
static uint64_t st;
static uint8_t next(void) { st = st * 6364136223846793005ULL + 1442695040888963407ULL; return (uint8_t)(st >> 33); }
// Fills `rows` rows of `nb` blocks of `size` bytes; f16 fields at d_off (and dmin_off if >= 0) patched.
static void fill(uint8_t *w, int rows, int nb, int size, int d_off, int dmin_off) {
  for (int r = 0; r < rows; r++) for (int b = 0; b < nb; b++) {
    uint8_t *blk = w + (r * nb + b) * size;
    for (int i = 0; i < size; i++) blk[i] = next();
    uint16_t d = 0x2000 + r * 7 + b * 3; memcpy(blk + d_off, &d, 2);
    if (dmin_off >= 0) { uint16_t m = 0x1C00 + r * 5 + b; memcpy(blk + dmin_off, &m, 2); }
  }
}
void ggml_quantize_mat_q8_K_4x8(const float * x, void * vy, int64_t k);
void ggml_gemm_q4_K_8x8_q8_K(int n, float * s, size_t bs, const void * vx, const void * vy, int nr, int nc);
// ggml's block_q4_Kx8 from 8 block_q4_K (d, dmin, scales[12], qs[128]): make_block_q4_Kx8, 8-byte interleave.
static void make_q4_kx8(const uint8_t *in[8], uint8_t *out) {
  uint16_t *d = (uint16_t *)out, *dmin = d + 8; uint8_t *sc = out + 32, *qs = out + 128;
  for (int i = 0; i < 8; i++) { memcpy(d + i, in[i], 2); memcpy(dmin + i, in[i] + 2, 2); }
  for (int i = 0; i < 128; i++) memcpy(qs + 8 * i, in[i % 8] + 16 + (i / 8) * 8, 8);
  for (int half = 0; half < 2; half++) for (int i = 0; i < 4; i++) {
    uint8_t s[8], m[8];
    for (int j = 0; j < 8; j++) {
      const uint8_t *q = in[j] + 4;
      if (!half) { s[j] = q[i] & 63; m[j] = q[i + 4] & 63; }
      else { s[j] = ((q[i] & 192) >> 2) | (q[i + 8] & 15); m[j] = ((q[i + 4] & 192) >> 2) | ((q[i + 8] & 240) >> 4); }
    }
    uint8_t *o = sc + 48 * half + 12 * i;
    for (int j = 0; j < 4; j++) { o[j] = (s[j] & 63) + ((s[j + 4] & 48) << 2); o[4 + j] = (m[j] & 63) + ((m[j + 4] & 48) << 2); o[8 + j] = (s[j + 4] & 15) + ((m[j + 4] & 15) << 4); }
  }
}
void ggml_cpu_init(void);
int main(void) {
  ggml_cpu_init();
  float x[4 * C];
  for (int i = 0; i < 4 * C; i++) x[i] = (float)((int)((i * 7919) % 2003) - 1001) * 0.00137f;
  // block_q8_K: f32 d, 256 qs, 16 int16 bsums = 292 bytes
  uint8_t q8[4][2 * 292];
  for (int r = 0; r < 4; r++) quantize_row_q8_K(x + r * C, q8[r], C);
  struct { const char *name; int size, d_off, dmin_off; void (*dot)(int, float*, size_t, const void*, size_t, const void*, size_t, int); } k[6] = {
    {"Q4K", 144, 0, 2, ggml_vec_dot_q4_K_q8_K}, {"Q5K", 176, 0, 2, ggml_vec_dot_q5_K_q8_K}, {"Q6K", 210, 208, -1, ggml_vec_dot_q6_K_q8_K},
    {"Q2K", 84, 80, 82, ggml_vec_dot_q2_K_q8_K}, {"Q3K", 110, 108, -1, ggml_vec_dot_q3_K_q8_K}, {"IQ4XS", 136, 0, -1, ggml_vec_dot_iq4_xs_q8_K}};
  for (int t = 0; t < 6; t++) {
    st = 12345 + t;
    uint8_t w[2 * 2 * 210];
    fill(w, 2, 2, k[t].size, k[t].d_off, k[t].dmin_off);
    printf("%s:", k[t].name);
    for (int r = 0; r < 4; r++) for (int i = 0; i < 2; i++) {
      float s; k[t].dot(C, &s, 0, w + i * 2 * k[t].size, 0, q8[r], 0, 1);
      uint32_t b; memcpy(&b, &s, 4); printf(" 0x%08x", b);
    }
    printf("\n");
  }
  // IQ4_NL against Q8_0 activations: 15 blocks of 32 per row.
  {
    enum { CN = 480, NB = CN / 32 };
    float xn[4 * CN];
    for (int i = 0; i < 4 * CN; i++) xn[i] = (float)((int)((i * 7919) % 2003) - 1001) * 0.00137f;
    uint8_t q80[4][NB * 34], wn[2 * NB * 18];
    for (int r = 0; r < 4; r++) quantize_row_q8_0(xn + r * CN, q80[r], CN);
    st = 12351;
    fill(wn, 2, NB, 18, 0, -1);
    printf("IQ4NL:");
    for (int r = 0; r < 4; r++) for (int i = 0; i < 2; i++) {
      float s; ggml_vec_dot_iq4_nl_q8_0(CN, &s, 0, wn + i * NB * 18, 0, q80[r], 0, 1);
      uint32_t b; memcpy(&b, &s, 4); printf(" 0x%08x", b);
    }
    printf("\n");
  }
  // Q4_K as llama.cpp multiplies it on x86: 16 rows repacked, 4 activation rows at once.
  st = 12345;
  uint8_t w4[16 * 2 * 144], packed[2 * 2 * 1152], q8x4[2 * 1060];
  fill(w4, 16, 2, 144, 0, 2);
  for (int g = 0; g < 2; g++) for (int b = 0; b < 2; b++) {
    const uint8_t *in[8];
    for (int j = 0; j < 8; j++) in[j] = w4 + ((g * 8 + j) * 2 + b) * 144;
    make_q4_kx8(in, packed + (g * 2 + b) * 1152);
  }
  ggml_quantize_mat_q8_K_4x8(x, q8x4, C);
  float s4[4 * 16];
  ggml_gemm_q4_K_8x8_q8_K(C, s4, 16, packed, q8x4, 4, 16);
  printf("Q4K gemm:");
  for (int i = 0; i < 64; i++) { uint32_t b; memcpy(&b, s4 + i, 4); printf(" 0x%08x", b); }
  printf("\n");
  return 0;
}
