/* fuzz_size.c - kn_parse_size() reads sizes from flags and API bodies. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char buf[64];
    if (size >= sizeof buf)
        size = sizeof buf - 1;
    memcpy(buf, data, size);
    buf[size] = '\0';
    uint64_t v = 0;
    if (kn_parse_size(buf, &v) == 0 && buf[0] == '-')
        abort(); /* negative sizes are never accepted */
    return 0;
}
