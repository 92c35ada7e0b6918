/* qq_mem.h - working memory for the scatter / gather passes of the quantizers (header only).
 *
 * A counting partition writes (or later reads) through one moving pointer per bucket, thousands of
 * them at once; with 4 KiB pages each pointer sits on its own page and every access misses the
 * TLB. Buffers for those passes are therefore 2 MiB aligned and marked for transparent huge pages
 * (a hint: where the kernel does not give them, only speed changes). Free with free().
 */
#ifndef QQ_MEM_H
#define QQ_MEM_H

#include <stdlib.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#define QQ_HUGE ((size_t)2 << 20)

static inline void *qq_alloc_huge(size_t bytes)
{
    if (bytes < QQ_HUGE) /* a few pages: the TLB holds them */
        return malloc(bytes > 0 ? bytes : 1);
    size_t size = (bytes + QQ_HUGE - 1) / QQ_HUGE * QQ_HUGE;
    void *p = aligned_alloc(QQ_HUGE, size > 0 ? size : QQ_HUGE);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (p)
        madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
}

#endif /* QQ_MEM_H */
