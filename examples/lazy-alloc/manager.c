/*
 * lazy-alloc: a dataspace manager that backs a managed dataspace on demand.
 * It creates a managed region map, installs a fault handler on it, exports
 * the map's dataspace and hands the token to a client. Whenever the client
 * touches an unbacked page, core reflects the fault here as a signal; the
 * manager asks core for the fault state, fills a fresh RAM chunk and attaches
 * it at the faulting address; core then resumes the client.
 *
 * usage: lazy-alloc [--chunk SIZE] [--size SIZE] [--client PATH]
 *          starts the client itself (lazy-client next to this binary) and
 *          exits with its status;
 *        lazy-alloc [--chunk SIZE] [--size SIZE] --serve NAME [--serve NAME...]
 *          publishes one token per NAME (for faultline-run, see
 *          examples/lazy-alloc.scenario) and serves until SIGTERM.
 */
#define _POSIX_C_SOURCE 200809L /* readlink, also under cc -std=c17 */

#include <faultline/faultline.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CLIENTS 8

/* --size and --chunk take sizes as every faultline program does: 1048576, 1M. */
static int size_arg(const char *opt, const char *arg, size_t *out)
{
    uint64_t v;
    if (fl_parse_size(arg, &v) < 0) {
        fprintf(stderr, "lazy-alloc: %s: '%s' is not a size (bytes, or with K, M or G)\n", opt,
                arg);
        return -1;
    }
    *out = v;
    return 0;
}

/* Back the chunk around a fault: a fresh RAM dataspace, filled so that the
 * client can tell it got this manager's memory, attached at the fault. */
static int back_chunk(struct fl_env *env, fl_cap rm, uintptr_t addr, size_t chunk)
{
    uintptr_t at = addr & ~(uintptr_t)(chunk - 1);
    fl_cap ds;
    int r;
    if ((r = fl_ram_alloc(env, chunk, &ds)) < 0) return fl_perror("ram alloc", r);
    /* Fill it through our own attachment: the client must see this. */
    unsigned char *p = fl_attach(env, ds, &r);
    if (!p) return fl_perror("attach locally", r);
    for (size_t i = 0; i < chunk; i += 4096)
        snprintf((char *)p + i, 64, "page %#lx", (unsigned long)(at + i));
    fl_detach(env, p);
    struct fl_attr a = {.use_at = true, .at = at, .writeable = true};
    struct fl_range range;
    if ((r = fl_region_map_attach(env, rm, ds, &a, &range)) < 0) return fl_perror("attach", r);
    printf("manager: attach %zu KiB at %#lx -> client resumes\n", chunk / 1024,
           (unsigned long)range.start);
    return 0;
}

/* One signal may stand for several faults: serve until none is left. */
static int serve_faults(struct fl_env *env, fl_cap rm, size_t chunk)
{
    for (;;) {
        struct fl_fault f;
        int r;
        if ((r = fl_region_map_fault(env, rm, &f)) < 0) return fl_perror("fault()", r);
        if (f.type == FL_FAULT_NONE) return 0;
        printf("manager: fault() -> %s at %#lx\n", fl_fault_type_name(f.type),
               (unsigned long)f.addr);
        if (back_chunk(env, rm, f.addr, chunk)) return 1;
    }
}

/* The original mode: start the client ourselves, serve until it exits. */
static int run_client(struct fl_env *env, fl_cap rm, fl_cap sigh, const char *token,
                      const char *client, size_t size, size_t chunk)
{
    char sz[32];
    snprintf(sz, sizeof(sz), "%zu", size);
    pid_t pid = fork();
    if (pid == 0) {
        execl(client, client, token, sz, (char *)NULL);
        perror("exec client");
        _exit(127);
    }
    for (;;) {
        long n = fl_signal_wait(env, sigh, 100);
        if (n < 0) return fl_perror("signal wait", (int)n);
        if (n > 0) printf("manager: fault signal (count %ld)\n", n);
        if (serve_faults(env, rm, chunk)) return 1;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            printf("manager: client exited with %d\n", status);
            return status;
        }
    }
}

int main(int argc, char **argv)
{
    size_t chunk = 64 * 1024, size = 1024 * 1024;
    const char *client = NULL, *serve[MAX_CLIENTS];
    int nserve = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--chunk") || !strcmp(argv[i], "--size")) {
            if (size_arg(argv[i], argv[i + 1], !strcmp(argv[i], "--chunk") ? &chunk : &size) < 0)
                return 2;
        } else if (!strcmp(argv[i], "--client")) {
            client = argv[i + 1];
        } else if (!strcmp(argv[i], "--serve") && nserve < MAX_CLIENTS) {
            serve[nserve++] = argv[i + 1];
        }
    }
    if (!chunk || (chunk & (chunk - 1)) || chunk % 4096) {
        fprintf(stderr, "lazy-alloc: --chunk must be a power of two of at least 4096\n");
        return 2;
    }
    if (!client && !nserve) {
        /* the client sits next to this binary */
        static char path[4096];
        ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 16);
        if (n < 0) return 1;
        path[n] = 0;
        strcpy(strrchr(path, '/') + 1, "lazy-client");
        client = path;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (nserve && fl_manager_catch_stop() < 0) return 1;

    struct fl_env *env;
    fl_cap rms, rm, sigh, mds;
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0) return fl_perror("connect to faultline-core", r);
    if ((r = fl_rm_session_open(env, &rms)) < 0) return fl_perror("RM session", r);
    if ((r = fl_rm_create(env, rms, size, &rm)) < 0) return fl_perror("rm create", r);
    if ((r = fl_signal_context_create(env, &sigh)) < 0) return fl_perror("signal context", r);
    if ((r = fl_region_map_fault_handler(env, rm, sigh)) < 0) return fl_perror("fault handler", r);
    if ((r = fl_region_map_dataspace(env, rm, &mds)) < 0) return fl_perror("dataspace()", r);
    printf("manager: managed dataspace of %zu KiB, chunks of %zu KiB\n", size / 1024, chunk / 1024);

    char token[FL_TOKEN_LEN + 1];
    if (!nserve) {
        if ((r = fl_cap_export(env, mds, token)) < 0) return fl_perror("export", r);
        int status = run_client(env, rm, sigh, token, client, size, chunk);
        fl_env_close(env);
        return status;
    }

    /* A token is single-use: one per client. */
    for (int i = 0; i < nserve; i++) {
        if ((r = fl_cap_export(env, mds, token)) < 0) return fl_perror("export", r);
        if (fl_publish(serve[i], token) < 0) return 1;
    }
    long n;
    while ((n = fl_manager_wait(env, sigh, -1)) > 0) {
        printf("manager: fault signal (count %ld)\n", n);
        if (serve_faults(env, rm, chunk)) return 1;
    }
    if (n < 0) return fl_perror("signal wait", (int)n);
    printf("manager: stopped\n");
    fl_env_close(env);
    return 0;
}
