/*
 * faultline-run: a parsed scenario file. The format is documented in
 * doc/faultline-run.md; scenario.c is its only reader.
 */
#ifndef FL_RUN_SCENARIO_H
#define FL_RUN_SCENARIO_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum {
    RUN_MAX_COMPONENTS = 32,
    RUN_MAX_ARGS = 64,
    RUN_MAX_ENV = 32,
    RUN_MAX_NAMES = 16,
    RUN_MAX_RULES = 256,
    RUN_MAX_REQUIRES = 16,
};

/* Rule targets besides a component index. */
#define RUN_ANY  (-1)
#define RUN_CORE (-2)

struct pattern {
    char *text; /* as written; for a regex without its slashes */
    bool is_regex;
    regex_t re;
};

enum exit_kind { EXIT_CODE, EXIT_SIGNAL, EXIT_ANY, EXIT_RUNNING };

struct component {
    char *name;
    int line;
    char *argv[RUN_MAX_ARGS + 1]; /* argv[0] resolved to a path at load */
    int argc;
    char *env[RUN_MAX_ENV];
    int nenv;
    char *exports[RUN_MAX_NAMES];
    int nexports;
    char *imports[RUN_MAX_NAMES]; /* every ${NAME} in argv and env that is no built-in */
    int nimports;
    int after[RUN_MAX_COMPONENTS]; /* component indices: start once they exited */
    int nafter;
    struct after_line {
        int target; /* component index or RUN_CORE */
        struct pattern pat;
        int line;
    } after_line[RUN_MAX_NAMES]; /* start once these lines were seen */
    int nafter_line;
    enum exit_kind exit_kind;
    int exit_value; /* exit code or signal number */
    int exit_line;
    /* 'user NAME|UID': run as that user (needs root); user_line 0: as the runner */
    char *user;
    int user_line;
    uid_t uid;
    gid_t gid;
    gid_t *groups; /* its supplementary groups */
    int ngroups;
};

enum rule_kind { RULE_EXPECT, RULE_EXPECT_ANY, RULE_FAIL_ON };

struct rule {
    enum rule_kind kind;
    int target; /* component index, RUN_ANY or RUN_CORE */
    struct pattern pat;
    int line;
};

struct scenario {
    char *path;
    char *name; /* the file's base name without .scenario */
    char *dir;  /* the file's directory, for ${SCENARIO_DIR} */
    int timeout_s;
    char *core_args[RUN_MAX_ARGS];
    int ncore_args;
    int core_line;
    char *requires[RUN_MAX_REQUIRES];
    int require_lines[RUN_MAX_REQUIRES];
    int nrequires;
    struct component comp[RUN_MAX_COMPONENTS];
    int ncomp;
    struct rule rules[RUN_MAX_RULES];
    int nrules;
};

/*
 * Read and check a scenario. Commands without a slash are looked up in
 * search (NULL-terminated directory list), then in the scenario's directory,
 * then in $PATH. Returns 0, or -1 with "FILE:LINE: what is wrong" in err.
 */
int scenario_load(const char *path, const char *const *search, struct scenario *sc, char *err,
                  size_t errlen);

/* Whether a log line matches a pattern. */
bool pattern_match(const struct pattern *p, const char *line);

/* The text a scenario line names a target by: a component's name, "core" or "*". */
const char *scenario_target_name(const struct scenario *sc, int target);

#endif
