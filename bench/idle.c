// Idle processes for the benchmark: the guest's process list grows by as many as asked.
//
// Reads one number per line on standard input and keeps that many children alive, forking or
// killing (and reaping) the difference, then prints "ready N". Each child is named "bench-idle"
// and sleeps in pause() until killed. When standard input closes (the benchmark ended, however it
// ended) every child is killed and reaped before this process exits.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t *children;
static long count, capacity;

static void resize(long want) {
  if (want > capacity) {
    pid_t *more = realloc(children, (size_t)want * sizeof *children);
    if (!more) {
      printf("error out of memory for %ld processes\n", want);
      fflush(stdout);
      return;
    }
    children = more;
    capacity = want;
  }
  while (count < want) {
    pid_t pid = fork();
    if (pid < 0) {
      printf("error fork after %ld processes: %s\n", count, strerror(errno));
      fflush(stdout);
      return;
    }
    if (pid == 0) {
      int null = open("/dev/null", O_RDWR);
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
      prctl(PR_SET_NAME, "bench-idle");
      for (;;) pause();
    }
    children[count++] = pid;
  }
  while (count > want) {
    pid_t pid = children[--count];
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  printf("ready %ld\n", count);
  fflush(stdout);
}

int main(void) {
  char line[64];
  while (fgets(line, sizeof line, stdin)) resize(strtol(line, NULL, 10));
  for (long i = 0; i < count; i++) kill(children[i], SIGKILL);
  for (long i = 0; i < count; i++) waitpid(children[i], NULL, 0);
  return 0;
}
