"""imgtool explain on the real CRIU 4.2.1 logs of tests/logs/explain/ (see CASES.md there): cause and the exact
option syntax of the advice, as verified when the logs were made."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgtool.analysis.explain import explain_file, explain_text

LOGS = Path(__file__).resolve().parent / "logs" / "explain"

# log -> (operation, cause, first error line, what the fix must say)
REAL_LOGS: dict[str, tuple[str, str, int, tuple[str, ...]]] = {
    "ghost-limit.log": ("dump", "ghost-limit", 413, ("--ghost-limit 2M", "K, M or G suffix", "ghost-file-N.img")),
    "nested-pidns.log": ("dump", "nested-pidns", 165, ("No option", "criu dump -t <host PID of its init>")),
    "unsupported-fd.log": ("dump", "unsupported-fd", 410, ("close fd 3", "DUMP_EXT_FILE")),
    "half-closed-unix.log": ("dump", "unix-half-stream", 672,
                             ("--external 'unix[159308]'", "--inherit-fd 'fd[N]:socket:[159308]'")),
    "ext-unix-sk.log": ("dump", "ext-unix-sk", 672,
                        ("--external 'unix[159308]'", "--inherit-fd 'fd[N]:socket:[159308]'")),
    "pidfd-outside.log": ("dump", "pidfd-outside", 408, ("contains process 13190", "close the pidfd")),
    "dev-console.log": ("dump", "mount-no-root", 175,
                        ("--external 'mnt[/dev/console]:KEY'", "--external 'mnt[KEY]:HOST_PATH'",
                         "--ext-mount-map KEY:HOST_PATH", "--ext-mount-map auto", "--root ROOTFS", "Docker", "runc")),
    "dev-console-no-mapping.log": ("restore", "ext-mount-map", 92,
                                   ("--external 'mnt[KEY]:HOST_PATH'", "--ext-mount-map KEY:HOST_PATH", "ext_key")),
    "dev-console-autodetected.log": ("restore", "ext-mount-auto", 92, ("--ext-mount-map auto",)),
    "tty-inherit.log": ("restore", "shell-job", 183,
                        ("--shell-job", "terminal on criu's stdin", "script -qec", "docker create -t")),
    "tty-no-shell-job.log": ("dump", "shell-job", 665, ("Dump with --shell-job",)),
    "tcp-established.log": ("dump", "tcp-established", 420,
                            ("--tcp-established to both criu dump and criu restore", "--tcp-close",
                             "/etc/criu/runc.conf", "org.criu.config")),
    "version-mismatch.log": ("restore", "image-version", 66, ("crit show inventory.img",)),
}


def test_every_real_log_is_covered() -> None:
    assert {p.name for p in LOGS.glob("*.log")} == set(REAL_LOGS)


@pytest.mark.parametrize("name", sorted(REAL_LOGS))
def test_real_log(name: str) -> None:
    operation, cause, line, fix_says = REAL_LOGS[name]
    explanation = explain_file(LOGS / name)
    assert (explanation.verdict, explanation.operation, explanation.cause) == ("failed", operation, cause)
    assert explanation.first_error_line == line  # not the RLIMIT noise, not a cascade line after it
    for text in fix_says:
        assert text in explanation.fix, text
    assert "?" not in explanation.summary + explanation.fix  # every template value was there
    assert "(null)" not in explanation.fix and "mnt[.]" not in explanation.fix
    assert explanation.details["criu_version"] == "4.2.1"


def test_dev_console_strips_the_leading_dot() -> None:
    explanation = explain_file(LOGS / "dev-console.log")
    assert "mnt[./dev/console]" not in explanation.fix  # matches nothing: CRIU looks up "mnt[" + mp + 1 + "]"
    assert "Mount 67 at /dev/console" in explanation.summary
    assert explanation.details["mountpoint"] == "./dev/console"


def _real_line(name: str, number: int) -> str:
    return (LOGS / name).read_text().splitlines()[number - 1]


DEV_CONSOLE = _real_line("dev-console.log", 175)


@pytest.mark.parametrize("line", [
    DEV_CONSOLE,  # (00.030133) Error (criu/mount.c:753): mnt: 67:./dev/console doesn't have a proper root mount
    DEV_CONSOLE.replace("mnt: ", ""),
    DEV_CONSOLE.replace("67:", ""),
    DEV_CONSOLE.replace("mnt: 67:", ""),  # the form (older CRIU printed no mount id)
    DEV_CONSOLE.replace("(00.030133) ", "").replace("mnt: 67:", ""),  # CRIU's stderr
], ids=["real", "no-prefix", "no-id", "neither", "stderr"])
def test_both_forms_of_the_dev_console_message(line: str) -> None:
    explanation = explain_text(line + "\n(00.030150) Error (criu/cr-dump.c:1975): Dumping FAILED.\n")
    assert explanation.cause == "mount-no-root"
    assert "--external 'mnt[/dev/console]:KEY'" in explanation.fix and "Docker" in explanation.fix
    assert "?" not in explanation.summary + explanation.fix
    if "67:" not in line:
        assert explanation.summary.startswith("The mount at /dev/console")


@pytest.mark.parametrize("name", ["dev-console-no-mapping.log", "dev-console-autodetected.log"])
def test_null_mountpoint_is_not_used_in_advice(name: str) -> None:
    explanation = explain_file(LOGS / name)
    assert "mnt[(null)]" not in explanation.fix and "at (null)" not in explanation.summary
    assert explanation.summary.startswith("Mount 67 (CRIU prints its mountpoint as (null)")


# A CRIU 4.1 restore of images dumped by CRIU 4.2. Only CRIU 4.2.1 was at hand, so this log is made from a real
# one: the head of the real 4.2.1 restore log tty-inherit.log (up to the line before its error) with its
# "Version: 4.2.1" line edited to the given version, followed by the page-read error as pagemap.c:256 prints it
# (pr_perror after a pread that returned 0) and the cascade a failed restore prints after it.
def _restore_log(version: str) -> tuple[str, int]:
    head = (LOGS / "tty-inherit.log").read_text().splitlines()[:182]
    assert head[1] == "(00.000050) Version: 4.2.1 (gitid 0)"
    head[1] = f"(00.000050) Version: {version} (gitid 0)"
    tail = ["(00.037243)  13559: Error (criu/pagemap.c:256): Can't read mapping page 0: Success",
            "(00.037725) Error (criu/cr-restore.c:1265): 13559 exited, status=1",
            "(00.037735) Error (criu/cr-restore.c:2331): Restoring FAILED."]
    return "\n".join(head + tail) + "\n", len(head) + 1


@pytest.mark.parametrize("version", ["4.1", "4.1.1", "3.19"])
def test_old_criu_reading_pages_is_a_version_mismatch(version: str) -> None:
    text, line = _restore_log(version)
    explanation = explain_text(text)
    assert (explanation.cause, explanation.operation, explanation.first_error_line) == ("version-mismatch",
                                                                                        "restore", line)
    assert f"images were written by CRIU >= 4.2 and are read by CRIU {version}" in explanation.summary
    assert "Restore with CRIU 4.2 or newer" in explanation.fix and "nr_pages" in explanation.fix
    assert explanation.details["criu_version"] == version


@pytest.mark.parametrize("version", ["4.2", "4.2.1", "5.0"])
def test_current_criu_reading_pages_is_truncation(version: str) -> None:
    explanation = explain_text(_restore_log(version)[0])
    assert explanation.cause == "pages-truncated"


def test_page_error_without_a_version_line_is_truncation() -> None:
    text = _restore_log("4.1")[0].replace("Version: 4.1 (gitid 0)", "")
    assert explain_text(text).cause == "pages-truncated"
