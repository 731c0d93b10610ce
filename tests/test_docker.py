"""imgtool on real Docker checkpoints (scripts/docker-env.sh; see tests/dockerenv.py).

What Docker itself did (scenarios/<name>/result.json) is checked first, so a change of Docker, runc or CRIU shows
as such; then the CLI runs on every checkpoint copy, and its predictions are compared with the real
``docker start --checkpoint`` outcomes: Docker checkpoint dirs recognised from config.v2.json/hostconfig.json two
levels up (summary, ps), ``check --for-container``, the offline connected-TCP check, ``explain`` of
Docker/containerd/runc error wrappers, and diff across checkpoints of one container and of two.
tests/test_docker_unit.py covers the same without dockerd, on the checkpoint kept in tests/data/docker.
"""

from __future__ import annotations

import json

import pytest

import dockerenv
from dockerenv import Scenario, imgtool, no_traceback

# Scenarios whose checkpoint dump succeeded (tty-notty reuses tty's checkpoint; tcp-noconfig's dump fails and
# Docker removes its checkpoint dir).
WITH_IMAGES = ("loop", "tty", "server", "tcp", "counter-1", "counter-2")

# Container name each scenario ran in.
CONTAINER = {"loop": "imgtool-loop", "tty": "imgtool-tty", "tty-notty": "imgtool-tty", "server": "imgtool-server",
             "tcp": "imgtool-tcp", "tcp-noconfig": "imgtool-tcp", "counter-1": "imgtool-counter",
             "counter-2": "imgtool-counter"}


@pytest.fixture(scope="session")
def scenarios() -> dict[str, Scenario]:
    return dockerenv.scenarios()


def text(proc) -> str:
    return proc.stdout + proc.stderr


# -- what Docker did ------------------------------------------------------------------------------------------------

def test_all_scenarios_recorded(scenarios: dict[str, Scenario]) -> None:
    assert set(scenarios) == set(CONTAINER)
    for name, sc in scenarios.items():
        assert sc.result["container_name"] == CONTAINER[name]
        assert isinstance(sc.result["dump_ok"], bool), name


@pytest.mark.parametrize("name", ["loop", "tty", "server", "tcp", "counter-2"])
def test_docker_dumps_and_restores(scenarios: dict[str, Scenario], name: str) -> None:
    r = scenarios[name].result
    assert r["dump_ok"] is True, r["dump_error"]
    assert r["restore_ok"] is True, r["restore_error"]


def test_docker_leave_running_checkpoint(scenarios: dict[str, Scenario]) -> None:
    r = scenarios["counter-1"].result
    assert r["dump_ok"] is True and r["dump_options"] == "--leave-running", r["dump_error"]


def test_docker_tcp_without_config_fails_to_dump(scenarios: dict[str, Scenario]) -> None:
    r = scenarios["tcp-noconfig"].result
    assert r["dump_ok"] is False
    assert "runc did not terminate successfully" in r["dump_error"]
    assert "criu failed: type NOTIFY" in r["dump_error"]
    assert "consider using --tcp-established" in (r["dump_log_errors"] or "")


def test_docker_tcp_restore_needs_config_too(scenarios: dict[str, Scenario]) -> None:
    r = scenarios["tcp"].result
    assert r["restore_without_config_ok"] is False
    assert "OCI runtime restore failed" in r["restore_without_config_error"]
    assert "Connected TCP socket in image" in (r["restore_without_config_log_errors"] or "")


def test_docker_tty_checkpoint_into_container_without_tty_fails(scenarios: dict[str, Scenario]) -> None:
    r = scenarios["tty-notty"].result
    assert r["restore_checkpoint_dir_ok"] is False
    assert "custom checkpointdir is not supported" in r["restore_checkpoint_dir_error"]
    assert r["restore_ok"] is False
    assert "OCI runtime restore failed" in r["restore_error"]
    assert "Don't have tty to inherit session from" in (r["restore_log_errors"] or "")


def test_docker_layout(scenarios: dict[str, Scenario]) -> None:
    for name in WITH_IMAGES:
        sc = scenarios[name]
        assert sc.checkpoint.parent.parent == sc.container
        assert sc.checkpoint.parent.name == "checkpoints"
        assert sc.checkpoint.name == sc.result["checkpoint_name"]
        assert sc.container.name == sc.result["container_id"]
        for f in ("inventory.img", "pstree.img", "descriptors.json"):
            assert (sc.checkpoint / f).is_file(), (name, f)
        assert not (sc.checkpoint / "dump.log").exists(), "containerd deletes dump.log after a successful dump"
        config = json.loads((sc.container / "config.v2.json").read_text())
        host = json.loads((sc.container / "hostconfig.json").read_text())
        assert config["Name"] == "/" + CONTAINER[name] and config["ID"] == sc.result["container_id"]
        assert config["Config"]["Image"] == "imgtool/busybox:latest"
        assert config["Config"]["Tty"] is (name == "tty")
        assert host["NetworkMode"] == "default"


# -- the CLI on every checkpoint -------------------------------------------------------------------------------------

COMMANDS = {
    "ps": ["ps", "{ck}"], "files": ["files", "{ck}"], "maps": ["maps", "{ck}"], "summary": ["summary", "{ck}"],
    "summary-json": ["summary", "--json", "{ck}"], "x-ps": ["x", "{ck}", "ps"], "x-fds": ["x", "{ck}", "fds"],
    "x-sk": ["x", "{ck}", "sk"], "check-offline": ["check", "{ck}", "--offline"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", WITH_IMAGES)
def test_cli(scenarios: dict[str, Scenario], name: str, command: str) -> None:
    ck = scenarios[name].checkpoint
    proc = imgtool(*(a.format(ck=ck) for a in COMMANDS[command]))
    no_traceback(proc)
    # check --offline of the established-TCP dump predicts the failure of a restore without tcp-established
    assert proc.returncode == (1 if (name, command) == ("tcp", "check-offline") else 0), text(proc)
    if command == "summary-json":
        assert json.loads(proc.stdout)["processes"]


def test_x_sk_shows_established_connection(scenarios: dict[str, Scenario]) -> None:
    proc = imgtool("x", scenarios["tcp"].checkpoint, "sk")
    assert proc.returncode == 0 and proc.stdout.count("ESTABLISHED") == 2, text(proc)


def test_files_show_server_files(scenarios: dict[str, Scenario]) -> None:
    proc = imgtool("files", scenarios["server"].checkpoint)
    assert proc.returncode == 0, text(proc)
    for path in ("/etc/passwd", "/tmp/server.log", "/etc/group"):
        assert path in proc.stdout


def test_diff_two_checkpoints_of_one_container(scenarios: dict[str, Scenario]) -> None:
    proc = imgtool("diff", scenarios["counter-1"].checkpoint, scenarios["counter-2"].checkpoint)
    no_traceback(proc)
    assert proc.returncode == 1, text(proc)
    assert "changed" in proc.stdout


def _counter(checkpoint) -> tuple[int, int]:
    """(address, value) of the counter shell's ``i`` (busybox ash keeps "i=N\\0" on its heap) in pid 1."""
    proc = imgtool("mem", "search", checkpoint, "--regex", "i=[1-9][0-9]*\\x00", "--pid", "1", "--json")
    assert proc.returncode == 0, text(proc)
    hits = json.loads(proc.stdout)
    assert len(hits) == 1, hits
    return hits[0]["vaddr"], int(bytes.fromhex(hits[0]["match"])[2:-1])


def test_diff_reports_the_counters_memory_change(scenarios: dict[str, Scenario]) -> None:
    """counter-1 (docker checkpoint create --leave-running) and counter-2 (later, stopping it): the diff runs clean
    and its memory changes of pid 1 cover the counter, which went up in between."""
    before, after = scenarios["counter-1"].checkpoint, scenarios["counter-2"].checkpoint
    (addr, old), (addr2, new) = _counter(before), _counter(after)
    assert addr == addr2 and new > old, (old, new)
    proc = imgtool("diff", "--json", before, after)
    no_traceback(proc)
    assert proc.returncode == 1, text(proc)
    ranges = [r for c in json.loads(proc.stdout)["changes"] if c["facet"] == "memory" and c["path"][0] == "task 1"
              for r in (c["new"] or {}).get("changed_ranges", [])]
    assert any(lo <= addr < hi for lo, hi in ranges), (hex(addr), ranges)


def test_diff_checkpoint_with_itself(scenarios: dict[str, Scenario]) -> None:
    proc = imgtool("diff", scenarios["counter-1"].checkpoint, scenarios["counter-1"].checkpoint)
    no_traceback(proc)
    assert proc.returncode == 0, text(proc)


def test_diff_two_containers(scenarios: dict[str, Scenario]) -> None:
    proc = imgtool("diff", scenarios["counter-1"].checkpoint, scenarios["loop"].checkpoint)
    no_traceback(proc)
    assert proc.returncode == 1, text(proc)
    assert "pages" in proc.stdout and "removed (usleep)" in proc.stdout, text(proc)


# -- check against the real docker start --checkpoint ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["loop", "tty", "server", "counter-2"])
def test_check_offline_agrees_with_docker_restore(scenarios: dict[str, Scenario], name: str) -> None:
    assert scenarios[name].result["restore_ok"] is True
    proc = imgtool("check", scenarios[name].checkpoint, "--offline")
    assert proc.returncode == 0, text(proc)


def test_check_offline_established_tcp(scenarios: dict[str, Scenario]) -> None:
    assert scenarios["tcp"].result["restore_without_config_ok"] is False
    proc = imgtool("check", scenarios["tcp"].checkpoint, "--offline")
    assert proc.returncode == 1, text(proc)
    assert "tcp-established" in text(proc)
    assert "runc.conf" in text(proc), "a Docker checkpoint dir: the Docker hint"
    proc = imgtool("check", scenarios["tcp"].checkpoint, "--offline", "--", "--tcp-established")
    assert proc.returncode == 0, text(proc)


def test_check_for_container_tty_mismatch(scenarios: dict[str, Scenario]) -> None:
    sc = scenarios["tty-notty"]
    proc = imgtool("check", sc.checkpoint, "--for-container", sc.result["target_container_copy"], "--offline")
    no_traceback(proc)
    assert proc.returncode == 1, text(proc)
    out = text(proc).lower()
    assert "tty" in out or "terminal" in out
    assert "-t" in out          # the Docker hint: create the container with -t


@pytest.mark.parametrize("name", ["loop", "tty", "server"])
def test_check_for_container_same_container(scenarios: dict[str, Scenario], name: str) -> None:
    sc = scenarios[name]
    proc = imgtool("check", sc.checkpoint, "--for-container", sc.container, "--offline")
    assert proc.returncode == 0, text(proc)


def test_check_for_container_established_tcp(scenarios: dict[str, Scenario]) -> None:
    sc = scenarios["tcp"]
    proc = imgtool("check", sc.checkpoint, "--for-container", sc.container, "--offline")
    assert proc.returncode == 1, text(proc)
    assert "tcp-established" in text(proc) and "runc.conf" in text(proc)


# -- Docker checkpoint dirs recognised ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["loop", "tty"])
def test_summary_json_names_docker_container(scenarios: dict[str, Scenario], name: str) -> None:
    sc = scenarios[name]
    config = json.loads((sc.container / "config.v2.json").read_text())
    proc = imgtool("summary", "--json", sc.checkpoint)
    assert proc.returncode == 0, text(proc)
    container = json.loads(proc.stdout)["container"]
    assert container, "no container"
    values = json.dumps(container)
    for wanted in ("docker", CONTAINER[name], sc.result["container_id"], "imgtool/busybox:latest",
                   config["Created"], "default", sc.result["checkpoint_name"]):
        assert wanted in values, wanted
    assert "while :" in values, "the container's command"
    tty = [v for k, v in container.items() if "tty" in k.lower()]
    assert tty == [name == "tty"], container
    assert str(sc.result["checkpoint_size"]) in values or any("size" in k.lower() for k in container), container


def test_summary_names_docker_container(scenarios: dict[str, Scenario]) -> None:
    proc = imgtool("summary", scenarios["loop"].checkpoint)
    assert proc.returncode == 0, text(proc)
    for wanted in ("docker", "imgtool-loop", "imgtool/busybox:latest", "ck-loop"):
        assert wanted in proc.stdout, wanted


def test_ps_names_docker_container(scenarios: dict[str, Scenario]) -> None:
    proc = imgtool("ps", scenarios["server"].checkpoint)
    assert proc.returncode == 0, text(proc)
    assert "imgtool-server" in proc.stdout


# -- explain: CRIU's own logs, and Docker's wrappers of them ----------------------------------------------------------

@pytest.mark.parametrize(("name", "log", "cause"), [
    ("tcp-noconfig", "dump_log", "tcp-established"),
    ("tcp", "restore_without_config_log", "tcp-established"),
    ("tty-notty", "restore_log", "shell-job"),
])
def test_explain_criu_log_of_docker(scenarios: dict[str, Scenario], name: str, log: str, cause: str) -> None:
    proc = imgtool("explain", "--json", scenarios[name].result[log])
    no_traceback(proc)
    assert proc.returncode == 1, text(proc)
    assert json.loads(proc.stdout)["cause"] == cause


@pytest.mark.parametrize(("name", "stderr", "log_named"), [
    ("tcp-noconfig", "dump.stderr", "criu-dump.log"),                      # runc did not terminate ... NOTIFY
    ("tcp", "restore_without_config.stderr", "work/restore.log"),          # OCI runtime restore failed ... NOTIFY
    ("tty-notty", "restore.stderr", "restore.log"),                        # OCI runtime restore failed: bad fd
])
def test_explain_docker_error(scenarios: dict[str, Scenario], name: str, stderr: str, log_named: str) -> None:
    path = dockerenv.ROOT / "scenarios" / name / stderr
    proc = imgtool("explain", "--json", path)
    no_traceback(proc)
    assert proc.returncode == 1, text(proc)
    data = json.loads(proc.stdout)
    assert data["verdict"] == "failed" and data["cause"] != "no-verdict", data
    said = json.dumps(data)
    assert "runc" in said or "docker" in said.lower()
    assert log_named in said, "where CRIU's log is"
