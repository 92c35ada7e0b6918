/* st_roundtrip_writer.c - reads a safetensors file with qhost and writes it back with qhost's writer.
 * Usage: st-roundtrip-writer IN OUT.  The torch-roundtrip test feeds it the PyTorch-made golden file
 * and then checks OUT with PyTorch (tests/golden/check_torch_roundtrip.py). */
#include <stdio.h>

#include "qhost/qh_safetensors.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s IN OUT\n", argv[0]);
        return 2;
    }
    qh_safetensors *st = NULL;
    qh_error err = {{0}};
    qh_status s = qh_safetensors_read(argv[1], &st, &err);
    if (s == QH_OK)
        s = qh_safetensors_write(argv[2], (const qh_tensor *const *)st->tensors, st->n_tensors,
                                 (const char *const *)st->meta_keys, (const char *const *)st->meta_values, st->n_meta,
                                 &err);
    qh_safetensors_free(st);
    if (s != QH_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    return 0;
}
