/*
 * tcp-established: an established TCP connection over 127.0.0.1 inside one process (listener, client and
 * accepted end). criu dump without --tcp-established fails: "Connected TCP socket, consider using
 * --tcp-established option."
 *
 * Protocol (scripts/make-explain-logs.sh): prints "dump PID" (the process to dump) and "READY", then waits.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int lfd, cfd, afd;

	lfd = socket(AF_INET, SOCK_STREAM, 0);	/* port 0: the kernel picks a free one */
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&a, &len)) {
		perror("listen");
		return 1;
	}
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&a, sizeof(a))) {
		perror("connect");
		return 1;
	}
	afd = accept(lfd, NULL, NULL);		/* accepted: no in-flight connection left on the listener */
	if (afd < 0) {
		perror("accept");
		return 1;
	}
	printf("tcp 127.0.0.1:%u fds %d %d %d\ndump %d\nREADY\n", ntohs(a.sin_port), lfd, cfd, afd, getpid());
	fflush(stdout);
	for (;;)
		pause();
}
