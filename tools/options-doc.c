/*
 * options-doc - the option table of README.md and docs/tuning.md, made from
 * src/api/config.c's table of keys (through _cua_config_option), so that the
 * docs cannot drift from the code.
 *
 *   options-doc                  print the Markdown table
 *   options-doc --check FILE...  each FILE's block between the lines
 *                                "<!-- options:begin ... -->" and
 *                                "<!-- options:end -->" must be that table;
 *                                ends with "N passed, N failed"
 *   options-doc --write FILE...  replace those blocks with the table
 *   options-doc --self-test      --check and --write on temporary files
 *
 * In the cells, words that are code (they hold an underscore, or are
 * followed by "()" or by ':' and a digit: cua_trim_idle(), CUA_ARENA_POISON,
 * vmm:0) are put in backticks, and '|' is escaped. Exit status 0 when
 * everything passed.
 */
#include "api/config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BEGIN_MARK "<!-- options:begin"
#define END_MARK "<!-- options:end"

/* ---- a growing string ---------------------------------------------------- */

struct text {
    char *s;
    size_t len, cap;
};

static void put(struct text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + n + 1) cap *= 2;
        char *p = realloc(t->s, cap);
        if (!p) {
            fprintf(stderr, "options-doc: out of memory\n");
            exit(2);
        }
        t->s = p;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void puts_text(struct text *t, const char *s) { put(t, s, strlen(s)); }

/* ---- the table ------------------------------------------------------------- */

static bool is_word(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* s as a table cell: code words in backticks, '|' escaped. */
static void put_cell(struct text *t, const char *s)
{
    while (*s) {
        if (!is_word(*s)) {
            if (*s == '|') puts_text(t, "\\");
            put(t, s++, 1);
            continue;
        }
        size_t n = 0;
        while (is_word(s[n])) n++;
        size_t m = n;
        if (s[m] == '(' && s[m + 1] == ')') {
            m += 2;
        } else if (s[m] == ':' && isdigit((unsigned char)s[m + 1])) {
            for (m++; isdigit((unsigned char)s[m]); m++) {
            }
        }
        bool code = m > n || memchr(s, '_', n) != NULL;
        if (code) puts_text(t, "`");
        put(t, s, m);
        if (code) puts_text(t, "`");
        s += m;
    }
}

static struct text make_table(void)
{
    struct text t = {0};
    puts_text(&t, "| key | value | default | meaning |\n| --- | --- | --- | --- |\n");
    cua_option_info o;
    for (size_t i = 0; _cua_config_option(i, &o); i++) {
        puts_text(&t, "| `");
        puts_text(&t, o.name);
        puts_text(&t, "` | ");
        put_cell(&t, o.syntax);
        puts_text(&t, " | ");
        put_cell(&t, o.fallback);
        puts_text(&t, " | ");
        put_cell(&t, o.help);
        puts_text(&t, " |\n");
    }
    return t;
}

/* ---- files ----------------------------------------------------------------- */

static bool read_file(const char *path, struct text *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) put(out, buf, n);
    bool ok = !ferror(f);
    fclose(f);
    if (!out->s) puts_text(out, "");
    return ok;
}

static bool write_file(const char *path, const char *s, size_t len)
{
    size_t n = strlen(path) + 8;
    char *tmp = malloc(n);
    if (!tmp) return false;
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(s, 1, len, f) == len;
    if (f && fclose(f) != 0) ok = false;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) remove(tmp);
    free(tmp);
    return ok;
}

/* The start of the line after the one at p (or the end of the text). */
static const char *next_line(const char *p)
{
    const char *nl = strchr(p, '\n');
    return nl ? nl + 1 : p + strlen(p);
}

/* The line starting with `mark` at or after p, or NULL. */
static const char *find_line(const char *text, const char *p, const char *mark)
{
    for (; *p; p = next_line(p))
        if ((p == text || p[-1] == '\n') && strncmp(p, mark, strlen(mark)) == 0) return p;
    return NULL;
}

/* The block of `text`: from the line after the begin mark to the end mark's
 * line. false (and why) when the marks are missing or out of order. */
static bool find_block(const char *text, const char **from, const char **to, const char **why)
{
    const char *b = find_line(text, text, BEGIN_MARK);
    if (!b) {
        *why = "no line starting with \"" BEGIN_MARK "\"";
        return false;
    }
    *from = next_line(b);
    *to = find_line(text, *from, END_MARK);
    if (!*to) {
        *why = "no line starting with \"" END_MARK "\" after the begin mark";
        return false;
    }
    if (find_line(text, next_line(*to), BEGIN_MARK)) {
        *why = "more than one options block";
        return false;
    }
    return true;
}

/* The line number (from 1) of the first line where a and b differ. */
static int first_difference(const char *a, size_t alen, const char *b, size_t blen)
{
    int line = 1;
    for (size_t i = 0; i < alen && i < blen && a[i] == b[i]; i++)
        if (a[i] == '\n') line++;
    return line;
}

/* Check (write false) or write (write true) the block of one file. */
static bool do_file(const char *path, const struct text *table, bool write, bool quiet)
{
    struct text t = {0};
    const char *from, *to, *why;
    bool ok = false;
    if (!read_file(path, &t)) {
        if (!quiet) printf("FAIL: %s: cannot read it\n", path);
    } else if (!find_block(t.s, &from, &to, &why)) {
        if (!quiet) printf("FAIL: %s: %s\n", path, why);
    } else {
        size_t len = (size_t)(to - from);
        bool same = len == table->len && memcmp(from, table->s, len) == 0;
        if (same) {
            ok = true;
            if (!quiet) printf("ok: %s: the options block is src/api/config.c's table\n", path);
        } else if (write) {
            struct text out = {0};
            put(&out, t.s, (size_t)(from - t.s));
            put(&out, table->s, table->len);
            puts_text(&out, to);
            ok = write_file(path, out.s, out.len);
            if (!quiet) printf("%s: %s\n", ok ? "written" : "FAIL: cannot write", path);
            free(out.s);
        } else if (!quiet) {
            int line = first_difference(from, len, table->s, table->len);
            printf("FAIL: %s: the options block differs from src/api/config.c's table at its line "
                   "%d (tools/options-doc --write %s)\n", path, line, path);
        }
    }
    free(t.s);
    return ok;
}

/* ---- self-test ------------------------------------------------------------------ */

static bool temp_with(char *path, const char *text)
{
    int fd = mkstemp(path);
    if (fd < 0) return false;
    close(fd);
    return write_file(path, text, strlen(text));
}

static int self_test(const struct text *table)
{
    int passed = 0, failed = 0;
    struct {
        const char *what, *text;
        bool check_ok, write_ok; /* --check passes; --write then makes it pass */
    } cases[] = {
        {"a stale block fails and is rewritten",
         "# x\n<!-- options:begin -->\n| key |\n<!-- options:end -->\ntail\n", false, true},
        {"an empty block fails and is rewritten",
         "<!-- options:begin x -->\n<!-- options:end -->\n", false, true},
        {"no begin mark fails", "| key |\n<!-- options:end -->\n", false, false},
        {"no end mark fails", "<!-- options:begin -->\n| key |\n", false, false},
        {"two blocks fail",
         "<!-- options:begin -->\n<!-- options:end -->\n<!-- options:begin -->\n<!-- options:end -->\n",
         false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[] = "/tmp/options-doc-XXXXXX";
        bool ok = temp_with(path, cases[i].text);
        ok = ok && do_file(path, table, false, true) == cases[i].check_ok;
        ok = ok && do_file(path, table, true, true) == cases[i].write_ok;
        ok = ok && do_file(path, table, false, true) == cases[i].write_ok;
        if (ok && cases[i].write_ok) { /* the text around the block is kept */
            struct text t = {0};
            ok = read_file(path, &t) && strstr(t.s, table->s) &&
                 strncmp(t.s, cases[i].text, strcspn(cases[i].text, "\n") + 1) == 0 &&
                 strstr(t.s, END_MARK " -->\n") && (!strstr(cases[i].text, "tail") ||
                                                   strstr(t.s, "-->\ntail\n"));
            free(t.s);
        }
        remove(path);
        printf("%s: %s\n", ok ? "ok" : "FAIL", cases[i].what);
        if (ok)
            passed++;
        else
            failed++;
    }
    struct text cell = {0};
    put_cell(&cell, "see cua_x() and a_b, vmm:0 | x: 1/128 (0xDE)");
    bool code = strcmp(cell.s, "see `cua_x()` and `a_b`, `vmm:0` \\| x: 1/128 (0xDE)") == 0;
    free(cell.s);
    printf("%s: code words in backticks, '|' escaped\n", code ? "ok" : "FAIL");
    if (code)
        passed++;
    else
        failed++;
    bool keys = strstr(table->s, "\n| `device` |") && strstr(table->s, "\n| `peers` |");
    printf("%s: the table has a row per key\n", keys ? "ok" : "FAIL");
    if (keys)
        passed++;
    else
        failed++;
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    struct text table = make_table();
    int rc = 0;
    if (argc == 1) {
        fputs(table.s, stdout);
    } else if (strcmp(argv[1], "--self-test") == 0 && argc == 2) {
        rc = self_test(&table);
    } else if ((strcmp(argv[1], "--check") == 0 || strcmp(argv[1], "--write") == 0) && argc > 2) {
        bool write = strcmp(argv[1], "--write") == 0;
        int passed = 0, failed = 0;
        for (int i = 2; i < argc; i++) {
            if (do_file(argv[i], &table, write, false))
                passed++;
            else
                failed++;
        }
        printf("%d passed, %d failed\n", passed, failed);
        rc = failed ? 1 : 0;
    } else {
        fprintf(stderr, "usage: options-doc [--check FILE... | --write FILE... | --self-test]\n");
        rc = 2;
    }
    free(table.s);
    return rc;
}
