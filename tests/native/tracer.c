// ebpfmon-tracer PID: attaches to every thread of PID with PTRACE_SEIZE (which does not stop
// them), prints "traced N" and waits until its standard input closes; exiting detaches.
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PID\n", argv[0]);
    return 2;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/%s/task", argv[1]);
  DIR *dir = opendir(path);
  if (!dir) {
    perror(path);
    return 1;
  }
  int traced = 0;
  for (struct dirent *e; (e = readdir(dir));) {
    long tid = strtol(e->d_name, NULL, 10);
    if (tid <= 0) continue;
    if (ptrace(PTRACE_SEIZE, (pid_t)tid, NULL, NULL) != 0) {
      perror("ptrace(PTRACE_SEIZE)");
      return 1;
    }
    traced++;
  }
  closedir(dir);
  printf("traced %d\n", traced);
  fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  return 0;
}
