/* caps.h - capabilities: everything dropped before the program runs. */
#ifndef KN_CAPS_H
#define KN_CAPS_H

#include "error.h"

/* Clears the bounding and ambient sets and locks securebits against root
 * regaining capabilities. Needs CAP_SETPCAP: call before changing uid. */
int kn_caps_drop_bounding(kn_error_t *err);
/* Empties the permitted, effective and inheritable sets. */
int kn_caps_clear(kn_error_t *err);

#endif
