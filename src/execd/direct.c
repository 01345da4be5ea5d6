/* direct.c - simple command lines run without the shell. See direct.h.
 *
 * What bash (5.2) does for `bash -c 'prog word...'` when the line is one
 * simple command: it finds prog as find_user_command does (each PATH entry
 * in turn, the first regular executable file), sets PWD (kept when it names
 * the working directory, else the physical path), SHLVL (the inherited
 * level, clamped at 0: it raises it on start and lowers it again before the
 * one-shot exec) and _ (the path it found), and execs in place. Every case
 * this file does not reproduce exactly returns false and goes to bash. */
#include "direct.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_WORDS 256

/* Alphabetic builtins and reserved words of bash 5.2 (`compgen -b`,
 * `compgen -k`); those spelt with other characters ([, [[, {, !, ., :)
 * never pass plain_char. */
static const char *const shell_words[] = {
    "alias",   "bg",       "bind",     "break",     "builtin",  "caller",  "case",    "cd",
    "command", "compgen",  "complete", "compopt",   "continue", "coproc",  "declare", "dirs",
    "disown",  "do",       "done",     "echo",      "elif",     "else",    "enable",  "esac",
    "eval",    "exec",     "exit",     "export",    "false",    "fc",      "fg",      "fi",
    "for",     "function", "getopts",  "hash",      "help",     "history", "if",      "in",
    "jobs",    "kill",     "let",      "local",     "logout",   "mapfile", "popd",    "printf",
    "pushd",   "pwd",      "read",     "readarray", "readonly", "return",  "select",  "set",
    "shift",   "shopt",    "source",   "suspend",   "test",     "then",    "time",    "times",
    "trap",    "true",     "type",     "typeset",   "ulimit",   "umask",   "unalias", "unset",
    "until",   "wait",     "while",
};

/* Characters that mean nothing to bash inside a word outside any quoting:
 * no quoting, expansion, globbing, redirection, operator, comment or tilde. */
static bool
plain_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("_-./:,+%@=", c) != NULL;
}

static bool
is_shell_word(const char *w)
{
    for (size_t i = 0; i < sizeof shell_words / sizeof *shell_words; i++)
        if (strcmp(w, shell_words[i]) == 0)
            return true;
    return false;
}

/* Splits command into words (space and tab); NULL unless every word is plain. */
static char **
split_plain(const char *command)
{
    char **argv = NULL;
    size_t n = 0;
    const char *p = command;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *s = p;
        while (*p && *p != ' ' && *p != '\t') {
            if (!plain_char((unsigned char)*p))
                goto no;
            p++;
        }
        if (n + 2 > MAX_WORDS)
            goto no;
        char **grown = realloc(argv, (n + 2) * sizeof *argv);
        if (!grown)
            goto no;
        argv = grown;
        if (!(argv[n] = strndup(s, (size_t)(p - s))))
            goto no;
        argv[++n] = NULL;
    }
    if (n == 0)
        goto no;
    /* An assignment (NAME=...) or anything else with '=' in command position. */
    if (strchr(argv[0], '='))
        goto no;
    if (is_shell_word(argv[0])) {
        bool same = n == 1 && (strcmp(argv[0], "true") == 0 || strcmp(argv[0], "false") == 0);
        if (!same)
            goto no;
    }
    return argv;
no:
    for (size_t i = 0; argv && i < n; i++)
        free(argv[i]);
    free(argv);
    return NULL;
}

bool
kn_direct_simple(const char *command)
{
    char **argv = split_plain(command);
    kn_direct_t d = {.argv = argv};
    kn_direct_free(&d);
    return argv != NULL;
}

static const char *
env_get(char **env, const char *key)
{
    size_t kl = strlen(key);
    for (char **e = env; *e; e++)
        if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=')
            return *e + kl + 1;
    return NULL;
}

/* Something in the environment makes bash do more than exec: a startup file
 * it would source, functions it would import, options (xtrace) it would
 * apply. */
static bool
env_changes_bash(char **env)
{
    for (char **e = env; *e; e++) {
        if (strncmp(*e, "BASH_FUNC_", 10) == 0 || strncmp(*e, "SHELLOPTS=", 10) == 0 ||
            strncmp(*e, "BASHOPTS=", 9) == 0)
            return true;
        if ((strncmp(*e, "BASH_ENV=", 9) == 0 && (*e)[9]) ||
            (strncmp(*e, "ENV=", 4) == 0 && (*e)[4]))
            return true;
    }
    return false;
}

/* A file execve runs itself (ELF or #!): anything else bash would run as a
 * script after execve's ENOEXEC. at is the directory relative paths start in. */
static bool
runnable(int at, const char *path)
{
    struct stat st;
    if (fstatat(at, path, &st, 0) < 0 || !S_ISREG(st.st_mode) ||
        faccessat(at, path, X_OK, AT_EACCESS) < 0)
        return false;
    int fd = openat(at, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return false;
    unsigned char m[4] = {0};
    ssize_t n = read(fd, m, sizeof m);
    close(fd);
    return (n >= 4 && memcmp(m,
                             "\x7f"
                             "ELF",
                             4) == 0) ||
           (n >= 2 && m[0] == '#' && m[1] == '!');
}

/* argv[0] looked up as bash would; NULL when bash would fail (it gives the
 * error then) or do something this file does not. */
static char *
find_program(const char *name, char **env, int at)
{
    if (strchr(name, '/'))
        return runnable(at, name) ? strdup(name) : NULL;
    const char *path = env_get(env, "PATH");
    if (!path || !*path)
        return NULL; /* bash's built-in default path */
    size_t nl = strlen(name);
    for (const char *p = path;;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        /* Empty and relative entries are looked up from the command's
         * directory: leave those to bash. */
        if (len == 0 || p[0] != '/')
            return NULL;
        char full[PATH_MAX];
        if (len + nl + 2 <= sizeof full) {
            memcpy(full, p, len);
            full[len] = '/';
            memcpy(full + len + 1, name, nl + 1);
            struct stat st;
            if (stat(full, &st) == 0 && !S_ISDIR(st.st_mode))
                return runnable(AT_FDCWD, full) ? strdup(full) : NULL;
        }
        if (!end)
            return NULL;
        p = end + 1;
    }
}

/* Sets key=value in *env (replacing an entry). -1 without memory. */
static int
env_set(char ***env, const char *key, const char *value)
{
    size_t kl = strlen(key), n = 0;
    size_t len = kl + strlen(value) + 2;
    char *kv = malloc(len);
    if (!kv)
        return -1;
    snprintf(kv, len, "%s=%s", key, value);
    for (char **e = *env; *e; e++, n++) {
        if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=') {
            free(*e);
            *e = kv;
            return 0;
        }
    }
    char **grown = realloc(*env, (n + 2) * sizeof **env);
    if (!grown) {
        free(kv);
        return -1;
    }
    grown[n] = kv;
    grown[n + 1] = NULL;
    *env = grown;
    return 0;
}

/* SHLVL as bash leaves it for a one-shot exec; false when bash would warn. */
static bool
shell_level(char **env, char *out, size_t size)
{
    const char *v = env_get(env, "SHLVL");
    long level = 0;
    if (v) {
        while (*v == ' ' || *v == '\t' || *v == '\n')
            v++;
        char *end;
        long x = strtol(v, &end, 10);
        while (end != v && (*end == ' ' || *end == '\t' || *end == '\n'))
            end++;
        if (end != v && !*end)
            level = x < 0 ? 0 : x;
    }
    if (level + 1 >= 1000)
        return false; /* "shell level too high, resetting to 1" */
    snprintf(out, size, "%ld", level);
    return true;
}

bool
kn_direct_plan(const char *command, char ***env, const char *cwd, kn_direct_t *d)
{
    *d = (kn_direct_t){0};
    bool ok = false;
    int at = -1;
    char *phys = NULL;
    char level[24];
    if (env_changes_bash(*env) || !shell_level(*env, level, sizeof level))
        return false;
    char **argv = split_plain(command);
    if (!argv)
        return false;
    const char *dir = cwd && *cwd ? cwd : ".";
    at = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (at < 0)
        goto out; /* bash reports a missing directory its own way */
    char *path = find_program(argv[0], *env, at);
    if (!path)
        goto out;
    d->argv = argv;
    d->path = path;
    /* PWD: kept when it names the directory, as bash keeps it. */
    const char *pwd = env_get(*env, "PWD");
    struct stat a, b;
    bool keep = pwd && pwd[0] == '/' && stat(pwd, &a) == 0 && fstat(at, &b) == 0 &&
                a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    if (!keep && !(phys = realpath(dir, NULL)))
        goto out;
    if ((!keep && env_set(env, "PWD", phys) < 0) || env_set(env, "SHLVL", level) < 0 ||
        env_set(env, "_", path) < 0)
        goto out;
    ok = true;
out:
    if (at >= 0)
        close(at);
    free(phys);
    if (!ok) {
        if (!d->argv) {
            for (char **w = argv; *w; w++)
                free(*w);
            free(argv);
        }
        kn_direct_free(d);
    }
    return ok;
}

void
kn_direct_free(kn_direct_t *d)
{
    for (char **w = d->argv; w && *w; w++)
        free(*w);
    free(d->argv);
    free(d->path);
    *d = (kn_direct_t){0};
}
