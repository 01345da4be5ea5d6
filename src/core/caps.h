/* caps.h - capabilities: everything dropped before the program runs. */
#ifndef KN_CAPS_H
#define KN_CAPS_H

#include "error.h"

/* Clears the bounding and ambient sets, locks securebits against root
 * regaining capabilities, and empties the permitted, effective and
 * inheritable sets of the calling thread. */
int kn_caps_drop_all(kn_error_t *err);

#endif
