/*
 * The synchronous "local region mapper" mode (doc/async-vs-sync.md), core's
 * part, which is small on purpose: core is never on a synchronous fault's
 * path. It records which region maps a manager serves synchronously
 * (offers), makes the direct channel between a client and that manager (a
 * socketpair, one end to each over their sessions, as agent instructions
 * counted against the descriptor credit) and shows it to faultline-ctl, and
 * vouches for map items: a manager gets a per-dataspace token with the memfd
 * of a RAM dataspace it holds, and a client's local region mapper asks core
 * once per memfd whether the manager at the other end of its channel was
 * issued that token, for which memfd (inode) and which rights. Freeing RAM
 * still punches its memfd, so the kernel still revokes what was freed, in
 * this mode too.
 */
#include "../common/log.h"
#include "agent.h"
#include "ctl.h"
#include "dataspace.h"
#include "object.h"
#include "region_map.h"
#include "rpc.h"
#include "session.h"
#include "sync_channel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bounds on what one session can make core keep (doc/limits.md). */
#define OFFERS_MAX   64   /* per manager session */
#define CHANNELS_MAX 256  /* per client session */
#define TOKENS_MAX   4096 /* per manager session: one per dataspace */

struct offer {
    uint64_t id, session;
    struct fl_region_map *rm; /* referenced */
};

struct channel {
    uint64_t id, manager, client, offer;
};

struct token {
    uint8_t bytes[FL_TOKEN_BYTES];
    uint64_t session;        /* the manager it was issued to */
    struct fl_dataspace *ds; /* referenced */
    bool writeable;
    uint64_t ino, dev, handle;
};

static struct offer *offers;
static size_t noffers, offers_cap;
static struct channel *channels;
static size_t nchannels, channels_cap;
static struct token *tokens;
static size_t ntokens, tokens_cap;
static uint64_t next_offer, next_channel, next_handle;

static bool grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return true;
    size_t c = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, c * size);
    if (!p) return false;
    *arr = p;
    *cap = c;
    return true;
}

static size_t count(uint64_t session, int which)
{
    size_t n = 0;
    if (which == 0)
        for (size_t i = 0; i < noffers; i++) n += offers[i].session == session;
    if (which == 1)
        for (size_t i = 0; i < nchannels; i++) n += channels[i].client == session;
    if (which == 2)
        for (size_t i = 0; i < ntokens; i++) n += tokens[i].session == session;
    return n;
}

static void offer_remove(size_t i)
{
    core_object_unref(&offers[i].rm->obj);
    offers[i] = offers[--noffers];
}

static struct offer *offer_of(const struct fl_dataspace *ds)
{
    for (size_t i = 0; i < noffers;) {
        struct offer *o = &offers[i];
        if (o->rm->obj.dead) {
            offer_remove(i);
            continue;
        }
        if (ds->rm == o->rm && core_session_by_id(o->session)) return o;
        i++;
    }
    return NULL;
}

bool core_sync_offered(const struct fl_dataspace *ds)
{
    return ds->rm && offer_of(ds);
}

int core_sync_rpc_offer(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_sync_offer *m = msg;
    struct fl_region_map *rm = (void *)core_cap_lookup(s, m->rm, FL_OBJ_REGION_MAP);
    if (!rm || !rm->ds) return -EBADF;
    if (rm->obj.owner != s) return -EPERM; /* only the map's creator serves it */
    for (size_t i = 0; i < noffers; i++)
        if (offers[i].rm == rm && !rm->obj.dead) {
            v[0] = offers[i].id; /* offered again: the same offer */
            return 0;
        }
    if (count(s->id, 0) >= OFFERS_MAX) return -EMFILE;
    if (!grow((void **)&offers, &offers_cap, noffers, sizeof(*offers))) return -ENOMEM;
    core_object_ref(&rm->obj);
    offers[noffers++] = (struct offer){++next_offer, s->id, rm};
    v[0] = next_offer;
    fl_info("session %llu (%s): serves a region map synchronously (offer %llu)",
            (unsigned long long)s->id, s->label, (unsigned long long)next_offer);
    return 0;
}

/* A channel's end for one party; peer is the other party. */
static struct fl_msg_agent_sync_fd sync_fd_msg(uint32_t kind, uint64_t channel, uint64_t offer,
                                               const struct fl_session *peer)
{
    struct fl_msg_agent_sync_fd m;
    fl_msg_init(&m, FL_MSG_AGENT_SYNC_FD, 0);
    m.kind = kind;
    m.handle = channel;
    m.offer = offer;
    m.peer_session = peer->id;
    m.peer_pid = (uint64_t)peer->pid;
    return m;
}

int core_sync_rpc_connect(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_sync_connect *m = msg;
    struct fl_dataspace *ds = (void *)core_cap_lookup(s, m->ds, FL_OBJ_DATASPACE);
    if (!ds) return -ENXIO;
    struct offer *o = ds->rm ? offer_of(ds) : NULL;
    if (!o) return -EINVAL; /* not served synchronously (any more) */
    /* A channel is the right to page the dataspace's range of one's own
     * address space: holding its capability is not enough. */
    bool attached = false;
    struct fl_list *pos, *tmp;
    fl_list_for_each_safe(pos, tmp, &ds->regions)
    {
        struct fl_region *r = fl_list_entry(pos, struct fl_region, ds_link);
        attached |= r->rm == s->address_space;
    }
    if (!attached) return -EPERM;
    struct fl_session *mgr = core_session_by_id(o->session);
    if (!mgr) return -EINVAL;
    for (size_t i = 0; i < nchannels; i++)
        if (channels[i].client == s->id && channels[i].offer == o->id) {
            /* One channel per client and offer: the library reuses it. */
            v[0] = channels[i].id;
            v[1] = mgr->id;
            v[2] = (uint64_t)mgr->pid;
            v[3] = 1;
            return 0;
        }
    if (count(s->id, 1) >= CHANNELS_MAX) return -EMFILE;
    /* Both ends count against their session's descriptor credit. A credit
     * that is spent is a wait, not a limit: the agent acknowledges soon, or
     * loses its session at the deadline. So BUSY, and the library asks again
     * (fl__rpc_patient); checked for both before either end is sent, so that
     * a retry leaves no dead channel behind. */
    if (!core_agent_fd_credit(mgr) || !core_agent_fd_credit(s)) return -EBUSY;
    if (!grow((void **)&channels, &channels_cap, nchannels, sizeof(*channels))) return -ENOMEM;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return -EMFILE;
    uint64_t id = ++next_channel;
    struct fl_msg_agent_sync_fd to_mgr = sync_fd_msg(FL_SYNC_FD_PEER, id, o->id, s),
                                to_client = sync_fd_msg(FL_SYNC_FD_CHANNEL, id, o->id, mgr);
    int r = 0;
    if (!core_agent_send_fd(mgr, &to_mgr, sizeof(to_mgr), sv[0]))
        r = -EBUSY;
    else if (!core_agent_send_fd(s, &to_client, sizeof(to_client), sv[1]))
        r = -EBUSY; /* not after the check above; the manager would see its end hang up */
    close(sv[0]);
    close(sv[1]);
    if (r < 0) return r;
    channels[nchannels++] = (struct channel){id, mgr->id, s->id, o->id};
    fl_info("sync channel %llu: session %llu (%s) pages through session %llu (%s) directly",
            (unsigned long long)id, (unsigned long long)s->id, s->label,
            (unsigned long long)mgr->id, mgr->label);
    v[0] = id;
    v[1] = mgr->id;
    v[2] = (uint64_t)mgr->pid;
    return 0;
}

static void token_remove(size_t i)
{
    core_object_unref(&tokens[i].ds->obj);
    tokens[i] = tokens[--ntokens];
}

int core_sync_rpc_memfd(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_sync_memfd *m = msg;
    struct fl_dataspace *ds = (void *)core_cap_lookup(s, m->ds, FL_OBJ_DATASPACE);
    if (!ds || ds->memfd < 0 || !ds->ready || ds->moving) return -ENXIO; /* RAM only */
    bool w = (m->flags & FL_SYNC_TOKEN_WRITEABLE) && !ds->read_only;
    struct token *t = NULL;
    for (size_t i = 0; i < ntokens && !t; i++)
        if (tokens[i].session == s->id && tokens[i].ds == ds && tokens[i].writeable == w)
            t = &tokens[i];
    if (!t) {
        if (count(s->id, 2) >= TOKENS_MAX) return -EMFILE;
        if (!grow((void **)&tokens, &tokens_cap, ntokens, sizeof(*tokens))) return -ENOMEM;
        struct stat st;
        if (fstat(ds->memfd, &st) < 0) return -EIO; /* no inode lock: attributes only */
        t = &tokens[ntokens];
        *t = (struct token){.session = s->id,
                            .ds = ds,
                            .writeable = w,
                            .ino = (uint64_t)st.st_ino,
                            .dev = (uint64_t)st.st_dev,
                            .handle = ++next_handle};
        if (getrandom(t->bytes, FL_TOKEN_BYTES, 0) != FL_TOKEN_BYTES) return -EIO;
        core_object_ref(&ds->obj);
        ntokens++;
    }
    struct fl_msg_agent_sync_fd out;
    fl_msg_init(&out, FL_MSG_AGENT_SYNC_FD, 0);
    out.kind = FL_SYNC_FD_MEMFD;
    out.handle = t->handle;
    if (!core_agent_send_fd(s, &out, sizeof(out), ds->memfd)) return -EBUSY; /* as for CONNECT */
    v[0] = t->handle;
    v[1] = ds->size;
    memcpy(&v[2], t->bytes, FL_TOKEN_BYTES);
    return 0;
}

int core_sync_rpc_verify(struct fl_session *s, const void *msg, int *fd, uint64_t v[4])
{
    (void)fd;
    const struct fl_req_sync_verify *m = msg;
    const struct channel *c = NULL;
    for (size_t i = 0; i < nchannels && !c; i++)
        if (channels[i].id == m->channel && channels[i].client == s->id) c = &channels[i];
    if (!c) return -EBADF;
    for (size_t i = 0; i < ntokens; i++) {
        struct token *t = &tokens[i];
        uint8_t diff = 0;
        for (unsigned j = 0; j < FL_TOKEN_BYTES; j++) diff |= t->bytes[j] ^ m->token[j];
        if (diff || t->session != c->manager) continue;
        if (t->ds->obj.dead) return -ENXIO; /* freed: its memfd is punched */
        v[0] = t->ds->size;
        v[1] = t->writeable ? FL_SYNC_TOKEN_WRITEABLE : 0;
        v[2] = t->ino;
        v[3] = t->dev;
        return 0;
    }
    core_session_log(s, FL_LOG_WARN,
                     "session %llu (%s): sync channel %llu: a map item with a token its manager "
                     "(session %llu) was never issued; refused",
                     (unsigned long long)s->id, s->label, (unsigned long long)c->id,
                     (unsigned long long)c->manager);
    return -EPERM;
}

void core_sync_session_gone(struct fl_session *s)
{
    for (size_t i = 0; i < noffers;)
        if (offers[i].session == s->id)
            offer_remove(i);
        else
            i++;
    for (size_t i = 0; i < ntokens;)
        if (tokens[i].session == s->id)
            token_remove(i);
        else
            i++;
    for (size_t i = 0; i < nchannels;)
        if (channels[i].manager == s->id || channels[i].client == s->id)
            channels[i] = channels[--nchannels];
        else
            i++;
    if (!noffers && !ntokens && !nchannels) {
        free(offers);
        free(tokens);
        free(channels);
        offers = NULL;
        tokens = NULL;
        channels = NULL;
        offers_cap = tokens_cap = channels_cap = 0;
    }
}

void core_sync_ctl_dump(struct fl_ctl_out *o)
{
    for (size_t i = 0; i < nchannels; i++)
        core_ctl_line(o,
                      "sync channel %llu: client session %llu pages through manager session "
                      "%llu directly (offer %llu)",
                      (unsigned long long)channels[i].id, (unsigned long long)channels[i].client,
                      (unsigned long long)channels[i].manager,
                      (unsigned long long)channels[i].offer);
}
