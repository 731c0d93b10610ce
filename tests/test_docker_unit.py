"""Docker support without dockerd: a real Docker checkpoint kept in tests/data/docker (see its README.md).

The container view (summary), ``imgtool ls``, ``check --for-container`` and ``explain`` of Docker's error texts;
tests/test_docker.py runs the same commands on fresh checkpoints where dockerd can start.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import imgtool
from imgtool.analysis.checks import Context, run_checks
from imgtool.analysis.explain import explain_file, explain_text
from imgtool.cli.app import main
from imgtool.errors import UsageError
from imgtool.model import docker

from corpus import SAMPLES

DATA = Path(__file__).resolve().parent / "data" / "docker"
ID = "3aa748e6a5d644fd543c661bf1a71acfe27468ee1e5178c6c7e75ef4ac24212e"
CONTAINER = DATA / "containers" / ID
CHECKPOINT = CONTAINER / "checkpoints" / "ck-tty"
NOTTY = DATA / "target-notty"

# What Docker 20.10 printed in the scenarios of scripts/docker-env.sh (paths shortened).
TASK = "/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby/5a5610371f80"
DUMP_ERROR = ("Error response from daemon: Cannot checkpoint container imgtool-tcp: runc did not terminate "
              f"successfully: exit status 1: criu failed: type NOTIFY errno 0 path= {TASK}/criu-dump.log: unknown\n")
RESTORE_ERROR = ("Error response from daemon: OCI runtime restore failed: criu failed: type NOTIFY errno 0\n"
                 f"log file: {TASK}/work/restore.log: unknown\n")
TTY_ERROR = "Error response from daemon: OCI runtime restore failed: bad file descriptor: unknown\n"
DIR_ERROR = "Error response from daemon: custom checkpointdir is not supported\n"


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out + out.err


def codes(path: Path, options: list[str] | None = None, **kwargs: object) -> dict[str, str]:
    with imgtool.open(path) as dump:
        return {f.code: f.severity for f in run_checks(Context(dump, criu_options=options or [], **kwargs))}


# -- model/docker.py -------------------------------------------------------------------------------------------------

def test_container_of_checkpoint() -> None:
    assert docker.container_dir_of(CHECKPOINT) == CONTAINER
    c = docker.container_of(CHECKPOINT)
    assert c is not None
    assert (c.id, c.name, c.image, c.tty, c.network_mode, c.runtime) == \
        (ID, "imgtool-tty", "imgtool/busybox:latest", True, "default", "runc")
    assert c.command[:2] == ("sh", "-c") and "while :" in c.command[2]
    assert c.created.startswith("2026-") and c.networks == ("bridge",) and c.image_id.startswith("sha256:")
    assert [ck.name for ck in c.checkpoints()] == ["ck-tty"]
    ck = c.checkpoints()[0]
    assert ck.images and ck.size == docker.tree_size(CHECKPOINT) > 100_000


def test_not_docker(tmp_path: Path) -> None:
    assert docker.container_of(SAMPLES / "loop-sh" / "images") is None
    assert docker.container_of(tmp_path) is None
    fake = tmp_path / "containers" / "x" / "checkpoints" / "ck"
    fake.mkdir(parents=True)
    assert docker.container_of(fake) is None                    # no config.v2.json two levels up
    (fake.parent.parent / "config.v2.json").write_text("[1, 2")
    assert docker.container_of(fake) is None                    # unreadable: not Docker's
    with pytest.raises(UsageError, match="not JSON"):
        docker.read_container(fake.parent.parent)
    (fake.parent.parent / "config.v2.json").write_text('{"Name": "/x"}')
    with pytest.raises(UsageError, match="not a Docker container config"):
        docker.read_container(fake.parent.parent / "config.v2.json")
    with pytest.raises(UsageError, match="no such file"):
        docker.read_container(tmp_path)


def test_read_container_accepts_config_file() -> None:
    assert docker.read_container(NOTTY / "config.v2.json") == docker.read_container(NOTTY)
    notty = docker.read_container(NOTTY)
    assert notty.name == "imgtool-notty" and not notty.tty and notty.checkpoints() == []


def test_provided_mounts() -> None:
    c = docker.read_container(CONTAINER)
    provided = c.provided_mounts()
    for dest in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/console"):
        assert docker.provides(provided, dest), dest
    assert docker.provides(provided, "/sys/fs/cgroup/memory")
    assert not docker.provides(provided, "/data")
    assert not docker.provides(docker.read_container(NOTTY).provided_mounts(), "/dev/console")


def test_criu_option_hint() -> None:
    hint = docker.criu_option_hint("--tcp-established")
    assert "/etc/criu/runc.conf" in hint and "'tcp-established'" in hint and "org.criu.config" in hint


# -- the container view ----------------------------------------------------------------------------------------------

def test_summary_json_container_view(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "summary", "--json", CHECKPOINT)
    assert code == 0, out
    view = json.loads(out)["container"]
    assert view["engine"] == "Docker" and view["name"] == "imgtool-tty" and view["id"] == ID
    assert view["image"] == "imgtool/busybox:latest" and view["runtime"] == "runc" and view["tty"] is True
    assert view["network_mode"] == "default" and view["checkpoint"] == "ck-tty"
    assert view["restore_command"] == "docker start --checkpoint ck-tty imgtool-tty"
    assert view["sizes"]["checkpoint"] > 100_000 and view["sizes"]["memory_pages"] > 0


def test_summary_text_names_container(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "summary", CHECKPOINT)
    assert code == 0, out
    assert "Docker" in out and "imgtool-tty" in out and "imgtool/busybox:latest" in out


def test_ps_names_container(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "ps", CHECKPOINT)
    assert code == 0 and "Docker container imgtool-tty" in " ".join(out.split()), out


def test_no_container_view_outside_docker_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(CHECKPOINT, tmp_path / "ck")
    code, out = run(capsys, "summary", "--json", tmp_path / "ck")
    assert code == 0 and json.loads(out)["container"] is None


# -- imgtool ls ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", [CONTAINER, CONTAINER / "config.v2.json", CONTAINER / "checkpoints", CHECKPOINT])
def test_ls(capsys: pytest.CaptureFixture[str], where: Path) -> None:
    code, out = run(capsys, "ls", "--json", where)
    assert code == 0, out
    data = json.loads(out)
    assert data["container"]["name"] == "imgtool-tty"
    [ck] = data["checkpoints"]
    assert (ck["name"], ck["images"], ck["processes"], ck["root_comm"]) == ("ck-tty", True, 2, "sh")


def test_ls_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "ls", CONTAINER)
    assert code == 0, out
    assert "imgtool-tty" in out and "ck-tty" in out and "tty yes" in out


def test_ls_without_checkpoints_and_not_docker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "ls", NOTTY)
    assert code == 0 and "no checkpoints" in out, out
    code, out = run(capsys, "ls", tmp_path)
    assert code == 2 and "not a Docker container dir" in out, out


def test_ls_failed_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint dir without images (a dump that failed part way) is listed as such."""
    shutil.copytree(CONTAINER, tmp_path / "c")
    (tmp_path / "c" / "checkpoints" / "broken").mkdir()
    code, out = run(capsys, "ls", "--json", tmp_path / "c")
    assert code == 0, out
    rows = {r["name"]: r for r in json.loads(out)["checkpoints"]}
    assert rows["broken"]["images"] is False and rows["broken"]["processes"] is None
    assert rows["ck-tty"]["processes"] == 2


# -- check --for-container -------------------------------------------------------------------------------------------

def test_check_for_same_container(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "check", CHECKPOINT, "--for-container", CONTAINER, "--offline")
    assert code == 0, out
    assert "docker-same-container" in out


def test_check_for_container_skips_plain_restore_checks(capsys: pytest.CaptureFixture[str]) -> None:
    """Not offline: the checks of a plain criu restore (--root, external mounts, --shell-job) do not apply, runc
    picks those options; the summary names the Docker restore."""
    code, out = run(capsys, "check", CHECKPOINT, "--for-container", CONTAINER)
    assert code == 0, out
    assert "docker-host-checks" in out and "option-root" not in out and "option-shell-job" not in out
    assert "docker start --checkpoint into imgtool-tty should succeed" in " ".join(out.split())
    code, out = run(capsys, "check", CHECKPOINT)       # without it: a plain criu restore needs those options
    assert code == 1 and "option-root" in out, out


def test_check_for_container_without_tty(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "check", CHECKPOINT, "--for-container", NOTTY / "config.v2.json", "--offline", "--json")
    assert code == 1, out
    findings = {f["code"]: f for f in json.loads(out)["findings"]}
    tty = findings["docker-tty"]
    assert tty["severity"] == "error" and "Don't have tty to inherit session from" in tty["message"]
    assert "-t" in tty["hint"] and "imgtool-tty" in tty["hint"]      # create it with -t, or the original
    assert findings["docker-other-container"]["severity"] == "info"


def test_check_for_container_with_tty_but_dump_without(tmp_path: Path) -> None:
    """The loop-sh sample has no terminal; a container created with -t gets a warning."""
    with imgtool.open(SAMPLES / "loop-sh" / "images") as dump:
        found = {f.code: f.severity for f in run_checks(Context(dump, offline=True,
                                                                container=docker.read_container(CONTAINER)))}
    assert found.get("docker-tty") == "warning"


def _target(tmp_path: Path, **changes: object) -> docker.Container:
    """A copy of the tty container's dir with config.v2.json fields changed (dotted keys: Config.Image)."""
    folder = tmp_path / "target"
    shutil.copytree(CONTAINER, folder, ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((folder / "config.v2.json").read_text())
    config["ID"] = "f" * 64
    for key, value in changes.items():
        where = config
        *path, last = key.split(".")
        for part in path:
            where = where[part]
        where[last] = value
    (folder / "config.v2.json").write_text(json.dumps(config))
    return docker.read_container(folder)


def test_check_for_container_other_image(tmp_path: Path) -> None:
    target = _target(tmp_path, **{"Config.Image": "alpine:3", "Image": "sha256:" + "0" * 64})
    found = codes(CHECKPOINT, offline=True, container=target)
    assert found["docker-image"] == "warning" and "docker-tty" not in found


def test_check_for_container_extra_volume(tmp_path: Path) -> None:
    target = _target(tmp_path, MountPoints={"/data": {"Destination": "/data", "Source": "/var/lib/docker/volumes/d",
                                                      "Type": "volume", "Name": "d", "RW": True}})
    assert codes(CHECKPOINT, offline=True, container=target)["docker-mount-unused"] == "warning"


def test_check_for_container_running_and_runtime(tmp_path: Path) -> None:
    target = _target(tmp_path, **{"State.Running": True})
    (target.dir / "hostconfig.json").write_text(json.dumps({"NetworkMode": "default", "Runtime": "crun"}))
    found = codes(CHECKPOINT, offline=True, container=docker.read_container(target.dir))
    assert found["docker-running"] == "warning" and found["docker-runtime"] == "warning"


def test_check_for_container_bad_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "check", CHECKPOINT, "--for-container", tmp_path, "--offline")
    assert code == 2 and "config.v2.json" in out, out


# -- connected TCP sockets: offline, and the Docker hint ---------------------------------------------------------------

def test_established_tcp_offline(capsys: pytest.CaptureFixture[str]) -> None:
    images = SAMPLES / "tcp" / "images"
    assert codes(images, offline=True)["option-tcp-established"] == "error"
    assert "option-tcp-established" not in codes(images, ["--tcp-established"], offline=True)
    assert "option-tcp-established" not in codes(images, ["--tcp-close"], offline=True)
    code, out = run(capsys, "check", images, "--offline")
    assert code == 1 and "tcp-established" in out and "runc.conf" not in out, out


def test_established_tcp_docker_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The tcp sample put into a Docker container dir: the hint says how runc gets the option."""
    folder = tmp_path / "containers" / ID
    shutil.copytree(CONTAINER, folder, ignore=shutil.ignore_patterns("checkpoints"))
    shutil.copytree(SAMPLES / "tcp" / "images", folder / "checkpoints" / "ck-tcp")
    code, out = run(capsys, "check", folder / "checkpoints" / "ck-tcp", "--offline", "--json")
    assert code == 1, out
    [finding] = [f for f in json.loads(out)["findings"] if f["code"] == "option-tcp-established"]
    assert "/etc/criu/runc.conf" in finding["hint"] and "tcp-established" in finding["hint"]
    code, out = run(capsys, "check", folder / "checkpoints" / "ck-tcp", "--offline", "--", "--tcp-established")
    assert code == 0, out


# -- explain: Docker's, containerd's and runc's error texts ------------------------------------------------------------

def test_explain_docker_dump_error() -> None:
    e = explain_text(DUMP_ERROR)
    assert (e.verdict, e.operation, e.cause) == ("failed", "dump", "runc-criu-failed")
    assert e.details["criu_log"] == f"{TASK}/criu-dump.log"
    assert e.details["container"] == "imgtool-tcp" and e.details["engine"] == "Docker"
    assert f"imgtool explain {TASK}/criu-dump.log" in e.fix


def test_explain_docker_restore_error() -> None:
    e = explain_text(RESTORE_ERROR)
    assert (e.verdict, e.operation, e.cause) == ("failed", "restore", "runc-criu-failed")
    assert e.details["criu_log"] == f"{TASK}/work/restore.log" and e.first_error_line == 1


def test_explain_docker_restore_without_log() -> None:
    e = explain_text(TTY_ERROR)
    assert (e.verdict, e.operation, e.cause) == ("failed", "restore", "runc-restore-failed")
    assert "bad file descriptor" in e.summary and "terminal" in e.summary
    assert "restore.log" in e.details["criu_log_places"] and "moby" in e.fix


def test_explain_docker_daemon_refusal() -> None:
    e = explain_text(DIR_ERROR)
    assert (e.verdict, e.operation, e.cause) == ("failed", "restore", "docker-checkpoint-dir")
    assert explain_text("Error response from daemon: No such container: x\n").cause == "docker-error"


def test_explain_runc_and_podman_texts() -> None:
    runc = explain_text("criu failed: type RESTORE errno 0\nlog file: /tmp/ck/restore.log\n")
    assert (runc.verdict, runc.operation, runc.cause) == ("failed", "restore", "runc-criu-failed")
    podman = explain_text("Error: OCI runtime error: runc: criu failed: type DUMP errno 0\n"
                          "log file: /var/lib/containers/storage/overlay-containers/abc/userdata/dump.log\n")
    assert (podman.operation, podman.cause) == ("dump", "runc-criu-failed")


def test_explain_follows_the_named_log(tmp_path: Path) -> None:
    """When the log the error names exists, its cause is included."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "restore.log").write_text(
        "(00.000001) Version: 4.2 (gitid 0)\n"
        "(00.254286)     11: Error (criu/sk-inet.c:912): inet: Connected TCP socket in image\n"
        "(00.257664) Error (criu/cr-restore.c:2331): Restoring FAILED.\n")
    stderr = tmp_path / "restore.stderr"
    stderr.write_text(RESTORE_ERROR.replace(f"{TASK}/work", str(work)))
    e = explain_file(stderr)
    assert e.cause == "runc-criu-failed" and e.details["criu_log_cause"] == "tcp-established"
    assert "Connected TCP socket in image" in e.details["criu_log_first_error"]
    assert "--tcp-established" in e.fix and "runc" in e.summary


def test_explain_cli_on_docker_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dump.stderr"
    path.write_text(DUMP_ERROR)
    code, out = run(capsys, "explain", "--json", path)
    assert code == 1
    data = json.loads(out)
    assert data["verdict"] == "failed" and "criu-dump.log" in data["details"]["criu_log"]


def test_explain_plain_criu_log_unchanged() -> None:
    """A CRIU log is still explained as one (the wrapper is read only when no CRIU verdict or error is found)."""
    e = explain_text("(00.100000) Error (criu/sk-inet.c:912): inet: Connected TCP socket in image\n"
                     "(00.200000) Error (criu/cr-restore.c:2331): Restoring FAILED.\n")
    assert e.cause == "tcp-established" and "criu_log" not in e.details
