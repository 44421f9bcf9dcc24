#include "proc.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* /proc/PID (or /proc/self) followed by what. */
static void proc_path(char *buf, size_t len, pid_t pid, const char *what)
{
    if (pid)
        snprintf(buf, len, "/proc/%d/%s", (int)pid, what);
    else
        snprintf(buf, len, "/proc/self/%s", what);
}

int t_proc_fd_count(pid_t pid)
{
    return t_proc_fds_with(pid, "", NULL, 0);
}

int t_proc_fds_with(pid_t pid, const char *text, int *fds, int max)
{
    char dir[64];
    proc_path(dir, sizeof(dir), pid, "fd");
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[64 + sizeof(e->d_name)], link[256];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        ssize_t len = readlink(path, link, sizeof(link) - 1);
        if (len < 0) continue;
        link[len] = 0;
        if (!strstr(link, text)) continue;
        if (fds && n < max) fds[n] = atoi(e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

int t_proc_maps_overlapping(pid_t pid, uintptr_t lo, uintptr_t hi, char *out, size_t len)
{
    char path[64], line[512];
    proc_path(path, sizeof(path), pid, "maps");
    if (out && len) out[0] = 0;
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx", &a, &b) != 2 || a >= hi || b <= lo) continue;
        if (!n++ && out && len) {
            line[strcspn(line, "\n")] = 0;
            snprintf(out, len, "%s", line);
        }
    }
    fclose(f);
    return n;
}

int t_proc_line(char *buf, size_t len, const char *fmt, ...)
{
    char path[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    buf[0] = 0;
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    int r = fgets(buf, (int)len, f) ? 0 : -1;
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
    return r;
}

int t_file_lines_matching(const char *path, int max, const char *const *texts, size_t n)
{
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    char line[4096];
    int count = 0;
    while (count < max && fgets(line, sizeof(line), f)) {
        size_t i = 0;
        while (i < n && strstr(line, texts[i])) i++;
        count += i == n;
    }
    fclose(f);
    return count;
}

int t_file_lines_withv(const char *path, int max, const char *text, va_list ap)
{
    const char *texts[8];
    size_t n = 0;
    for (const char *t = text; t && n < sizeof(texts) / sizeof(texts[0]);
         t = va_arg(ap, const char *))
        texts[n++] = t;
    return t_file_lines_matching(path, max, texts, n);
}

int t_file_lines_with(const char *path, int max, const char *text, ...)
{
    va_list ap;
    va_start(ap, text);
    int n = t_file_lines_withv(path, max, text, ap);
    va_end(ap);
    return n;
}
