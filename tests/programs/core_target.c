/*
 * core_target: a process for the `imgtool core` tests (tests/test_core.py), following the READY protocol of
 * tests/realcriu.py. Build with -g -O0 so arguments and locals are on the stack.
 *
 * It forks a child blocked in child_wait(depth=3, tag=0xc41d), starts NTHREADS threads each blocked in
 * worker_wait(id=N, tag=0x1000+N) with a local `marker` = N * 1000 + 7, puts the globals g_message and
 * g_counter (424242) and a heap string in place, then the main thread blocks in main_wait(nthreads, label) with
 * a local `main_marker` = 31337. Every wait is a read() of a pipe nobody writes.
 *
 * Lines before READY:  child PID | thread N TID | heap ADDRESS | main TID
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NTHREADS 3

char g_message[] = "core-target-global-message";
long g_counter = 424242;
char *g_heap;
static int g_pipe[2];
static atomic_int g_blocked;

__attribute__((noinline)) long worker_wait(int id, long tag)
{
	volatile long marker = id * 1000 + 7;
	char c;
	atomic_fetch_add(&g_blocked, 1);
	long n = read(g_pipe[0], &c, 1);
	return n + marker + tag;
}

static void *thread_main(void *arg)
{
	int id = (int)(long)arg;
	printf("thread %d %ld\n", id, (long)syscall(SYS_gettid));
	fflush(stdout);
	worker_wait(id, 0x1000 + id);
	return NULL;
}

__attribute__((noinline)) long child_wait(int depth, long tag)
{
	volatile long child_marker = depth * 11;
	char c;
	long n = read(g_pipe[0], &c, 1);
	return n + child_marker + tag;
}

__attribute__((noinline)) long main_wait(int nthreads, const char *label)
{
	volatile long main_marker = 31337;
	char c;
	printf("READY\n");
	fflush(stdout);
	long n = read(g_pipe[0], &c, 1);
	return n + main_marker + nthreads + (long)label[0];
}

int main(void)
{
	pthread_t threads[NTHREADS];
	if (pipe(g_pipe))
		return 2;
	g_heap = strdup("core-target-heap-string");
	pid_t child = fork();
	if (child == 0) {
		child_wait(3, 0xc41d);
		_exit(0);
	}
	printf("child %d\n", child);
	printf("heap %p\n", (void *)g_heap);
	printf("main %ld\n", (long)syscall(SYS_gettid));
	fflush(stdout);
	for (long i = 0; i < NTHREADS; i++)
		pthread_create(&threads[i], NULL, thread_main, (void *)(i + 1));
	while (atomic_load(&g_blocked) < NTHREADS)
		usleep(1000);
	usleep(200000);    /* let the threads (and the child) enter read() */
	return (int)main_wait(NTHREADS, "main-label");
}
