/* qh_inspect.c - `qhost inspect`: a table of the tensors in a safetensors file with their
 * sparsity (exact zeros, so a pruned model shows what its masks left), totals, then the metadata.
 * Sparsity is printed in percent everywhere in this table.
 * A quantized model (the exporter's *.quantized.safetensors: per weight W the tensors W.codes,
 * W.scale, W.zero_point, W.codebook, W.perm and a JSON description under metadata key W) also gets
 * a table of its quantized weights: bits, granularity, distinct codes used, and the bytes of each
 * part counted as qh_qtensor_bytes counts them, with the ratio to fp32.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "qhost/qh_quant.h"
#include "qhost/qh_safetensors.h"

/* "-" when there are no elements: an empty tensor has no sparsity. */
static void print_percent(FILE *out, int64_t part, int64_t whole, int width)
{
    if (whole > 0)
        fprintf(out, "%*.2f%%", width - 1, 100.0 * (double)part / (double)whole);
    else
        fprintf(out, "%*s", width, "-");
}

/* Metadata comes from the file: escape control characters so each key stays on one line. */
static void print_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\n')
            fputs("\\n", out);
        else if (ch == '\t')
            fputs("\\t", out);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(out, "\\x%02x", ch);
        else
            fputc(ch, out);
    }
}

static void print_tensors(const qh_safetensors *st, FILE *out)
{
    int name_w = 4;
    for (int32_t i = 0; i < st->n_tensors; i++) {
        int len = (int)strlen(st->tensors[i]->name);
        name_w = len > name_w ? len : name_w;
    }
    fprintf(out, "%-*s  %-7s  %-20s  %12s  %12s  %9s\n", name_w, "name", "dtype", "shape", "numel", "zeros",
            "sparsity");
    int64_t params = 0, zeros = 0, bytes = 0;
    for (int32_t i = 0; i < st->n_tensors; i++) {
        const qh_tensor *t = st->tensors[i];
        char shape[160];
        int64_t n = qh_tensor_numel(t), z = qh_tensor_count_zeros(t);
        fprintf(out, "%-*s  %-7s  %-20s  %12lld  %12lld  ", name_w, t->name, qh_dtype_name(t->dtype),
                qh_shape_str(t, shape, sizeof shape), (long long)n, (long long)z);
        print_percent(out, z, n, 9);
        fputc('\n', out);
        params += n;
        zeros += z;
        bytes += (int64_t)qh_tensor_nbytes(t);
    }
    fprintf(out, "total: %d tensors, %lld params, %lld bytes, %lld zeros, sparsity ", st->n_tensors,
            (long long)params, (long long)bytes, (long long)zeros);
    print_percent(out, zeros, params, 0);
    fputc('\n', out);
}

/* One quantized weight as the file describes it. */
typedef struct qinfo {
    int bits, fixed;
    char gran[32];
    int64_t numel;
    const qh_tensor *codes, *part[4]; /* scale, zero_point, codebook, perm */
} qinfo;

static const char *const part_suffix[4] = {"scale", "zero_point", "codebook", "perm"};

/* Reads the description under `key`; 0 if it is not one (plain metadata, or no W.codes tensor). */
static int read_qinfo(const qh_safetensors *st, const char *key, const char *value, qinfo *qi)
{
    json_t *d = json_loads(value, 0, NULL);
    json_t *bits = d ? json_object_get(d, "bits") : NULL, *shape = d ? json_object_get(d, "shape") : NULL;
    char name[QH_NAME_MAX + 16];
    snprintf(name, sizeof name, "%s.codes", key);
    memset(qi, 0, sizeof *qi);
    int ok = json_is_integer(bits) && json_is_array(shape) && (qi->codes = qh_safetensors_find(st, name)) != NULL;
    if (ok) {
        qi->bits = (int)json_integer_value(bits);
        qi->fixed = json_is_true(json_object_get(d, "codebook_fixed"));
        const char *g = json_string_value(json_object_get(d, "granularity"));
        snprintf(qi->gran, sizeof qi->gran, "%s", g ? g : "?");
        qi->numel = 1;
        for (size_t i = 0; i < json_array_size(shape); i++)
            qi->numel *= json_integer_value(json_array_get(shape, i));
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "%s.%s", key, part_suffix[k]);
            qi->part[k] = qh_safetensors_find(st, name);
        }
        ok = qi->bits >= 1 && qi->bits <= 32 && qi->numel >= 0 &&
             (int64_t)qh_tensor_nbytes(qi->codes) >= (qi->numel * qi->bits + 7) / 8;
    }
    json_decref(d);
    return ok;
}

/* Distinct codes among the packed ones (lsb-first, `bits` each); -1 above 16 bits (not counted). */
static int64_t packed_levels(const qinfo *qi)
{
    if (qi->bits > 16)
        return -1;
    uint8_t *seen = calloc((size_t)1 << qi->bits, 1);
    if (!seen)
        return -1;
    const uint8_t *p = qi->codes->data;
    int64_t count = 0;
    for (int64_t i = 0, bit = 0; i < qi->numel; i++, bit += qi->bits) {
        uint32_t v = 0;
        for (int b = 0; b < qi->bits; b++)
            v |= (uint32_t)(p[(bit + b) >> 3] >> ((bit + b) & 7) & 1u) << b;
        count += !seen[v];
        seen[v] = 1;
    }
    free(seen);
    return count;
}

/* The bytes of each part as qh_qtensor_bytes counts them, one part at a time. The qtensors only
 * borrow the file's tensors (qh_qtensor_bytes reads shapes, never data). */
static void part_bytes(const qinfo *qi, int64_t b[5])
{
    qh_tensor codes = {.dtype = QH_U8, .ndim = 1, .shape = {qi->numel}};
    qh_qtensor q = {.bits = qi->bits, .codes = &codes};
    b[0] = qh_qtensor_bytes(&q);
    for (int k = 0; k < 4; k++) {
        qh_tensor *t = (qh_tensor *)qi->part[k];
        qh_qtensor p = {.book_fixed = qi->fixed};
        if (k == 0)
            p.scale = t;
        else if (k == 1)
            p.zero = t;
        else if (k == 2)
            p.codebook = t;
        else
            p.perm = t;
        b[k + 1] = qh_qtensor_bytes(&p);
    }
}

static void print_quantized(const qh_safetensors *st, FILE *out)
{
    int64_t total[5] = {0}, numel = 0, n = 0;
    for (int32_t i = 0; i < st->n_meta; i++) {
        qinfo qi;
        if (!read_qinfo(st, st->meta_keys[i], st->meta_values[i], &qi))
            continue;
        if (n++ == 0)
            fprintf(out, "quantized weights (bytes as stored: codes packed, 4 per scale / zero point / code-book "
                         "entry, ceil(log2 n) bits per permutation index):\n%-28s %4s  %-10s %10s %7s %10s %9s "
                         "%9s %9s %9s %10s %7s\n",
                    "name", "bits", "group", "numel", "levels", "codes B", "scales B", "zeros B", "book B", "perm B",
                    "total B", "x fp32");
        int64_t b[5], sum = 0, lv = packed_levels(&qi);
        part_bytes(&qi, b);
        for (int k = 0; k < 5; k++) {
            sum += b[k];
            total[k] += b[k];
        }
        numel += qi.numel;
        char levels[32];
        snprintf(levels, sizeof levels, lv < 0 ? "-" : "%lld", (long long)lv);
        fprintf(out, "%-28s %4d  %-10s %10lld %7s %10lld %9lld %9lld %9lld %9lld %10lld %7.2f\n", st->meta_keys[i],
                qi.bits, qi.gran, (long long)qi.numel, levels, (long long)b[0], (long long)b[1], (long long)b[2],
                (long long)b[3], (long long)b[4], (long long)sum, sum ? 4.0 * (double)qi.numel / (double)sum : 0.0);
    }
    if (n == 0)
        return;
    int64_t sum = total[0] + total[1] + total[2] + total[3] + total[4];
    fprintf(out, "quantized total: %lld weights, %lld params, %lld bytes (codes %lld, scales %lld, zero points %lld, "
                 "code books %lld, permutations %lld), %.2f x smaller than fp32\n",
            (long long)n, (long long)numel, (long long)sum, (long long)total[0], (long long)total[1],
            (long long)total[2], (long long)total[3], (long long)total[4],
            sum ? 4.0 * (double)numel / (double)sum : 0.0);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(**(const char *const *const *)a, **(const char *const *const *)b);
}

static qh_status print_meta(const qh_safetensors *st, FILE *out, qh_error *err)
{
    if (st->n_meta == 0)
        return QH_OK;
    /* Sort pointers to the keys; the value of key k is at the same index as k. */
    char ***slots = malloc((size_t)st->n_meta * sizeof *slots);
    if (!slots)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    for (int32_t i = 0; i < st->n_meta; i++)
        slots[i] = &st->meta_keys[i];
    qsort(slots, (size_t)st->n_meta, sizeof slots[0], key_cmp);
    fprintf(out, "metadata:\n");
    for (int32_t i = 0; i < st->n_meta; i++) {
        ptrdiff_t k = slots[i] - st->meta_keys;
        fputs("  ", out);
        print_escaped(out, st->meta_keys[k]);
        fputs(" = ", out);
        print_escaped(out, st->meta_values[k]);
        fputc('\n', out);
    }
    free(slots);
    return QH_OK;
}

qh_status qh_safetensors_inspect(const char *path, FILE *out, qh_error *err)
{
    qh_safetensors *st = NULL;
    qh_status s = qh_safetensors_read(path, &st, err);
    if (s != QH_OK)
        return s;
    fprintf(out, "%s: %d tensors, %lld bytes (header %lld bytes)\n", path, st->n_tensors, (long long)st->file_bytes,
            (long long)st->header_bytes);
    print_tensors(st, out);
    print_quantized(st, out);
    s = print_meta(st, out, err);
    if (s == QH_OK && ferror(out))
        s = qh_error_set(err, QH_E_IO, "%s: cannot write the report", path);
    qh_safetensors_free(st);
    return s;
}
