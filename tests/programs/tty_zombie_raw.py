"""Dumped by tests/test_checks_realcriu.py: a session leader holding a pty pair it made (the slave its controlling
terminal), a zombie child it never reaps, and raw sockets (ICMP, ICMPv6, IPPROTO_RAW). Prints READY, then waits."""

import fcntl
import os
import socket
import sys
import termios
import time

master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
child = os.fork()
if child == 0:
    os._exit(7)
raw = []
if "--raw" in sys.argv:
    raw = [socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
           socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
           socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)]


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


while state(child) != "Z":
    time.sleep(0.01)
print(f"zombie {child}", flush=True)
print("READY", flush=True)
while True:
    time.sleep(1)
