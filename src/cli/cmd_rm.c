/* cmd_rm.c - `kennel rm ID...`: delete sandboxes through the lifecycle API. */
#include "cli.h"
#include "idcmd.h"

int
kn_cmd_rm(int argc, char **argv)
{
    return kn_idcmd_run(argc, argv, "rm", "DELETE", "");
}
