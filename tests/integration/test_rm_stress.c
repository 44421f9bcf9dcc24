/*
 * Genode's rm_stress: two 4 KiB dataspaces filled with different bytes;
 * 10,000 rounds of attaching one of them anywhere in the own address space,
 * checking that what is visible there is that dataspace's content, and
 * detaching it. Best fit hands out the same address again and again, so a
 * mapping that survived a detach (a stale page of the other dataspace) would
 * show up at once.
 */
#include "harness.h"

#include <stdint.h>

#define ROUNDS 10000
#define PAGE   4096

static void check_page(const volatile uint8_t *p, uint8_t want, int round, int full)
{
    static const size_t spots[] = {0, 1, 8, 2047, 2048, 4088, 4095};
    for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
        if (p[spots[i]] != want)
            T_FAILF("round %d: byte %zu is %#x, expected %#x (stale mapping)", round, spots[i],
                    p[spots[i]], want);
    }
    if (!full) return;
    for (size_t i = 0; i < PAGE; i++) {
        if (p[i] != want)
            T_FAILF("round %d: byte %zu is %#x, expected %#x (stale mapping)", round, i, p[i],
                    want);
    }
}

static void attach_detach_10000_rounds(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *env = t_env();
    const uint8_t fill[2] = {0xa1, 0x5e};
    fl_cap ds[2];
    int err;
    for (int i = 0; i < 2; i++) {
        T_ERR(fl_ram_alloc(env, PAGE, &ds[i]), 0);
        uint8_t *p = fl_attach(env, ds[i], &err);
        T_ERR(err, 0);
        check_page(p, 0, -1, 1); /* zero-filled */
        memset(p, fill[i], PAGE);
        T_ERR(fl_detach(env, p), 0);
    }

    struct fl_session_info before;
    T_ERR(fl_env_session_info(env, &before), 0);
    uintptr_t first = 0;
    int moved = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int i = round % 2;
        volatile uint8_t *p = fl_attach(env, ds[i], &err);
        if (!p) T_FAILF("round %d: attach: %s", round, fl_error_name(err));
        if (round == 0) first = (uintptr_t)p;
        if ((uintptr_t)p != first) moved++;
        check_page(p, fill[i], round, round % 100 == 0 || round == ROUNDS - 1);
        /* A write through this attachment lands in this dataspace only. */
        if (round % 100 == 1) {
            p[100] = (uint8_t)(fill[i] ^ 0xff);
            T_EQ(p[100], fill[i] ^ 0xff);
            p[100] = fill[i];
        }
        int r = fl_detach(env, (const void *)p);
        if (r != 0) T_FAILF("round %d: detach: %s", round, fl_error_name(r));
    }
    /* The address was reused (the point of the test), and nothing leaked. */
    T_EQ(moved, 0);
    struct fl_session_info after;
    T_ERR(fl_env_session_info(env, &after), 0);
    T_EQ(after.ram_used, before.ram_used);
    T_EQ(after.cap_used, before.cap_used);

    /* Both dataspaces still hold exactly their fill. */
    for (int i = 0; i < 2; i++) {
        uint8_t *p = fl_attach(env, ds[i], &err);
        T_ERR(err, 0);
        check_page(p, fill[i], ROUNDS, 1);
        T_ERR(fl_detach(env, p), 0);
        T_ERR(fl_ram_free(env, ds[i]), 0);
    }
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(attach_detach_10000_rounds)
