/* fuzz_dns.c - the DNS proxy's parser reads what a sandbox sends (queries)
 * and what an upstream answers: both untrusted. Every input goes through the
 * question parser, the answer walker and the REFUSED builder; the checks
 * below are the contract a caller relies on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/netpolicy_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
on_addr(void *ctx, uint32_t addr, uint32_t ttl)
{
    (void)addr;
    if (ttl > 0x7fffffffu)
        abort(); /* TTLs with the top bit set are read as 0 (RFC 2181) */
    ++*(int *)ctx;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kn_dns_question_t q;
    if (kn_dns_parse_question(data, size, &q) < 0)
        return 0;
    if (q.end > size || strlen(q.name) > 253)
        abort();
    for (const char *c = q.name; *c; c++)
        if (*c <= ' ' || *c >= 0x7f || (*c >= 'A' && *c <= 'Z'))
            abort(); /* names reach the policy printable and in lower case */
    int n = 0;
    int r = kn_dns_parse_answers(data, size, &q, on_addr, &n);
    if (r >= 0 && r != n)
        abort();
    uint8_t out[KN_DNS_MAX_MSG];
    size_t len = kn_dns_refused(data, &q, out, sizeof out);
    if (len != q.end || (out[3] & 0x0F) != 5)
        abort();
    kn_dns_question_t q2;
    if (kn_dns_parse_question(out, len, &q2) < 0 || strcmp(q.name, q2.name) != 0)
        abort(); /* a refusal repeats the question */
    return 0;
}
