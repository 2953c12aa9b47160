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
 * SIGUSR1 asks a holder to run the GUP users on its own mappings (gup.h:
 * O_DIRECT, io_uring buffer registration, RDMA memory registration,
 * vmsplice, futex, process_vm_readv, /proc/PID/mem) and write one JSON line
 * per attempt to OUTFILE.gup; OUTFILE.gup-req names the O_DIRECT disk and
 * the uverbs device.  "holder --peek USER PID ADDR" is the second process
 * of the cross-process users.
 *
 * Modes (the guest's scenario script picks one per scenario):
 *   anon | thp | zero | protnone | swap
 *   file PATH [pmd]      fsdax: MAP_SHARED_VALIDATE|MAP_SYNC on a DAX file; with pmd
 *                        also 4 MiB of PATH-pmd mapped 2 MiB-aligned (expect "<EXPECT>-pmd")
 *   devdax PATH          PMD_SIZE-aligned mapping of a device-dax char device
 *   resource PATH LEN    PCI BAR through a sysfs resourceN file
 *   vfio GROUP BDF       vfio-pci BAR 2 at a 1 GiB-aligned address, and 64 KiB
 *                        of it where only PTEs fit
 *   p2pmem PATH          2 MiB from a p2pmem/allocate file
 *   dumb CARD            DRM dumb buffer, mmapped through the card
 *   hmm DEV              test_hmm: THP and 4K anon migrated to device memory
 *   hmm-coherent DEV     test_hmm's DEVICE_COHERENT device: anon memory, COWed
 *                        pages of a MAP_PRIVATE file, and device-exclusive
 *                        entries to coherent pages
 *
 * Zoo modes (legitimate mappings made by the kernel's own code paths):
 *   p2pmem-ro PATH       p2pmem/allocate opened O_RDONLY, MAP_SHARED|PROT_READ
 *   perf                 perf_event ring buffer of a software event
 *   packet               AF_PACKET TPACKET_V3 RX ring bound to lo
 *   io-uring             io_uring SQ/CQ ring and SQE array
 *   io-uring-pbuf        io_uring provided-buffer ring (IOU_PBUF_RING_MMAP)
 *   hugetlb              2 MiB MAP_HUGETLB anonymous page
 *   hugetlb-1g           1 GiB MAP_HUGETLB|MAP_HUGE_1GB anonymous page
 *   shmem-thp            memfd with MADV_HUGEPAGE (shmem_enabled=advise)
 *   ksm                  identical anon pages merged by ksmd
 *   secretmem            memfd_secret() pages
 *   uffd-wp              shmem write-protected by userfaultfd, half unpopulated
 *   guard                anon with MADV_GUARD_INSTALL guard pages
 *   guard-shmem          the same in a shared memfd (shmem) mapping
 *   hwpoison             anon with MADV_HWPOISON and MADV_SOFT_OFFLINE pages
 *   numa-hint            anon pages turned into NUMA-hinting (PROT_NONE) entries by
 *                        NUMA balancing, which the scenario switches on
 *   zswap                anon pages paged out while zswap is on (stored compressed)
 *   udmabuf DEV          dma-buf of a sealed memfd, mmapped
 *   devmem PATH OFF LEN [AT]  read-only /dev/mem (or uio) mapping, read at byte AT of each page
 *   vdso                 this process's [vdso] text and [vvar] data, after clock_gettime()
 *   fbdev PATH           64 KiB of an fbdev framebuffer, written
 *   tcp-zc               TCP zerocopy receive over loopback (MSG_ZEROCOPY sender)
 *   dma-heap PATH        64 KiB dma-buf from a DMA-BUF heap, mmapped
 *
 * The broken-mapping GUP tier (drgn_p2p/lab/gupbroken.py):
 *   violate DEV PGOFF LEN TOUCH AT
 *                        one case of the p2p_violate module: DEV mmapped at offset
 *                        PGOFF pages, LEN bytes at address AT (hex, aligned for the
 *                        case), every page read first when TOUCH is 1
 *
 * The ioctl structures below are the kernel's user-space ABI, declared here
 * so that the program builds without libdrm or the test_hmm header.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/dma-heap.h>
#include <linux/fb.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <linux/tcp.h>
#include <linux/udmabuf.h>
#include <linux/userfaultfd.h>
#include <linux/vfio.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
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
#ifndef MADV_HWPOISON
#define MADV_HWPOISON 100
#endif
#ifndef MADV_SOFT_OFFLINE
#define MADV_SOFT_OFFLINE 101
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#define IOU_PBUF_RING_MMAP 1
#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif
#ifndef IORING_OFF_PBUF_RING
#define IORING_OFF_PBUF_RING 0x80000000ULL
#define IORING_OFF_PBUF_SHIFT 16
#endif
#ifndef SYS_memfd_secret
#define SYS_memfd_secret 447
#endif

#define KiB (1UL << 10)
#define MiB (1UL << 20)
#define GiB (1UL << 30)
/* The kernel's page size (main() reads it): 4 KiB on x86-64, 4 or 16 KiB on the arm64 lab kernels. */
static size_t page_size = 4096;
#define PAGE page_size
/* The largest page size a Linux architecture has (arm64's 64 KiB), for static buffers. */
#define MAX_PAGE (64 * KiB)

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

/* struct io_uring_buf_reg as of 6.4, when its pad became flags. */
struct pbuf_reg {
	uint64_t ring_addr;
	uint32_t ring_entries;
	uint16_t bgid, flags;
	uint64_t resv[3];
};

struct hmm_dmirror_cmd {
	uint64_t addr, ptr, npages, cpages, faults;
};
#define HMM_DMIRROR_MIGRATE_TO_DEV _IOWR('H', 0x02, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_EXCLUSIVE _IOWR('H', 0x05, struct hmm_dmirror_cmd)

static const char *kind, *expect, *outfile;
static char lines[4096];
static size_t lines_len;

/* A recorded mapping, and where the GUP users probe it (gup.h). */
struct held {
	uintptr_t addr;
	size_t len;
	char expect[64];
	/* User i probes addr + probe_off + i * probe_stride (modulo the rest of the mapping). */
	size_t probe_off, probe_stride;
};
static struct held held[8];
static int nheld;

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
	if (nheld < (int)(sizeof(held) / sizeof(held[0]))) {
		struct held *h = &held[nheld++];

		h->addr = (uintptr_t)addr;
		h->len = len;
		snprintf(h->expect, sizeof(h->expect), "%s%s", expect, suffix);
		h->probe_off = 0;
		h->probe_stride = PAGE;	/* each user its own page */
	}
}

/* Probe the last recorded mapping at @off, every user on the same page when @stride is 0. */
static void probe_window(size_t off, size_t stride)
{
	held[nheld - 1].probe_off = off;
	held[nheld - 1].probe_stride = stride;
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

/*
 * The number after @key at the start of a line of @path (the first line's
 * number when @key is ""), or @fallback when there is none: /proc/vmstat and
 * /proc/meminfo counters, sysfs and debugfs values.
 */
static long read_number(const char *path, const char *key, long fallback)
{
	char line[128];
	size_t n = strlen(key);
	long v = fallback;
	FILE *f = fopen(path, "r");

	if (!f)
		return fallback;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n)) {
			v = strtol(line + n, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* PMD_SIZE of the running kernel: 2 MiB with 4 KiB pages, 32 MiB with arm64's 16 KiB. */
static size_t pmd_size(void)
{
	return read_number("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", "", 2 * MiB);
}

static void mode_thp(void)
{
	size_t len = pmd_size();
	void *p = anon(len, len, MADV_HUGEPAGE);

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

/*
 * @len bytes of anonymous pages filled and paged out (MADV_PAGEOUT); at least
 * one swapped.  The contents compress (6.1 and 6.12 zswap reject a page that
 * does not; 7.2 keeps it as it is) but no page is filled with one value
 * (zram and older zswap keep such a page as a value, not as data).
 */
static char *paged_out(size_t len)
{
	char *p = anon(len, 0, MADV_NOHUGEPAGE);

	for (size_t off = 0; off < len; off += 8)
		*(uint64_t *)(p + off) = (off / 64) * 0x0101010101010101ULL;
	if (madvise(p, len, MADV_PAGEOUT))
		die("madvise(MADV_PAGEOUT)");
	if (count_swapped(p, len) == 0) {
		errno = 0;
		die("no page was swapped out");
	}
	return p;
}

static void mode_swap(void)
{
	record(paged_out(256 * KiB), 256 * KiB, "");
}

/* zswap's stored pages (debugfs; -1 when not readable). */
static long zswap_stored(void)
{
	return read_number("/sys/kernel/debug/zswap/stored_pages", "", -1);
}

/* The same with zswap on: zswap_store() keeps the pages compressed, the PTEs are swap entries. */
static void mode_zswap(void)
{
	long before = zswap_stored();
	char *p;

	if (before < 0) {
		errno = 0;
		die("cannot read /sys/kernel/debug/zswap/stored_pages");
	}
	p = paged_out(256 * KiB);
	if (zswap_stored() <= before) {
		errno = 0;
		die("zswap stored no page (%ld before, %ld after)", before, zswap_stored());
	}
	record(p, 256 * KiB, "");
}

/*
 * 4 MiB of a second file, allocated up front and mapped 2 MiB-aligned: on an
 * ext4 made with a 2 MiB stripe (mkfs -E stride=512), mballoc gives the
 * allocation 2 MiB-aligned blocks, so dax_iomap_pmd_fault() maps PMDs.
 */
static void mode_file_pmd(const char *path)
{
	size_t len = 4 * MiB;
	char name[4096];
	int fd;
	void *p;

	snprintf(name, sizeof(name), "%s-pmd", path);
	fd = open(name, O_RDWR | O_CREAT, 0644);
	if (fd < 0)
		die("open %s", name);
	if (fallocate(fd, 0, 0, len))
		die("fallocate %s", name);
	p = map_fixed(aligned_hint(len, 2 * MiB), len, PROT_READ | PROT_WRITE,
		      MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
	touch_write(p, len, PAGE);
	record(p, len, "-pmd");
}

static void mode_file(const char *path, int pmd)
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
	if (pmd)
		mode_file_pmd(path);
}

/* Two PMDs of a device-dax device aligned to PMD_SIZE (--align of the namespace). */
static void mode_devdax(const char *path)
{
	size_t pmd = pmd_size(), len = 2 * pmd;
	int fd = open_or_die(path, O_RDWR);
	void *p = map_fixed(aligned_hint(len, pmd), len,
			    PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	touch_write(p, len, pmd);
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
	/* The same BAR at an address no huge leaf fits: vfio-pci's 4 KiB PFN PTEs. */
	p = map_fixed((char *)aligned_hint(2 * MiB, 2 * MiB) + 64 * KiB, 64 * KiB,
		      PROT_READ | PROT_WRITE, MAP_SHARED, dev, ri.offset);
	touch_write(p, 64 * KiB, PAGE);
	record(p, 64 * KiB, "-pte");
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

	/* One THP: PMD_SIZE is 2 MiB with 4 KiB pages, 32 MiB with 16 KiB. */
	hmm_migrate(fd, pmd_size(), pmd_size(), MADV_HUGEPAGE, "-pmd");
	hmm_migrate(fd, 64 * KiB, 0, MADV_NOHUGEPAGE, "-pte");
}

/* --- the zoo ------------------------------------------------------------ */

static void fail_if(int cond, const char *what)
{
	if (cond) {
		errno = 0;
		die("%s", what);
	}
}

static void mode_p2pmem_ro(const char *path)
{
	size_t len = 2 * MiB;
	int fd = open_or_die(path, O_RDONLY);
	void *p = map_fixed(NULL, len, PROT_READ, MAP_SHARED, fd, 0);

	touch_read(p, len, PAGE);
	record(p, len, "");
}

static void mode_perf(void)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE, .size = sizeof(attr),
		.config = PERF_COUNT_SW_DUMMY, .disabled = 1,
	};
	size_t len = (1 + 8) * PAGE;
	int fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
	void *p;

	if (fd < 0)
		die("perf_event_open");
	p = map_fixed(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	/* Page 0 is the writable control page, the data pages read-only. */
	touch_write(p, 1, PAGE);
	touch_read(p, len, PAGE);
	record(p, len, "");
}

static void mode_packet(void)
{
	struct tpacket_req3 req = {
		.tp_block_size = 16 * KiB, .tp_block_nr = 4,
		.tp_frame_size = 2 * KiB, .tp_frame_nr = 4 * 16 * KiB / (2 * KiB),
		.tp_retire_blk_tov = 100,
	};
	struct sockaddr_ll sll = {
		.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
		.sll_ifindex = (int)if_nametoindex("lo"),
	};
	int version = TPACKET_V3;
	int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	size_t len = (size_t)req.tp_block_size * req.tp_block_nr;
	void *p;

	if (fd < 0)
		die("socket(AF_PACKET)");
	if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)))
		die("PACKET_VERSION");
	if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)))
		die("PACKET_RX_RING");
	fail_if(sll.sll_ifindex == 0, "no interface lo");
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)))
		die("bind to lo");
	p = map_fixed(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	touch_read(p, len, PAGE);
	record(p, len, "");
}

static int uring_setup(struct io_uring_params *params)
{
	int fd = syscall(SYS_io_uring_setup, 8, params);

	if (fd < 0)
		die("io_uring_setup");
	return fd;
}

static void mode_io_uring(void)
{
	struct io_uring_params params = { 0 };
	int fd = uring_setup(&params);
	size_t sq = params.sq_off.array + params.sq_entries * sizeof(uint32_t);
	size_t cq = params.cq_off.cqes + params.cq_entries * sizeof(struct io_uring_cqe);
	size_t rings = ((sq > cq ? sq : cq) + PAGE - 1) & ~(PAGE - 1);
	size_t sqes = (params.sq_entries * sizeof(struct io_uring_sqe) + PAGE - 1) & ~(PAGE - 1);
	void *r, *s;

	fail_if(!(params.features & IORING_FEAT_SINGLE_MMAP), "no IORING_FEAT_SINGLE_MMAP");
	r = map_fixed(NULL, rings, PROT_READ | PROT_WRITE, MAP_SHARED, fd, IORING_OFF_SQ_RING);
	s = map_fixed(NULL, sqes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, IORING_OFF_SQES);
	touch_read(r, rings, PAGE);
	touch_read(s, sqes, PAGE);
	record(r, rings, "");
	record(s, sqes, "");
}

static void mode_io_uring_pbuf(void)
{
	struct io_uring_params params = { 0 };
	int fd = uring_setup(&params);
	struct pbuf_reg reg = {
		.ring_entries = 8, .bgid = 1, .flags = IOU_PBUF_RING_MMAP,
	};
	off_t off = IORING_OFF_PBUF_RING | ((uint64_t)reg.bgid << IORING_OFF_PBUF_SHIFT);
	void *p;

	if (syscall(SYS_io_uring_register, fd, IORING_REGISTER_PBUF_RING, &reg, 1))
		die("IORING_REGISTER_PBUF_RING with IOU_PBUF_RING_MMAP");
	p = map_fixed(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
	touch_read(p, PAGE, PAGE);
	record(p, PAGE, "");
}

static void mode_hugetlb(void)
{
	/* The default huge page size (hugepages=2 reserves two): PMD_SIZE on x86-64 and arm64. */
	size_t len = read_number("/proc/meminfo", "Hugepagesize:", 2048) * KiB;
	void *p = map_fixed(NULL, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);

	touch_write(p, len, PAGE);
	record(p, len, "");
}

#ifndef MAP_HUGE_1GB
#define MAP_HUGE_1GB (30 << MAP_HUGE_SHIFT)
#endif

/* One 1 GiB hugetlb page (hugepagesz=1G hugepages=1), faulted in by one write. */
static void mode_hugetlb_1g(void)
{
	size_t len = 1024 * MiB;
	void *p = map_fixed(NULL, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_1GB, -1, 0);

	touch_write(p, len, len);
	record(p, len, "");
}

static int memfd(const char *name, size_t len, unsigned int flags)
{
	int fd = memfd_create(name, flags);

	if (fd < 0)
		die("memfd_create");
	if (ftruncate(fd, len))
		die("ftruncate memfd");
	return fd;
}

static void mode_shmem_thp(void)
{
	size_t len = pmd_size();	/* one PMD: 2 MiB with 4 KiB pages, 32 MiB with 16 KiB */
	int fd = memfd("qp-shmem-thp", len, 0);
	void *p = map_fixed(aligned_hint(len, len), len,
			    PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (madvise(p, len, MADV_HUGEPAGE))
		die("madvise(MADV_HUGEPAGE)");
	touch_write(p, len, PAGE);
	record(p, len, "");
}

/* NUMA balancing's PTE updates so far (/proc/vmstat; -1 when missing). */
static long numa_pte_updates(void)
{
	return read_number("/proc/vmstat", "numa_pte_updates ", -1);
}

static void *idle_thread(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

/*
 * NUMA balancing's hinting entries: task_tick_numa() queues task_numa_work()
 * once this task has run for numa_balancing_scan_delay_ms, and its
 * change_prot_numa() turns the present PTEs of each accessible VMA into
 * PROT_NONE entries (mm/mprotect.c).  The pages of a single-threaded process
 * already on its node are left alone (folio_can_map_prot_numa(),
 * change_pte_range() before it): a second thread shares the mm.  The pages are
 * not touched again, so the entries stay until the GUP probe faults them.
 */
static void mode_numa_hint(void)
{
	size_t len = 256 * KiB;
	long want = len / PAGE, before;
	char *p = anon(len, 0, MADV_NOHUGEPAGE);
	pthread_t thread;
	struct timespec t0, t;

	touch_write(p, len, PAGE);
	if (pthread_create(&thread, NULL, idle_thread, NULL))
		die("pthread_create");
	before = numa_pte_updates();
	if (before < 0) {
		errno = 0;
		die("no numa_pte_updates in /proc/vmstat");
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		for (volatile long spin = 0; spin < 1000000; spin++)
			;
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (numa_pte_updates() - before < want && t.tv_sec - t0.tv_sec < 60);
	if (numa_pte_updates() - before < want) {
		errno = 0;
		die("NUMA balancing updated %ld PTEs in 60 s, want %ld", numa_pte_updates() - before, want);
	}
	record(p, len, "");
}

/* This process's pages that KSM merged, from /proc/self/ksm_merging_pages. */
static long ksm_merging(void)
{
	return read_number("/proc/self/ksm_merging_pages", "", -1);
}

static void mode_ksm(void)
{
	size_t len = 64 * KiB;
	char *p = anon(len, 0, MADV_NOHUGEPAGE);
	long want = len / PAGE;

	for (size_t off = 0; off < len; off++)
		p[off] = (char)(off % PAGE * 7 + 1);
	if (madvise(p, len, MADV_MERGEABLE))
		die("madvise(MADV_MERGEABLE)");
	for (int i = 0; i < 500 && ksm_merging() < want; i++)
		usleep(100 * 1000);
	if (ksm_merging() < want) {
		errno = 0;
		die("ksmd merged %ld of %ld pages in 50 s", ksm_merging(), want);
	}
	record(p, len, "");
}

static void mode_secretmem(void)
{
	size_t len = 64 * KiB;
	int fd = syscall(SYS_memfd_secret, 0);
	void *p;

	if (fd < 0)
		die("memfd_secret");
	if (ftruncate(fd, len))
		die("ftruncate memfd_secret");
	p = map_fixed(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	touch_write(p, len, PAGE);
	record(p, len, "");
}

/* Kept open: the write protection belongs to this userfaultfd context. */
static int uffd = -1;

static void mode_uffd_wp(void)
{
	size_t len = 64 * KiB;
	int fd = memfd("qp-uffd-wp", len, 0);
	char *p = map_fixed(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
	struct uffdio_register reg = {
		.range = { (uintptr_t)p, len }, .mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct uffdio_writeprotect wp = {
		.range = { (uintptr_t)p, len }, .mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	/* The first half is populated (present, write-protected PTEs), the
	 * second half is not (PTE markers keep the protection). */
	touch_write(p, len / 2, PAGE);
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		die("userfaultfd");
	if (ioctl(uffd, UFFDIO_API, &api))
		die("UFFDIO_API with UFFD_FEATURE_WP_HUGETLBFS_SHMEM");
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		die("UFFDIO_REGISTER_MODE_WP");
	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp))
		die("UFFDIO_WRITEPROTECT");
	record(p, len, "");
}

static void mode_guard(int shmem)
{
	size_t len = 64 * KiB;
	char *p = shmem ? map_fixed(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED,
				   memfd("qp-guard", len, 0), 0)
			: anon(len, 0, MADV_NOHUGEPAGE);

	touch_write(p, len, PAGE);
	if (madvise(p + 16 * KiB, 16 * KiB, MADV_GUARD_INSTALL))
		die("madvise(MADV_GUARD_INSTALL)");
	record(p, len, "");
	probe_window(16 * KiB, 0);	/* the guard pages */
}

/* madvise(MADV_HWPOISON) may send this process SIGBUS (MF_ACTION_REQUIRED). */
static void on_sigbus(int sig)
{
	(void)sig;
}

static void mode_hwpoison(void)
{
	size_t len = 64 * KiB;
	char *p = anon(len, 0, MADV_NOHUGEPAGE);
	struct sigaction sa = { .sa_handler = on_sigbus };

	touch_write(p, len, PAGE);
	if (sigaction(SIGBUS, &sa, NULL))
		die("sigaction(SIGBUS)");
	if (madvise(p, PAGE, MADV_HWPOISON))
		die("madvise(MADV_HWPOISON)");
	if (madvise(p + PAGE, PAGE, MADV_SOFT_OFFLINE))
		die("madvise(MADV_SOFT_OFFLINE)");
	record(p, len, "");
	probe_window(0, 0);	/* the poisoned page */
}

static void mode_udmabuf(const char *dev)
{
	size_t len = 64 * KiB;
	int fd = memfd("qp-udmabuf", len, MFD_ALLOW_SEALING);
	struct udmabuf_create create = { .memfd = fd, .flags = UDMABUF_FLAGS_CLOEXEC, .size = len };
	int buf;
	void *p;

	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK))
		die("F_SEAL_SHRINK");
	buf = ioctl(open_or_die(dev, O_RDWR), UDMABUF_CREATE, &create);
	if (buf < 0)
		die("UDMABUF_CREATE");
	p = map_fixed(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
	touch_write(p, len, PAGE);
	record(p, len, "");
}

/*
 * A uio map starts at its memory's page (uio_pci_generic: the BAR's start &
 * PAGE_MASK) and the memory at the map's "offset" in it: with 16 KiB pages a
 * small BAR need not start the page, and reading elsewhere is a bus error.
 */
static void mode_devmem(const char *path, const char *off_arg, const char *len_arg, const char *at_arg)
{
	off_t off = strtoull(off_arg, NULL, 0);
	size_t len = strtoull(len_arg, NULL, 0);
	size_t at = at_arg ? strtoull(at_arg, NULL, 0) : 0;
	int fd = open_or_die(path, O_RDONLY | O_SYNC);
	char *p;

	if (at >= len) {
		errno = 0;
		die("devmem: byte %zu lies outside the %zu-byte mapping", at, len);
	}
	p = map_fixed(NULL, len, PROT_READ, MAP_SHARED, fd, off);
	touch_read(p + at, len - at, PAGE);
	record(p, len, "");
}

static int gup_no_proc_walks;

/* One p2p_violate case, mapped where the caller says (it keeps each boot's address apart). */
static void mode_violate(const char *dev, const char *pgoff_arg, const char *len_arg, const char *touch_arg,
			 const char *at_arg)
{
	off_t off = (off_t)strtoull(pgoff_arg, NULL, 0) * PAGE;
	size_t len = strtoull(len_arg, NULL, 0);
	void *at = (void *)(uintptr_t)strtoull(at_arg, NULL, 16);
	int fd = open_or_die(dev, O_RDWR);
	void *p = map_fixed(at, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);

	if (!strcmp(touch_arg, "1"))
		touch_read(p, len, PAGE);
	gup_no_proc_walks = 1;
	record(p, len, "");
}

/* Record the /proc/self/maps line named @name (e.g. "[vdso]") with @suffix. */
static void record_named(const char *name, const char *suffix)
{
	char line[512];
	FILE *maps = fopen("/proc/self/maps", "r");
	int found = 0;

	if (!maps)
		die("open /proc/self/maps");
	while (!found && fgets(line, sizeof(line), maps)) {
		unsigned long start, end;
		char *nl = strchr(line, '\n');

		if (nl)
			*nl = 0;
		if (strlen(line) < strlen(name) || strcmp(line + strlen(line) - strlen(name), name))
			continue;
		if (sscanf(line, "%lx-%lx", &start, &end) == 2) {
			record((void *)start, end - start, suffix);
			found = 1;
		}
	}
	fclose(maps);
	fail_if(!found, name);
}

static void mode_vdso(void)
{
	struct timespec ts;

	/* Runs vDSO code, which reads the time data page of [vvar]. */
	for (int i = 0; i < 3; i++)
		clock_gettime(CLOCK_MONOTONIC, &ts);
	record_named("[vdso]", "-text");
	record_named("[vvar]", "-data");
}

static void mode_fbdev(const char *path)
{
	struct fb_fix_screeninfo fix;
	int fd = open_or_die(path, O_RDWR);
	size_t len = 64 * KiB;
	void *p;

	if (ioctl(fd, FBIOGET_FSCREENINFO, &fix))
		die("FBIOGET_FSCREENINFO");
	fail_if(fix.smem_len < len, "framebuffer smaller than 64 KiB");
	p = map_fixed(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	touch_write(p, len, PAGE);
	record(p, len, "");
}

/* A connected loopback TCP pair whose segments carry whole pages. */
static void tcp_pair(int *client, int *server)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int mss = 7 * 4096, one = 1;	/* at most MAX_TCP_WINDOW (32767) whatever the page size */
	int ls = socket(AF_INET, SOCK_STREAM, 0);

	*client = socket(AF_INET, SOCK_STREAM, 0);
	fail_if(ls < 0 || *client < 0, "socket(AF_INET)");
	if (setsockopt(ls, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss)) ||
	    setsockopt(*client, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss)))
		die("TCP_MAXSEG");
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&a, &alen))
		die("listening on loopback");
	if (connect(*client, (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	*server = accept(ls, NULL, NULL);
	if (*server < 0)
		die("accept");
	if (setsockopt(*client, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one)))
		die("SO_ZEROCOPY");
}

static void mode_tcp_zc(void)
{
	size_t len = 7 * 2 * 4096;	/* two segments (tcp_pair()), whatever the page size */
	int client, server, queued = 0;
	char *buf = anon(len, 0, MADV_NOHUGEPAGE);
	struct tcp_zerocopy_receive zc = { 0 };
	socklen_t zlen = sizeof(zc);
	void *p;

	tcp_pair(&client, &server);
	touch_write(buf, len, 1);
	if (send(client, buf, len, MSG_ZEROCOPY) != (ssize_t)len)
		die("send(MSG_ZEROCOPY)");
	for (int i = 0; i < 100 && queued < (int)len; i++) {
		struct pollfd pfd = { .fd = server, .events = POLLIN };

		poll(&pfd, 1, 100);
		if (ioctl(server, FIONREAD, &queued))
			die("FIONREAD");
	}
	fail_if(queued < (int)len, "loopback did not deliver the data");
	p = map_fixed(NULL, len, PROT_READ, MAP_SHARED, server, 0);
	zc.address = (uintptr_t)p;
	zc.length = len;
	if (getsockopt(server, IPPROTO_TCP, TCP_ZEROCOPY_RECEIVE, &zc, &zlen))
		die("TCP_ZEROCOPY_RECEIVE");
	if (zc.length == 0) {
		errno = 0;
		die("TCP_ZEROCOPY_RECEIVE mapped nothing (skip hint %u, err %d)", zc.recv_skip_hint, zc.err);
	}
	record(p, len, "");
}

static void mode_dma_heap(const char *path)
{
	struct dma_heap_allocation_data alloc = {
		.len = 64 * KiB, .fd_flags = O_RDWR | O_CLOEXEC,
	};
	void *p;

	if (ioctl(open_or_die(path, O_RDONLY | O_CLOEXEC), DMA_HEAP_IOCTL_ALLOC, &alloc))
		die("DMA_HEAP_IOCTL_ALLOC");
	p = map_fixed(NULL, alloc.len, PROT_READ | PROT_WRITE, MAP_SHARED, alloc.fd, 0);
	touch_write(p, alloc.len, PAGE);
	record(p, alloc.len, "");
}

static void need(int argc, int n)
{
	if (argc < n) {
		errno = 0;
		die("mode needs %d argument(s)", n - 5);
	}
}

#include "gup.h"

int main(int argc, char **argv)
{
	const char *mode;

	page_size = (size_t)sysconf(_SC_PAGESIZE);
	if (argc >= 5 && !strcmp(argv[1], "--peek"))
		return gup_peek(argv[2], argv[3], argv[4]);
	gup_arm();
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
		mode_file(argv[5], argc > 6 && !strcmp(argv[6], "pmd"));
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
	else if (!strcmp(mode, "p2pmem-ro") && (need(argc, 6), 1))
		mode_p2pmem_ro(argv[5]);
	else if (!strcmp(mode, "perf"))
		mode_perf();
	else if (!strcmp(mode, "packet"))
		mode_packet();
	else if (!strcmp(mode, "io-uring"))
		mode_io_uring();
	else if (!strcmp(mode, "io-uring-pbuf"))
		mode_io_uring_pbuf();
	else if (!strcmp(mode, "hugetlb"))
		mode_hugetlb();
	else if (!strcmp(mode, "hugetlb-1g"))
		mode_hugetlb_1g();
	else if (!strcmp(mode, "shmem-thp"))
		mode_shmem_thp();
	else if (!strcmp(mode, "ksm"))
		mode_ksm();
	else if (!strcmp(mode, "secretmem"))
		mode_secretmem();
	else if (!strcmp(mode, "uffd-wp"))
		mode_uffd_wp();
	else if (!strcmp(mode, "guard"))
		mode_guard(0);
	else if (!strcmp(mode, "guard-shmem"))
		mode_guard(1);
	else if (!strcmp(mode, "hwpoison"))
		mode_hwpoison();
	else if (!strcmp(mode, "numa-hint"))
		mode_numa_hint();
	else if (!strcmp(mode, "zswap"))
		mode_zswap();
	else if (!strcmp(mode, "udmabuf") && (need(argc, 6), 1))
		mode_udmabuf(argv[5]);
	else if (!strcmp(mode, "vdso"))
		mode_vdso();
	else if (!strcmp(mode, "fbdev") && (need(argc, 6), 1))
		mode_fbdev(argv[5]);
	else if (!strcmp(mode, "tcp-zc"))
		mode_tcp_zc();
	else if (!strcmp(mode, "dma-heap") && (need(argc, 6), 1))
		mode_dma_heap(argv[5]);
	else if (!strcmp(mode, "devmem") && (need(argc, 8), 1))
		mode_devmem(argv[5], argv[6], argv[7], argc > 8 ? argv[8] : NULL);
	else if (!strcmp(mode, "violate") && (need(argc, 10), 1))
		mode_violate(argv[5], argv[6], argv[7], argv[8], argv[9]);
	else {
		errno = 0;
		die("unknown mode %s", mode);
	}

	publish();
	gup_serve();
}
