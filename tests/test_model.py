"""The dump model on real checkpoints with known ground truth (each scenario's SCENARIO.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

import imgtool

from corpus import CORPUS, SAMPLES

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"team corpus not found at {CORPUS}")


def test_tree_scenario_shape() -> None:
    with imgtool.open(SAMPLES / "tree") as dump:   # the scenario dir: images/ is found inside
        root = dump.root_task
        assert (root.pid, root.comm) == (12433, "tree-root")
        assert [(t.pid, t.comm) for t in root.children] == [(12435, "tree-child-a"), (12436, "tree-child-b")]
        assert [(t.pid, t.ppid) for t in dump.task(12435).children] == [(12437, 12435)]
        assert {t.pgid for t in dump.tasks} == {t.sid for t in dump.tasks} == {12433}
        assert len(dump.tasks) == 4 and all(t.state == "alive" for t in dump.tasks)


@needs_corpus
def test_threads_scenario() -> None:
    with imgtool.open(CORPUS / "threads" / "images") as dump:
        (task,) = dump.tasks
        assert task.threads == [12884, 12886, 12887, 12888, 12889]
        assert [t.comm for t in task.thread_list] == ["threads-main", "worker-0", "worker-1", "worker-2",
                                                      "worker-3"]


EXPECTED_FDS = {  # fds/SCENARIO.md
    0: ("REG", {"path": "/dev/null"}),
    1: ("REG", {"path": "/tmp/criu-work2/fds/out.txt", "flags": "O_WRONLY | O_APPEND | O_LARGEFILE"}),
    2: ("REG", {"path": "/tmp/criu-work2/fds/out.txt", "flags": "O_WRONLY | O_APPEND | O_LARGEFILE"}),
    3: ("REG", {"path": "/tmp/criu-work2/fds/data.txt", "flags": "O_RDWR | O_LARGEFILE", "pos": 37, "size": 200}),
    4: ("REG", {"path": "/tmp/criu-work2/fds/ghost.txt", "flags": "O_RDWR | O_LARGEFILE"}),
    5: ("PIPE", {}), 6: ("PIPE", {}),
    7: ("FIFO", {"path": "/tmp/criu-work2/fds/myfifo"}),
    8: ("UNIXSK", {"type": "STREAM", "state": "ESTABLISHED"}),
    9: ("UNIXSK", {"type": "STREAM", "state": "ESTABLISHED"}),
    10: ("EVENTFD", {"counter": 12}),
    11: ("SIGNALFD", {"signals": ["SIGUSR1", "SIGUSR2"]}),
    12: ("TIMERFD", {"clock": "CLOCK_MONOTONIC", "interval_s": 500.0}),
    13: ("EVENTPOLL", {}),
    14: ("INOTIFY", {}),
    15: ("MEMFD", {"name": "corpus-memfd", "size": 4109, "pos": 13, "seals": "F_SEAL_SEAL"}),
}
QUEUED = {5: b"PIPE-DATA-UNREAD-12345", 6: b"PIPE-DATA-UNREAD-12345", 7: b"FIFO-DATA-UNREAD!",
          8: b"SOCKPAIR-B-TO-A-XYZ", 9: b"SOCKPAIR-A-TO-B"}


def test_fds_scenario_every_descriptor() -> None:
    with imgtool.open(SAMPLES / "fds" / "images") as dump:
        (task,) = dump.tasks
        fds = {fd.fd: fd for fd in task.fds}
        assert sorted(fds) == list(range(16))
        for number, (kind, details) in EXPECTED_FDS.items():
            fd = fds[number]
            assert fd.file.kind == kind
            assert {k: fd.file.details[k] for k in details} == details, number
            assert (fd.file.queued or b"") == QUEUED.get(number, b"")
        assert fds[5].file.details["pipe_id"] == fds[6].file.details["pipe_id"]  # two ends of one pipe
        assert fds[8].file.details["peer"] == fds[9].file.details["ino"]
        ghost = fds[4].file.details["remap"]
        assert ghost["type"] == "ghost" and ghost["ghost_bytes"] == 64
        assert ghost["ghost_preview"] == "GHOST-CONTENT-this-file-was-unlinked-while-open-0123456789abcdef"
        targets = {t["fd"]: (t["events"], t["data"]) for t in fds[13].file.details["targets"]}
        assert {fd: data for fd, (_, data) in targets.items()} == {5: 0x5, 10: 0xA, 8: 0x8}
        assert targets[8][0].startswith("EPOLLIN | EPOLLOUT")
        (watch,) = fds[14].file.details["watches"]
        assert watch["mask"] == "IN_MODIFY | IN_CREATE | IN_DELETE"
        assert task.cwd == "/tmp/criu-work2/fds/cwd-dir" and task.root == "/"


def test_tcp_scenario_sockets() -> None:
    with imgtool.open(SAMPLES / "tcp") as dump:
        server, client = dump.tasks
        listen, conn = (fd.file for fd in server.fds if fd.file.kind == "INETSK")
        assert (listen.details["state"], listen.details["src"]) == ("LISTEN", "127.0.0.1:34567")
        (peer,) = (fd.file for fd in client.fds if fd.file.kind == "INETSK")
        assert conn.details["src"] == peer.details["dst"] and conn.details["dst"] == peer.details["src"]
        assert conn.details["state"] == peer.details["state"] == "ESTABLISHED"
        assert conn.queued.startswith(b"CLIENT-TO-SERVER") and peer.queued.startswith(b"SERVER-TO-CLIENT")
        total = conn.details["recv_queue_bytes"] + conn.details["send_queue_bytes"]
        assert total == len(conn.queued)


@needs_corpus
def test_incremental_chain_is_followed() -> None:
    with imgtool.open(CORPUS / "incremental" / "images-1") as dump:
        chain = [d.path.name for d in dump.chain()]
        assert chain == ["images-1", "images-0"]


@needs_corpus
def test_podman_export_dir_exposes_container_metadata() -> None:
    with imgtool.open(CORPUS / "podman" / "extracted") as dump:
        assert dump.path.name == "checkpoint"
        assert dump.metadata["config.dump"]["name"] == "corpus-pod"
        assert [t.comm for t in dump.tasks] == ["sh", "sleep"]


def test_missing_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(imgtool.ImgtoolError, match="no CRIU image directory"):
        imgtool.open(tmp_path)


@needs_corpus
def test_podman_archive_opens_in_a_private_temp_dir(capsys: pytest.CaptureFixture[str]) -> None:
    import tempfile

    from imgtool.cli.app import main

    archive = CORPUS / "podman" / "checkpoint.tar.gz"  # zstd inside, whatever the name says
    before = set(Path(tempfile.gettempdir()).glob("imgtool-*"))
    with imgtool.open(archive) as dump:
        unpacked = dump.root
        assert unpacked.name.startswith("imgtool-") and dump.path == unpacked / "checkpoint"
        assert dump.metadata["config.dump"]["name"] == "corpus-pod"
        assert [t.comm for t in dump.tasks] == ["sh", "sleep"]
    assert not unpacked.exists()
    assert main(["summary", str(archive), "--json"]) == 0
    assert '"name": "corpus-pod"' in capsys.readouterr().out
    assert set(Path(tempfile.gettempdir()).glob("imgtool-*")) == before
