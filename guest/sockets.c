// ebpfmon-sockets: holds TCP and UDP sockets of both address families in the test guest,
// listening, bound and connected, and other kinds of open files, for the guest test's ground
// truth (tests/guest_test.ts compares `ss` and `lsof` with the guest's /proc).
//
//   ebpfmon-sockets PORT
//
// On the loopback addresses:
//
//   PORT    TCP 127.0.0.1, listening, and a connection to it (both ends held)
//   PORT+1  TCP ::1, listening, and a connection to it
//   PORT+2  TCP :: (IPv4 too), listening, and an IPv4 connection to it (the accepted end is
//           IPv6 with v4-mapped addresses)
//   PORT+3  UDP 127.0.0.1, bound, and a UDP socket connected to it
//   PORT+4  UDP ::1, bound, and a UDP socket connected to it
//
// and a file it created in /tmp and unlinked (readlink says "(deleted)") and both ends of a
// pipe. Once all of it is set up it forks: the parent prints the child's pid and exits 0 (1,
// with the reason on stderr, when something failed); the child holds it all, its stdio on
// /dev/null, until killed.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void fail(const char *what) {
  perror(what);
  exit(1);
}

// Fills `sa` with `address`:`port` of `family` and returns its length.
static socklen_t address(int family, const char *text, int port, struct sockaddr_storage *sa) {
  memset(sa, 0, sizeof *sa);
  if (family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)sa;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    if (inet_pton(AF_INET, text, &in->sin_addr) != 1) fail(text);
    return sizeof *in;
  }
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  if (inet_pton(AF_INET6, text, &in6->sin6_addr) != 1) fail(text);
  return sizeof *in6;
}

// A socket of `family` and `type` bound to `text`:`port` (IPv6 only unless `text` is "::").
static int bound(int family, int type, const char *text, int port) {
  int fd = socket(family, type, 0);
  if (fd < 0) fail("socket");
  int on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0) fail("SO_REUSEADDR");
  int v6only = strcmp(text, "::") != 0;
  if (family == AF_INET6 &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0) {
    fail("IPV6_V6ONLY");
  }
  struct sockaddr_storage sa;
  socklen_t len = address(family, text, port, &sa);
  if (bind(fd, (struct sockaddr *)&sa, len) < 0) fail("bind");
  return fd;
}

// A new socket of `family` and `type` connected to `text`:`port`.
static int connected(int family, int type, const char *text, int port) {
  int fd = socket(family, type, 0);
  if (fd < 0) fail("socket");
  struct sockaddr_storage sa;
  socklen_t len = address(family, text, port, &sa);
  if (connect(fd, (struct sockaddr *)&sa, len) < 0) fail("connect");
  return fd;
}

// A TCP listener on `text`:`port`, a connection to it from a socket of `client_family` (to
// `client`:`port`), and its accepted end.
static void tcp(int family, const char *text, int port, int client_family, const char *client) {
  int listener = bound(family, SOCK_STREAM, text, port);
  if (listen(listener, 4) < 0) fail("listen");
  connected(client_family, SOCK_STREAM, client, port);
  if (accept(listener, NULL, NULL) < 0) fail("accept");
}

int main(int argc, char **argv) {
  if (argc != 2 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535 - 4) {
    fprintf(stderr, "usage: ebpfmon-sockets PORT\n");
    return 2;
  }
  int port = atoi(argv[1]);
  tcp(AF_INET, "127.0.0.1", port, AF_INET, "127.0.0.1");
  tcp(AF_INET6, "::1", port + 1, AF_INET6, "::1");
  tcp(AF_INET6, "::", port + 2, AF_INET, "127.0.0.1");
  bound(AF_INET, SOCK_DGRAM, "127.0.0.1", port + 3);
  connected(AF_INET, SOCK_DGRAM, "127.0.0.1", port + 3);
  bound(AF_INET6, SOCK_DGRAM, "::1", port + 4);
  connected(AF_INET6, SOCK_DGRAM, "::1", port + 4);
  char path[] = "/tmp/ebpfmon-sockets.XXXXXX";
  int file = mkstemp(path);
  if (file < 0 || unlink(path) < 0) fail(path);
  int pipes[2];
  if (pipe(pipes) < 0) fail("pipe");
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) fail("fork");
  if (child > 0) {
    printf("%d\n", child);
    return 0;
  }
  int null = open("/dev/null", O_RDWR);
  if (null < 0) return 1;
  for (int fd = 0; fd < 3; fd++) dup2(null, fd);
  close(null);
  for (;;) pause();
}
