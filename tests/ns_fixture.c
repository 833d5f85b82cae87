// A test process for the namespace and thread views (tests/namespaces_test.ts).
//
//   ns_fixture TAG threads N   starts N threads, thread i named "ebpfmon-t<i>"
//   ns_fixture TAG listen      listens on TCP 127.0.0.1 (a port the kernel picks)
//
// Then prints "ready" and waits until its standard input closes, and exits. TAG only makes the
// process easy to find in /proc (its command line).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static pthread_barrier_t named;

static void *thread_main(void *arg) {
  char name[16];
  snprintf(name, sizeof name, "ebpfmon-t%ld", (long)arg);
  pthread_setname_np(pthread_self(), name);
  pthread_barrier_wait(&named);
  for (;;) pause();
  return NULL;
}

static int start_threads(long n) {
  pthread_barrier_init(&named, NULL, (unsigned)n + 1);
  for (long i = 0; i < n; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, (void *)i)) return -1;
  }
  pthread_barrier_wait(&named);
  return 0;
}

static int start_listener(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) || listen(fd, 4)) return -1;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int failed = strcmp(argv[2], "threads") == 0 ? start_threads(argc > 3 ? atol(argv[3]) : 0)
               : strcmp(argv[2], "listen") == 0 ? start_listener()
                                                : -1;
  if (failed) {
    perror("ns_fixture");
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  char buf[64];
  while (read(0, buf, sizeof buf) > 0) {
  }
  return 0;
}
