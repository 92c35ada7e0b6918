/* qh_match.c - comma-separated glob patterns over parameter names ("conv*.weight, fc3.*"). */
#include "qhost/qh_engine.h"

#include <fnmatch.h>
#include <stdio.h>

bool qh_name_match_list(const char *patterns, const char *name)
{
    if (!patterns)
        return false;
    const char *p = patterns;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *last = end;
        while (last > p && (last[-1] == ' ' || last[-1] == '\t'))
            last--;
        if (last > p) {
            char pat[256];
            snprintf(pat, sizeof pat, "%.*s", (int)(last - p), p);
            if (fnmatch(pat, name, 0) == 0)
                return true;
        }
        p = end;
    }
    return false;
}
