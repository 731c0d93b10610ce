/*
 * hidden_content: a process holding content that lives only in its checkpoint, for `imgtool extract` tests
 * (tests/test_forensics.py; the READY protocol of tests/realcriu.py).
 *
 *   hidden_content DIR
 *
 * It moves into an IPC namespace of its own (unshare(CLONE_NEWIPC): criu dumps the root task's IPC namespace
 * when it is not criu's), then sets up:
 *   - two files in DIR, written and unlinked while open (fds kept): DIR/ghost-text.txt, DIR/ghost-binary.bin
 *   - a memfd "hidden-memfd"
 *   - a socketpair with unread data both ways
 *   - a pipe with unread data (both ends kept open)
 *   - a SysV shm segment (attached), a message queue with two messages (types 1 and 7), a semaphore set (3, 1, 4)
 * and writes the bytes it put into each to DIR/expect/NAME (NAME: ghost-text, ghost-binary, memfd, sock-a-to-b,
 * sock-b-to-a, pipe, shm, msg-1, msg-7) so that a test can compare them with what extract returns.
 * Lines before READY: "NAME fd FD" (or "NAME id ID") per item.  Build: cc -O1 -Wall -o hidden_content hidden_content.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *dir;

static void die(const char *what)
{
	fprintf(stderr, "hidden_content: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void write_all(int fd, const void *data, size_t len, const char *what)
{
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n <= 0)
			die(what);
		p += n;
		len -= n;
	}
}

static void expect(const char *name, const void *data, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/expect/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die(path);
	write_all(fd, data, len, path);
	close(fd);
}

static void fill(unsigned char *buf, size_t len, const char *tag, unsigned seed)
{
	size_t i, n = strlen(tag);
	for (i = 0; i < len; i++)
		buf[i] = (unsigned char)(seed * 31 + i * 7 + (i >> 8));
	for (i = 0; i + n <= len; i += 4096)
		memcpy(buf + i, tag, n);
}

static int ghost(const char *name, const char *file, size_t len, int text, unsigned seed)
{
	char path[4096];
	unsigned char *buf = malloc(len);
	size_t i;
	if (!buf)
		die("malloc");
	if (text)
		for (i = 0; i < len; i++)
			buf[i] = "GHOST-TEXT-line of a deleted file\n"[i % 34];
	else
		fill(buf, len, "GHOST-BINARY", seed);
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die(path);
	write_all(fd, buf, len, path);
	if (unlink(path))
		die("unlink");
	expect(name, buf, len);
	printf("%s fd %d\n", name, fd);
	free(buf);
	return fd;
}

int main(int argc, char **argv)
{
	char path[4096];
	unsigned char buf[20000];
	int sv[2], pp[2];

	if (argc != 2) {
		fprintf(stderr, "usage: hidden_content DIR\n");
		return 2;
	}
	dir = argv[1];
	snprintf(path, sizeof(path), "%s/expect", dir);
	if (mkdir(path, 0755) && errno != EEXIST)
		die(path);
	if (unshare(CLONE_NEWIPC))
		die("unshare(CLONE_NEWIPC)");

	ghost("ghost-text", "ghost-text.txt", 5000, 1, 0);
	ghost("ghost-binary", "ghost-binary.bin", 70001, 0, 1);

	int mfd = memfd_create("hidden-memfd", 0);
	if (mfd < 0)
		die("memfd_create");
	fill(buf, 10000, "MEMFD-HIDDEN", 2);
	write_all(mfd, buf, 10000, "memfd");
	expect("memfd", buf, 10000);
	printf("memfd fd %d\n", mfd);

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		die("socketpair");
	const char *a2b = "SOCK-A-TO-B: unread by B", *b2a = "SOCK-B-TO-A: unread by A, a little longer";
	write_all(sv[0], a2b, strlen(a2b), "sock a");
	write_all(sv[1], b2a, strlen(b2a), "sock b");
	expect("sock-a-to-b", a2b, strlen(a2b));
	expect("sock-b-to-a", b2a, strlen(b2a));
	printf("socket fd %d %d\n", sv[0], sv[1]);

	if (pipe(pp))
		die("pipe");
	fill(buf, 3000, "PIPE-UNREAD", 3);
	write_all(pp[1], buf, 3000, "pipe");
	expect("pipe", buf, 3000);
	printf("pipe fd %d %d\n", pp[0], pp[1]);

	int shmid = shmget(0x1234, 3 * 4096 + 100, IPC_CREAT | 0600);
	if (shmid < 0)
		die("shmget");
	unsigned char *shm = shmat(shmid, NULL, 0);
	if (shm == (void *)-1)
		die("shmat");
	fill(shm, 3 * 4096 + 100, "SYSV-SHM", 4);
	expect("shm", shm, 3 * 4096 + 100);
	printf("shm id %d\n", shmid);

	int qid = msgget(0x4321, IPC_CREAT | 0600);
	if (qid < 0)
		die("msgget");
	struct { long mtype; char mtext[256]; } m;
	m.mtype = 1;
	strcpy(m.mtext, "MSG-ONE: first message");
	if (msgsnd(qid, &m, strlen(m.mtext), 0))
		die("msgsnd");
	expect("msg-1", m.mtext, strlen(m.mtext));
	m.mtype = 7;
	strcpy(m.mtext, "MSG-SEVEN: second message, of type seven");
	if (msgsnd(qid, &m, strlen(m.mtext), 0))
		die("msgsnd");
	expect("msg-7", m.mtext, strlen(m.mtext));
	printf("msg id %d\n", qid);

	int semid = semget(0x5678, 3, IPC_CREAT | 0600);
	unsigned short values[3] = { 3, 1, 4 };
	if (semid < 0 || semctl(semid, 0, SETALL, values))
		die("sem");
	printf("sem id %d\n", semid);

	printf("READY\n");
	fflush(stdout);
	for (;;)
		pause();
}
