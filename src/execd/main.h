/* main.h - the entry point of kennel-execd, callable from execd_main.c. */
#ifndef KN_EXECD_MAIN_H
#define KN_EXECD_MAIN_H

/* Parses the command line, serves until SIGTERM, returns the exit status. */
int kn_execd_main(int argc, char **argv);

#endif
