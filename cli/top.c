/*
 * top.c — `rapport top`: a live terminal view of what rapport has written
 * to Redis, for an operator.  It reads Redis only (any rapport instance's
 * output, wherever it runs) and writes nothing:
 *
 *   - per partition: the watermark (event time), the next offset, and two
 *     rates measured between frames: messages per second (the movement of
 *     <prefix>_offsets: every message rapport has written to Redis,
 *     whether scored, late or dead-lettered) and event time per second
 *     (the movement of the watermark: how fast the scores' clock runs);
 *   - the lowest connection indexes (ZRANGE <prefix>scores) with their
 *     hash fields (at_risk, streak, contacts, ai_share);
 *   - the newest alerts (XREVRANGE <prefix>alerts) with reason and
 *     narrative.
 *
 * Refreshed every second; `q` or Ctrl-C quits.  On a terminal it puts the
 * keyboard in non-canonical mode (termios) and draws on the alternate
 * screen, and restores both on the way out.  --once prints one frame and
 * exits (for scripts and tests; rates need two frames and show "-").
 *
 * One thread; a signal handler only sets a flag.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/view.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/redact.h"
#include "common/redis_conn.h"

#define TOP_MAX_PARTITIONS 4096

static volatile sig_atomic_t top_stop;

static void on_signal(int sig) {
    (void)sig;
    top_stop = 1;
}

typedef struct top_opts {
    const char *url;
    char url_shown[512];    /* url with its password as *** */
    rconn_tls_conf_t tls;
    const char *prefix;
    bool once;
    int scores;             /* rows of lowest scores */
    int alerts;             /* newest alerts shown */
} top_opts_t;

/* One partition as Redis shows it, at one moment. */
typedef struct part_sample {
    char field[256];        /* <topic>:<partition> */
    int64_t watermark;      /* -1: none yet */
    int64_t offset;         /* next offset in <prefix>_offsets; -1: none */
} part_sample_t;

typedef struct sample {
    part_sample_t *p;
    size_t n;
    double at;              /* monotonic seconds */
} sample_t;

/* ---- Text ------------------------------------------------------------- */

/* "3600x" style speed of event time against the wall clock. */
static const char *fmt_speed(double x, char *buf, size_t size) {
    if (x < 0) return "-";
    if (x >= 100)
        snprintf(buf, size, "%.0fx", x);
    else
        snprintf(buf, size, "%.2fx", x);
    return buf;
}

/* ---- Redis ------------------------------------------------------------ */

static int64_t reply_i64(const redisReply *r) {
    if (r && r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (r && r->type == REDIS_REPLY_STRING) return strtoll(r->str, NULL, 10);
    return -1;
}

static int cmp_part(const void *a, const void *b) {
    const part_sample_t *x = a, *y = b;
    /* topic first, then the partition number as a number */
    const char *cx = strrchr(x->field, ':'), *cy = strrchr(y->field, ':');
    size_t tx = cx ? (size_t)(cx - x->field) : strlen(x->field);
    size_t ty = cy ? (size_t)(cy - y->field) : strlen(y->field);
    int r = strncmp(x->field, y->field, tx < ty ? tx : ty);
    if (r || tx != ty) return r ? r : (tx < ty ? -1 : 1);
    long px = cx ? strtol(cx + 1, NULL, 10) : 0, py = cy ? strtol(cy + 1, NULL, 10) : 0;
    return (px > py) - (px < py);
}

static part_sample_t *sample_find(sample_t *s, const char *field) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->p[i].field, field)) return &s->p[i];
    return NULL;
}

/* Reads <prefix>watermarks and <prefix>_offsets into s (replacing it). */
static int sample_read(rconn_t *c, const char *prefix, sample_t *s, char *errstr,
                       size_t errstr_size) {
    redisReply *w = rconn_command_ok(c, errstr, errstr_size, "HGETALL %swatermarks", prefix);
    if (!w) return -1;
    redisReply *o = rconn_command_ok(c, errstr, errstr_size, "HGETALL %s_offsets", prefix);
    if (!o) {
        freeReplyObject(w);
        return -1;
    }
    s->n = 0;
    s->at = clock_s();
    const redisReply *lists[2] = {w, o};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i + 1 < lists[k]->elements && s->n < TOP_MAX_PARTITIONS; i += 2) {
            const char *field = lists[k]->element[i]->str;
            if (!field) continue;
            part_sample_t *p = sample_find(s, field);
            if (!p) {
                p = &s->p[s->n++];
                snprintf(p->field, sizeof(p->field), "%s", field);
                p->watermark = p->offset = -1;
            }
            int64_t v = reply_i64(lists[k]->element[i + 1]);
            if (k == 0)
                p->watermark = v;
            else
                p->offset = v;
        }
    }
    qsort(s->p, s->n, sizeof(*s->p), cmp_part);
    freeReplyObject(w);
    freeReplyObject(o);
    return 0;
}

/* ---- Frame ------------------------------------------------------------ */

static void draw_partitions(FILE *f, const sample_t *cur, sample_t *prev) {
    char t[32], b1[32], b2[32];
    fprintf(f, "%-22s %-20s %12s %10s %12s\n", "partition", "watermark (UTC)", "next offset",
            "msgs/s", "event time/s");
    if (cur->n == 0) fprintf(f, "  (no partition written yet)\n");
    double dt = prev->n ? cur->at - prev->at : 0;
    for (size_t i = 0; i < cur->n; i++) {
        const part_sample_t *p = &cur->p[i];
        const part_sample_t *q = dt > 0.2 ? sample_find(prev, p->field) : NULL;
        double rate = -1, speed = -1;
        if (q && q->offset >= 0 && p->offset >= q->offset) rate = (double)(p->offset - q->offset) / dt;
        if (q && q->watermark >= 0 && p->watermark >= q->watermark)
            speed = (double)(p->watermark - q->watermark) / 1000.0 / dt;
        view_cell(f, p->field, strlen(p->field), 22);
        fprintf(f, " %-20s %12" PRId64 " ", view_time(p->watermark, t, sizeof(t)), p->offset);
        if (rate >= 0)
            snprintf(b1, sizeof(b1), "%.1f", rate);
        else
            snprintf(b1, sizeof(b1), "-");
        fprintf(f, "%10s %12s\n", b1, fmt_speed(speed, b2, sizeof(b2)));
    }
}

static int draw_alerts(FILE *f, rconn_t *c, const top_opts_t *o, int cols, char *errstr,
                       size_t errstr_size) {
    redisReply *x = rconn_command_ok(c, errstr, errstr_size, "XREVRANGE %salerts + - COUNT %d",
                                 o->prefix, o->alerts);
    if (!x) return -1;
    fprintf(f, "newest alerts (event time, UTC)\n");
    for (size_t i = 0; i < x->elements; i++) view_alert(f, x->element[i], cols);
    if (x->elements == 0) fprintf(f, "  (no alerts yet)\n");
    freeReplyObject(x);
    return 0;
}

/* Draws one frame into f.  Returns 0, or -1 with errstr when Redis fails. */
static int draw_frame(FILE *f, rconn_t *c, const top_opts_t *o, sample_t *prev,
                      sample_t *cur, int cols, char *errstr, size_t errstr_size) {
    if (sample_read(c, o->prefix, cur, errstr, errstr_size) != 0) return -1;
    redisReply *zc = rconn_command_ok(c, errstr, errstr_size, "ZCARD %sscores", o->prefix);
    if (!zc) return -1;
    redisReply *xl = rconn_command_ok(c, errstr, errstr_size, "XLEN %salerts", o->prefix);
    if (!xl) {
        freeReplyObject(zc);
        return -1;
    }
    char now[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    fprintf(f, "rapport top  %s  prefix %s  %s UTC%s\n", o->url_shown, o->prefix,
            view_time((int64_t)ts.tv_sec * 1000, now, sizeof(now)), o->once ? "" : "   (q quits)");
    fprintf(f, "customers scored %lld   alerts in stream %lld\n\n", zc->integer, xl->integer);
    freeReplyObject(zc);
    freeReplyObject(xl);
    draw_partitions(f, cur, prev);
    fputc('\n', f);
    if (view_lowest(f, c, o->prefix, o->scores, errstr, errstr_size) != 0) return -1;
    fputc('\n', f);
    return draw_alerts(f, c, o, cols, errstr, errstr_size);
}

/* ---- Terminal --------------------------------------------------------- */

typedef struct term {
    bool tty_out;           /* stdout is a terminal: redraw in place */
    bool raw;               /* stdin's termios changed; `saved` restores it */
    struct termios saved;
} term_t;

static void term_open(term_t *t) {
    t->tty_out = isatty(STDOUT_FILENO);
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &t->saved) == 0) {
        struct termios r = t->saved;
        r.c_lflag &= (tcflag_t) ~(ICANON | ECHO); /* keys one by one, not echoed; ISIG kept */
        r.c_cc[VMIN] = 0;
        r.c_cc[VTIME] = 0;
        t->raw = tcsetattr(STDIN_FILENO, TCSANOW, &r) == 0;
    }
    if (t->tty_out) fputs("\033[?1049h\033[?25l", stdout); /* alternate screen, no cursor */
    fflush(stdout);
}

static void term_close(term_t *t) {
    if (t->tty_out) fputs("\033[?25h\033[?1049l", stdout);
    fflush(stdout);
    if (t->raw) tcsetattr(STDIN_FILENO, TCSANOW, &t->saved);
    t->raw = false;
}

static void term_size(const term_t *t, int *cols, int *rows) {
    struct winsize ws;
    *cols = 120;
    *rows = 0; /* no limit */
    if (t->tty_out && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) {
        *cols = ws.ws_col;
        *rows = ws.ws_row;
    }
}

/* Shows a frame: on a terminal, in place and cut to the screen's height;
 * elsewhere, appended. */
static void term_show(const term_t *t, const char *text, int rows) {
    if (!t->tty_out) {
        fputs(text, stdout);
        fflush(stdout);
        return;
    }
    fputs("\033[H", stdout);
    int line = 0;
    for (const char *p = text; *p && (rows == 0 || line < rows - 1); line++) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        fwrite(p, 1, n, stdout);
        fputs("\033[K\n", stdout);
        p += n + (nl ? 1 : 0);
    }
    fputs("\033[J", stdout);
    fflush(stdout);
}

/* Waits up to ms for a key; true when it asks to quit. */
static bool term_wait_quit(const term_t *t, int ms) {
    struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
    if (!t->raw) {
        poll(NULL, 0, ms);
        return false;
    }
    if (poll(&pfd, 1, ms) <= 0) return false;
    char buf[32];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == 'q' || buf[i] == 'Q' || buf[i] == 3) return true;
    return false;
}

/* ---- Command ---------------------------------------------------------- */

static void top_usage(FILE *out) {
    fprintf(out,
            "usage: rapport top [-r REDIS_URL] [--prefix PREFIX] [--scores N] [--alerts N] "
            "[--once]\n\n"
            "A live view of what rapport writes to Redis, refreshed every second; q or\n"
            "Ctrl-C quits.  Reads Redis only.\n\n"
            "  -r REDIS_URL    redis://[[user]:password@]host[:port][/db], rediss://... (TLS)\n"
            "                  or unix:///path.sock (default $RAPPORT_REDIS_URL, else\n"
            "                  redis://127.0.0.1:6379)\n"
            "  --tls-ca-file F, --tls-cert-file F, --tls-key-file F, --tls-server-name N\n"
            "                  rediss:// settings, as redis_tls_* of rapport run\n"
            "  --prefix P      key prefix (default rapport:)\n"
            "  --scores N      lowest scores shown (default 10)\n"
            "  --alerts N      newest alerts shown (default 6)\n"
            "  --once          print one frame and exit (rates need two frames: shown as -)\n\n"
            "msgs/s: messages per second written to Redis per partition (scored, late\n"
            "and dead-lettered), from <prefix>_offsets.  event time/s: how many seconds\n"
            "of event time the partition's watermark advanced per second.\n");
}

static int parse_count(const char *s, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end || v < 1 || v > 1000) return -1;
    *out = (int)v;
    return 0;
}

int cmd_top(int argc, char **argv) {
    static const struct option longopts[] = {
        {"prefix", required_argument, NULL, 'p'}, {"scores", required_argument, NULL, 's'},
        {"alerts", required_argument, NULL, 'a'}, {"once", no_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},         {"tls-ca-file", required_argument, NULL, 'C'},
        {"tls-cert-file", required_argument, NULL, 'E'},
        {"tls-key-file", required_argument, NULL, 'K'},
        {"tls-server-name", required_argument, NULL, 'N'},
        {0, 0, 0, 0}};
    top_opts_t o = {.url = "redis://127.0.0.1:6379", .prefix = "rapport:", .scores = 10,
                    .alerts = 6};
    const char *env_url = getenv("RAPPORT_REDIS_URL"); /* keeps a password off the command line */
    if (env_url && *env_url) o.url = env_url;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "r:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'r': o.url = optarg; break;
        case 'C': o.tls.ca_file = optarg; break;
        case 'E': o.tls.cert_file = optarg; break;
        case 'K': o.tls.key_file = optarg; break;
        case 'N': o.tls.server_name = optarg; break;
        case 'p': o.prefix = optarg; break;
        case 'o': o.once = true; break;
        case 's':
        case 'a':
            if (parse_count(optarg, opt == 's' ? &o.scores : &o.alerts) != 0) {
                fprintf(stderr, "rapport top: --%s: \"%s\" is not a number in 1..1000\n",
                        opt == 's' ? "scores" : "alerts", optarg);
                return 2;
            }
            break;
        case 'h': top_usage(stdout); return 0;
        default: top_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rapport top: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    char err[512];
    redact_url(o.url, o.url_shown, sizeof(o.url_shown));
    rconn_endpoint_t *ep = rconn_endpoint_new(o.url, &o.tls, err, sizeof(err));
    if (!ep) {
        fprintf(stderr, "rapport top: %s\n", err);
        return 2;
    }

    sample_t a = {0}, b = {0};
    a.p = xcalloc(TOP_MAX_PARTITIONS, sizeof(*a.p));
    b.p = xcalloc(TOP_MAX_PARTITIONS, sizeof(*b.p));
    char *text = NULL;
    size_t text_len = 0;
    rconn_t *c = NULL;
    int rc = 0;
    if (o.once) {
        FILE *f = open_memstream(&text, &text_len);
        c = f ? view_connect(ep, err, sizeof(err)) : NULL;
        int ok = c && draw_frame(f, c, &o, &b, &a, 120, err, sizeof(err)) == 0;
        if (f) fclose(f);
        if (!ok) {
            fprintf(stderr, "rapport top: redis %s: %s\n", o.url_shown,
                    f ? err : "out of memory");
            rc = 1;
            goto out;
        }
        fputs(text, stdout);
        goto out;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    term_t term = {0};
    term_open(&term);
    sample_t *cur = &a, *prev = &b;
    while (!top_stop) {
        int cols, rows;
        term_size(&term, &cols, &rows);
        FILE *f = open_memstream(&text, &text_len);
        if (!f) break;
        if (!c) c = view_connect(ep, err, sizeof(err));
        if (!c || draw_frame(f, c, &o, prev, cur, cols, err, sizeof(err)) != 0) {
            fclose(f);
            free(text);
            f = open_memstream(&text, &text_len);
            if (!f) break;
            fprintf(f, "rapport top  %s\n\nredis: %s\nretrying every second (q quits)\n", o.url_shown,
                    err);
            if (c) rconn_free(c);
            c = NULL;
            prev->n = 0;
        } else {
            sample_t *t = prev; /* this frame's sample is the next one's previous */
            prev = cur;
            cur = t;
        }
        fclose(f);
        if (!term.tty_out) fputs("\n", stdout);
        term_show(&term, text, rows);
        free(text);
        text = NULL;
        if (term_wait_quit(&term, 1000)) break;
    }
    term_close(&term);
out:
    free(text);
    rconn_free(c);
    rconn_endpoint_free(ep);
    free(a.p);
    free(b.p);
    return rc;
}
