/* Signal contexts on eventfds: create, destroy, submit, wait. */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

int fl_signal_context_create(struct fl_env *env, fl_cap *sigh)
{
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0) return errno == EMFILE ? -FL_E_OUT_OF_CAPS : -FL_E_SYSTEM;
    struct fl_req_sig_alloc q;
    fl__hdr(&q, FL_REQ_SIG_ALLOC);
    struct fl_msg_reply rep;
    int r = fl__rpc(env, &q, sizeof(q), efd, &rep);
    if (r < 0) {
        close(efd);
        return r;
    }
    pthread_mutex_lock(&env->lock);
    if (!fl__grow((void **)&env->sigs, &env->sigs_cap, env->nsigs, sizeof(*env->sigs), 8)) {
        pthread_mutex_unlock(&env->lock);
        close(efd);
        return -FL_E_OUT_OF_RAM;
    }
    env->sigs[env->nsigs++] = (struct fl__sig){rep.val[0], efd};
    pthread_mutex_unlock(&env->lock);
    *sigh = rep.val[0];
    return 0;
}

int fl_signal_fd(struct fl_env *env, fl_cap sigh)
{
    int fd = -FL_E_INVALID_CAP;
    pthread_mutex_lock(&env->lock);
    for (size_t i = 0; i < env->nsigs; i++)
        if (env->sigs[i].cap == sigh) fd = env->sigs[i].efd;
    pthread_mutex_unlock(&env->lock);
    return fd;
}

int fl_signal_context_destroy(struct fl_env *env, fl_cap sigh)
{
    struct fl_req_cap q;
    fl__hdr(&q, FL_REQ_SIG_FREE);
    q.cap = sigh;
    int r = fl__rpc(env, &q, sizeof(q), -1, NULL);
    if (r < 0) return r;
    pthread_mutex_lock(&env->lock);
    for (size_t i = 0; i < env->nsigs; i++)
        if (env->sigs[i].cap == sigh) {
            close(env->sigs[i].efd);
            env->sigs[i] = env->sigs[--env->nsigs];
            break;
        }
    pthread_mutex_unlock(&env->lock);
    return 0;
}

int fl_signal_submit(struct fl_env *env, fl_cap sigh)
{
    struct fl_req_cap q;
    fl__hdr(&q, FL_REQ_SIG_SUBMIT);
    q.cap = sigh;
    return fl__rpc(env, &q, sizeof(q), -1, NULL);
}

long fl_signal_wait(struct fl_env *env, fl_cap sigh, int timeout_ms)
{
    int fd = fl_signal_fd(env, sigh);
    if (fd < 0) return fd;
    /* Poll first: a manager mostly waits for a signal still to come, and a
     * read first would cost it a call that only says EAGAIN. */
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms);
        if (r == 0) return 0;
        if (r < 0 && errno != EINTR) return -FL_E_SYSTEM;
        uint64_t v;
        if (r > 0 && read(fd, &v, sizeof(v)) == sizeof(v)) return (long)v;
        if (r > 0 && errno != EAGAIN && errno != EINTR) return -FL_E_SYSTEM;
    }
}
