/* main.c - `mopt` entry point: dispatches to the subcommands in CLI_COMMANDS. */
#include <string.h>

#include "cli.h"

#define CLI_ENTRY(name) &cli_cmd_##name,
static const cli_command *const commands[] = {CLI_COMMANDS(CLI_ENTRY)};
#undef CLI_ENTRY
#define N_COMMANDS ((int)(sizeof(commands) / sizeof(commands[0])))

static const cli_command *find_command(const char *name) {
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

static int print_main_help(void) {
    printf("mopt %s - model optimization toolkit for .tflite models\n\n"
           "usage: mopt COMMAND [ARGS...]\n"
           "       mopt help COMMAND | mopt COMMAND --help\n"
           "       mopt --version\n\n"
           "commands:\n",
           MOPT_VERSION_STRING);
    size_t w = 0;
    for (int i = 0; i < N_COMMANDS; i++)
        if (strlen(commands[i]->name) > w)
            w = strlen(commands[i]->name);
    for (int i = 0; i < N_COMMANDS; i++)
        printf("  %-*s  %s\n", (int)w, commands[i]->name, commands[i]->summary);
    printf("\nexit codes: 0 ok, 1 usage error, 2 bad input (malformed or unsupported file,\n"
           "wrong shapes, unreadable file), 3 internal error. Errors are one line on stderr.\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "mopt: no command given (see 'mopt --help')\n");
        return 1;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
        return print_main_help();
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0 || strcmp(name, "version") == 0) {
        printf("mopt %s\n", MOPT_VERSION_STRING);
        return 0;
    }
    if (strcmp(name, "help") == 0) {
        if (argc < 3)
            return print_main_help();
        const cli_command *c = find_command(argv[2]);
        if (!c) {
            fprintf(stderr, "mopt: help: unknown command '%s' (see 'mopt --help')\n", argv[2]);
            return 1;
        }
        return cli_print_help(c);
    }
    const cli_command *c = find_command(name);
    if (!c) {
        if (name[0] == '-')
            fprintf(stderr, "mopt: unknown option '%s' (see 'mopt --help')\n", name);
        else
            fprintf(stderr, "mopt: unknown command '%s' (see 'mopt --help')\n", name);
        return 1;
    }
    int rc = c->main(argc - 1, argv + 1);
    /* A failed write to stdout (full disk, closed pipe) must not look like
     * success. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "mopt: %s: error writing to standard output\n", name);
        if (rc == 0)
            rc = 2;
    }
    return rc;
}
