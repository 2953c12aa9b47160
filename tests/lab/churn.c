// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * churn: keep a kernel's process list and page tables changing while
 * drgn-p2p walks them live. Forks children that map, touch and unmap
 * anonymous and file-less shared memory (4 KiB pages and 2 MiB THP-sized
 * areas), fork grandchildren and exit at once, so processes and page
 * tables appear and disappear under the walk. Runs until killed, or for
 * argv[1] seconds.
 *
 * One more child ("churn-migrate") keeps pages moving under the walk:
 * a MADV_HUGEPAGE area is faulted as a THP, split (mprotect of one 4 KiB
 * page, or MADV_DONTNEED of one) and collapsed again (MADV_COLLAPSE);
 * move_pages(2) and migrate_pages(2) move it between NUMA nodes (with one
 * node they still run, but the kernel leaves pages where they are); and,
 * when /dev/hmm_dmirror0 exists (test_hmm), an anonymous buffer migrates
 * to the device-private memory and back, by HMM_DMIRROR_MIGRATE_TO_SYS or
 * by a CPU fault, in turn.
 *
 * With argv[2], SIGTERM (or the end of argv[1] seconds) writes "name value"
 * lines to that file: what the migrator did (collapses, pages move_pages
 * reported moved to another node, migrate_pages calls, pages migrated to
 * and from the device) and how /proc/vmstat's THP and migration counters
 * moved since the start.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_HUGEPAGE
#define MADV_HUGEPAGE 14
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#define MPOL_MF_MOVE (1 << 1)

/* test_hmm's user-space ABI (lib/test_hmm_uapi.h), as in the lab's holder.c. */
struct hmm_dmirror_cmd {
	uint64_t addr, ptr, npages, cpages, faults;
};
#define HMM_DMIRROR_MIGRATE_TO_DEV _IOWR('H', 0x02, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_MIGRATE_TO_SYS _IOWR('H', 0x03, struct hmm_dmirror_cmd)

#define PAGE 4096UL
#define HPAGE (2UL << 20)
#define HMM_PAGES 64

/* Shared by every process (mapped before the first fork). */
struct counters {
	unsigned long rounds, collapses, moved_pages, migrate_pages_calls,
		hmm_to_dev, hmm_to_sys, hmm_cpu_faults;
};
static struct counters *ctr;
static const char *stats_path;
static const char *const vmstat_names[] = {
	"thp_fault_alloc", "thp_split_pmd", "thp_collapse_alloc",
	"pgmigrate_success",
};
#define NVMSTAT (sizeof(vmstat_names) / sizeof(vmstat_names[0]))
static long vmstat_start[NVMSTAT];

static void add(unsigned long *c, unsigned long n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/* Only open/read/close: also called from the SIGTERM handler. */
static void read_vmstat(long *out)
{
	static char buf[16384];
	int fd = open("/proc/vmstat", O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	for (size_t i = 0; i < NVMSTAT; i++) {
		size_t len = strlen(vmstat_names[i]);
		char *p = buf;

		out[i] = -1;
		while ((p = strstr(p, vmstat_names[i]))) {
			if ((p == buf || p[-1] == '\n') && p[len] == ' ') {
				out[i] = atol(p + len + 1);
				break;
			}
			p += len;
		}
	}
}

static void write_stats(void)
{
	char text[1024];
	long now[NVMSTAT];
	int len, fd;

	if (!stats_path || !ctr)
		return;
	read_vmstat(now);
	len = snprintf(text, sizeof(text),
		       "rounds %lu\ncollapses %lu\nmoved_pages %lu\n"
		       "migrate_pages_calls %lu\nhmm_to_dev %lu\nhmm_to_sys %lu\n"
		       "hmm_cpu_faults %lu\n",
		       ctr->rounds, ctr->collapses, ctr->moved_pages,
		       ctr->migrate_pages_calls, ctr->hmm_to_dev, ctr->hmm_to_sys,
		       ctr->hmm_cpu_faults);
	for (size_t i = 0; i < NVMSTAT && len < (int)sizeof(text); i++)
		len += snprintf(text + len, sizeof(text) - len, "vmstat_%s %ld\n",
				vmstat_names[i], now[i] - vmstat_start[i]);
	fd = open(stats_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		ssize_t w = write(fd, text, len);

		(void)w;
		close(fd);
	}
}

static void on_sigterm(int sig)
{
	(void)sig;
	write_stats();
	_exit(0);
}

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

/* A 2 MiB-aligned, 2 MiB area of anonymous memory, or NULL. */
static char *thp_area(void)
{
	char *raw = mmap(NULL, 2 * HPAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *p;

	if (raw == MAP_FAILED)
		return NULL;
	p = (char *)(((uintptr_t)raw + HPAGE - 1) & ~(HPAGE - 1));
	if (p > raw)
		munmap(raw, p - raw);
	munmap(p + HPAGE, raw + 2 * HPAGE - (p + HPAGE));
	madvise(p, HPAGE, MADV_HUGEPAGE);
	return p;
}

static void touch(char *p, size_t len, char v)
{
	for (size_t off = 0; off < len; off += PAGE)
		p[off] = v;
}

/* Move every page of [p, p+len) to the other node (or node 0 when there is
 * one): returns how many the kernel reports moved off the node they were on. */
static unsigned long move_to_other_node(char *p, size_t len, int nodes)
{
	enum { MAX = HPAGE / PAGE };
	void *pages[MAX];
	int before[MAX], target[MAX], status[MAX];
	unsigned long n = len / PAGE, moved = 0;

	for (unsigned long i = 0; i < n; i++)
		pages[i] = p + i * PAGE;
	if (syscall(SYS_move_pages, 0, n, pages, NULL, before, 0))
		return 0;
	for (unsigned long i = 0; i < n; i++)
		target[i] = nodes > 1 && before[i] == 0 ? 1 : 0;
	if (syscall(SYS_move_pages, 0, n, pages, target, status, MPOL_MF_MOVE) < 0) {
		/* ENOENT/EINVAL and friends: nothing to move, or no such node */
		return 0;
	}
	for (unsigned long i = 0; i < n; i++)
		moved += before[i] >= 0 && status[i] >= 0 && status[i] != before[i];
	return moved;
}

static int hmm_migrate(int fd, unsigned long request, char *p, char *bounce)
{
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)p, .ptr = (uintptr_t)bounce, .npages = HMM_PAGES,
	};

	if (ioctl(fd, request, &cmd))
		return 0;
	return (int)cmd.cpages;
}

static void migrate_forever(void)
{
	int nodes = access("/sys/devices/system/node/node1", F_OK) == 0 ? 2 : 1;
	int hmm = open("/dev/hmm_dmirror0", O_RDWR);
	char *hbuf = NULL, *bounce = NULL;
	struct timespec pause = { 0, 20 * 1000 * 1000 }, rest = { 0, 100 * 1000 * 1000 };

	prctl(PR_SET_NAME, "churn-migrate");
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(0);
	if (hmm >= 0) {
		hbuf = mmap(NULL, HMM_PAGES * PAGE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		bounce = mmap(NULL, HMM_PAGES * PAGE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (hbuf == MAP_FAILED || bounce == MAP_FAILED) {
			close(hmm);
			hmm = -1;
		}
	}
	for (unsigned long round = 0;; round++) {
		char *p = thp_area();

		if (p) {
			/* fault a THP, split its PMD, collapse it again */
			touch(p, HPAGE, (char)round);
			if (round & 1)
				mprotect(p + PAGE, PAGE, PROT_READ);
			else
				madvise(p + PAGE, PAGE, MADV_DONTNEED);
			nanosleep(&pause, NULL);
			mprotect(p + PAGE, PAGE, PROT_READ | PROT_WRITE);
			if (madvise(p, HPAGE, MADV_COLLAPSE) == 0)
				add(&ctr->collapses, 1);
			/* else EINVAL (no MADV_COLLAPSE), EAGAIN (busy): go on */
			/* and move it, split or huge, to the other node */
			add(&ctr->moved_pages, move_to_other_node(p, HPAGE, nodes));
			if (nodes > 1) {
				unsigned long from = 1UL << (round & 1), to = 1UL << !(round & 1);

				if (syscall(SYS_migrate_pages, 0, 8 * sizeof(long), &from, &to) >= 0)
					add(&ctr->migrate_pages_calls, 1);
			}
			munmap(p, HPAGE);
		}
		if (hmm >= 0) {
			/* to the device, held there most of the round (so that the
			 * audits meet its device-private entries), then back */
			touch(hbuf, HMM_PAGES * PAGE, (char)round);
			add(&ctr->hmm_to_dev, hmm_migrate(hmm, HMM_DMIRROR_MIGRATE_TO_DEV, hbuf, bounce));
			nanosleep(&rest, NULL);
			if (round & 1) {
				add(&ctr->hmm_to_sys, hmm_migrate(hmm, HMM_DMIRROR_MIGRATE_TO_SYS, hbuf, bounce));
			} else {
				touch(hbuf, HMM_PAGES * PAGE, (char)~round);
				add(&ctr->hmm_cpu_faults, 1);
			}
		}
		add(&ctr->rounds, 1);
		/* a few rounds a second are enough; leave the CPU to the audit */
		nanosleep(hmm >= 0 ? &pause : &rest, NULL);
	}
}

int main(int argc, char **argv)
{
	time_t until = argc > 1 ? time(NULL) + atol(argv[1]) : 0;
	unsigned seed = (unsigned)getpid();
	pid_t migrator;

	prctl(PR_SET_NAME, "churn");
	signal(SIGCHLD, SIG_DFL);
	stats_path = argc > 2 ? argv[2] : NULL;
	ctr = mmap(NULL, sizeof(*ctr), PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ctr == MAP_FAILED)
		ctr = NULL;
	read_vmstat(vmstat_start);
	signal(SIGTERM, on_sigterm);
	migrator = ctr ? fork() : -1;
	if (migrator == 0) {
		signal(SIGTERM, SIG_DFL);
		migrate_forever();
	}
	while (!until || time(NULL) < until) {
		pid_t pid = fork();
		if (pid == 0) {
			signal(SIGTERM, SIG_DFL);
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
	if (migrator > 0)
		kill(migrator, SIGKILL);
	write_stats();
	return 0;
}
