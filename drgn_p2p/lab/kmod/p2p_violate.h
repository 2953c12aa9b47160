/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * p2p_violate: the cases of /dev/p2p_violate, shared by the module and the
 * userspace holder (violate_holder.c).
 *
 * mmap(fd, offset = case * page size) builds one mapping per case: either a
 * WRONG mapping that one of drgn-p2p's rules must report, or a correct
 * control that no rule may report. The table below is the single list of
 * cases; each X() entry is
 *
 *	X(ENUM, pgoff, "name", length in bytes, maps one PMD leaf (a PMD_SIZE
 *	  aligned address), the holder touches every page)
 *
 * A PMD case is P2PV_HUGE_LEN long with 4 KiB pages; the module and the
 * holder take the running kernel's PMD size instead (32 MiB with 16 KiB
 * pages).
 *
 * Cases built as non-present entries (a migration entry, an unknown PTE
 * marker, a device-private or device-exclusive entry) must not be touched:
 * a fault on them would wait for the migration, raise SIGBUS, or hand the
 * wrong page to the device-private/device-exclusive fault path.
 *
 * A case the running kernel cannot express fails mmap() with EOPNOTSUPP; a
 * case that needs a memmap-less PFN range, or ZONE_DEVICE memory the module
 * creates in it, fails with ENODEV when the module found none (see the
 * bar_phys= and bar_size= module parameters).
 */
#ifndef P2P_VIOLATE_H
#define P2P_VIOLATE_H

#define P2PV_SMALL_LEN	(4UL * 4096)		/* four 4 KiB pages */
#define P2PV_HUGE_LEN	(2UL * 1024 * 1024)	/* one PMD leaf (4 KiB pages) */

#define P2PV_CASES(X)								\
	X(P2PV_CONTROL_REMAP,		0, "control-remap",		P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_CONTROL_FAULT_PFN,	1, "control-fault-pfn",		P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_CONTROL_HUGE_PFN,	2, "control-huge-pfn",		P2PV_HUGE_LEN,  1, 1) \
	X(P2PV_NOMEMMAP_NO_PFNMAP,	3, "nomemmap-no-pfnmap",	P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_PFNMAP_NOT_SPECIAL,	4, "pfnmap-not-special",	P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_HUGE_PFN_NOT_SPECIAL,	5, "huge-pfn-not-special",	P2PV_HUGE_LEN,  1, 1) \
	X(P2PV_SPECIAL_ON_RAM,		6, "special-on-ram",		P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_MIXEDMAP_PAGES,		7, "mixedmap-pages",		P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_DEVMAP_ON_RAM,		8, "devmap-on-ram",		P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_PFNMAP_RAM_NOT_SPECIAL,	9, "pfnmap-ram-not-special",	P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_DEVMAP_NOT_SPECIAL,	10, "devmap-not-special",	P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_P2PDMA_SPECIAL,		11, "p2pdma-special",		P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_P2PDMA_NO_MIXEDMAP,	12, "p2pdma-no-mixedmap",	P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_DEVDAX_SPECIAL,		13, "devdax-special",		P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_DEVDAX_IN_PFNMAP,	14, "devdax-in-pfnmap",		P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_COHERENT_IN_PFNMAP,	15, "coherent-in-pfnmap",	P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_PRIVATE_PRESENT,		16, "private-present",		P2PV_SMALL_LEN, 0, 1) \
	X(P2PV_MIGRATION_TO_P2PDMA,	17, "migration-to-p2pdma",	P2PV_SMALL_LEN, 0, 0) \
	X(P2PV_UNKNOWN_MARKER,		18, "unknown-marker",		P2PV_SMALL_LEN, 0, 0) \
	X(P2PV_PRIVATE_ENTRY_TO_RAM,	19, "private-entry-to-ram",	P2PV_SMALL_LEN, 0, 0) \
	X(P2PV_EXCLUSIVE_TO_P2PDMA,	20, "exclusive-to-p2pdma",	P2PV_SMALL_LEN, 0, 0)

#define P2PV_ENUM(e, n, name, len, huge, touch) e = n,
enum p2pv_case { P2PV_CASES(P2PV_ENUM) P2PV_NR_CASES };
#undef P2PV_ENUM

/*
 * ioctl: put every mapping of the calling process made through this file
 * back into a shape the kernel can tear down (restore the bits and VMA flags
 * the cases removed or added). The holder calls it before it exits.
 */
#define P2PV_IOC_RESTORE	_IO('P', 0x01)

#endif /* P2P_VIOLATE_H */
