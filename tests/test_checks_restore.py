"""imgtool check where the real restore disagreed with it (zdtm peer suite): mounts the restore brings back, hex ghost
names, zombies, terminals made inside the tree, ICMP sockets. Each case is a real dump (samples/, the team corpus)
with the images it needs rewritten as criu writes them."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path

import pytest
from google.protobuf.message import Message

import imgtool
from imgtool.analysis.checks import Context, run_checks
from imgtool.analysis.checks import host as host_checks
from imgtool.analysis.checks.mounts import MountOptions, MountTree
from imgtool.format.image import image_bytes
from imgtool.format.pb import message_class

from corpus import CORPUS, SAMPLES

NS = CORPUS / "ns" / "images"
CONTAINER = SAMPLES / "container" / "images"
needs_corpus = pytest.mark.skipif(not NS.is_dir(), reason=f"team corpus not found at {CORPUS}")


def findings(path: Path, options: Iterable[str] = (), **kwargs) -> dict[str, list[str]]:
    """code -> messages of every finding (severity prefixed) of check on the dump."""
    with imgtool.open(path) as dump:
        found: dict[str, list[str]] = {}
        for f in run_checks(Context(dump, criu_options=list(options), **kwargs)):
            found.setdefault(f.code, []).append(f"{f.severity}: {f.message}")
        return found


def errors(path: Path, options: Iterable[str] = (), **kwargs) -> set[str]:
    found = findings(path, options, **kwargs)
    return {code for code, msgs in found.items() if any(m.startswith("error") for m in msgs)}


def copy(src: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "images"
    shutil.copytree(src, dest)
    return dest


def entries(images: Path, name: str) -> list[Message]:
    with imgtool.open(images) as dump:
        return [type(m).FromString(m.SerializeToString()) for m in dump.entries(name)]


def write(images: Path, name: str, kind: str, messages: Iterable[Message]) -> None:
    (images / f"{name}.img").write_bytes(image_bytes(kind, list(messages)))


# -- mounts ------------------------------------------------------------------------------------------------------------

def _ns_rootfs(tmp_path: Path) -> Path:
    """A rootfs holding what the ns dump opens from its root mount (busybox and init.sh, their sizes and modes)."""
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(b"\0" * 1982256)     # not ELF: no build-ID to compare
    (root / "bin" / "busybox").chmod(0o755)
    (root / "init.sh").write_bytes(b"#" * 219)
    (root / "init.sh").chmod(0o644)
    return root


@needs_corpus
def test_ns_dump_files_are_looked_up_in_the_restored_mount_tree(tmp_path: Path) -> None:
    """The ns scenario (restored for real with --root ROOTFS): /dev and /tmp are tmpfs the restore refills from
    tmpfs-dev-*.tar.gz.img, so /dev/null and /tmp/init.out are not host files; the rest is under --root."""
    root = _ns_rootfs(tmp_path)
    found = findings(NS, ["--root", str(root)])
    assert not {c for c, m in found.items() if any(x.startswith("error") for x in m)}, found
    assert any("/dev (tmpfs" in m for m in found["host-files-restored"])
    (root / "init.sh").unlink()
    found = findings(NS, ["--root", str(root)], root=root)
    assert [m for m in found["host-file-missing"]] == [f"error: /init.sh (fd 10 of task 1, here {root}/init.sh) "
                                                       "does not exist"]


@needs_corpus
def test_own_mount_namespace_needs_root(tmp_path: Path) -> None:
    """Without --root criu 4.2.1 cannot restore a mount namespace (the corpus log: BUG at mount.c:48)."""
    assert "option-root" in errors(NS)
    assert "host-root-missing" in errors(NS, ["--root", str(tmp_path / "nowhere")])


def _container_externals() -> list[str]:
    with imgtool.open(CONTAINER) as dump:
        keys = {m.ext_key for m in MountTree(dump, []).mounts if m.ext_key}
    return sorted(keys)


def test_external_mounts_are_mapped_one_by_one(tmp_path: Path) -> None:
    """Each external mount needs its own mnt[KEY]:PATH; one --external for another key does not do."""
    keys = _container_externals()
    assert "/dev/null" in keys and len(keys) > 2
    target = tmp_path / "ext"
    target.mkdir()
    every = [opt for key in keys for opt in ("--external", f"mnt[{key}]:{target}")]
    assert "option-ext-mount" not in errors(CONTAINER, every)
    assert "option-ext-mount" in errors(CONTAINER, every[:-2])
    assert "option-ext-mount" in errors(CONTAINER, ["--external", f"mnt[{keys[0]}]:{target}"])
    map_style = [opt for key in keys for opt in ("--ext-mount-map", f"{key}:{target}")]
    assert "option-ext-mount" not in errors(CONTAINER, map_style)
    missing = [opt for key in keys for opt in ("--external", f"mnt[{key}]:{tmp_path / 'gone'}")]
    assert "host-ext-mount-missing" in errors(CONTAINER, missing)


def test_mount_options_parse() -> None:
    opts = MountOptions.parse(["--root=/r", "--external", "mnt[a]:/x", "--external=mnt[b]", "-M", "c:/y",
                               "--ext-mount-map=auto", "--external", "mnt[a]:/z"])
    assert (opts.root, opts.external, opts.auto) == ("/r", {"a": "/z", "b": None, "c": "/y"}, True)
    assert MountOptions.parse(["--external", "mnt[]:m"]).auto


def test_root_is_ignored_without_a_mount_namespace(tmp_path: Path) -> None:
    """criu's --root only matters for a dumped mount namespace: without one files are opened from criu's '/'."""
    with imgtool.open(SAMPLES / "fds") as dump:
        assert host_checks._host_root(Context(dump, root=tmp_path, criu_options=["--root", str(tmp_path)])) \
            == Path("/")
        assert host_checks._host_root(Context(dump, root=tmp_path)) == tmp_path   # imgtool's own --root


# -- ghost files -------------------------------------------------------------------------------------------------------

def test_ghost_image_is_named_in_hex(tmp_path: Path) -> None:
    """criu names the ghost image of remap id 10 ghost-file-a.img (image-desc.c: "ghost-file-%x")."""
    images = copy(SAMPLES / "fds" / "images", tmp_path)
    (remap,) = entries(images, "remap-fpath")
    old = remap.remap_id
    remap.remap_id = 10
    write(images, "remap-fpath", "REMAP_FPATH", [remap])
    (images / f"ghost-file-{old:x}.img").rename(images / "ghost-file-a.img")
    assert "image-ghost-missing" not in findings(images, offline=True)
    (images / "ghost-file-a.img").unlink()
    assert findings(images, offline=True)["image-ghost-missing"][0].endswith("needs ghost-file-a.img, which is missing")


def test_old_ghost_flag_in_remap_id(tmp_path: Path) -> None:
    """Images without remap_type flag a ghost in remap_id's top bit, stripped before naming the image."""
    images = copy(SAMPLES / "fds" / "images", tmp_path)
    (remap,) = entries(images, "remap-fpath")
    remap.ClearField("remap_type")
    remap.remap_id = remap.remap_id | 1 << 31
    write(images, "remap-fpath", "REMAP_FPATH", [remap])
    assert "image-ghost-missing" not in findings(images, offline=True)


# -- zombies -----------------------------------------------------------------------------------------------------------

def test_zombie_has_only_a_core_image(tmp_path: Path) -> None:
    """A task dead at dump time: pstree lists it, criu wrote core-N.img with task_state TASK_DEAD (2) and nothing
    else (cr-dump.c dump_one_zombie); criu restores it so."""
    images = copy(SAMPLES / "tree" / "images", tmp_path)
    with imgtool.open(images) as dump:
        child = next(t for t in dump.tasks if t.pid != dump.root_task.pid and not t.children)
        pid, comm = child.pid, child.comm
    core = message_class("core_entry")(mtype=1)
    core.tc.task_state, core.tc.exit_code, core.tc.personality = 2, 0, 0
    core.tc.flags, core.tc.blk_sigset, core.tc.comm = 0, 0, comm
    write(images, f"core-{pid}", "CORE", [core])
    for name in (f"ids-{pid}", f"mm-{pid}", f"fs-{pid}", f"pagemap-{pid}"):
        (images / f"{name}.img").unlink()
    assert "image-missing" not in findings(images, offline=True)
    assert "image-missing" not in errors(images)
    (images / f"core-{pid}.img").unlink()
    assert "image-missing" in errors(images, offline=True)


# -- terminals ---------------------------------------------------------------------------------------------------------

def _with_ptys(tmp_path: Path, index: int, master: bool, slave: bool, sid: int | None = None) -> Path:
    """samples/loop-sh (its root leads its session) holding pty ``index``'s master and/or slave."""
    images = copy(SAMPLES / "loop-sh" / "images", tmp_path)
    with imgtool.open(images) as dump:
        leader = dump.root_task.pid
    info, tty_file = message_class("tty_info_entry"), message_class("tty_file_entry")
    files = entries(images, "files")
    infos = []
    next_id = max(e.id for e in files) + 1
    for is_master, wanted in ((True, master), (False, slave)):
        if not wanted:
            continue
        tie = info(id=index * 2 + is_master, type=1, locked=False, exclusive=False, packet_mode=False,
                   sid=leader if sid is None else sid, pgrp=leader if sid is None else sid,
                   rdev=(5 << 8 | 2) if is_master else (136 << 8 | index), dev=0)
        tie.pty.index = index
        for part in (tie.termios, tie.termios_locked):
            part.c_iflag = part.c_oflag = part.c_cflag = part.c_lflag = part.c_line = 0
            part.c_ispeed = part.c_ospeed = 0
            part.c_cc.extend([0] * 19)
        tie.winsize.ws_row = tie.winsize.ws_col = tie.winsize.ws_xpixel = tie.winsize.ws_ypixel = 0
        infos.append(tie)
        tty = tty_file(id=next_id, tty_info_id=tie.id, flags=2)
        tty.fown.uid = tty.fown.euid = tty.fown.signum = tty.fown.pid_type = tty.fown.pid = 0
        files.append(message_class("file_entry")(id=next_id, type=11, tty=tty))   # FD_TYPES TTY
        next_id += 1
    write(images, "files", "FILES", files)
    write(images, "tty-info", "TTY_INFO", infos)
    return images


def test_pty_pair_made_inside_the_tree_needs_no_shell_job(tmp_path: Path) -> None:
    """Both ends of pty 3 are in the dump, its session is led by a dumped task: criu restores it as it is."""
    images = _with_ptys(tmp_path, 3, master=True, slave=True)
    assert not errors(images) & {"option-shell-job", "tty-session-missing", "tty-external-peers"}


def test_inherited_terminal_needs_shell_job(tmp_path: Path) -> None:
    """A pty slave without its master (the shell's terminal): criu needs --shell-job to hand it criu's own."""
    images = _with_ptys(tmp_path, 4, master=False, slave=True, sid=99999)
    assert "option-shell-job" in errors(images)
    assert "option-shell-job" not in errors(images, ["--shell-job"])


def test_master_of_a_foreign_session(tmp_path: Path) -> None:
    """The controlling terminal of a session no dumped task leads: 'No task found with sid', --shell-job or not."""
    images = _with_ptys(tmp_path, 5, master=True, slave=False, sid=99999)
    assert "tty-session-missing" in errors(images, ["--shell-job"])


# -- sockets -----------------------------------------------------------------------------------------------------------

def _with_inet(tmp_path: Path, sock_type: int, proto: int, family: int = 2) -> Path:
    images = copy(SAMPLES / "loop-sh" / "images", tmp_path)
    files = entries(images, "files")
    isk = message_class("inet_sk_entry")(id=max(e.id for e in files) + 1, ino=4242, family=family, type=sock_type,
                                         proto=proto, state=7, src_port=0, dst_port=0, flags=2, backlog=0)
    isk.fown.uid = isk.fown.euid = isk.fown.signum = isk.fown.pid_type = isk.fown.pid = 0
    opts = isk.opts
    opts.so_sndbuf = opts.so_rcvbuf = opts.so_snd_tmo_sec = opts.so_snd_tmo_usec = 0
    opts.so_rcv_tmo_sec = opts.so_rcv_tmo_usec = 0
    isk.src_addr.append(0)
    isk.dst_addr.append(0)
    files.append(message_class("file_entry")(id=isk.id, type=4, isk=isk))   # FD_TYPES INETSK
    write(images, "files", "FILES", files)
    return images


@pytest.mark.parametrize(("sock_type", "proto", "family"), [(3, 1, 2), (3, 58, 10), (3, 255, 2), (2, 1, 2),
                                                             (2, 58, 10)])
def test_raw_and_icmp_sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sock_type: int, proto: int,
                              family: int) -> None:
    """Raw sockets (root has CAP_NET_RAW) restore; ICMP datagram sockets only for groups in ping_group_range."""
    images = _with_inet(tmp_path, sock_type, proto, family)
    monkeypatch.setattr(host_checks, "_ping_range", lambda dump, isk: ((1, 0), "this host"))
    ping = sock_type == 2
    assert ("host-ping-group" in errors(images)) == ping
    monkeypatch.setattr(host_checks, "_ping_range", lambda dump, isk: ((0, 2**31 - 1), "this host"))
    assert "host-ping-group" not in errors(images)


@needs_corpus
def test_bind_and_external_mounts_map_to_host_paths(tmp_path: Path) -> None:
    """Binds of the root mount come from under --root, external mounts and their binds from the mapped path,
    proc and tmpfs are recreated (criu's mnt_is_root_bind / mnt_get_external_bind / do_new_mount)."""
    images = copy(NS, tmp_path)
    mounts = entries(images, "mountpoints-13")
    root = next(m for m in mounts if m.mountpoint == "/")
    extra = []
    for mnt_id, dev, mroot, point, key in ((90, root.root_dev, root.root + "/srv", "/data", None),
                                           (91, 999, "/", "/ext", "EXT1"), (92, 999, "/sub", "/ext2", None)):
        m = type(root)()
        m.CopyFrom(root)
        m.mnt_id, m.root_dev, m.root, m.mountpoint, m.parent_mnt_id = mnt_id, dev, mroot, point, root.mnt_id
        if key:
            m.ext_key, m.source = key, "/dev/sdb"
        elif dev == 999:
            m.source = "/dev/sdb"
        extra.append(m)
    write(images, "mountpoints-13", "MNTS", mounts + extra)
    rootfs = tmp_path / "rootfs"
    with imgtool.open(images) as dump:
        tree = MountTree(dump, ["--root", str(rootfs), "--external", "mnt[EXT1]:/host/ext"])
        assert tree.locate("/data/x", 90, rootfs).host == rootfs / "srv" / "x"
        assert tree.locate("/ext/a/b", 91, rootfs).host == Path("/host/ext/a/b")
        assert tree.locate("/ext2/c", 92, rootfs).host == Path("/host/ext/sub/c")
        assert tree.locate("/proc/1/status", 44, rootfs).how == "recreated"
        assert tree.locate("/tmp/init.out", 46, rootfs).how == "recreated"
        assert tree.locate("/bin/busybox", 64, rootfs).host == rootfs / "bin" / "busybox"
        unmapped = MountTree(dump, ["--root", str(rootfs)])
        assert unmapped.locate("/ext/a", 91, rootfs).how == "unmapped"
    assert "option-ext-mount" in errors(images, ["--root", str(rootfs)])


def test_unsent_tcp_data_to_a_gone_loopback_peer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """zdtm socket-tcp-fin-wait1 restored where its peer and criu's DROP rules are gone: criu sends the unsent
    queue, the reset makes it fail 'Can't restore not-sent send queue data ... Broken pipe'."""
    images = _with_inet(tmp_path, 1, 6)
    files = entries(images, "files")
    isk = files[-1].isk
    isk.state, isk.src_port, isk.dst_port = 4, 8880, 33016
    isk.src_addr[0] = isk.dst_addr[0] = 0x0100007F          # 127.0.0.1
    write(images, "files", "FILES", files)
    stream = message_class("tcp_stream_entry")(inq_len=0, inq_seq=1, outq_len=955, outq_seq=2, opt_mask=0,
                                               snd_wscale=0, mss_clamp=0, unsq_len=955)
    (images / f"tcp-stream-{isk.ino:x}.img").write_bytes(image_bytes("TCP_STREAM", [(stream, b"x" * 955)]))
    monkeypatch.setattr(host_checks, "_proc_net_connections", lambda: set())
    monkeypatch.setattr(host_checks, "_locked", lambda *a: False)
    assert "host-tcp-peer-gone" in errors(images, ["--tcp-established"])
    monkeypatch.setattr(host_checks, "_locked", lambda *a: True)            # criu's dump-time rules hold it
    assert "host-tcp-peer-gone" not in findings(images, ["--tcp-established"])
    monkeypatch.setattr(host_checks, "_locked", lambda *a: False)
    monkeypatch.setattr(host_checks, "_proc_net_connections", lambda: {("127.0.0.1", 33016, "127.0.0.1", 8880)})
    assert "host-tcp-peer-gone" not in findings(images, ["--tcp-established"])


def _with_listener(tmp_path: Path, name: Path) -> Path:
    images = copy(SAMPLES / "loop-sh" / "images", tmp_path)
    files = entries(images, "files")
    usk = message_class("unix_sk_entry")(id=max(e.id for e in files) + 1, ino=4343, type=1, state=10, flags=0,
                                         uflags=0, backlog=5, peer=0, name=os.fsencode(name) + b"\0")
    usk.fown.uid = usk.fown.euid = usk.fown.signum = usk.fown.pid_type = usk.fown.pid = 0
    opts = usk.opts
    opts.so_sndbuf = opts.so_rcvbuf = opts.so_snd_tmo_sec = opts.so_snd_tmo_usec = 0
    opts.so_rcv_tmo_sec = opts.so_rcv_tmo_usec = 0
    files.append(message_class("file_entry")(id=usk.id, type=5, usk=usk))   # FD_TYPES UNIXSK
    write(images, "files", "FILES", files)
    return images


def test_unix_socket_path_taken(tmp_path: Path) -> None:
    """criu removes a stale socket file where it binds a unix socket again, but no other kind of file."""
    path = tmp_path / "app.sock"
    images = _with_listener(tmp_path, path)
    assert "host-unix-path-taken" not in findings(images)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(os.fspath(path))
    assert "host-unix-path-taken" not in findings(images)       # criu unlinks it (unlink_sk)
    path.unlink()
    path.write_text("not a socket")
    assert "host-unix-path-taken" in errors(images)


def test_stale_socket_file_in_a_user_namespace(tmp_path: Path) -> None:
    """zdtm sockets00 (uns): the namespace's root (host uid 20000) cannot unlink the stale socket file in a
    root-owned 755 directory, so bind() fails."""
    folder = tmp_path / "static"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(os.fspath(folder / "sockets00.test"))
    userns = ([(0, 20000, 20000)], [(0, 400000, 50000)], 20000, 400000)
    assert "not writable" in host_checks._unlink_denied(folder / "sockets00.test", userns)
    folder.chmod(0o777)
    assert host_checks._unlink_denied(folder / "sockets00.test", userns) is None
    folder.chmod(0o1777)
    assert "sticky" in host_checks._unlink_denied(folder / "sockets00.test", userns)
    mapped = ([(0, 0, 20000)], [(0, 0, 50000)], 0, 0)       # host root mapped in: CAP_DAC_OVERRIDE applies
    folder.chmod(0o755)
    assert host_checks._unlink_denied(folder / "sockets00.test", mapped) is None
