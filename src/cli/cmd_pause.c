/* cmd_pause.c - `kennel pause ID...`: pause sandboxes (cgroup freezer) through the lifecycle API.
 */
#include "cli.h"
#include "idcmd.h"

int
kn_cmd_pause(int argc, char **argv)
{
    return kn_idcmd_run(argc, argv, "pause", "POST", "/pause");
}
