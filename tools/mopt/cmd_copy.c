/* cmd_copy.c - `mopt copy MODEL -o OUT`: read, validate and write a model
 * again (a round trip through mopt's graph IR, e.g. to check the writer or to
 * normalise a file). */
#include <string.h>

#include "cli.h"

static const cli_option opts[] = {{"output", 'o', true}};
enum { OPT_OUTPUT };

static int copy_main(int argc, char **argv) {
    cli_parser p;
    cli_parser_init(&p, "copy", argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0])));
    const char *model = NULL, *out = NULL, *arg;
    int r;
    while ((r = cli_next(&p, &arg)) != CLI_END) {
        switch (r) {
        case CLI_HELP: return cli_print_help(&cli_cmd_copy);
        case CLI_BAD: return 1;
        case CLI_POSITIONAL:
            if (model)
                return cli_usage_error("copy", "unexpected argument '%s'", arg);
            model = arg;
            break;
        case OPT_OUTPUT: out = arg; break;
        default: return cli_usage_error("copy", "internal: unhandled option");
        }
    }
    if (!model)
        return cli_usage_error("copy", "missing MODEL");
    if (!out)
        return cli_usage_error("copy", "missing -o OUT");

    cli_model m;
    int rc = cli_model_load(model, false, &m);
    if (rc)
        return rc;
    mopt_error err;
    mopt_error_clear(&err);
    if (mopt_tflite_write_file(m.graph, out, &err) != MOPT_OK)
        rc = cli_fail(&err);
    cli_model_free(&m);
    return rc;
}

const cli_command cli_cmd_copy = {
    "copy",
    "read, validate and write a model again (round trip through the graph IR)",
    "usage: mopt copy MODEL -o OUT\n"
    "\n"
    "Reads MODEL, validates it and writes it to OUT with mopt's TFLite writer\n"
    "(atomically: OUT is either the complete new file or untouched).\n"
    "\n"
    "options:\n"
    "  -o, --output OUT   the file to write (required)\n",
    copy_main,
};
