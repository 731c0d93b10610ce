/*
 * nested-pidns: a tree whose child unshare(CLONE_NEWPID)s and forks, so the grandchild is PID 1 of a pid
 * namespace nested inside the dumped tree. criu dump -t <this process> fails:
 * "Can't dump nested pid namespace for PID" (CRIU only handles the pid namespace of the tree's root).
 *
 * Protocol (scripts/make-explain-logs.sh): prints "dump PID" (the process to dump) and "READY", then waits.
 * Every parent here reaps its children, so killing the tree leaves no zombies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

/* reap children until there are none left, then wait to be killed */
static void reap_forever(void)
{
	for (;;)
		if (wait(NULL) < 0 && errno == ECHILD)
			pause();
}

int main(void)
{
	int sync[2];
	char c;

	if (pipe(sync))
		return 1;
	if (fork() == 0) {			/* child: stays in our pid ns, its children go to a new one */
		if (unshare(CLONE_NEWPID)) {
			perror("unshare(CLONE_NEWPID)");
			_exit(1);
		}
		if (fork() == 0) {		/* grandchild: PID 1 of the nested pid namespace */
			close(sync[0]);
			close(sync[1]);		/* tells the top process that the namespace exists */
			for (;;)
				pause();
		}
		close(sync[0]);
		close(sync[1]);
		reap_forever();
	}
	close(sync[1]);
	if (read(sync[0], &c, 1) < 0)		/* EOF once both the child and the grandchild are set up */
		return 1;
	close(sync[0]);
	printf("dump %d\nREADY\n", getpid());
	fflush(stdout);
	reap_forever();
}
