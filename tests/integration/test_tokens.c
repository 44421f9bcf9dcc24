/*
 * Capability delegation and the per-session capability space. Tokens: forged
 * or malformed ones fail with -FL_E_TOKEN (and do not use up a real token),
 * a token whose object died before the import fails, a token is single use.
 * Capabilities: a value is a name in one session's table only; a released
 * capability is gone (and a reused slot does not revive it).
 */
#include "harness.h"

#include <sys/random.h>
#include <unistd.h>

#define K 1024ul

static void random_token(char out[FL_TOKEN_LEN + 1])
{
    unsigned char b[FL_TOKEN_LEN / 2];
    T_EQ(getrandom(b, sizeof(b), 0), sizeof(b));
    for (size_t i = 0; i < sizeof(b); i++) sprintf(out + 2 * i, "%02x", b[i]);
}

static size_t ds_size(struct fl_env *env, fl_cap ds)
{
    size_t s = 0;
    T_ERR(fl_dataspace_size(env, ds, &s), 0);
    return s;
}

static struct t_core *core;

/* Wait until core logged that session id closed (it logs before it releases
 * the session's objects, in the same step of its loop). */
static void await_session_closed(unsigned long long id)
{
    char comm[32], text[128];
    t_proc_line(comm, sizeof(comm), "/proc/self/comm");
    snprintf(text, sizeof(text), "session %llu (pid %d (%s)) closed", id, (int)getpid(), comm);
    T_WAIT_FOR(t_core_log_contains(core, text), text);
}

static void forged_and_malformed_fn(struct fl_env *a, struct fl_env *b)
{
    fl_cap ds, got = FL_CAP_INVALID;
    T_ERR(fl_ram_alloc(a, 8 * K, &ds), 0);
    char token[FL_TOKEN_LEN + 1], t[80];
    T_ERR(fl_cap_export(a, ds, token), 0);
    T_EQ(strlen(token), FL_TOKEN_LEN);

    /* Forged: random hex of the right length, all zeros, all f. */
    for (int i = 0; i < 200; i++) {
        random_token(t);
        if (!strcmp(t, token)) continue;
        T_ERR(fl_cap_import(b, t, &got), -FL_E_TOKEN);
    }
    memset(t, '0', FL_TOKEN_LEN);
    t[FL_TOKEN_LEN] = 0;
    T_ERR(fl_cap_import(b, t, &got), -FL_E_TOKEN);
    memset(t, 'f', FL_TOKEN_LEN);
    T_ERR(fl_cap_import(b, t, &got), -FL_E_TOKEN);
    /* the real token with one digit changed */
    strcpy(t, token);
    t[FL_TOKEN_LEN - 1] = t[FL_TOKEN_LEN - 1] == '0' ? '1' : '0';
    T_ERR(fl_cap_import(b, t, &got), -FL_E_TOKEN);
    strcpy(t, token);
    t[0] = t[0] == '0' ? '1' : '0';
    T_ERR(fl_cap_import(b, t, &got), -FL_E_TOKEN);

    /* Malformed: wrong length, not hex, NULL, the real token with extras. */
    T_ERR(fl_cap_import(b, NULL, &got), -FL_E_TOKEN);
    T_ERR(fl_cap_import(b, "", &got), -FL_E_TOKEN);
    T_ERR(fl_cap_import(b, "0123", &got), -FL_E_TOKEN);
    T_ERR(fl_cap_import(b, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", &got), -FL_E_TOKEN);
    T_ERR(fl_cap_import(b, "0123456789abcdef0123456789abcdeg", &got), -FL_E_TOKEN);
    T_ERR(fl_cap_import(b, "0123456789abcdef 0123456789abcde", &got), -FL_E_TOKEN);
    strcpy(t, token);
    t[FL_TOKEN_LEN - 1] = 0; /* 31 characters */
    T_ERR(fl_cap_import(b, t, &got), -FL_E_TOKEN);
    snprintf(t, sizeof(t), "%s\n", token); /* 33 */
    T_ERR(fl_cap_import(b, t, &got), -FL_E_TOKEN);
    snprintf(t, sizeof(t), "%s0", token);
    T_ERR(fl_cap_import(b, t, &got), -FL_E_TOKEN);
    snprintf(t, sizeof(t), " %s", token);
    T_ERR(fl_cap_import(b, t, &got), -FL_E_TOKEN);
    strcpy(t, token);
    t[10] = 'x';
    T_ERR(fl_cap_import(b, t, &got), -FL_E_TOKEN);
    strcpy(t, token);
    t[7] = ':';
    T_ERR(fl_cap_import(b, t, &got), -FL_E_TOKEN);
    T_EQ(got, FL_CAP_INVALID);

    /* None of that used up the real token. */
    T_ERR(fl_cap_import(b, token, &got), 0);
    T_EQ(ds_size(b, got), 8 * K);
    fl_cap again = FL_CAP_INVALID;
    T_ERR(fl_cap_import(b, token, &again), -FL_E_TOKEN); /* single use */
    T_ERR(fl_cap_import(a, token, &again), -FL_E_TOKEN);
    T_EQ(again, FL_CAP_INVALID);
    T_ERR(fl_cap_release(b, got), 0);
    T_ERR(fl_ram_free(a, ds), 0);
}

/* A token written with a sign ("+a" for "0a", "-1" for "ff") is not a token:
 * FL_TOKEN_LEN hex digits and nothing else. */
static void signed_digits_fn(struct fl_env *a, struct fl_env *b)
{
    fl_cap ds, got = FL_CAP_INVALID;
    T_ERR(fl_ram_alloc(a, 4 * K, &ds), 0);
    char token[FL_TOKEN_LEN + 1], t[FL_TOKEN_LEN + 1];
    int pos = -1;
    for (int tries = 0; tries < 1000 && pos < 0; tries++) {
        T_ERR(fl_cap_export(a, ds, token), 0);
        for (int i = 0; i < FL_TOKEN_LEN && pos < 0; i += 2)
            if (token[i] == '0') pos = i;
    }
    T_ASSERT(pos >= 0);
    strcpy(t, token);
    t[pos] = '+'; /* "0x" -> "+x": the same byte value to a lax parser */
    T_ERR(fl_cap_import(b, t, &got), -FL_E_TOKEN);
    T_EQ(got, FL_CAP_INVALID);
    T_ERR(fl_cap_import(b, token, &got), 0); /* the real one still works, once */
    T_ERR(fl_cap_release(b, got), 0);
    T_ERR(fl_ram_free(a, ds), 0);
}

static void dead_objects_fn(struct fl_env *a, struct fl_env *b)
{
    char tds[FL_TOKEN_LEN + 1], trm[FL_TOKEN_LEN + 1], tsig[FL_TOKEN_LEN + 1];
    fl_cap ds, rms, rm, sig, got = FL_CAP_INVALID;

    /* Freed or destroyed between export and import. */
    T_ERR(fl_ram_alloc(a, 4 * K, &ds), 0);
    T_ERR(fl_rm_session_open(a, &rms), 0);
    T_ERR(fl_rm_create(a, rms, 64 * K, &rm), 0);
    T_ERR(fl_signal_context_create(a, &sig), 0);
    T_ERR(fl_cap_export(a, ds, tds), 0);
    T_ERR(fl_cap_export(a, rm, trm), 0);
    T_ERR(fl_cap_export(a, sig, tsig), 0);
    T_ERR(fl_ram_free(a, ds), 0);
    T_ERR(fl_rm_destroy(a, rms, rm), 0);
    T_ERR(fl_signal_context_destroy(a, sig), 0);
    T_ERR(fl_cap_import(b, tds, &got), -FL_E_TOKEN);
    T_ERR(fl_cap_import(b, trm, &got), -FL_E_TOKEN);
    T_ERR(fl_cap_import(b, tsig, &got), -FL_E_TOKEN);
    T_ERR(fl_cap_import(a, tds, &got), -FL_E_TOKEN);
    T_EQ(got, FL_CAP_INVALID);
    /* Exporting a dead object's capability fails. */
    T_ERR(fl_cap_export(a, ds, tds), -FL_E_INVALID_CAP);
    T_ERR(fl_cap_export(a, 0, tds), -FL_E_INVALID_CAP);
    T_ERR(fl_cap_export(a, 0xdeadbeef12345678ull, tds), -FL_E_INVALID_CAP);

    /* The exporting session went away before the import. */
    struct fl_env *gone = t_env();
    struct fl_session_info info;
    T_ERR(fl_env_session_info(gone, &info), 0);
    T_ERR(fl_ram_alloc(gone, 4 * K, &ds), 0);
    T_ERR(fl_cap_export(gone, ds, tds), 0);
    T_ERR(fl_signal_context_create(gone, &sig), 0);
    T_ERR(fl_cap_export(gone, sig, tsig), 0);
    fl_env_close(gone);
    await_session_closed((unsigned long long)info.session_id);
    T_ERR(fl_cap_import(b, tds, &got), -FL_E_TOKEN);
    T_ERR(fl_cap_import(b, tsig, &got), -FL_E_TOKEN);
    T_EQ(got, FL_CAP_INVALID);
}

static void per_session_fn(struct fl_env *a, struct fl_env *unused)
{
    (void)unused;
    /* b is fresh: only its address space is in its table. */
    struct fl_env *b = t_env();
    fl_cap d4, d8, d12, rms, rm, sig, b_rms;
    T_ERR(fl_ram_alloc(a, 4 * K, &d4), 0);
    T_ERR(fl_ram_alloc(a, 8 * K, &d8), 0);
    T_ERR(fl_ram_alloc(a, 12 * K, &d12), 0);
    T_ERR(fl_rm_session_open(a, &rms), 0);
    T_ERR(fl_rm_create(a, rms, 64 * K, &rm), 0);
    T_ERR(fl_signal_context_create(a, &sig), 0);
    const fl_cap as_b = fl_env_address_space(b);
    const fl_cap a_caps[] = {d4, d8, d12, rms, rm, sig};
    size_t s = 0;
    fl_cap s_rm = FL_CAP_INVALID;
    char tok[FL_TOKEN_LEN + 1];
    for (size_t i = 0; i < sizeof(a_caps) / sizeof(a_caps[0]); i++) {
        fl_cap c = a_caps[i];
        T_ASSERT(c != as_b);
        T_ERR(fl_dataspace_size(b, c, &s), -FL_E_INVALID_DATASPACE);
        T_ERR(fl_ram_free(b, c), -FL_E_INVALID_DATASPACE);
        struct fl_attr at = {.writeable = true};
        T_ERR(fl_region_map_attach(b, as_b, c, &at, NULL), -FL_E_INVALID_DATASPACE);
        T_ERR(fl_region_map_attach(b, c, d4, &at, NULL), -FL_E_INVALID_CAP);
        T_ERR(fl_region_map_detach(b, c, 0), -FL_E_INVALID_CAP);
        T_ERR(fl_rm_destroy(b, c, c), -FL_E_INVALID_CAP);
        T_ERR(fl_rm_create(b, c, 4096, &s_rm), -FL_E_INVALID_CAP);
        T_ERR(fl_rm_session_close(b, c), -FL_E_INVALID_CAP);
        T_ERR(fl_signal_submit(b, c), -FL_E_INVALID_CAP);
        T_ERR(fl_cap_export(b, c, tok), -FL_E_INVALID_CAP);
        T_ERR(fl_cap_release(b, c), -FL_E_INVALID_CAP);
    }
    /* still fine in a */
    T_EQ(ds_size(a, d4), 4 * K);
    T_EQ(ds_size(a, d8), 8 * K);
    T_EQ(ds_size(a, d12), 12 * K);
    T_ERR(fl_signal_submit(a, sig), 0);
    T_EQ(fl_signal_wait(a, sig, 0), 1);

    /* Delegated, each object gets a name in b's table that means it there. */
    fl_cap b12, brm, bsig;
    T_ERR(fl_cap_export(a, d12, tok), 0);
    T_ERR(fl_cap_import(b, tok, &b12), 0);
    T_EQ(ds_size(b, b12), 12 * K);
    T_ERR(fl_cap_export(a, rm, tok), 0);
    T_ERR(fl_cap_import(b, tok, &brm), 0);
    T_ERR(fl_cap_export(a, sig, tok), 0);
    T_ERR(fl_cap_import(b, tok, &bsig), 0);
    /* the kind travels with it */
    T_ERR(fl_dataspace_size(b, bsig, &s), -FL_E_INVALID_DATASPACE);
    T_ERR(fl_dataspace_size(b, brm, &s), -FL_E_INVALID_DATASPACE);
    /* a delegated signal context: b submits, a receives */
    T_ERR(fl_signal_submit(b, bsig), 0);
    T_ERR(fl_signal_submit(b, bsig), 0);
    T_EQ(fl_signal_wait(a, sig, 0), 2);
    /* a delegated region map: b attaches its own copy of a's dataspace into it */
    struct fl_attr at = {.writeable = true};
    struct fl_range r;
    T_ERR(fl_region_map_attach(b, brm, b12, &at, &r), 0);
    T_EQ(r.start, 0);
    T_EQ(r.num_bytes, 12 * K);
    T_ERR(fl_region_map_attach(a, rm, d12, &at, &r), 0);
    T_EQ(r.start, 16 * K); /* the map is one object: a sees b's region */
    /* only the owner frees or destroys (a map of another's RM session) */
    T_ERR(fl_ram_free(b, b12), -FL_E_INVALID_DATASPACE);
    T_ERR(fl_rm_session_open(b, &b_rms), 0);
    T_ERR(fl_rm_destroy(b, b_rms, brm), -FL_E_INVALID_CAP);
    T_ERR(fl_signal_context_destroy(b, bsig), -FL_E_INVALID_CAP);
    T_EQ(ds_size(b, b12), 12 * K);

    /* fl_cap_release: the name is gone, the object is not. */
    T_ERR(fl_cap_release(b, b12), 0);
    T_ERR(fl_dataspace_size(b, b12, &s), -FL_E_INVALID_DATASPACE);
    T_ERR(fl_region_map_attach(b, as_b, b12, &at, NULL), -FL_E_INVALID_DATASPACE);
    T_ERR(fl_cap_release(b, b12), -FL_E_INVALID_CAP);
    T_ERR(fl_cap_export(b, b12, tok), -FL_E_INVALID_CAP);
    T_EQ(ds_size(a, d12), 12 * K);
    T_ERR(fl_cap_release(b, bsig), 0);
    T_ERR(fl_signal_submit(b, bsig), -FL_E_INVALID_CAP);
    T_ERR(fl_cap_release(b, brm), 0);
    T_ERR(fl_region_map_attach(b, brm, d4, &at, NULL), -FL_E_INVALID_CAP);
    T_ERR(fl_region_map_detach(b, brm, 0), -FL_E_INVALID_CAP);

    /* A slot reused by a new capability does not revive the released one. */
    fl_cap n1;
    T_ERR(fl_ram_alloc(b, 20 * K, &n1), 0);
    T_ASSERT(n1 != b12 && n1 != bsig && n1 != brm);
    T_ERR(fl_dataspace_size(b, b12, &s), -FL_E_INVALID_DATASPACE);
    T_EQ(ds_size(b, n1), 20 * K);

    /* The allocator's own capability: released, it names nothing, even though
     * the dataspace still exists (and is still charged) in the session. */
    T_ERR(fl_cap_release(a, d8), 0);
    T_ERR(fl_dataspace_size(a, d8, &s), -FL_E_INVALID_DATASPACE);
    T_ERR(fl_ram_free(a, d8), -FL_E_INVALID_DATASPACE);
    T_ERR(fl_cap_release(a, d8), -FL_E_INVALID_CAP);
    T_ERR(fl_cap_release(a, 0), -FL_E_INVALID_CAP);
    T_ERR(fl_cap_release(a, 0xdeadbeef12345678ull), -FL_E_INVALID_CAP);
    T_ERR(fl_cap_release(a, sig), 0);
    T_ERR(fl_signal_submit(a, sig), -FL_E_INVALID_CAP);

    /* A released address-space capability: attaching there is refused. */
    fl_cap as_b2 = fl_env_address_space(b);
    T_ERR(fl_cap_release(b, as_b2), 0);
    int err = 0;
    T_ASSERT(fl_attach(b, n1, &err) == NULL);
    T_ERR(err, -FL_E_INVALID_CAP);
    T_ERR(fl_region_map_detach(b, as_b2, 0), -FL_E_INVALID_CAP);
    /* the session still answers */
    T_EQ(ds_size(b, n1), 20 * K);

    fl_env_close(b);
    T_ERR(fl_region_map_detach(a, rm, 16 * K), 0);
    T_ERR(fl_rm_destroy(a, rms, rm), 0);
    T_ERR(fl_rm_session_close(a, rms), 0);
    T_ERR(fl_ram_free(a, d4), 0);
    T_ERR(fl_ram_free(a, d12), 0);
}

/* Sessions a and b of a core of their own. */
static void with_two_sessions(void (*fn)(struct fl_env *a, struct fl_env *b))
{
    core = t_core_start(NULL);
    struct fl_env *a = t_env(), *b = t_env();
    fn(a, b);
    fl_env_close(b);
    fl_env_close(a);
    T_EQ(t_core_stop(core), 0);
}

static void forged_and_malformed(void)
{
    with_two_sessions(forged_and_malformed_fn);
}

static void dead_objects(void)
{
    with_two_sessions(dead_objects_fn);
}

static void per_session(void)
{
    with_two_sessions(per_session_fn);
}

static void signed_digits(void)
{
    with_two_sessions(signed_digits_fn);
}

T_CASES(forged_and_malformed, dead_objects, per_session, signed_digits)
