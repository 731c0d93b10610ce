/*
 * unsupported-fd: hold a perf_event fd (a software cpu-clock counter on this process), a file type CRIU cannot
 * checkpoint. criu dump fails: "Can't dump file FD of that type [600] (anon [perf_event])".
 *
 * Protocol (scripts/make-explain-logs.sh): prints "dump PID" (the process to dump) and "READY", then waits.
 */
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	struct perf_event_attr attr;
	int fd;

	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.exclude_kernel = 1;
	fd = syscall(SYS_perf_event_open, &attr, 0 /* this process */, -1 /* any cpu */, -1, 0);
	if (fd < 0) {
		perror("perf_event_open");
		return 1;
	}
	printf("perf_event fd %d\ndump %d\nREADY\n", fd, getpid());
	fflush(stdout);
	for (;;)
		pause();
}
