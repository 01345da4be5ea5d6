#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int
kn_error_set(kn_error_t *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        if (code && n >= 0 && (size_t)n < sizeof err->msg)
            snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", strerror(code));
        err->code = code;
    }
    errno = code;
    return -1;
}

int
kn_error_prefix(kn_error_t *err, const char *fmt, ...)
{
    if (err) {
        char prefix[KN_ERROR_MSG_MAX];
        char old[KN_ERROR_MSG_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
        errno = err->code;
    }
    return -1;
}

void
kn_error_clear(kn_error_t *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}
