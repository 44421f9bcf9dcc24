/*
 * Two components share one RAM dataspace: the owner allocates it, attaches
 * it, writes a greeting, exports a capability token and starts a peer with
 * the token on its command line; the peer imports it, attaches it into its
 * own address space, reads the greeting and answers in the same memory.
 *
 * usage: share               the owner forks the peer itself
 *        share --owner       publishes the dataspace as GREETING and a signal
 *                            context as DONE (for faultline-run, see
 *                            examples/share.scenario), waits for DONE
 *        share --peer TOKEN [DONE_TOKEN]
 */
#include <faultline/faultline.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int peer(const char *token, const char *done_token)
{
    struct fl_env *env;
    fl_cap ds, done;
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0) return fl_perror("connect", r);
    if ((r = fl_cap_import(env, token, &ds)) < 0) return fl_perror("import", r);
    char *p = fl_attach(env, ds, &r);
    if (!p) return fl_perror("attach", r);
    printf("[peer] reads: \"%s\"\n", p);
    strcpy(p + 2048, "hello back from the peer");
    fl_detach(env, p);
    /* Tell an owner that did not fork us that the answer is there. */
    if (done_token) {
        if ((r = fl_cap_import(env, done_token, &done)) < 0) return fl_perror("import DONE", r);
        if ((r = fl_signal_submit(env, done)) < 0) return fl_perror("submit DONE", r);
    }
    fl_env_close(env);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && !strcmp(argv[1], "--peer")) return peer(argv[2], argc > 3 ? argv[3] : NULL);
    bool own_peer = !(argc == 2 && !strcmp(argv[1], "--owner"));
    struct fl_env *env;
    fl_cap ds;
    int r;
    if ((r = fl_env_open(&env, NULL)) < 0) return fl_perror("connect to faultline-core", r);
    if ((r = fl_ram_alloc(env, 4096, &ds)) < 0) return fl_perror("ram alloc", r);
    char *p = fl_attach(env, ds, &r);
    if (!p) return fl_perror("attach", r);
    snprintf(p, 2048, "hello from pid %d", (int)getpid());
    printf("[owner] wrote \"%s\" at %p\n", p, (void *)p);
    char token[FL_TOKEN_LEN + 1];
    if ((r = fl_cap_export(env, ds, token)) < 0) return fl_perror("export", r);
    printf("[owner] exported the dataspace as token %.8s...\n", token);
    if (own_peer) {
        pid_t pid = fork();
        if (pid == 0) {
            execl("/proc/self/exe", argv[0], "--peer", token, (char *)NULL);
            _exit(127);
        }
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) {
            fprintf(stderr, "share: peer failed\n");
            return 1;
        }
    } else {
        fl_cap done;
        char done_token[FL_TOKEN_LEN + 1];
        if ((r = fl_signal_context_create(env, &done)) < 0) return fl_perror("signal context", r);
        if ((r = fl_cap_export(env, done, done_token)) < 0) return fl_perror("export DONE", r);
        if (fl_publish("GREETING", token) < 0 || fl_publish("DONE", done_token) < 0) return 1;
        long n = fl_signal_wait(env, done, -1);
        if (n < 0) return fl_perror("wait for DONE", (int)n);
        printf("[owner] the peer signalled DONE\n");
    }
    printf("[owner] reads what the peer wrote: \"%s\"\n", p + 2048);
    int ok = !strcmp(p + 2048, "hello back from the peer");
    fl_ram_free(env, ds);
    fl_env_close(env);
    printf("%s\n", ok ? "share: OK, both components saw the same memory" : "share: FAILED");
    return ok ? 0 : 1;
}
