// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * holder: create one kind of mapping in this process, touch it, record it,
 * and hold it until killed.
 *
 *   holder OUTFILE KIND EXPECT MODE [ARG...]
 *
 * On success it writes one manifest line per mapping,
 *   "KIND PID 0xADDR LEN EXPECT\n",
 * to OUTFILE (written to OUTFILE.tmp and renamed, so a reader never sees a
 * partial file), then pause()s.  On failure it prints the reason to stderr
 * and exits with status 1.
 *
 * Modes (the guest's scenario script picks one per scenario):
 *   anon | thp | zero | protnone | swap
 *   file PATH            fsdax: MAP_SHARED_VALIDATE|MAP_SYNC on a DAX file
 *   devdax PATH          2 MiB-aligned mapping of a device-dax char device
 *   resource PATH LEN    PCI BAR through a sysfs resourceN file
 *   vfio GROUP BDF       vfio-pci BAR 2 at a 1 GiB-aligned address
 *   p2pmem PATH          2 MiB from a p2pmem/allocate file
 *   dumb CARD            DRM dumb buffer, mmapped through the card
 *   hmm DEV              test_hmm: THP and 4K anon migrated to device memory
 *   hmm-coherent DEV     test_hmm's DEVICE_COHERENT device: anon memory, COWed
 *                        pages of a MAP_PRIVATE file, and device-exclusive
 *                        entries to coherent pages
 *
 * The ioctl structures below are the kernel's user-space ABI, declared here
 * so that the program builds without libdrm or the test_hmm header.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

#define KiB (1UL << 10)
#define MiB (1UL << 20)
#define GiB (1UL << 30)
#define PAGE 4096UL

struct drm_mode_create_dumb {
	uint32_t height, width, bpp, flags, handle, pitch;
	uint64_t size;
};
struct drm_mode_map_dumb {
	uint32_t handle, pad;
	uint64_t offset;
};
#define DRM_IOCTL_MODE_CREATE_DUMB _IOWR('d', 0xB2, struct drm_mode_create_dumb)
#define DRM_IOCTL_MODE_MAP_DUMB _IOWR('d', 0xB3, struct drm_mode_map_dumb)

struct hmm_dmirror_cmd {
	uint64_t addr, ptr, npages, cpages, faults;
};
#define HMM_DMIRROR_MIGRATE_TO_DEV _IOWR('H', 0x02, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_EXCLUSIVE _IOWR('H', 0x05, struct hmm_dmirror_cmd)

static const char *kind, *expect, *outfile;
static char lines[4096];
static size_t lines_len;

static void die(const char *fmt, ...)
{
	va_list ap;
	int err = errno;

	fprintf(stderr, "holder %s: ", kind ? kind : "?");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (err)
		fprintf(stderr, ": %s", strerror(err));
	fputc('\n', stderr);
	exit(1);
}

/* Queue one manifest line; suffix (may be "") is appended to EXPECT. */
static void record(void *addr, size_t len, const char *suffix)
{
	lines_len += snprintf(lines + lines_len, sizeof(lines) - lines_len,
			      "%s %d %#lx %zu %s%s\n", kind, (int)getpid(),
			      (unsigned long)addr, len, expect, suffix);
}

/* Publish the queued lines atomically. */
static void publish(void)
{
	char tmp[4096];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", outfile);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, lines, lines_len) != (ssize_t)lines_len ||
	    fsync(fd) || close(fd) || rename(tmp, outfile))
		die("writing %s", outfile);
}

static int open_or_die(const char *path, int flags)
{
	int fd = open(path, flags);

	if (fd < 0)
		die("open %s", path);
	return fd;
}

/* An address aligned to @align with @len free bytes (reserved, then freed). */
static void *aligned_hint(size_t len, size_t align)
{
	char *p = mmap(NULL, len + align, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uintptr_t a;

	if (p == MAP_FAILED)
		die("reserving %zu bytes", len + align);
	a = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
	munmap(p, len + align);
	return (void *)a;
}

static void *map_fixed(void *at, size_t len, int prot, int flags, int fd,
		       off_t off)
{
	void *p = mmap(at, len, prot, flags | (at ? MAP_FIXED : 0), fd, off);

	if (p == MAP_FAILED)
		die("mmap of %zu bytes at %p", len, at);
	return p;
}

static void *anon(size_t len, size_t align, int advice)
{
	void *at = align ? aligned_hint(len, align) : NULL;
	void *p = map_fixed(at, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	/*
	 * A kernel without THP (CONFIG_TRANSPARENT_HUGEPAGE=n) fails
	 * MADV_NOHUGEPAGE with EINVAL: it has no huge pages to avoid.
	 */
	if (advice >= 0 && madvise(p, len, advice) &&
	    !(advice == MADV_NOHUGEPAGE && errno == EINVAL))
		die("madvise(%d)", advice);
	return p;
}

static void touch_write(void *p, size_t len, size_t step)
{
	for (size_t off = 0; off < len; off += step)
		((volatile char *)p)[off] = (char)(off / step + 1);
}

static void touch_read(void *p, size_t len, size_t step)
{
	volatile char sum = 0;

	for (size_t off = 0; off < len; off += step)
		sum += ((volatile char *)p)[off];
	(void)sum;
}

static void mode_anon(void)
{
	size_t len = 64 * KiB;
	void *p = anon(len, 0, MADV_NOHUGEPAGE);

	touch_write(p, len, PAGE);
	record(p, len, "");
}

static void mode_thp(void)
{
	size_t len = 2 * MiB;
	void *p = anon(len, 2 * MiB, MADV_HUGEPAGE);

	touch_write(p, len, PAGE);
	record(p, len, "");
}

static void mode_zero(void)
{
	size_t len = 64 * KiB;
	void *p = anon(len, 0, MADV_NOHUGEPAGE);

	touch_read(p, len, PAGE);
	record(p, len, "");
}

static void mode_protnone(void)
{
	size_t len = 64 * KiB;
	void *p = anon(len, 0, MADV_NOHUGEPAGE);

	touch_write(p, len, PAGE);
	if (mprotect(p, len, PROT_NONE))
		die("mprotect PROT_NONE");
	record(p, len, "");
}

/* How many pages of [p, p+len) /proc/self/pagemap reports as swapped. */
static size_t count_swapped(void *p, size_t len)
{
	int fd = open_or_die("/proc/self/pagemap", O_RDONLY);
	size_t n = 0;

	for (size_t off = 0; off < len; off += PAGE) {
		uint64_t e;
		off_t pos = ((uintptr_t)p + off) / PAGE * 8;

		if (pread(fd, &e, 8, pos) != 8)
			die("reading pagemap");
		n += (e >> 62) & 1;
	}
	close(fd);
	return n;
}

static void mode_swap(void)
{
	size_t len = 256 * KiB;
	char *p = anon(len, 0, MADV_NOHUGEPAGE);

	for (size_t off = 0; off < len; off += 8)
		*(uint64_t *)(p + off) = off * 0x9e3779b97f4a7c15ULL;
	if (madvise(p, len, MADV_PAGEOUT))
		die("madvise(MADV_PAGEOUT)");
	if (count_swapped(p, len) == 0) {
		errno = 0;
		die("no page was swapped out");
	}
	record(p, len, "");
}

static void mode_file(const char *path)
{
	size_t len = 256 * KiB;
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	void *p;

	if (fd < 0)
		die("open %s", path);
	if (ftruncate(fd, len))
		die("ftruncate %s", path);
	p = map_fixed(NULL, len, PROT_READ | PROT_WRITE,
		      MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
	touch_write(p, len, PAGE);
	record(p, len, "");
}

static void mode_devdax(const char *path)
{
	size_t len = 4 * MiB;
	int fd = open_or_die(path, O_RDWR);
	void *p = map_fixed(aligned_hint(len, 2 * MiB), len,
			    PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	touch_write(p, len, 2 * MiB);
	record(p, len, "");
}

static void mode_resource(const char *path, const char *len_arg)
{
	size_t len = strtoull(len_arg, NULL, 0);
	int fd = open_or_die(path, O_RDWR | O_SYNC);
	void *p = map_fixed(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	touch_write(p, len, PAGE);
	record(p, len, "");
}

static int vfio_device(const char *group_path, const char *bdf)
{
	struct vfio_group_status st = { .argsz = sizeof(st) };
	int container = open_or_die("/dev/vfio/vfio", O_RDWR);
	int group = open_or_die(group_path, O_RDWR);
	int dev;

	if (ioctl(container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		die("VFIO_GET_API_VERSION");
	if (ioctl(group, VFIO_GROUP_GET_STATUS, &st))
		die("VFIO_GROUP_GET_STATUS");
	if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
		errno = 0;
		die("group %s is not viable", group_path);
	}
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container))
		die("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) &&
	    ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU))
		die("VFIO_SET_IOMMU");
	dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (dev < 0)
		die("VFIO_GROUP_GET_DEVICE_FD %s", bdf);
	return dev;
}

static void mode_vfio(const char *group_path, const char *bdf)
{
	struct vfio_region_info ri = {
		.argsz = sizeof(ri), .index = VFIO_PCI_BAR2_REGION_INDEX,
	};
	int dev = vfio_device(group_path, bdf);
	void *p;

	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &ri))
		die("VFIO_DEVICE_GET_REGION_INFO");
	if (!(ri.flags & VFIO_REGION_INFO_FLAG_MMAP)) {
		errno = 0;
		die("BAR 2 of %s cannot be mmapped", bdf);
	}
	p = map_fixed(aligned_hint(ri.size, GiB), ri.size,
		      PROT_READ | PROT_WRITE, MAP_SHARED, dev, ri.offset);
	touch_write(p, 1, PAGE);
	record(p, ri.size, "");
}

static void mode_p2pmem(const char *path)
{
	size_t len = 2 * MiB;
	int fd = open_or_die(path, O_RDWR);
	void *p = map_fixed(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	touch_write(p, len, PAGE);
	record(p, len, "");
}

static void mode_dumb(const char *card)
{
	struct drm_mode_create_dumb cd = { .height = 256, .width = 256, .bpp = 32 };
	struct drm_mode_map_dumb md = { 0 };
	int fd = open_or_die(card, O_RDWR);
	void *p;

	if (ioctl(fd, DRM_IOCTL_MODE_CREATE_DUMB, &cd))
		die("DRM_IOCTL_MODE_CREATE_DUMB");
	md.handle = cd.handle;
	if (ioctl(fd, DRM_IOCTL_MODE_MAP_DUMB, &md))
		die("DRM_IOCTL_MODE_MAP_DUMB");
	p = map_fixed(NULL, cd.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		      md.offset);
	touch_write(p, cd.size, PAGE);
	record(p, cd.size, "");
}

/* Run test_hmm's ioctl @req over [p, p + len), all of whose pages it must take. */
static void hmm_ioctl(int fd, unsigned long req, const char *what, void *p,
		      size_t len)
{
	void *bounce = anon(len, 0, -1);
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)p, .ptr = (uintptr_t)bounce,
		.npages = len / PAGE,
	};

	if (ioctl(fd, req, &cmd))
		die("%s (%zu bytes)", what, len);
	if (cmd.cpages != cmd.npages) {
		errno = 0;
		die("%s took %lu of %lu pages", what, (unsigned long)cmd.cpages,
		    (unsigned long)cmd.npages);
	}
	munmap(bounce, len);
}

/* Touch anon memory, then migrate it to test_hmm's device memory. */
static void hmm_migrate(int fd, size_t len, size_t align, int advice,
			const char *suffix)
{
	void *p = anon(len, align, advice);

	touch_write(p, len, PAGE);
	hmm_ioctl(fd, HMM_DMIRROR_MIGRATE_TO_DEV, "HMM_DMIRROR_MIGRATE_TO_DEV", p, len);
	record(p, len, suffix);
}

/*
 * test_hmm's DEVICE_COHERENT device (loaded with spm_addr_dev0/1): what
 * migrate_vma may legitimately move there, and what make_device_exclusive()
 * may then take.
 */
static void mode_hmm_coherent(const char *dev)
{
	int fd = open_or_die(dev, O_RDWR);
	size_t len = 64 * KiB;
	char path[] = "/tmp/qp-coherent.XXXXXX";
	int file;
	void *p;

	/* Anonymous memory. */
	hmm_migrate(fd, len, 0, MADV_NOHUGEPAGE, "-anon");

	/* COWed (anonymous) pages of a MAP_PRIVATE file mapping, as a program's .data. */
	file = mkstemp(path);
	if (file < 0 || ftruncate(file, len))
		die("creating %s", path);
	unlink(path);
	p = map_fixed(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, file, 0);
	touch_write(p, len, PAGE);
	hmm_ioctl(fd, HMM_DMIRROR_MIGRATE_TO_DEV, "HMM_DMIRROR_MIGRATE_TO_DEV", p, len);
	record(p, len, "-file");

	/* Device-exclusive entries to anonymous coherent pages. */
	p = anon(len, 0, MADV_NOHUGEPAGE);
	touch_write(p, len, PAGE);
	hmm_ioctl(fd, HMM_DMIRROR_MIGRATE_TO_DEV, "HMM_DMIRROR_MIGRATE_TO_DEV", p, len);
	hmm_ioctl(fd, HMM_DMIRROR_EXCLUSIVE, "HMM_DMIRROR_EXCLUSIVE", p, len);
	record(p, len, "-exclusive");
}

static void mode_hmm(const char *dev)
{
	int fd = open_or_die(dev, O_RDWR);

	hmm_migrate(fd, 2 * MiB, 2 * MiB, MADV_HUGEPAGE, "-pmd");
	hmm_migrate(fd, 64 * KiB, 0, MADV_NOHUGEPAGE, "-pte");
}

static void need(int argc, int n)
{
	if (argc < n) {
		errno = 0;
		die("mode needs %d argument(s)", n - 5);
	}
}

int main(int argc, char **argv)
{
	const char *mode;

	if (argc < 5) {
		fprintf(stderr, "usage: holder OUTFILE KIND EXPECT MODE [ARG...]\n");
		return 2;
	}
	outfile = argv[1];
	kind = argv[2];
	expect = argv[3];
	mode = argv[4];

	if (!strcmp(mode, "anon"))
		mode_anon();
	else if (!strcmp(mode, "thp"))
		mode_thp();
	else if (!strcmp(mode, "zero"))
		mode_zero();
	else if (!strcmp(mode, "protnone"))
		mode_protnone();
	else if (!strcmp(mode, "swap"))
		mode_swap();
	else if (!strcmp(mode, "file") && (need(argc, 6), 1))
		mode_file(argv[5]);
	else if (!strcmp(mode, "devdax") && (need(argc, 6), 1))
		mode_devdax(argv[5]);
	else if (!strcmp(mode, "resource") && (need(argc, 7), 1))
		mode_resource(argv[5], argv[6]);
	else if (!strcmp(mode, "vfio") && (need(argc, 7), 1))
		mode_vfio(argv[5], argv[6]);
	else if (!strcmp(mode, "p2pmem") && (need(argc, 6), 1))
		mode_p2pmem(argv[5]);
	else if (!strcmp(mode, "dumb") && (need(argc, 6), 1))
		mode_dumb(argv[5]);
	else if (!strcmp(mode, "hmm") && (need(argc, 6), 1))
		mode_hmm(argv[5]);
	else if (!strcmp(mode, "hmm-coherent") && (need(argc, 6), 1))
		mode_hmm_coherent(argv[5]);
	else {
		errno = 0;
		die("unknown mode %s", mode);
	}

	publish();
	for (;;)
		pause();
}
