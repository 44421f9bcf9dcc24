/* TAP for meson and prove, JUnit XML for CI servers. */
#include "report.h"
#include "run.h"

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
        if (tag) {
            fprintf(f, "    <%s message=\"", tag);
            xml_text(f, r->reason, strlen(r->reason));
            fprintf(f, "\"/>\n");
        }
        fprintf(f, "    <system-out>");
        xml_text(f, r->output ? r->output : "", r->output_len);
        fprintf(f, "</system-out>\n  </testcase>\n");
    }
    fprintf(f, "</testsuite>\n");
    return fclose(f);
}
