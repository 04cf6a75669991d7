/*
 * criu-prlimit.c - lets CRIU read the resource limits of a process owned by
 * another user on hosts where root lacks CAP_SYS_RESOURCE.
 *
 * CRIU reads each task's limits with prlimit64(pid, res, NULL, &old). The
 * kernel allows that for a task of another user only with CAP_SYS_RESOURCE
 * (check_prlimit_permission), so on such hosts every server that drops
 * privileges (nginx workers as www-data, ...) fails to dump with "Can't get
 * rlimit 0: Operation not permitted". The same values are world-readable in
 * /proc/PID/limits. Preloaded into CRIU (LD_PRELOAD, set by containerflow
 * only when the capability is missing), this wraps libc's syscall() and,
 * only for a *read* of another task's limit that failed with EPERM, answers
 * from /proc/PID/limits. Every other call, and every write of a limit, goes
 * to the kernel unchanged. Built by scripts/install-criu.sh.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>

/* /proc/PID/limits: a header, then one line per resource in RLIMIT_* order
 * (fs/proc/base.c, lnames[]), the name padded to 25 columns, then the soft
 * and hard values or "unlimited". */
static int limit_from_proc(pid_t pid, int res, struct rlimit64 *out)
{
	char path[64], line[256], soft[32], hard[32];
	int i = -1, ret = -1;
	FILE *f;

	if (res < 0 || res >= RLIM_NLIMITS)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/limits", pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (i++ < res)
			continue;
		if (strlen(line) > 26 && sscanf(line + 26, "%31s %31s", soft, hard) == 2) {
			out->rlim_cur = strcmp(soft, "unlimited") ? strtoull(soft, NULL, 10) : RLIM64_INFINITY;
			out->rlim_max = strcmp(hard, "unlimited") ? strtoull(hard, NULL, 10) : RLIM64_INFINITY;
			ret = 0;
		}
		break;
	}
	fclose(f);
	return ret;
}

long syscall(long n, ...)
{
	static long (*real)(long, ...);
	long a[6];
	va_list ap;
	long r;
	int saved;

	va_start(ap, n);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (!real)
		real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	r = real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
	if (r == -1 && errno == EPERM && n == SYS_prlimit64 && a[0] > 0 && a[2] == 0 && a[3] != 0) {
		saved = errno;
		if (limit_from_proc((pid_t)a[0], (int)a[1], (struct rlimit64 *)a[3]) == 0)
			return 0;
		errno = saved;
	}
	return r;
}
