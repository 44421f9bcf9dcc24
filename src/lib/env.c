/* The component's session with core: connecting, the window, RPC. */
#include "internal.h"

#include "../common/config.h"
#include "../common/os.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

void fl__hdr(void *msg, unsigned type)
{
    fl_msg_init(msg, type, 0); /* the id is set when it is sent */
}

/* An environment variable that is set, and to anything but "" or "0". */
static bool env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0");
}

static bool verbose(void)
{
    return env_flag("FAULTLINE_VERBOSE");
}

/* Non-dumpable, or any process of this uid could re-open the memfds core
 * hands us through /proc/PID/fd/N, take the uffd and the socket with
 * pidfd_getfd, and read or write our memory with process_vm_readv/writev or
 * ptrace. Root with CAP_SYS_PTRACE keeps that access. Our own reads of
 * /proc/self (the agent reads /proc/self/maps) stay allowed. */
static int make_non_dumpable(const struct fl_env_config *cfg)
{
    if (cfg->dumpable || env_flag("FAULTLINE_DUMPABLE")) {
        if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1)
            fprintf(stderr,
                    "faultline: pid %d stays dumpable (%s): any process of uid %u can read and "
                    "write its memory and take its descriptors\n",
                    (int)getpid(), cfg->dumpable ? "fl_env_config.dumpable" : "$FAULTLINE_DUMPABLE",
                    (unsigned)geteuid());
        return 0;
    }
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        fprintf(stderr, "faultline: cannot make this process non-dumpable: %s\n", strerror(errno));
        return -FL_E_SYSTEM;
    }
    return 0;
}

/* The way core and the tests open one (src/common/os.c), with user-mode only
 * as the last resort. */
static int new_uffd(bool *user_mode, const char **how_out)
{
    int fd = fl_uffd_new(O_NONBLOCK, user_mode, how_out);
    if (fd < 0) fprintf(stderr, "faultline: cannot open a userfaultfd: %s\n", strerror(-fd));
    return fd < 0 ? -1 : fd;
}

/*
 * The uffd, with the features core relies on, and the exact faulting address
 * (UFFD_FEATURE_EXACT_ADDRESS, Linux 5.18): fault() reports the byte, as on
 * Genode. A kernel without it refuses the whole request (EINVAL), and a uffd
 * takes UFFDIO_API once: then a fresh one without it, whose READ and WRITE
 * faults name their page's first byte (core says so once at start-up).
 */
static int open_uffd(bool *user_mode)
{
    const uint64_t need =
        UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
    const char *how = NULL;
    for (int exact = 1; exact >= 0; exact--) {
        int fd = new_uffd(user_mode, &how);
        if (fd < 0) return -1;
        struct uffdio_api api = {.api = UFFD_API,
                                 .features = need | (exact ? UFFD_FEATURE_EXACT_ADDRESS : 0)};
        if (ioctl(fd, UFFDIO_API, &api) == 0) {
            if (*user_mode || verbose())
                fprintf(stderr, "faultline: userfaultfd via %s%s\n", how,
                        exact ? ""
                              : "; without UFFD_FEATURE_EXACT_ADDRESS (fault addresses of "
                                "READ and WRITE faults are page-granular)");
            return fd;
        }
        int e = errno;
        close(fd);
        if (!exact || e != EINVAL) {
            fprintf(stderr, "faultline: UFFDIO_API failed: %s\n", strerror(e));
            return -1;
        }
    }
    return -1;
}

/* path fits sun_path (fl_env_open checked); from says whence it came. */
static int connect_core(const char *path, const char *from)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return -FL_E_SYSTEM;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        if (e == EAGAIN) return -FL_E_BUSY; /* a full backlog: try again */
        /* The error code cannot say which socket: this line does. */
        bool perm = e == EACCES || e == EPERM;
        fprintf(stderr, "faultline: %s %s (%s): %s\n",
                perm ? "not allowed to connect to" : "no faultline-core serves", path, from,
                strerror(e));
        return perm ? -FL_E_PERMISSION : -FL_E_NO_CORE;
    }
    return fd;
}

/* Where core listens (cfg, else fl_socket_path's rule) into path, which has
 * room for a Unix socket address; a path too long for one is an error that
 * says so. */
static int socket_path(const struct fl_env_config *cfg, char path[108], const char **from)
{
    char full[PATH_MAX + 64];
    int n;
    if (cfg->socket_path) {
        *from = "fl_env_config.socket_path";
        n = snprintf(full, sizeof(full), "%s", cfg->socket_path);
    } else {
        n = fl_config_socket_path(full, sizeof(full), from);
    }
    if (n < 0 || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        fprintf(stderr,
                "faultline: core's socket path %s (%s) is %d bytes long; a Unix socket path "
                "has at most %zu\n",
                full, *from, n, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        return -FL_E_INVALID_ARG;
    }
    memcpy(path, full, (size_t)n + 1);
    return 0;
}

/* The agent: it must never take a signal meant for the program (a SIGTERM
 * that a manager turns into a stop request through a signalfd would kill
 * the process on the agent's thread), so it starts with every asynchronous
 * signal blocked; the synchronous ones stay as they are. */
static int start_agent(struct fl_env *env)
{
    static const int synchronous[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS};
    sigset_t all, old;
    sigfillset(&all);
    for (size_t i = 0; i < sizeof(synchronous) / sizeof(synchronous[0]); i++)
        sigdelset(&all, synchronous[i]);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int r = pthread_create(&env->agent, NULL, fl__agent_main, env);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

int fl__rpc(struct fl_env *env, void *req, size_t len, int fd, struct fl_msg_reply *reply)
{
    struct fl_msg_hdr *h = req;
    struct fl__pending p = {0};
    pthread_mutex_lock(&env->lock);
    if (env->dead) {
        int refused = env->refused;
        pthread_mutex_unlock(&env->lock);
        return refused < 0 ? refused : -FL_E_SESSION_CLOSED;
    }
    h->id = p.id = ++env->next_id;
    p.next = env->pending;
    env->pending = &p;
    pthread_mutex_unlock(&env->lock);

    /* Sent outside env->lock, so the agent can deliver replies meanwhile. */
    int sent = fl_wire_send(env->sock, req, len, fd, 0);
    /* A peer core closed on us: the agent still reads why (and the EOF). */
    bool closed = sent == -EPIPE || sent == -ECONNRESET;

    pthread_mutex_lock(&env->lock);
    if (sent == 0 || closed)
        while (!p.done && !env->dead) pthread_cond_wait(&env->cond, &env->lock);
    struct fl__pending **pp = &env->pending;
    while (*pp && *pp != &p) pp = &(*pp)->next;
    if (*pp) *pp = p.next;
    int refused = env->refused;
    pthread_mutex_unlock(&env->lock);
    if (!p.done) return refused < 0 ? refused : -FL_E_SESSION_CLOSED;
    if (reply) *reply = p.reply;
    return p.reply.status;
}

/* Exactly FL_TOKEN_LEN hex digits: no sign, space or prefix. */
static int parse_token(const char *token, uint8_t out[FL_TOKEN_BYTES])
{
    if (!token || strlen(token) != FL_TOKEN_LEN) return -FL_E_TOKEN;
    memset(out, 0, FL_TOKEN_BYTES);
    for (int i = 0; i < FL_TOKEN_LEN; i++) {
        char ch = token[i];
        int v = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (v < 0) return -FL_E_TOKEN;
        out[i / 2] = (uint8_t)(out[i / 2] << 4 | v);
    }
    return 0;
}

static void format_token(const uint8_t in[FL_TOKEN_BYTES], char token[FL_TOKEN_LEN + 1])
{
    for (int i = 0; i < FL_TOKEN_BYTES; i++) sprintf(token + 2 * i, "%02x", in[i]);
}

int fl_env_open(struct fl_env **out, const struct fl_env_config *cfg)
{
    struct fl_env_config def = {0};
    if (!cfg) cfg = &def;
    /* The configuration first, all of it: a bad value is reported (one line
     * naming the variable and the value) before anything is set up. */
    char path[108];
    const char *from;
    int r = socket_path(cfg, path, &from);
    if (r < 0) return r;
    uint64_t wsize = cfg->window_size, budget = FL_VMA_BUDGET_DEFAULT;
    if (!wsize) {
        wsize = 1ull << 30;
        r = fl_config_env("faultline", "FAULTLINE_WINDOW_SIZE", FL_CONFIG_SIZE, 1,
                          UINT64_MAX - 4095, &wsize);
        if (r < 0) return r;
    }
    wsize = (wsize + 4095) & ~(uint64_t)4095;
    r = fl_config_env("faultline", "FAULTLINE_VMA_BUDGET", FL_CONFIG_COUNT, 4, 1u << 30, &budget);
    if (r < 0) return r;
    uintptr_t wbase = cfg->window_base;
    const char *pd_token = cfg->pd_token;
    char pd_env[FL_TOKEN_LEN + 1] = "";
    const char *pd_var = getenv("FAULTLINE_PD_TOKEN");
    if (!pd_token && pd_var) {
        uint8_t bytes[FL_TOKEN_BYTES];
        if (parse_token(pd_var, bytes) < 0) {
            fprintf(stderr,
                    "faultline: $FAULTLINE_PD_TOKEN: '%s' is not a token of %d hex digits\n",
                    pd_var, FL_TOKEN_LEN);
            return -FL_E_TOKEN;
        }
        /* Single use: a grandchild must not inherit it. */
        snprintf(pd_env, sizeof(pd_env), "%s", pd_var);
        unsetenv("FAULTLINE_PD_TOKEN");
        pd_token = pd_env;
    }
    r = make_non_dumpable(cfg);
    if (r < 0) return r;

    struct fl_env *env = calloc(1, sizeof(*env));
    if (!env) return -FL_E_OUT_OF_RAM;
    pthread_mutex_init(&env->lock, NULL);
    pthread_cond_init(&env->cond, NULL);
    env->uffd = -1;
    env->window = MAP_FAILED;
    r = connect_core(path, from);
    if (r < 0) {
        free(env);
        return r;
    }
    env->sock = r;
    fl__cache_init(env, (size_t)budget);
    if (start_agent(env)) {
        close(env->sock);
        free(env);
        return -FL_E_SYSTEM;
    }
    env->agent_running = true;
    fl__agent_atfork_init();
    fl__segv_install();

    struct fl_msg_reply rep;
    if (pd_token) {
        /* A session our parent created: take it over, with the window it chose. */
        struct fl_req_pd_claim c;
        fl__hdr(&c, FL_REQ_PD_CLAIM);
        if ((r = parse_token(pd_token, c.token)) < 0) goto fail;
        if ((r = fl__rpc(env, &c, sizeof(c), -1, &rep)) < 0) goto fail;
        wbase = rep.val[0];
        wsize = rep.val[1];
    }

    /* The window: reserved, never backed by silent anonymous zeros once the
     * uffd is registered, and never inherited by a fork. */
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    if (wbase) flags |= MAP_FIXED_NOREPLACE;
    env->window = mmap((void *)wbase, wsize, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (env->window == MAP_FAILED) {
        r = errno == EEXIST ? -FL_E_REGION_CONFLICT : -FL_E_OUT_OF_RAM;
        goto fail;
    }
    env->window_size = wsize;
    madvise(env->window, wsize, MADV_DONTFORK);
    bool user_mode;
    env->uffd = open_uffd(&user_mode);
    if (env->uffd < 0) {
        r = -FL_E_NOT_SUPPORTED;
        goto fail;
    }
    struct uffdio_register reg = {.range = {.start = (uintptr_t)env->window, .len = wsize},
                                  .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(env->uffd, UFFDIO_REGISTER, &reg) < 0) {
        fprintf(stderr, "faultline: cannot register the window with userfaultfd: %s\n",
                strerror(errno));
        r = -FL_E_NOT_SUPPORTED;
        goto fail;
    }

    struct fl_req_hello h;
    fl__hdr(&h, FL_REQ_HELLO);
    h.version = FL_PROTO_VERSION;
    h.flags = FL_HELLO_UFFD | (user_mode ? FL_HELLO_USER_MODE_UFFD : 0);
    h.window_base = (uintptr_t)env->window;
    h.window_size = wsize;
    r = fl__rpc(env, &h, sizeof(h), env->uffd, &rep);
    if (r == -FL_E_VERSION)
        fprintf(stderr,
                "faultline: core speaks protocol version %llu, this libfaultline speaks %u\n",
                (unsigned long long)rep.val[2], FL_PROTO_VERSION);
    if (r < 0) goto fail;
    env->session_id = rep.val[0];
    env->address_space = rep.val[1];
    pthread_mutex_lock(&env->lock);
    env->established = true;
    pthread_mutex_unlock(&env->lock);
    *out = env;
    return 0;

fail:
    pthread_mutex_lock(&env->lock);
    env->closing = true;
    pthread_mutex_unlock(&env->lock);
    shutdown(env->sock, SHUT_RDWR);
    pthread_join(env->agent, NULL);
    if (env->uffd >= 0) close(env->uffd);
    if (env->window != MAP_FAILED) munmap(env->window, wsize);
    close(env->sock);
    fl__cache_fini(env);
    free(env);
    return r;
}

int fl_pd_create(struct fl_env *env, const struct fl_pd_config *cfg, fl_cap *address_space,
                 char token[FL_TOKEN_LEN + 1])
{
    struct fl_req_pd_create q;
    fl__hdr(&q, FL_REQ_PD_CREATE);
    q.ram_quota = cfg->ram_quota;
    q.cap_quota = cfg->cap_quota;
    q.window_size = cfg->window_size ? (cfg->window_size + 4095) & ~(size_t)4095 : 1ull << 30;
    q.window_base = cfg->window_base ? cfg->window_base : FL_PD_WINDOW_BASE;
    struct fl_msg_reply rep;
    int r = fl__rpc(env, &q, sizeof(q), -1, &rep);
    if (r < 0) return r;
    *address_space = rep.val[0];
    format_token(rep.token, token);
    return 0;
}

/* The two upgrades' requests are laid out alike: fl__upgrade sends either. */
_Static_assert(sizeof(struct fl_req_pd_upgrade) == sizeof(struct fl_req_rm_session_upgrade) &&
                   offsetof(struct fl_req_pd_upgrade, pd) ==
                       offsetof(struct fl_req_rm_session_upgrade, rms) &&
                   offsetof(struct fl_req_pd_upgrade, ram_quota) ==
                       offsetof(struct fl_req_rm_session_upgrade, ram_quota) &&
                   offsetof(struct fl_req_pd_upgrade, cap_quota) ==
                       offsetof(struct fl_req_rm_session_upgrade, cap_quota),
               "PD_UPGRADE and RM_SESSION_UPGRADE");

int fl__upgrade(struct fl_env *env, unsigned type, fl_cap to, size_t ram_quota, size_t cap_quota)
{
    struct fl_req_pd_upgrade q;
    fl__hdr(&q, type);
    q.pd = to;
    q.ram_quota = ram_quota;
    q.cap_quota = cap_quota;
    return fl__rpc(env, &q, sizeof(q), -1, NULL);
}

int fl_pd_upgrade(struct fl_env *env, fl_cap pd, size_t ram_quota, size_t cap_quota)
{
    return fl__upgrade(env, FL_REQ_PD_UPGRADE, pd, ram_quota, cap_quota);
}

void fl_env_close(struct fl_env *env)
{
    if (!env) return;
    fl__sync_env_close(env); /* the local region mapper, while the session still works */
    pthread_mutex_lock(&env->lock);
    env->closing = true;
    pthread_mutex_unlock(&env->lock);
    shutdown(env->sock, SHUT_RDWR);
    if (env->agent_running) pthread_join(env->agent, NULL);
    close(env->sock);
    for (size_t i = 0; i < env->nmemfds; i++) close(env->memfds[i].fd);
    for (size_t i = 0; i < env->nsigs; i++) close(env->sigs[i].efd);
    munmap(env->window, env->window_size);
    const void *fp = atomic_load(&env->fault_page);
    if (fp) munmap((void *)fp, FL_FAULT_PAGE_SIZE);
    close(env->uffd);
    free(env->memfds);
    free(env->sigs);
    fl__cache_fini(env);
    pthread_mutex_destroy(&env->lock);
    pthread_cond_destroy(&env->cond);
    free(env);
}

fl_cap fl_env_address_space(const struct fl_env *env)
{
    return env->address_space;
}

void *fl_env_window_base(const struct fl_env *env)
{
    return env->window;
}

size_t fl_env_window_size(const struct fl_env *env)
{
    return env->window_size;
}

int fl_env_session_info(struct fl_env *env, struct fl_session_info *info)
{
    struct fl_req_session_info q;
    fl__hdr(&q, FL_REQ_SESSION_INFO);
    struct fl_msg_reply rep;
    int r = fl__rpc(env, &q, sizeof(q), -1, &rep);
    if (r < 0) return r;
    info->ram_quota = rep.val[0];
    info->ram_used = rep.val[1];
    info->cap_quota = rep.val[2];
    info->cap_used = rep.val[3];
    info->session_id = env->session_id;
    return 0;
}

int fl__rpc_patient(struct fl_env *env, void *req, size_t len, struct fl_msg_reply *reply)
{
    long waited_us = 0;
    for (long us = 500;; us = us < 32000 ? us * 2 : us) {
        int r = fl__rpc(env, req, len, -1, reply);
        if (r != -FL_E_BUSY || waited_us >= FL__BUSY_MS * 1000L) return r;
        struct timespec ts = {0, us * 1000};
        nanosleep(&ts, NULL);
        waited_us += us;
    }
}

int fl__cap_req(struct fl_env *env, unsigned type, fl_cap cap, struct fl_msg_reply *rep)
{
    struct fl_req_cap q;
    fl__hdr(&q, type);
    q.cap = cap;
    return fl__rpc(env, &q, sizeof(q), -1, rep);
}

int fl__rpc_val(struct fl_env *env, void *req, size_t len, uint64_t *val)
{
    struct fl_msg_reply rep;
    int r = fl__rpc(env, req, len, -1, &rep);
    if (r == 0) *val = rep.val[0];
    return r;
}

bool fl__grow(void **arr, size_t *cap, size_t n, size_t size, size_t first)
{
    if (n < *cap) return true;
    size_t c = *cap ? *cap * 2 : first;
    void *p = realloc(*arr, c * size);
    if (!p) return false;
    *arr = p;
    *cap = c;
    return true;
}

int fl_cap_export(struct fl_env *env, fl_cap cap, char token[FL_TOKEN_LEN + 1])
{
    struct fl_msg_reply rep;
    int r = fl__cap_req(env, FL_REQ_CAP_EXPORT, cap, &rep);
    if (r < 0) return r;
    format_token(rep.token, token);
    return 0;
}

int fl_cap_import(struct fl_env *env, const char *token, fl_cap *cap)
{
    struct fl_req_cap_import q;
    fl__hdr(&q, FL_REQ_CAP_IMPORT);
    int r = parse_token(token, q.token);
    if (r < 0) return r;
    return fl__rpc_val(env, &q, sizeof(q), cap);
}

int fl_cap_release(struct fl_env *env, fl_cap cap)
{
    return fl__cap_req(env, FL_REQ_CAP_RELEASE, cap, NULL);
}
