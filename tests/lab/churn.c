// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * churn: keep a kernel's process list and page tables changing while
 * drgn-p2p walks them live. Forks children that map, touch and unmap
 * anonymous and file-less shared memory (4 KiB pages and 2 MiB THP-sized
 * areas), fork grandchildren and exit at once, so processes and page
 * tables appear and disappear under the walk. Runs until killed, or for
 * argv[1] seconds.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void churn_memory(unsigned seed)
{
	for (int round = 0; round < 64; round++) {
		size_t len = (size_t)(1 + (rand_r(&seed) % 1024)) << 12;
		int shared = rand_r(&seed) & 1;
		char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			continue;
		for (size_t off = 0; off < len; off += 4096 * (1 + rand_r(&seed) % 8))
			p[off] = (char)off;
		if (rand_r(&seed) % 4 == 0)
			mprotect(p, len / 2, PROT_NONE);
		if (rand_r(&seed) % 4 == 0)
			madvise(p, len, MADV_DONTNEED);
		munmap(p, len);
	}
}

int main(int argc, char **argv)
{
	time_t until = argc > 1 ? time(NULL) + atol(argv[1]) : 0;
	unsigned seed = (unsigned)getpid();

	prctl(PR_SET_NAME, "churn");
	signal(SIGCHLD, SIG_DFL);
	while (!until || time(NULL) < until) {
		pid_t pid = fork();
		if (pid == 0) {
			prctl(PR_SET_NAME, "churn-child");
			if (fork() == 0) {
				churn_memory(seed ^ 0x5a5a);
				_exit(0);
			}
			churn_memory(seed);
			while (wait(NULL) > 0)
				;
			_exit(0);
		}
		if (pid > 0)
			while (waitpid(-1, NULL, WNOHANG) > 0)
				;
		churn_memory(seed++);
		/* keep at most a handful of children alive at once */
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	return 0;
}
