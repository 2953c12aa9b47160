// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * p2p_violate - build wrong page-table mappings on purpose, next to correct
 * controls, so that drgn-p2p can be shown to report exactly the wrong ones.
 *
 * LAB ONLY. Load it in a throw-away guest, never on a machine you care about.
 *
 * /dev/p2p_violate is a misc device. mmap(MAP_SHARED) at offset
 * "case * page size" builds the case's mapping (p2p_violate.h lists them).
 * The wrong shapes are the ones the mm threads warn about:
 *
 *   nomemmap-no-pfnmap    a PFN without a struct page in a VMA that is
 *                         neither VM_PFNMAP nor VM_MIXEDMAP
 *   pfnmap-not-special    a VM_PFNMAP mapping whose PTEs lack the special bit
 *   huge-pfn-not-special  a PMD PFN leaf without the special bit
 *   special-on-ram        a special PTE on a RAM page outside PFNMAP/MIXEDMAP
 *   mixedmap-pages        P2PDMA pages under plain PTEs in a VM_MIXEDMAP VMA
 *   devmap-on-ram         the devmap bit on an ordinary RAM page's PTE
 *   pfnmap-ram-not-special  RAM pages in a VM_PFNMAP VMA without the special bit
 *   devmap-not-special    a devmap PTE without the special bit (on RAM)
 *   p2pdma-special        a P2PDMA page under a special PTE in a VM_PFNMAP VMA
 *   p2pdma-no-mixedmap    a P2PDMA page in a VMA without VM_MIXEDMAP
 *   devdax-special        a device-dax page under a PTE with the wrong bits
 *   devdax-in-pfnmap      a device-dax page in a VM_PFNMAP VMA
 *   coherent-in-pfnmap    a DEVICE_COHERENT page under a special PTE in a
 *                         VM_PFNMAP VMA
 *   private-present       a DEVICE_PRIVATE page under a present PTE
 *   migration-to-p2pdma   a migration entry whose PFN is a P2PDMA page
 *   unknown-marker        a PTE marker with a bit no kernel defines
 *   private-entry-to-ram  a device-private (write) entry whose PFN is a RAM
 *                         page the module allocated and pins
 *   exclusive-to-p2pdma   a device-exclusive entry whose PFN is a P2PDMA page
 *
 * The PFNs without memmap come from a prefetchable PCI memory BAR (by default
 * an unbound ivshmem BAR, else any prefetchable BAR whose PFNs have no memmap),
 * or from the bar_phys=/bar_size= module parameters.
 *
 * ZONE_DEVICE pages: when that range is large enough, the module turns its
 * first 2 MiB chunks into ZONE_DEVICE memory of its own with memremap_pages()
 * (one chunk each of MEMORY_DEVICE_PCI_P2PDMA, _GENERIC (device-dax),
 * _COHERENT and, with CONFIG_DEVICE_PRIVATE, _PRIVATE) and keeps the next
 * chunk memmap-less for the cases above. The pages are never handed out: the
 * cases map them with remap_pfn_range() (special PTEs, no reference taken)
 * and then change bits and VMA flags, exactly like the memmap-less cases. The
 * ZONE_DEVICE chunks sit below the memmap-less one, so highest_memmap_pfn stays
 * below the memmap-less PFNs.
 *
 * Teardown: some shapes would make the kernel print "Bad page map" (or worse,
 * dereference a struct page that does not exist) when the mapping is zapped.
 * The ioctl P2PV_IOC_RESTORE puts every mapping of the calling process back
 * into a shape the kernel can tear down; the holder calls it on SIGTERM.
 * The migration entries point to P2PDMA pages the module keeps locked while
 * the entries exist (every kernel path that meets a migration entry expects
 * its page locked: it waits for the lock, or BUGs on an unlocked page), and
 * no fault ever resolves them: the holder does not touch those cases.
 *
 * The wrong device-private and device-exclusive entries (CONFIG_DEVICE_PRIVATE
 * only) are held the same way, and no kernel path may meet them while they
 * exist: every path that does takes the PFN for the page such an entry must
 * name (a CPU fault calls migrate_to_ram() of the page's pgmap or
 * remove_device_exclusive_entry(); zap drops an rmap and a reference). So
 * they live only in a VM_PFNMAP|VM_IO|VM_DONTCOPY VMA of ours: GUP refuses
 * it (and /proc/PID/mem with it: the VMA has no ->access), page walks
 * (smaps, pagemap, madvise, mempolicy, MGLRU) skip VM_PFNMAP, NUMA balancing
 * and khugepaged skip VM_IO|VM_PFNMAP, fork does not copy it, and no rmap
 * walk can reach it (the pages named have no mapping or anon_vma). The
 * holder never touches them, and P2PV_IOC_RESTORE clears them (pte_clear
 * under the PTE lock) before the VMA can be unmapped, so zap only ever sees
 * empty PTEs. The RAM pages of private-entry-to-ram carry an extra reference
 * while entries name them.
 *
 * x86-64 and arm64: the software bits the cases set and clear (special,
 * devmap) and the helpers that change them are each architecture's own
 * (P2PV_SPECIAL, P2PV_DEVMAP, p2pv_pte_change() below).
 */

#include <linux/fs.h>
#include <linux/mm.h>		/* before huge_mm.h, which uses it (7.x) */
#include <linux/huge_mm.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/pgtable.h>
#include <linux/pagemap.h>
#include <linux/slab.h>
#include <linux/swap.h>
#include <linux/swapops.h>	/* after swap.h, which defines the types */
#include <linux/version.h>

/*
 * pfn_t (and <linux/pfn_t.h>) existed up to the 6.1x series and was removed
 * together with the devmap PTE bit (it is gone in 7.x): vmf_insert_pfn_pmd()
 * takes a plain unsigned long PFN since then.
 */
#if __has_include(<linux/pfn_t.h>)
#include <linux/pfn_t.h>
#define P2PV_HAVE_PFN_T 1
#endif

#include "p2p_violate.h"

/*
 * The software bits the cases change, per architecture, and how a PTE or a
 * PMD leaf gets them set or cleared. Devmap exists until v6.17
 * (d438d2734170 "mm: remove devmap related functions and page table bits"
 * removed _PAGE_DEVMAP and arm64's PTE_DEVMAP together).
 */
#if defined(CONFIG_X86_64)
#define P2PV_SPECIAL		_PAGE_SPECIAL
#ifdef CONFIG_ARCH_HAS_PTE_DEVMAP
#define P2PV_DEVMAP		_PAGE_DEVMAP
#define P2PV_DEVMAP_BIT		_PAGE_BIT_DEVMAP
#endif

static inline pte_t p2pv_pte_change(pte_t pte, pteval_t set, pteval_t clear)
{
	return pte_set_flags(pte_clear_flags(pte, clear), set);
}

static inline pmd_t p2pv_pmd_clear_special(pmd_t pmd)
{
	return pmd_clear_flags(pmd, _PAGE_SPECIAL);
}

static inline void p2pv_set_pte(struct mm_struct *mm, unsigned long addr, pte_t *ptep, pte_t pte)
{
	set_pte_at(mm, addr, ptep, pte);
}

static inline void p2pv_set_pmd(struct mm_struct *mm, unsigned long addr, pmd_t *pmdp, pmd_t pmd)
{
	set_pmd_at(mm, addr, pmdp, pmd);
}
#elif defined(CONFIG_ARM64)
#define P2PV_SPECIAL		PTE_SPECIAL
#ifdef CONFIG_ARCH_HAS_PTE_DEVMAP
#define P2PV_DEVMAP		PTE_DEVMAP
#define P2PV_DEVMAP_BIT		ilog2(PTE_DEVMAP)
#endif

static inline pte_t p2pv_pte_change(pte_t pte, pteval_t set, pteval_t clear)
{
	return set_pte_bit(clear_pte_bit(pte, __pgprot(clear)), __pgprot(set));
}

/* arm64 PMD leaves are PTEs in another place (pmd_pte()/pte_pmd()). */
static inline pmd_t p2pv_pmd_clear_special(pmd_t pmd)
{
	return pte_pmd(clear_pte_bit(pmd_pte(pmd), __pgprot(PTE_SPECIAL)));
}

/*
 * set_pte_at()/set_pmd_at() sync caches and MTE tags for the new entry
 * (__sync_cache_and_tags() calls mte_sync_tags(), which modules cannot
 * link against). The cases only flip software bits of entries whose page
 * and attributes stay, or write non-present entries: no cache or tag
 * maintenance is due, so the entry is written as __set_pte() writes it.
 */
static inline void p2pv_set_pte(struct mm_struct *mm, unsigned long addr, pte_t *ptep, pte_t pte)
{
	__set_pte(ptep, pte);
}

static inline void p2pv_set_pmd(struct mm_struct *mm, unsigned long addr, pmd_t *pmdp, pmd_t pmd)
{
	__set_pte((pte_t *)pmdp, pmd_pte(pmd));
}
#else
#error "p2p_violate builds x86-64 and arm64 page-table entries only"
#endif

#define P2PV_NAME "p2p_violate"

/* ivshmem (QEMU ivshmem-plain): its BAR2 is plain shared memory, safe to read. */
#define P2PV_IVSHMEM_VENDOR 0x1af4
#define P2PV_IVSHMEM_DEVICE 0x1110

static unsigned long bar_phys;
module_param(bar_phys, ulong, 0444);
MODULE_PARM_DESC(bar_phys, "physical address of a memmap-less range (default: found at load; reads back the one in use)");

static unsigned long bar_size;
module_param(bar_size, ulong, 0444);
MODULE_PARM_DESC(bar_size, "size of that range in bytes (reads back the one in use)");

static unsigned long huge_phys;
module_param(huge_phys, ulong, 0444);
MODULE_PARM_DESC(huge_phys, "read only: the 2 MiB aligned memmap-less chunk used for PMD cases (0: none)");

static unsigned long devmem_phys;
module_param(devmem_phys, ulong, 0444);
MODULE_PARM_DESC(devmem_phys, "read only: start of the ZONE_DEVICE chunks the module created (0: none)");

static char bar_source[64] = "none";
module_param_string(bar_source, bar_source, sizeof(bar_source), 0444);
MODULE_PARM_DESC(bar_source, "read only: where the memmap-less range came from");

/* The memmap-less ranges in use; 0 = none (PFN 0 always has a memmap on x86). */
static unsigned long nm_pfn;
static unsigned long huge_pfn;

#define P2PV_LEN(e, n, name, len, huge, touch) [n] = len,
static const unsigned long case_len[P2PV_NR_CASES] = { P2PV_CASES(P2PV_LEN) };
#undef P2PV_LEN
#define P2PV_HUGE(e, n, name, len, huge, touch) [n] = huge,
static const bool case_huge[P2PV_NR_CASES] = { P2PV_CASES(P2PV_HUGE) };
#undef P2PV_HUGE
#define P2PV_STR(e, n, name, len, huge, touch) [n] = name,
static const char *const case_name[P2PV_NR_CASES] = { P2PV_CASES(P2PV_STR) };
#undef P2PV_STR

/* A PMD case maps one PMD leaf of the running kernel: P2PV_HUGE_LEN with 4 KiB pages. */
static unsigned long p2pv_case_len(unsigned int kase)
{
	return case_huge[kase] ? PMD_SIZE : case_len[kase];
}

/* memremap_pages() works on whole subsections (SUBSECTION_SIZE: 2 MiB on x86-64 and arm64). */
#define P2PV_CHUNK_LEN	(2UL * 1024 * 1024)

/*
 * Chunks start this far apart, so that no two share a page of vmemmap. With
 * 16 KiB pages the struct pages of one chunk (128 of them) fill half a page
 * of vmemmap, and arm64's vmemmap_free() frees every page of vmemmap that
 * the removed range touches (unmap_hotplug_range() with free_mapped): the
 * first memunmap_pages() would take the next chunk's struct pages with it.
 */
#define P2PV_CHUNK_STRIDE \
	max_t(unsigned long, P2PV_CHUNK_LEN, PAGE_SIZE / sizeof(struct page) * PAGE_SIZE)

/*
 * vma->vm_flags became read-only behind vm_flags_set()/vm_flags_clear() in
 * v6.3 (bc292ab00f6c "mm: introduce vma->vm_flags wrapper functions"); 6.1
 * writes the field. Callers hold the mmap lock for writing.
 */
static void p2pv_flags_set(struct vm_area_struct *vma, unsigned long flags)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 3, 0)
	vma->vm_flags |= flags;
#else
	vm_flags_set(vma, flags);
#endif
}

static void p2pv_flags_clear(struct vm_area_struct *vma, unsigned long flags)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 3, 0)
	vma->vm_flags &= ~flags;
#else
	vm_flags_clear(vma, flags);
#endif
}

/* One open file. Its VMAs pin it, so it outlives every p2pv_map. */
struct p2pv_file {
	struct mutex lock;	/* protects maps; taken inside the mmap lock */
	struct list_head maps;
};

/* One mmap() of a case; shared by the VMAs a split makes. */
struct p2pv_map {
	struct kref ref;
	struct list_head node;
	struct p2pv_file *file;
	struct mm_struct *mm;	/* not referenced: compared only */
	unsigned int kase;
	unsigned long start;
	bool restored;
	/* Pages kept locked while migration entries point to them. */
	unsigned long locked_pfn;
	unsigned int nlocked;
	/* pages[] carry an extra reference while device-private entries name them. */
	bool pinned;
	unsigned int npages;
	struct page *pages[];
};

/* ------------------------------------------------------------ memmap-less PFNs */

static bool p2pv_no_memmap(unsigned long pfn, unsigned long npages)
{
	unsigned long i;

	for (i = 0; i < npages; i++)
		if (pfn_valid(pfn + i))
			return false;
	return true;
}

/*
 * Above every PFN the direct map covers, so that even a kernel that treats a
 * non-special leaf as a struct page (pfn > highest_memmap_pfn check) does not
 * read a memmap that is not there. ZONE_DEVICE memmaps (P2PDMA) may still
 * sit above; P2PV_IOC_RESTORE is the real protection at teardown.
 */
static bool p2pv_above_ram(unsigned long pfn)
{
	return pfn > PHYS_PFN(__pa(high_memory) - 1);
}

/* The kinds of ZONE_DEVICE memory the module creates, one 2 MiB chunk each. */
enum p2pv_devmem {
	P2PV_DM_P2PDMA,
	P2PV_DM_GENERIC,
	P2PV_DM_COHERENT,
	P2PV_DM_PRIVATE,
	P2PV_NR_DEVMEM
};

/*
 * Use [start, start + len) if it has no memmap; set nm_pfn, huge_pfn and
 * devmem_phys. With room for it, P2PV_NR_DEVMEM 2 MiB chunks (P2PV_CHUNK_STRIDE apart) are
 * left for ZONE_DEVICE memory and the memmap-less cases follow (small cases
 * in the first pages after them, PMD cases over the PMD_SIZE-aligned range
 * from there: the same place with 4 KiB pages, a 32 MiB boundary with 16
 * KiB); otherwise the memmap-less cases start at the start of the range and
 * there is no ZONE_DEVICE memory.
 */
static bool p2pv_use_range(phys_addr_t start, resource_size_t len, const char *source)
{
	phys_addr_t end = start + len;
	phys_addr_t dev = ALIGN(start, (phys_addr_t)P2PV_CHUNK_STRIDE);
	phys_addr_t nm = start, huge = ALIGN(start, (phys_addr_t)PMD_SIZE);
	unsigned long span = P2PV_NR_DEVMEM * P2PV_CHUNK_STRIDE + P2PV_CHUNK_LEN;

	if (len < P2PV_SMALL_LEN || !p2pv_above_ram(PHYS_PFN(start)) ||
	    !p2pv_no_memmap(PHYS_PFN(start), P2PV_SMALL_LEN >> PAGE_SHIFT))
		return false;
	if (dev + span <= end && p2pv_no_memmap(PHYS_PFN(dev), span >> PAGE_SHIFT)) {
		devmem_phys = dev;
		nm = dev + P2PV_NR_DEVMEM * P2PV_CHUNK_STRIDE;
		huge = ALIGN(nm, (phys_addr_t)PMD_SIZE);
	}
	nm_pfn = PHYS_PFN(nm);
	bar_phys = start;
	bar_size = len;
	if (huge + PMD_SIZE <= end &&
	    p2pv_no_memmap(PHYS_PFN(huge), PMD_SIZE >> PAGE_SHIFT)) {
		huge_pfn = PHYS_PFN(huge);
		huge_phys = huge;
	}
	strscpy(bar_source, source, sizeof(bar_source));
	return true;
}

/*
 * Rank prefetchable memory BARs: ivshmem first (plain memory), then BARs no
 * driver owns, then BARs with room for the ZONE_DEVICE chunks and a PMD leaf,
 * then the smallest.
 */
static int p2pv_score(struct pci_dev *pdev, int bar)
{
	resource_size_t start = pci_resource_start(pdev, bar);
	resource_size_t len = pci_resource_len(pdev, bar);
	int score = 0;

	if (pdev->vendor == P2PV_IVSHMEM_VENDOR && pdev->device == P2PV_IVSHMEM_DEVICE)
		score += 8;
	if (!pdev->dev.driver)
		score += 4;
	/* Room for the ZONE_DEVICE chunks and a PMD leaf after them, as p2pv_use_range() lays them out. */
	if (ALIGN(ALIGN(start, (resource_size_t)P2PV_CHUNK_STRIDE) + P2PV_NR_DEVMEM * P2PV_CHUNK_STRIDE,
		  (resource_size_t)PMD_SIZE) + PMD_SIZE <= start + len)
		score += 2;
	return score;
}

static void p2pv_pick_range(void)
{
	struct pci_dev *pdev = NULL;
	phys_addr_t best_start = 0;
	resource_size_t best_len = 0;
	int best_score = -1;
	char source[sizeof(bar_source)] = "";
	int bar;

	if (bar_phys) {
		if (!p2pv_use_range(bar_phys, bar_size ? bar_size : P2PV_SMALL_LEN, "bar_phys="))
			pr_warn(P2PV_NAME ": bar_phys=%#lx has a memmap or lies in RAM: ignored\n", bar_phys);
		return;
	}
	while ((pdev = pci_get_device(PCI_ANY_ID, PCI_ANY_ID, pdev)) != NULL) {
		for (bar = 0; bar < PCI_STD_NUM_BARS; bar++) {
			unsigned long flags = pci_resource_flags(pdev, bar);
			resource_size_t start = pci_resource_start(pdev, bar);
			resource_size_t len = pci_resource_len(pdev, bar);
			int score;

			if (!(flags & IORESOURCE_MEM) || !(flags & IORESOURCE_PREFETCH) ||
			    !start || len < P2PV_SMALL_LEN || !p2pv_above_ram(PHYS_PFN(start)) ||
			    !p2pv_no_memmap(PHYS_PFN(start), P2PV_SMALL_LEN >> PAGE_SHIFT))
				continue;
			score = p2pv_score(pdev, bar);
			if (score > best_score || (score == best_score && len < best_len)) {
				best_score = score;
				best_start = start;
				best_len = len;
				snprintf(source, sizeof(source), "pci %s bar %d", pci_name(pdev), bar);
			}
		}
	}
	if (best_score >= 0)
		p2pv_use_range(best_start, best_len, source);
}

/* ------------------------------------------------------------ ZONE_DEVICE memory of our own */

#ifdef CONFIG_ZONE_DEVICE
/*
 * One chunk of memremap_pages() memory. The words after the pgmap stay zero:
 * a tool that takes a P2PDMA pgmap for the struct pci_p2pdma_pagemap it
 * normally sits in reads a NULL provider there.
 */
struct p2pv_devmem_chunk {
	struct dev_pagemap pgmap;
	void *zero[4];
	unsigned long pfn;
};

static struct p2pv_devmem_chunk *devmem[P2PV_NR_DEVMEM];
static int p2pv_owner;	/* dev_pagemap.owner: any unique pointer */

static const enum memory_type devmem_type[P2PV_NR_DEVMEM] = {
	[P2PV_DM_P2PDMA] = MEMORY_DEVICE_PCI_P2PDMA,
	[P2PV_DM_GENERIC] = MEMORY_DEVICE_GENERIC,
	[P2PV_DM_COHERENT] = MEMORY_DEVICE_COHERENT,
	[P2PV_DM_PRIVATE] = MEMORY_DEVICE_PRIVATE,
};

static const char *const devmem_name[P2PV_NR_DEVMEM] = {
	[P2PV_DM_P2PDMA] = "pci-p2pdma",
	[P2PV_DM_GENERIC] = "generic",
	[P2PV_DM_COHERENT] = "coherent",
	[P2PV_DM_PRIVATE] = "private",
};

/*
 * No page of ours is ever handed out (the cases map them without taking a
 * reference), so none is ever freed. dev_pagemap_ops.page_free became
 * folio_free in v6.19 (large device-private folios).
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 19, 0)
static void p2pv_folio_free(struct folio *folio)
{
	WARN_ONCE(1, P2PV_NAME ": pfn %#lx freed, but no page is ever handed out\n", folio_pfn(folio));
}
#else
static void p2pv_page_free(struct page *page)
{
	WARN_ONCE(1, P2PV_NAME ": pfn %#lx freed, but no page is ever handed out\n", page_to_pfn(page));
}
#endif

/* Required for DEVICE_PRIVATE; no device-private entry to our pages is ever made. */
static vm_fault_t p2pv_migrate_to_ram(struct vm_fault *vmf)
{
	return VM_FAULT_SIGBUS;
}

static const struct dev_pagemap_ops p2pv_pgmap_ops = {
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 19, 0)
	.folio_free = p2pv_folio_free,
#else
	.page_free = p2pv_page_free,
#endif
	.migrate_to_ram = p2pv_migrate_to_ram,
};

/* memremap_pages() one P2PV_CHUNK_LEN chunk per kind from base, P2PV_CHUNK_STRIDE apart (DEVICE_PRIVATE only where configured). */
static void p2pv_devmem_create(phys_addr_t base)
{
	int i;

	for (i = 0; i < P2PV_NR_DEVMEM; i++) {
		phys_addr_t start = base + (phys_addr_t)i * P2PV_CHUNK_STRIDE;
		struct p2pv_devmem_chunk *c;
		void *va;

		if (devmem_type[i] == MEMORY_DEVICE_PRIVATE && !IS_ENABLED(CONFIG_DEVICE_PRIVATE))
			continue;
		c = kzalloc(sizeof(*c), GFP_KERNEL);
		if (!c)
			return;
		c->pgmap.type = devmem_type[i];
		c->pgmap.range.start = start;
		c->pgmap.range.end = start + P2PV_CHUNK_LEN - 1;
		c->pgmap.nr_range = 1;
		/*
		 * Device-dax (dev_dax_probe()) leaves ops and owner NULL, and that
		 * is how an auditor tells it from other MEMORY_DEVICE_GENERIC
		 * users (Xen's unpopulated-alloc sets owner): the GENERIC chunk
		 * stands for device-dax, so it has neither.
		 */
		if (devmem_type[i] != MEMORY_DEVICE_GENERIC) {
			c->pgmap.ops = &p2pv_pgmap_ops;
			c->pgmap.owner = &p2pv_owner;
		}
		va = memremap_pages(&c->pgmap, NUMA_NO_NODE);
		if (IS_ERR(va)) {
			pr_warn(P2PV_NAME ": memremap_pages(%s, %pa) failed: %ld\n",
				devmem_name[i], &start, PTR_ERR(va));
			kfree(c);
			continue;
		}
		c->pfn = PHYS_PFN(start);
		devmem[i] = c;
		pr_info(P2PV_NAME ": ZONE_DEVICE %s pages at pfn %#lx+512\n", devmem_name[i], c->pfn);
	}
}

static void p2pv_devmem_destroy(void)
{
	int i;

	for (i = 0; i < P2PV_NR_DEVMEM; i++) {
		if (!devmem[i])
			continue;
		memunmap_pages(&devmem[i]->pgmap);
		kfree(devmem[i]);
		devmem[i] = NULL;
	}
}

/* 0 if the chunk of kind i exists, else -ENODEV. */
static int p2pv_devmem_ready(enum p2pv_devmem i)
{
	return devmem[i] ? 0 : -ENODEV;
}

static unsigned long p2pv_devmem_pfn(enum p2pv_devmem i)
{
	return devmem[i] ? devmem[i]->pfn : 0;
}
#else /* !CONFIG_ZONE_DEVICE */
static void p2pv_devmem_create(phys_addr_t base)
{
}

static void p2pv_devmem_destroy(void)
{
}

static int p2pv_devmem_ready(enum p2pv_devmem i)
{
	return -EOPNOTSUPP;
}

static unsigned long p2pv_devmem_pfn(enum p2pv_devmem i)
{
	return 0;
}
#endif /* CONFIG_ZONE_DEVICE */

/*
 * The ZONE_DEVICE PFNs a case maps: its kind's chunk, at an offset of its
 * own so that no two cases share a page.
 */
static unsigned long p2pv_case_pfn(unsigned int kase)
{
	switch (kase) {
	case P2PV_P2PDMA_SPECIAL:
		return p2pv_devmem_pfn(P2PV_DM_P2PDMA);
	case P2PV_MIXEDMAP_PAGES:
		return p2pv_devmem_pfn(P2PV_DM_P2PDMA) + 16;
	case P2PV_P2PDMA_NO_MIXEDMAP:
		return p2pv_devmem_pfn(P2PV_DM_P2PDMA) + 4;
	case P2PV_MIGRATION_TO_P2PDMA:
		return p2pv_devmem_pfn(P2PV_DM_P2PDMA) + 8;
	case P2PV_EXCLUSIVE_TO_P2PDMA:
		return p2pv_devmem_pfn(P2PV_DM_P2PDMA) + 12;
	case P2PV_DEVDAX_SPECIAL:
		return p2pv_devmem_pfn(P2PV_DM_GENERIC);
	case P2PV_DEVDAX_IN_PFNMAP:
		return p2pv_devmem_pfn(P2PV_DM_GENERIC) + 4;
	case P2PV_COHERENT_IN_PFNMAP:
		return p2pv_devmem_pfn(P2PV_DM_COHERENT);
	case P2PV_PRIVATE_PRESENT:
		return p2pv_devmem_pfn(P2PV_DM_PRIVATE);
	default:
		return 0;
	}
}

/* ------------------------------------------------------------ PTE and PMD bits */

struct p2pv_bits {
	struct mm_struct *mm;
	pteval_t set;
	pteval_t clear;
};

static int p2pv_pte_bits(pte_t *ptep, unsigned long addr, void *data)
{
	struct p2pv_bits *bits = data;
	pte_t pte = ptep_get(ptep);

	if (!pte_present(pte))
		return 0;
	pte = p2pv_pte_change(pte, bits->set, bits->clear);
	/* Only software bits change: no TLB flush is needed. */
	p2pv_set_pte(bits->mm, addr, ptep, pte);
	return 0;
}

/* Set and clear PTE bits over a populated range (apply_to_page_range takes the PTE locks). */
static int p2pv_change_ptes(struct vm_area_struct *vma, unsigned long start,
			    unsigned long end, pteval_t set, pteval_t clear)
{
	struct p2pv_bits bits = { .mm = vma->vm_mm, .set = set, .clear = clear };

	return apply_to_page_range(vma->vm_mm, start, end - start, p2pv_pte_bits, &bits);
}

/*
 * A PTE-marker bit that no kernel defines (uffd-wp is bit 0, poisoned bit 1,
 * guard bit 2 up to v7.2): such a marker matches no entry format.
 */
#define P2PV_MARKER_UNKNOWN	BIT(6)

/*
 * Device-private and device-exclusive entries exist only with
 * CONFIG_DEVICE_PRIVATE. v6.15 ("mm: use single SWP_DEVICE_EXCLUSIVE entry
 * type") merged SWP_DEVICE_EXCLUSIVE_WRITE and _READ into one type.
 */
#ifdef CONFIG_DEVICE_PRIVATE
#define P2PV_DEVICE_ENTRIES 1

static swp_entry_t p2pv_exclusive_entry(unsigned long pfn)
{
#ifdef SWP_DEVICE_EXCLUSIVE
	return make_device_exclusive_entry(pfn);
#else
	return make_writable_device_exclusive_entry(pfn);
#endif
}
#endif

enum p2pv_fill_what {
	P2PV_FILL_NONE,		/* pte_clear() */
	P2PV_FILL_MIGRATION,	/* a readable migration entry to pfn + index */
	P2PV_FILL_MARKER,	/* a PTE marker with P2PV_MARKER_UNKNOWN */
	P2PV_FILL_PRIVATE,	/* a writable device-private entry to pages[index] */
	P2PV_FILL_EXCLUSIVE,	/* a device-exclusive entry to pfn + index */
};

struct p2pv_fill {
	struct mm_struct *mm;
	unsigned long start;
	enum p2pv_fill_what what;
	unsigned long pfn;
	struct page *const *pages;
};

static int p2pv_fill_pte(pte_t *ptep, unsigned long addr, void *data)
{
	struct p2pv_fill *fill = data;
	unsigned long idx = (addr - fill->start) >> PAGE_SHIFT;
	pte_t pte;

	if (pte_present(ptep_get(ptep)))
		return -EEXIST;	/* only empty or our non-present entries are replaced */
	switch (fill->what) {
	case P2PV_FILL_NONE:
		pte_clear(fill->mm, addr, ptep);
		return 0;
	case P2PV_FILL_MIGRATION:
		pte = swp_entry_to_pte(make_readable_migration_entry(fill->pfn + idx));
		break;
#ifdef SWP_PTE_MARKER
	case P2PV_FILL_MARKER:
		pte = make_pte_marker(P2PV_MARKER_UNKNOWN);
		break;
#endif
#ifdef P2PV_DEVICE_ENTRIES
	case P2PV_FILL_PRIVATE:
		pte = swp_entry_to_pte(make_writable_device_private_entry(page_to_pfn(fill->pages[idx])));
		break;
	case P2PV_FILL_EXCLUSIVE:
		pte = swp_entry_to_pte(p2pv_exclusive_entry(fill->pfn + idx));
		break;
#endif
	default:
		return -EINVAL;
	}
	p2pv_set_pte(fill->mm, addr, ptep, pte);
	return 0;
}

/*
 * Write non-present entries over [start, end) (allocating page tables as
 * needed), or clear them again. No rss counter or reference changes: none
 * of these entries is counted, and cleared ones were never mapped.
 */
static int p2pv_fill_ptes(struct vm_area_struct *vma, unsigned long start, unsigned long end,
			  enum p2pv_fill_what what, unsigned long pfn, struct page *const *pages)
{
	struct p2pv_fill fill = {
		.mm = vma->vm_mm, .start = start, .what = what, .pfn = pfn, .pages = pages,
	};

	return apply_to_page_range(vma->vm_mm, start, end - start, p2pv_fill_pte, &fill);
}

/*
 * The special bit on PMD leaves exists since v6.12 ("mm/x86: support large
 * pfn mappings", which selects ARCH_SUPPORTS_PMD_PFNMAP). Before it no PMD
 * PFN leaf can be special, so there is no correct huge PFNMAP at all.
 */
#if defined(CONFIG_TRANSPARENT_HUGEPAGE) && defined(CONFIG_ARCH_SUPPORTS_PMD_PFNMAP)
#define P2PV_PMD_SPECIAL 1

static void p2pv_pmd_special(struct mm_struct *mm, unsigned long addr, pmd_t *pmdp, bool special)
{
	spinlock_t *ptl = pmd_lock(mm, pmdp);
	pmd_t pmd = *pmdp;

	if (pmd_present(pmd) && pmd_leaf(pmd))
		p2pv_set_pmd(mm, addr, pmdp, special ? pmd_mkspecial(pmd) : p2pv_pmd_clear_special(pmd));
	spin_unlock(ptl);
}

/* The PMD entry mapping addr, or NULL when no PMD table is there. */
static pmd_t *p2pv_find_pmd(struct mm_struct *mm, unsigned long addr)
{
	pgd_t *pgd = pgd_offset(mm, addr);
	p4d_t *p4d;
	pud_t *pud;

	if (pgd_none(*pgd) || pgd_bad(*pgd))
		return NULL;
	p4d = p4d_offset(pgd, addr);
	if (p4d_none(*p4d) || p4d_bad(*p4d))
		return NULL;
	pud = pud_offset(p4d, addr);
	if (pud_none(*pud) || pud_leaf(*pud) || pud_bad(*pud))
		return NULL;
	return pmd_offset(pud, addr);
}
#endif

/* ------------------------------------------------------------ VMA operations */

static void p2pv_map_release(struct kref *ref)
{
	struct p2pv_map *map = container_of(ref, struct p2pv_map, ref);
	unsigned int i;

	mutex_lock(&map->file->lock);
	list_del(&map->node);
	mutex_unlock(&map->file->lock);
	for (i = 0; i < map->nlocked; i++)
		unlock_page(pfn_to_page(map->locked_pfn + i));
	if (map->pinned) {
		/*
		 * Never restored (the holder was killed): zap met device-private
		 * entries to these pages and dropped references and rmaps they
		 * never had. Leak the pages rather than free them in that state.
		 */
		pr_warn(P2PV_NAME ": %s: entries were never cleared; leaking %u pages\n",
			case_name[map->kase], map->npages);
		map->npages = 0;
	}
	for (i = 0; i < map->npages; i++)
		if (map->pages[i])
			__free_page(map->pages[i]);
	kfree(map);
}

static void p2pv_vm_open(struct vm_area_struct *vma)
{
	struct p2pv_map *map = vma->vm_private_data;

	kref_get(&map->ref);
}

static void p2pv_vm_close(struct vm_area_struct *vma)
{
	struct p2pv_map *map = vma->vm_private_data;

	kref_put(&map->ref, p2pv_map_release);
}

#ifdef CONFIG_TRANSPARENT_HUGEPAGE
/*
 * Install a PMD PFN leaf from the ordinary ->fault handler: the PTE-level
 * fault path reaches it with the PMD still empty (no ->huge_fault is needed,
 * and 6.1 would never call ->huge_fault for a VM_PFNMAP VMA anyway).
 */
static vm_fault_t p2pv_fault_pmd(struct vm_fault *vmf, struct p2pv_map *map)
{
	struct vm_area_struct *vma = vmf->vma;
	unsigned long haddr = vmf->address & PMD_MASK;
	bool write = vma->vm_flags & VM_WRITE;
	vm_fault_t ret;

	/* 7.x vmf_insert_pfn_pmd() no longer checks that the VMA covers the PMD. */
	if (haddr < vma->vm_start || haddr + PMD_SIZE > vma->vm_end || !pmd_none(*vmf->pmd))
		return VM_FAULT_SIGBUS;
#ifdef P2PV_HAVE_PFN_T
	ret = vmf_insert_pfn_pmd(vmf, pfn_to_pfn_t(huge_pfn), write);
#else
	ret = vmf_insert_pfn_pmd(vmf, huge_pfn, write);
#endif
#ifdef P2PV_PMD_SPECIAL
	if (ret == VM_FAULT_NOPAGE && map->kase == P2PV_HUGE_PFN_NOT_SPECIAL)
		p2pv_pmd_special(vma->vm_mm, haddr, vmf->pmd, false);
#endif
	/*
	 * Before 6.12 vmf_insert_pfn_pmd() of a pfn_t without PFN_DEV|PFN_MAP
	 * already leaves a PMD leaf with neither special nor devmap: the
	 * hazardous shape itself.
	 */
	return ret;
}
#endif

static vm_fault_t p2pv_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct p2pv_map *map = vma->vm_private_data;
	unsigned long idx = ((vmf->address & PAGE_MASK) - map->start) >> PAGE_SHIFT;

	switch (map->kase) {
	case P2PV_CONTROL_FAULT_PFN:
		if (idx >= map->npages)
			return VM_FAULT_SIGBUS;
		return vmf_insert_pfn(vma, vmf->address & PAGE_MASK, page_to_pfn(map->pages[idx]));
#ifdef CONFIG_TRANSPARENT_HUGEPAGE
	case P2PV_CONTROL_HUGE_PFN:
	case P2PV_HUGE_PFN_NOT_SPECIAL:
		return p2pv_fault_pmd(vmf, map);
#endif
	default:
		/* Every other case is fully populated by mmap(). */
		return VM_FAULT_SIGBUS;
	}
}

static const struct vm_operations_struct p2pv_vm_ops = {
	.open = p2pv_vm_open,
	.close = p2pv_vm_close,
	.fault = p2pv_fault,
};

/* ------------------------------------------------------------ the cases */

/* 0 if the running kernel and the found ranges can build kase, else -errno. */
static int p2pv_can_build(unsigned int kase)
{
	switch (kase) {
	case P2PV_CONTROL_REMAP:
	case P2PV_NOMEMMAP_NO_PFNMAP:
	case P2PV_PFNMAP_NOT_SPECIAL:
		return nm_pfn ? 0 : -ENODEV;
	case P2PV_CONTROL_HUGE_PFN:
#ifndef P2PV_PMD_SPECIAL
		return -EOPNOTSUPP;	/* no correct PMD PFN leaf before 6.12 */
#endif
		return huge_pfn ? 0 : -ENODEV;
	case P2PV_HUGE_PFN_NOT_SPECIAL:
#ifndef CONFIG_TRANSPARENT_HUGEPAGE
		return -EOPNOTSUPP;
#endif
		return huge_pfn ? 0 : -ENODEV;
	case P2PV_DEVMAP_ON_RAM:
	case P2PV_DEVMAP_NOT_SPECIAL:
		/* The devmap PTE bit is gone since v6.17 (with pte_devmap()). */
#ifndef P2PV_DEVMAP
		return -EOPNOTSUPP;
#endif
		return 0;
	case P2PV_P2PDMA_SPECIAL:
	case P2PV_P2PDMA_NO_MIXEDMAP:
	case P2PV_MIXEDMAP_PAGES:
		return p2pv_devmem_ready(P2PV_DM_P2PDMA);
	case P2PV_MIGRATION_TO_P2PDMA:
#ifndef CONFIG_MIGRATION
		return -EOPNOTSUPP;
#endif
		return p2pv_devmem_ready(P2PV_DM_P2PDMA);
	case P2PV_DEVDAX_SPECIAL:
	case P2PV_DEVDAX_IN_PFNMAP:
		return p2pv_devmem_ready(P2PV_DM_GENERIC);
	case P2PV_COHERENT_IN_PFNMAP:
		return p2pv_devmem_ready(P2PV_DM_COHERENT);
	case P2PV_PRIVATE_PRESENT:
		/* Without CONFIG_DEVICE_PRIVATE no device-private page can exist. */
		if (!IS_ENABLED(CONFIG_DEVICE_PRIVATE))
			return -EOPNOTSUPP;
		return p2pv_devmem_ready(P2PV_DM_PRIVATE);
	case P2PV_UNKNOWN_MARKER:
		/* PTE markers: CONFIG_PTE_MARKER in 6.1, always there later. */
#ifndef SWP_PTE_MARKER
		return -EOPNOTSUPP;
#endif
		return 0;
	case P2PV_PRIVATE_ENTRY_TO_RAM:
		/* No device-private or device-exclusive swap type without CONFIG_DEVICE_PRIVATE. */
#ifndef P2PV_DEVICE_ENTRIES
		return -EOPNOTSUPP;
#endif
		return 0;
	case P2PV_EXCLUSIVE_TO_P2PDMA:
#ifndef P2PV_DEVICE_ENTRIES
		return -EOPNOTSUPP;
#endif
		return p2pv_devmem_ready(P2PV_DM_P2PDMA);
	default:
		return 0;
	}
}

static bool p2pv_needs_pages(unsigned int kase)
{
	return kase == P2PV_CONTROL_FAULT_PFN || kase == P2PV_SPECIAL_ON_RAM ||
	       kase == P2PV_DEVMAP_ON_RAM ||
	       kase == P2PV_PFNMAP_RAM_NOT_SPECIAL || kase == P2PV_DEVMAP_NOT_SPECIAL ||
	       kase == P2PV_PRIVATE_ENTRY_TO_RAM;
}

static int p2pv_insert_pages(struct vm_area_struct *vma, struct p2pv_map *map)
{
	unsigned int i;
	int ret;

	for (i = 0; i < map->npages; i++) {
		ret = vm_insert_page(vma, vma->vm_start + i * PAGE_SIZE, map->pages[i]);
		if (ret)
			return ret;
	}
	return 0;
}

/* What vmf_insert_pfn() does at fault time for control-fault-pfn, for every page now. */
static int p2pv_insert_pfns(struct vm_area_struct *vma, struct p2pv_map *map)
{
	unsigned int i;

	for (i = 0; i < map->npages; i++) {
		vm_fault_t ret = vmf_insert_pfn(vma, vma->vm_start + i * PAGE_SIZE,
						page_to_pfn(map->pages[i]));

		if (ret != VM_FAULT_NOPAGE)
			return -EFAULT;
	}
	return 0;
}

/*
 * Map the case's ZONE_DEVICE pages as a PCI BAR mmap would map them:
 * VM_IO|VM_PFNMAP and special PTEs (no reference on the pages). The
 * default cache mode is asked for; PAT keeps the one memremap_pages() or an
 * earlier mapping of the range reserved.
 */
static int p2pv_remap_devmem(struct vm_area_struct *vma, struct p2pv_map *map)
{
	return remap_pfn_range(vma, vma->vm_start, p2pv_case_pfn(map->kase),
			       vma->vm_end - vma->vm_start, vma->vm_page_prot);
}

static void p2pv_unlock_pages(struct p2pv_map *map)
{
	while (map->nlocked)
		unlock_page(pfn_to_page(map->locked_pfn + --map->nlocked));
}

/*
 * Migration entries to P2PDMA pages. The pages are locked first, as
 * migration holds the source page locked for as long as its entries exist.
 */
static int p2pv_build_migration(struct vm_area_struct *vma, struct p2pv_map *map)
{
	unsigned long pfn = p2pv_case_pfn(map->kase);
	unsigned int i, n = (vma->vm_end - vma->vm_start) >> PAGE_SHIFT;

	p2pv_flags_set(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
	map->locked_pfn = pfn;
	for (i = 0; i < n; i++) {
		if (!trylock_page(pfn_to_page(pfn + i)))
			return -EBUSY;
		map->nlocked++;
	}
	return p2pv_fill_ptes(vma, vma->vm_start, vma->vm_end, P2PV_FILL_MIGRATION, pfn, NULL);
}

/* Drop the extra reference each page of map holds while entries name it. */
static void p2pv_unpin_pages(struct p2pv_map *map)
{
	unsigned int i;

	if (!map->pinned)
		return;
	for (i = 0; i < map->npages; i++)
		put_page(map->pages[i]);
	map->pinned = false;
}

#ifdef P2PV_DEVICE_ENTRIES
/* Take that reference, before any entry names the pages. */
static void p2pv_pin_pages(struct p2pv_map *map)
{
	unsigned int i;

	for (i = 0; i < map->npages; i++)
		get_page(map->pages[i]);
	map->pinned = true;
}

/*
 * Device-private entries to RAM pages of ours (pinned first), or
 * device-exclusive entries to P2PDMA pages, in a VM_PFNMAP|VM_IO VMA that
 * nothing but this module and the auditor's reads ever walks (see the top
 * of this file).
 */
static int p2pv_build_device_entries(struct vm_area_struct *vma, struct p2pv_map *map)
{
	p2pv_flags_set(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
	if (map->kase == P2PV_PRIVATE_ENTRY_TO_RAM) {
		p2pv_pin_pages(map);
		return p2pv_fill_ptes(vma, vma->vm_start, vma->vm_end, P2PV_FILL_PRIVATE, 0, map->pages);
	}
	return p2pv_fill_ptes(vma, vma->vm_start, vma->vm_end, P2PV_FILL_EXCLUSIVE,
			      p2pv_case_pfn(map->kase), NULL);
}
#endif

/* Build the case's mapping in a new VMA; the mmap lock is held for writing. */
static int p2pv_build(struct vm_area_struct *vma, struct p2pv_map *map)
{
	unsigned long start = vma->vm_start, end = vma->vm_end, len = end - start;
	int ret;

	switch (map->kase) {
	case P2PV_CONTROL_REMAP:
	case P2PV_NOMEMMAP_NO_PFNMAP:
	case P2PV_PFNMAP_NOT_SPECIAL:
		/* What a PCI BAR mmap does: uncached, VM_IO|VM_PFNMAP, special PTEs. */
		vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
		ret = remap_pfn_range(vma, start, nm_pfn, len, vma->vm_page_prot);
		if (ret)
			return ret;
		if (map->kase == P2PV_NOMEMMAP_NO_PFNMAP)
			p2pv_flags_clear(vma, VM_PFNMAP | VM_IO);
		else if (map->kase == P2PV_PFNMAP_NOT_SPECIAL)
			return p2pv_change_ptes(vma, start, end, 0, P2PV_SPECIAL);
		return 0;
	case P2PV_CONTROL_FAULT_PFN:
		/* A PFNMAP of RAM pages filled by vmf_insert_pfn() at fault time. */
		p2pv_flags_set(vma, VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
		return 0;
	case P2PV_CONTROL_HUGE_PFN:
	case P2PV_HUGE_PFN_NOT_SPECIAL:
		vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
		p2pv_flags_set(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
		return 0;
	case P2PV_MIXEDMAP_PAGES:
		/*
		 * What p2pmem_alloc_mmap() makes: ZONE_DEVICE pages under plain
		 * PTEs in a VMA that vm_insert_page() marked VM_MIXEDMAP, with
		 * no pure PFN in it.
		 */
		ret = p2pv_remap_devmem(vma, map);
		if (ret)
			return ret;
		p2pv_flags_clear(vma, VM_PFNMAP | VM_IO);
		p2pv_flags_set(vma, VM_MIXEDMAP);
		return p2pv_change_ptes(vma, start, end, 0, P2PV_SPECIAL);
	case P2PV_SPECIAL_ON_RAM:
		ret = p2pv_insert_pages(vma, map);
		if (ret)
			return ret;
		p2pv_flags_clear(vma, VM_MIXEDMAP);
		return p2pv_change_ptes(vma, start, end, P2PV_SPECIAL, 0);
#ifdef P2PV_DEVMAP
	case P2PV_DEVMAP_ON_RAM:
		ret = p2pv_insert_pages(vma, map);
		if (ret)
			return ret;
		/* What pte_mkdevmap() sets (devmap + special), on a RAM page. */
		return p2pv_change_ptes(vma, start, end, P2PV_DEVMAP | P2PV_SPECIAL, 0);
	case P2PV_DEVMAP_NOT_SPECIAL:
		/* Devmap without special: no pte_mkdevmap() ever made that. */
		ret = p2pv_insert_pages(vma, map);
		if (ret)
			return ret;
		p2pv_flags_clear(vma, VM_MIXEDMAP);
		return p2pv_change_ptes(vma, start, end, P2PV_DEVMAP, 0);
#endif
	case P2PV_PFNMAP_RAM_NOT_SPECIAL:
		/* control-fault-pfn's mapping, filled now, with the special bit cleared. */
		p2pv_flags_set(vma, VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
		ret = p2pv_insert_pfns(vma, map);
		if (ret)
			return ret;
		return p2pv_change_ptes(vma, start, end, 0, P2PV_SPECIAL);
	case P2PV_P2PDMA_SPECIAL:
		/*
		 * Special PTEs on P2PDMA pages in the VMA shape p2pmem_alloc_mmap()
		 * makes (VM_MIXEDMAP, no VM_PFNMAP). The PFNMAP form, a sysfs
		 * resourceN mmap of a BAR that also hosts p2pmem, is legitimate;
		 * this one no kernel path makes.
		 */
		ret = p2pv_remap_devmem(vma, map);
		if (ret)
			return ret;
		p2pv_flags_clear(vma, VM_PFNMAP | VM_IO);
		p2pv_flags_set(vma, VM_MIXEDMAP);
		return 0;
	case P2PV_COHERENT_IN_PFNMAP:
	case P2PV_PRIVATE_PRESENT:
		/* ZONE_DEVICE pages as if they were a BAR: special PTEs in VM_PFNMAP. */
		return p2pv_remap_devmem(vma, map);
	case P2PV_P2PDMA_NO_MIXEDMAP:
		/* P2PDMA's plain PTEs, but in a VMA with neither VM_MIXEDMAP nor VM_PFNMAP. */
		ret = p2pv_remap_devmem(vma, map);
		if (ret)
			return ret;
		p2pv_flags_clear(vma, VM_PFNMAP | VM_IO);
		return p2pv_change_ptes(vma, start, end, 0, P2PV_SPECIAL);
	case P2PV_DEVDAX_SPECIAL:
		/* Special-only PTEs in a plain VMA: devmap missing (<= 6.16), special extra (7.x). */
		ret = p2pv_remap_devmem(vma, map);
		if (ret)
			return ret;
		p2pv_flags_clear(vma, VM_PFNMAP | VM_IO);
		return 0;
	case P2PV_DEVDAX_IN_PFNMAP:
		ret = p2pv_remap_devmem(vma, map);
		if (ret)
			return ret;
#ifdef P2PV_DEVMAP
		/* Right bits for this kernel's DAX PTEs (pte_mkdevmap()), wrong VMA. */
		return p2pv_change_ptes(vma, start, end, P2PV_DEVMAP, 0);
#else
		/* Right bits for refcounted DAX folios (plain PTEs), wrong VMA. */
		return p2pv_change_ptes(vma, start, end, 0, P2PV_SPECIAL);
#endif
	case P2PV_MIGRATION_TO_P2PDMA:
		return p2pv_build_migration(vma, map);
#ifdef SWP_PTE_MARKER
	case P2PV_UNKNOWN_MARKER:
		p2pv_flags_set(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
		return p2pv_fill_ptes(vma, start, end, P2PV_FILL_MARKER, 0, NULL);
#endif
#ifdef P2PV_DEVICE_ENTRIES
	case P2PV_PRIVATE_ENTRY_TO_RAM:
	case P2PV_EXCLUSIVE_TO_P2PDMA:
		return p2pv_build_device_entries(vma, map);
#endif
	default:
		return -EOPNOTSUPP;
	}
}

/* Undo what p2pv_build() broke, so that zapping the VMA is clean. Mmap lock held for writing. */
static void p2pv_restore(struct vm_area_struct *vma, struct p2pv_map *map)
{
	switch (map->kase) {
	case P2PV_NOMEMMAP_NO_PFNMAP:
		p2pv_flags_set(vma, VM_PFNMAP | VM_IO);
		break;
	case P2PV_PFNMAP_NOT_SPECIAL:
		p2pv_change_ptes(vma, vma->vm_start, vma->vm_end, P2PV_SPECIAL, 0);
		break;
	case P2PV_HUGE_PFN_NOT_SPECIAL:
#ifdef P2PV_PMD_SPECIAL
	{
		unsigned long addr;

		for (addr = ALIGN(vma->vm_start, PMD_SIZE); addr + PMD_SIZE <= vma->vm_end;
		     addr += PMD_SIZE) {
			pmd_t *pmdp = p2pv_find_pmd(vma->vm_mm, addr);

			if (pmdp)
				p2pv_pmd_special(vma->vm_mm, addr, pmdp, true);
		}
	}
#endif
		/* Before 6.12 zap_huge_pmd() clears a PFNMAP PMD leaf without looking at it. */
		break;
	case P2PV_SPECIAL_ON_RAM:
		p2pv_change_ptes(vma, vma->vm_start, vma->vm_end, 0, P2PV_SPECIAL);
		p2pv_flags_set(vma, VM_MIXEDMAP);
		break;
#ifdef P2PV_DEVMAP
	case P2PV_DEVMAP_ON_RAM:
		p2pv_change_ptes(vma, vma->vm_start, vma->vm_end, 0, P2PV_DEVMAP | P2PV_SPECIAL);
		break;
	case P2PV_DEVMAP_NOT_SPECIAL:
		p2pv_change_ptes(vma, vma->vm_start, vma->vm_end, 0, P2PV_DEVMAP);
		p2pv_flags_set(vma, VM_MIXEDMAP);
		break;
#endif
	case P2PV_PFNMAP_RAM_NOT_SPECIAL:
		p2pv_change_ptes(vma, vma->vm_start, vma->vm_end, P2PV_SPECIAL, 0);
		break;
	case P2PV_P2PDMA_SPECIAL:
		p2pv_flags_clear(vma, VM_MIXEDMAP);
		p2pv_flags_set(vma, VM_PFNMAP | VM_IO);
		break;
	case P2PV_P2PDMA_NO_MIXEDMAP:
		p2pv_flags_set(vma, VM_PFNMAP | VM_IO);
		p2pv_change_ptes(vma, vma->vm_start, vma->vm_end, P2PV_SPECIAL, 0);
		break;
	case P2PV_MIXEDMAP_PAGES:
		/* Back to remap_pfn_range()'s shape: zap then takes no reference it never had. */
		p2pv_flags_clear(vma, VM_MIXEDMAP);
		p2pv_flags_set(vma, VM_PFNMAP | VM_IO);
		p2pv_change_ptes(vma, vma->vm_start, vma->vm_end, P2PV_SPECIAL, 0);
		break;
	case P2PV_DEVDAX_SPECIAL:
		p2pv_flags_set(vma, VM_PFNMAP | VM_IO);
		break;
	case P2PV_DEVDAX_IN_PFNMAP:
#ifdef P2PV_DEVMAP
		p2pv_change_ptes(vma, vma->vm_start, vma->vm_end, 0, P2PV_DEVMAP);
#else
		p2pv_change_ptes(vma, vma->vm_start, vma->vm_end, P2PV_SPECIAL, 0);
#endif
		break;
	case P2PV_MIGRATION_TO_P2PDMA:
	case P2PV_UNKNOWN_MARKER:
		/* Empty PTEs in a VM_PFNMAP VMA; then the pages may be unlocked. */
		p2pv_fill_ptes(vma, vma->vm_start, vma->vm_end, P2PV_FILL_NONE, 0, NULL);
		p2pv_unlock_pages(map);
		break;
	case P2PV_PRIVATE_ENTRY_TO_RAM:
	case P2PV_EXCLUSIVE_TO_P2PDMA:
		/* Empty PTEs before any unmap: zap never sees the wrong entries. */
		p2pv_fill_ptes(vma, vma->vm_start, vma->vm_end, P2PV_FILL_NONE, 0, NULL);
		p2pv_unpin_pages(map);
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------ file operations */

static int p2pv_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct p2pv_file *pf = file->private_data;
	unsigned long kase = vma->vm_pgoff;
	unsigned long len = vma->vm_end - vma->vm_start;
	struct p2pv_map *map;
	unsigned int i, npages = 0;
	int ret;

	if (kase >= P2PV_NR_CASES || len != p2pv_case_len(kase) || !(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (case_huge[kase] && !IS_ALIGNED(vma->vm_start, PMD_SIZE))
		return -EINVAL;
	ret = p2pv_can_build(kase);
	if (ret)
		return ret;

	if (p2pv_needs_pages(kase))
		npages = len >> PAGE_SHIFT;
	map = kzalloc(struct_size(map, pages, npages), GFP_KERNEL);
	if (!map)
		return -ENOMEM;
	kref_init(&map->ref);
	map->file = pf;
	map->mm = vma->vm_mm;
	map->kase = kase;
	map->start = vma->vm_start;
	map->npages = npages;
	for (i = 0; i < npages; i++) {
		map->pages[i] = alloc_page(GFP_KERNEL | __GFP_ZERO);
		if (!map->pages[i]) {
			ret = -ENOMEM;
			goto fail;
		}
	}

	/* No VMA of ours is inherited, and no merge or expansion may change one. */
	p2pv_flags_set(vma, VM_DONTCOPY | VM_DONTEXPAND);
	vma->vm_ops = &p2pv_vm_ops;
	vma->vm_private_data = map;
	ret = p2pv_build(vma, map);
	if (ret) {
		/*
		 * mmap() fails and the kernel unmaps whatever was inserted;
		 * restore first so that zap is clean, and make sure ->close is
		 * not called. Inserted pages hold their own references.
		 */
		p2pv_restore(vma, map);
		vma->vm_private_data = NULL;
		vma->vm_ops = NULL;
		pr_warn(P2PV_NAME ": %s: building the mapping failed (%d)\n", case_name[kase], ret);
		goto fail;
	}
	mutex_lock(&pf->lock);
	list_add_tail(&map->node, &pf->maps);
	mutex_unlock(&pf->lock);
	return 0;

fail:
	for (i = 0; i < npages; i++)
		if (map->pages[i])
			__free_page(map->pages[i]);
	kfree(map);
	return ret;
}

static long p2pv_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct p2pv_file *pf = file->private_data;
	struct mm_struct *mm = current->mm;
	struct p2pv_map *map;
	int restored = 0;

	if (cmd != P2PV_IOC_RESTORE)
		return -ENOTTY;
	if (!mm)
		return -EINVAL;
	mmap_write_lock(mm);
	mutex_lock(&pf->lock);
	list_for_each_entry(map, &pf->maps, node) {
		struct vm_area_struct *vma;

		if (map->mm != mm || map->restored)
			continue;
		vma = find_vma(mm, map->start);
		if (!vma || vma->vm_start > map->start || vma->vm_private_data != map)
			continue;
		p2pv_restore(vma, map);
		map->restored = true;
		restored++;
	}
	mutex_unlock(&pf->lock);
	mmap_write_unlock(mm);
	return restored;
}

static int p2pv_open(struct inode *inode, struct file *file)
{
	struct p2pv_file *pf = kzalloc(sizeof(*pf), GFP_KERNEL);

	if (!pf)
		return -ENOMEM;
	mutex_init(&pf->lock);
	INIT_LIST_HEAD(&pf->maps);
	file->private_data = pf;
	return 0;
}

static int p2pv_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

static const struct file_operations p2pv_fops = {
	.owner = THIS_MODULE,
	.open = p2pv_open,
	.release = p2pv_release,
	.mmap = p2pv_mmap,
	.unlocked_ioctl = p2pv_ioctl,
};

static struct miscdevice p2pv_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = P2PV_NAME,
	.fops = &p2pv_fops,
	.mode = 0600,
};

/*
 * Facts of this kernel as its own headers and configuration define them,
 * for the lab to hold against what drgn-p2p learns from debug info and
 * version tables (-1: the kernel has no such thing).
 */
#ifdef SWP_HWPOISON
#define P2PV_SWP_HWPOISON	SWP_HWPOISON
#else
#define P2PV_SWP_HWPOISON	-1
#endif
#ifdef SWP_MIGRATION_READ
#define P2PV_SWP_MIGRATION_READ	SWP_MIGRATION_READ
#else
#define P2PV_SWP_MIGRATION_READ	-1
#endif
#ifdef SWP_DEVICE_WRITE
#define P2PV_SWP_DEVICE_WRITE	SWP_DEVICE_WRITE
#else
#define P2PV_SWP_DEVICE_WRITE	-1
#endif
#if defined(SWP_DEVICE_EXCLUSIVE)
#define P2PV_SWP_DEVICE_EXCLUSIVE	SWP_DEVICE_EXCLUSIVE
#elif defined(SWP_DEVICE_EXCLUSIVE_WRITE)
#define P2PV_SWP_DEVICE_EXCLUSIVE	SWP_DEVICE_EXCLUSIVE_WRITE
#else
#define P2PV_SWP_DEVICE_EXCLUSIVE	-1
#endif
#ifdef SWP_PTE_MARKER
#define P2PV_SWP_PTE_MARKER	SWP_PTE_MARKER
#else
#define P2PV_SWP_PTE_MARKER	-1
#endif
#ifdef SWP_SWAPIN_ERROR
#define P2PV_SWP_SWAPIN_ERROR	SWP_SWAPIN_ERROR
#else
#define P2PV_SWP_SWAPIN_ERROR	-1
#endif
#ifndef P2PV_DEVMAP_BIT
#define P2PV_DEVMAP_BIT		-1
#endif

static void p2pv_report_facts(void)
{
	pr_info(P2PV_NAME ": facts max_swapfiles=%d hwpoison=%d migration_read=%d device_write=%d"
		" device_exclusive=%d pte_marker=%d swapin_error=%d devmap_bit=%d"
		" pmd_special=%d pud_special=%d uffd_minor_bit=%d pfnmap_bit=%d mixedmap_bit=%d\n",
		(int)MAX_SWAPFILES, (int)P2PV_SWP_HWPOISON, (int)P2PV_SWP_MIGRATION_READ,
		(int)P2PV_SWP_DEVICE_WRITE, (int)P2PV_SWP_DEVICE_EXCLUSIVE, (int)P2PV_SWP_PTE_MARKER,
		(int)P2PV_SWP_SWAPIN_ERROR, (int)P2PV_DEVMAP_BIT,
		IS_ENABLED(CONFIG_ARCH_SUPPORTS_PMD_PFNMAP), IS_ENABLED(CONFIG_ARCH_SUPPORTS_PUD_PFNMAP),
		VM_UFFD_MINOR ? (int)ilog2(VM_UFFD_MINOR) : -1, (int)ilog2(VM_PFNMAP), (int)ilog2(VM_MIXEDMAP));
}

static int __init p2pv_init(void)
{
	int ret;

	p2pv_report_facts();
	p2pv_pick_range();
	if (nm_pfn)
		pr_info(P2PV_NAME ": memmap-less range %#lx+%#lx (%s), small cases at pfn %#lx, PMD chunk %#lx\n",
			bar_phys, bar_size, bar_source, nm_pfn, huge_phys);
	else
		pr_info(P2PV_NAME ": no memmap-less range: BAR cases will fail with ENODEV\n");
	if (devmem_phys)
		p2pv_devmem_create(devmem_phys);
	else
		pr_info(P2PV_NAME ": no room for ZONE_DEVICE chunks: their cases will fail with ENODEV\n");
	ret = misc_register(&p2pv_dev);
	if (ret)
		p2pv_devmem_destroy();
	return ret;
}

/* Unloading needs every mapping gone (each holds the file, hence the module). */
static void __exit p2pv_exit(void)
{
	misc_deregister(&p2pv_dev);
	p2pv_devmem_destroy();
}

module_init(p2pv_init);
module_exit(p2pv_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("drgn-p2p lab: wrong and correct PFN/ZONE_DEVICE-style mappings on purpose");
