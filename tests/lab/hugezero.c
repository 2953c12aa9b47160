// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Maps the huge zero page when told to: reserves a 2 MiB-aligned anonymous
 * range with MADV_HUGEPAGE, waits until the file GO exists, then reads one
 * byte of it (a read fault of a THP-enabled anonymous range maps the huge
 * zero folio by a PMD, allocating the folio if no process holds it), writes
 * the range's address to the file DONE and waits to be killed.
 *
 * usage: hugezero GO DONE
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE (2UL << 20)

int main(int argc, char **argv)
{
	char tmp[4096];
	char *p, *range;
	FILE *f;

	if (argc != 3) {
		fprintf(stderr, "usage: hugezero GO DONE\n");
		return 2;
	}
	p = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	range = (char *)(((uintptr_t)p + HUGE - 1) & ~(HUGE - 1));
	if (madvise(range, HUGE, MADV_HUGEPAGE)) {
		perror("madvise");
		return 1;
	}
	while (access(argv[1], F_OK))
		usleep(10000);
	if (*(volatile char *)range != 0)
		return 1;
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[2]);
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%#lx\n", (unsigned long)range) < 0 || fclose(f) || rename(tmp, argv[2])) {
		perror(argv[2]);
		return 1;
	}
	for (;;)
		pause();
}
