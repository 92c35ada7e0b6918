/* qh_inspect.c - `qhost inspect`: a table of the tensors in a safetensors file with their
 * sparsity (exact zeros, so a pruned model shows what its masks left), totals, then the metadata.
 * Sparsity is printed in percent everywhere in this table.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

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
    s = print_meta(st, out, err);
    if (s == QH_OK && ferror(out))
        s = qh_error_set(err, QH_E_IO, "%s: cannot write the report", path);
    qh_safetensors_free(st);
    return s;
}
