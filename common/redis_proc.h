/*
 * redis_proc.h — a private, throwaway redis-server for tests and for
 * `rapport demo`.
 *
 * redis_proc_start() runs `redis-server` from PATH as a child process,
 * listening on 127.0.0.1 on a free port, with its own new temporary
 * directory as `dir` (its log is redis.log there), no RDB snapshots and, by
 * default, no AOF.  It returns once the server answers PING.
 * redis_proc_stop() terminates it, reaps it and removes the directory, so
 * nothing is left behind.  The server is also asked to die with the thread
 * that started it (Linux PR_SET_PDEATHSIG), so a crashed test does not leak
 * a server; start it from a thread that outlives its use.
 *
 * Not thread-safe: one thread owns a redis_proc_t.
 */
#ifndef RAPPORT_REDIS_PROC_H
#define RAPPORT_REDIS_PROC_H

#include <stddef.h>
#include <sys/types.h>

typedef struct redis_proc redis_proc_t;

/* Starts a server.  extra_args (may be NULL) is a NULL-terminated list of
 * more redis-server arguments, appended after the defaults so they can
 * override them, e.g. {"--appendonly", "yes", "--appendfsync", "always",
 * NULL}; it is copied.  Returns NULL with errstr when redis-server is not
 * installed, does not start, or does not answer PING within 5 s.  The
 * caller frees the result with redis_proc_stop(). */
redis_proc_t *redis_proc_start(const char *const *extra_args, char *errstr, size_t errstr_size);

int redis_proc_port(const redis_proc_t *p);
/* "redis://127.0.0.1:PORT", owned by p. */
const char *redis_proc_url(const redis_proc_t *p);
/* The server's private directory (its `dir`), owned by p. */
const char *redis_proc_dir(const redis_proc_t *p);
/* The server's pid, or -1 when it is not running (killed and reaped). */
pid_t redis_proc_pid(const redis_proc_t *p);

/* Sends sig to the server (SIGSTOP, SIGCONT, SIGKILL…).  For SIGKILL and
 * SIGTERM it also waits for the process to end and reaps it, so the port
 * is closed when this returns.  Returns 0, or -1 when it is not running. */
int redis_proc_signal(redis_proc_t *p, int sig);

/* Starts the server again on the same port, directory and arguments, after
 * it was killed (an AOF left there is loaded, as after a crash), and waits
 * for PING.  Returns 0, or -1 with errstr (also when it is still running). */
int redis_proc_restart(redis_proc_t *p, char *errstr, size_t errstr_size);

/* SIGTERM (SIGKILL after 5 s), reap, remove the directory, free.  NULL is
 * a no-op. */
void redis_proc_stop(redis_proc_t *p);

#endif
