// Records the bits `k_quant_dots_equal_ggml_bits` (crates/backend-cpu/src/qmatmul/tests.rs) holds:
// ggml's own x86 `quantize_row_q8_K` and `ggml_vec_dot_q{4,5,6}_K_q8_K` on LCG-made blocks.
//
//   B=.cache/llama.cpp/build/bin   # scripts/llama-cpp-build.sh
//   gcc -O2 scripts/ggml-kquant-dots.c -o target/ggml-kquant-dots -L$B -lggml-cpu -lggml-base \
//       -Wl,-rpath,$B && target/ggml-kquant-dots
//
// Prints, per type, the 8 dots [activation row][weight row] as f32 bit patterns.
#include <stdio.h>
#include <stdint.h>
#include <string.h>
void quantize_row_q8_K(const float * x, void * y, int64_t k);
void ggml_vec_dot_q4_K_q8_K(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nrc);
void ggml_vec_dot_q5_K_q8_K(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nrc);
void ggml_vec_dot_q6_K_q8_K(int n, float * s, size_t bs, const void * vx, size_t bx, const void * vy, size_t by, int nrc);
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
void ggml_cpu_init(void);
int main(void) {
  ggml_cpu_init();
  float x[4 * C];
  for (int i = 0; i < 4 * C; i++) x[i] = (float)((int)((i * 7919) % 2003) - 1001) * 0.00137f;
  // block_q8_K: f32 d, 256 qs, 16 int16 bsums = 292 bytes
  uint8_t q8[4][2 * 292];
  for (int r = 0; r < 4; r++) quantize_row_q8_K(x + r * C, q8[r], C);
  struct { const char *name; int size, d_off, dmin_off; void (*dot)(int, float*, size_t, const void*, size_t, const void*, size_t, int); } k[3] = {
    {"Q4K", 144, 0, 2, ggml_vec_dot_q4_K_q8_K}, {"Q5K", 176, 0, 2, ggml_vec_dot_q5_K_q8_K}, {"Q6K", 210, 208, -1, ggml_vec_dot_q6_K_q8_K}};
  for (int t = 0; t < 3; t++) {
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
  return 0;
}
