/*
 * Runs a fuzz harness on saved inputs without libFuzzer: each argument is a
 * file or a directory of files (names starting with '.' or "README" are
 * skipped). Built with the normal compiler for the regression test, so a
 * crash once found stays fixed in every build, ASan or not.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned replayed;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *b = realloc(buf, cap);
            if (!b) abort();
            buf = b;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0) break;
        len += n;
    }
    fclose(f);
    /* Printed first: if the input crashes, the log names it. */
    fprintf(stderr, "replay %s (%zu bytes)\n", path, len);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    replayed++;
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return run_file(path);
    struct dirent **list;
    int n = scandir(path, &list, NULL, NULL);
    if (n < 0) {
        perror(path);
        return -1;
    }
    char **names = calloc((size_t)n + 1, sizeof(*names));
    if (!names) abort();
    for (int i = 0; i < n; i++) {
        names[i] = strdup(list[i]->d_name);
        free(list[i]);
    }
    free(list);
    qsort(names, (size_t)n, sizeof(*names), cmp); /* the same order every run */
    int r = 0;
    for (int i = 0; i < n; i++) {
        if (names[i][0] != '.' && strncmp(names[i], "README", 6)) {
            char full[4096];
            snprintf(full, sizeof(full), "%s/%s", path, names[i]);
            if (run_path(full) < 0) r = -1;
        }
        free(names[i]);
    }
    free(names);
    return r;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    int r = 0;
    for (int i = 1; i < argc; i++)
        if (run_path(argv[i]) < 0) r = 1;
    printf("%u inputs replayed\n", replayed);
    return r;
}
