/*
 * faultline-ctl's views of a dump: records parsed into KEY=VALUE pairs, then
 * printed as text (sessions, then each map as a tree, then the waiting
 * faults by map) or as one JSON object (doc/faultline-ctl.md).
 */
#include "view.h"

#include "../../common/protocol.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEYS  24
#define MAX_DEPTH 4 /* nested maps shown inside a tree */

struct rec {
    char kind[16];
    int n;
    char *key[MAX_KEYS], *val[MAX_KEYS];
    char *buf;
};

struct dump {
    struct rec *r;
    size_t n, cap;
    char *pending; /* a record that goes on in the next line */
    size_t pending_len;
    unsigned long long left_out;
};

struct dump *dump_new(void)
{
    return calloc(1, sizeof(struct dump));
}

void dump_free(struct dump *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) free(d->r[i].buf);
    free(d->r);
    free(d->pending);
    free(d);
}

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : tolower(c) - 'a' + 10;
}

static void unescape(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (s[0] == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
            *o++ = (char)(hexval((unsigned char)s[1]) * 16 + hexval((unsigned char)s[2]));
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
}

static void add_record(struct dump *d, char *text)
{
    unsigned long long n;
    if (sscanf(text, "... %llu more lines left out", &n) == 1) {
        d->left_out += n;
        free(text);
        return;
    }
    if (d->n == d->cap) {
        size_t c = d->cap ? d->cap * 2 : 64;
        struct rec *r = realloc(d->r, c * sizeof(*r));
        if (!r) {
            free(text);
            return;
        }
        d->r = r;
        d->cap = c;
    }
    struct rec *r = &d->r[d->n++];
    memset(r, 0, sizeof(*r));
    r->buf = text;
    char *save = NULL, *w = strtok_r(text, " ", &save);
    snprintf(r->kind, sizeof(r->kind), "%s", w ? w : "");
    while ((w = strtok_r(NULL, " ", &save)) && r->n < MAX_KEYS) {
        char *eq = strchr(w, '=');
        if (!eq) continue;
        *eq = 0;
        unescape(eq + 1);
        r->key[r->n] = w;
        r->val[r->n++] = eq + 1;
    }
}

void dump_line(struct dump *d, const char *text)
{
    size_t len = strlen(text);
    bool more = len && text[len - 1] == '\\';
    if (more) len--;
    char *p = realloc(d->pending, d->pending_len + len + 1);
    if (!p) return;
    memcpy(p + d->pending_len, text, len);
    d->pending_len += len;
    p[d->pending_len] = 0;
    d->pending = p;
    if (more) return;
    add_record(d, d->pending);
    d->pending = NULL;
    d->pending_len = 0;
}

/* ---- fields ---- */

static const char *get(const struct rec *r, const char *key)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->key[i], key)) return r->val[i];
    return NULL;
}

static const char *str(const struct rec *r, const char *key)
{
    const char *v = get(r, key);
    return v ? v : "";
}

static unsigned long long num(const struct rec *r, const char *key)
{
    const char *v = get(r, key);
    return v ? strtoull(v, NULL, 0) : 0;
}

static long long snum(const struct rec *r, const char *key)
{
    const char *v = get(r, key);
    return v ? strtoll(v, NULL, 0) : 0;
}

static bool is(const struct rec *r, const char *kind)
{
    return !strcmp(r->kind, kind);
}

/* Records of faultline-ctl's own session are not shown. */
static bool own(const struct rec *r, const struct view *v)
{
    const char *key = is(r, "session") ? "id" : "session";
    return v->self && get(r, key) && num(r, key) == v->self;
}

static const struct rec *find(const struct dump *d, const char *kind, const char *key,
                              const char *val)
{
    for (size_t i = 0; i < d->n; i++)
        if (is(&d->r[i], kind) && !strcmp(str(&d->r[i], key), val)) return &d->r[i];
    return NULL;
}

static const struct rec *session_of(const struct dump *d, unsigned long long id)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", id);
    return find(d, "session", "id", buf);
}

void human_size(unsigned long long bytes, char *buf, size_t len)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int i = 0;
    double v = (double)bytes;
    while (v >= 1024 && i < 6) {
        v /= 1024;
        i++;
    }
    if (i == 0 || bytes % (1ull << (10 * i)) == 0) {
        snprintf(buf, len, "%llu %s", bytes >> (10 * i), unit[i]);
        return;
    }
    if (v >= 1023.95 && i < 6) {
        v /= 1024;
        i++;
    }
    snprintf(buf, len, "%.1f %s", v, unit[i]);
}

/* ---- text ---- */

static void session_state(const struct rec *s, char *buf, size_t len)
{
    const char *p = str(s, "proc");
    if (!strcmp(p, "stopped") && !strcmp(str(s, "pst"), "t"))
        snprintf(buf, len, "stopped (traced)");
    else if (!strcmp(p, "none"))
        snprintf(buf, len, "no process yet");
    else if (!strcmp(p, "gone"))
        snprintf(buf, len, "its process is gone");
    else
        snprintf(buf, len, "%s", p);
}

static void text_session(const struct rec *s, FILE *f)
{
    char st[64], ram[32], ramq[32];
    session_state(s, st, sizeof(st));
    human_size(num(s, "ram"), ram, sizeof(ram));
    human_size(num(s, "ramq"), ramq, sizeof(ramq));
    fprintf(f, "session %s %s%s: %s, RAM %s of %s, caps %llu of %llu", str(s, "id"),
            str(s, "label"), num(s, "closing") ? " (closing)" : "", st, ram, ramq, num(s, "caps"),
            num(s, "capq"));
    if (num(s, "parent")) fprintf(f, ", child of session %llu", num(s, "parent"));
    if (num(s, "uffd")) fprintf(f, ", uffd");
    if (num(s, "queued")) fprintf(f, ", %llu messages queued", num(s, "queued"));
    fputc('\n', f);
}

static void handler_text(const struct rec *m, char *buf, size_t len)
{
    const char *sig = str(m, "sig");
    if (!strcmp(sig, "none") || !*sig)
        snprintf(buf, len, "no fault handler");
    else if (!strcmp(sig, "dead"))
        snprintf(buf, len, "fault handler signal %s freed: nobody will be told", str(m, "handler"));
    else if (!strcmp(sig, "pending"))
        snprintf(buf, len, "fault handler signal %s pending (%lld submit%s not picked up)",
                 str(m, "handler"), snum(m, "sigpend"), snum(m, "sigpend") == 1 ? "" : "s");
    else if (!strcmp(sig, "taken"))
        snprintf(buf, len, "fault handler signal %s taken (picked up, faults still waiting)",
                 str(m, "handler"));
    else
        snprintf(buf, len, "fault handler signal %s %s", str(m, "handler"), sig);
}

static void map_kind(const struct rec *m, char *buf, size_t len)
{
    char size[32];
    human_size(num(m, "size"), size, sizeof(size));
    snprintf(buf, len, "%s of %s",
             !strcmp(str(m, "kind"), "space") ? "address space" : "managed map", size);
}

static void text_regions(const struct dump *d, const char *map, int depth, FILE *f)
{
    static const char pad[] = "                    ";
    for (size_t i = 0; i < d->n; i++) {
        const struct rec *r = &d->r[i];
        if (!is(r, "region") || strcmp(str(r, "map"), map)) continue;
        fprintf(f, "%.*s[%#llx, +%#llx) %s ", 2 * depth, pad, num(r, "start"), num(r, "size"),
                str(r, "rights"));
        char size[32];
        human_size(num(r, "dsize"), size, sizeof(size));
        const char *kind = str(r, "kind");
        if (!strcmp(kind, "reserved")) {
            fprintf(f, "reserved (its dataspace is gone)\n");
        } else if (!strcmp(kind, "ram")) {
            fprintf(f, "RAM %s @%#llx (memfd %llu%s)\n", size, num(r, "off"), num(r, "memfd"),
                    num(r, "moving") ? ", moving" : "");
        } else {
            const char *inner = str(r, "inner");
            const struct rec *m = find(d, "map", "id", inner);
            fprintf(f, "map %s, managed map of %s @%#llx%s\n", inner, size, num(r, "off"),
                    !m                   ? " (not in the dump)"
                    : depth >= MAX_DEPTH ? " (deeper levels not shown)"
                    : num(m, "regions")  ? ":"
                                         : ", nothing attached");
            if (m && depth < MAX_DEPTH) text_regions(d, inner, depth + 1, f);
        }
    }
}

static void text_map(const struct dump *d, const struct rec *m, FILE *f)
{
    char kind[64], h[160];
    map_kind(m, kind, sizeof(kind));
    handler_text(m, h, sizeof(h));
    unsigned long long n = num(m, "regions");
    fprintf(f, "map %s (session %s): %s, %llu region%s, %s", str(m, "id"), str(m, "session"), kind,
            n, n == 1 ? "" : "s", h);
    if (num(m, "faults"))
        fprintf(f, ", %llu fault%s waiting", num(m, "faults"), num(m, "faults") == 1 ? "" : "s");
    fputc('\n', f);
    text_regions(d, str(m, "id"), 1, f);
}

static void text_faults(const struct dump *d, const struct view *v, FILE *f)
{
    bool any = false;
    for (size_t i = 0; i < d->n; i++) {
        const struct rec *m = &d->r[i];
        if (!is(m, "map") || !num(m, "faults") || own(m, v)) continue;
        any = true;
        char h[160], st[64] = "?";
        handler_text(m, h, sizeof(h));
        const struct rec *s = session_of(d, num(m, "session"));
        if (s) session_state(s, st, sizeof(st));
        unsigned long long n = num(m, "faults");
        fprintf(f, "map %s of session %s (%s, %s): %llu fault%s waiting, %s\n", str(m, "id"),
                str(m, "session"), s ? str(s, "label") : "not in the dump", st, n,
                n == 1 ? "" : "s", h);
        for (size_t k = 0; k < d->n; k++) {
            const struct rec *x = &d->r[k];
            if (!is(x, "fault") || strcmp(str(x, "map"), str(m, "id"))) continue;
            fprintf(f,
                    "  fault %llu on map %s: %s at %#llx by session %llu thread %llu%s, %llu ms\n",
                    num(x, "n"), str(x, "map"), str(x, "type"), num(x, "addr"), num(x, "session"),
                    num(x, "tid"), num(x, "segv") ? " (SIGSEGV)" : "", num(x, "age_ms"));
        }
    }
    if (!any) fprintf(f, "no faults waiting\n");
}

static const struct rec *core_rec(const struct dump *d)
{
    for (size_t i = 0; i < d->n; i++)
        if (is(&d->r[i], "core")) return &d->r[i];
    return NULL;
}

/* Core's count, less faultline-ctl's own session. */
static unsigned long long sessions_shown(const struct dump *d, const struct view *v)
{
    const struct rec *c = core_rec(d);
    unsigned long long n = c ? num(c, "sessions") : 0;
    if (n && v->self) n--;
    return n;
}

void dump_text(const struct dump *d, const struct view *v, FILE *f)
{
    if (v->what & FL_CTL_SESSIONS)
        for (size_t i = 0; i < d->n; i++)
            if (is(&d->r[i], "session") && !own(&d->r[i], v)) text_session(&d->r[i], f);
    if (v->what & FL_CTL_MAPS)
        for (size_t i = 0; i < d->n; i++)
            if (is(&d->r[i], "map") && !own(&d->r[i], v)) text_map(d, &d->r[i], f);
    if (v->what & FL_CTL_FAULTS) text_faults(d, v, f);
    for (size_t i = 0; i < d->n; i++)
        if (is(&d->r[i], "text")) fprintf(f, "%s\n", str(&d->r[i], "msg"));
    const struct rec *c = core_rec(d);
    if (c) {
        char ram[32], ramb[32];
        human_size(num(c, "ram"), ram, sizeof(ram));
        human_size(num(c, "ramb"), ramb, sizeof(ramb));
        unsigned long long n = sessions_shown(d, v);
        fprintf(f, "core: RAM %s used of %s, descriptors %lld used of %lld, %llu session%s\n", ram,
                ramb, snum(c, "fds"), snum(c, "fdb"), n, n == 1 ? "" : "s");
    }
    if (d->left_out)
        fprintf(f, "... %llu more records left out (core sends at most %d lines)\n", d->left_out,
                FL_CTL_MAX_LINES);
}

/* ---- JSON ---- */

static void jstr(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

static void jkey(FILE *f, bool *first, const char *key)
{
    fprintf(f, "%s\"%s\":", *first ? "" : ",", key);
    *first = false;
}

static void jnum(FILE *f, bool *first, const char *key, unsigned long long v)
{
    jkey(f, first, key);
    fprintf(f, "%llu", v);
}

/* A number where 0 means none: null then. */
static void jnum_or_null(FILE *f, bool *first, const char *key, unsigned long long v)
{
    jkey(f, first, key);
    if (v)
        fprintf(f, "%llu", v);
    else
        fputs("null", f);
}

static void jtext(FILE *f, bool *first, const char *key, const char *v)
{
    jkey(f, first, key);
    jstr(f, v);
}

static void jbool(FILE *f, bool *first, const char *key, bool v)
{
    jkey(f, first, key);
    fputs(v ? "true" : "false", f);
}

static void json_session(const struct rec *s, FILE *f)
{
    bool first = true;
    fputc('{', f);
    jnum(f, &first, "id", num(s, "id"));
    jtext(f, &first, "label", str(s, "label"));
    jnum_or_null(f, &first, "pid", num(s, "pid"));
    jnum(f, &first, "uid", num(s, "uid"));
    jtext(f, &first, "process", str(s, "proc"));
    jtext(f, &first, "proc_state", str(s, "pst"));
    jnum_or_null(f, &first, "parent", num(s, "parent"));
    jbool(f, &first, "uffd", num(s, "uffd"));
    jbool(f, &first, "closing", num(s, "closing"));
    jnum(f, &first, "ram_used", num(s, "ram"));
    jnum(f, &first, "ram_quota", num(s, "ramq"));
    jnum(f, &first, "caps_used", num(s, "caps"));
    jnum(f, &first, "caps_quota", num(s, "capq"));
    jnum(f, &first, "queued", num(s, "queued"));
    fputc('}', f);
}

static void json_region(const struct rec *r, FILE *f)
{
    bool first = true;
    fputc('{', f);
    jnum(f, &first, "start", num(r, "start"));
    jnum(f, &first, "size", num(r, "size"));
    jtext(f, &first, "rights", str(r, "rights"));
    const char *kind = str(r, "kind");
    jtext(f, &first, "kind", kind);
    if (strcmp(kind, "reserved")) {
        jnum(f, &first, "dataspace_size", num(r, "dsize"));
        jnum(f, &first, "offset", num(r, "off"));
    }
    if (!strcmp(kind, "ram")) {
        jnum(f, &first, "memfd", num(r, "memfd"));
        jbool(f, &first, "moving", num(r, "moving"));
    }
    if (!strcmp(kind, "managed")) jtext(f, &first, "map", str(r, "inner"));
    fputc('}', f);
}

static void json_map(const struct dump *d, const struct rec *m, bool regions, FILE *f)
{
    bool first = true;
    fputc('{', f);
    jtext(f, &first, "id", str(m, "id"));
    jnum(f, &first, "session", num(m, "session"));
    jtext(f, &first, "kind", !strcmp(str(m, "kind"), "space") ? "address_space" : "managed");
    jnum(f, &first, "size", num(m, "size"));
    jnum(f, &first, "region_count", num(m, "regions"));
    jkey(f, &first, "fault_handler");
    const char *sig = str(m, "sig");
    if (!*sig || !strcmp(sig, "none")) {
        fputs("null", f);
    } else {
        bool h = true;
        fputc('{', f);
        jtext(f, &h, "signal", str(m, "handler"));
        jtext(f, &h, "state", sig);
        jkey(f, &h, "pending");
        if (snum(m, "sigpend") >= 0)
            fprintf(f, "%lld", snum(m, "sigpend"));
        else
            fputs("null", f);
        fputc('}', f);
    }
    jnum(f, &first, "faults_waiting", num(m, "faults"));
    if (regions) {
        jkey(f, &first, "regions");
        fputc('[', f);
        bool comma = false;
        for (size_t i = 0; i < d->n; i++) {
            const struct rec *r = &d->r[i];
            if (!is(r, "region") || strcmp(str(r, "map"), str(m, "id"))) continue;
            if (comma) fputc(',', f);
            comma = true;
            json_region(r, f);
        }
        fputc(']', f);
    }
    fputc('}', f);
}

static void json_fault(const struct rec *x, FILE *f)
{
    bool first = true;
    fputc('{', f);
    jtext(f, &first, "map", str(x, "map"));
    jnum(f, &first, "index", num(x, "n"));
    jtext(f, &first, "type", str(x, "type"));
    jnum(f, &first, "addr", num(x, "addr"));
    jnum(f, &first, "session", num(x, "session"));
    jnum(f, &first, "thread", num(x, "tid"));
    jbool(f, &first, "segv", num(x, "segv"));
    jnum(f, &first, "age_ms", num(x, "age_ms"));
    fputc('}', f);
}

/* The records of one kind, as a JSON array (own ones left out). */
static void json_list(const struct dump *d, const struct view *v, const char *kind, FILE *f,
                      bool (*want)(const struct rec *),
                      void (*out)(const struct dump *, const struct rec *, FILE *))
{
    fputc('[', f);
    bool comma = false;
    for (size_t i = 0; i < d->n; i++) {
        const struct rec *r = &d->r[i];
        if (!is(r, kind) || own(r, v) || (want && !want(r))) continue;
        if (comma) fputc(',', f);
        comma = true;
        out(d, r, f);
    }
    fputc(']', f);
}

static void out_session(const struct dump *d, const struct rec *r, FILE *f)
{
    (void)d;
    json_session(r, f);
}

static void out_map_regions(const struct dump *d, const struct rec *r, FILE *f)
{
    json_map(d, r, true, f);
}

static void out_map(const struct dump *d, const struct rec *r, FILE *f)
{
    json_map(d, r, false, f);
}

static void out_fault(const struct dump *d, const struct rec *r, FILE *f)
{
    (void)d;
    json_fault(r, f);
}

static bool with_faults(const struct rec *r)
{
    return num(r, "faults") > 0;
}

void dump_json(const struct dump *d, const struct view *v, FILE *f)
{
    bool first = true;
    fputc('{', f);
    jtext(f, &first, "schema", "faultline-ctl/1");
    jkey(f, &first, "time");
    fprintf(f, "%.3f", v->time);
    if (v->socket) jtext(f, &first, "socket", v->socket);
    const struct rec *c = core_rec(d);
    if (c) {
        jkey(f, &first, "core");
        bool k = true;
        fputc('{', f);
        jnum(f, &k, "ram_used", num(c, "ram"));
        jnum(f, &k, "ram_budget", num(c, "ramb"));
        jnum(f, &k, "fds_used", num(c, "fds"));
        jnum(f, &k, "fd_budget", num(c, "fdb"));
        jnum(f, &k, "sessions", sessions_shown(d, v));
        fputc('}', f);
    }
    if (v->what & FL_CTL_SESSIONS) {
        jkey(f, &first, "sessions");
        json_list(d, v, "session", f, NULL, out_session);
    }
    if (v->what & FL_CTL_MAPS) {
        jkey(f, &first, "maps");
        json_list(d, v, "map", f, NULL, out_map_regions);
    } else if (v->what & FL_CTL_FAULTS) {
        jkey(f, &first, "maps");
        json_list(d, v, "map", f, with_faults, out_map);
    }
    if (v->what & FL_CTL_FAULTS) {
        jkey(f, &first, "faults");
        json_list(d, v, "fault", f, NULL, out_fault);
    }
    jkey(f, &first, "notes");
    fputc('[', f);
    bool comma = false;
    for (size_t i = 0; i < d->n; i++)
        if (is(&d->r[i], "text")) {
            if (comma) fputc(',', f);
            comma = true;
            jstr(f, str(&d->r[i], "msg"));
        }
    fputc(']', f);
    jnum(f, &first, "left_out", d->left_out);
    fputs("}\n", f);
}
