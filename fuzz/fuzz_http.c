/*
 * fuzz_http.c — libFuzzer harness for rapport's HTTP endpoints: the
 * server of common/http.c (method check, routing by path, responses) with
 * the /metrics, /healthz and /readyz handlers of consumer/metrics.c, behind
 * libmicrohttpd's parser of request lines, paths, query strings and
 * headers.
 *
 * The handlers are reachable only through libmicrohttpd's daemon, so the
 * harness runs the real server (metrics_serve()) on 127.0.0.1 with an
 * ephemeral port, as `rapport run` does, and each input is one
 * connection: its bytes are sent as they are (one or more requests,
 * pipelined, with bodies or not) followed by an empty line, which ends
 * the header block of most mutated inputs; the client half-closes and
 * reads the answer until the server closes or stays silent for
 * QUIET_MS (libmicrohttpd keeps a request whose body is still due open
 * until its connection timeout, which would stall the run for seconds).
 * Sockets close with SO_LINGER 0, so a long run leaves no TIME_WAIT
 * behind.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "consumer/metrics.h"

#define QUIET_MS 100

static metrics_t *metrics;
static http_server_t *server;
static struct sockaddr_in addr;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char err[256];
    log_set_level(LOG_ERROR);
    /* Some state to render: partitions, a Redis error with characters to
     * escape, counters. */
    if (!(metrics = metrics_new("fuzz \"1\"\n", 60000))) abort();
    metrics_partition_t parts[2] = {{0, 1700000000000LL, 3}, {7, -1, -1}};
    metrics_partitions(metrics, parts, 2, 42);
    metrics_redis(metrics, false, "connection refused \"x\"\n");
    metrics_dead_letter(metrics, DLQ_BAD_FRAMING);
    metrics_flush_observe(metrics, 0.003);
    if (!(server = metrics_serve(metrics, "127.0.0.1:0", err, sizeof err))) {
        fprintf(stderr, "fuzz_http: %s\n", err);
        abort();
    }
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)http_server_port(server));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return 0;
}

/* A connected socket.  libFuzzer's SIGALRM (its -timeout check) may
 * interrupt any call here: connect then goes on in the background, and
 * the other calls are simply made again. */
static int server_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) abort();
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) return fd;
    int err = errno;
    if (err == EINTR) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        while (poll(&p, 1, -1) < 0 && errno == EINTR) continue;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err == 0) return fd;
    }
    fprintf(stderr, "fuzz_http: connect: %s\n", strerror(err));
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = server_connect();
    const uint8_t *parts[2] = {data, (const uint8_t *)"\r\n\r\n"};
    size_t sizes[2] = {size, 4};
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < sizes[i]) {
            ssize_t n = send(fd, parts[i] + off, sizes[i] - off, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break; /* the server may close first, e.g. on a bad request line */
            off += (size_t)n;
        }
    }
    shutdown(fd, SHUT_WR);
    char buf[65536];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (;;) {
        int ready = poll(&p, 1, QUIET_MS);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) break;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
    }
    close(fd);
    return 0;
}
