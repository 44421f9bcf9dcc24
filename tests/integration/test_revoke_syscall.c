/*
 * A system call racing a detach. A client thread read(2)s from a pipe into a
 * page of a managed dataspace, over and over, while the manager detaches the
 * page and attaches it again. The kernel's write into the page must never
 * fail with EFAULT: a revoked page stays a registered part of the window
 * (REGISTER MISSING|MINOR + MADV_DONTNEED, never a PROT_NONE placeholder), so
 * the kernel's access faults, is reflected to the manager like the program's
 * own, and the read(2) completes once the page is attached again.
 *
 * The client writes the page only through read(2), so every WRITE fault the
 * manager sees is the kernel's; the test insists on seeing some (otherwise
 * the race was never run): the client goes on past its rounds until the
 * manager saw one, within T_WAIT_MS.
 */
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

#define ROUNDS 3000

static int client_main(struct t_child *c)
{
    struct fl_env *env = t_env();
    char line[256];
    t_child_command(c, line, sizeof(line));
    char *p = t_import_attach(env, line);
    int fds[2];
    T_ASSERT(pipe(fds) == 0);
    char msg[64];
    long reads = 0, efaults = 0, wrong = 0;
    /* At least ROUNDS reads, then on until the manager saw the kernel's
     * write fault at least once (it says "enough"): the race is timing, so
     * the test does not stop before it was run. */
    for (int i = 0;; i++) {
        if (i >= ROUNDS) {
            struct pollfd pf = {.fd = c->to.r, .events = POLLIN};
            if (poll(&pf, 1, 0) > 0) break;
        }
        snprintf(msg, sizeof(msg), "message %d", i);
        T_EQ(write(fds[1], msg, sizeof(msg)), sizeof(msg));
        ssize_t n = read(fds[0], p + 0x100, sizeof(msg));
        if (n < 0 && errno == EFAULT) {
            efaults++;
            T_EQ(read(fds[0], msg, sizeof(msg)), sizeof(msg)); /* drain */
            continue;
        }
        T_EQ(n, sizeof(msg));
        reads++;
        wrong += strcmp(p + 0x100, msg) != 0;
    }
    t_child_say(c, "reads %ld efaults %ld wrong %ld", reads, efaults, wrong);
    fl_env_close(env);
    return 0;
}

static void read_into_a_revoked_page(void)
{
    struct t_core *core = t_core_start(NULL);
    struct fl_env *m = t_env();
    struct t_mm mm;
    t_mm_create(&mm, m, 1 << 20, T_MM_HANDLER);
    fl_cap backing;
    T_ERR(fl_ram_alloc(m, 4096, &backing), 0);
    t_mm_attach(&mm, backing, 0, 4096, 0);

    struct t_child c;
    t_child_spawn(&c, "reading client", client_main);
    t_child_send(&c, "%s", t_mm_export(&mm));

    long faults = 0, rounds = 0, deadline = t_now_ms() + T_WAIT_MS;
    bool told = false;
    for (;;) {
        if (faults > 0 && !told) {
            t_child_send(&c, "enough");
            told = true;
        }
        if (!faults && t_now_ms() > deadline)
            T_FAILF("no write by read(2) reflected in %ld detaches", rounds);
        T_ERR(fl_region_map_detach(m, mm.rm, 0), 0);
        rounds++;
        /* Give the client a moment to hit the hole; attach again either way. */
        long n = fl_signal_wait(m, mm.sigh, 2);
        T_ASSERT(n >= 0);
        struct fl_fault f;
        T_ERR(fl_region_map_fault(m, mm.rm, &f), 0);
        if (f.type != FL_FAULT_NONE) {
            /* read(2) writes into the page: the kernel's access is a WRITE
             * at the buffer's first byte (a READ is the client's check of
             * what it read, wherever in the page its strcmp begins). */
            T_EQ(f.addr & ~4095ul, 0);
            if (f.type == FL_FAULT_WRITE) T_EQ(f.addr, 0x100);
            faults += f.type == FL_FAULT_WRITE;
        }
        t_mm_attach(&mm, backing, 0, 4096, 0);
        struct pollfd pf = {.fd = c.from.r, .events = POLLIN};
        if (poll(&pf, 1, 0) > 0) break; /* its verdict (or its death) */
    }
    char verdict[64];
    long reads = 0, efaults = -1, wrong = -1;
    t_child_line(&c, verdict, sizeof(verdict));
    T_EQ(sscanf(verdict, "reads %ld efaults %ld wrong %ld", &reads, &efaults, &wrong), 3);
    T_ASSERT(reads >= ROUNDS);
    T_EQ(efaults, 0);
    T_EQ(wrong, 0);
    T_EQ(t_wait(c.pid), 0);
    fprintf(stderr, "%ld detaches, %ld faults by read(2) reflected\n", rounds, faults);
    T_ASSERT(faults > 0);
    fl_env_close(m);
    T_EQ(t_core_stop(core), 0);
}

T_CASES(read_into_a_revoked_page)
