// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * violate_holder - map every case of /dev/p2p_violate and hold the mappings.
 *
 *   violate_holder MANIFEST [DEVICE [HMM_DEVICE]]
 *
 * For each case (p2p_violate.h) it mmaps the device at offset
 * "case * page size", touches every page of the cases marked for it so the
 * fault-time cases fault in, and writes one manifest line:
 *
 *   <case> <pid> <addr hex> <len>          a held mapping
 *   <case> <pid> skip <reason...>          a case this kernel cannot build
 *
 * With HMM_DEVICE (test_hmm's /dev/hmm_dmirrorN) it also holds the legitimate
 * device-exclusive entries test_hmm makes (HMM_DMIRROR_EXCLUSIVE on four
 * pages of private anonymous memory), as the case "hmm-exclusive".
 *
 * The manifest appears complete (written to MANIFEST.tmp, then renamed).
 * Then it waits. On SIGTERM, SIGINT or SIGHUP it asks the module to put
 * every mapping back into a shape the kernel can tear down
 * (P2PV_IOC_RESTORE) and exits 0. SIGKILL skips that step: the guest may
 * then print "Bad page map" at teardown, or worse.
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
#include <unistd.h>

#include "p2p_violate.h"

struct holder_case {
	unsigned int pgoff;
	const char *name;
	unsigned long len;
	int huge;
	int touch;
};

#define HOLDER_CASE(e, n, name, len, huge, touch) { n, name, len, huge, touch },
static const struct holder_case cases[] = { P2PV_CASES(HOLDER_CASE) };
#undef HOLDER_CASE

/* test_hmm's ioctl (lib/test_hmm_uapi.h), declared here so no kernel header is needed. */
struct hmm_dmirror_cmd {
	uint64_t addr;
	uint64_t ptr;
	uint64_t npages;
	uint64_t cpages;
	uint64_t faults;
};
#define HMM_DMIRROR_EXCLUSIVE _IOWR('H', 0x05, struct hmm_dmirror_cmd)

/* The length of the hmm-exclusive case: four pages. */
#define HMM_EXCLUSIVE_PAGES 4

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static const char *skip_reason(int err)
{
	switch (err) {
	case EOPNOTSUPP:
		return "not expressible on this kernel (EOPNOTSUPP)";
	case ENODEV:
		return "no memmap-less PFN range found (ENODEV; load with bar_phys= bar_size=)";
	default:
		return strerror(err);
	}
}

/* A free, len-aligned address range of len bytes (reserve twice as much, keep the aligned middle). */
static void *aligned_hint(unsigned long len)
{
	uintptr_t base, aligned;
	void *p = mmap(NULL, 2 * len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	base = (uintptr_t)p;
	aligned = (base + len - 1) & ~(uintptr_t)(len - 1);
	munmap(p, 2 * len);
	return (void *)aligned;
}

/*
 * The running kernel's PMD size (the THP size it reports): a PMD case maps
 * one PMD leaf, P2PV_HUGE_LEN with 4 KiB pages, 32 MiB with 16 KiB.
 */
static unsigned long pmd_size(void)
{
	unsigned long size = 0;
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", "r");

	if (f) {
		if (fscanf(f, "%lu", &size) != 1)
			size = 0;
		fclose(f);
	}
	return size ? size : P2PV_HUGE_LEN;
}

/* The length of case *c* on the running kernel. */
static unsigned long case_len(const struct holder_case *c)
{
	return c->huge ? pmd_size() : c->len;
}

static void *map_case(int fd, const struct holder_case *c, long page)
{
	void *hint = NULL;
	int flags = MAP_SHARED;

	if (c->huge) {
		hint = aligned_hint(case_len(c));
		if (!hint)
			return MAP_FAILED;
		flags |= MAP_FIXED_NOREPLACE;
	}
	return mmap(hint, case_len(c), PROT_READ | PROT_WRITE, flags, fd, (off_t)c->pgoff * page);
}

/*
 * Make four pages of private anonymous memory device-exclusive through
 * test_hmm and write the manifest line. The device stays open (its mirror
 * holds the entries) until the holder exits.
 */
static void hold_hmm_exclusive(FILE *out, const char *hmm_device, long page)
{
	size_t len = HMM_EXCLUSIVE_PAGES * page;
	struct hmm_dmirror_cmd cmd;
	unsigned char *p, *bounce;
	size_t off;
	int fd;

	fd = open(hmm_device, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(out, "hmm-exclusive %d skip open %s: %s\n", (int)getpid(), hmm_device, strerror(errno));
		return;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bounce = malloc(len);
	if (p == MAP_FAILED || !bounce) {
		fprintf(out, "hmm-exclusive %d skip out of memory\n", (int)getpid());
		return;
	}
	madvise(p, len, MADV_NOHUGEPAGE);
	for (off = 0; off < len; off += page)
		p[off] = (unsigned char)(off / page + 1);
	memset(&cmd, 0, sizeof(cmd));
	cmd.addr = (uintptr_t)p;
	cmd.ptr = (uintptr_t)bounce;
	cmd.npages = HMM_EXCLUSIVE_PAGES;
	if (ioctl(fd, HMM_DMIRROR_EXCLUSIVE, &cmd) < 0) {
		fprintf(out, "hmm-exclusive %d skip HMM_DMIRROR_EXCLUSIVE: %s\n", (int)getpid(), strerror(errno));
		return;
	}
	/* From here on the CPU must not touch p: that would restore the entries. */
	fprintf(out, "hmm-exclusive %d 0x%lx %zu\n", (int)getpid(), (unsigned long)(uintptr_t)p, len);
}

int main(int argc, char **argv)
{
	const char *device = argc > 2 ? argv[2] : "/dev/p2p_violate";
	const char *hmm_device = argc > 3 ? argv[3] : NULL;
	long page = sysconf(_SC_PAGESIZE);
	struct sigaction sa;
	sigset_t block, old;
	char tmp[4096];
	FILE *out;
	size_t i;
	int fd;

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: %s MANIFEST [DEVICE [HMM_DEVICE]]\n", argv[0]);
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* Keep them blocked except inside sigsuspend(): no signal is lost before waiting. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &old);

	fd = open(device, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "open %s: %s\n", device, strerror(errno));
		return 1;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
	out = fopen(tmp, "w");
	if (!out) {
		fprintf(stderr, "open %s: %s\n", tmp, strerror(errno));
		return 1;
	}
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct holder_case *c = &cases[i];
		volatile const unsigned char *p = map_case(fd, c, page);
		unsigned long off;

		if (p == MAP_FAILED) {
			fprintf(out, "%s %d skip %s\n", c->name, (int)getpid(), skip_reason(errno));
			continue;
		}
		/* Fault in the cases that are filled at fault time. */
		for (off = 0; c->touch && off < case_len(c); off += page)
			(void)p[off];
		fprintf(out, "%s %d 0x%lx %lu\n", c->name, (int)getpid(), (unsigned long)(uintptr_t)p, case_len(c));
	}
	if (hmm_device)
		hold_hmm_exclusive(out, hmm_device, page);
	if (fflush(out) || fsync(fileno(out)) || fclose(out) || rename(tmp, argv[1])) {
		fprintf(stderr, "write %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	while (!stop)
		sigsuspend(&old);
	if (ioctl(fd, P2PV_IOC_RESTORE) < 0)
		fprintf(stderr, "P2PV_IOC_RESTORE: %s\n", strerror(errno));
	return 0;
}
