/*
 * pidfd-outside: hold a pidfd of a process outside the dumped tree (our parent, the shell that started us).
 * criu dump fails: "pidfd pid PID is not a part of process tree.." (CRIU could not recreate that process).
 *
 * Protocol (scripts/make-explain-logs.sh): prints "dump PID" (the process to dump) and "READY", then waits.
 */
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	int fd = syscall(SYS_pidfd_open, getppid(), 0);

	if (fd < 0) {
		perror("pidfd_open");
		return 1;
	}
	printf("pidfd %d of %d\ndump %d\nREADY\n", fd, getppid(), getpid());
	fflush(stdout);
	for (;;)
		pause();
}
