/*
 * A ReFlex v1 client in C, built the way the original clients frame requests:
 * a packed 24-byte header whose req_handle is a raw pointer to the client's
 * request record, lba in sectors, no HELLO, responses matched by handle in
 * whatever order they come. It serves two purposes:
 *
 *   v1client verify HOST PORT CONNS QD ROUNDS SPAN_SECTORS
 *       writes random data at random offsets, reads it back, compares;
 *       exits 0 only if every byte matched (and prints "verified N").
 *   v1client load HOST PORT CONNS QD SECONDS SPAN_SECTORS READ_PCT SECTORS [WARMUP]
 *       closed-loop load (WARMUP seconds first, not measured), prints one JSON line with IOPS and latency
 *       percentiles: a load generator independent of the Node code.
 *   v1client open HOST PORT CONNS MAXQD SECONDS SPAN_SECTORS READ_PCT SECTORS IOPS WARMUP
 *       open loop: Poisson arrivals at IOPS, latency measured from each
 *       request's intended send time (a request that waits for a free slot,
 *       or for this process to be scheduled, counts its wait), recorded
 *       after WARMUP seconds for SECONDS more. What an LC tenant's client
 *       sees, without the Node generator's timer granularity and GC pauses.
 *
 * One thread, epoll, blocking sockets (sends are batched per wake-up).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SECTOR 512
#define CMD_GET 0x00
#define CMD_SET 0x01

typedef struct __attribute__((__packed__)) {
  uint16_t magic;
  uint16_t opcode;
  void *req_handle;
  unsigned long lba;
  unsigned int lba_count;
} hdr_t;

struct conn;
typedef struct req {
  struct conn *c;
  int write;
  unsigned long lba;
  unsigned int count;
  uint64_t sent_ns;      /* open mode: the intended send time */
  unsigned char *expect; /* verify mode: what the sectors must hold */
  long rounds;           /* verify mode: write+read rounds completed */
} req_t;

typedef struct conn {
  int fd;
  unsigned char *out;
  size_t out_len, out_cap;
  unsigned char *in;
  size_t in_len, in_cap;
  req_t *reqs;
  int qd;
  req_t **free_slots; /* open mode: a stack of idle request records */
  int nfree;
} conn_t;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void die(const char *what) {
  perror(what);
  exit(2);
}

static void ensure(unsigned char **buf, size_t *cap, size_t need) {
  if (need <= *cap) return;
  size_t n = *cap ? *cap : 65536;
  while (n < need) n *= 2;
  *buf = realloc(*buf, n);
  if (!*buf) die("realloc");
  *cap = n;
}

static int open_mode; /* sent_ns is set by the caller (the intended time) */

static void queue_req(conn_t *c, req_t *r, int opcode, const unsigned char *data) {
  hdr_t h;
  h.magic = sizeof(hdr_t);
  h.opcode = opcode;
  h.req_handle = r;
  h.lba = r->lba;
  h.lba_count = r->count;
  size_t plen = opcode == CMD_SET ? (size_t)r->count * SECTOR : 0;
  ensure(&c->out, &c->out_cap, c->out_len + sizeof h + plen);
  memcpy(c->out + c->out_len, &h, sizeof h);
  c->out_len += sizeof h;
  if (plen) {
    memcpy(c->out + c->out_len, data, plen);
    c->out_len += plen;
  }
  if (!open_mode) r->sent_ns = now_ns();
}

static void flush_out(conn_t *c) {
  size_t off = 0;
  while (off < c->out_len) {
    ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN) continue; /* busy-wait: the client owns its core */
      die("send");
    }
    off += (size_t)n;
  }
  c->out_len = 0;
}

static int connect_to(const char *host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/* Latency histogram: 1 µs buckets up to 100 ms. */
#define HBUCKETS 100000
/* Reads what the socket has into the connection's input; 0 once the server closed it. */
static int recv_more(conn_t *c) {
  ensure(&c->in, &c->in_cap, c->in_len + (1 << 20));
  ssize_t got = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
  if (got <= 0) {
    fprintf(stderr, "server closed the connection\n");
    return 0;
  }
  c->in_len += (size_t)got;
  return 1;
}

/* The next whole reply at *off: its header in *h, its payload length in
 * *plen, and the request it answers. NULL with *bad 0 when the reply is not
 * all in yet; NULL with *bad 1 (and a message) when the stream is broken. */
static req_t *next_reply(conn_t *c, size_t off, hdr_t *h, size_t *plen, int *bad) {
  *bad = 0;
  if (c->in_len - off < sizeof(hdr_t)) return NULL;
  memcpy(h, c->in + off, sizeof *h);
  if (h->magic != sizeof(hdr_t)) {
    fprintf(stderr, "bad magic %u in response\n", h->magic);
    *bad = 1;
    return NULL;
  }
  *plen = h->opcode == CMD_GET ? (size_t)h->lba_count * SECTOR : 0;
  if (c->in_len - off < sizeof *h + *plen) return NULL;
  req_t *r = h->req_handle; /* the pointer we sent, back unchanged */
  if (r < c->reqs || r >= c->reqs + c->qd || h->lba != r->lba) {
    fprintf(stderr, "response with unknown handle %p\n", h->req_handle);
    *bad = 1;
    return NULL;
  }
  return r;
}

/* Drops the first `off` bytes of input (the replies handled). */
static void consume(conn_t *c, size_t off) {
  memmove(c->in, c->in + off, c->in_len - off);
  c->in_len -= off;
}

static uint64_t hist[HBUCKETS];
static uint64_t hcount;

static void record(uint64_t ns) {
  uint64_t us = ns / 1000;
  if (us >= HBUCKETS) us = HBUCKETS - 1;
  hist[us]++;
  hcount++;
}

static double pct(double p) {
  uint64_t want = (uint64_t)(p * hcount), seen = 0;
  for (int i = 0; i < HBUCKETS; i++) {
    seen += hist[i];
    if (seen > want) return i;
  }
  return HBUCKETS;
}

/* Uniform in (0, 1]: the argument of the exponential's log must not be 0. */
static double next_unit(void) { return ((next_rand() >> 11) + 1) * (1.0 / 9007199254740992.0); }

/* Sleeps in epoll until fd activity or `until_ns` (CLOCK_MONOTONIC), with
 * nanosecond resolution: epoll_wait's milliseconds would bunch the sends. */
static int wait_until(int ep, struct epoll_event *evs, int max, uint64_t until_ns) {
  uint64_t now = now_ns();
  struct timespec ts = {0, 0};
  if (until_ns > now) {
    uint64_t d = until_ns - now;
    ts.tv_sec = (time_t)(d / 1000000000ull);
    ts.tv_nsec = (long)(d % 1000000000ull);
  }
#ifdef SYS_epoll_pwait2
  int n = (int)syscall(SYS_epoll_pwait2, ep, evs, max, &ts, NULL, 0);
  if (n >= 0 || errno != ENOSYS) return n;
#endif
  /* Before Linux 5.11: millisecond resolution, rounded up. */
  return epoll_wait(ep, evs, max, (int)(ts.tv_sec * 1000 + (ts.tv_nsec + 999999) / 1000000));
}

static int run_open(const char *host, int port, int nconn, int qd, double seconds, unsigned long span,
                    int read_pct, unsigned int sectors, double iops, double warmup) {
  open_mode = 1;
  if (!(iops > 0) || span < sectors || sectors == 0) {
    fprintf(stderr, "v1client open: IOPS must be > 0 and SPAN at least SECTORS\n");
    return 2;
  }
  prctl(PR_SET_TIMERSLACK, 1000UL); /* 1 µs: sends on time, not 50 µs late */
  int ep = epoll_create1(0);
  conn_t *conns = calloc(nconn, sizeof(conn_t));
  unsigned char *wbuf = malloc((size_t)sectors * SECTOR);
  for (size_t i = 0; i < (size_t)sectors * SECTOR; i++) wbuf[i] = (unsigned char)next_rand();
  for (int i = 0; i < nconn; i++) {
    conn_t *c = &conns[i];
    c->fd = connect_to(host, port);
    c->qd = qd;
    c->reqs = calloc(qd, sizeof(req_t));
    c->free_slots = calloc(qd, sizeof(req_t *));
    for (int j = 0; j < qd; j++) {
      c->reqs[j].c = c;
      c->free_slots[c->nfree++] = &c->reqs[j];
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  }
  const double mean_ns = 1e9 / iops;
  uint64_t start = now_ns();
  uint64_t measure_from = start + (uint64_t)(warmup * 1e9);
  uint64_t stop = measure_from + (uint64_t)(seconds * 1e9);
  uint64_t give_up = stop + 10000000000ull; /* replies still missing 10 s after the end: lost */
  uint64_t next = start + (uint64_t)(-log(next_unit()) * mean_ns);
  long done = 0, errors = 0, outstanding = 0, late_slots = 0;
  int rr = 0;
  struct epoll_event evs[64];
  for (;;) {
    uint64_t now = now_ns();
    /* Send everything whose time has come, round-robin over connections. */
    while (next <= now && next < stop) {
      conn_t *c = 0;
      for (int k = 0; k < nconn && !c; k++) {
        conn_t *cand = &conns[(rr + k) % nconn];
        if (cand->nfree > 0) c = cand;
      }
      if (!c) { /* every slot busy: this arrival waits, its clock running */
        late_slots++; /* a pass that found every slot busy */
        break;
      }
      rr = (int)((c - conns) + 1) % nconn;
      req_t *r = c->free_slots[--c->nfree];
      r->count = sectors;
      r->lba = (next_rand() % (span / sectors)) * sectors;
      r->write = (int)(next_rand() % 100) >= read_pct;
      r->sent_ns = next;
      queue_req(c, r, r->write ? CMD_SET : CMD_GET, wbuf);
      outstanding++;
      next += (uint64_t)(-log(next_unit()) * mean_ns);
    }
    for (int i = 0; i < nconn; i++)
      if (conns[i].out_len) flush_out(&conns[i]);
    if (next >= stop && outstanding == 0) break;
    if (now > give_up) {
      fprintf(stderr, "v1client open: %ld replies missing 10 s after the end\n", outstanding);
      return 1;
    }
    int anyfree = 0;
    for (int i = 0; i < nconn && !anyfree; i++) anyfree = conns[i].nfree > 0;
    uint64_t until = next < stop && anyfree ? next : now + 1000000000ull;
    int n = wait_until(ep, evs, 64, until);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_pwait2");
    }
    for (int e = 0; e < n; e++) {
      conn_t *c = evs[e].data.ptr;
      if (!recv_more(c)) return 1;
      size_t off = 0;
      uint64_t t = now_ns();
      for (;;) {
        hdr_t h;
        size_t plen;
        int bad;
        req_t *r = next_reply(c, off, &h, &plen, &bad);
        if (bad) return 1;
        if (r == NULL) break;
        /* Errors count whenever they happen; latency and IOPS only for
         * successful requests intended inside the window. */
        if (h.opcode != CMD_GET && h.opcode != CMD_SET) errors++;
        else if (r->sent_ns >= measure_from) {
          record(t - r->sent_ns);
          done++;
        }
        off += sizeof h + plen;
        c->free_slots[c->nfree++] = r;
        outstanding--;
      }
      consume(c, off);
    }
  }
  printf("{\"iops\":%.0f,\"target_iops\":%.0f,\"seconds\":%.3f,\"requests\":%ld,\"errors\":%ld,\"slot_stalls\":%ld,"
         "\"p50_us\":%.0f,\"p95_us\":%.0f,\"p99_us\":%.0f}\n",
         done / seconds, iops, seconds, done, errors, late_slots, pct(0.5), pct(0.95), pct(0.99));
  return errors == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: v1client verify HOST PORT CONNS QD ROUNDS SPAN_SECTORS\n"
                    "       v1client load HOST PORT CONNS QD SECONDS SPAN_SECTORS READ_PCT SECTORS [WARMUP]\n"
                    "       v1client open HOST PORT CONNS MAXQD SECONDS SPAN_SECTORS READ_PCT SECTORS IOPS WARMUP\n");
    return 2;
  }
  if (strcmp(argv[1], "open") == 0) {
    if (argc < 12) {
      fprintf(stderr, "v1client open: needs IOPS and WARMUP\n");
      return 2;
    }
    rng ^= (uint64_t)getpid();
    return run_open(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atof(argv[6]), strtoul(argv[7], 0, 10),
                    atoi(argv[8]), (unsigned)atoi(argv[9]), atof(argv[10]), atof(argv[11]));
  }
  int verify = strcmp(argv[1], "verify") == 0;
  const char *host = argv[2];
  int port = atoi(argv[3]), nconn = atoi(argv[4]), qd = atoi(argv[5]);
  long limit = atol(argv[6]);
  unsigned long span = strtoul(argv[7], 0, 10);
  int read_pct = argc > 8 ? atoi(argv[8]) : 100;
  unsigned int sectors = argc > 9 ? (unsigned)atoi(argv[9]) : 8;
  double warm = argc > 10 ? atof(argv[10]) : 0; /* load mode: seconds not measured first */
  rng ^= (uint64_t)getpid();

  /* Verify mode: each request slot owns a disjoint region, so concurrent
   * requests never race on the same sectors and every read has one answer. */
  unsigned int vmax = 16;
  int ep = epoll_create1(0);
  conn_t *conns = calloc(nconn, sizeof(conn_t));
  unsigned char *wbuf = malloc((size_t)vmax * SECTOR * 4 + sectors * SECTOR);
  for (size_t i = 0; i < (size_t)vmax * SECTOR * 4 + sectors * SECTOR; i++) wbuf[i] = (unsigned char)next_rand();
  for (int i = 0; i < nconn; i++) {
    conn_t *c = &conns[i];
    c->fd = connect_to(host, port);
    c->qd = qd;
    c->reqs = calloc(qd, sizeof(req_t));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    for (int j = 0; j < qd; j++) {
      req_t *r = &c->reqs[j];
      r->c = c;
      unsigned long slot = (unsigned long)i * qd + j;
      if (verify) {
        r->expect = calloc(vmax, SECTOR);
        r->lba = slot * vmax;
        if (r->lba + vmax > span) {
          fprintf(stderr, "span too small for %d x %d slots\n", nconn, qd);
          return 2;
        }
        r->count = 1 + next_rand() % vmax;
        r->write = 1;
        memcpy(r->expect, wbuf + next_rand() % (vmax * SECTOR * 3), r->count * SECTOR);
        queue_req(c, r, CMD_SET, r->expect);
      } else {
        r->count = sectors;
        r->lba = (next_rand() % (span / sectors)) * sectors;
        r->write = (int)(next_rand() % 100) >= read_pct;
        queue_req(c, r, r->write ? CMD_SET : CMD_GET, wbuf);
      }
    }
    flush_out(c);
  }

  uint64_t start = now_ns(), deadline = start + (uint64_t)((limit + warm) * 1e9);
  uint64_t measure_from = start + (uint64_t)(warm * 1e9);
  long done = 0, verified = 0, mismatches = 0, errors = 0;
  long outstanding = (long)nconn * qd;
  struct epoll_event evs[64];
  while (outstanding > 0) {
    int n = epoll_wait(ep, evs, 64, 1000);
    if (n < 0) die("epoll_wait");
    for (int e = 0; e < n; e++) {
      conn_t *c = evs[e].data.ptr;
      if (!recv_more(c)) return 1;
      size_t off = 0;
      for (;;) {
        hdr_t h;
        size_t plen;
        int bad;
        req_t *r = next_reply(c, off, &h, &plen, &bad);
        if (bad) return 1;
        if (r == NULL) break;
        uint64_t t = now_ns();
        if (r->sent_ns >= measure_from) {
          record(t - r->sent_ns);
          done++;
        }
        if (h.opcode != CMD_GET && h.opcode != CMD_SET) errors++;
        if (verify) {
          if (h.opcode == CMD_GET) {
            if (h.lba_count != r->count || memcmp(c->in + off + sizeof h, r->expect, plen) != 0) mismatches++;
            else verified++;
          }
        }
        off += sizeof h + plen;
        if (verify && !r->write) r->rounds++;
        int again = verify ? r->rounds < limit : t < deadline;
        if (!again) {
          outstanding--;
          continue;
        }
        if (verify) {
          if (r->write) { /* written: now read it back */
            r->write = 0;
            queue_req(c, r, CMD_GET, 0);
          } else { /* verified: write something new, another size */
            r->write = 1;
            r->count = 1 + next_rand() % vmax;
            memcpy(r->expect, wbuf + next_rand() % (vmax * SECTOR * 3), r->count * SECTOR);
            queue_req(c, r, CMD_SET, r->expect);
          }
        } else {
          r->lba = (next_rand() % (span / sectors)) * sectors;
          r->write = (int)(next_rand() % 100) >= read_pct;
          queue_req(c, r, r->write ? CMD_SET : CMD_GET, wbuf);
        }
      }
      consume(c, off);
      flush_out(c);
    }
  }
  double secs = (now_ns() - (verify ? start : measure_from)) / 1e9;
  if (verify) {
    printf("verified %ld mismatches %ld errors %ld\n", verified, mismatches, errors);
    return mismatches == 0 && errors == 0 && verified > 0 ? 0 : 1;
  }
  printf("{\"iops\":%.0f,\"seconds\":%.3f,\"requests\":%ld,\"errors\":%ld,\"p50_us\":%.0f,\"p95_us\":%.0f,\"p99_us\":%.0f}\n",
         done / secs, secs, done, errors, pct(0.5), pct(0.95), pct(0.99));
  return errors == 0 ? 0 : 1;
}
