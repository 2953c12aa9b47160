// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The GUP probe of holder.c: on SIGUSR1, try each kernel user of
 * get_user_pages() on the mappings this process holds, and write what really
 * happened as one JSON line per attempt to OUTFILE.gup (OUTFILE.gup.tmp,
 * renamed).  The users act on this process's own mm, as they must:
 *
 *   odirect-read       pread() of one page from an O_DIRECT block device into the page
 *   odirect-write      pwrite() of the page to it
 *   io-uring-register  IORING_REGISTER_BUFFERS of the page (then unregistered)
 *   ibv-reg-mr         IB_USER_VERBS_CMD_REG_MR of the page with IB_ACCESS_LOCAL_WRITE
 *                      (the write(2) command libibverbs' ibv_cmd_reg_mr() sends; then
 *                      deregistered)
 *   vmsplice           vmsplice() of the page into a pipe (then drained)
 *   futex              FUTEX_WAIT, shared (no FUTEX_PRIVATE_FLAG), on the page's first
 *                      word with an expected value it does not hold, 1 ms timeout
 *   process-vm-readv   a second process ("holder --peek") reads the page with
 *                      process_vm_readv()
 *   proc-pid-mem       a second process pread()s /proc/PID/mem at the page
 *   odirect-nvme-read  odirect-read on a namespace of the NVMe controller whose CMB
 *   odirect-nvme-write the p2pdma scenarios map: a queue that allows P2PDMA pages
 *
 * User i probes held[m].addr + probe_off + i * probe_stride (wrapped inside the
 * mapping), so that a user that changes the leaf (migrates a device-private page
 * back, breaks COW, swaps in) does not change what the next user meets.
 *
 * OUTFILE.gup-req holds "DISK UVERBS NVME [FIRST]\n": the O_DIRECT block device, the
 * uverbs character device and the NVMe namespace ("-" where there is none:
 * those users then fail with "why"), and the index of the first user to try
 * (default 0: the broken-mapping tier goes on after a user that oopsed, in a
 * new boot).  Each attempt line is written and flushed as soon as the attempt
 * returns (an attempt that kills the process leaves no line):
 *
 *   {"kind", "pid", "start", "len", "expect", "vm_flags", "user", "addr", "ret",
 *    "errno", "bytes", "want", "leaf_before", "leaf_after", "dmesg": [...], "why"}
 *
 * ret is the system call's return value, errno its errno name (null on
 * success), bytes what moved (the futex: 4 once the kernel compared the word,
 * i.e. EAGAIN or ETIMEDOUT), want what a full success moves, leaf_* the raw
 * /proc/self/pagemap entries before and after, dmesg the kernel log lines the
 * attempt added (/dev/kmsg), vm_flags the VmFlags line /proc/self/smaps gives
 * the probed page's VMA (read before the attempt).
 */
#include <linux/futex.h>
#include <rdma/ib_user_ioctl_verbs.h>
#include <rdma/ib_user_verbs.h>
#include <spawn.h>
#include <sys/uio.h>
#include <sys/wait.h>

extern char **environ;

static volatile sig_atomic_t gup_requested;

static void gup_on_usr1(int sig)
{
	(void)sig;
	gup_requested = 1;
}

static void gup_on_alarm(int sig)
{
	(void)sig;
}

/* Block SIGUSR1 (gup_serve() waits for it) and catch it and SIGALRM. */
static void gup_arm(void)
{
	struct sigaction usr1 = { .sa_handler = gup_on_usr1 };
	struct sigaction alrm = { .sa_handler = gup_on_alarm };	/* no SA_RESTART: a hung user gets EINTR */
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigaction(SIGUSR1, &usr1, NULL);
	sigaction(SIGALRM, &alrm, NULL);
}

enum {
	U_ODIRECT_READ, U_ODIRECT_WRITE, U_IO_URING, U_IBV_REG_MR, U_VMSPLICE,
	U_FUTEX, U_PROCESS_VM_READV, U_PROC_PID_MEM, U_ODIRECT_NVME_READ,
	U_ODIRECT_NVME_WRITE, NUSERS
};
static const char *const gup_users[NUSERS] = {
	"odirect-read", "odirect-write", "io-uring-register", "ibv-reg-mr",
	"vmsplice", "futex", "process-vm-readv", "proc-pid-mem",
	"odirect-nvme-read", "odirect-nvme-write",
};

/* What one probe run shares between its attempts. */
struct gup_ctx {
	int disk;		/* O_RDWR|O_DIRECT block device, or -1 */
	int nvme;		/* the same on the NVMe namespace, or -1 */
	int ring;		/* io_uring fd, or -1 */
	int uverbs;		/* uverbs fd with a context, or -1 */
	uint32_t pd;		/* its protection domain */
	int pagemap;		/* /proc/self/pagemap, or -1 */
	char why[NUSERS][160];	/* why a user could not be set up */
};

/* One attempt's result. */
struct gup_result {
	long ret;
	int err;
	long bytes, want;
	const char *why;
};

/* --- JSON output ---------------------------------------------------------- */

static FILE *gup_out;

static void json_str(const char *s)
{
	fputc('"', gup_out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(gup_out, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(gup_out, "\\u%04x", c);
		else
			fputc(c, gup_out);
	}
	fputc('"', gup_out);
}

static void json_errno(int err)
{
	const char *name = err ? strerrorname_np(err) : NULL;

	if (!err) {
		fputs("null", gup_out);
	} else if (name) {
		json_str(name);
	} else {
		fprintf(gup_out, "\"E%d\"", err);
	}
}

/* --- the kernel log and the leaf -------------------------------------------- */

/* /dev/kmsg positioned after the last record, or -1. */
static int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);

	if (fd >= 0)
		lseek(fd, 0, SEEK_END);
	return fd;
}

/* Print the records logged since kmsg_open() as a JSON array of their texts; close it. */
static void kmsg_dump(int fd)
{
	char rec[2048];
	const char *sep = "";
	int n = 0;
	ssize_t len;

	fputc('[', gup_out);
	while (fd >= 0 && n < 40 && ((len = read(fd, rec, sizeof(rec) - 1)) > 0 || (len < 0 && errno == EPIPE))) {
		char *text, *nl;

		if (len <= 0)	/* EPIPE: records were overwritten; go on with the next */
			continue;
		rec[len] = 0;
		text = strchr(rec, ';');	/* "prio,seq,usec,flags;text\n[ KEY=value\n...]" */
		text = text ? text + 1 : rec;
		nl = strchr(text, '\n');
		if (nl)
			*nl = 0;
		fputs(sep, gup_out);
		json_str(text);
		sep = ", ";
		n++;
	}
	fputc(']', gup_out);
	if (fd >= 0)
		close(fd);
}

/*
 * Set for broken mappings (holder.c's violate mode): /proc/self/pagemap and
 * smaps call vm_normal_page() on every present PTE, which reports "Bad page
 * map" (or worse) on them before any user ran; the probe then reads neither
 * (gup_no_proc_walks, declared and set in holder.c).
 */

/* The raw /proc/self/pagemap entry of @addr (0 where pagemap sees nothing, e.g. VM_PFNMAP). */
static uint64_t leaf_of(struct gup_ctx *c, uintptr_t addr)
{
	uint64_t e = 0;

	if (gup_no_proc_walks)
		return 0;
	if (c->pagemap >= 0 && pread(c->pagemap, &e, 8, addr / PAGE * 8) != 8)
		e = 0;
	return e;
}

/* The kernel's own word on the VMA at @addr: its /proc/self/smaps "VmFlags:" ("" if none). */
static void vm_flags_of(uintptr_t addr, char *out, size_t size)
{
	char line[512];
	int inside = 0;
	FILE *f = gup_no_proc_walks ? NULL : fopen("/proc/self/smaps", "r");

	*out = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long start, end;
		char *nl = strchr(line, '\n');

		if (nl)
			*nl = 0;
		/* A VMA's first line is "START-END PERMS ..."; no field line parses so. */
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
			inside = start <= addr && addr < end;
		} else if (inside && !strncmp(line, "VmFlags:", 8)) {
			snprintf(out, size, "%s", line + 8 + strspn(line + 8, " "));
			break;
		}
	}
	if (f)
		fclose(f);
}

/* --- the users ------------------------------------------------------------ */

static void result_of(struct gup_result *r, long ret, long want)
{
	r->ret = ret;
	r->err = ret < 0 ? errno : 0;
	r->want = want;
	r->bytes = ret < 0 ? 0 : ret;
}

/* O_DIRECT of the page to (@write) or from block device @fd; @why if there is none. */
static void odirect(struct gup_result *r, char *p, int fd, int write, const char *why)
{
	if (fd < 0) {
		r->why = why;
		return;
	}
	result_of(r, write ? pwrite(fd, p, PAGE, PAGE) : pread(fd, p, PAGE, 0), PAGE);
}

static void uring_register(struct gup_ctx *c, struct gup_result *r, char *p)
{
	struct iovec iov = { p, PAGE };
	long ret;

	if (c->ring < 0) {
		r->why = c->why[U_IO_URING];
		return;
	}
	ret = syscall(SYS_io_uring_register, c->ring, IORING_REGISTER_BUFFERS, &iov, 1);
	result_of(r, ret < 0 ? ret : (long)PAGE, PAGE);
	r->ret = ret;
	if (ret == 0)
		syscall(SYS_io_uring_register, c->ring, IORING_UNREGISTER_BUFFERS, NULL, 0);
}

/* One uverbs write(2) command: header, @cmd of @in bytes, response of @out bytes. */
static int uverbs_cmd(int fd, uint32_t command, void *cmd, size_t in, size_t out)
{
	struct {
		struct ib_uverbs_cmd_hdr hdr;
		char body[64];
	} buf = { { command, (uint16_t)((sizeof(buf.hdr) + in) / 4), (uint16_t)(out / 4) } };
	size_t len = sizeof(buf.hdr) + in;

	memcpy(buf.body, cmd, in);
	return write(fd, &buf, len) == (ssize_t)len ? 0 : -1;
}

/* Open the uverbs device: a user context and a protection domain (ibv_open_device, ibv_alloc_pd). */
static void uverbs_open(struct gup_ctx *c, const char *path)
{
	struct ib_uverbs_get_context_resp ctx_resp;
	struct ib_uverbs_get_context ctx = { .response = (uintptr_t)&ctx_resp };
	struct ib_uverbs_alloc_pd_resp pd_resp;
	struct ib_uverbs_alloc_pd pd = { .response = (uintptr_t)&pd_resp };
	char *why = c->why[U_IBV_REG_MR];

	if (!strcmp(path, "-")) {
		snprintf(why, sizeof(c->why[0]), "no uverbs device (rdma_rxe link not created)");
		return;
	}
	c->uverbs = open(path, O_RDWR | O_CLOEXEC);
	if (c->uverbs < 0) {
		snprintf(why, sizeof(c->why[0]), "open %s: %s", path, strerror(errno));
		return;
	}
	if (uverbs_cmd(c->uverbs, IB_USER_VERBS_CMD_GET_CONTEXT, &ctx, sizeof(ctx), sizeof(ctx_resp))) {
		snprintf(why, sizeof(c->why[0]), "IB_USER_VERBS_CMD_GET_CONTEXT: %s", strerror(errno));
		goto fail;
	}
	if (uverbs_cmd(c->uverbs, IB_USER_VERBS_CMD_ALLOC_PD, &pd, sizeof(pd), sizeof(pd_resp))) {
		snprintf(why, sizeof(c->why[0]), "IB_USER_VERBS_CMD_ALLOC_PD: %s", strerror(errno));
		goto fail;
	}
	c->pd = pd_resp.pd_handle;
	return;
fail:
	close(c->uverbs);
	c->uverbs = -1;
}

static void ibv_reg_mr(struct gup_ctx *c, struct gup_result *r, char *p)
{
	struct ib_uverbs_reg_mr_resp resp;
	struct ib_uverbs_reg_mr reg = {
		.response = (uintptr_t)&resp, .start = (uintptr_t)p, .length = PAGE,
		.hca_va = (uintptr_t)p, .pd_handle = c->pd, .access_flags = IB_UVERBS_ACCESS_LOCAL_WRITE,
	};
	struct ib_uverbs_dereg_mr dereg;
	int ret;

	if (c->uverbs < 0) {
		r->why = c->why[U_IBV_REG_MR];
		return;
	}
	ret = uverbs_cmd(c->uverbs, IB_USER_VERBS_CMD_REG_MR, &reg, sizeof(reg), sizeof(resp));
	result_of(r, ret ? -1 : (long)PAGE, PAGE);
	r->ret = ret;
	if (ret == 0) {
		dereg.mr_handle = resp.mr_handle;
		uverbs_cmd(c->uverbs, IB_USER_VERBS_CMD_DEREG_MR, &dereg, sizeof(dereg), 0);
	}
}

static void do_vmsplice(struct gup_result *r, char *p)
{
	struct iovec iov = { p, PAGE };
	char sink[PAGE];
	int fds[2];

	if (pipe(fds))
		die("pipe");
	result_of(r, vmsplice(fds[1], &iov, 1, 0), PAGE);
	if (r->ret > 0 && read(fds[0], sink, sizeof(sink)) < 0)
		die("draining the pipe");
	close(fds[0]);
	close(fds[1]);
}

static void do_futex(struct gup_result *r, char *p)
{
	struct timespec ts = { 0, 1000 * 1000 };

	/* get_futex_key() looks the page up before the word is compared. */
	result_of(r, syscall(SYS_futex, p, FUTEX_WAIT, 0x5a5a5a5a, &ts, NULL, 0), 4);
	if (r->err == EAGAIN || r->err == ETIMEDOUT)
		r->bytes = 4;
}

/* Run "holder --peek USER PID ADDR" and read its "RET ERRNO" line. */
static void peek(struct gup_result *r, const char *user, uintptr_t addr)
{
	char pid[16], at[32], line[64] = "";
	char *argv[] = { "holder", "--peek", (char *)user, pid, at, NULL };
	posix_spawn_file_actions_t fa;
	int fds[2], status;
	pid_t child;
	ssize_t n;

	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	snprintf(at, sizeof(at), "%#lx", (unsigned long)addr);
	if (pipe(fds))
		die("pipe");
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	/* posix_spawn() shares this mm until the exec: no page table is copied. */
	errno = posix_spawn(&child, "/proc/self/exe", &fa, NULL, argv, environ);
	if (errno)
		die("posix_spawn holder --peek");
	close(fds[1]);
	n = read(fds[0], line, sizeof(line) - 1);
	close(fds[0]);
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	if (n <= 0 || sscanf(line, "%ld %d", &r->ret, &r->err) != 2) {
		r->why = "holder --peek printed nothing";
		return;
	}
	r->want = PAGE;
	r->bytes = r->ret < 0 ? 0 : r->ret;
}

/* The second process: read one page of PID's memory at ADDR; print "RET ERRNO". */
static int gup_peek(const char *user, const char *pid_arg, const char *addr_arg)
{
	static char buf[MAX_PAGE];
	pid_t pid = (pid_t)strtol(pid_arg, NULL, 10);
	uintptr_t addr = strtoull(addr_arg, NULL, 0);
	long ret = -1;

	errno = 0;
	if (!strcmp(user, "process-vm-readv")) {
		struct iovec local = { buf, PAGE }, remote = { (void *)addr, PAGE };

		ret = process_vm_readv(pid, &local, 1, &remote, 1, 0);
	} else if (!strcmp(user, "proc-pid-mem")) {
		char path[64];
		int fd;

		snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
		fd = open(path, O_RDONLY);
		ret = fd < 0 ? -1 : pread(fd, buf, PAGE, (off_t)addr);
	} else {
		errno = EINVAL;
	}
	printf("%ld %d\n", ret, ret < 0 ? errno : 0);
	return 0;
}

/* --- the probe ------------------------------------------------------------ */

static void gup_try(struct gup_ctx *c, int user, struct gup_result *r, char *p)
{
	alarm(20);
	switch (user) {
	case U_ODIRECT_READ:
	case U_ODIRECT_WRITE:
		odirect(r, p, c->disk, user == U_ODIRECT_WRITE, c->why[user]);
		break;
	case U_ODIRECT_NVME_READ:
	case U_ODIRECT_NVME_WRITE:
		odirect(r, p, c->nvme, user == U_ODIRECT_NVME_WRITE, c->why[user]);
		break;
	case U_IO_URING:
		uring_register(c, r, p);
		break;
	case U_IBV_REG_MR:
		ibv_reg_mr(c, r, p);
		break;
	case U_VMSPLICE:
		do_vmsplice(r, p);
		break;
	case U_FUTEX:
		do_futex(r, p);
		break;
	default:
		peek(r, gup_users[user], (uintptr_t)p);
	}
	alarm(0);
}

static void gup_attempt(struct gup_ctx *c, const struct held *h, int user)
{
	size_t span = h->len - h->probe_off;
	uintptr_t addr = h->addr + h->probe_off + (user * h->probe_stride) % span;
	struct gup_result r = { .want = user == U_FUTEX ? 4 : (long)PAGE };
	uint64_t before = leaf_of(c, addr), after;
	char vm_flags[256];
	int kmsg;

	vm_flags_of(addr, vm_flags, sizeof(vm_flags));
	kmsg = kmsg_open();

	gup_try(c, user, &r, (char *)addr);
	after = leaf_of(c, addr);
	fprintf(gup_out, "{\"kind\": ");
	json_str(kind);
	fprintf(gup_out, ", \"pid\": %d, \"start\": \"%#lx\", \"len\": %zu, \"expect\": ",
		(int)getpid(), (unsigned long)h->addr, h->len);
	json_str(h->expect);
	fprintf(gup_out, ", \"vm_flags\": ");
	json_str(vm_flags);
	fprintf(gup_out, ", \"user\": \"%s\", \"addr\": \"%#lx\", \"ret\": %ld, \"errno\": ",
		gup_users[user], (unsigned long)addr, r.ret);
	json_errno(r.why ? 0 : r.err);
	fprintf(gup_out, ", \"bytes\": %ld, \"want\": %ld, \"leaf_before\": \"%#llx\", \"leaf_after\": \"%#llx\", \"dmesg\": ",
		r.bytes, r.want, (unsigned long long)before, (unsigned long long)after);
	kmsg_dump(kmsg);
	fprintf(gup_out, ", \"why\": ");
	if (r.why)
		json_str(r.why);
	else
		fputs("null", gup_out);
	fputs("}\n", gup_out);
	fflush(gup_out);
}

/* Open block device @path O_DIRECT for users @u and @u + 1; or say why not. */
static int odirect_open(struct gup_ctx *c, const char *path, int u)
{
	int fd = strcmp(path, "-") ? open(path, O_RDWR | O_DIRECT) : -1;

	if (fd < 0) {
		snprintf(c->why[u], sizeof(c->why[0]), "no O_DIRECT disk (%s: %s)", path,
			 strcmp(path, "-") ? strerror(errno) : "none given");
		strcpy(c->why[u + 1], c->why[u]);
	}
	return fd;
}

/* Open what the users share; a user that cannot be set up gets its "why". */
static void gup_open(struct gup_ctx *c, const char *disk, const char *uverbs, const char *nvme)
{
	struct io_uring_params params = { 0 };

	c->pagemap = open("/proc/self/pagemap", O_RDONLY);
	c->disk = odirect_open(c, disk, U_ODIRECT_READ);
	c->nvme = odirect_open(c, nvme, U_ODIRECT_NVME_READ);
	c->ring = syscall(SYS_io_uring_setup, 1, &params);
	if (c->ring < 0)
		snprintf(c->why[U_IO_URING], sizeof(c->why[0]), "io_uring_setup: %s", strerror(errno));
	c->uverbs = -1;
	uverbs_open(c, uverbs);
}

static void gup_close(struct gup_ctx *c)
{
	if (c->disk >= 0)
		close(c->disk);
	if (c->nvme >= 0)
		close(c->nvme);
	if (c->ring >= 0)
		close(c->ring);
	if (c->uverbs >= 0)
		close(c->uverbs);
	if (c->pagemap >= 0)
		close(c->pagemap);
}

static void gup_probe(void)
{
	char req[4096], tmp[4096], disk[256] = "-", uverbs[256] = "-", nvme[256] = "-";
	struct gup_ctx c = { 0 };
	int first = 0;
	FILE *f;

	snprintf(req, sizeof(req), "%s.gup-req", outfile);
	f = fopen(req, "r");
	if (!f || fscanf(f, "%255s %255s %255s", disk, uverbs, nvme) != 3)
		die("reading %s", req);
	if (fscanf(f, "%d", &first) != 1 || first < 0)
		first = 0;
	fclose(f);
	snprintf(tmp, sizeof(tmp), "%s.gup.tmp", outfile);
	gup_out = fopen(tmp, "w");
	if (!gup_out)
		die("creating %s", tmp);
	gup_open(&c, disk, uverbs, nvme);
	for (int m = 0; m < nheld; m++)
		for (int u = first; u < NUSERS; u++)
			gup_attempt(&c, &held[m], u);
	gup_close(&c);
	snprintf(req, sizeof(req), "%s.gup", outfile);
	if (fflush(gup_out) || fsync(fileno(gup_out)) || fclose(gup_out) || rename(tmp, req))
		die("writing %s", req);
}

/* Hold the mappings; probe them each time SIGUSR1 comes. */
static void __attribute__((noreturn)) gup_serve(void)
{
	sigset_t none;

	sigemptyset(&none);
	for (;;) {
		while (!gup_requested)
			sigsuspend(&none);
		gup_requested = 0;
		gup_probe();
	}
}
