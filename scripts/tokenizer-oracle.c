// llama.cpp's tokenizer as a batch oracle for scripts/gen-tokenizer-vocab-fixtures.py.
//
//   tokenizer-oracle MODEL.gguf < strings > results
//
// stdin: u32 count, then per string u32 length + bytes (little endian). For each string, with
// add_special = 1, stdout gets three lines: the ids with parse_special = 1, the ids with
// parse_special = 0, and llama_detokenize(first ids, remove_special = 1, unparse_special = 0)
// as hex (so that any byte survives).
#include "llama.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static void quiet(enum ggml_log_level level, const char * text, void * user) { (void) level; (void) text; (void) user; }

static uint32_t read_u32(void) {
    unsigned char b[4];
    if (fread(b, 1, 4, stdin) != 4) { fprintf(stderr, "short read\n"); exit(3); }
    return (uint32_t) b[0] | (uint32_t) b[1] << 8 | (uint32_t) b[2] << 16 | (uint32_t) b[3] << 24;
}

static int tokenize(const struct llama_vocab * vocab, const char * text, int len, llama_token * out, int cap, int parse_special) {
    int n = llama_tokenize(vocab, text, len, out, cap, 1, parse_special);
    if (n < 0) { fprintf(stderr, "too many tokens\n"); exit(4); }
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", out[i]);
    printf("\n");
    return n;
}

int main(int argc, char ** argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s MODEL.gguf < strings\n", argv[0]); return 1; }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params params = llama_model_default_params();
    params.vocab_only = 1;
    struct llama_model * model = llama_model_load_from_file(argv[1], params);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 2; }
    const struct llama_vocab * vocab = llama_model_get_vocab(model);
    enum { CAP = 1 << 16 };
    static llama_token ids[CAP], plain[CAP];
    static char text[1 << 20], detok[1 << 20];
    uint32_t count = read_u32();
    for (uint32_t s = 0; s < count; s++) {
        uint32_t len = read_u32();
        if (len >= sizeof text || fread(text, 1, len, stdin) != len) { fprintf(stderr, "bad string %u\n", s); return 3; }
        int n = tokenize(vocab, text, (int) len, ids, CAP, 1);
        tokenize(vocab, text, (int) len, plain, CAP, 0);
        int d = llama_detokenize(vocab, ids, n, detok, sizeof detok, 1, 0);
        if (d < 0) { fprintf(stderr, "detokenize failed\n"); return 5; }
        for (int i = 0; i < d; i++) printf("%02x", (unsigned char) detok[i]);
        printf("\n");
    }
    llama_model_free(model);
    return 0;
}
