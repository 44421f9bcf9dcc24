/*
 * The client of evict: writes a data set larger than the manager's RAM pool
 * into the managed dataspace, then reads all of it back, twice and in both
 * directions, so that every chunk is evicted and restored several times.
 * Intact data is the proof that revocation and sharing are real: a write
 * that reached a frame after its chunk was detached would corrupt another
 * chunk's data.
 *
 * usage: evict-client TOKEN SIZE
 */
#include <faultline/faultline.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A different value for every word and seed, so that a chunk restored to
 * the wrong place or from a stale copy shows. */
static uint64_t value(uint64_t i, uint64_t seed)
{
    uint64_t z = i * 0x9e3779b97f4a7c15ull + seed;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    return z ^ (z >> 27);
}

static size_t check(const uint64_t *p, size_t words, uint64_t seed, int backwards)
{
    size_t wrong = 0;
    for (size_t k = 0; k < words; k++) {
        size_t i = backwards ? words - 1 - k : k;
        if (p[i] != value(i, seed) && wrong++ < 5)
            printf("evict-client: word at %#zx is %#llx, want %#llx\n", i * 8,
                   (unsigned long long)p[i], (unsigned long long)value(i, seed));
    }
    return wrong;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: evict-client TOKEN SIZE\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    uint64_t size;
    if (fl_parse_size(argv[2], &size) < 0) {
        fprintf(stderr, "evict-client: SIZE '%s' is not a size (bytes, or with K, M or G)\n",
                argv[2]);
        return 2;
    }
    size_t words = size / 8;
    struct fl_env *env;
    fl_cap ds;
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0) return fl_perror("connect to faultline-core", r);
    if ((r = fl_cap_import(env, argv[1], &ds)) < 0) return fl_perror("import", r);
    uint64_t *p = fl_attach(env, ds, &r);
    if (!p) return fl_perror("attach", r);
    for (size_t i = 0; i < words; i++) p[i] = value(i, 1);
    printf("evict-client: wrote %zu KiB\n", size / 1024);
    size_t wrong = check(p, words, 1, 0) + check(p, words, 1, 1);
    /* Overwrite everything once more: chunks now come back from swap, are
     * changed, and go out again. */
    for (size_t i = 0; i < words; i++) p[i] = value(i, 2);
    wrong += check(p, words, 2, 1) + check(p, words, 2, 0);
    printf("evict-client: %zu KiB read back %s\n", size / 1024,
           wrong ? "CORRUPTED" : "intact, four times");
    fl_env_close(env);
    return wrong ? 1 : 0;
}
