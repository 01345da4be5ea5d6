/* files.h - helpers shared by the files API handlers (files.c) and uploads (upload.c). */
#ifndef KN_EXECD_FILES_H
#define KN_EXECD_FILES_H

#include <jansson.h>
#include <sys/stat.h>

#include "core/error.h"
#include "http.h"
#include "users.h"

/* Replies with the HTTP status and error code that fit err->code (ENOENT ->
 * 404 FILE_NOT_FOUND, bad paths -> 400, ...). */
enum MHD_Result kn_files_reply_err(kn_req_t *req, const kn_error_t *err);
/* Applies mode (octal-digits-as-decimal; 0 = unchanged), owner and group (names
 * or numbers; NULL/"" = unchanged) to an open descriptor. */
int kn_files_apply_perm(int fd, const kn_users_t *u, long long mode, const char *owner,
                        const char *group, kn_error_t *err);

#endif
