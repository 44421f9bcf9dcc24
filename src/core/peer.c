/*
 * Which peers core serves besides its own uid and root (--allow-uid,
 * --allow-group), and the permissions that let exactly those reach the
 * socket: POSIX ACLs on the socket and on its directory, written as the
 * system.posix_acl_access xattr (no libacl needed). SO_PEERCRED decides in
 * the end; the file permissions only keep everybody else from connecting.
 */
#include "../common/log.h"
#include "peer.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#define PEER_MAX 64

static uid_t allow_uid[PEER_MAX];
static gid_t allow_gid[PEER_MAX];
static unsigned nuid, ngid;
static char allow_list[PEER_MAX * 2 * 48]; /* "uids 65534 (nobody), 1000; groups 100 (users)" */

static bool listed(const uint32_t *ids, unsigned n, uint32_t id)
{
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

/* A number, or a name from the user or group database. */
static int add_id(const char *opt, const char *arg, bool group)
{
    uint32_t *ids = group ? allow_gid : allow_uid;
    unsigned *n = group ? &ngid : &nuid;
    const char *what = group ? "group" : "user";
    unsigned long v;
    if (!*arg) {
        fprintf(stderr, "faultline-core: %s wants a %s name or number\n", opt, what);
        return -1;
    }
    if (strspn(arg, "0123456789") == strlen(arg)) {
        errno = 0;
        v = strtoul(arg, NULL, 10);
        if (errno || v >= 0xffffffffUL) {
            fprintf(stderr, "faultline-core: %s %s: not a valid %s id\n", opt, arg, what);
            return -1;
        }
    } else {
        errno = 0;
        struct passwd *pw = group ? NULL : getpwnam(arg);
        struct group *gr = group ? getgrnam(arg) : NULL;
        if (!pw && !gr) {
            fprintf(stderr, "faultline-core: %s %s: no such %s%s%s (give a name or a number)\n",
                    opt, arg, what, errno ? ": " : "", errno ? strerror(errno) : "");
            return -1;
        }
        v = pw ? pw->pw_uid : gr->gr_gid;
    }
    if (listed(ids, *n, (uint32_t)v)) return 0;
    if (*n == PEER_MAX) {
        fprintf(stderr, "faultline-core: %s: at most %d %ss\n", opt, PEER_MAX, what);
        return -1;
    }
    ids[(*n)++] = (uint32_t)v;
    /* The text the log lines name the allow-list by, with the names. */
    size_t len = 0;
    for (int g = 0; g < 2; g++) {
        const uint32_t *l = g ? allow_gid : allow_uid;
        unsigned c = g ? ngid : nuid;
        for (unsigned i = 0; i < c && len < sizeof(allow_list); i++) {
            struct passwd *pw = g ? NULL : getpwuid(l[i]);
            struct group *gr = g ? getgrgid(l[i]) : NULL;
            const char *name = pw ? pw->pw_name : gr ? gr->gr_name : NULL;
            len +=
                (size_t)snprintf(allow_list + len, sizeof(allow_list) - len, "%s%s%u%s%.32s%s",
                                 i ? ", " : (len ? "; " : ""), i ? "" : (g ? "groups " : "uids "),
                                 l[i], name ? " (" : "", name ? name : "", name ? ")" : "");
        }
    }
    return 0;
}

int core_peer_allow_uid(const char *arg)
{
    return add_id("--allow-uid", arg, false);
}

int core_peer_allow_group(const char *arg)
{
    return add_id("--allow-group", arg, true);
}

const char *core_peer_allow_list(void)
{
    return nuid || ngid ? allow_list : "empty";
}

bool core_peer_allowed(int fd, const struct ucred *cred)
{
    if (cred->uid == geteuid() || cred->uid == 0 || listed(allow_uid, nuid, cred->uid)) return true;
    if (!ngid) return false;
    if (listed(allow_gid, ngid, cred->gid)) return true;
    /* The supplementary groups it had when it connected. */
    gid_t some[64], *groups = some;
    socklen_t len = sizeof(some);
    bool ok = false;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
        if (errno != ERANGE || !(groups = malloc(len))) return false;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) len = 0;
    }
    for (size_t i = 0; i < len / sizeof(gid_t) && !ok; i++) ok = listed(allow_gid, ngid, groups[i]);
    if (groups != some) free(groups);
    return ok;
}

/* ---- POSIX ACLs as the kernel reads them from system.posix_acl_access ---- */

#define ACL_XATTR     "system.posix_acl_access"
#define ACL_VERSION   2
#define ACL_USER_OBJ  0x01
#define ACL_USER      0x02
#define ACL_GROUP_OBJ 0x04
#define ACL_GROUP     0x08
#define ACL_MASK      0x10
#define ACL_OTHER     0x20
#define ACL_NO_ID     0xffffffffu

struct acl_entry {
    uint16_t tag, perm;
    uint32_t id;
};

static uint32_t get_le(const unsigned char *p, int bytes)
{
    uint32_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void put_le(unsigned char *p, uint32_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> 8 * i);
}

static int entry_cmp(const void *a, const void *b)
{
    const struct acl_entry *x = a, *y = b;
    if (x->tag != y->tag) return x->tag < y->tag ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static void acl_add(struct acl_entry *e, size_t *n, uint16_t tag, uint32_t id, uint16_t perm)
{
    for (size_t i = 0; i < *n; i++)
        if (e[i].tag == tag && e[i].id == id) {
            e[i].perm |= perm;
            return;
        }
    e[(*n)++] = (struct acl_entry){tag, perm, id};
}

/*
 * Give the allowed uids and groups perm on path, keeping whatever its mode
 * or ACL grants already. Returns 0 or -errno (-EOPNOTSUPP: no ACLs here).
 */
static int acl_grant(const char *path, uint16_t perm)
{
    struct stat st;
    if (stat(path, &st) < 0) return -errno;
    ssize_t len = getxattr(path, ACL_XATTR, NULL, 0);
    if (len < 0 && errno != ENODATA) return -errno;
    size_t max = (len > 0 ? (size_t)len / 8 : 3) + nuid + ngid + 1, n = 0;
    unsigned char *buf = malloc(4 + 8 * max);
    struct acl_entry *e = calloc(max, sizeof(*e));
    int r = 0;
    if (!buf || !e) {
        r = -ENOMEM;
        goto out;
    }
    if (len < 0) {
        /* No ACL yet: the one its mode amounts to. */
        e[n++] = (struct acl_entry){ACL_USER_OBJ, (st.st_mode >> 6) & 7, ACL_NO_ID};
        e[n++] = (struct acl_entry){ACL_GROUP_OBJ, (st.st_mode >> 3) & 7, ACL_NO_ID};
        e[n++] = (struct acl_entry){ACL_OTHER, st.st_mode & 7, ACL_NO_ID};
    } else {
        /* (ERANGE: it grew meanwhile, which nobody but core does.) */
        if ((len = getxattr(path, ACL_XATTR, buf, 4 + 8 * max)) < 0) {
            r = -errno;
            goto out;
        }
        if (len < 4 || (len - 4) % 8 || get_le(buf, 4) != ACL_VERSION) {
            r = -EINVAL;
            goto out;
        }
        for (ssize_t off = 4; off < len; off += 8)
            e[n++] =
                (struct acl_entry){(uint16_t)get_le(buf + off, 2),
                                   (uint16_t)get_le(buf + off + 2, 2), get_le(buf + off + 4, 4)};
    }
    /* The mask bounds the named entries and the owning group. It grows by
     * perm: what it held back from the entries there are drops from them, so
     * that none gets more than it had. */
    uint16_t mask = 0;
    bool has_mask = false;
    for (size_t i = 0; i < n; i++)
        if (e[i].tag == ACL_MASK) mask = e[i].perm, has_mask = true;
    for (size_t i = 0; i < n; i++) {
        if (e[i].tag != ACL_USER && e[i].tag != ACL_GROUP_OBJ && e[i].tag != ACL_GROUP) continue;
        if (has_mask)
            e[i].perm &= mask;
        else
            mask |= e[i].perm;
    }
    bool named = false;
    for (unsigned i = 0; i < nuid; i++) {
        if (allow_uid[i] == st.st_uid || allow_uid[i] == 0) continue; /* owner, root */
        acl_add(e, &n, ACL_USER, allow_uid[i], perm);
        named = true;
    }
    for (unsigned i = 0; i < ngid; i++) {
        acl_add(e, &n, ACL_GROUP, allow_gid[i], perm);
        named = true;
    }
    if (!named) goto out;
    acl_add(e, &n, ACL_MASK, ACL_NO_ID, (uint16_t)(mask | perm));
    qsort(e, n, sizeof(*e), entry_cmp);
    put_le(buf, ACL_VERSION, 4);
    for (size_t i = 0; i < n; i++) {
        put_le(buf + 4 + 8 * i, e[i].tag, 2);
        put_le(buf + 4 + 8 * i + 2, e[i].perm, 2);
        put_le(buf + 4 + 8 * i + 4, e[i].id, 4);
    }
    if (setxattr(path, ACL_XATTR, buf, 4 + 8 * n, 0) < 0) r = -errno;
out:
    free(buf);
    free(e);
    return r;
}

/* An ancestor that lets nobody but its owner and group through (and has no
 * ACL that might) keeps the allowed ids away, whatever core does. */
static void check_ancestors(const char *dir)
{
    char p[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(p, sizeof(p), "%s", dir);
    char *slash;
    while ((slash = strrchr(p, '/'))) {
        if (slash == p)
            slash[1] = 0;
        else
            *slash = 0;
        struct stat st;
        if (stat(p, &st) == 0 && !(st.st_mode & S_IXOTH) && getxattr(p, ACL_XATTR, NULL, 0) < 0) {
            fl_warn("the allowed uids and groups may not reach the socket: %s (mode %04o) does "
                    "not let them through",
                    p, (unsigned)(st.st_mode & 07777));
            return;
        }
        if (slash == p) return;
    }
}

int core_peer_open_socket(const char *path)
{
    if (!nuid && !ngid) return 0;
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    /* The directory: traverse, unless everyone may already, and only if it
     * is core's own (never, say, someone else's or a shared /tmp). */
    struct stat st = {0};
    bool dir_ours = stat(dir, &st) == 0 && st.st_uid == geteuid() && !(st.st_mode & S_IXOTH);
    int r = dir_ours ? acl_grant(dir, 1) : 0;
    if (r == 0) r = acl_grant(path, 6);
    const char *how = dir_ours ? "an ACL on the socket and its directory" : "an ACL on the socket";
    if (r == -EOPNOTSUPP) {
        mode_t mode = (st.st_mode & 07777) | 0011;
        if ((dir_ours && chmod(dir, mode) < 0) || chmod(path, 0666) < 0) {
            fl_error("cannot open %s to the allow-list: %s", path, strerror(errno));
            return -1;
        }
        if (dir_ours)
            fl_warn("the file system of %s has no POSIX ACLs: directory %s is %04o and the "
                    "socket 0666 instead (SO_PEERCRED still refuses all but the allow-list)",
                    path, dir, (unsigned)mode);
        else
            fl_warn("the file system of %s has no POSIX ACLs: the socket is 0666 instead "
                    "(SO_PEERCRED still refuses all but the allow-list)",
                    path);
        how = "mode";
    } else if (r < 0) {
        fl_error("cannot give the allow-list access to %s: %s", path, strerror(-r));
        return -1;
    }
    check_ancestors(dir_ours ? dir : path);
    fl_info("serving the allow-list (%s) besides core's uid %u and root; they reach the socket "
            "by %s%s",
            allow_list, (unsigned)geteuid(), how,
            geteuid() ? "; core is not root, so a component of theirs that misses a revocation "
                        "deadline loses its session but cannot be terminated"
                      : "");
    return 0;
}
