// Records what `quant::ggml_reference::tests` (crates/backend/src/quant/ggml_reference.rs) holds:
// ggml's own `quantize_row_{q2_K,q3_K,iq4_nl,iq4_xs}_ref` and `dequantize_row_*` (libggml-base of
// llama.cpp 11434, its CMake build) on inputs both sides compute identically, as FNV-1a 64 hashes
// of the bytes written (quantized blocks, or the f32 bits of dequantized rows).
//
//   B=.cache/llama.cpp/build/bin   # scripts/llama-cpp-build.sh
//   gcc -O2 scripts/ggml-lowbit-quants.c -o target/ggml-lowbit-quants -L$B -lggml-base \
//       -Wl,-rpath,$B && target/ggml-lowbit-quants
//
// Prints per type one line of quantized-row hashes (rows 0..6, see `row`; IQ4_NL only 0..5:
// ggml leaves an all-zero IQ4_NL block's codes as stale scratch) and one dequantization hash.
#include <stdio.h>
#include <stdint.h>
#include <string.h>
void quantize_row_q2_K_ref(const float * x, void * y, int64_t k);
void quantize_row_q3_K_ref(const float * x, void * y, int64_t k);
void quantize_row_iq4_nl_ref(const float * x, void * y, int64_t k);
void quantize_row_iq4_xs_ref(const float * x, void * y, int64_t k);
void dequantize_row_q2_K(const void * x, float * y, int64_t k);
void dequantize_row_q3_K(const void * x, float * y, int64_t k);
void dequantize_row_iq4_nl(const void * x, float * y, int64_t k);
void dequantize_row_iq4_xs(const void * x, float * y, int64_t k);
#define N 512
static uint64_t fnv(const void *p, size_t n) {
  const uint8_t *b = p; uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 0x100000001b3ULL; }
  return h;
}
static float base(int i, int s) { return (float)((int)((i * 7919 + s * 104729) % 2003) - 1001) * 0.00137f; }
// Row r: symmetric; all positive; sparse outliers; tiny; a zero 16-sub-block and a constant run; a zero super-block.
static void row(int r, float *x) {
  for (int i = 0; i < N; i++) {
    float v = base(i, r);
    if (r == 1) v += 1.5f;
    if (r == 2 && i % 37 == 0) v *= 20.0f;
    if (r == 3) v *= 1e-4f;
    if (r == 4 && i >= 48 && i < 64) v = 0.0f;
    if (r == 4 && i >= 100 && i < 110) v = 0.75f;
    if (r == 5 && i >= 256) v = 0.0f;
    x[i] = v;
  }
}
static uint64_t st;
static uint8_t next(void) { st = st * 6364136223846793005ULL + 1442695040888963407ULL; return (uint8_t)(st >> 33); }
int main(void) {
  struct { const char *name; int block, size, d_off, dmin_off, rows; void (*q)(const float *, void *, int64_t); void (*dq)(const void *, float *, int64_t); } t[4] = {
    {"Q2K", 256, 84, 80, 82, 6, quantize_row_q2_K_ref, dequantize_row_q2_K},
    {"Q3K", 256, 110, 108, -1, 6, quantize_row_q3_K_ref, dequantize_row_q3_K},
    {"IQ4NL", 32, 18, 0, -1, 5, quantize_row_iq4_nl_ref, dequantize_row_iq4_nl},
    {"IQ4XS", 256, 136, 0, -1, 6, quantize_row_iq4_xs_ref, dequantize_row_iq4_xs}};
  float x[N], y[2 * N];
  uint8_t q[2 * N];  // at most 2 * 136 bytes per row here
  for (int k = 0; k < 4; k++) {
    printf("%s quantize:", t[k].name);
    for (int r = 0; r < t[k].rows; r++) {
      row(r, x);
      size_t bytes = (size_t)N / t[k].block * t[k].size;
      memset(q, 0, sizeof q);
      t[k].q(x, q, N);
      printf(" 0x%016llx", (unsigned long long)fnv(q, bytes));
    }
    // Dequantize 1024 weights of LCG bytes with f16 scales patched to small values, every other block negative.
    st = 777 + k;
    int nb = 2 * N / t[k].block;
    uint8_t w[4 * 136 + 32 * 18];
    for (int b = 0; b < nb; b++) {
      uint8_t *blk = w + b * t[k].size;
      for (int i = 0; i < t[k].size; i++) blk[i] = next();
      uint16_t d = (uint16_t)((b % 2 ? 0xA000 : 0x2000) + b * 7); memcpy(blk + t[k].d_off, &d, 2);
      if (t[k].dmin_off >= 0) { uint16_t m = (uint16_t)(0x1C00 + b * 5); memcpy(blk + t[k].dmin_off, &m, 2); }
    }
    t[k].dq(w, y, 2 * N);
    printf("\n%s dequantize: 0x%016llx\n", t[k].name, (unsigned long long)fnv(y, sizeof y));
  }
  return 0;
}
