/* qh_ini_impl.h - internals of core/config shared between its files (not installed). */
#ifndef QH_INI_IMPL_H
#define QH_INI_IMPL_H

#include <stdbool.h>
#include <stddef.h>

/* Reads a whole file into a NUL-terminated heap buffer; false with errno set on failure. */
bool qh_ini_read_text(const char *path, char **text, size_t *size);

#endif /* QH_INI_IMPL_H */
