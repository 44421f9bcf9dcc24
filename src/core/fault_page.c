/*
 * fault() without an RPC. A manager asks for the head of a map's faulter
 * queue after every signal; core keeps that head in a page it shares
 * read-only with the session that installed the map's fault handler (one
 * slot per map, under a sequence lock), so the library answers fault() from
 * memory. The page is a sealed memfd core maps read-write and hands over once
 * (the session's agent maps it read-only; F_SEAL_FUTURE_WRITE forbids any
 * writable mapping after core's), and core keeps no descriptor of it.
 *
 * Core writes a slot before it sends anything that could make the manager
 * look (the signal, the reply to an attach), and a syscall lies between, so
 * the manager never reads a head older than the message that woke it.
 */
#include "agent.h"
#include "fault.h"
#include "region_map.h"
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SLOTS (FL_FAULT_PAGE_SIZE / sizeof(struct fl_fault_slot))

static struct fl_fault_slot *page_of(struct fl_session *s)
{
    if (s->fault_page) return s->fault_page;
    if (s->closing || !s->hello_done) return NULL;
    int fd = memfd_create("faultline-faults", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return NULL;
    void *p = MAP_FAILED;
    if (ftruncate(fd, FL_FAULT_PAGE_SIZE) == 0)
        p = mmap(NULL, FL_FAULT_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) <
            0) {
        if (p != MAP_FAILED) munmap(p, FL_FAULT_PAGE_SIZE);
        close(fd); /* a fresh memfd nobody else holds: closing it cannot wait */
        return NULL;
    }
    int r = core_agent_send_fault_page(s, fd); /* dup'ed if queued */
    close(fd);
    if (r < 0) {
        munmap(p, FL_FAULT_PAGE_SIZE);
        return NULL;
    }
    s->fault_page = p;
    return p;
}

static void write_slot(struct fl_fault_slot *slot, uint32_t type, uint64_t addr)
{
    uint32_t seq = atomic_load_explicit(&slot->seq, memory_order_relaxed);
    atomic_store_explicit(&slot->seq, seq + 1, memory_order_relaxed); /* odd: writing */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&slot->type, type, memory_order_relaxed);
    atomic_store_explicit(&slot->addr, addr, memory_order_relaxed);
    atomic_store_explicit(&slot->seq, seq + 2, memory_order_release);
}

unsigned core_fault_page_assign(struct fl_session *s, struct fl_region_map *rm)
{
    if (rm->slot && rm->slot_session == s->id) return rm->slot;
    core_fault_page_release(rm);
    struct fl_fault_slot *page = page_of(s);
    if (!page) return 0; /* fault() stays an RPC */
    /* Slots are never reused: a library may still name a map by an old one,
     * which then says "ask core" for good. */
    if (s->next_slot == 0) s->next_slot = 1;
    if (s->next_slot >= SLOTS) return 0;
    unsigned i = s->next_slot++;
    rm->slot = i;
    rm->slot_session = s->id;
    struct fl_fault f;
    core_fault_state(rm, &f);
    write_slot(&page[i], f.type, f.addr);
    return i;
}

void core_fault_page_release(struct fl_region_map *rm)
{
    if (!rm->slot) return;
    struct fl_session *s = core_session_by_id(rm->slot_session);
    if (s && s->fault_page) write_slot(&s->fault_page[rm->slot], FL_FAULT_SLOT_GONE, 0);
    rm->slot = 0;
    rm->slot_session = 0;
}

void core_fault_page_publish(struct fl_region_map *rm)
{
    if (!rm->slot) return;
    struct fl_session *s = core_session_by_id(rm->slot_session);
    if (!s || !s->fault_page) return;
    struct fl_fault f;
    core_fault_state(rm, &f);
    write_slot(&s->fault_page[rm->slot], f.type, f.addr);
}

void core_fault_page_session_gone(struct fl_session *s)
{
    if (s->fault_page) munmap(s->fault_page, FL_FAULT_PAGE_SIZE);
    s->fault_page = NULL;
}
