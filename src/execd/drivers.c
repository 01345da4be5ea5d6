/* drivers.c - the embedded language drivers. See drivers.h for the protocol. */
#include "drivers.h"

#include <string.h>

static const char python_driver[] =
    "import ast, io, json, os, sys, traceback\n"
    "_kn_in = os.fdopen(3, 'rb')\n"
    "_kn_out = os.fdopen(4, 'w', buffering=1)\n"
    "sys.stdout.reconfigure(line_buffering=True)\n"
    "sys.stderr.reconfigure(line_buffering=True)\n"
    "_kn_ns = {'__name__': '__main__', '__builtins__': __builtins__}\n"
    "def _kn_send(o):\n"
    "    _kn_out.write(json.dumps(o) + '\\n')\n"
    "    _kn_out.flush()\n"
    "def _kn_run(code):\n"
    "    try:\n"
    "        tree = ast.parse(code, '<cell>', 'exec')\n"
    "        last = None\n"
    "        if tree.body and isinstance(tree.body[-1], ast.Expr):\n"
    "            last = ast.Expression(tree.body.pop().value)\n"
    "        exec(compile(tree, '<cell>', 'exec'), _kn_ns)\n"
    "        if last is not None:\n"
    "            v = eval(compile(last, '<cell>', 'eval'), _kn_ns)\n"
    "            if v is not None:\n"
    "                _kn_send({'type': 'result', 'text': repr(v)})\n"
    "    except BaseException as e:\n"
    "        tb = e.__traceback__\n"
    "        if tb is not None and tb.tb_frame.f_code is _kn_run.__code__:\n"
    "            tb = tb.tb_next\n"
    "        lines = ''.join(traceback.format_exception(type(e), e, tb)).splitlines()\n"
    "        _kn_send({'type': 'error', 'ename': type(e).__name__, 'evalue': str(e),\n"
    "                  'traceback': lines})\n"
    "    finally:\n"
    "        try:\n"
    "            sys.stdout.flush()\n"
    "            sys.stderr.flush()\n"
    "        except Exception:\n"
    "            pass\n"
    "_kn_send({'type': 'ready'})\n"
    "for _kn_line in _kn_in:\n"
    "    _kn_run(json.loads(_kn_line)['code'])\n"
    "    _kn_send({'type': 'done'})\n";

static const char node_driver[] =
    "'use strict';\n"
    "const fs = require('fs'), vm = require('vm'), util = require('util');\n"
    "const readline = require('readline');\n"
    "const g = {console, require, process, Buffer, URL, URLSearchParams, TextEncoder,\n"
    "  TextDecoder, setTimeout, clearTimeout, setInterval, clearInterval, setImmediate,\n"
    "  clearImmediate, queueMicrotask, structuredClone, module: {exports: {}}};\n"
    "g.exports = g.module.exports;\n"
    "const ctx = vm.createContext(g);\n"
    "const send = (o) => fs.writeSync(4, JSON.stringify(o) + '\\n');\n"
    "process.on('SIGINT', () => {});\n"
    "const rl = readline.createInterface({input: fs.createReadStream(null, {fd: 3}),\n"
    "  crlfDelay: Infinity});\n"
    "(async () => {\n"
    "  send({type: 'ready'});\n"
    "  for await (const line of rl) {\n"
    "    const req = JSON.parse(line);\n"
    "    try {\n"
    "      let v = vm.runInContext(req.code, ctx, {filename: '<cell>', breakOnSigint: true});\n"
    "      if (v && typeof v.then === 'function') v = await v;\n"
    "      if (v !== undefined) send({type: 'result', text: util.inspect(v)});\n"
    "    } catch (e) {\n"
    "      const name = (e && e.name) || 'Error';\n"
    "      const value = (e && e.message !== undefined) ? String(e.message) : String(e);\n"
    "      let tb = (e && e.stack) ? String(e.stack).split('\\n') : [name + ': ' + value];\n"
    "      const cut = tb.findIndex((l) => /node:vm|\\[eval\\]/.test(l));\n"
    "      if (cut > 0) tb = tb.slice(0, cut);\n"
    "      send({type: 'error', ename: name, evalue: value, traceback: tb});\n"
    "    }\n"
    "    send({type: 'done'});\n"
    "  }\n"
    "  process.exit(0);\n"
    "})();\n";

/* Runs each request in the driver's own shell so variables, functions, cwd and
 * options persist. INT is trapped so an interrupt stops the command, not the shell. */
static const char bash_driver[] =
    "trap : INT\n"
    "printf '{\"type\":\"ready\"}\\n' >&4\n"
    "while IFS= read -r __kn_line <&3; do\n"
    "  printf -v __kn_code '%b' \"$__kn_line\"\n"
    "  unset __kn_line\n"
    "  eval \"$__kn_code\"\n"
    "  __kn_rc=$?\n"
    "  printf '{\"type\":\"done\",\"status\":%d}\\n' \"$__kn_rc\" >&4\n"
    "done\n";

static const char *const python_argv[] = {"python3", "-c", python_driver, NULL};
static const char *const node_argv[] = {"node", "-e", node_driver, NULL};
static const char *const bash_argv[] = {"bash", "--noprofile", "--norc", "-c", bash_driver, NULL};

static const kn_driver_t drivers[] = {
    {"python", "python3", python_argv, true},
    {"javascript", "node", node_argv, true},
    {"bash", "bash", bash_argv, false},
};

const kn_driver_t *
kn_driver_find(const char *language)
{
    if (!language)
        return NULL;
    if (!strcmp(language, "js") || !strcmp(language, "node") || !strcmp(language, "nodejs"))
        language = "javascript";
    if (!strcmp(language, "python3") || !strcmp(language, "py"))
        language = "python";
    if (!strcmp(language, "sh") || !strcmp(language, "shell"))
        language = "bash";
    for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++)
        if (!strcmp(drivers[i].language, language))
            return &drivers[i];
    return NULL;
}
