/* TAP for meson and prove, JUnit XML for CI servers. */
#include "report.h"
#include "run.h"
#include "fl_version.h"

#include <stdio.h>
#include <string.h>

void report_tap_line(int n, const struct result *res)
{
    switch (res->code) {
    case RUN_PASS: printf("ok %d - %s\n", n, res->name); break;
    case RUN_SKIP: printf("ok %d - %s # SKIP %s\n", n, res->name, res->reason); break;
    default:
        /* A reason may name a '#', which TAP would take for a directive. */
        printf("not ok %d - %s: ", n, res->name);
        for (const char *s = res->reason; *s; s++) putchar(*s == '#' ? '_' : *s);
        putchar('\n');
    }
    fflush(stdout);
}

static void xml_text(FILE *f, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            /* XML 1.0 allows no other control characters. */
            if (c < 0x20 && c != '\n' && c != '\t')
                fputc('?', f);
            else
                fputc(c, f);
        }
    }
}

/*
 * The part of a scenario's output that tells why it failed: from the
 * runner's "FAIL:" line on (what was not seen, the last lines of each log,
 * faultline-ctl's view of core). Without such a line (a worker that died)
 * the last FAILURE_LINES lines of its output.
 */
#define FAILURE_LINES 60
static const char *failure_text(const struct result *r, size_t *len)
{
    const char *out = r->output ? r->output : "";
    size_t n = r->output ? r->output_len : 0;
    static const char mark[] = "[faultline-run] FAIL: ";
    const char *at = NULL;
    for (const char *p = out; p && p < out + n; p = memchr(p, '\n', (size_t)(out + n - p))) {
        if (*p == '\n') p++;
        /* A line of its own, possibly TAP's "# " in front. */
        const char *l = !strncmp(p, "# ", 2) ? p + 2 : p;
        if ((size_t)(out + n - l) >= sizeof(mark) - 1 && !memcmp(l, mark, sizeof(mark) - 1)) {
            at = p;
            break;
        }
    }
    if (!at) {
        at = out + n;
        for (int lines = 0; at > out && lines <= FAILURE_LINES; at--)
            if (at[-1] == '\n') lines++;
        if (at > out) at++;
    }
    *len = (size_t)(out + n - at);
    return at;
}

int report_junit(const char *path, const struct result *res, int n)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int failures = 0, errors = 0, skipped = 0;
    double total = 0;
    for (int i = 0; i < n; i++) {
        failures += res[i].code == RUN_FAIL;
        errors += res[i].code == RUN_BROKEN;
        skipped += res[i].code == RUN_SKIP;
        total += res[i].seconds;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f,
            "<testsuite name=\"faultline-run\" tests=\"%d\" failures=\"%d\" errors=\"%d\" "
            "skipped=\"%d\" time=\"%.3f\">\n",
            n, failures, errors, skipped, total);
    /* Which faultline ran them: the build's version and git commit. */
    fprintf(f, "  <properties>\n"
               "    <property name=\"faultline.version\" value=\"");
    xml_text(f, FL_VERSION, strlen(FL_VERSION));
    fprintf(f, "\"/>\n    <property name=\"faultline.commit\" value=\"");
    xml_text(f, FL_COMMIT, strlen(FL_COMMIT));
    fprintf(f, "\"/>\n  </properties>\n");
    for (int i = 0; i < n; i++) {
        const struct result *r = &res[i];
        fprintf(f, "  <testcase classname=\"scenarios\" name=\"");
        xml_text(f, r->name, strlen(r->name));
        fprintf(f, "\" file=\"");
        xml_text(f, r->path, strlen(r->path));
        fprintf(f, "\" time=\"%.3f\">\n", r->seconds);
        const char *tag = r->code == RUN_FAIL     ? "failure"
                          : r->code == RUN_BROKEN ? "error"
                          : r->code == RUN_SKIP   ? "skipped"
                                                  : NULL;
        if (tag && r->code == RUN_SKIP) {
            fprintf(f, "    <%s message=\"", tag);
            xml_text(f, r->reason, strlen(r->reason));
            fprintf(f, "\"/>\n");
        } else if (tag) {
            /* The text a CI server shows: the reason, then the report. */
            fprintf(f, "    <%s message=\"", tag);
            xml_text(f, r->reason, strlen(r->reason));
            fprintf(f, "\" type=\"%s\">", r->code == RUN_FAIL ? "FAIL" : "BROKEN");
            xml_text(f, r->reason, strlen(r->reason));
            size_t len;
            const char *report = failure_text(r, &len);
            if (len) fputc('\n', f);
            xml_text(f, report, len);
            fprintf(f, "</%s>\n", tag);
        }
        fprintf(f, "    <system-out>");
        xml_text(f, r->output ? r->output : "", r->output_len);
        fprintf(f, "</system-out>\n  </testcase>\n");
    }
    fprintf(f, "</testsuite>\n");
    return fclose(f);
}
