// SPDX-License-Identifier: GPL-2.0
/*
 * A process that changes itself when told, for tests that must see a change between two
 * snapshots: each line on stdin is "comm NAME" (prctl PR_SET_NAME) or "uid N" (setresuid(N, N,
 * N), as root); each is answered "done" (or "failed") on stdout. It prints "ready" first and
 * exits at the end of stdin.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(void)
{
	char line[256];

	setvbuf(stdout, NULL, _IOLBF, 0);
	puts("ready");
	while (fgets(line, sizeof(line), stdin)) {
		int ok = 0;

		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "comm ", 5))
			ok = prctl(PR_SET_NAME, line + 5, 0, 0, 0) == 0;
		else if (!strncmp(line, "uid ", 4)) {
			uid_t uid = (uid_t)strtoul(line + 4, NULL, 10);

			ok = setresuid(uid, uid, uid) == 0;
		}
		puts(ok ? "done" : "failed");
	}
	return 0;
}
