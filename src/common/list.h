/* An intrusive doubly linked list. */
#ifndef FL_LIST_H
#define FL_LIST_H

#include <stddef.h>

struct fl_list {
    struct fl_list *prev, *next;
};

#define FL_LIST_INIT(name)                                                                         \
    {                                                                                              \
        &(name), &(name)                                                                           \
    }
#define fl_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define fl_list_entry(ptr, type, member)   fl_container_of(ptr, type, member)
#define fl_list_for_each_safe(pos, tmp, head)                                                      \
    for (pos = (head)->next, tmp = pos->next; pos != (head); pos = tmp, tmp = pos->next)

static inline void fl_list_init(struct fl_list *l)
{
    l->prev = l->next = l;
}

static inline int fl_list_empty(const struct fl_list *l)
{
    return l->next == l;
}

static inline void fl_list_add_tail(struct fl_list *head, struct fl_list *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static inline void fl_list_del(struct fl_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#endif
