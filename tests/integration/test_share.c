/*
 * Two real processes share one RAM dataspace: the parent allocates it, fills
 * it and exports a token; a child opens its own session, imports the token,
 * attaches the dataspace and sees the parent's bytes; each then sees the
 * other's writes live (one memory, not copies). A token is single use: a
 * second import, by either side, fails with -FL_E_TOKEN.
 */
#include "harness.h"

#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#define DS_SIZE    (3 * 4096 + 100) /* rounded up to 4 pages */
#define DS_ROUNDED (4 * 4096)

static uint8_t parent_byte(size_t i)
{
    return (uint8_t)(i * 7 + 3);
}

static uint8_t child_byte(size_t i)
{
    return (uint8_t)(i * 13 + 101);
}

/* ds is DS_ROUNDED bytes; attached writeable. */
static uint8_t *attach_rounded(struct fl_env *env, fl_cap ds)
{
    size_t size = 0;
    T_ERR(fl_dataspace_size(env, ds, &size), 0);
    T_EQ(size, DS_ROUNDED);
    int err = -1;
    uint8_t *m = fl_attach(env, ds, &err);
    T_ERR(err, 0);
    T_ASSERT(m != NULL);
    return m;
}

static int child(struct t_child *c)
{
    char line[128];
    t_child_command(c, line, sizeof(line));
    T_EQ(strlen(line), FL_TOKEN_LEN);

    struct fl_env *env = t_env();
    fl_cap ds = FL_CAP_INVALID;
    T_ERR(fl_cap_import(env, line, &ds), 0);
    T_ASSERT(ds != FL_CAP_INVALID);
    /* Single use: the same token again fails, even for the session that used it. */
    fl_cap again = FL_CAP_INVALID;
    T_ERR(fl_cap_import(env, line, &again), -FL_E_TOKEN);
    T_EQ(again, FL_CAP_INVALID);

    uint8_t *m = attach_rounded(env, ds);
    /* The parent's bytes, all of them (the rounded tail is zero). */
    for (size_t i = 0; i < DS_ROUNDED; i++) T_EQ(m[i], i < DS_SIZE ? parent_byte(i) : 0);

    /* Answer in the second half. */
    for (size_t i = DS_ROUNDED / 2; i < DS_ROUNDED; i++) m[i] = child_byte(i);
    t_child_say(c, "written");

    /* The parent writes once more while both are attached: visible here. */
    t_child_command(c, line, sizeof(line));
    T_ASSERT(!strcmp(line, "again"));
    T_EQ(m[0], 0xa5);
    T_EQ(m[4095], 0x5a);
    T_EQ(m[DS_ROUNDED / 2 - 1], 0xc3);

    T_ERR(fl_detach(env, m), 0);
    T_ERR(fl_cap_release(env, ds), 0);
    fl_env_close(env);
    t_child_say(c, "done");
    return 0;
}

static void one_memory_two_processes(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct t_core *core = t_core_start(NULL);
    struct fl_env *env = t_env();

    fl_cap ds = FL_CAP_INVALID;
    T_ERR(fl_ram_alloc(env, DS_SIZE, &ds), 0);
    uint8_t *m = attach_rounded(env, ds);
    for (size_t i = 0; i < DS_ROUNDED; i++) T_EQ(m[i], 0); /* zero-filled */
    for (size_t i = 0; i < DS_SIZE; i++) m[i] = parent_byte(i);

    char token[FL_TOKEN_LEN + 1];
    memset(token, 0, sizeof(token));
    T_ERR(fl_cap_export(env, ds, token), 0);
    T_EQ(strlen(token), FL_TOKEN_LEN);
    for (int i = 0; i < FL_TOKEN_LEN; i++) T_ASSERT(strchr("0123456789abcdef", token[i]));

    struct t_child c;
    t_child_spawn(&c, "child", child);
    t_child_send(&c, "%s", token);
    t_child_expect(&c, "written");
    /* The child's write, in the parent's own mapping; the first half untouched. */
    for (size_t i = 0; i < DS_ROUNDED / 2; i++) T_EQ(m[i], parent_byte(i));
    for (size_t i = DS_ROUNDED / 2; i < DS_ROUNDED; i++) T_EQ(m[i], child_byte(i));

    /* The token was used by the child: a second import fails here too. */
    fl_cap again = FL_CAP_INVALID;
    T_ERR(fl_cap_import(env, token, &again), -FL_E_TOKEN);
    T_EQ(again, FL_CAP_INVALID);

    m[0] = 0xa5;
    m[4095] = 0x5a;
    m[DS_ROUNDED / 2 - 1] = 0xc3;
    t_child_send(&c, "again");
    t_child_expect(&c, "done");
    T_EQ(t_wait(c.pid), 0);

    /* The child is gone; the parent's dataspace and mapping are not. */
    T_EQ(m[DS_ROUNDED - 1], child_byte(DS_ROUNDED - 1));
    size_t size = 0;
    T_ERR(fl_dataspace_size(env, ds, &size), 0);
    T_EQ(size, DS_ROUNDED);

    /* A fresh export of the same dataspace gives a new token, usable once. */
    char token2[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(env, ds, token2), 0);
    T_ASSERT(strcmp(token, token2) != 0);
    fl_cap second = FL_CAP_INVALID;
    T_ERR(fl_cap_import(env, token2, &second), 0);
    T_ASSERT(second != FL_CAP_INVALID && second != ds);
    T_ERR(fl_cap_import(env, token2, &again), -FL_E_TOKEN);
    T_ERR(fl_dataspace_size(env, second, &size), 0);
    T_EQ(size, DS_ROUNDED);

    T_ERR(fl_detach(env, m), 0);
    T_ERR(fl_ram_free(env, ds), 0);
    /* Freed: every capability to it, the imported one too, is invalid. */
    T_ERR(fl_dataspace_size(env, second, &size), -FL_E_INVALID_DATASPACE);
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(one_memory_two_processes)
