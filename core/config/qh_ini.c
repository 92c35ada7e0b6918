/* qh_ini.c - the INI reader: a line-by-line pre-scan for what iniparser loses (line numbers,
 * duplicate sections and keys, which it silently merges or overwrites) and for what it rejects
 * (syntax errors, over-long lines), then iniparser itself for the values, so that quoting and
 * inline comments mean exactly what iniparser makes of them.
 *
 * The scan mirrors iniparser 4.1's reader: a logical line ends at '\n' unless it ends (after
 * trailing blanks) in '\', which joins the next line; a logical line may hold at most
 * INI_LINE_MAX bytes; ';' or '#' starts a comment line; "[name]" opens a section; anything with
 * a non-empty key before '=' is an entry. Lines iniparser would reject are reported here and
 * blanked in a private copy of the file, so that one bad line does not hide the rest. */
#include "qhost/qh_config.h"

#include <ctype.h>
#include <errno.h>
#include <iniparser.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qh_ini_impl.h"

/* iniparser 4.1 reads lines with fgets into a 1024-byte buffer: 1022 bytes plus '\n' and NUL. */
#define INI_LINE_MAX 1022

typedef struct ini_scan {
    const char *path;
    qh_diag *d;
    qh_ini *ini;
    qh_ini_section *cur; /* NULL before the first section and after an invalid header */
    bool cur_invalid;
    char *clean;         /* the file with rejected lines blanked, for iniparser */
    size_t clean_len;
    bool any_blanked;
} ini_scan;

/* ---------------------------------------------------------------- small helpers */

static char *strip(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static bool valid_section_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return false;
    return true;
}

/* Quotes a line in a message, shortened so the message stays one readable line. */
static void excerpt(const char *s, char *buf, size_t size)
{
    size_t n = strlen(s);
    if (n + 1 <= size && n <= 60)
        snprintf(buf, size, "%s", s);
    else
        snprintf(buf, size, "%.57s...", s);
}

/* ---------------------------------------------------------------- building the result */

static qh_ini_section *add_section(qh_ini *ini, const char *name, int line)
{
    qh_ini_section *grown = realloc(ini->sections, (size_t)(ini->n_sections + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    ini->sections = grown;
    qh_ini_section *s = &ini->sections[ini->n_sections];
    memset(s, 0, sizeof *s);
    if (!(s->name = strdup(name)))
        return NULL;
    s->line = line;
    ini->n_sections++;
    return s;
}

static qh_ini_entry *add_entry(qh_ini_section *s, const char *key, int line)
{
    qh_ini_entry *grown = realloc(s->entries, (size_t)(s->n_entries + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    s->entries = grown;
    qh_ini_entry *e = &s->entries[s->n_entries];
    memset(e, 0, sizeof *e);
    if (!(e->key = strdup(key)))
        return NULL;
    e->line = line;
    s->n_entries++;
    return e;
}

const qh_ini_section *qh_ini_find_section(const qh_ini *ini, const char *name)
{
    for (int i = 0; ini && i < ini->n_sections; i++)
        if (strcmp(ini->sections[i].name, name) == 0)
            return &ini->sections[i];
    return NULL;
}

const qh_ini_entry *qh_ini_find(const qh_ini_section *s, const char *key)
{
    for (int i = 0; s && i < s->n_entries; i++)
        if (strcmp(s->entries[i].key, key) == 0)
            return &s->entries[i];
    return NULL;
}

void qh_ini_free(qh_ini *ini)
{
    if (!ini)
        return;
    for (int i = 0; i < ini->n_sections; i++) {
        qh_ini_section *s = &ini->sections[i];
        for (int j = 0; j < s->n_entries; j++) {
            free(s->entries[j].key);
            free(s->entries[j].value);
        }
        free(s->entries);
        free(s->name);
    }
    free(ini->sections);
    free(ini->path);
    free(ini);
}

/* ---------------------------------------------------------------- classifying one logical line */

static bool scan_section(ini_scan *sc, char *text, int line)
{
    text[strlen(text) - 1] = '\0'; /* the closing ']' */
    char *name = strip(text + 1);
    lower(name);
    sc->cur = NULL;
    sc->cur_invalid = true;
    if (!valid_section_name(name)) {
        char shown[80];
        excerpt(name, shown, sizeof shown);
        if (strchr(name, ':'))
            qh_diag_error(sc->d, sc->path, line, "invalid section name [%s]: ':' is not allowed", shown);
        else
            qh_diag_error(sc->d, sc->path, line,
                          "invalid section name [%s]: use only letters, digits and '_'", shown);
        return true; /* iniparser accepts it; its keys are skipped here */
    }
    qh_ini_section *s = (qh_ini_section *)qh_ini_find_section(sc->ini, name);
    if (s) {
        qh_diag_error(sc->d, sc->path, line, "duplicate section [%s] (first on line %d)", name, s->line);
    } else if (!(s = add_section(sc->ini, name, line))) {
        return false;
    }
    /* a repeated section continues the first one, as iniparser merges them */
    sc->cur = s;
    sc->cur_invalid = false;
    return true;
}

static bool scan_entry(ini_scan *sc, char *text, int line)
{
    char *eq = strchr(text, '=');
    *eq = '\0';
    char *key = strip(text);
    lower(key);
    if (!sc->cur) {
        if (!sc->cur_invalid)
            qh_diag_error(sc->d, sc->path, line, "key '%s' outside any section", key);
        return true;
    }
    const qh_ini_entry *first = qh_ini_find(sc->cur, key);
    if (first) {
        qh_diag_error(sc->d, sc->path, line, "duplicate key '%s' in [%s] (first set on line %d)", key,
                      sc->cur->name, first->line);
        return true;
    }
    return add_entry(sc->cur, key, line) != NULL;
}

/* Returns false when the line must be hidden from iniparser (it would reject the whole file). */
static bool scan_logical_line(ini_scan *sc, char *text, int line, bool *oom)
{
    char *s = strip(text);
    size_t n = strlen(s);
    if (n == 0 || s[0] == ';' || s[0] == '#')
        return true;
    if (s[0] == '[' && s[n - 1] == ']') {
        *oom = !scan_section(sc, s, line);
        return true;
    }
    if (s[0] != '=' && strchr(s, '=')) {
        *oom = !scan_entry(sc, s, line);
        return true;
    }
    char shown[80];
    excerpt(s, shown, sizeof shown);
    qh_diag_error(sc->d, sc->path, line, "syntax error: '%s' is neither a [section] header nor 'key = value'",
                  shown);
    if (s[0] == '[') { /* a broken header: its keys must not land in the section before it */
        sc->cur = NULL;
        sc->cur_invalid = true;
    }
    return false;
}

/* ---------------------------------------------------------------- the scan over the whole file */

/* Blanking never grows the copy: a rejected physical line holds at least one byte. */
static void clean_append(ini_scan *sc, const char *s, size_t n)
{
    memcpy(sc->clean + sc->clean_len, s, n);
    sc->clean_len += n;
}

/* The n_lines physical lines [start, end) of one logical line: copied, or blanked line by line so
 * that iniparser's line numbers stay those of the file. */
static void clean_emit(ini_scan *sc, const char *start, const char *end, int n_lines, bool keep)
{
    if (keep) {
        clean_append(sc, start, (size_t)(end - start));
        return;
    }
    sc->any_blanked = true;
    for (int i = 0; i < n_lines; i++)
        clean_append(sc, "\n", 1);
}

/* Length of a physical line's text as iniparser keeps it before joining: trailing blanks removed. */
static size_t rstrip_len(const char *s, size_t n)
{
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    return n;
}

static bool scan_buffer(ini_scan *sc, const char *buf, size_t size)
{
    char *logical = malloc(size + 1);
    if (!logical)
        return false;
    const char *pos = buf, *bufend = buf + size;
    int line_no = 0;
    bool ok = true;
    while (ok && pos < bufend) {
        const char *start = pos;
        int first = line_no + 1, n_lines = 0;
        size_t len = 0;
        bool too_long = false, has_nul = false, continued = false;
        do { /* gather the physical lines of one logical line */
            const char *nl = memchr(pos, '\n', (size_t)(bufend - pos));
            size_t phys = (size_t)((nl ? nl : bufend) - pos);
            line_no++;
            n_lines++;
            if (len + phys > INI_LINE_MAX)
                too_long = true;
            if (memchr(pos, '\0', phys))
                has_nul = true;
            size_t keep = rstrip_len(pos, phys);
            memcpy(logical + len, pos, keep);
            len += keep;
            continued = keep > 0 && pos[keep - 1] == '\\';
            if (continued)
                len--; /* the next line replaces the backslash, as in iniparser */
            pos = nl ? nl + 1 : bufend;
        } while (continued && pos < bufend);
        logical[len] = '\0';
        bool keep = true, oom = false;
        if (too_long) {
            qh_diag_error(sc->d, sc->path, first, "line is too long (iniparser reads at most %d bytes a line)",
                          INI_LINE_MAX);
            keep = false;
        } else if (has_nul) {
            qh_diag_error(sc->d, sc->path, first, "line contains a NUL byte");
            keep = false;
        } else if (continued) {
            /* iniparser silently drops a continuation that the file never completes */
            qh_diag_error(sc->d, sc->path, first, "line ends in '\\' but the file ends there");
            keep = false;
        } else {
            keep = scan_logical_line(sc, logical, first, &oom);
        }
        clean_emit(sc, start, pos, n_lines, keep);
        ok = !oom;
    }
    free(logical);
    return ok;
}

/* ---------------------------------------------------------------- values from iniparser */

static int ini_silent(const char *fmt, ...)
{
    (void)fmt;
    return 0;
}

/* iniparser 4.1 only reads from a path: a copy with the rejected lines blanked goes to a
 * temporary file. */
static dictionary *load_clean_copy(ini_scan *sc)
{
    const char *tmpdir = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/qhost-ini-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return NULL;
    size_t done = 0;
    while (done < sc->clean_len) {
        ssize_t w = write(fd, sc->clean + done, sc->clean_len - done);
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    close(fd);
    dictionary *dict = done == sc->clean_len ? iniparser_load(tmpl) : NULL;
    unlink(tmpl);
    return dict;
}

static bool fill_values(ini_scan *sc, dictionary *dict)
{
    for (int i = 0; i < sc->ini->n_sections; i++) {
        qh_ini_section *s = &sc->ini->sections[i];
        for (int j = 0; j < s->n_entries; j++) {
            qh_ini_entry *e = &s->entries[j];
            size_t n = strlen(s->name) + strlen(e->key) + 2;
            char *full = malloc(n);
            if (!full)
                return false;
            snprintf(full, n, "%s:%s", s->name, e->key);
            const char *v = dict ? iniparser_getstring(dict, full, NULL) : NULL;
            free(full);
            if (!(e->value = strdup(v ? v : "")))
                return false;
        }
    }
    return true;
}

bool qh_ini_read_text(const char *path, char **buf, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b) {
        n += fread(b + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *grown = realloc(b, cap *= 2);
        if (!grown) {
            free(b);
            b = NULL;
        } else {
            b = grown;
        }
    }
    bool ok = b && !ferror(f);
    int saved = errno;
    fclose(f);
    errno = saved;
    if (!ok) {
        free(b);
        return false;
    }
    b[n] = '\0';
    *buf = b;
    *size = n;
    return true;
}

qh_ini *qh_ini_load(const char *path, qh_diag *d)
{
    char *buf = NULL;
    size_t size = 0;
    if (!qh_ini_read_text(path, &buf, &size)) {
        qh_diag_error(d, path, 0, "cannot read file: %s", strerror(errno ? errno : EIO));
        return NULL;
    }
    ini_scan sc = {.path = path, .d = d};
    sc.ini = calloc(1, sizeof *sc.ini);
    sc.clean = malloc(size + 1);
    bool ok = sc.ini && sc.clean && (sc.ini->path = strdup(path)) && scan_buffer(&sc, buf, size);
    if (ok) {
        /* iniparser prints to stderr by default; every problem is reported through d instead */
        iniparser_set_error_callback(ini_silent);
        dictionary *dict = sc.any_blanked ? load_clean_copy(&sc) : iniparser_load(path);
        iniparser_set_error_callback(NULL);
        if (!dict)
            qh_diag_error(d, path, 0, "iniparser could not read the file");
        ok = fill_values(&sc, dict);
        if (dict)
            iniparser_freedict(dict);
    }
    free(sc.clean);
    free(buf);
    if (!ok) {
        qh_diag_error(d, path, 0, "out of memory while reading the file");
        qh_ini_free(sc.ini);
        return NULL;
    }
    return sc.ini;
}
