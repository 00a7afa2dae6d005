/*
 * pki.c — see pki.h.
 */
#include "tests/support/pki.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* Runs a shell command built like printf; it must succeed. */
static void sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    cr_assert_eq(rc, 0, "failed: %s", cmd);
}

/* A test CA, a server certificate for 127.0.0.1 and localhost, a client
 * certificate, all signed by it, and a second CA that signed nothing. */
void pki_make(pki_t *p) {
    snprintf(p->dir, sizeof(p->dir), "/tmp/rapport-pki-XXXXXX");
    cr_assert_not_null(mkdtemp(p->dir));
    const char *d = p->dir;
    const char *key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    sh("cd %s && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > server.ext && "
       "printf 'extendedKeyUsage=clientAuth\\n' > client.ext && "
       "openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj /CN=rapport-test-ca "
       "2>/dev/null && "
       "openssl req -x509 %s -keyout other.key -out other.pem -days 2 -subj /CN=other-ca "
       "2>/dev/null && "
       "openssl req %s -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null && "
       "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
       "-out server.pem -days 2 -extfile server.ext 2>/dev/null && "
       "openssl req %s -keyout client.key -out client.csr -subj /CN=rapport 2>/dev/null && "
       "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
       "-out client.pem -days 2 -extfile client.ext 2>/dev/null",
       d, key, key, key, key);
    snprintf(p->ca, sizeof(p->ca), "%s/ca.pem", d);
    snprintf(p->other_ca, sizeof(p->other_ca), "%s/other.pem", d);
    snprintf(p->server_cert, sizeof(p->server_cert), "%s/server.pem", d);
    snprintf(p->server_key, sizeof(p->server_key), "%s/server.key", d);
    snprintf(p->client_cert, sizeof(p->client_cert), "%s/client.pem", d);
    snprintf(p->client_key, sizeof(p->client_key), "%s/client.key", d);
}

void pki_remove(pki_t *p) {
    if (p->dir[0]) sh("rm -rf %s", p->dir);
}

int pki_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}
