/* jsonw.h - a small JSON writer for the CLI's --json output. Strings are
 * written as valid UTF-8: bytes that are not (programs print anything) become
 * U+FFFD, control characters are escaped. */
#ifndef KN_JSONW_H
#define KN_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

void kn_json_str(FILE *f, const char *s, size_t len);
void kn_json_key(FILE *f, const char *key, bool *first);

#endif
