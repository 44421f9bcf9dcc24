/*
 * What a program writes on its own stdout or stderr, as one string: shared by
 * the unit tests (which link no harness) and the integration tests. Between
 * t_capture_begin and t_capture_end the descriptor goes to a temporary file.
 */
#ifndef FL_TEST_CAPTURE_H
#define FL_TEST_CAPTURE_H

#include <stdio.h>
#include <unistd.h>

struct t_capture {
    int fd, saved;
    FILE *tmp;
    char text[4096];
};

/* Capture fd (1 or 2) from now on: 0, or -1 if it cannot. */
static inline int t_capture_begin(struct t_capture *c, int fd)
{
    fflush(fd == 1 ? stdout : stderr);
    c->fd = fd;
    c->text[0] = 0;
    c->tmp = tmpfile();
    if (!c->tmp) return -1;
    c->saved = dup(fd);
    if (c->saved < 0 || dup2(fileno(c->tmp), fd) < 0) return -1;
    return 0;
}

/* Give fd back; what it received meanwhile. */
static inline const char *t_capture_end(struct t_capture *c)
{
    fflush(c->fd == 1 ? stdout : stderr);
    dup2(c->saved, c->fd);
    close(c->saved);
    rewind(c->tmp);
    size_t n = fread(c->text, 1, sizeof(c->text) - 1, c->tmp);
    c->text[n] = 0;
    fclose(c->tmp);
    return c->text;
}

#endif
