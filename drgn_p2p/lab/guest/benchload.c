// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * benchload: the synthetic load of the benchmark (scripts/bench).  Create one
 * populated mapping (or a swarm of small processes), record it, and hold it
 * until killed.
 *
 *   benchload OUTFILE NAME MODE SIZE_MIB
 *
 * Modes:
 *   4k      anonymous memory, MADV_NOHUGEPAGE, every page written (4 KiB PTEs)
 *   thp     anonymous memory at a 2 MiB-aligned address, MADV_HUGEPAGE,
 *           every page written (PMD leaves where the kernel gives THPs)
 *   sparse  anonymous memory, MADV_NOHUGEPAGE, one page in 512 written (one
 *           present PTE per PTE table)
 *   small   fork SIZE_MIB children (a count, not MiB here), each writing
 *           64 KiB of its own anonymous memory
 *
 * When everything is populated it writes "NAME PID 0xADDR LEN" lines (one per
 * process; LEN in bytes) to OUTFILE.tmp and renames it to OUTFILE, then
 * pause()s.  Children of "small" die with the parent (PR_SET_PDEATHSIG).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#define MiB (1UL << 20)
#define PAGE 4096UL
#define PMD_SIZE (2 * MiB)

static const char *name = "?";

static void die(const char *what)
{
	fprintf(stderr, "benchload %s: %s: %s\n", name, what, strerror(errno));
	exit(1);
}

/* @len bytes of anonymous memory at a @align-aligned address, with @advice. */
static char *anon(size_t len, size_t align, int advice)
{
	char *p = mmap(NULL, len + align, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uintptr_t a;

	if (p == MAP_FAILED)
		die("mmap");
	a = align ? (((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1)) : (uintptr_t)p;
	/* Trim the alignment slack so the VMA is exactly [a, a + len). */
	if (a > (uintptr_t)p && munmap(p, a - (uintptr_t)p))
		die("munmap head");
	if (align && munmap((char *)a + len, (uintptr_t)p + align - a))
		die("munmap tail");
	if (madvise((void *)a, len, advice))
		die("madvise");
	return (char *)a;
}

static void touch(char *p, size_t len, size_t stride)
{
	for (size_t off = 0; off < len; off += stride)
		p[off] = 1;
}

static void publish(const char *outfile, const char *lines)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", outfile);
	f = fopen(tmp, "w");
	if (!f || fputs(lines, f) < 0 || fclose(f) || rename(tmp, outfile))
		die("writing the record");
}

int main(int argc, char **argv)
{
	static char lines[1 << 20];	/* 10,000+ "NAME PID 0x0 LEN" lines */
	size_t used = 0, size;
	const char *mode;
	char *p;

	if (argc != 5) {
		fprintf(stderr, "usage: benchload OUTFILE NAME MODE SIZE_MIB\n");
		return 2;
	}
	name = argv[2];
	mode = argv[3];
	size = strtoull(argv[4], NULL, 0);

	if (!strcmp(mode, "small")) {
		int ready[2];
		char c;

		if (pipe(ready))
			die("pipe");
		for (size_t i = 0; i < size; i++) {
			pid_t pid = fork();

			if (pid < 0)
				die("fork");
			if (pid == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				p = anon(64 * 1024, 0, MADV_NOHUGEPAGE);
				touch(p, 64 * 1024, PAGE);
				if (write(ready[1], "", 1) != 1)
					die("write");
				for (;;)
					pause();
			}
			used += snprintf(lines + used, sizeof(lines) - used,
					 "%s %d 0x0 %lu\n", name, (int)pid, 64 * 1024UL);
			if (used >= sizeof(lines)) {
				errno = E2BIG;
				die("too many processes for the record");
			}
		}
		/* Publish only once every child holds its memory. */
		for (size_t i = 0; i < size; i++)
			if (read(ready[0], &c, 1) != 1)
				die("read");
	} else {
		size_t len = size * MiB;

		if (!strcmp(mode, "4k")) {
			p = anon(len, 0, MADV_NOHUGEPAGE);
			touch(p, len, PAGE);
		} else if (!strcmp(mode, "thp")) {
			p = anon(len, PMD_SIZE, MADV_HUGEPAGE);
			touch(p, len, PAGE);
		} else if (!strcmp(mode, "sparse")) {
			p = anon(len, PMD_SIZE, MADV_NOHUGEPAGE);
			touch(p, len, PMD_SIZE);
		} else {
			errno = EINVAL;
			die(mode);
		}
		used += snprintf(lines + used, sizeof(lines) - used, "%s %d %p %zu\n",
				 name, (int)getpid(), (void *)p, len);
	}
	publish(argv[1], lines);
	for (;;)
		pause();
}
