#include "upload.h"
int
kn_upload_begin(kn_req_t *req)
{
    return -1;
}
int
kn_upload_feed(kn_req_t *req, const char *data, size_t n)
{
    return -1;
}
enum MHD_Result
kn_upload_handle(kn_req_t *req)
{
    return kn_http_reply_error(req, 501, "NOT_SUPPORTED", "upload");
}
void
kn_upload_free(kn_req_t *req)
{
}
