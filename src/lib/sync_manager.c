/*
 * The manager's side of the synchronous mode (doc/async-vs-sync.md): it
 * offers a region map, takes the channels core hands it (one per client and
 * offer: the manager knows its clients), answers each fault with the map
 * item its resolve callback returns -- the memfd travels in the answer the
 * first time a channel sees its token -- and revokes by asking every
 * client's local region mapper.
 */
#include "sync_wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct mgr_memfd {
    fl_cap ds;
    bool writeable;
    int fd;
    uint64_t handle;
    uint8_t token[FL_TOKEN_BYTES];
};

struct mgr_client {
    uint64_t channel, session, pid;
    int sock;
    uint64_t revoke_sent, revoke_acked; /* the last REVOKE sent to it, acknowledged by it */
    uint64_t *sent;                     /* handles whose memfd went to it */
    size_t nsent, sent_cap;
};

/*
 * Each manager object waits on an epoll set of its own (fl_sync_fd): its
 * wake, an eventfd the env's inbox writes when a new client's channel for
 * this offer arrives (so that a delivery wakes the manager it is for, never
 * another offer's thread), and every client's channel (data: the channel id;
 * core numbers channels from 1, 0 is the wake).
 */
struct fl_sync_manager {
    struct fl_env *env;
    uint64_t offer;
    fl_sync_resolve_fn resolve;
    void *arg;
    int ep, wake;
    struct mgr_client *clients;
    size_t nclients, clients_cap;
    struct mgr_memfd *memfds;
    size_t nmemfds, memfds_cap;
    uint64_t seq;
};

int fl_sync_offer(struct fl_env *env, fl_cap rm, fl_sync_resolve_fn resolve, void *arg,
                  struct fl_sync_manager **mgr)
{
    if (!env || !resolve || !mgr) return -FL_E_INVALID_ARG;
    if (!fl__sync_get(env)) return -FL_E_OUT_OF_RAM;
    struct fl_sync_manager *m = calloc(1, sizeof(*m));
    if (!m) return -FL_E_OUT_OF_RAM;
    m->ep = epoll_create1(EPOLL_CLOEXEC);
    m->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    int r = m->ep < 0 || m->wake < 0 || epoll_ctl(m->ep, EPOLL_CTL_ADD, m->wake, &ev) < 0
                ? (errno == EMFILE || errno == ENFILE ? -FL_E_OUT_OF_CAPS : -FL_E_SYSTEM)
                : 0;
    struct fl_msg_reply rep;
    if (r == 0) r = fl__cap_req(env, FL_REQ_SYNC_OFFER, rm, &rep);
    if (r == 0) r = fl__sync_watch(env, rep.val[0], m->wake);
    if (r < 0) {
        if (m->ep >= 0) close(m->ep);
        if (m->wake >= 0) close(m->wake);
        free(m);
        return r;
    }
    m->env = env;
    m->offer = rep.val[0];
    m->resolve = resolve;
    m->arg = arg;
    *mgr = m;
    return 0;
}

int fl_sync_fd(const struct fl_sync_manager *m)
{
    return m ? m->ep : -FL_E_INVALID_ARG;
}

static void drop_client(struct fl_sync_manager *m, size_t i, const char *why)
{
    struct mgr_client *c = &m->clients[i];
    if (why)
        fprintf(stderr, "faultline: sync manager: client session %llu (pid %llu): %s\n",
                (unsigned long long)c->session, (unsigned long long)c->pid, why);
    epoll_ctl(m->ep, EPOLL_CTL_DEL, c->sock, NULL);
    close(c->sock);
    free(c->sent);
    m->clients[i] = m->clients[--m->nclients];
}

static void take_clients(struct fl_sync_manager *m)
{
    struct fl__sync_fd e;
    int fd;
    while ((fd = fl__sync_take(m->env, FL_SYNC_FD_PEER, 0, m->offer, &e)) >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = e.handle};
        if (!fl__grow((void **)&m->clients, &m->clients_cap, m->nclients, sizeof(*m->clients), 8) ||
            epoll_ctl(m->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            continue;
        }
        m->clients[m->nclients++] = (struct mgr_client){
            .channel = e.handle, .session = e.peer_session, .pid = e.peer_pid, .sock = fd};
    }
}

/* The memfd and token of ds (asked of core once). */
static struct mgr_memfd *memfd_of(struct fl_sync_manager *m, fl_cap ds, bool writeable, int *err)
{
    for (size_t i = 0; i < m->nmemfds; i++)
        if (m->memfds[i].ds == ds && m->memfds[i].writeable == writeable) return &m->memfds[i];
    if (!fl__grow((void **)&m->memfds, &m->memfds_cap, m->nmemfds, sizeof(*m->memfds), 8)) {
        *err = -FL_E_OUT_OF_RAM;
        return NULL;
    }
    struct fl_req_sync_memfd q;
    fl__hdr(&q, FL_REQ_SYNC_MEMFD);
    q.ds = ds;
    q.flags = writeable ? FL_SYNC_TOKEN_WRITEABLE : 0;
    struct fl_msg_reply rep;
    int r = fl__rpc_patient(m->env, &q, sizeof(q), &rep);
    if (r < 0) {
        *err = r;
        return NULL;
    }
    struct fl__sync_fd e;
    int fd = fl__sync_take(m->env, FL_SYNC_FD_MEMFD, rep.val[0], 0, &e);
    if (fd < 0) {
        *err = -FL_E_PROTOCOL;
        return NULL;
    }
    struct mgr_memfd *mf = &m->memfds[m->nmemfds++];
    *mf = (struct mgr_memfd){.ds = ds, .writeable = writeable, .fd = fd, .handle = rep.val[0]};
    memcpy(mf->token, &rep.val[2], FL_TOKEN_BYTES);
    return mf;
}

/* Answer one FAULT of client i; false if the client was dropped. */
static bool answer(struct fl_sync_manager *m, size_t i, const struct fl_sync_msg *q)
{
    struct mgr_client *c = &m->clients[i];
    struct fl_sync_fault f = {
        .client = c->session, .addr = q->addr, .type = (enum fl_fault_type)q->fault};
    struct fl_sync_item item = {0};
    struct fl_sync_msg a = {.magic = FL_SYNC_MAGIC, .type = FL_SYNC_MSG_ITEM, .seq = q->seq};
    int r = m->resolve(m->arg, &f, &item);
    int fd = -1;
    if (r == 0) {
        struct mgr_memfd *mf = memfd_of(m, item.ds, item.writeable, &r);
        if (mf) {
            a.addr = item.addr;
            a.size = item.size;
            a.ds_offset = item.ds_offset;
            a.flags = item.writeable ? FL_SYNC_MSG_WRITE : 0;
            memcpy(a.token, mf->token, FL_TOKEN_BYTES);
            bool sent = false;
            for (size_t k = 0; k < c->nsent && !sent; k++) sent = c->sent[k] == mf->handle;
            if (!sent && fl__grow((void **)&c->sent, &c->sent_cap, c->nsent, sizeof(*c->sent), 8)) {
                c->sent[c->nsent++] = mf->handle;
                a.flags |= FL_SYNC_MSG_FD;
                fd = mf->fd;
            }
        }
    }
    if (r < 0) a.status = r > -FL_E_MAX ? r : -FL_E_SYSTEM;
    if (fl__sync_send(c->sock, &a, fd) < 0) {
        drop_client(m, i, "does not read its channel; cut off");
        return false;
    }
    return true;
}

/* One message from client i; returns 1 (a fault answered), 0, or -1 (dropped). */
static int client_ready(struct fl_sync_manager *m, size_t i)
{
    struct fl_sync_msg q;
    int fd = -1;
    int n = fl__sync_recv(m->clients[i].sock, &q, &fd, 0);
    if (fd >= 0) close(fd);
    if (n == -ETIMEDOUT) return 0;
    if (n <= 0) {
        drop_client(m, i, n == 0 ? NULL : "sent a malformed message; cut off");
        return -1;
    }
    if (q.type == FL_SYNC_MSG_FAULT) return answer(m, i, &q) ? 1 : -1;
    if (q.type == FL_SYNC_MSG_REVOKED && q.seq == m->clients[i].revoke_sent)
        m->clients[i].revoke_acked = q.seq;
    return 0;
}

/* Wait up to timeout_ms on the epoll set and do what is ready: the number of
 * faults answered. No allocation: a batch of ready descriptors at a time, the
 * rest stay ready for the next call. */
static int wait_and_serve(struct fl_sync_manager *m, int timeout_ms)
{
    struct epoll_event ev[32];
    int n = epoll_wait(m->ep, ev, 32, timeout_ms);
    int served = 0;
    for (int k = 0; k < n; k++) {
        if (ev[k].data.u64 == 0) {
            uint64_t v;
            if (read(m->wake, &v, sizeof(v)) < 0) { /* nothing to read */
            }
            continue;
        }
        size_t i = 0; /* clients may have moved: find it by channel */
        while (i < m->nclients && m->clients[i].channel != ev[k].data.u64) i++;
        if (i < m->nclients && client_ready(m, i) > 0) served++;
    }
    take_clients(m); /* after reading the wake: a later delivery writes it again */
    return served;
}

int fl_sync_serve(struct fl_sync_manager *m, int timeout_ms)
{
    take_clients(m);
    return wait_and_serve(m, timeout_ms);
}

/* Whether a client sent REVOKE seq has not acknowledged it yet. */
static bool revoke_pending(const struct fl_sync_manager *m, uint64_t seq)
{
    for (size_t i = 0; i < m->nclients; i++)
        if (m->clients[i].revoke_sent == seq && m->clients[i].revoke_acked != seq) return true;
    return false;
}

int fl_sync_revoke(struct fl_sync_manager *m, uintptr_t addr, size_t size, int timeout_ms)
{
    take_clients(m);
    struct fl_sync_msg q = {.magic = FL_SYNC_MAGIC,
                            .type = FL_SYNC_MSG_REVOKE,
                            .seq = ++m->seq,
                            .addr = addr,
                            .size = size};
    /* Who must acknowledge: those sent it (a client that comes meanwhile
     * maps nothing revoked, and one dropped meanwhile is gone). */
    for (size_t i = 0; i < m->nclients;) {
        if (fl__sync_send(m->clients[i].sock, &q, -1) < 0) {
            drop_client(m, i, "does not read its channel; cut off");
            continue;
        }
        m->clients[i++].revoke_sent = q.seq;
    }
    long deadline = fl__sync_now_ms() + (timeout_ms < 0 ? 3600000L : timeout_ms);
    while (revoke_pending(m, q.seq)) {
        long left = deadline - fl__sync_now_ms();
        if (left <= 0) {
            for (size_t i = 0; i < m->nclients;) {
                struct mgr_client *c = &m->clients[i];
                if (c->revoke_sent == q.seq && c->revoke_acked != q.seq) {
                    drop_client(m, i,
                                "did not acknowledge a revocation in time; cut off "
                                "(only freeing the RAM takes what it still maps)");
                    continue;
                }
                i++;
            }
            return -FL_E_TIMEOUT;
        }
        wait_and_serve(m, (int)(left < 50 ? left : 50));
    }
    return 0;
}

unsigned fl_sync_clients(const struct fl_sync_manager *m)
{
    return (unsigned)m->nclients;
}

void fl_sync_close(struct fl_sync_manager *m)
{
    if (!m) return;
    fl__sync_unwatch(m->env, m->wake);
    while (m->nclients) drop_client(m, 0, NULL);
    for (size_t i = 0; i < m->nmemfds; i++) close(m->memfds[i].fd);
    close(m->ep);
    close(m->wake);
    free(m->clients);
    free(m->memfds);
    free(m);
}
