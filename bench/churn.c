// A churning workload for the hold benchmark: processes that fork and exit all the time.
//
// Usage: churn RATE MAX. It waits for "go" on standard input (so that it can be moved into a
// cgroup first), then forks RATE workers a second while fewer than MAX processes of its own are
// alive. Each worker (named "bench-churn") forks one child of the same name and exits after up to
// 200 ms; the child, reparented to this process (a child subreaper), exits after up to 400 ms. So
// the process tree changes at every level: parents exit under their children, which move.
//
// "count" on standard input prints "forks N": the processes it and its workers forked so far
// (two per worker). A pause (the workload frozen) is not made up for: the
// rate is kept from the moment it runs again. When standard input closes it kills every process
// it has, reaps them, and exits.
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nap_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void worker(unsigned seed) {
  prctl(PR_SET_NAME, "bench-churn");
  pid_t child = fork();
  if (child == 0) {
    prctl(PR_SET_NAME, "bench-churn");
    nap_ms(rand_r(&seed) % 400);
    _exit(0);
  }
  nap_ms(rand_r(&seed) % 200);
  _exit(child < 0 ? 1 : 0);
}

/** Reads one command if there is one; returns 0 when standard input closed. */
static int command(long forks, int wait_ms) {
  struct pollfd in = {0, POLLIN, 0};
  if (poll(&in, 1, wait_ms) <= 0) return 1;
  char line[64];
  if (!fgets(line, sizeof line, stdin)) return 0;
  if (strncmp(line, "count", 5) == 0) {
    printf("forks %ld\n", forks);
    fflush(stdout);
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: churn RATE MAX\n");
    return 2;
  }
  double rate = atof(argv[1]);
  long max = atol(argv[2]);
  char line[64];
  setvbuf(stdin, NULL, _IONBF, 0);
  if (!fgets(line, sizeof line, stdin) || strncmp(line, "go", 2) != 0) return 0;
  setpgid(0, 0);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  printf("going\n");
  fflush(stdout);
  long alive = 0, forks = 0, started = 0;
  double base = now();
  unsigned seed = (unsigned)getpid();
  for (;;) {
    // Reap what exited; a worker's own child counts when the worker is reaped.
    pid_t pid;
    while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) alive--;
    double t = now();
    double due = (t - base) * rate;
    // Frozen, or starved of CPU: do not catch up with a burst.
    if (due - started > rate * 0.01 + 1) {
      base = t - started / rate;
      due = started;
    }
    if (started < due && alive + 2 <= max) {
      pid = fork();
      if (pid == 0) worker(seed + (unsigned)started);
      if (pid > 0) {
        started++;
        alive += 2;
        forks += 2;
      }
      if (!command(forks, 0)) break;
      continue;
    }
    if (!command(forks, 1)) break;
  }
  // Everything left in its process group is its own (workers, reparented children).
  signal(SIGTERM, SIG_IGN);
  kill(0, SIGTERM);
  while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
  }
  return 0;
}
