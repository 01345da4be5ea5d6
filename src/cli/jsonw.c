#include "jsonw.h"

#include "core/utf8.h"

void
kn_json_str(FILE *f, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            i++;
        } else if (c == '\n') {
            fputs("\\n", f);
            i++;
        } else if (c == '\r') {
            fputs("\\r", f);
            i++;
        } else if (c == '\t') {
            fputs("\\t", f);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            i++;
        } else {
            size_t l = kn_utf8_decode(p + i, len - i, NULL);
            if (l == 0) {
                fputs("\\ufffd", f);
                i++;
            } else {
                fwrite(p + i, 1, l, f);
                i += l;
            }
        }
    }
    fputc('"', f);
}

void
kn_json_key(FILE *f, const char *key, bool *first)
{
    if (!*first)
        fputc(',', f);
    *first = false;
    kn_json_str(f, key, __builtin_strlen(key));
    fputc(':', f);
}
