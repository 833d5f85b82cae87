// ebpfmon-dirty: the test guest's memory-dirtying workload for live-migration runs.
//
//   ebpfmon-dirty MIB RATE_MB_S STATUS_FILE
//
// Rewrites a region of MIB MiB page by page, pass after pass, at most RATE_MB_S MB/s (0: as fast
// as it can). Every page of pass N holds a pattern of its index and N, and before a page is
// rewritten its old contents are checked against pass N-1: a page a migration lost or copied
// stale shows as an error. About once a second it writes its counters to STATUS_FILE (a
// temporary file renamed over it):
//
//   passes=N pages=P errors=E written_mb=W elapsed_s=S final=0|1 first_error=page:expected:found
//
// On SIGTERM it stops at a page boundary, checks every word of the whole region against the
// pass each page must hold, writes the final counters (final=1) and exits 0.

#define _GNU_SOURCE
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define WORDS (PAGE / 8)
// Words checked per page before it is rewritten: one in each 512 bytes.
#define PROBES 8

static volatile sig_atomic_t stop;

static void on_term(int sig) {
  (void)sig;
  stop = 1;
}

static uint64_t pattern(uint64_t page, uint64_t pass) {
  return (page << 32) ^ pass ^ 0x9e3779b97f4a7c15ull;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

struct counters {
  uint64_t passes, errors;
  double written_mb, started;
  char first[96];
};

static void error_at(struct counters *c, uint64_t page, uint64_t want, uint64_t got) {
  if (c->errors++ == 0) {
    snprintf(c->first, sizeof c->first, "%" PRIu64 ":%016" PRIx64 ":%016" PRIx64, page, want, got);
  }
}

static void report(const char *path, const struct counters *c, uint64_t pages, int final) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return;
  FILE *f = fopen(tmp, "w");
  if (!f) return;
  fprintf(f,
          "passes=%" PRIu64 " pages=%" PRIu64 " errors=%" PRIu64
          " written_mb=%.1f elapsed_s=%.3f final=%d first_error=%s\n",
          c->passes, pages, c->errors, c->written_mb, now() - c->started, final,
          c->errors ? c->first : "-");
  fclose(f);
  rename(tmp, path);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MIB RATE_MB_S STATUS_FILE\n", argv[0]);
    return 2;
  }
  char *end;
  unsigned long mib = strtoul(argv[1], &end, 10);
  if (*end || mib == 0 || mib > 65536) {
    fprintf(stderr, "ebpfmon-dirty: MIB must be 1-65536, not \"%s\"\n", argv[1]);
    return 2;
  }
  double rate = strtod(argv[2], &end);
  if (*end || !(rate >= 0) || rate > 1e6) {
    fprintf(stderr, "ebpfmon-dirty: RATE_MB_S must be 0-1000000, not \"%s\"\n", argv[2]);
    return 2;
  }
  const char *status = argv[3];
  uint64_t pages = (uint64_t)mib * (1 << 20) / PAGE;
  uint64_t *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (mem == MAP_FAILED) {
    perror("ebpfmon-dirty: mmap");
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);

  struct counters c = {.started = now()};
  for (uint64_t p = 0; p < pages; p++) {
    for (int w = 0; w < WORDS; w++) mem[p * WORDS + w] = pattern(p, 0);
  }
  double last_report = 0;
  uint64_t pass = 1, page = 0;
  while (!stop) {
    uint64_t *at = mem + page * WORDS;
    for (int i = 0; i < PROBES; i++) {
      uint64_t got = at[i * (WORDS / PROBES)], want = pattern(page, pass - 1);
      if (got != want) error_at(&c, page, want, got);
    }
    uint64_t value = pattern(page, pass);
    for (int w = 0; w < WORDS; w++) at[w] = value;
    c.written_mb += PAGE / 1e6;
    if (++page == pages) {
      page = 0;
      c.passes = pass++;
    }
    if ((page & 255) == 0) {
      double t = now();
      if (rate > 0) {
        double ahead = c.written_mb / rate - (t - c.started);
        if (ahead > 0) {
          struct timespec d = {(time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9)};
          nanosleep(&d, NULL);
        }
      }
      if (t - last_report >= 1) {
        report(status, &c, pages, 0);
        last_report = t;
      }
    }
  }
  // Pages before the cursor hold this pass, the others the one before.
  for (uint64_t p = 0; p < pages; p++) {
    uint64_t want = pattern(p, p < page ? pass : pass - 1);
    for (int w = 0; w < WORDS; w++) {
      if (mem[p * WORDS + w] != want) {
        error_at(&c, p, want, mem[p * WORDS + w]);
        break;
      }
    }
  }
  report(status, &c, pages, 1);
  return 0;
}
