/*
 * redis_conn.h — rapport's one way to reach Redis: URL parsing, connection
 * over TCP, a Unix socket or TLS (OpenSSL), AUTH (password, or ACL user and
 * password) and SELECT, then blocking commands with a timeout and the
 * non-blocking pieces a pipelined writer needs.  hiredis is used only for
 * its reply parser (redisReader) and its command formatter; the transport
 * is ours, because hiredis 0.14 has no TLS.
 *
 * URLs:
 *   redis://[[user]:password@]host[:port][/db]     plain TCP
 *   rediss://[[user]:password@]host[:port][/db]    TLS
 *   unix:///path/to/redis.sock                     Unix socket
 * user and password may be %-escaped (%40 for '@').  Port 6379, db 0 by
 * default.  A user without a password is refused (Redis's AUTH needs one).
 *
 * Objects and threads:
 *   - rconn_endpoint_t: a parsed URL plus, for rediss://, the TLS context
 *     (CA, client certificate and key loaded once).  Read-only after
 *     rconn_endpoint_new(): several threads may connect through one.
 *   - rconn_t: one connection.  Owned by one thread at a time.  After any
 *     error (I/O, timeout, EOF, protocol) it is dead: every later call
 *     fails; the caller frees it and connects again, as with hiredis.
 *
 * Messages name host:port (or the socket path) and the ACL user, never the
 * password.  Writes never raise SIGPIPE: plain sockets use MSG_NOSIGNAL,
 * and OpenSSL's calls run with SIGPIPE blocked in the calling thread.
 */
#ifndef RAPPORT_REDIS_CONN_H
#define RAPPORT_REDIS_CONN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

typedef enum { RCONN_TCP = 0, RCONN_TLS, RCONN_UNIX } rconn_kind_t;

typedef struct rconn_url {
    rconn_kind_t kind;
    char host[256];      /* without [] for IPv6; empty for unix */
    int port;            /* default 6379 */
    char path[108];      /* unix socket path */
    char user[128];      /* ACL user; empty: AUTH password only */
    char password[256];  /* empty: no AUTH */
    int db;              /* default 0 */
} rconn_url_t;

/* Parses one of the URL forms above.  Returns 0, or -1 with errstr naming
 * what is wrong (never quoting the password). */
int rconn_url_parse(const char *url, rconn_url_t *out, char *errstr, size_t errstr_size);

/* "host:port", "[v6]:port" or "unix:/path" into out. */
void rconn_url_where(const rconn_url_t *u, char *out, size_t size);

/* TLS settings (config keys redis_tls_*); any field may be NULL or "". */
typedef struct rconn_tls_conf {
    const char *ca_file;      /* trusted CAs (PEM); empty: the system's */
    const char *cert_file;    /* client certificate (PEM), for tls-auth-clients */
    const char *key_file;     /* its private key (PEM) */
    const char *server_name;  /* SNI and the name checked; empty: the URL's host */
} rconn_tls_conf_t;

typedef struct rconn_endpoint rconn_endpoint_t;

/* Parses url and, for rediss://, builds the TLS context (reading the CA,
 * certificate and key files now, so that a bad path fails at start-up).
 * TLS settings given with a non-TLS URL are an error (they would be
 * silently unused).  The strings are copied.  NULL with errstr on error;
 * the caller frees the result with rconn_endpoint_free(). */
rconn_endpoint_t *rconn_endpoint_new(const char *url, const rconn_tls_conf_t *tls,
                                     char *errstr, size_t errstr_size);
void rconn_endpoint_free(rconn_endpoint_t *ep);
/* The parsed URL and "host:port", owned by ep. */
const rconn_url_t *rconn_endpoint_url(const rconn_endpoint_t *ep);
const char *rconn_endpoint_where(const rconn_endpoint_t *ep);

typedef struct rconn rconn_t;

/* Why a connection could not be made. */
typedef enum {
    RCONN_ERR_IO = 1,   /* no connection, timeout, EOF, reset: may work later */
    RCONN_ERR_TLS,      /* TLS handshake refused: certificate not trusted, wrong
                         * name, a client certificate missing; a setting is wrong */
    RCONN_ERR_REFUSED   /* Redis answered AUTH or SELECT with an error */
} rconn_err_t;

/* Connects (TCP keepalive and TCP_NODELAY on TCP), does the TLS handshake
 * with verification, AUTH and SELECT, each step bounded by timeout_ms.
 * NULL with errstr ("redis HOST:PORT: ...") and, when why is not NULL,
 * *why on failure; a refused AUTH says "authentication failed for user
 * NAME".  The caller frees the result with rconn_free(). */
rconn_t *rconn_connect(const rconn_endpoint_t *ep, int timeout_ms, rconn_err_t *why,
                       char *errstr, size_t errstr_size);
/* Closes (TLS close_notify, without waiting) and frees.  NULL: no-op. */
void rconn_free(rconn_t *c);

/* Timeout of the blocking calls below, ms (at least 1). */
void rconn_set_timeout(rconn_t *c, int timeout_ms);
/* Why the connection died ("" while it lives).  Owned by c. */
const char *rconn_errstr(const rconn_t *c);
bool rconn_dead(const rconn_t *c);
/* "host:port" (or "unix:/path"), owned by c. */
const char *rconn_where(const rconn_t *c);

/* ---- Blocking use (hiredis-like) ------------------------------------
 * A command returns its reply (an error reply is a reply: check
 * r->type == REDIS_REPLY_ERROR), the caller frees it with
 * freeReplyObject().  NULL when the connection died (I/O error, timeout,
 * EOF): rconn_errstr() says why. */
redisReply *rconn_command_argv(rconn_t *c, int argc, const char **argv, const size_t *argvlen);
/* hiredis's format: %s, %b (pointer and size_t), %d, %lld... */
redisReply *rconn_command(rconn_t *c, const char *fmt, ...);
redisReply *rconn_vcommand(rconn_t *c, const char *fmt, va_list ap);

/* Pipelining: queue commands, then take their replies in order with
 * rconn_get_reply_wait().  Appends return 0, or -1 out of memory. */
int rconn_append(rconn_t *c, const char *fmt, ...);
int rconn_append_argv(rconn_t *c, int argc, const char **argv, const size_t *argvlen);
/* A request already in the Redis protocol (RESP), copied. */
int rconn_append_formatted(rconn_t *c, const char *cmd, size_t len);
/* Sends what is queued, then waits up to the timeout for the next reply.
 * Returns 0 with *reply (caller frees), or -1 when the connection died. */
int rconn_get_reply_wait(rconn_t *c, redisReply **reply);

/* For readers that treat an error reply like a dead connection: the reply
 * (caller frees), or NULL with errstr (the connection's error, or the
 * error reply's text, the reply freed). */
redisReply *rconn_command_ok(rconn_t *c, char *errstr, size_t errstr_size, const char *fmt, ...);
redisReply *rconn_vcommand_ok(rconn_t *c, char *errstr, size_t errstr_size, const char *fmt,
                              va_list ap);
/* The same for the next reply to a pipelined command. */
redisReply *rconn_get_reply_ok(rconn_t *c, char *errstr, size_t errstr_size);

/* ---- Non-blocking use (a pipelined writer with its own buffers) -------
 * Do not mix with queued, unsent appends above. */

/* Writes as much of buf[0..len) as the transport takes now, without
 * blocking.  Returns the bytes taken (0: none now, wait for
 * rconn_poll_events()), or -1 when the connection died.  After a return of
 * 0, call again with the same bytes (the rest of the same buffer): TLS
 * requires a write it could not finish to be repeated. */
ssize_t rconn_send(rconn_t *c, const void *buf, size_t len);

/* Waits up to wait_ms (0: not at all) for the transport to have bytes,
 * reads what is there and feeds it to the reply parser.  Returns the bytes
 * read (0: none), or -1 when the connection died (EOF included). */
ssize_t rconn_read(rconn_t *c, int wait_ms);

/* Takes the next complete reply from what was read, without I/O.  Returns
 * 0 with *reply (NULL: none complete yet; caller frees), or -1 on a
 * protocol error (the connection is then dead). */
int rconn_get_reply(rconn_t *c, redisReply **reply);

/* The socket, for poll().  With TLS, poll() cannot see bytes OpenSSL
 * already holds: check rconn_pending() before sleeping in poll(). */
int rconn_fd(const rconn_t *c);
/* True when decrypted bytes wait inside OpenSSL (rconn_read() gets them
 * without blocking). */
bool rconn_pending(const rconn_t *c);
/* The poll() events to wait for: POLLIN always; POLLOUT when want_write
 * (the caller has more to send) or when TLS needs to write to make
 * progress.  TLS may also need to read before a write can go on, which
 * POLLIN covers. */
short rconn_poll_events(const rconn_t *c, bool want_write);

#endif
