/* notls.c - inert stand-ins for the gnutls symbols that Debian's libmicrohttpd.a
 * references.
 *
 * kennel-execd never asks libmicrohttpd for TLS (no MHD_USE_TLS), so none of
 * these run except gnutls_global_init/deinit, which libmicrohttpd calls from
 * its library constructor and destructor. Every other stub fails with
 * GNUTLS_E_UNIMPLEMENTED_FEATURE so a TLS path, if one were ever reached, fails
 * closed instead of pretending to work. Only linked into the static build. */
#include <stddef.h>
#include <stdlib.h>

#define KN_GNUTLS_E_UNIMPLEMENTED (-1250)

#define KN_TLS_STUB(name)                                                                          \
    int name(void);                                                                                \
    int name(void)                                                                                 \
    {                                                                                              \
        return KN_GNUTLS_E_UNIMPLEMENTED;                                                          \
    }
#define KN_TLS_STUB_PTR(name)                                                                      \
    void *name(void);                                                                              \
    void *name(void)                                                                               \
    {                                                                                              \
        return NULL;                                                                               \
    }

int gnutls_global_init(void);
void gnutls_global_deinit(void);
extern void *(*gnutls_malloc)(size_t);

int
gnutls_global_init(void)
{
    return 0;
}

void
gnutls_global_deinit(void)
{
}

void *(*gnutls_malloc)(size_t) = malloc;

KN_TLS_STUB(gnutls_alpn_set_protocols)
KN_TLS_STUB(gnutls_bye)
KN_TLS_STUB(gnutls_certificate_allocate_credentials)
KN_TLS_STUB(gnutls_certificate_free_credentials)
KN_TLS_STUB(gnutls_certificate_server_set_request)
KN_TLS_STUB(gnutls_certificate_set_dh_params)
KN_TLS_STUB(gnutls_certificate_set_retrieve_function2)
KN_TLS_STUB(gnutls_certificate_set_retrieve_function3)
KN_TLS_STUB(gnutls_certificate_set_x509_key_mem)
KN_TLS_STUB(gnutls_certificate_set_x509_key_mem2)
KN_TLS_STUB(gnutls_certificate_set_x509_trust_mem)
KN_TLS_STUB(gnutls_cipher_get)
KN_TLS_STUB(gnutls_credentials_set)
KN_TLS_STUB(gnutls_deinit)
KN_TLS_STUB(gnutls_dh_params_deinit)
KN_TLS_STUB(gnutls_dh_params_import_pkcs3)
KN_TLS_STUB(gnutls_dh_params_init)
KN_TLS_STUB(gnutls_handshake)
KN_TLS_STUB(gnutls_init)
KN_TLS_STUB(gnutls_priority_deinit)
KN_TLS_STUB(gnutls_priority_init)
KN_TLS_STUB(gnutls_priority_set)
KN_TLS_STUB(gnutls_protocol_get_version)
KN_TLS_STUB(gnutls_psk_allocate_server_credentials)
KN_TLS_STUB(gnutls_psk_free_server_credentials)
KN_TLS_STUB(gnutls_psk_set_server_credentials_function)
KN_TLS_STUB(gnutls_record_check_pending)
KN_TLS_STUB(gnutls_record_get_direction)
KN_TLS_STUB(gnutls_record_recv)
KN_TLS_STUB(gnutls_record_send)
KN_TLS_STUB_PTR(gnutls_session_get_ptr)
KN_TLS_STUB(gnutls_session_set_ptr)
KN_TLS_STUB_PTR(gnutls_strerror)
KN_TLS_STUB(gnutls_transport_set_int2)
