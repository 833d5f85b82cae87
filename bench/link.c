// The benchmark's emulated network link, on loopback (the kernels here have no netem).
//
//   link relay HOLD_US TARGET_PORT   forwards 127.0.0.1:PORT <-> 127.0.0.1:TARGET_PORT, holding
//                                    every chunk HOLD_US microseconds in each direction
//   link serve                       the far end of a probe: answers each 8-byte request N
//                                    (little-endian) with N bytes
//   link probe PORT PINGS BULK N     PINGS one-byte round trips, then N answers of BULK bytes
//                                    (after one more to warm up); prints the microseconds each
//                                    took as {"rttUs":[...],"bulkUs":[...]} on stdout
//
// `relay` and `serve` print "listening PORT" once ready and exit when their standard input
// closes, so they never outlive the benchmark that started them.
//
// The relay is one epoll loop: a chunk is read as soon as it arrives, stamped with the time it is
// due (arrival + hold) and written once due, in order, when a timerfd armed at the earliest due
// time fires. Reading never waits for writing: the hold adds latency, not per-chunk serialisation.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_BYTES (256 * 1024)
// A direction stops reading while this much waits to be written (its reader is slow).
#define MAX_QUEUED (16 * 1024 * 1024)
#define MAX_PAIRS 64
// Waking from a timer takes this VM ~100 us: the relay sleeps until this long before the next
// chunk is due, then polls (yielding the CPU to anything runnable) until it is.
#define SPIN_NS 200000u
#define TAG_LISTEN (~0ull)
#define TAG_TIMER (~0ull - 1)
#define TAG_STDIN (~0ull - 2)

static void die(const char *what) {
  fprintf(stderr, "link: %s: %s\n", what, strerror(errno));
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void no_delay(int fd) {
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) die("TCP_NODELAY");
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

static int listen_loopback(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = loopback(0);
  socklen_t len = sizeof addr;
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 64) < 0 ||
      getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
    die("listen");
  printf("listening %d\n", ntohs(addr.sin_port));
  fflush(stdout);
  return fd;
}

static int connect_loopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in addr = loopback(port);
  if (fd < 0) die("socket");
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    close(fd);
    return -1;
  }
  no_delay(fd);
  return fd;
}

// ---- relay ----

struct chunk {
  struct chunk *next;
  uint64_t due;
  size_t len, off; // len 0: the sender closed its side
  char data[];
};

// One direction of a relayed connection: bytes read from `from`, held, written to `to`.
struct flow {
  int from, to;
  struct chunk *head, *tail;
  size_t queued;
  int eof;     // `from` closed: nothing more to read
  int blocked; // `to` is full: waiting for EPOLLOUT
};

// A relayed connection; flow[0] goes client -> target, flow[1] target -> client.
struct pair {
  int used;
  int fd[2]; // client, target
  struct flow flow[2];
};

static int epfd, timer;
static uint64_t hold_ns;
static struct pair pairs[MAX_PAIRS];

// Side s of pair i reads flow[s] and receives flow[1 - s].
static void watch(int i, int s, int op) {
  struct pair *p = &pairs[i];
  struct epoll_event ev = {.events = 0, .data.u64 = (uint64_t)i << 1 | (uint64_t)s};
  if (!p->flow[s].eof && p->flow[s].queued < MAX_QUEUED) ev.events |= EPOLLIN;
  if (p->flow[1 - s].blocked) ev.events |= EPOLLOUT;
  if (epoll_ctl(epfd, op, p->fd[s], &ev) < 0) die("epoll_ctl");
}

static void drop(int i) {
  struct pair *p = &pairs[i];
  for (int s = 0; s < 2; s++) {
    for (struct chunk *c = p->flow[s].head, *next; c; c = next) {
      next = c->next;
      free(c);
    }
    close(p->fd[s]);
  }
  memset(p, 0, sizeof *p);
}

static void accept_pair(int listener, int target_port) {
  int client = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (client < 0) return;
  int target = connect_loopback(target_port);
  int i = 0;
  while (i < MAX_PAIRS && pairs[i].used) i++;
  if (target < 0 || i == MAX_PAIRS) {
    fprintf(stderr, "link: cannot relay a connection: %s\n",
            target < 0 ? "the target refused it" : "too many connections");
    close(client);
    if (target >= 0) close(target);
    return;
  }
  no_delay(client);
  if (fcntl(target, F_SETFL, O_NONBLOCK) < 0) die("fcntl");
  struct pair *p = &pairs[i];
  *p = (struct pair){.used = 1, .fd = {client, target}};
  p->flow[0].from = p->flow[1].to = client;
  p->flow[0].to = p->flow[1].from = target;
  watch(i, 0, EPOLL_CTL_ADD);
  watch(i, 1, EPOLL_CTL_ADD);
}

// Reads what `from` has now into one held chunk. Returns -1 when the pair must be dropped.
static int take(struct flow *f) {
  struct chunk *c = malloc(sizeof *c + CHUNK_BYTES);
  if (!c) die("malloc");
  ssize_t n = read(f->from, c->data, CHUNK_BYTES);
  if (n < 0) {
    free(c);
    return errno == EAGAIN || errno == EINTR ? 0 : -1;
  }
  if (n == 0) f->eof = 1;
  c->next = NULL;
  c->due = now_ns() + hold_ns;
  c->len = (size_t)n;
  c->off = 0;
  if (f->tail) f->tail->next = c;
  else f->head = c;
  f->tail = c;
  f->queued += (size_t)n;
  return 0;
}

// Writes the chunks that are due. Returns -1 when the pair must be dropped.
static int give(struct flow *f, uint64_t now) {
  f->blocked = 0;
  while (f->head && f->head->due <= now) {
    struct chunk *c = f->head;
    if (c->len == 0) {
      shutdown(f->to, SHUT_WR);
    } else {
      while (c->off < c->len) {
        ssize_t n = write(f->to, c->data + c->off, c->len - c->off);
        if (n < 0 && errno == EAGAIN) {
          f->blocked = 1;
          return 0;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        c->off += (size_t)n;
        f->queued -= (size_t)n;
      }
    }
    f->head = c->next;
    if (!f->head) f->tail = NULL;
    free(c);
  }
  return 0;
}

// Arms the timer SPIN_NS before the earliest chunk is due. Returns 1 when that moment has come:
// the loop then polls until the chunk is due.
static int arm_timer(void) {
  uint64_t next = 0;
  for (int i = 0; i < MAX_PAIRS; i++) {
    for (int s = 0; pairs[i].used && s < 2; s++) {
      struct flow *f = &pairs[i].flow[s];
      if (f->head && !f->blocked && (next == 0 || f->head->due < next)) next = f->head->due;
    }
  }
  int poll = next != 0 && next <= now_ns() + SPIN_NS;
  uint64_t at_ns = next == 0 || poll ? 0 : next - SPIN_NS; // 0 disarms
  struct itimerspec at = {.it_value = {(time_t)(at_ns / 1000000000u), (long)(at_ns % 1000000000u)}};
  if (timerfd_settime(timer, TFD_TIMER_ABSTIME, &at, NULL) < 0) die("timerfd_settime");
  return poll;
}

static void relay(uint64_t hold_us, int target_port) {
  hold_ns = hold_us * 1000u;
  epfd = epoll_create1(EPOLL_CLOEXEC);
  timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (epfd < 0 || timer < 0) die("epoll_create1/timerfd_create");
  int listener = listen_loopback();
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev) < 0) die("epoll_ctl");
  ev.data.u64 = TAG_TIMER;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, timer, &ev) < 0) die("epoll_ctl");
  ev.data.u64 = TAG_STDIN;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) < 0) die("epoll_ctl");
  struct epoll_event events[64];
  for (int poll = 0;; poll = arm_timer()) {
    if (poll) sched_yield();
    int n = epoll_wait(epfd, events, 64, poll ? 0 : -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("epoll_wait");
    for (int k = 0; k < n; k++) {
      uint64_t tag = events[k].data.u64;
      if (tag == TAG_LISTEN) {
        accept_pair(listener, target_port);
      } else if (tag == TAG_TIMER) {
        uint64_t expirations;
        (void)!read(timer, &expirations, sizeof expirations);
      } else if (tag == TAG_STDIN) {
        char buf[64];
        if (read(0, buf, sizeof buf) <= 0) exit(0);
      } else {
        int i = (int)(tag >> 1), s = (int)(tag & 1);
        if (pairs[i].used && (events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
            !pairs[i].flow[s].eof && take(&pairs[i].flow[s]) < 0)
          drop(i);
      }
    }
    uint64_t now = now_ns();
    for (int i = 0; i < MAX_PAIRS; i++) {
      struct pair *p = &pairs[i];
      if (!p->used) continue;
      if (give(&p->flow[0], now) < 0 || give(&p->flow[1], now) < 0) {
        drop(i);
        continue;
      }
      if (p->flow[0].eof && p->flow[1].eof && !p->flow[0].head && !p->flow[1].head) {
        drop(i);
        continue;
      }
      watch(i, 0, EPOLL_CTL_MOD);
      watch(i, 1, EPOLL_CTL_MOD);
    }
  }
}

// ---- probe endpoint and probe ----

static int read_full(int fd, void *buf, size_t len) {
  for (size_t got = 0; got < len;) {
    ssize_t n = read(fd, (char *)buf + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t len) {
  for (size_t sent = 0; sent < len;) {
    ssize_t n = write(fd, (const char *)buf + sent, len - sent);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    sent += (size_t)n;
  }
  return 0;
}

static char bulk[CHUNK_BYTES];

static void serve(void) {
  int listener = listen_loopback();
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev) < 0) die("epoll");
  ev.data.u64 = TAG_STDIN;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) < 0) die("epoll_ctl");
  for (;;) {
    if (epoll_wait(epfd, &ev, 1, -1) < 1) continue;
    if (ev.data.u64 == TAG_STDIN) {
      char buf[64];
      if (read(0, buf, sizeof buf) <= 0) exit(0);
      continue;
    }
    // One probe at a time: probes run one after another.
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) continue;
    no_delay(fd);
    uint64_t want;
    while (read_full(fd, &want, sizeof want) == 0) {
      for (uint64_t left = want; left > 0;) {
        size_t n = left < sizeof bulk ? (size_t)left : sizeof bulk;
        if (write_full(fd, bulk, n) < 0) break;
        left -= n;
      }
    }
    close(fd);
  }
}

static uint64_t ask(int fd, uint64_t bytes) {
  uint64_t start = now_ns();
  if (write_full(fd, &bytes, sizeof bytes) < 0) die("probe write");
  for (uint64_t left = bytes; left > 0;) {
    ssize_t n = read(fd, bulk, left < sizeof bulk ? (size_t)left : sizeof bulk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("probe read");
    left -= (uint64_t)n;
  }
  return now_ns() - start;
}

static void probe(int port, int pings, uint64_t bulk_bytes, int bulks) {
  int fd = connect_loopback(port);
  if (fd < 0) die("probe connect");
  for (int i = 0; i < 20; i++) ask(fd, 1);
  printf("{\"rttUs\":[");
  for (int i = 0; i < pings; i++) printf("%s%.1f", i ? "," : "", (double)ask(fd, 1) / 1e3);
  ask(fd, bulk_bytes); // warm-up: TCP windows grow
  printf("],\"bulkUs\":[");
  for (int i = 0; i < bulks; i++) printf("%s%.1f", i ? "," : "", (double)ask(fd, bulk_bytes) / 1e3);
  printf("]}\n");
  close(fd);
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  signal(SIGPIPE, SIG_IGN); // a peer that went away is an EPIPE to handle, not a reason to die
  if (argc == 4 && strcmp(argv[1], "relay") == 0) {
    relay(strtoull(argv[2], NULL, 10), atoi(argv[3]));
  } else if (argc == 2 && strcmp(argv[1], "serve") == 0) {
    serve();
  } else if (argc == 6 && strcmp(argv[1], "probe") == 0) {
    probe(atoi(argv[2]), atoi(argv[3]), strtoull(argv[4], NULL, 10), atoi(argv[5]));
  } else {
    fprintf(stderr, "usage: link relay HOLD_US TARGET_PORT | link serve | "
                    "link probe PORT PINGS BULK_BYTES BULKS\n");
    return 2;
  }
  return 0;
}
