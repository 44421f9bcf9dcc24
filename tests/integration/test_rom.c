/*
 * ROM dataspaces (Genode's ROM service), with real processes: core serves
 * the files of --rom-dir as named, read-only dataspaces.
 *
 *  - A module opens, attaches and reads as the file was; the page's tail is
 *    zero; every open gets its own capability to the same memory, which two
 *    sessions (processes) see alike; an export travels like any capability.
 *  - Its content is a snapshot: a change of the file while a session holds
 *    the module is not seen; once nobody holds it, the next open takes a new
 *    snapshot.
 *  - Attached writeable it is mapped read-only: a write -- by the program or
 *    by the kernel in read(2) -- is a WRITE fault reflected to the map, at
 *    the byte, and the writer waits until the manager attaches something
 *    writable there (Genode's rm_fault). Through nesting the fault goes to
 *    the deepest map. Into an address space without a fault handler, a
 *    write never resolves (SIGBUS with --unresolvable sigbus), and the
 *    module is unchanged.
 *  - Nothing can write the module: its memfd, taken by a client that holds
 *    it, refuses write(2), a shared writable mmap (EPERM), truncation,
 *    fallocate and new seals, also when re-opened read-write through /proc.
 *  - A name that is not a plain file of the directory opens nothing: a slash,
 *    ".", "..", a control character, too long (INVALID_ARG); missing, a
 *    symbolic link (out of the directory or not), a directory, a FIFO, an
 *    empty file, or a core without --rom-dir (DENIED, and core's log says
 *    why). The session's quota is untouched.
 *  - Costs (doc/limits.md): each open charges the opener Genode's ROM session
 *    quota, 6 KiB and 3 capabilities, whatever the module's size, until the
 *    capability is released; the module's memory is charged once to core's
 *    RAM budget, however many sessions hold it, and returns when the last
 *    one lets it go.
 *  - --strict does not move a module on detach (there is nothing to move: it
 *    is sealed); it stays sealed and readable.
 */
#include "harness.h"
#include "../../src/common/protocol.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define K 1024u

static char dir[64];
static struct t_core *core;

static void put_file(const char *name, const void *data, size_t len)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    T_ASSERT(fd >= 0);
    T_EQ(write(fd, data, len), (long)len);
    close(fd);
}

/* "hello": 10000 bytes, byte i is 'a' + i % 26. */
static void put_hello(char first)
{
    static char buf[10000];
    for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (char)(first + i % 26);
    put_file("hello", buf, sizeof(buf));
}

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/flrom-XXXXXX");
    T_ASSERT(mkdtemp(dir));
    put_hello('a');
    put_file("config", "<config executable_fault_test=\"yes\"/>\n", 38);
    put_file("empty", "", 0);
    /* mov eax, 42; ret */
    static const unsigned char code42[] = {0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3};
    put_file("code", code42, sizeof(code42));
    char path[128], target[128];
    snprintf(path, sizeof(path), "%s/subdir", dir);
    T_ASSERT(mkdir(path, 0755) == 0);
    put_file("subdir/file", "x", 1);
    snprintf(path, sizeof(path), "%s/fifo", dir);
    T_ASSERT(mkfifo(path, 0644) == 0);
    snprintf(path, sizeof(path), "%s/link-out", dir);
    T_ASSERT(symlink("/etc/passwd", path) == 0);
    snprintf(path, sizeof(path), "%s/link-in", dir);
    snprintf(target, sizeof(target), "%s/hello", dir);
    T_ASSERT(symlink(target, path) == 0);
    snprintf(path, sizeof(path), "%s/link-rel", dir);
    T_ASSERT(symlink("hello", path) == 0);
}

static void remove_dir(void)
{
    static const char *const names[] = {"hello",       "config", "empty",    "code",
                                        "subdir/file", "fifo",   "link-out", "link-in",
                                        "link-rel",    "big1",   "big2"};
    char path[128];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/subdir", dir);
    rmdir(path);
    rmdir(dir);
}

static void start(const char *opt, ...)
{
    make_dir();
    const char *o[8];
    int n = 0;
    va_list ap;
    va_start(ap, opt);
    for (const char *x = opt; x && n < 6; x = va_arg(ap, const char *)) o[n++] = x;
    va_end(ap);
    o[n] = NULL;
    core = t_core_start("--rom-dir", dir, n > 0 ? o[0] : NULL, n > 1 ? o[1] : NULL,
                        n > 2 ? o[2] : NULL, n > 3 ? o[3] : NULL, NULL);
}

static void stop(void)
{
    T_EQ(t_core_stop(core), 0);
    remove_dir();
}

/* ---- a ROM client: line commands beyond t_client_main's ---- */

static fl_cap rom_cap;
static volatile char *rom;
static size_t rom_size;

/* The memfd of the module this process holds (its agent got it). */
static int module_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    T_ASSERT(d != NULL);
    struct dirent *e;
    int fd = -1;
    while (fd < 0 && (e = readdir(d))) {
        char path[300], target[256];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0) continue;
        target[n] = 0;
        if (strstr(target, "memfd:faultline-rom:hello")) fd = atoi(e->d_name);
    }
    closedir(d);
    return fd;
}

/* Every way to write the memfd fails. */
static void sealed(struct t_child *c)
{
    int fd = module_fd();
    T_ASSERT(fd >= 0);
    int seals = fcntl(fd, F_GET_SEALS);
    T_EQ(seals & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
         F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    struct stat st;
    T_ASSERT(fstat(fd, &st) == 0);
    T_EQ(st.st_size, 12 * K);
    T_EQ(write(fd, "X", 1), -1);
    T_EQ(errno, EPERM);
    T_EQ(pwrite(fd, "X", 1, 0), -1);
    T_EQ(errno, EPERM);
    T_ASSERT(mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) ==
             MAP_FAILED);
    T_EQ(errno, EPERM);
    /* Mapped read-only and shared, it cannot be made writable later. */
    void *ro = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    T_ASSERT(ro != MAP_FAILED);
    T_ASSERT(mprotect(ro, (size_t)st.st_size, PROT_READ | PROT_WRITE) < 0);
    munmap(ro, (size_t)st.st_size);
    T_ASSERT(ftruncate(fd, 0) < 0);
    T_ASSERT(ftruncate(fd, 64 * K) < 0);
    T_ASSERT(fallocate(fd, 0, 0, 64 * K) < 0);
    T_ASSERT(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) < 0);
    T_ASSERT(fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) < 0);
    /* Re-opened through /proc with O_RDWR: the seals are the inode's. */
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    int fd2 = open(path, O_RDWR | O_CLOEXEC);
    if (fd2 >= 0) {
        T_EQ(write(fd2, "X", 1), -1);
        T_EQ(errno, EPERM);
        close(fd2);
    }
    /* A private writable mapping writes only its own copy. */
    char *priv = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    T_ASSERT(priv != MAP_FAILED);
    priv[0] = 'X';
    munmap(priv, 4096);
    char b;
    T_EQ(pread(fd, &b, 1, 0), 1);
    T_EQ(b, 'a');
    t_child_say(c, "sealed ok");
}

static void rom_commands(struct t_child *c, volatile char *p, const char *line)
{
    (void)p;
    if (!strncmp(line, "rom ", 4)) {
        struct fl_env *env = t_env();
        int r = fl_rom_open(env, line + 4, &rom_cap);
        if (r < 0) {
            t_child_say(c, "rom %s", fl_error_name(r));
            return;
        }
        T_ERR(fl_dataspace_size(env, rom_cap, &rom_size), 0);
        /* writeable asked: mapped read-only all the same */
        struct fl_attr a = {.writeable = true, .executable = true};
        struct fl_range range;
        T_ERR(fl_region_map_attach(env, fl_env_address_space(env), rom_cap, &a, &range), 0);
        rom = (volatile char *)range.start;
        t_child_say(c, "rom %zu", rom_size);
    } else if (!strncmp(line, "romread ", 8)) {
        size_t off = strtoul(line + 8, NULL, 0), n = 0;
        char got[32];
        for (; n < 8; n++) got[n] = rom[off + n];
        got[n] = 0;
        t_child_say(c, "romread %s", got);
    } else if (!strncmp(line, "romzero ", 8)) {
        size_t off = strtoul(line + 8, NULL, 0);
        int nonzero = 0;
        for (size_t i = off; i < rom_size; i++) nonzero += rom[i] != 0;
        t_child_say(c, "romzero %d", nonzero);
    } else if (!strncmp(line, "romwrite ", 9)) {
        size_t off = strtoul(line + 9, NULL, 0);
        rom[off] = 'X'; /* never completes */
        t_child_say(c, "romwrite done");
    } else if (!strcmp(line, "romexec")) {
        int (*fn)(void) = (int (*)(void))(uintptr_t)rom;
        t_child_say(c, "romexec %d", fn());
    } else if (!strcmp(line, "sealed")) {
        sealed(c);
    } else {
        T_FAILF("%s: unknown command %s", c->name, line);
    }
}

static void client(struct t_child *c, const char *name)
{
    t_client_extra = rom_commands;
    t_child_spawn(c, name, t_client_main);
}

/* ---- cases ---- */

static void open_attach_read(void)
{
    start(NULL);
    struct t_child a;
    client(&a, "client A");
    t_child_send(&a, "rom hello");
    t_child_expect(&a, "rom 12288"); /* 10000 bytes, a whole number of pages */
    t_child_send(&a, "romread 0");
    t_child_expect(&a, "romread abcdefgh");
    t_child_send(&a, "romread 9992");
    t_child_expect(&a, "romread ijklmnop"); /* 9992 % 26 = 8 */
    t_child_send(&a, "romzero 10000");
    t_child_expect(&a, "romzero 0");
#if defined(__x86_64__)
    /* Attached executable, a module is code (Genode's binaries are ROMs). */
    struct t_child x;
    client(&x, "client X");
    t_child_send(&x, "rom code");
    t_child_expect(&x, "rom 4096");
    t_child_send(&x, "romexec");
    t_child_expect(&x, "romexec 42");
    t_child_send(&x, "exit");
    T_EQ(t_wait(x.pid), 0);
#endif
    t_child_send(&a, "exit");
    T_EQ(t_wait(a.pid), 0);
    stop();
}

static void shared_and_snapshot(void)
{
    start(NULL);
    struct t_child a, b;
    client(&a, "client A");
    client(&b, "client B");
    t_child_send(&a, "rom hello");
    t_child_expect(&a, "rom 12288");
    /* The file changes while A holds the module: B sees A's snapshot. */
    put_hello('A');
    t_child_send(&b, "rom hello");
    t_child_expect(&b, "rom 12288");
    t_child_send(&b, "romread 26");
    t_child_expect(&b, "romread abcdefgh");
    t_child_send(&a, "romread 26");
    t_child_expect(&a, "romread abcdefgh");
    /* Loaded once. */
    T_EQ(t_core_log_count(core, "ROM module 'hello': 10000 bytes"), 1);

    /* A capability travels as any other: exported by A's manager (this
     * process), imported by C. */
    struct fl_env *m = t_env();
    fl_cap ds;
    T_ERR(fl_rom_open(m, "hello", &ds), 0);
    char token[FL_TOKEN_LEN + 1];
    T_ERR(fl_cap_export(m, ds, token), 0);
    struct t_child c;
    client(&c, "client C");
    t_child_send(&c, "import %s", token);
    t_child_expect(&c, "attached");
    t_child_send(&c, "read 52");
    t_child_expect(&c, "read abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl");
    t_child_send(&c, "exit");
    T_EQ(t_wait(c.pid), 0);
    fl_env_close(m);

    /* Nobody holds it any more: the next open takes a new snapshot. */
    t_child_send(&a, "exit");
    t_child_send(&b, "exit");
    T_EQ(t_wait(a.pid), 0);
    T_EQ(t_wait(b.pid), 0);
    T_WAIT_UNTIL(t_core_log_contains(core, "ROM module 'hello' released"));
    struct t_child d;
    client(&d, "client D");
    t_child_send(&d, "rom hello");
    t_child_expect(&d, "rom 12288");
    t_child_send(&d, "romread 0");
    t_child_expect(&d, "romread ABCDEFGH");
    t_child_send(&d, "exit");
    T_EQ(t_wait(d.pid), 0);
    stop();
}

/* Genode's rm_fault: a ROM attached writeable into a map a manager serves. */
static void write_is_write_fault(void)
{
    start(NULL);
    struct fl_env *m = t_env();
    fl_cap ds, ram;
    T_ERR(fl_rom_open(m, "hello", &ds), 0);
    const volatile char *mine = fl_attach(m, ds, NULL);
    T_ASSERT(mine != NULL);
    struct t_mm outer, inner;
    t_mm_create(&outer, m, 1u << 20, T_MM_HANDLER);
    t_mm_create(&inner, m, 64 * K, T_MM_HANDLER);
    /* The module at 0 of M, and at 0 of N, which shows at 0x40000 of M;
     * every attachment writeable. */
    t_attach_at(m, outer.rm, ds, 0, 0, 0, T_W);
    t_attach_at(m, inner.rm, ds, 0x1000, 0x1000, 0x2000, T_W);
    t_attach_at(m, outer.rm, inner.ds, 0, 0, 0x40000, T_W);
    struct t_child a, b;
    client(&a, "client A");
    client(&b, "client B");
    t_child_send(&a, "import %s", t_mm_export(&outer));
    t_child_expect(&a, "attached");
    t_child_send(&b, "import %s", t_mm_export(&outer));
    t_child_expect(&b, "attached");

    /* Reading is fine. */
    t_child_send(&a, "read 0x10");
    t_child_expect(&a, "read qrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzab");
    /* A write by the program: a WRITE fault at its byte; it waits. */
    t_child_send(&a, "write 0x123 A");
    t_expect_signal(m, outer.sigh);
    t_mm_expect_fault(&outer, FL_FAULT_WRITE, 0x123);
    t_child_silent(&a);
    /* A write by the kernel in read(2): the same, queued behind A. */
    t_child_send(&b, "sysread 0x456 B!");
    T_WAIT_UNTIL(t_core_log_count(core, "reflect WRITE fault") >= 2);
    t_child_silent(&b);
    t_mm_expect_fault(&outer, FL_FAULT_WRITE, 0x123);
    /* Through nesting, the deepest map gets it (N's 0x2000 + 0x345). */
    struct t_child c;
    client(&c, "client C");
    t_child_send(&c, "import %s", t_mm_export(&outer));
    t_child_expect(&c, "attached");
    t_child_send(&c, "write 0x42345 C");
    t_expect_signal(m, inner.sigh);
    t_mm_expect_fault(&inner, FL_FAULT_WRITE, 0x2345);
    t_child_silent(&c);

    /* The manager attaches writable RAM there (a copy): the writers go on. */
    unsigned char *copy = t_ram_pages(m, 3, 0, &ram);
    memcpy(copy, (const char *)mine, 3 * 4096);
    T_ERR(fl_region_map_detach(m, outer.rm, 0), 0);
    t_attach_at(m, outer.rm, ram, 0, 0, 0, T_W);
    t_child_expect(&a, "wrote");
    t_child_expect(&b, "sysread 2");
    T_ERR(fl_region_map_detach(m, inner.rm, 0x2000), 0);
    t_attach_at(m, inner.rm, ram, 0x1000, 0x1000, 0x2000, T_W);
    t_child_expect(&c, "wrote");
    T_EQ(copy[0x123], 'A');
    T_ASSERT(!memcmp(copy + 0x456, "B!", 2));
    T_EQ(copy[0x1345], 'C');
    /* The module is as it was. */
    T_EQ(mine[0x123], 'a' + 0x123 % 26);
    T_EQ(mine[0x456], 'a' + 0x456 % 26);
    T_EQ(mine[0x1345], 'a' + 0x1345 % 26);
    t_mm_expect_fault(&outer, FL_FAULT_NONE, 0);
    t_mm_expect_fault(&inner, FL_FAULT_NONE, 0);
    t_child_send(&a, "exit");
    t_child_send(&b, "exit");
    t_child_send(&c, "exit");
    T_EQ(t_wait(a.pid), 0);
    T_EQ(t_wait(b.pid), 0);
    T_EQ(t_wait(c.pid), 0);
    fl_env_close(m);
    stop();
}

/* Into a client's own address space (no fault handler): a write never
 * resolves; with --unresolvable sigbus the writer dies of SIGBUS. */
static void own_write_unresolvable(void)
{
    start("--unresolvable", "sigbus", NULL);
    struct t_child a, b;
    client(&a, "client A");
    t_child_send(&a, "rom hello");
    t_child_expect(&a, "rom 12288");
    t_child_send(&a, "romwrite 5");
    T_EQ(t_wait(a.pid), 128 + SIGBUS);
    T_ASSERT(t_core_log_contains(core, "unresolvable WRITE fault"));
    client(&b, "client B");
    t_child_send(&b, "rom hello");
    t_child_expect(&b, "rom 12288");
    t_child_send(&b, "romread 0");
    t_child_expect(&b, "romread abcdefgh");
    t_child_send(&b, "exit");
    T_EQ(t_wait(b.pid), 0);
    stop();
}

static void memfd_is_sealed(void)
{
    start(NULL);
    struct t_child a, b;
    client(&a, "client A");
    t_child_send(&a, "rom hello");
    t_child_expect(&a, "rom 12288");
    t_child_send(&a, "sealed");
    t_child_expect(&a, "sealed ok");
    /* Another session sees the module unchanged. */
    client(&b, "client B");
    t_child_send(&b, "rom hello");
    t_child_expect(&b, "rom 12288");
    t_child_send(&b, "romread 0");
    t_child_expect(&b, "romread abcdefgh");
    t_child_send(&a, "exit");
    t_child_send(&b, "exit");
    T_EQ(t_wait(a.pid), 0);
    T_EQ(t_wait(b.pid), 0);
    stop();
}

static void bad_names(void)
{
    start(NULL);
    struct fl_env *env;
    struct fl_session_info before, after;
    fl_cap ds = FL_CAP_INVALID;
    static const struct {
        const char *name, *why;
        int err;
    } cases[] = {
        {"", NULL, -FL_E_INVALID_ARG},
        {"subdir/file", "a name with a slash", -FL_E_INVALID_ARG},
        {"../hello", "a name with a slash", -FL_E_INVALID_ARG},
        {"/etc/passwd", "a name with a slash", -FL_E_INVALID_ARG},
        {".", "not a file name", -FL_E_INVALID_ARG},
        {"..", "not a file name", -FL_E_INVALID_ARG},
        {"a\nb", "a control character", -FL_E_INVALID_ARG},
        {"missing", "no such file", -FL_E_DENIED},
        {"link-out", "a symbolic link", -FL_E_DENIED},
        {"link-in", "a symbolic link", -FL_E_DENIED},
        {"link-rel", "a symbolic link", -FL_E_DENIED},
        {"subdir", "a directory", -FL_E_DENIED},
        {"fifo", "not a regular file", -FL_E_DENIED},
        {"empty", "an empty file", -FL_E_DENIED},
    };
    /* A session each: core's log lines a session causes are rate-limited. */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        env = t_env();
        T_ERR(fl_env_session_info(env, &before), 0);
        int r = fl_rom_open(env, cases[i].name, &ds);
        if (r != cases[i].err)
            T_FAILF("fl_rom_open('%s') = %s, expected %s", cases[i].name, fl_error_name(r),
                    fl_error_name(cases[i].err));
        if (cases[i].why && !t_core_log_line_has(core, "ROM module", cases[i].why, NULL))
            T_FAILF("core's log does not say why '%s' was refused: %s", cases[i].name,
                    cases[i].why);
        /* Nothing was opened, nothing charged. */
        T_ERR(fl_env_session_info(env, &after), 0);
        T_EQ(after.ram_used, before.ram_used);
        T_EQ(after.cap_used, before.cap_used);
        fl_env_close(env);
    }
    T_EQ(ds, FL_CAP_INVALID);
    env = t_env();
    /* Longer than a name can be: refused before it is sent. */
    char longname[FL_ROM_NAME_MAX + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    T_ERR(fl_rom_open(env, longname, &ds), -FL_E_INVALID_ARG);
    T_ERR(fl_rom_open(env, NULL, &ds), -FL_E_INVALID_ARG);
    /* The session is fine, and a good name still opens. */
    T_ERR(fl_rom_open(env, "hello", &ds), 0);
    fl_env_close(env);
    stop();

    /* A core without --rom-dir serves no modules. */
    core = t_core_start(NULL);
    env = t_env();
    T_ERR(fl_rom_open(env, "hello", &ds), -FL_E_DENIED);
    T_ASSERT(t_core_log_contains(core, "core serves no ROM modules"));
    fl_env_close(env);
    T_EQ(t_core_stop(core), 0);
}

/* A raw peer's name must be terminated, with nothing after it. */
static void malformed_request(void)
{
    start(NULL);
    int fd = t_raw_connect();
    T_EQ(t_raw_hello(fd, 0, -1), 0);
    struct fl_msg_reply rep;
    t_raw_reply(fd, &rep);
    T_EQ(rep.status, 0);
    struct fl_req_rom_open q;
    fl_msg_init(&q, FL_REQ_ROM_OPEN, 2);
    memcpy(q.name, "hello\0x", 7);
    T_EQ(fl_wire_send(fd, &q, sizeof(q), -1, 0), 0);
    t_raw_expect_closed(fd, "ROM_OPEN with bytes after the name", 0);
    T_WAIT_UNTIL(t_core_log_contains(core, "bytes after the name not zero"));
    stop();
}

static void quota(void)
{
    /* Room in core's budget for one big module at a time, beside what the
     * sessions take. */
    start("--ram-budget", "3M", NULL);
    static char big[2 << 20];
    memset(big, 'b', sizeof(big));
    put_file("big1", big, sizeof(big));
    put_file("big2", big, sizeof(big));
    struct fl_env *env = t_env();
    struct fl_session_info s0, s1, s2;
    T_ERR(fl_env_session_info(env, &s0), 0);
    fl_cap small1, small2, big1, big1b, big2;
    /* Each open: Genode's ROM session quota, whatever the module's size. */
    T_ERR(fl_rom_open(env, "hello", &small1), 0);
    T_ERR(fl_env_session_info(env, &s1), 0);
    T_EQ(s1.ram_used - s0.ram_used, 6 * K);
    T_EQ(s1.cap_used - s0.cap_used, 3);
    T_ERR(fl_rom_open(env, "big1", &big1), 0);
    T_ERR(fl_rom_open(env, "hello", &small2), 0); /* again: a second ROM session */
    T_ASSERT(small2 != small1);
    T_ERR(fl_env_session_info(env, &s2), 0);
    T_EQ(s2.ram_used - s0.ram_used, 3 * 6 * K);
    T_EQ(s2.cap_used - s0.cap_used, 3 * 3);

    /* The module's memory is core's budget's, once: another session opens
     * big1 too, but big2 does not fit beside it. */
    struct fl_env *other = t_env();
    T_ERR(fl_rom_open(other, "big1", &big1b), 0);
    T_ERR(fl_rom_open(other, "big2", &big2), -FL_E_OUT_OF_RAM);
    T_ASSERT(t_core_log_contains(core, "do not fit core's RAM budget"));
    /* Released by everyone, big1 goes, and big2 fits. */
    T_ERR(fl_cap_release(env, big1), 0);
    T_ERR(fl_cap_release(other, big1b), 0);
    T_WAIT_UNTIL(t_core_log_contains(core, "ROM module 'big1' released"));
    T_ERR(fl_rom_open(other, "big2", &big2), 0);
    /* Releases return the charges. */
    T_ERR(fl_cap_release(env, small1), 0);
    T_ERR(fl_cap_release(env, small2), 0);
    T_ERR(fl_env_session_info(env, &s2), 0);
    T_EQ(s2.ram_used, s0.ram_used);
    T_EQ(s2.cap_used, s0.cap_used);
    fl_env_close(other);
    fl_env_close(env);
    stop();

    /* Out of the session's quota: RAM first, then capabilities. */
    start("--ram-quota", "10K", "--cap-quota", "64", NULL);
    env = t_env();
    T_ERR(fl_env_session_info(env, &s0), 0);
    T_ERR(fl_rom_open(env, "hello", &small1), 0);
    T_ERR(fl_rom_open(env, "hello", &small2), -FL_E_OUT_OF_RAM);
    T_ERR(fl_env_session_info(env, &s1), 0);
    T_EQ(s1.ram_used - s0.ram_used, 6 * K);
    fl_env_close(env);
    stop();
    start("--cap-quota", "5", NULL);
    env = t_env();
    T_ERR(fl_env_session_info(env, &s0), 0);
    T_ASSERT(s0.cap_quota - s0.cap_used >= 3 && s0.cap_quota - s0.cap_used < 6);
    T_ERR(fl_rom_open(env, "hello", &small1), 0);
    T_ERR(fl_rom_open(env, "hello", &small2), -FL_E_OUT_OF_CAPS);
    fl_env_close(env);
    stop();
}

/* --strict moves RAM on detach; a module stays put, sealed. */
static void strict_keeps_module(void)
{
    start("--strict", NULL);
    struct t_child a;
    client(&a, "client A");
    t_child_send(&a, "rom hello");
    t_child_expect(&a, "rom 12288");
    struct fl_env *m = t_env();
    fl_cap ds;
    T_ERR(fl_rom_open(m, "hello", &ds), 0);
    void *p = fl_attach(m, ds, NULL);
    T_ASSERT(p != NULL);
    T_ERR(fl_detach(m, p), 0);
    T_ASSERT(!t_core_log_contains(core, "moved a dataspace"));
    t_child_send(&a, "sealed");
    t_child_expect(&a, "sealed ok");
    t_child_send(&a, "romread 0");
    t_child_expect(&a, "romread abcdefgh");
    t_child_send(&a, "exit");
    T_EQ(t_wait(a.pid), 0);
    fl_env_close(m);
    stop();
}

T_CASES(open_attach_read, shared_and_snapshot, write_is_write_fault, own_write_unresolvable,
        memfd_is_sealed, bad_names, malformed_request, quota, strict_keeps_module)
