/*
 * ghost-limit: hold an open, deleted ("ghost") file bigger than criu's default ghost limit (1 MiB).
 * criu dump without --ghost-limit fails: "Can't dump ghost file PATH of N size, increase limit".
 *
 *   ghost-limit PATH    writes 2 MiB of real (non-sparse) data to PATH, keeps it open, unlinks it
 *
 * Protocol (scripts/make-explain-logs.sh): prints "dump PID" (the process to dump) and "READY", then waits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char block[4096];
	int fd, i;

	if (argc != 2)
		return 2;
	fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	memset(block, 'G', sizeof(block));
	for (i = 0; i < 512; i++)	/* 512 * 4 KiB = 2 MiB: st_blocks counts them, holes would not count */
		if (write(fd, block, sizeof(block)) != sizeof(block)) {
			perror("write");
			return 1;
		}
	fsync(fd);
	if (unlink(argv[1])) {
		perror("unlink");
		return 1;
	}
	printf("dump %d\nREADY\n", getpid());
	fflush(stdout);
	for (;;)
		pause();
}
