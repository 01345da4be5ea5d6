/* execd.c - parameters and outcomes of proxied execd requests (execd.h). */
#include "execd.h"
#include "jcs.h"
#include "receipt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nettle/sha2.h>
#include <sodium.h>

#define MAX_HEADERS_PART (8 * 1024)
#define MAX_METADATA_PART (64 * 1024)
#define MAX_FILES 4096
#define MAX_ERROR_BODY (64 * 1024)

typedef enum kind {
    K_COMMAND, /* POST /command */
    K_SESSION, /* POST /session/{sid}/run */
    K_CODE,    /* POST /code */
    K_READ,    /* file reads: {"content_hash"} */
    K_LIST,    /* listings: {"entries_hash"} */
    K_UPLOAD,  /* POST /files/upload (multipart) */
    K_PTY,     /* POST /pty: {"command"} -> {"pty_id"} */
    K_GENERIC, /* everything else */
} kind_t;

typedef struct hasher {
    struct sha256_ctx st; /* nettle's: the CPU's SHA extensions where it has them */
    uint64_t bytes;
} hasher_t;

static void
hasher_init(hasher_t *h)
{
    sha256_init(&h->st);
    h->bytes = 0;
}

static void
hasher_add(hasher_t *h, const void *p, size_t n)
{
    sha256_update(&h->st, n, p);
    h->bytes += n;
}

/* "sha256:<hex>" of what went in (the state is used up). */
static void
hasher_final(hasher_t *h, char *out)
{
    unsigned char d[SHA256_DIGEST_SIZE];
    sha256_digest(&h->st, sizeof d, d);
    memcpy(out, "sha256:", 7);
    sodium_bin2hex(out + 7, KN_RECEIPT_HASH_SIZE - 7, d, sizeof d);
}

typedef struct growbuf {
    char *p;
    size_t len, cap, max;
    bool over; /* more than max bytes were offered */
} growbuf_t;

static void
gb_add(growbuf_t *b, const char *s, size_t n)
{
    if (b->over || b->len + n > b->max) {
        b->over = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 4096;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *g = realloc(b->p, nc);
        if (!g) {
            b->over = true;
            return;
        }
        b->p = g;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
gb_reset(growbuf_t *b)
{
    b->len = 0;
    b->over = false;
    if (b->p)
        b->p[0] = '\0';
}

static void
gb_free(growbuf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* A streaming multipart/form-data reader (RFC 7578): the parts named
 * "metadata" (JSON, kept up to 64 KiB for its "path") and "file" (hashed)
 * that execd pairs by index. */
typedef enum mp_state { MP_PREAMBLE, MP_AFTER_DELIM, MP_HEADERS, MP_BODY, MP_END } mp_state_t;

typedef struct multipart {
    char delim[80]; /* "\r\n--" + boundary */
    size_t dlen, match;
    size_t held; /* bytes of match that came in earlier chunks (held back) */
    mp_state_t state;
    char after[2];
    size_t nafter;
    growbuf_t head;
    int part; /* 0 other, 1 metadata, 2 file */
    growbuf_t meta;
    hasher_t file;
    json_t *paths;  /* metadata paths, in order */
    json_t *hashes; /* file content hashes, in order */
    uint64_t file_bytes;
    bool bad;
} multipart_t;

struct kn_execd_capture {
    kind_t kind;
    const char *type;
    char *system, *resource, *query;
    bool background;
    /* request */
    growbuf_t body; /* whole body of non-upload routes */
    hasher_t raw_request;
    multipart_t mp;
    bool mp_on;
    /* response */
    unsigned status;
    bool sse, json_type;
    hasher_t raw;
    growbuf_t event;      /* the SSE event being read */
    size_t blank;         /* newline run while splitting events */
    growbuf_t error_body; /* small error bodies, for their "code" */
    bool saw_complete, saw_error;
    json_t *exit_code; /* command: the error event's code, when numeric */
    hasher_t logs, results;
    size_t oversized; /* events too large to parse */
    char pty_id[64];  /* POST /pty: the session execd made */
};

/* ---- query strings ---------------------------------------------------- */

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes one form-urlencoded component; when the result is not valid
 * UTF-8 (or a %-escape is broken) the component is kept as sent. */
static json_t *
form_string(const char *s, size_t len)
{
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    bool ok = true;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            *o++ = ' ';
        } else if (s[i] == '%' && i + 2 < len && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            *o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            ok = s[i] != '%' && ok;
            *o++ = s[i];
        }
    }
    json_t *v = ok ? json_stringn(out, (size_t)(o - out)) : NULL;
    if (!v)
        v = json_stringn(s, len);
    free(out);
    return v;
}

/* {"k": "v", "k2": ["a","b"]} of a query string; "path" keeps its name for
 * one value and becomes "paths" for several (execd's repeated ?path=). */
static json_t *
query_object(const char *q)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    for (const char *p = q; p && *p;) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        if (len) {
            json_t *k = form_string(p, eq ? (size_t)(eq - p) : len);
            json_t *v = eq ? form_string(eq + 1, len - (size_t)(eq - p) - 1) : json_string("");
            const char *key = json_string_value(k);
            if (key && v) {
                json_t *old = json_object_get(o, key);
                if (!old) {
                    json_object_set(o, key, v);
                } else if (json_is_array(old)) {
                    json_array_append(old, v);
                } else {
                    json_t *arr = json_pack("[O,O]", old, v);
                    json_object_set_new(o, key, arr);
                }
            }
            json_decref(k);
            json_decref(v);
        }
        p += len;
        if (*p == '&')
            p++;
    }
    json_t *paths = json_object_get(o, "path");
    if (json_is_array(paths)) {
        json_object_set(o, "paths", paths);
        json_object_del(o, "path");
    }
    return o;
}

/* ---- classification ----------------------------------------------------- */

static kind_t
kind_of(const char *method, const char *path, const char *type)
{
    if (!strcmp(type, "system.command.execute"))
        return strncmp(path, "/session/", 9) ? K_COMMAND : K_SESSION;
    if (!strcmp(type, "system.code.execute"))
        return K_CODE;
    if (!strcmp(type, "filesystem.file.read"))
        return K_READ;
    if (!strcmp(type, "filesystem.directory.list"))
        return K_LIST;
    if (!strcmp(type, "filesystem.file.create") && !strcmp(method, "POST"))
        return K_UPLOAD;
    if (!strcmp(type, "system.pty.open"))
        return K_PTY;
    return K_GENERIC;
}

kn_execd_capture_t *
kn_execd_capture_new(const char *method, const char *target, bool *not_action, kn_error_t *err)
{
    const char *type;
    *not_action = false;
    if (kn_receipt_execd_action_type(method, target, &type) == 1) {
        *not_action = true;
        return NULL;
    }
    kn_execd_capture_t *c = calloc(1, sizeof *c);
    if (!c) {
        kn_error_set(err, ENOMEM, "capture");
        return NULL;
    }
    size_t plen = strcspn(target, "?#");
    c->type = type;
    c->resource = strndup(target, plen);
    c->query = target[plen] == '?' ? strdup(target + plen + 1) : strdup("");
    if (c->query)
        c->query[strcspn(c->query, "#")] = '\0';
    if (!strcmp(type, "unknown")) {
        if (asprintf(&c->system, "execd:%s %s", method, c->resource ? c->resource : "") < 0)
            c->system = NULL;
    } else {
        c->system = strdup("opensandbox:execd");
    }
    if (!c->resource || !c->query || !c->system) {
        kn_execd_capture_free(c);
        kn_error_set(err, ENOMEM, "capture");
        return NULL;
    }
    c->kind = kind_of(method, c->resource, type);
    c->body.max = KN_EXECD_MAX_BODY;
    c->event.max = KN_EXECD_MAX_EVENT;
    c->error_body.max = MAX_ERROR_BODY;
    hasher_init(&c->raw_request);
    hasher_init(&c->raw);
    hasher_init(&c->logs);
    hasher_init(&c->results);
    return c;
}

static void
mp_free(multipart_t *m)
{
    gb_free(&m->head);
    gb_free(&m->meta);
    json_decref(m->paths);
    json_decref(m->hashes);
}

void
kn_execd_capture_free(kn_execd_capture_t *c)
{
    if (!c)
        return;
    free(c->system);
    free(c->resource);
    free(c->query);
    gb_free(&c->body);
    gb_free(&c->event);
    gb_free(&c->error_body);
    mp_free(&c->mp);
    json_decref(c->exit_code);
    free(c);
}

const char *
kn_execd_capture_type(const kn_execd_capture_t *c)
{
    return c->type;
}

const char *
kn_execd_capture_system(const kn_execd_capture_t *c)
{
    return c->system;
}

const char *
kn_execd_capture_resource(const kn_execd_capture_t *c)
{
    return c->resource;
}

bool
kn_execd_capture_reads_body(const kn_execd_capture_t *c)
{
    return c->kind != K_UPLOAD;
}

/* ---- multipart ------------------------------------------------------- */

/* The value of param (e.g. "boundary") in a header value, unquoted. */
static bool
header_param(const char *value, const char *param, char *out, size_t size)
{
    size_t plen = strlen(param);
    for (const char *p = value; p && *p; p++) {
        if (strncasecmp(p, param, plen) || p[plen] != '=' ||
            (p != value && p[-1] != ';' && p[-1] != ' ' && p[-1] != '\t'))
            continue;
        const char *v = p + plen + 1;
        size_t n;
        if (*v == '"') {
            v++;
            n = strcspn(v, "\"");
        } else {
            n = strcspn(v, "; \t\r\n");
        }
        if (n == 0 || n >= size)
            return false;
        memcpy(out, v, n);
        out[n] = '\0';
        return true;
    }
    return false;
}

void
kn_execd_capture_request_type(kn_execd_capture_t *c, const char *content_type)
{
    char boundary[72];
    if (c->kind != K_UPLOAD || !content_type ||
        strncasecmp(content_type, "multipart/form-data", 19) ||
        !header_param(content_type, "boundary", boundary, sizeof boundary))
        return;
    multipart_t *m = &c->mp;
    m->dlen = (size_t)snprintf(m->delim, sizeof m->delim, "\r\n--%s", boundary);
    /* The body starts with "--boundary": read it as if a CRLF came first. */
    m->match = m->held = 2;
    m->state = MP_PREAMBLE;
    m->head.max = MAX_HEADERS_PART;
    m->meta.max = MAX_METADATA_PART;
    m->paths = json_array();
    m->hashes = json_array();
    c->mp_on = m->paths && m->hashes;
}

static void
mp_part_data(multipart_t *m, const char *p, size_t n)
{
    if (m->state != MP_BODY || n == 0)
        return;
    if (m->part == 1)
        gb_add(&m->meta, p, n);
    else if (m->part == 2) {
        hasher_add(&m->file, p, n);
        m->file_bytes += n;
    }
}

/* The part's headers are complete in m->head: which part is it? */
static void
mp_part_begin(multipart_t *m)
{
    char name[32] = "";
    m->part = 0;
    for (const char *line = m->head.p; line && *line;) {
        size_t n = strcspn(line, "\r\n");
        if (!strncasecmp(line, "content-disposition:", 20)) {
            char value[1024];
            snprintf(value, sizeof value, "%.*s", (int)(n - 20 < 1023 ? n - 20 : 1023), line + 20);
            header_param(value, "name", name, sizeof name);
        }
        line += n;
        line += strspn(line, "\r\n");
    }
    if (!strcmp(name, "metadata"))
        m->part = 1;
    else if (!strcmp(name, "file"))
        m->part = 2;
    gb_reset(&m->meta);
    hasher_init(&m->file);
}

static void
mp_part_end(multipart_t *m)
{
    if (m->part == 1) {
        json_t *meta =
            m->meta.over ? NULL : json_loadb(m->meta.p ? m->meta.p : "", m->meta.len, 0, NULL);
        const char *path = json_string_value(json_object_get(meta, "path"));
        if (json_array_size(m->paths) < MAX_FILES)
            json_array_append_new(m->paths, path ? json_string(path) : json_null());
        json_decref(meta);
    } else if (m->part == 2) {
        char h[KN_RECEIPT_HASH_SIZE];
        hasher_final(&m->file, h);
        if (json_array_size(m->hashes) < MAX_FILES)
            json_array_append_new(m->hashes, json_string(h));
    }
    m->part = 0;
}

static void
mp_feed(multipart_t *m, const char *data, size_t len)
{
    size_t run = 0; /* start of the pending run of body bytes in this chunk */
    for (size_t i = 0; i < len && m->state != MP_END; i++) {
        char ch = data[i];
        if (m->state == MP_AFTER_DELIM) {
            m->after[m->nafter++] = ch;
            if (m->nafter < 2)
                continue;
            m->nafter = 0;
            if (m->after[0] == '-' && m->after[1] == '-') {
                m->state = MP_END;
            } else if (m->after[0] == '\r' && m->after[1] == '\n') {
                m->state = MP_HEADERS;
                gb_reset(&m->head);
            } else {
                m->bad = true;
                m->state = MP_END;
            }
            continue;
        }
        if (m->state == MP_HEADERS) {
            gb_add(&m->head, &ch, 1);
            if (m->head.over) {
                m->bad = true;
                m->state = MP_END;
            } else if (m->head.len >= 4 && !memcmp(m->head.p + m->head.len - 4, "\r\n\r\n", 4)) {
                mp_part_begin(m);
                m->state = MP_BODY;
                m->match = m->held = 0;
                run = i + 1;
            }
            continue;
        }
        /* MP_PREAMBLE or MP_BODY: look for the delimiter. Its first byte (CR)
         * occurs nowhere else in it, so a failed match never hides another. */
        if (ch != m->delim[m->match] && m->match) {
            /* The matched bytes were data: those of earlier chunks are
             * replayed from the delimiter, this chunk's are still in run. */
            mp_part_data(m, m->delim, m->held);
            m->match = m->held = 0;
        }
        if (ch != m->delim[m->match])
            continue;
        m->match++;
        if (m->match < m->dlen)
            continue;
        /* A delimiter: the data ends where its bytes in this chunk start. */
        size_t end = i + 1 - (m->dlen - m->held);
        if (end > run)
            mp_part_data(m, data + run, end - run);
        if (m->state == MP_BODY)
            mp_part_end(m);
        m->state = MP_AFTER_DELIM;
        m->match = m->held = 0;
        run = i + 1;
    }
    if (m->state == MP_BODY || m->state == MP_PREAMBLE) {
        /* Hold back this chunk's bytes of a partial match. */
        size_t mine = m->match - m->held;
        if (len - mine > run)
            mp_part_data(m, data + run, len - mine - run);
        m->held = m->match;
    }
}

void
kn_execd_capture_request_body(kn_execd_capture_t *c, const char *data, size_t len)
{
    hasher_add(&c->raw_request, data, len);
    if (c->kind == K_UPLOAD) {
        if (c->mp_on)
            mp_feed(&c->mp, data, len);
        return;
    }
    gb_add(&c->body, data, len);
}

/* ---- parameters --------------------------------------------------------- */

static json_t *
body_json(kn_execd_capture_t *c)
{
    if (c->body.over || c->body.len == 0)
        return NULL;
    kn_error_t e = {0};
    return kn_jcs_parse(c->body.p, c->body.len, &e);
}

/* {"body_hash"} of the raw request: the parameters of a body that is not
 * JSON (or too large), so that the receipt still commits to it. */
static json_t *
raw_body_params(kn_execd_capture_t *c)
{
    char h[KN_RECEIPT_HASH_SIZE];
    hasher_t copy = c->raw_request;
    hasher_final(&copy, h);
    return json_pack("{s:s}", "body_hash", h);
}

static json_t *
upload_params(kn_execd_capture_t *c, bool *pending)
{
    multipart_t *m = &c->mp;
    if (!c->mp_on || m->bad || m->state != MP_END ||
        json_array_size(m->paths) != json_array_size(m->hashes)) {
        if (c->mp_on && !m->bad && m->state != MP_END && pending) {
            *pending = true;
            return NULL;
        }
        return raw_body_params(c);
    }
    size_t n = json_array_size(m->paths);
    if (n == 1)
        return json_pack("{s:O, s:O}", "path", json_array_get(m->paths, 0), "content_hash",
                         json_array_get(m->hashes, 0));
    json_t *files = json_array();
    for (size_t i = 0; files && i < n; i++)
        json_array_append_new(files, json_pack("{s:O, s:O}", "path", json_array_get(m->paths, i),
                                               "content_hash", json_array_get(m->hashes, i)));
    return json_pack("{s:o}", "files", files);
}

json_t *
kn_execd_capture_parameters(kn_execd_capture_t *c, bool *pending, kn_error_t *err)
{
    json_t *p = NULL, *body = NULL;
    *pending = false;
    switch (c->kind) {
    case K_COMMAND:
    case K_SESSION:
        body = body_json(c);
        if (json_is_string(json_object_get(body, "command"))) {
            p = json_pack("{s:O}", "command", json_object_get(body, "command"));
            json_t *env = json_object_get(body, "envs");
            if (c->kind == K_COMMAND && json_is_object(env) && json_object_size(env))
                json_object_set(p, "env", env);
            c->background = json_is_true(json_object_get(body, "background"));
        } else {
            p = raw_body_params(c);
        }
        break;
    case K_CODE: {
        body = body_json(c);
        const char *code = json_string_value(json_object_get(body, "code"));
        const char *lang =
            json_string_value(json_object_get(json_object_get(body, "context"), "language"));
        if (code) {
            char h[KN_RECEIPT_HASH_SIZE];
            kn_receipt_hash_bytes(code, strlen(code), h);
            p = json_pack("{s:s, s:s}", "code_hash", h, "language", lang ? lang : "");
        } else {
            p = raw_body_params(c);
        }
        break;
    }
    case K_UPLOAD:
        p = upload_params(c, pending);
        if (*pending)
            return NULL;
        break;
    case K_PTY: {
        /* ADR-0027: {"command"}; null for execd's own shell. */
        body = c->body.len ? body_json(c) : json_object();
        json_t *cmd = json_object_get(body, "command");
        if (json_is_object(body) && (!cmd || json_is_null(cmd) || json_is_string(cmd)))
            p = json_pack("{s:O}", "command",
                          cmd && json_is_string(cmd) && json_string_length(cmd) ? cmd
                                                                                : json_null());
        else
            p = raw_body_params(c);
        break;
    }
    default:
        if (c->body.len) {
            body = body_json(c);
            p = body ? json_incref(body) : raw_body_params(c);
        } else {
            p = query_object(c->query);
        }
        break;
    }
    json_decref(body);
    if (!p)
        kn_error_set(err, ENOMEM, "receipt parameters");
    return p;
}

/* ---- responses ------------------------------------------------------- */

void
kn_execd_capture_response_head(kn_execd_capture_t *c, unsigned status, const char *content_type)
{
    c->status = status;
    c->sse = content_type && !strncasecmp(content_type, "text/event-stream", 17);
    c->json_type = content_type && strcasestr(content_type, "json");
}

/* One complete SSE event (execd: a JSON object; "data:" lines accepted). */
static void
sse_event(kn_execd_capture_t *c, char *text, size_t len)
{
    while (len && (*text == '\n' || *text == '\r'))
        text++, len--;
    if (!len)
        return;
    if (len > 5 && !strncmp(text, "data:", 5)) {
        text += 5;
        len -= 5;
    }
    kn_error_t e = {0};
    json_t *ev = kn_jcs_parse(text, len, &e);
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!type) {
        json_decref(ev);
        return;
    }
    if (!strcmp(type, "stdout") || !strcmp(type, "stderr")) {
        const char *t = json_string_value(json_object_get(ev, "text"));
        if (t)
            hasher_add(&c->logs, t, strlen(t));
    } else if (!strcmp(type, "execution_complete")) {
        c->saw_complete = true;
    } else if (!strcmp(type, "result") || !strcmp(type, "error")) {
        json_t *part = json_object_get(ev, !strcmp(type, "result") ? "results" : "error");
        size_t n = 0;
        char *canon = part ? kn_jcs_canonicalize(part, &n, &e) : NULL;
        if (canon)
            hasher_add(&c->results, canon, n);
        free(canon);
        if (!strcmp(type, "error")) {
            c->saw_error = true;
            const char *ev_text =
                json_string_value(json_object_get(json_object_get(ev, "error"), "evalue"));
            char *end = NULL;
            long long code = ev_text ? strtoll(ev_text, &end, 10) : 0;
            if (ev_text && *ev_text && end && !*end && !c->exit_code)
                c->exit_code = json_integer(code);
        }
    }
    json_decref(ev);
}

static void
sse_feed(kn_execd_capture_t *c, const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = data[i];
        if (ch == '\r')
            continue;
        if (ch == '\n') {
            if (++c->blank >= 2) {
                if (c->event.over)
                    c->oversized++;
                else if (c->event.len)
                    sse_event(c, c->event.p, c->event.len);
                gb_reset(&c->event);
                c->blank = 0;
                continue;
            }
        } else {
            c->blank = 0;
        }
        gb_add(&c->event, &ch, 1);
    }
}

void
kn_execd_capture_response_body(kn_execd_capture_t *c, const char *data, size_t len)
{
    hasher_add(&c->raw, data, len);
    if (c->status >= 400 || c->kind == K_PTY) {
        gb_add(&c->error_body, data, len);
        return;
    }
    if (c->sse && (c->kind == K_COMMAND || c->kind == K_SESSION || c->kind == K_CODE))
        sse_feed(c, data, len);
}

const char *
kn_execd_capture_pty_id(const kn_execd_capture_t *c)
{
    return c->pty_id[0] ? c->pty_id : NULL;
}

int
kn_execd_capture_outcome(kn_execd_capture_t *c, bool complete, json_t **response,
                         const char **status, char *error, size_t error_size, kn_error_t *err)
{
    char body[KN_RECEIPT_HASH_SIZE];
    hasher_t raw = c->raw;
    hasher_final(&raw, body);
    uint64_t body_bytes = c->raw.bytes;
    /* A last event without its blank line (execd closes after it). */
    if (c->sse && c->event.len && !c->event.over)
        sse_event(c, c->event.p, c->event.len);
    gb_reset(&c->event);
    json_t *r = NULL;
    bool ok = complete && c->status >= 200 && c->status < 300;
    error[0] = '\0';
    if (c->status == 0) {
        r = json_object();
        snprintf(error, error_size, "execd gave no answer");
        ok = false;
    } else if (c->status >= 300) {
        json_t *eb = c->error_body.over ? NULL
                                        : json_loadb(c->error_body.p ? c->error_body.p : "",
                                                     c->error_body.len, 0, NULL);
        const char *code = json_string_value(json_object_get(eb, "code"));
        char safe[64] = "";
        for (size_t i = 0; code && code[i] && i < sizeof safe - 1; i++)
            safe[i] = (code[i] >= 0x21 && code[i] < 0x7f) ? code[i] : '?';
        snprintf(error, error_size, "execd answered HTTP %u%s%s", c->status, safe[0] ? " " : "",
                 safe);
        json_decref(eb);
        r = json_pack("{s:i, s:s}", "status", (int)c->status, "body_hash", body);
        ok = false;
    } else {
        char h1[KN_RECEIPT_HASH_SIZE], h2[KN_RECEIPT_HASH_SIZE];
        switch (c->kind) {
        case K_COMMAND:
        case K_SESSION: {
            json_t *code = NULL;
            if (c->background)
                code = json_null();
            else if (c->saw_error)
                code = c->exit_code ? json_incref(c->exit_code) : json_null();
            else if (c->saw_complete)
                code = json_integer(0);
            else
                code = json_null();
            r = json_pack("{s:o}", "exit_code", code);
            if (!c->saw_complete && !c->saw_error) {
                snprintf(error, error_size, "the stream ended before the command did");
                ok = false;
            } else if (c->saw_error) {
                if (json_is_integer(c->exit_code))
                    snprintf(error, error_size, "exit code %lld",
                             (long long)json_integer_value(c->exit_code));
                else
                    snprintf(error, error_size, "the command could not run");
                ok = false;
            }
            break;
        }
        case K_CODE: {
            hasher_t a = c->results, b = c->logs;
            hasher_final(&a, h1);
            hasher_final(&b, h2);
            r = json_pack("{s:s, s:s}", "result_hash", h1, "logs_hash", h2);
            if (c->saw_error) {
                snprintf(error, error_size, "the code raised an error");
                ok = false;
            } else if (!c->saw_complete) {
                snprintf(error, error_size, "the stream ended before the code did");
                ok = false;
            }
            break;
        }
        case K_READ:
            r = json_pack("{s:s}", "content_hash", body);
            break;
        case K_LIST:
            r = json_pack("{s:s}", "entries_hash", body);
            break;
        case K_UPLOAD:
            r = json_pack("{s:I}", "bytes_written", (json_int_t)c->mp.file_bytes);
            break;
        case K_PTY: {
            json_t *b = c->error_body.over ? NULL
                                           : json_loadb(c->error_body.p ? c->error_body.p : "",
                                                        c->error_body.len, 0, NULL);
            const char *id = json_string_value(json_object_get(b, "session_id"));
            size_t il = id ? strlen(id) : 0;
            bool fine = il > 0 && il < sizeof c->pty_id;
            for (size_t i = 0; fine && i < il; i++)
                fine = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') ||
                       (id[i] >= 'A' && id[i] <= 'Z') || id[i] == '-' || id[i] == '_';
            if (fine) {
                memcpy(c->pty_id, id, il + 1);
                r = json_pack("{s:s}", "pty_id", id);
            } else {
                r = json_pack("{s:s}", "body_hash", body);
                snprintf(error, error_size, "execd's answer named no usable session_id");
                ok = false;
            }
            json_decref(b);
            break;
        }
        default:
            r = body_bytes ? json_pack("{s:s}", "body_hash", body) : json_object();
            break;
        }
        if (c->oversized && ok) {
            snprintf(error, error_size, "%zu response events over %d bytes were not parsed",
                     c->oversized, KN_EXECD_MAX_EVENT);
            ok = false;
        }
    }
    if (!complete && !error[0])
        snprintf(error, error_size, "the response was not delivered whole");
    if (!r)
        return kn_error_set(err, ENOMEM, "receipt response");
    *response = r;
    *status = ok ? "success" : "failure";
    return 0;
}
