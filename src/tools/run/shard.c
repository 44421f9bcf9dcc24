/*
 * --shard K/N: CI jobs that split one suite among them. The scenarios named
 * on the command line are sorted by their path as given (byte order, so every
 * job sorts alike whatever order its shell expanded a glob in), and shard K
 * (1 to N) runs the K-th, (K+N)-th, (K+2N)-th... of them, in that order. The
 * N shards together run each scenario exactly once.
 */
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int shard_parse(const char *arg, int *k, int *n)
{
    char *end;
    long a = strtol(arg, &end, 10);
    if (end == arg || *end != '/') return -1;
    const char *rest = end + 1;
    long b = strtol(rest, &end, 10);
    if (end == rest || *end || b < 1 || b > 100000 || a < 1 || a > b) return -1;
    *k = (int)a;
    *n = (int)b;
    return 0;
}

static int by_path(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int shard_select(char **paths, int count, int k, int n)
{
    qsort(paths, (size_t)count, sizeof(*paths), by_path);
    int kept = 0;
    for (int i = k - 1; i < count; i += n) paths[kept++] = paths[i];
    return kept;
}
