/*
 * dev-console: a container-like process (new mount + pid namespace, pivot_root into ROOTFS) whose /dev/console
 * is a bind mount of a pty slave from outside (what container runtimes do for a terminal). Its mount namespace
 * has no devpts mount that the bind could come from, so criu dump fails in mount.c validate_mounts():
 * "MNT_ID:./dev/console doesn't have a proper root mount".
 *
 *   dev-console ROOTFS     ROOTFS must hold: this binary (static) as /dev-console, an empty file dev/console,
 *                          empty directories oldroot/. The inner process writes its stdout to ROOTFS/out.txt.
 *
 * The parent (not dumped) keeps the pty master, unshares the pid namespace, forks the child (PID 1 of the new
 * pid namespace) and reaps it when it dies. The child unshares the mount namespace, pivots into ROOTFS and
 * re-executes this program from there ("inner"), so no file of the host stays open or mapped.
 *
 * Protocol (scripts/make-explain-logs.sh): the parent prints "dump PID" (the child's PID) and "READY".
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	_exit(1);
}

int main(int argc, char **argv)
{
	char console[4096], slave[64];
	int master, sync[2], out;
	pid_t child;
	char c;

	if (argc == 2 && !strcmp(argv[1], "inner"))	/* in the namespace, executed from ROOTFS */
		for (;;)
			pause();
	if (argc != 2)
		return 2;

	master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0 || grantpt(master) || unlockpt(master))
		die("pty");
	snprintf(slave, sizeof(slave), "%s", ptsname(master));
	snprintf(console, sizeof(console), "%s/dev/console", argv[1]);
	if (pipe2(sync, O_CLOEXEC) || unshare(CLONE_NEWPID))
		die("unshare(CLONE_NEWPID)");
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		close(sync[0]);
		setsid();	/* criu refuses a session leader outside the pid namespace */
		if (unshare(CLONE_NEWNS))
			die("unshare(CLONE_NEWNS)");
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||	/* nothing propagates to the host */
		    mount(argv[1], argv[1], NULL, MS_BIND, NULL) ||		/* pivot_root needs a mount point */
		    mount(slave, console, NULL, MS_BIND, NULL))		/* the host pty as /dev/console */
			die("mount");
		if (chdir(argv[1]) || syscall(SYS_pivot_root, ".", "oldroot") || chdir("/") ||
		    umount2("/oldroot", MNT_DETACH))			/* drop every host mount */
			die("pivot_root");
		out = open("/out.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (out < 0)
			die("/out.txt");
		dup2(out, 0);
		dup2(out, 1);
		dup2(out, 2);
		close(out);
		execl("/dev-console", "dev-console", "inner", (char *)NULL);	/* closes the sync pipe */
		die("exec /dev-console");
	}
	close(sync[1]);
	if (read(sync[0], &c, 1) < 0)			/* EOF: the child has exec'ed inside ROOTFS */
		return 1;
	printf("console %s\ndump %d\nREADY\n", slave, child);
	fflush(stdout);
	while (waitpid(child, NULL, 0) < 0)
		;
	return 0;
}
