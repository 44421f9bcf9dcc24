/*
 * faultline-bench plot and compare: both read the JSON of a run, which is
 * python's business (json, matplotlib), so they exec faultline-bench.py: the
 * one next to this binary (the build tree's copy), else the installed one in
 * libexecdir/faultline/, else $FAULTLINE_BENCH_SCRIPT if that is set (it
 * goes first). The interpreter: $FAULTLINE_PYTHON, else python3 from $PATH
 * (the script moves on to /usr/bin/python3 by itself when plot needs
 * Debian's matplotlib and the first one has none).
 */
#include "bench.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FL_BENCH_SCRIPT
#define FL_BENCH_SCRIPT "/usr/local/libexec/faultline/faultline-bench.py"
#endif

static bool readable(const char *path)
{
    return access(path, R_OK) == 0;
}

static int find_script(char *buf, size_t len)
{
    const char *env = getenv("FAULTLINE_BENCH_SCRIPT");
    if (env && *env) {
        snprintf(buf, len, "%s", env);
        return readable(buf) ? 0 : -1;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, len, "%s/faultline-bench.py", self);
            if (readable(buf)) return 0;
        }
    }
    snprintf(buf, len, "%s", FL_BENCH_SCRIPT);
    return readable(buf) ? 0 : -1;
}

int bench_tool(int argc, char **argv)
{
    char script[PATH_MAX + 32];
    if (find_script(script, sizeof(script)) < 0) {
        fprintf(stderr,
                "faultline-bench: %s: faultline-bench.py not found (tried next to this program, "
                "%s and $FAULTLINE_BENCH_SCRIPT)\n",
                argv[0], FL_BENCH_SCRIPT);
        return 2;
    }
    const char *py = getenv("FAULTLINE_PYTHON");
    if (!py || !*py) py = "python3";
    char **av = calloc((size_t)argc + 3, sizeof(char *));
    if (!av) return 2;
    av[0] = (char *)py;
    av[1] = script;
    for (int i = 0; i < argc; i++) av[i + 2] = argv[i];
    fflush(NULL);
    execvp(py, av);
    fprintf(stderr, "faultline-bench: %s: cannot run %s: %s (Debian: apt-get install python3%s)\n",
            argv[0], py, strerror(errno), strcmp(argv[0], "plot") ? "" : "-matplotlib");
    free(av);
    return 2;
}
