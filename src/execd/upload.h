/* upload.h - POST /files/upload: multipart pairs of "metadata" + "file" parts
 * streamed straight to their target files inside the served root. */
#ifndef KN_EXECD_UPLOAD_H
#define KN_EXECD_UPLOAD_H

#include "http.h"

/* Called on the first call of an upload request; sets req->upload. -1 if the
 * request is not multipart (the handler later replies 400). */
int kn_upload_begin(kn_req_t *req);
/* Feeds body bytes. -1 after the first error (remaining bytes are discarded). */
int kn_upload_feed(kn_req_t *req, const char *data, size_t n);
/* The route handler: finishes the last file and replies. */
enum MHD_Result kn_upload_handle(kn_req_t *req);
/* Releases req->upload (closing any open file). */
void kn_upload_free(kn_req_t *req);

#endif
