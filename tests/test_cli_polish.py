"""The command line people expect: completion, man page, -V, criu options after "--", closed pipes, exit codes,
crit's socket names, no raw control bytes on a terminal, pipe-friendly and narrow-terminal output; and the
container views (summary's container, ps --env, mounts, stats, mem read --hexdump)."""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path
from types import SimpleNamespace

import pytest

from imgtool import __version__
from imgtool.crit import explore
from imgtool.format.pb import sk_unix_pb2
from imgtool.model import container as containers
from imgtool.render.console import clean, console, hexdump, table

from corpus import CORPUS, SAMPLES

cli = importlib.import_module("imgtool.cli.app")   # the module (imgtool.cli.app is also its function's name)
LOOP = SAMPLES / "loop-sh" / "images"
FDS = SAMPLES / "fds" / "images"
PODMAN = CORPUS / "podman"
needs_podman = pytest.mark.skipif(not (PODMAN / "checkpoint.tar.gz").is_file(), reason="no podman corpus")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LIBC_VMA = ("11932", "0x7f9367fd8000")   # 1400832 bytes of libc text, no pages dumped (zero-filled)


def run(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgtool", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kw)


def run_pty(*args: str, columns: int = 80, env: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Run imgtool with stdout and stderr on a terminal ``columns`` wide; its exit code and raw output."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    environ.update({"TERM": "xterm", "COLUMNS": str(columns)}, **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "imgtool", *args], stdout=slave, stderr=slave,
                            stdin=subprocess.DEVNULL, env=environ)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:   # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(), b"".join(chunks)


def screen(raw: bytes) -> list[str]:
    return [ANSI.sub("", line) for line in raw.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")]


# -- completion, man page, version -----------------------------------------------------------------------------------


def test_bash_completion_completes_commands_and_options() -> None:
    script = run("completion", "bash")
    assert script.returncode == 0, script.stderr
    probe = ('source /dev/stdin; complete -p imgtool; '
             'COMP_WORDS=(imgtool sum); COMP_CWORD=1; COMP_LINE="imgtool sum"; COMP_POINT=11; '
             '_shtab_imgtool imgtool sum imgtool; echo "1:${COMPREPLY[*]}"; '
             'COMP_WORDS=(imgtool ps --e); COMP_CWORD=2; COMP_LINE="imgtool ps --e"; COMP_POINT=14; '
             '_shtab_imgtool imgtool --e ps; echo "2:${COMPREPLY[*]}"')
    done = subprocess.run(["bash", "-c", probe], input=script.stdout, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "1:summary" in done.stdout
    assert "--env" in done.stdout.split("2:")[1]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion_scripts(shell: str) -> None:
    script = run("completion", shell)
    assert script.returncode == 0, script.stderr
    if shell == "zsh":
        assert script.stdout.startswith("#compdef imgtool")
        assert "summary" in script.stdout and "--traceback" in script.stdout
    else:
        assert "complete -c imgtool" in script.stdout
        assert re.search(r"-a summary -d ", script.stdout)
        assert "__fish_seen_subcommand_from mem; and __fish_seen_subcommand_from read' -l hexdump" in script.stdout
    binary = shutil.which(shell)
    if binary:   # the shell parses it
        check = [binary, "-n"] if shell == "zsh" else [binary, "--no-execute"]
        done = subprocess.run(check, input=script.stdout, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_completion_of_an_unknown_shell_is_a_usage_error() -> None:
    proc = run("completion", "tcsh")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_man_page_covers_every_command(tmp_path: Path) -> None:
    proc = run("man")
    assert proc.returncode == 0, proc.stderr
    page = proc.stdout
    assert page.startswith(".TH IMGTOOL 1 ")
    assert cli._subparser(cli.build_parser(), "man").prog == "imgtool man"
    for action in cli.build_parser()._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            for name in action.choices:
                assert f".SS {name}\n" in page, name
    assert ".SS mem read" in page and "\\-\\-hexdump" in page
    assert "[\\-\\- CRIU\\-OPTIONS ...]" in page   # check/restore usage
    assert ".SH EXIT STATUS" in page and "\n70\n" in page
    out = tmp_path / "imgtool.1"
    gen = subprocess.run([sys.executable, str(Path(__file__).parent.parent / "scripts" / "gen_man.py"), str(out)],
                         capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    assert out.read_text().splitlines()[1:] == page.splitlines()[1:]   # the same page, its date aside
    shipped = Path(__file__).parent.parent / "docs" / "imgtool.1"
    assert shipped.read_text().splitlines()[1:] == page.splitlines()[1:], \
        "docs/imgtool.1 is stale: run python scripts/gen_man.py"
    if shutil.which("man"):
        shown = subprocess.run(["man", "-l", str(out)], capture_output=True, text=True,
                               env={**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "100"})
        assert shown.returncode == 0 and "EXIT STATUS" in shown.stdout


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag: str) -> None:
    proc = run(flag)
    assert proc.returncode == 0 and proc.stdout.strip() == f"imgtool {__version__}"


# -- criu options after "--" -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "restore"])
def test_usage_shows_criu_options_after_double_dash(command: str) -> None:
    proc = run(command, "--help")
    assert proc.returncode == 0
    usage = " ".join(proc.stdout.split("\n\n")[0].split())
    assert usage.startswith(f"usage: imgtool {command} ") and usage.endswith("dir [-- CRIU-OPTIONS ...]")
    assert "CRIU-OPTIONS: criu restore options, after '--'" in proc.stdout


@pytest.mark.parametrize("command", ["check", "restore"])
def test_criu_options_without_double_dash_get_a_hint(command: str) -> None:
    proc = run(command, str(LOOP), "--tcp-established", "--shell-job")
    assert proc.returncode == 2
    assert f"usage: imgtool {command}" in proc.stderr
    assert "unrecognized arguments: --tcp-established --shell-job" in proc.stderr
    assert f"criu options go after '--': imgtool {command} DIR [OPTIONS] -- --tcp-established --shell-job" \
        in proc.stderr


def test_unknown_options_of_other_commands_have_no_criu_hint() -> None:
    proc = run("ps", str(LOOP), "--tcp-established")
    assert proc.returncode == 2 and "unrecognized arguments: --tcp-established" in proc.stderr
    assert "criu" not in proc.stderr


def test_criu_options_after_double_dash_reach_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", str(LOOP), "--offline", "--json", "--", "--shell-job"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["criu_options"] == ["--shell-job"]


def test_criu_options_reach_check_after_the_cache_option(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMGTOOL_CACHE", "")   # off, and restored after the test
    argv = ["--cache", str(tmp_path), "check", str(LOOP), "--offline", "--json", "--", "--shell-job"]
    assert cli.main(argv) in (0, 1)
    assert json.loads(capsys.readouterr().out)["criu_options"] == ["--shell-job"]
    assert cli.main(["--cache", str(tmp_path), "ps", str(PODMAN / "checkpoint.tar.gz")]) == 0
    assert [p.name.split("-")[0] for p in tmp_path.iterdir() if p.is_dir()] == ["zstd"]   # (podman's .tar.gz)
    assert os.environ["IMGTOOL_CACHE"] == ""          # and gone with it: an in-process caller keeps its own


def test_double_dash_ends_options_of_other_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ps", "--json", "--", str(LOOP)]) == 0
    assert [p["pid"] for p in json.loads(capsys.readouterr().out)] == [11932, 12013]


# -- closed pipes, exit codes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["show", str(FDS / "pagemap-13375.img")],
    ["mem", "read", str(LOOP), *LIBC_VMA, "1400832", "--zero-fill", "--hexdump", "-v"],
    ["maps", str(LOOP)],
    ["man"],
])
def test_a_closed_pipe_ends_quietly_with_exit_0(argv: list[str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "imgtool", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()   # what head does after its first line
    err = proc.stderr.read()
    assert proc.wait() == 0
    assert err == b""


def test_internal_error_has_its_own_exit_code_and_one_line(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from imgtool.cli.commands import inspect

    def broken(args: object) -> int:
        raise KeyError("boom")

    monkeypatch.setattr(inspect, "cmd_ps", broken)
    assert cli.main(["ps", str(LOOP)]) == cli.EXIT_INTERNAL == 70
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "imgtool: internal error: KeyError: 'boom'"
    assert "bug in imgtool" in err[1] and "--traceback" in err[1] and len(err) == 2
    with pytest.raises(KeyError):
        cli.main(["--traceback", "ps", str(LOOP)])


def test_exit_codes_of_bad_input_and_results(tmp_path: Path) -> None:
    assert run("ps", str(tmp_path / "missing")).returncode == cli.EXIT_ERROR == 2
    assert run("mem", "search", str(LOOP), "--string", "no such text anywhere 1234").returncode == 1
    assert run("ps", str(LOOP)).returncode == 0


# -- crit's socket names, no raw control bytes -------------------------------------------------------------------------


def test_x_fds_prints_unix_socket_names_quoted_printable_as_crit() -> None:
    msg = sk_unix_pb2.unix_sk_entry()
    msg.ino, msg.peer, msg.name = 75490, 75491, b"\x00abstract=name\xff"
    dump = SimpleNamespace(file_table=SimpleNamespace(payload=lambda kind, ident: msg))
    assert explore._crit_file(dump, "UNIXSK", 7) == "unix[75490 (75491) =00abstract=3Dname=FF]"
    msg.name = b""
    assert explore._crit_file(dump, "UNIXSK", 7) == "unix[75490 (75491)]"


def test_x_fds_matches_crit_on_the_samples() -> None:
    for scenario in ("fds", "tcp", "loop-sh", "tree", "container"):
        text = (SAMPLES / scenario / "crit-x.txt").read_text()
        expected = text.split("x images fds\n", 1)[1].split("\n\n=====", 1)[0].strip("\n")
        proc = run("x", str(SAMPLES / scenario / "images"), "fds")
        assert proc.stdout.strip("\n") == expected, scenario


def test_clean_shows_control_characters() -> None:
    assert clean("a\x00b\x1b[31mc\td\x7f\x85") == "a\\x00b\\x1b[31mc\td\\x7f\\x85"   # tabs stay
    assert clean("ünïcode ok") == "ünïcode ok"
    assert clean("two\nlines") == "two\\x0alines"


@pytest.fixture(scope="module")
def nul_comm_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """loop-sh with the comm of pid 11932 set to "sh\\0\\x1b[2Jevil"."""
    images = tmp_path_factory.mktemp("nul") / "images"
    shutil.copytree(LOOP, images, symlinks=True)
    core = images / "core-11932.img"
    doc = json.loads(run("decode", "-i", str(core)).stdout)
    doc["entries"][0]["tc"]["comm"] = "sh\x00\x1b[2Jevil"
    (images / "core.json").write_text(json.dumps(doc))
    proc = run("encode", "-i", str(images / "core.json"), "-o", str(core))
    assert proc.returncode == 0, proc.stderr
    (images / "core.json").unlink()
    return images


@pytest.mark.parametrize("argv", [["ps"], ["summary"], ["files"], ["x", "ps"], ["x", "fds"], ["ps", "--env"]])
def test_no_raw_nul_or_escape_from_the_dump_on_a_terminal(nul_comm_dump: Path, argv: list[str]) -> None:
    args = [argv[0], str(nul_comm_dump), *argv[1:]]
    code, raw = run_pty(*args, columns=120)
    assert code == 0, raw
    assert b"\x00" not in raw
    assert b"\x1b[2J" not in raw
    if argv != ["x", "fds"]:
        assert b"sh\\x00\\x1b[2Jevil" in raw


def test_console_on_a_terminal_never_writes_nul(tmp_path: Path) -> None:
    class Tty:
        def __init__(self) -> None:
            self.parts: list[str] = []

        def write(self, text: str) -> int:
            self.parts.append(text)
            return len(text)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return True

    tty = Tty()
    out = console(file=tty)   # type: ignore[arg-type]
    out.print("[bold]x[/]\x00y", style="red")
    text = "".join(tty.parts)
    assert "\x00" not in text and "\\x00" in text and "\x1b[" in text   # rich's own styles stay


# -- output through pipes and in narrow terminals ----------------------------------------------------------------------


@needs_podman
@pytest.mark.parametrize("command", ["summary", "ps", "files", "maps", "mounts"])
def test_piped_output_has_no_wrapping_and_no_trailing_spaces(command: str) -> None:
    proc = run(command, str(PODMAN / "extracted"), env={"COLUMNS": "40"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(line == line.rstrip() for line in lines)
    assert "\x1b" not in proc.stdout
    if command == "summary":
        long = [line for line in lines if 'while true; do echo "tick $i"' in line]
        assert len(long) == 1 and long[0].startswith("  command: /bin/sh -c echo")   # one line, not wrapped at 80
    if command == "mounts":
        assert any(len(line) > 120 for line in lines)
        assert sum("/dev/shm" in line for line in lines) == 1


def test_piped_table_is_one_record_per_line() -> None:
    proc = run("maps", str(LOOP))
    vmas = json.loads(run("maps", "--json", str(LOOP)).stdout)
    count = sum(len(t["vmas"]) for t in vmas)
    ranges = [line for line in proc.stdout.splitlines() if re.match(r"[0-9a-f]{12,}-[0-9a-f]{12,} ", line)]
    assert len(ranges) == count


@pytest.mark.parametrize("columns", [40, 60, 80, 100])
def test_narrow_terminal_never_cuts_addresses_or_numbers(columns: int) -> None:
    code, raw = run_pty("maps", str(LOOP), columns=columns)
    assert code == 0
    lines = screen(raw)
    assert all(len(line) <= columns for line in lines), max(lines, key=len)
    text = "\n".join(lines)
    for task in json.loads(run("maps", "--json", str(LOOP)).stdout):
        for vma in task["vmas"]:
            assert f"{vma['start']:012x}-{vma['end']:012x}" in text
            assert re.search(rf"(^|\s){vma['pages']}(\s|$)", text, re.M)


@pytest.mark.parametrize("columns", [50, 70, 80, 120])
def test_narrow_terminal_keeps_addresses_in_text_columns_whole(columns: int) -> None:
    hits = json.loads(run("mem", "search", str(LOOP), "--string", "TERM", "--json").stdout)
    code, raw = run_pty("mem", "search", str(LOOP), "--string", "TERM", columns=columns)
    assert code == 0
    lines = screen(raw)
    assert all(len(line) <= columns for line in lines if "searching" not in line)
    text = "\n".join(lines)
    for hit in hits:
        assert f"{hit['vaddr']:#x}" in text
        assert f"{hit['vma']['start']:#x}-{hit['vma']['end']:#x}" in text   # a text column, never folded


def test_narrow_terminal_wraps_long_text_in_summary() -> None:
    code, raw = run_pty("summary", str(LOOP), columns=50)
    assert code == 0
    lines = screen(raw)
    assert all(len(line) <= 50 for line in lines)
    joined = " ".join(" ".join(lines).split())
    assert "image version" in joined


def test_table_numeric_columns_do_not_wrap() -> None:
    t = table("t", ["addr", "n", "text"], [("0x7f0000001000", 123456789, "some words " * 10)], right=["n"])
    assert [c.no_wrap for c in t.columns] == [True, True, False]
    assert t.columns[0].min_width == len("0x7f0000001000")


# -- the container view ------------------------------------------------------------------------------------------------


@needs_podman
@pytest.mark.parametrize("where", ["checkpoint.tar.gz", "extracted"])
def test_summary_json_names_the_podman_container(where: str) -> None:
    proc = run("summary", "--json", str(PODMAN / where))
    assert proc.returncode == 0, proc.stderr
    c = json.loads(proc.stdout)["container"]
    assert c["engine"] == "Podman" and c["runtime"] == "runc" and c["name"] == "corpus-pod"
    assert c["id"] == "dd19826ea4b7dce8b42e620308dec4485408f784ecbed3e8d4a772ce2cdac8ee"
    assert c["image"] == "localhost/corpus-busybox:latest"
    assert c["created"] == "2026-11-26T17:05:54.835975693Z"
    assert c["command"][:2] == ["/bin/sh", "-c"]
    assert c["interfaces"] == []   # network.status is null: no network of its own
    sizes = c["sizes"]
    assert sizes["memory_pages"] == 143360 and sizes["rootfs_diff"] is None and sizes["gpu_pages"] is None
    if where == "checkpoint.tar.gz":
        assert sizes["checkpoint"] == (PODMAN / where).stat().st_size
    else:
        assert sizes["checkpoint"] == sum(p.stat().st_size for p in (PODMAN / where / "checkpoint").iterdir())


@needs_podman
def test_summary_text_shows_the_container() -> None:
    proc = run("summary", str(PODMAN / "checkpoint.tar.gz"))
    assert proc.returncode == 0, proc.stderr
    for wanted in ("engine: Podman", "runtime: runc", "name: corpus-pod", "image: localhost/corpus-busybox:latest",
                   "memory pages size 140.0 KiB", "created: 2026-11-26T17:05:54.835975693Z"):
        assert wanted in proc.stdout, wanted


def test_plain_dump_has_no_container() -> None:
    assert json.loads(run("summary", "--json", str(LOOP)).stdout)["container"] is None


def _fake_dump(tmp_path: Path, meta: dict) -> SimpleNamespace:
    images = tmp_path / "checkpoint"
    images.mkdir(exist_ok=True)
    (images / "pages-1.img").write_bytes(b"x" * 8192)
    (images / "amdgpu-pages-1.img").write_bytes(b"y" * 4096)
    (tmp_path / "rootfs-diff.tar").write_bytes(b"z" * 1024)
    return SimpleNamespace(metadata=meta, path=images, root=tmp_path, source=tmp_path)


def test_crio_container_with_cni_network(tmp_path: Path) -> None:
    meta = {"config.dump": {"id": "abc", "name": "k8s_ctr_pod", "rootfsImageName": "quay.io/x:1",
                            "runtime": "/usr/bin/crun", "createdTime": "2026-01-01T00:00:00Z",
                            "checkpointedTime": "2026-01-02T00:00:00Z"},
            "spec.dump": {"annotations": {"io.container.manager": "cri-o", "io.kubernetes.container.name": "ctr",
                                          "io.kubernetes.pod.name": "pod", "io.kubernetes.pod.namespace": "ns"},
                          "process": {"args": ["sleep", "1"], "terminal": True}},
            "network.status": [{"interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff"}],
                                "ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 0}]}]}
    c = containers.container_of(_fake_dump(tmp_path, meta))
    assert c is not None
    assert (c.engine, c.name, c.pod, c.namespace, c.runtime) == ("CRI-O", "ctr", "pod", "ns", "crun")
    assert (c.checkpointed, c.command, c.tty) == ("2026-01-02T00:00:00Z", ["sleep", "1"], True)
    (iface,) = c.interfaces
    assert (iface.name, iface.ip, iface.mac, iface.gateway) == ("eth0", ["10.88.0.5/16"], "aa:bb:cc:dd:ee:ff",
                                                                ["10.88.0.1"])
    assert c.sizes == {"checkpoint": 8192 + 4096, "memory_pages": 8192, "rootfs_diff": 1024, "gpu_pages": 4096}


def test_podman_netavark_network_and_containerd(tmp_path: Path) -> None:
    status = {"podman": {"interfaces": {"eth0": {"subnets": [{"ipnet": "10.88.0.2/16", "gateway": "10.88.0.1"}],
                                                 "mac_address": "02:42:ac:11:00:02"}}}}
    c = containers.container_of(_fake_dump(tmp_path, {
        "config.dump": {"id": "i", "name": "n", "rootfsImageName": "img", "lockID": 1, "runtime": "runc"},
        "network.status": status}))
    assert c is not None and c.engine == "Podman"
    assert [(i.name, i.ip, i.mac, i.gateway, i.network) for i in c.interfaces] == [
        ("eth0", ["10.88.0.2/16"], "02:42:ac:11:00:02", ["10.88.0.1"], "podman")]
    c = containers.container_of(_fake_dump(tmp_path, {"spec.dump": {"annotations": {
        "io.kubernetes.cri.container-name": "web", "io.kubernetes.cri.sandbox-name": "pod",
        "io.kubernetes.cri.sandbox-namespace": "default", "io.kubernetes.cri.image-name": "nginx:1"}}}))
    assert c is not None and (c.engine, c.name, c.pod, c.namespace, c.image) == \
        ("containerd", "web", "pod", "default", "nginx:1")


def test_an_engine_detector_is_one_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(containers, "DETECTORS", list(containers.DETECTORS))

    @containers.detector("Docker")
    def docker(dump, meta):
        return containers.Container("Docker", name="x") if "config.v2.json" in meta else None

    c = containers.container_of(_fake_dump(tmp_path, {"config.v2.json": {}}))
    assert c is not None and c.engine == "Docker" and c.sizes["memory_pages"] == 8192
    assert containers.container_of(_fake_dump(tmp_path, {})) is None


# -- ps --env, mounts, stats, mem read ---------------------------------------------------------------------------------


def test_ps_env_reads_the_environment_from_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ps", "--env", "--json", str(LOOP)]) == 0
    tasks = json.loads(capsys.readouterr().out)
    assert all("TERM=dumb" in t["environ"] and "HOME=/root" in t["environ"] for t in tasks)
    assert cli.main(["ps", "--json", str(LOOP)]) == 0
    assert all("environ" not in t for t in json.loads(capsys.readouterr().out))
    proc = run("ps", "--env", str(LOOP))
    assert "env TERM=dumb" in proc.stdout and "env LANG=C.UTF-8" in proc.stdout


@needs_podman
def test_mounts_view_of_the_podman_checkpoint() -> None:
    proc = run("mounts", "--json", str(PODMAN / "checkpoint.tar.gz"))
    assert proc.returncode == 0, proc.stderr
    (ns,) = json.loads(proc.stdout)
    assert ns["mnt_ns"] == "13" and len(ns["mounts"]) == 29
    by_point = {m["mountpoint"]: m for m in ns["mounts"]}
    assert ns["mounts"][0]["mountpoint"] == "/" and ns["mounts"][0]["depth"] == 0
    assert by_point["/dev/shm"]["external"] and by_point["/dev/shm"]["type"] == "tmpfs"
    assert by_point["/proc/bus"]["bind"] and by_point["/proc/bus"]["root"] == "/bus"
    assert by_point["/proc/bus"]["options"][:2] == ["ro", "nosuid"]
    assert by_point["/dev/mqueue"]["depth"] == 2 - 1 + 1 - 1 + 1   # / -> /dev -> /dev/mqueue
    text = run("mounts", str(PODMAN / "extracted")).stdout
    assert re.search(r"^74 +/dev/shm +tmpfs +shm +rw,nosuid,nodev,noexec,relatime,size=64000k +external$", text,
                     re.M)


def test_mounts_of_a_dump_without_mount_namespace() -> None:
    proc = run("mounts", str(LOOP))
    assert proc.returncode == 0 and "no mount namespace dumped" in proc.stdout


@needs_podman
def test_stats_of_the_podman_checkpoint() -> None:
    proc = run("stats", "--json", str(PODMAN / "checkpoint.tar.gz"))
    assert proc.returncode == 0, proc.stderr
    (stats,) = json.loads(proc.stdout)
    assert stats["file"] == "stats-dump"
    dump = stats["dump"]
    assert (dump["frozen_time"], dump["memdump_time"], dump["pages_scanned"], dump["pages_written"],
            dump["pages_lazy"]) == (58313, 1053, 49, 35, 0)
    text = run("stats", str(PODMAN / "extracted" / "stats-dump")).stdout
    assert re.search(r"^frozen time +58\.313 ms$", text, re.M)
    assert re.search(r"^pages written +35$", text, re.M)


def test_stats_of_a_sample_and_missing_stats(tmp_path: Path) -> None:
    proc = run("stats", "--json", str(LOOP))
    assert proc.returncode == 0 and json.loads(proc.stdout)[0]["dump"]["pages_written"] > 0
    shutil.copytree(LOOP, tmp_path / "images")
    (tmp_path / "images" / "stats-dump").unlink()
    proc = run("stats", str(tmp_path / "images"))
    assert proc.returncode == 2 and "no stats-dump" in proc.stderr


def test_hexdump_squeezes_repeated_lines_like_hexdump_c() -> None:
    data = b"A" * 16 + b"\0" * 64 + b"B" * 5
    assert list(hexdump(data, 0x1000, squeeze=True)) == [
        "0000000000001000  41 41 41 41 41 41 41 41 41 41 41 41 41 41 41 41  |AAAAAAAAAAAAAAAA|",
        "0000000000001010  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  |................|",
        "*",
        "0000000000001050  42 42 42 42 42                                   |BBBBB|",
        "0000000000001055"]
    assert len(list(hexdump(data, 0x1000))) == 6   # not squeezed by default (old callers)


def test_mem_read_hexdump_when_piped_and_raw_bytes() -> None:
    pid, addr = LIBC_VMA
    proc = run("mem", "read", str(LOOP), pid, addr, "0x2000", "--zero-fill", "--hexdump")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{int(addr, 16):016x}  " + "00 " * 15 + "00  |" + "." * 16 + "|", "*",
                                        f"{int(addr, 16) + 0x2000:016x}"]
    full = run("mem", "read", str(LOOP), pid, addr, "0x100", "--zero-fill", "--hexdump", "-v")
    assert len(full.stdout.splitlines()) == 16
    raw = subprocess.run([sys.executable, "-m", "imgtool", "mem", "read", str(LOOP), pid, addr, "64",
                          "--zero-fill", "--raw"], capture_output=True)
    assert raw.returncode == 0 and raw.stdout == b"\0" * 64


def test_mem_read_raw_refused_on_a_terminal_hexdump_shown() -> None:
    pid, addr = LIBC_VMA
    code, out = run_pty("mem", "read", str(LOOP), pid, addr, "64", "--zero-fill", "--raw")
    assert code == 2 and b"refusing to write raw memory to a terminal" in out
    code, out = run_pty("mem", "read", str(LOOP), pid, addr, "64", "--zero-fill")
    assert code == 0 and b"\x00" not in out and b"*" in out


def test_maps_and_summary_count_in_the_dumps_page_size(tmp_path: Path) -> None:
    """64 KiB pages (aarch64, ppc64le kernels): page counts and byte totals follow the dump's AT_PAGESZ."""
    from imgtool.testing.synth import SynthTask, SynthVma, build_dump

    page, base = 64 << 10, 0x7F0000000000
    dump = build_dump(tmp_path / "d", [SynthTask(7, vmas=[SynthVma.anon(base, 4 * page)],
                                                 pages={base: b"x" * (2 * page)})], page_size=page)
    maps = json.loads(subprocess.run([sys.executable, "-m", "imgtool", "maps", str(dump), "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    row = next(r for t in maps for r in t["vmas"] if r["start"] == base)
    assert row["pages"] == 4 and row["dumped_pages"] == {"present": 2}
    summary = json.loads(subprocess.run([sys.executable, "-m", "imgtool", "summary", str(dump), "--json"],
                                        capture_output=True, text=True, check=True).stdout)
    assert summary["memory"]["page_size"] == page and summary["memory"]["present_pages"] == 2
