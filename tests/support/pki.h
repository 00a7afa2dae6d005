/*
 * pki.h — a throwaway test CA and certificates, made with the openssl
 * command line, for tests that talk TLS to a redis-server started with
 * --tls-port; and a free loopback port to start it on.  Uses Criterion
 * assertions: test binaries only.  One thread.
 */
#ifndef RAPPORT_TEST_PKI_H
#define RAPPORT_TEST_PKI_H

typedef struct pki {
    char dir[64];
    char ca[128], other_ca[128], server_cert[128], server_key[128], client_cert[128],
        client_key[128];
} pki_t;

/* A test CA, a server certificate for 127.0.0.1 and localhost, a client
 * certificate, all signed by it, and a second CA (other_ca) that signed
 * nothing, in a new directory under /tmp. */
void pki_make(pki_t *p);
/* Removes the directory. */
void pki_remove(pki_t *p);

/* A loopback TCP port free now (bound, read, closed). */
int pki_free_port(void);

#endif
