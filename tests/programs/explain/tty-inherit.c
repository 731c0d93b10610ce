/*
 * tty-inherit: a process with a controlling terminal, like a job started from an interactive shell. The parent
 * (not dumped) allocates a pty and keeps its master; the child calls setsid(), makes the pty slave its
 * controlling terminal and its stdin/stdout/stderr. criu dump --shell-job -t <child> works; criu restore
 * --shell-job run without a terminal on stdin fails: "Don't have tty to inherit session from, aborting".
 *
 * Protocol (scripts/make-explain-logs.sh): prints "dump PID" (the process to dump) and "READY", then waits.
 * The parent reaps the child (killed by the dump) and exits.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	int master, slave, sync[2];
	pid_t child;
	char c;

	master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0 || grantpt(master) || unlockpt(master) || pipe2(sync, O_CLOEXEC)) {
		perror("pty");
		return 1;
	}
	child = fork();
	if (child == 0) {
		setsid();				/* a new session without a terminal ... */
		slave = open(ptsname(master), O_RDWR);	/* ... so opening the slave makes it the controlling tty */
		if (slave < 0 || ioctl(slave, TIOCSCTTY, 0)) {
			perror("slave");
			_exit(1);
		}
		dup2(slave, 0);
		dup2(slave, 1);
		dup2(slave, 2);
		if (slave > 2)
			close(slave);
		close(master);				/* only the slave is ours: the master stays outside */
		close(sync[0]);
		close(sync[1]);				/* EOF for the parent */
		for (;;)
			pause();
	}
	close(sync[1]);
	if (read(sync[0], &c, 1) < 0)			/* EOF: the child has its terminal */
		return 1;
	printf("tty %s\ndump %d\nREADY\n", ptsname(master), child);
	fflush(stdout);
	while (waitpid(child, NULL, 0) < 0)		/* the master stays open while the child lives */
		;
	return 0;
}
