/*
 * zombie_sockets: the program behind tests/data/zombie and tests/data/raw-sockets (dumped by the real criu 4.2.1
 * through tests/realcriu.py dump_process, as root).
 *
 *   zombie_sockets MODE     MODE bit 1: fork a child that exits at once and is never reaped (a zombie at dump time)
 *                           MODE bit 2: open raw sockets: AF_INET/IPPROTO_ICMP, AF_INET6/IPPROTO_ICMPV6,
 *                                       AF_INET/IPPROTO_RAW (and an unprivileged ICMP "ping" socket, if allowed)
 * Prints what it opened, then "READY", then sleeps until killed.
 * Build: cc -O1 -static -o zombie_sockets zombie_sockets.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <string.h>
int main(int argc, char **argv) {
    int mode = argc > 1 ? atoi(argv[1]) : 0;
    if (mode & 1) { pid_t p = fork(); if (p == 0) _exit(7); }
    if (mode & 2) {
        int a = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP); printf("raw icmp %d\n", a);
        int b = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP); printf("ping %d\n", b);
        int c = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6); printf("raw icmp6 %d\n", c);
        int d = socket(AF_INET, SOCK_RAW, IPPROTO_RAW); printf("raw 255 %d\n", d);
    }
    sleep(1);
    printf("READY\n"); fflush(stdout);
    for (;;) pause();
}
