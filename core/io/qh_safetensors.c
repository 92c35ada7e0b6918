/* qh_safetensors.c - read and write the safetensors format.
 *
 * The header is untrusted input: every length, offset and shape is checked against the file
 * before a byte of tensor data is allocated or read, so a corrupt or hostile file yields one
 * clear error line instead of a crash or a huge allocation. The format is little-endian; so are
 * all hosts qhost targets, hence data is copied without byte swapping.
 */
#include "qhost/qh_safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qhost/qh_fileio.h"

/* The reference implementation refuses headers above 100 MB; so do we, before allocating. */
#define ST_HEADER_MAX 100000000ull
#define ST_META_KEY "__metadata__"

typedef struct st_entry {
    const char *name; /* points into the JSON document */
    qh_dtype dtype;
    int32_t ndim;
    int64_t shape[QH_MAX_DIMS];
    int64_t begin, end;
} st_entry;

typedef struct st_ctx {
    const char *path;
    qh_error *err;
    int64_t data_bytes; /* size of the data buffer after the header */
} st_ctx;

/* Names come from the file: keep error messages on one line and bounded. */
static const char *printable(const char *s, char *buf, size_t size)
{
    size_t i = 0;
    for (; s[i] && i + 4 < size; i++)
        buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    if (s[i])
        memcpy(buf + i, "...", 4); /* i + 4 == size here */
    else
        buf[i] = '\0';
    return buf;
}

#define PNAME(s) printable((s), (char[96]){0}, 96)

static void meta_free(qh_safetensors *st)
{
    for (int32_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->meta_keys);
    free(st->meta_values);
}

void qh_safetensors_free(qh_safetensors *st)
{
    if (!st)
        return;
    for (int32_t i = 0; i < st->n_tensors; i++)
        qh_tensor_free(st->tensors[i]);
    free(st->tensors);
    meta_free(st);
    free(st);
}

const qh_tensor *qh_safetensors_find(const qh_safetensors *st, const char *name)
{
    for (int32_t i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i]->name, name) == 0)
            return st->tensors[i];
    return NULL;
}

const char *qh_safetensors_meta(const qh_safetensors *st, const char *key)
{
    for (int32_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0)
            return st->meta_values[i];
    return NULL;
}

/* ---- header validation ---- */

static qh_status parse_dtype(const st_ctx *c, const char *name, json_t *v, st_entry *e)
{
    if (!json_is_string(v))
        return qh_error_set(c->err, QH_E_FORMAT, "%s: tensor '%s': dtype is not a string", c->path, PNAME(name));
    if (qh_dtype_from_name(json_string_value(v), &e->dtype) != QH_OK)
        return qh_error_set(c->err, QH_E_FORMAT, "%s: tensor '%s': unknown dtype '%s'", c->path, PNAME(name),
                            PNAME(json_string_value(v)));
    return QH_OK;
}

static qh_status parse_shape(const st_ctx *c, const char *name, json_t *v, st_entry *e)
{
    if (!json_is_array(v))
        return qh_error_set(c->err, QH_E_FORMAT, "%s: tensor '%s': shape is not an array", c->path, PNAME(name));
    size_t rank = json_array_size(v);
    if (rank > QH_MAX_DIMS)
        return qh_error_set(c->err, QH_E_FORMAT, "%s: tensor '%s': shape has rank %zu, more than %d", c->path,
                            PNAME(name), rank, QH_MAX_DIMS);
    e->ndim = (int32_t)rank;
    for (size_t i = 0; i < rank; i++) {
        json_t *d = json_array_get(v, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return qh_error_set(c->err, QH_E_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer",
                                c->path, PNAME(name), i);
        e->shape[i] = json_integer_value(d);
    }
    return QH_OK;
}

static qh_status parse_offsets(const st_ctx *c, const char *name, json_t *v, st_entry *e)
{
    json_t *b = json_array_get(v, 0), *n = json_array_get(v, 1);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(b) || !json_is_integer(n) ||
        json_integer_value(b) < 0 || json_integer_value(n) < 0)
        return qh_error_set(c->err, QH_E_FORMAT,
                            "%s: tensor '%s': data_offsets is not a pair [begin, end] of non-negative integers",
                            c->path, PNAME(name));
    e->begin = json_integer_value(b);
    e->end = json_integer_value(n);
    if (e->begin > e->end)
        return qh_error_set(c->err, QH_E_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] end before they begin",
                            c->path, PNAME(name), (long long)e->begin, (long long)e->end);
    if (e->end > c->data_bytes)
        return qh_error_set(c->err, QH_E_FORMAT,
                            "%s: tensor '%s': data_offsets [%lld, %lld] run past the end of the data (%lld bytes)",
                            c->path, PNAME(name), (long long)e->begin, (long long)e->end, (long long)c->data_bytes);
    return QH_OK;
}

/* numel * element size, or -1 when it does not fit an int64 (then it cannot match any offsets). */
static int64_t entry_bytes(const st_entry *e)
{
    int64_t bytes = (int64_t)qh_dtype_size(e->dtype);
    for (int32_t i = 0; i < e->ndim; i++) {
        if (e->shape[i] != 0 && bytes > INT64_MAX / 16 / e->shape[i])
            return -1;
        bytes *= e->shape[i];
    }
    return bytes;
}

static const char *entry_shape_str(const st_entry *e, char *buf, size_t size)
{
    qh_tensor view = {.ndim = e->ndim};
    memcpy(view.shape, e->shape, sizeof view.shape);
    return qh_shape_str(&view, buf, size);
}

static qh_status check_size(const st_ctx *c, const st_entry *e)
{
    int64_t bytes = entry_bytes(e);
    if (bytes == e->end - e->begin)
        return QH_OK;
    char shape[160], size[48] = "too many";
    if (bytes >= 0)
        snprintf(size, sizeof size, "%lld", (long long)bytes);
    return qh_error_set(c->err, QH_E_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] do not match shape %s of %s (%s bytes)",
                        c->path, PNAME(e->name), (long long)e->begin, (long long)e->end,
                        entry_shape_str(e, shape, sizeof shape), qh_dtype_name(e->dtype), size);
}

static qh_status parse_entry(const st_ctx *c, const char *name, json_t *v, st_entry *e)
{
    if (!json_is_object(v))
        return qh_error_set(c->err, QH_E_FORMAT, "%s: tensor '%s': entry is not an object", c->path, PNAME(name));
    if (strlen(name) >= QH_NAME_MAX)
        return qh_error_set(c->err, QH_E_FORMAT, "%s: tensor '%s': name longer than %d bytes", c->path, PNAME(name),
                            QH_NAME_MAX - 1);
    static const char *const fields[] = {"dtype", "shape", "data_offsets"};
    for (int i = 0; i < 3; i++)
        if (!json_object_get(v, fields[i]))
            return qh_error_set(c->err, QH_E_FORMAT, "%s: tensor '%s': missing %s", c->path, PNAME(name), fields[i]);
    if (json_object_size(v) != 3) {
        const char *key;
        json_t *unused;
        json_object_foreach(v, key, unused) {
            if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
                return qh_error_set(c->err, QH_E_FORMAT, "%s: tensor '%s': unexpected field '%s'", c->path,
                                    PNAME(name), PNAME(key));
        }
    }
    e->name = name;
    qh_status st = parse_dtype(c, name, json_object_get(v, "dtype"), e);
    if (st == QH_OK)
        st = parse_shape(c, name, json_object_get(v, "shape"), e);
    if (st == QH_OK)
        st = parse_offsets(c, name, json_object_get(v, "data_offsets"), e);
    if (st == QH_OK)
        st = check_size(c, e);
    return st;
}

static qh_status parse_meta(const st_ctx *c, json_t *v, qh_safetensors *st)
{
    if (!json_is_object(v))
        return qh_error_set(c->err, QH_E_FORMAT, "%s: %s is not an object", c->path, ST_META_KEY);
    size_t n = json_object_size(v);
    st->meta_keys = calloc(n ? n : 1, sizeof *st->meta_keys);
    st->meta_values = calloc(n ? n : 1, sizeof *st->meta_values);
    if (!st->meta_keys || !st->meta_values)
        return qh_error_set(c->err, QH_E_NOMEM, "%s: out of memory", c->path);
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        if (!json_is_string(val))
            return qh_error_set(c->err, QH_E_FORMAT, "%s: %s: value of '%s' is not a string", c->path, ST_META_KEY,
                                PNAME(key));
        int32_t i = st->n_meta;
        st->meta_keys[i] = strdup(key);
        st->meta_values[i] = strdup(json_string_value(val));
        st->n_meta++;
        if (!st->meta_keys[i] || !st->meta_values[i])
            return qh_error_set(c->err, QH_E_NOMEM, "%s: out of memory", c->path);
    }
    return QH_OK;
}

static int entry_cmp(const void *pa, const void *pb)
{
    const st_entry *a = pa, *b = pb;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* Sorted by offset, a non-empty range overlaps an earlier one iff it starts before the furthest end so far. */
static qh_status check_overlaps(const st_ctx *c, const st_entry *e, size_t n)
{
    const st_entry *furthest = NULL;
    for (size_t i = 0; i < n; i++) {
        if (e[i].begin == e[i].end)
            continue;
        if (furthest && e[i].begin < furthest->end)
            return qh_error_set(c->err, QH_E_FORMAT, "%s: tensors '%s' and '%s' overlap at byte offset %lld", c->path,
                                PNAME(furthest->name), PNAME(e[i].name), (long long)e[i].begin);
        if (!furthest || e[i].end > furthest->end)
            furthest = &e[i];
    }
    return QH_OK;
}

/* Fills entries (sorted by offset) and the metadata of st from the parsed header. */
static qh_status parse_header(const st_ctx *c, json_t *root, qh_safetensors *st, st_entry **out, size_t *n_out)
{
    if (!json_is_object(root))
        return qh_error_set(c->err, QH_E_FORMAT, "%s: header is not a JSON object", c->path);
    st_entry *entries = calloc(json_object_size(root) + 1, sizeof *entries);
    if (!entries)
        return qh_error_set(c->err, QH_E_NOMEM, "%s: out of memory", c->path);
    *out = entries;
    size_t n = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        qh_status s = strcmp(key, ST_META_KEY) == 0 ? parse_meta(c, val, st) : parse_entry(c, key, val, &entries[n++]);
        if (s != QH_OK)
            return s;
    }
    qsort(entries, n, sizeof *entries, entry_cmp);
    *n_out = n;
    return check_overlaps(c, entries, n);
}

/* ---- file reading ---- */

static qh_status read_exact(const st_ctx *c, FILE *fp, void *buf, size_t size, const char *what)
{
    if (size && fread(buf, 1, size, fp) != size)
        return qh_error_set(c->err, ferror(fp) ? QH_E_IO : QH_E_FORMAT, "%s: cannot read %s: %s", c->path, what,
                            ferror(fp) ? strerror(errno) : "unexpected end of file");
    return QH_OK;
}

/* Reads the length prefix and the JSON text; on success *root owns the parsed header. */
static qh_status load_header(st_ctx *c, FILE *fp, int64_t file_bytes, json_t **root, int64_t *header_bytes)
{
    if (file_bytes < 8)
        return qh_error_set(c->err, QH_E_FORMAT, "%s: file is %lld bytes, too short for the 8-byte header length",
                            c->path, (long long)file_bytes);
    unsigned char le[8];
    qh_status st = read_exact(c, fp, le, 8, "header length");
    if (st != QH_OK)
        return st;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | le[i];
    if (n > ST_HEADER_MAX)
        return qh_error_set(c->err, QH_E_FORMAT, "%s: header length %llu is larger than the %llu-byte limit", c->path,
                            (unsigned long long)n, ST_HEADER_MAX);
    if (n > (uint64_t)file_bytes - 8)
        return qh_error_set(c->err, QH_E_FORMAT, "%s: header length %llu runs past the end of the file (%lld bytes)",
                            c->path, (unsigned long long)n, (long long)file_bytes);
    char *text = malloc(n ? n : 1);
    if (!text)
        return qh_error_set(c->err, QH_E_NOMEM, "%s: out of memory for a %llu-byte header", c->path,
                            (unsigned long long)n);
    st = read_exact(c, fp, text, n, "header");
    json_error_t jerr;
    *root = st == QH_OK ? json_loadb(text, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr) : NULL;
    free(text);
    if (st != QH_OK)
        return st;
    if (!*root)
        return qh_error_set(c->err, QH_E_FORMAT, "%s: header is not valid JSON: %s (line %d, column %d)", c->path,
                            jerr.text, jerr.line, jerr.column);
    *header_bytes = (int64_t)n;
    c->data_bytes = file_bytes - 8 - (int64_t)n;
    return QH_OK;
}

static qh_status load_tensors(const st_ctx *c, FILE *fp, const st_entry *e, size_t n, qh_safetensors *st)
{
    st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
    if (!st->tensors)
        return qh_error_set(c->err, QH_E_NOMEM, "%s: out of memory", c->path);
    int64_t data_start = 8 + st->header_bytes;
    for (size_t i = 0; i < n; i++) {
        qh_tensor *t = qh_tensor_new(e[i].dtype, e[i].ndim, e[i].shape, c->err);
        if (!t) {
            qh_error_prefix(c->err, "%s: tensor '%s'", c->path, PNAME(e[i].name));
            return QH_E_NOMEM;
        }
        st->tensors[st->n_tensors++] = t;
        qh_tensor_set_name(t, e[i].name);
        if (fseeko(fp, (off_t)(data_start + e[i].begin), SEEK_SET) != 0)
            return qh_error_set(c->err, QH_E_IO, "%s: cannot seek to tensor '%s': %s", c->path, PNAME(e[i].name),
                                strerror(errno));
        qh_status s = read_exact(c, fp, t->data, (size_t)(e[i].end - e[i].begin), "tensor data");
        if (s != QH_OK)
            return s;
    }
    return QH_OK;
}

static qh_status read_open(const char *path, qh_safetensors *st, qh_error *err)
{
    st_ctx c = {.path = path, .err = err};
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return qh_error_set(err, QH_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    qh_status s = QH_OK;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode))
        s = qh_error_set(err, QH_E_IO, "%s: not a regular file", path);
    json_t *root = NULL;
    st_entry *entries = NULL;
    size_t n = 0;
    if (s == QH_OK) {
        st->file_bytes = (int64_t)sb.st_size;
        s = load_header(&c, fp, st->file_bytes, &root, &st->header_bytes);
    }
    if (s == QH_OK)
        s = parse_header(&c, root, st, &entries, &n);
    if (s == QH_OK)
        s = load_tensors(&c, fp, entries, n, st);
    free(entries);
    json_decref(root);
    fclose(fp);
    return s;
}

qh_status qh_safetensors_read(const char *path, qh_safetensors **out, qh_error *err)
{
    *out = NULL;
    qh_safetensors *st = calloc(1, sizeof *st);
    if (!st)
        return qh_error_set(err, QH_E_NOMEM, "%s: out of memory", path);
    qh_status s = read_open(path, st, err);
    if (s != QH_OK) {
        qh_safetensors_free(st);
        return s;
    }
    *out = st;
    return QH_OK;
}

/* ---- writing ---- */

static qh_status check_write_args(const char *path, const qh_tensor *const *tensors, int32_t n_tensors,
                                  const char *const *keys, const char *const *values, int32_t n_meta, qh_error *err)
{
    if (n_tensors < 0 || n_meta < 0 || (n_tensors && !tensors) || (n_meta && (!keys || !values)))
        return qh_error_set(err, QH_E_INVAL, "%s: bad tensor or metadata list", path);
    for (int32_t i = 0; i < n_tensors; i++) {
        if (!tensors[i] || tensors[i]->name[0] == '\0')
            return qh_error_set(err, QH_E_INVAL, "%s: tensor #%d has no name", path, i);
        if ((unsigned)tensors[i]->dtype >= QH_DTYPE_COUNT || tensors[i]->ndim < 0 || tensors[i]->ndim > QH_MAX_DIMS)
            return qh_error_set(err, QH_E_INVAL, "%s: tensor '%s': bad dtype or rank", path, PNAME(tensors[i]->name));
        if (strcmp(tensors[i]->name, ST_META_KEY) == 0)
            return qh_error_set(err, QH_E_INVAL, "%s: tensor #%d: the name %s is reserved", path, i, ST_META_KEY);
        for (int32_t j = 0; j < i; j++)
            if (strcmp(tensors[i]->name, tensors[j]->name) == 0)
                return qh_error_set(err, QH_E_INVAL, "%s: duplicate tensor name '%s' (#%d and #%d)", path,
                                    PNAME(tensors[i]->name), j, i);
    }
    for (int32_t i = 0; i < n_meta; i++) {
        if (!keys[i] || !values[i])
            return qh_error_set(err, QH_E_INVAL, "%s: metadata entry #%d is missing its key or value", path, i);
        for (int32_t j = 0; j < i; j++)
            if (strcmp(keys[i], keys[j]) == 0)
                return qh_error_set(err, QH_E_INVAL, "%s: duplicate metadata key '%s'", path, PNAME(keys[i]));
    }
    return QH_OK;
}

static json_t *tensor_json(const qh_tensor *t, int64_t begin)
{
    json_t *shape = json_array();
    for (int32_t d = 0; shape && d < t->ndim; d++)
        json_array_append_new(shape, json_integer(t->shape[d]));
    json_t *offs = json_pack("[II]", (json_int_t)begin, (json_int_t)(begin + (int64_t)qh_tensor_nbytes(t)));
    return json_pack("{s:s, s:o, s:o}", "dtype", qh_dtype_name(t->dtype), "shape", shape, "data_offsets", offs);
}

/* Header text padded with spaces to a multiple of 8 (as the reference writer does) so data starts aligned. */
static qh_status build_header(const char *path, const qh_tensor *const *tensors, int32_t n_tensors,
                              const char *const *keys, const char *const *values, int32_t n_meta, char **text,
                              size_t *len, qh_error *err)
{
    json_t *root = json_object();
    json_t *meta = n_meta > 0 ? json_object() : NULL;
    int bad = !root || (n_meta > 0 && (!meta || json_object_set_new(root, ST_META_KEY, meta) != 0));
    for (int32_t i = 0; !bad && i < n_meta; i++)
        bad = json_object_set_new(meta, keys[i], json_string(values[i])) != 0;
    int64_t offset = 0;
    for (int32_t i = 0; !bad && i < n_tensors; i++) {
        json_t *entry = tensor_json(tensors[i], offset);
        bad = !entry || json_object_set_new(root, tensors[i]->name, entry) != 0;
        offset += (int64_t)qh_tensor_nbytes(tensors[i]);
    }
    char *dumped = bad ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!dumped) /* jansson refuses keys and strings that are not valid UTF-8 */
        return qh_error_set(err, QH_E_INVAL, "%s: cannot encode the header (tensor names and metadata must be UTF-8)",
                            path);
    size_t n = strlen(dumped), padded = (n + 7) & ~(size_t)7;
    *text = realloc(dumped, padded ? padded : 1);
    if (!*text) {
        free(dumped);
        return qh_error_set(err, QH_E_NOMEM, "%s: out of memory", path);
    }
    memset(*text + n, ' ', padded - n);
    *len = padded;
    return QH_OK;
}

static qh_status write_body(qh_atomic_file *af, const char *header, size_t header_len,
                            const qh_tensor *const *tensors, int32_t n_tensors, qh_error *err)
{
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
    int ok = fwrite(le, 1, 8, af->fp) == 8 && fwrite(header, 1, header_len, af->fp) == header_len;
    for (int32_t i = 0; ok && i < n_tensors; i++) {
        size_t bytes = qh_tensor_nbytes(tensors[i]);
        ok = !bytes || fwrite(tensors[i]->data, 1, bytes, af->fp) == bytes;
    }
    if (!ok)
        return qh_error_set(err, QH_E_IO, "%s: write failed: %s", af->path, strerror(errno));
    return QH_OK;
}

qh_status qh_safetensors_write(const char *path, const qh_tensor *const *tensors, int32_t n_tensors,
                               const char *const *meta_keys, const char *const *meta_values, int32_t n_meta,
                               qh_error *err)
{
    qh_status st = check_write_args(path, tensors, n_tensors, meta_keys, meta_values, n_meta, err);
    char *header = NULL;
    size_t header_len = 0;
    if (st == QH_OK)
        st = build_header(path, tensors, n_tensors, meta_keys, meta_values, n_meta, &header, &header_len, err);
    if (st != QH_OK)
        return st;
    qh_atomic_file af;
    st = qh_atomic_open(&af, path, err);
    if (st == QH_OK)
        st = write_body(&af, header, header_len, tensors, n_tensors, err);
    if (st == QH_OK)
        st = qh_atomic_commit(&af, err);
    else
        qh_atomic_abort(&af);
    free(header);
    return st;
}
