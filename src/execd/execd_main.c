#include "main.h"

int
main(int argc, char **argv)
{
    return kn_execd_main(argc, argv);
}
