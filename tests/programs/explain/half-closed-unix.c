/*
 * half-closed-unix: one end of a connected AF_UNIX stream connection inside the dumped tree, the other end
 * outside it. The parent (not dumped) listens on PATH and accept()s; the child (dumped) connects.
 * criu dump -t <child> --ext-unix-sk fails: "Can't dump half of stream unix connection. name: ...; peer name: PATH"
 * (--ext-unix-sk only covers datagram peers; without it the error is "External socket is used. Consider
 * using --ext-unix-sk option."). A stream pair that is merely half-closed (shutdown(SHUT_WR), or peer closed)
 * with both ends in the tree dumps fine in CRIU 4.2.1.
 *
 *   half-closed-unix PATH
 *
 * Protocol (scripts/make-explain-logs.sh): prints "dump PID" (the process to dump) and "READY", then waits.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int lfd, cfd, afd;
	pid_t child;

	if (argc != 2 || strlen(argv[1]) >= sizeof(a.sun_path))
		return 2;
	strcpy(a.sun_path, argv[1]);
	unlink(a.sun_path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 1)) {
		perror("listen");
		return 1;
	}
	child = fork();
	if (child == 0) {			/* the dumped process: only the client end */
		setsid();			/* criu dumps a session leader (or needs --shell-job) */
		close(lfd);
		cfd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (cfd < 0 || connect(cfd, (struct sockaddr *)&a, sizeof(a))) {
			perror("connect");
			_exit(1);
		}
		for (;;)
			pause();
	}
	afd = accept(lfd, NULL, NULL);		/* the peer end stays here, outside the dumped tree */
	if (afd < 0) {
		perror("accept");
		return 1;
	}
	printf("dump %d\nREADY\n", child);
	fflush(stdout);
	for (;;)				/* reap the child when it is killed, then wait to be killed */
		if (wait(NULL) < 0 && errno == ECHILD)
			pause();
}
