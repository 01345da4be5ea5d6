/* cmd_resume.c - `kennel resume ID...`: resume paused sandboxes through the lifecycle API. */
#include "cli.h"
#include "idcmd.h"

int
kn_cmd_resume(int argc, char **argv)
{
    return kn_idcmd_run(argc, argv, "resume", "POST", "/resume");
}
