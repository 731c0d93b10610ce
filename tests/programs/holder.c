/*
 * holder: a small process for real-CRIU tests (see tests/realcriu.py). It sets up some state, reports it on
 * stdout, prints "READY" on a line of its own and then sleeps forever (pause() loop) until killed.
 *
 *   holder [-l] [-t] [-u SOCKET_PATH] [-d SOCKET_PATH] [-m KIB] FILE
 *
 *   FILE  opened O_RDONLY and kept open; 5 bytes are read so its position is > 0 (less if the file is shorter)
 *   -l    flock(LOCK_EX) on FILE               (criu dump needs --file-locks; restore without it drops the lock)
 *   -t    an established TCP connection over 127.0.0.1 inside this process: a listener, a client and the
 *         accepted end, with 16 unread bytes queued client -> server   (criu needs --tcp-established)
 *   -u    connect an AF_UNIX stream socket to SOCKET_PATH (a listener outside the dumped tree). While the listener
 *         has not accept()ed it the connection is in flight: criu dump takes it (no option needed) with the listener
 *         as its peer, and criu restore fails "Peer ... unresolved". Once accepted, criu dump refuses it ("Can't
 *         dump half of stream unix connection", with or without --ext-unix-sk)
 *   -d    connect an AF_UNIX datagram socket to SOCKET_PATH (a datagram socket bound outside the dumped tree:
 *         the external socket kind CRIU restores). criu dump needs --ext-unix-sk; criu 4.2.1 restore reconnects
 *         it by name with or without it, and fails if nothing is bound at SOCKET_PATH then
 *   -m    anonymous private memory to fill, in KiB (default 256): every 4 KiB page starts with
 *         "HOLDER-PAGE-NNNNNN" (its index) and the rest of the page is the byte (offset & 0xff)
 *
 * Lines written before READY (one per item, fields separated by spaces):
 *   file FD PATH POS | lock FD | tcp LISTEN_FD CLIENT_FD ACCEPTED_FD SERVER_PORT CLIENT_PORT
 *   unix FD PATH | dgram FD PATH | memory ADDRESS BYTES
 * Build: cc -O1 -Wall -o holder holder.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define PAGE 4096

static void die(const char *what)
{
	fprintf(stderr, "holder: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static unsigned short port_of(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	if (getsockname(fd, (struct sockaddr *)&a, &len))
		die("getsockname");
	return ntohs(a.sin_port);
}

static void tcp_pair(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int lfd, cfd, afd;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 1))
		die("tcp listen");
	if (getsockname(lfd, (struct sockaddr *)&a, &len))
		die("getsockname");
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&a, sizeof(a)))
		die("tcp connect");
	afd = accept(lfd, NULL, NULL);
	if (afd < 0)
		die("tcp accept");
	if (write(cfd, "HOLDER-TCP-DATA\n", 16) != 16)
		die("tcp write");
	say("tcp %d %d %d %u %u\n", lfd, cfd, afd, port_of(lfd), port_of(cfd));
}

static void unix_connect(const char *path, int type)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(a.sun_path)) {
		fprintf(stderr, "holder: unix socket path too long: %s\n", path);
		exit(2);
	}
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, type, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		die(path);
	say("%s %d %s\n", type == SOCK_DGRAM ? "dgram" : "unix", fd, path);
}

int main(int argc, char **argv)
{
	int lock = 0, tcp = 0, opt, fd;
	const char *unix_path = NULL, *dgram_path = NULL;
	long kib = 256;
	char buf[5];
	ssize_t n;

	while ((opt = getopt(argc, argv, "ltu:d:m:")) != -1) {
		switch (opt) {
		case 'l': lock = 1; break;
		case 't': tcp = 1; break;
		case 'u': unix_path = optarg; break;
		case 'd': dgram_path = optarg; break;
		case 'm': kib = strtol(optarg, NULL, 10); break;
		default: goto usage;
		}
	}
	if (optind != argc - 1 || kib < 0)
		goto usage;

	fd = open(argv[optind], O_RDONLY);
	if (fd < 0)
		die(argv[optind]);
	n = read(fd, buf, sizeof(buf));
	if (n < 0)
		die("read");
	say("file %d %s %zd\n", fd, argv[optind], n);
	if (lock) {
		if (flock(fd, LOCK_EX))
			die("flock");
		say("lock %d\n", fd);
	}
	if (tcp)
		tcp_pair();
	if (unix_path)
		unix_connect(unix_path, SOCK_STREAM);
	if (dgram_path)
		unix_connect(dgram_path, SOCK_DGRAM);
	if (kib) {
		size_t size = (size_t)kib * 1024, i;
		unsigned char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			die("mmap");
		for (i = 0; i < size; i++)
			mem[i] = i & 0xff;
		for (i = 0; i + PAGE <= size; i += PAGE) {
			char tag[32];
			snprintf(tag, sizeof(tag), "HOLDER-PAGE-%06zu", i / PAGE % 1000000);
			memcpy(mem + i, tag, 18);
		}
		say("memory %p %zu\n", (void *)mem, size);
	}
	say("READY\n");
	for (;;)
		pause();

usage:
	fprintf(stderr, "usage: holder [-l] [-t] [-u SOCKET_PATH] [-d SOCKET_PATH] [-m KIB] FILE\n");
	return 2;
}
