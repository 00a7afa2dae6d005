/*
 * redis_proc.c — runs a private redis-server child for tests and the demo
 * (see redis_proc.h).
 *
 * Owns the child process and its temporary directory; the thread that
 * calls redis_proc_start() owns the handle.  The child gets its own
 * process group (a Ctrl-C at the terminal reaches rapport, which still
 * wants to write its last batch, and not the server) and dies with its
 * parent thread (PR_SET_PDEATHSIG).  Its stdout and stderr go to
 * <dir>/redis.log; the last line of that file explains a failed start.
 */
#include "common/redis_proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/redis_conn.h"

#include "common/alloc.h"
#include "common/clock.h"

#define REDIS_PROC_READY_MS 5000  /* how long a start may take to answer PING */
#define REDIS_PROC_STOP_MS  5000  /* how long SIGTERM may take before SIGKILL */
#define REDIS_PROC_PORT_TRIES 5   /* a free port can be taken before redis binds it */

struct redis_proc {
    pid_t pid;                /* -1 when not running */
    int port;
    char exe[PATH_MAX];       /* redis-server found on PATH */
    char dir[PATH_MAX];       /* mkdtemp'd, removed by redis_proc_stop() */
    char log[PATH_MAX + 16];  /* <dir>/redis.log */
    char url[64];
    char **extra;             /* copied extra args, NULL-terminated */
};

/* Finds redis-server in $PATH.  Returns 0, or -1 when it is not there. */
static int find_exe(char *out, size_t size) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        if (n > 0) {
            int len = snprintf(out, size, "%.*s/redis-server", (int)n, path);
            if (len > 0 && (size_t)len < size && access(out, X_OK) == 0) return 0;
        }
        path += n;
        if (*path == ':') path++;
    }
    return -1;
}

/* A port that was free a moment ago (bind to port 0 and ask). */
static int pick_port(char *errstr, size_t errstr_size) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(errstr, errstr_size, "socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    socklen_t len = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        snprintf(errstr, errstr_size, "cannot find a free port: %s", strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* The last non-empty line of the server's log, for error messages. */
static void log_tail(const redis_proc_t *p, char *out, size_t size) {
    out[0] = '\0';
    FILE *f = fopen(p->log, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        if (n > 0) {
            size_t m = n < size - 1 ? n : size - 1;
            memcpy(out, line, m);
            out[m] = '\0';
        }
    }
    fclose(f);
}

/* fork + exec redis-server on p->port.  Returns 0 or -1. */
static int spawn(redis_proc_t *p, char *errstr, size_t errstr_size) {
    char port[16];
    snprintf(port, sizeof(port), "%d", p->port);
    const char *fixed[] = {p->exe, "--port", port, "--bind", "127.0.0.1", "--dir", p->dir,
                           "--save", "", "--appendonly", "no", "--daemonize", "no",
                           "--logfile", ""};
    size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
    size_t nextra = 0;
    while (p->extra[nextra]) nextra++;
    const char **argv = xcalloc(nfixed + nextra + 1, sizeof(*argv));
    memcpy(argv, fixed, sizeof(fixed));
    for (size_t i = 0; i < nextra; i++) argv[nfixed + i] = p->extra[i];

    int logfd = open(p->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd < 0) {
        snprintf(errstr, errstr_size, "%s: %s", p->log, strerror(errno));
        free(argv);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(errstr, errstr_size, "fork: %s", strerror(errno));
        close(logfd);
        free(argv);
        return -1;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls until exec. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        setpgid(0, 0);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, STDIN_FILENO);
        dup2(logfd, STDOUT_FILENO);
        dup2(logfd, STDERR_FILENO);
        execv(p->exe, (char *const *)argv);
        _exit(127);
    }
    close(logfd);
    free(argv);
    p->pid = pid;
    return 0;
}

/* Reaps the child if it has ended.  Returns true when it has. */
static bool reap_if_exited(redis_proc_t *p, int *status) {
    pid_t r = waitpid(p->pid, status, WNOHANG);
    if (r == p->pid || (r < 0 && errno == ECHILD)) {
        p->pid = -1;
        return true;
    }
    return false;
}

/* Waits for PONG.  Returns 0, or -1 with errstr after the child exited
 * (*exited set) or the deadline passed. */
static int wait_ready(redis_proc_t *p, bool *exited, char *errstr, size_t errstr_size) {
    *exited = false;
    int64_t deadline = clock_ms() + REDIS_PROC_READY_MS;
    char last[256] = "no answer";
    for (;;) {
        int status = 0;
        if (reap_if_exited(p, &status)) {
            char tail[256];
            log_tail(p, tail, sizeof(tail));
            snprintf(errstr, errstr_size, "redis-server exited at start (status %d): %s",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1, tail);
            *exited = true;
            return -1;
        }
        char url[64], cerr[256];
        snprintf(url, sizeof(url), "redis://127.0.0.1:%d", p->port);
        rconn_endpoint_t *ep = rconn_endpoint_new(url, NULL, cerr, sizeof(cerr));
        rconn_t *c = ep ? rconn_connect(ep, 200, NULL, cerr, sizeof(cerr)) : NULL;
        if (c) {
            redisReply *r = rconn_command(c, "PING");
            /* PONG, or NOAUTH from a server started with --requirepass:
             * either way it serves commands (LOADING does not yet). */
            if (r && ((r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0) ||
                      (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0))) {
                freeReplyObject(r);
                rconn_free(c);
                rconn_endpoint_free(ep);
                return 0;
            }
            if (r && r->type == REDIS_REPLY_ERROR) snprintf(last, sizeof(last), "%s", r->str);
            if (r) freeReplyObject(r);
        } else {
            snprintf(last, sizeof(last), "%s", cerr);
        }
        rconn_free(c);
        rconn_endpoint_free(ep);
        if (clock_ms() > deadline) {
            snprintf(errstr, errstr_size, "redis-server on port %d not ready after %d ms: %s",
                     p->port, REDIS_PROC_READY_MS, last);
            return -1;
        }
        clock_sleep_ms(20);
    }
}

/* Kills and reaps the child, if any. */
static void kill_and_reap(redis_proc_t *p, int sig, int grace_ms) {
    if (p->pid <= 0) return;
    kill(p->pid, sig);
    kill(p->pid, SIGCONT); /* a stopped process acts on SIGTERM only once continued */
    int64_t deadline = clock_ms() + grace_ms;
    int status;
    while (!reap_if_exited(p, &status)) {
        if (clock_ms() > deadline) {
            kill(p->pid, SIGKILL);
            while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {
            }
            p->pid = -1;
            return;
        }
        clock_sleep_ms(5);
    }
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

redis_proc_t *redis_proc_start(const char *const *extra_args, char *errstr, size_t errstr_size) {
    redis_proc_t *p = xcalloc(1, sizeof(*p));
    p->pid = -1;
    if (find_exe(p->exe, sizeof(p->exe)) != 0) {
        snprintf(errstr, errstr_size,
                 "redis-server not found on PATH: run deploy/install-deps.sh");
        goto fail;
    }
    size_t nextra = 0;
    while (extra_args && extra_args[nextra]) nextra++;
    p->extra = xcalloc(nextra + 1, sizeof(*p->extra));
    for (size_t i = 0; i < nextra; i++) p->extra[i] = xstrdup(extra_args[i]);
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    int n = snprintf(p->dir, sizeof(p->dir), "%s/rapport-redis-XXXXXX", tmp);
    if (n < 0 || (size_t)n >= sizeof(p->dir) - 16) {
        snprintf(errstr, errstr_size, "TMPDIR is too long");
        p->dir[0] = '\0';
        goto fail;
    }
    if (!mkdtemp(p->dir)) {
        snprintf(errstr, errstr_size, "mkdtemp %s: %s", p->dir, strerror(errno));
        p->dir[0] = '\0';
        goto fail;
    }
    snprintf(p->log, sizeof(p->log), "%s/redis.log", p->dir);

    for (int attempt = 1;; attempt++) {
        p->port = pick_port(errstr, errstr_size);
        if (p->port < 0) goto fail;
        if (spawn(p, errstr, errstr_size) != 0) goto fail;
        bool exited;
        if (wait_ready(p, &exited, errstr, errstr_size) == 0) break;
        kill_and_reap(p, SIGKILL, 0);
        /* Only an early exit can be a lost race for the port; retry that. */
        if (!exited || attempt == REDIS_PROC_PORT_TRIES) goto fail;
    }
    snprintf(p->url, sizeof(p->url), "redis://127.0.0.1:%d", p->port);
    return p;

fail:
    redis_proc_stop(p);
    return NULL;
}

int redis_proc_port(const redis_proc_t *p) { return p->port; }
const char *redis_proc_url(const redis_proc_t *p) { return p->url; }
const char *redis_proc_dir(const redis_proc_t *p) { return p->dir; }
pid_t redis_proc_pid(const redis_proc_t *p) { return p->pid; }

int redis_proc_signal(redis_proc_t *p, int sig) {
    if (p->pid <= 0) return -1;
    if (sig == SIGKILL || sig == SIGTERM) {
        kill_and_reap(p, sig, REDIS_PROC_STOP_MS);
        return 0;
    }
    return kill(p->pid, sig) == 0 ? 0 : -1;
}

int redis_proc_restart(redis_proc_t *p, char *errstr, size_t errstr_size) {
    if (p->pid > 0) {
        snprintf(errstr, errstr_size, "redis-server is still running (pid %d)", (int)p->pid);
        return -1;
    }
    if (spawn(p, errstr, errstr_size) != 0) return -1;
    bool exited;
    if (wait_ready(p, &exited, errstr, errstr_size) != 0) {
        kill_and_reap(p, SIGKILL, 0);
        return -1;
    }
    return 0;
}

void redis_proc_stop(redis_proc_t *p) {
    if (!p) return;
    kill_and_reap(p, SIGTERM, REDIS_PROC_STOP_MS);
    if (p->dir[0]) nftw(p->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (p->extra) {
        for (size_t i = 0; p->extra[i]; i++) free(p->extra[i]);
        free(p->extra);
    }
    free(p);
}
