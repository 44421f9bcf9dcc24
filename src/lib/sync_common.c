/* The synchronous mode's state in an env: the inbox of descriptors core sends
 * (as FL_MSG_AGENT_SYNC_FD instructions, which the agent hands here), and the
 * channel wire's send and receive. */
#include "sync_wire.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct fl__sync *fl__sync_get(struct fl_env *env)
{
    struct fl__sync *s = atomic_load(&env->sync);
    if (s) return s;
    pthread_mutex_lock(&env->lock);
    s = atomic_load(&env->sync);
    if (!s && (s = calloc(1, sizeof(*s)))) {
        pthread_mutex_init(&s->lock, NULL);
        s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->efd < 0) {
            pthread_mutex_destroy(&s->lock);
            free(s);
            s = NULL;
        } else {
            atomic_store(&env->sync, s);
        }
    }
    pthread_mutex_unlock(&env->lock);
    return s;
}

int fl__sync_deliver(struct fl_env *env, const struct fl_msg_agent_sync_fd *m, int fd)
{
    struct fl__sync *s = fl__sync_get(env);
    if (fd < 0) return -EBADF;
    if (!s) {
        close(fd);
        return -ENOMEM;
    }
    pthread_mutex_lock(&s->lock);
    if (!fl__grow((void **)&s->inbox, &s->inbox_cap, s->ninbox, sizeof(*s->inbox), 8)) {
        pthread_mutex_unlock(&s->lock);
        close(fd);
        return -ENOMEM;
    }
    s->inbox[s->ninbox++] =
        (struct fl__sync_fd){m->kind, m->handle, m->offer, m->peer_session, m->peer_pid, fd};
    /* A new client's channel wakes the manager objects of its offer only (a
     * memfd is taken by the thread that asked for it, after the reply). */
    uint64_t one = 1;
    bool woke = false;
    for (size_t i = 0; i < s->nwakers; i++)
        if (m->kind == FL_SYNC_FD_PEER && s->wakers[i].offer == m->offer) {
            if (write(s->wakers[i].fd, &one, sizeof(one)) < 0) { /* counter full: it wakes */
            }
            woke = true;
        }
    pthread_mutex_unlock(&s->lock);
    if (!woke && write(s->efd, &one, sizeof(one)) < 0) { /* counter full: readers look anyway */
    }
    return 0;
}

int fl__sync_watch(struct fl_env *env, uint64_t offer, int fd)
{
    struct fl__sync *s = fl__sync_get(env);
    if (!s) return -FL_E_OUT_OF_RAM;
    pthread_mutex_lock(&s->lock);
    bool ok = fl__grow((void **)&s->wakers, &s->wakers_cap, s->nwakers, sizeof(*s->wakers), 4);
    if (ok) s->wakers[s->nwakers++] = (struct fl__sync_waker){offer, fd};
    pthread_mutex_unlock(&s->lock);
    return ok ? 0 : -FL_E_OUT_OF_RAM;
}

void fl__sync_unwatch(struct fl_env *env, int fd)
{
    struct fl__sync *s = atomic_load(&env->sync);
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->nwakers; i++)
        if (s->wakers[i].fd == fd) {
            s->wakers[i] = s->wakers[--s->nwakers];
            break;
        }
    pthread_mutex_unlock(&s->lock);
}

int fl__sync_take(struct fl_env *env, uint32_t kind, uint64_t handle, uint64_t offer,
                  struct fl__sync_fd *out)
{
    struct fl__sync *s = fl__sync_get(env);
    if (!s) return -1;
    int fd = -1;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->ninbox; i++) {
        struct fl__sync_fd *e = &s->inbox[i];
        if (e->kind != kind || (handle && e->handle != handle) || (offer && e->offer != offer))
            continue;
        *out = *e;
        fd = e->fd;
        memmove(e, e + 1, (s->ninbox - i - 1) * sizeof(*e));
        s->ninbox--;
        break;
    }
    pthread_mutex_unlock(&s->lock);
    return fd;
}

void fl__sync_env_close(struct fl_env *env)
{
    struct fl__sync *s = atomic_load(&env->sync);
    if (!s) return;
    fl__lrm_stop(env);
    for (size_t i = 0; i < s->ninbox; i++) close(s->inbox[i].fd);
    free(s->inbox);
    free(s->wakers);
    close(s->efd);
    pthread_mutex_destroy(&s->lock);
    free(s);
    atomic_store(&env->sync, NULL);
}

int fl__sync_send(int sock, const struct fl_sync_msg *m, int fd)
{
    return fl_wire_send(sock, m, sizeof(*m), fd,
                        MSG_DONTWAIT); /* a peer that does not read is dropped */
}

int fl__sync_recv(int sock, struct fl_sync_msg *m, int *fd, int timeout_ms)
{
    *fd = -1;
    for (;;) {
        struct pollfd p = {.fd = sock, .events = POLLIN};
        int n = poll(&p, 1, timeout_ms);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) return -ETIMEDOUT;
        _Alignas(8) uint8_t buf[sizeof(struct fl_sync_msg) + 1];
        int fds[FL_WIRE_MAX_FDS], nfds = 0, trunc = 0;
        ssize_t r = fl_wire_recv(sock, buf, sizeof(buf), fds, &nfds, MSG_DONTWAIT, &trunc);
        if (r == -EAGAIN || r == -EINTR) continue;
        for (int i = 1; i < nfds; i++) close(fds[i]);
        if (r <= 0) {
            if (nfds) close(fds[0]);
            return r == 0 || r == -ECONNRESET ? 0 : (int)r;
        }
        memcpy(m, buf, sizeof(*m));
        if (trunc || (size_t)r != sizeof(*m) || m->magic != FL_SYNC_MAGIC) {
            if (nfds) close(fds[0]);
            return -EPROTO;
        }
        *fd = nfds ? fds[0] : -1;
        return 1;
    }
}

long fl__sync_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000;
}
