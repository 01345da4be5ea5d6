/* Unit tests of the network policy's pure parts: rule syntax, name and
 * address verdicts, and the DNS proxy's parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "core/netpolicy_internal.h"

static void
add_rule(kn_net_policy_t *p, bool allow, const char *target)
{
    p->rules[p->n_rules].allow = allow;
    snprintf(p->rules[p->n_rules++].target, sizeof p->rules[0].target, "%s", target);
}

static void
test_cidr(void **state)
{
    uint32_t a = 0;
    int pl = 0;
    assert_int_equal(kn_net_parse_cidr("10.1.2.3/8", &a, &pl), 0);
    assert_int_equal(a, 0x0a000000u);
    assert_int_equal(pl, 8);
    assert_int_equal(kn_net_parse_cidr("203.0.113.7", &a, &pl), 0);
    assert_int_equal(pl, 32);
    assert_int_equal(kn_net_parse_cidr("0.0.0.0/0", &a, &pl), 0);
    assert_int_equal(pl, 0);
    assert_int_equal(kn_net_parse_cidr("10.0.0.0/33", &a, &pl), -1);
    assert_int_equal(kn_net_parse_cidr("10.0.0.0/", &a, &pl), -1);
    assert_int_equal(kn_net_parse_cidr("10.0.0.0/-1", &a, &pl), -1);
    assert_int_equal(kn_net_parse_cidr("10.0.0/8", &a, &pl), -1);
    assert_int_equal(kn_net_parse_cidr("example.com", &a, &pl), -1);
}

static void
test_rule_check(void **state)
{
    kn_error_t err;
    const char *good[] = {"example.com", "*.example.com", "a-b_c.example.",
                          "localhost",   "10.0.0.0/8",    "1.2.3.4"};
    const char *bad[] = {"",   "*",      "*.*.x",   "a..b", "exa mple.com",
                         ".x", "x*.com", "::1/128", "a/b",  "10.0.0.0/33"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_int_equal(kn_net_rule_check(good[i], &err), 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(kn_net_rule_check(bad[i], &err), -1);
}

static void
test_domain_match(void **state)
{
    assert_true(kn_net_domain_match("example.com", "example.com"));
    assert_true(kn_net_domain_match("example.com", "EXAMPLE.com."));
    assert_false(kn_net_domain_match("example.com", "www.example.com"));
    assert_false(kn_net_domain_match("example.com", "badexample.com"));
    assert_true(kn_net_domain_match("*.example.com", "www.example.com"));
    assert_true(kn_net_domain_match("*.example.com", "a.b.example.com"));
    assert_false(kn_net_domain_match("*.example.com", "example.com"));
    assert_false(kn_net_domain_match("*.example.com", "badexample.com"));
    assert_false(kn_net_domain_match("*.example.com", "example.com.evil.net"));
}

static void
test_verdicts(void **state)
{
    kn_net_policy_t p;
    memset(&p, 0, sizeof p);
    add_rule(&p, false, "bad.example.com");
    add_rule(&p, true, "*.example.com");
    add_rule(&p, false, "203.0.113.9/32");
    add_rule(&p, true, "203.0.113.0/24");
    add_rule(&p, true, "10.1.0.0/16");
    assert_int_equal(kn_net_name_verdict(&p, "api.example.com"), KN_NAME_OPEN);
    assert_int_equal(kn_net_name_verdict(&p, "bad.example.com"), KN_NAME_REFUSE);
    assert_int_equal(kn_net_name_verdict(&p, "other.org"), KN_NAME_REFUSE);
    p.default_allow = true;
    assert_int_equal(kn_net_name_verdict(&p, "other.org"), KN_NAME_FORWARD);
    assert_int_equal(kn_net_name_verdict(&p, "bad.example.com"), KN_NAME_REFUSE);
    /* addresses an allowed name may open */
    assert_true(kn_net_addr_openable(&p, 0xcb007101u));  /* 203.0.113.1 */
    assert_false(kn_net_addr_openable(&p, 0xcb007109u)); /* denied CIDR */
    assert_false(kn_net_addr_openable(&p, 0xa9fea9feu)); /* 169.254.169.254 */
    assert_false(kn_net_addr_openable(&p, 0x7f000001u)); /* 127.0.0.1 */
    assert_false(kn_net_addr_openable(&p, 0xc0a80101u)); /* 192.168.1.1 */
    assert_false(kn_net_addr_openable(&p, 0xac100001u)); /* 172.16.0.1 */
    assert_false(kn_net_addr_openable(&p, 0x0a020001u)); /* 10.2.0.1 */
    assert_true(kn_net_addr_openable(&p, 0x0a010001u));  /* 10.1.0.1: a rule names it */
    assert_true(kn_net_addr_openable(&p, 0x08080808u));  /* public */
    /* The first matching rule decides: an allow before a deny wins. */
    memset(&p, 0, sizeof p);
    add_rule(&p, true, "api.example.com");
    add_rule(&p, false, "*.example.com");
    add_rule(&p, true, "203.0.113.9/32");
    add_rule(&p, false, "203.0.113.0/24");
    assert_int_equal(kn_net_name_verdict(&p, "api.example.com"), KN_NAME_OPEN);
    assert_int_equal(kn_net_name_verdict(&p, "www.example.com"), KN_NAME_REFUSE);
    assert_true(kn_net_addr_openable(&p, 0xcb007109u));  /* 203.0.113.9 */
    assert_false(kn_net_addr_openable(&p, 0xcb00710au)); /* 203.0.113.10 */
}

static size_t
put_name(uint8_t *p, const char *name)
{
    size_t n = 0;
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t l = dot ? (size_t)(dot - name) : strlen(name);
        p[n++] = (uint8_t)l;
        memcpy(p + n, name, l);
        n += l;
        name += l + (dot ? 1 : 0);
    }
    p[n++] = 0;
    return n;
}

static size_t
query(uint8_t *m, const char *name)
{
    static const uint8_t hdr[12] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    memcpy(m, hdr, 12);
    size_t n = 12 + put_name(m + 12, name);
    static const uint8_t tail[4] = {0, 1, 0, 1};
    memcpy(m + n, tail, 4);
    return n + 4;
}

static void
count_addr(void *ctx, uint32_t addr, uint32_t ttl)
{
    uint32_t *seen = ctx;
    seen[0]++;
    seen[1] = addr;
    seen[2] = ttl;
}

static void
test_dns_parser(void **state)
{
    uint8_t m[512];
    kn_dns_question_t q;
    size_t n = query(m, "WWW.Example.com");
    assert_int_equal(kn_dns_parse_question(m, n, &q), 0);
    assert_string_equal(q.name, "www.example.com");
    assert_int_equal(q.qtype, 1);
    assert_int_equal(q.end, n);
    for (size_t cut = 0; cut < n; cut++)
        assert_int_equal(kn_dns_parse_question(m, cut, &q), -1);

    /* an answer: CNAME by pointer, then an A record */
    assert_int_equal(kn_dns_parse_question(m, n, &q), 0);
    m[2] = 0x81;
    m[3] = 0x80;
    m[7] = 2;
    static const uint8_t rrs[] = {0xc0, 12, 0, 5, 0, 1, 0, 0, 1,  0, 0, 2,   0xc0, 16,  0xc0,
                                  16,   0,  1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0,    113, 7};
    memcpy(m + n, rrs, sizeof rrs);
    uint32_t seen[3] = {0, 0, 0};
    assert_int_equal(kn_dns_parse_answers(m, n + sizeof rrs, &q, count_addr, seen), 1);
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 0xcb007107u);
    assert_int_equal(seen[2], 60);
    /* any truncation of the answer is refused, never read past */
    for (size_t cut = n; cut < n + sizeof rrs; cut++)
        assert_int_equal(kn_dns_parse_answers(m, cut, &q, count_addr, seen), -1);

    /* a compression pointer to itself */
    n = query(m, "a.b");
    m[7] = 1;
    static const uint8_t loop[] = {0xc0, 21, 0xc0, 21};
    memcpy(m + n, loop, sizeof loop);
    assert_int_equal(kn_dns_parse_answers(m, n + sizeof loop, &q, NULL, NULL), -1);

    /* labels with dots, spaces or control bytes are refused */
    n = query(m, "a.b");
    m[13] = '.';
    assert_int_equal(kn_dns_parse_question(m, n, &q), -1);
    m[13] = 0;
    assert_int_equal(kn_dns_parse_question(m, n, &q), -1);

    /* two questions: refused */
    n = query(m, "a.b");
    m[5] = 2;
    assert_int_equal(kn_dns_parse_question(m, n, &q), -1);

    /* REFUSED repeats the question and nothing else */
    n = query(m, "x.test");
    uint8_t out[512];
    assert_int_equal(kn_dns_parse_question(m, n, &q), 0);
    assert_int_equal(kn_dns_refused(m, &q, out, sizeof out), n);
    assert_int_equal(out[0], 0x12);
    assert_int_equal(out[3] & 0x0f, 5);
    assert_int_equal(out[2] & 0x80, 0x80);
}

static void
test_upstream(void **state)
{
    struct sockaddr_in sa;
    kn_error_t err;
    assert_int_equal(kn_dns_upstream_parse("198.51.100.53", &sa, &err), 0);
    assert_int_equal(ntohs(sa.sin_port), 53);
    assert_int_equal(kn_dns_upstream_parse("198.51.100.53:5353", &sa, &err), 0);
    assert_int_equal(ntohs(sa.sin_port), 5353);
    assert_int_equal(kn_dns_upstream_parse("198.51.100.53:0", &sa, &err), -1);
    assert_int_equal(kn_dns_upstream_parse("198.51.100.53:", &sa, &err), -1);
    assert_int_equal(kn_dns_upstream_parse("dns.example", &sa, &err), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr),         cmocka_unit_test(test_rule_check),
        cmocka_unit_test(test_domain_match), cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_dns_parser),   cmocka_unit_test(test_upstream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
