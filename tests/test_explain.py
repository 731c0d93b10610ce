"""imgtool explain: real CRIU logs (samples, team corpus), one synthetic log per rule, and hostile input."""

from __future__ import annotations

import io
import json
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgtool import cli
from imgtool.analysis.explain import RULES, explain_file, explain_stream, explain_text, read_lines

from corpus import CORPUS, SAMPLES

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"team corpus absent: no {CORPUS}")

RLIMIT_NOISE = ("(00.018639) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: "
                "Operation not permitted")

# -- real logs -----------------------------------------------------------------------------------------------

# Corpus logs whose outcome cannot be read from their name: (verdict, operation, cause).
CORPUS_SPECIAL = {
    "fds/dump-without-file-locks-FAILED.log": ("failed", "dump", "file-locks"),
    "ns/restore-attempt1-FAILED-no-root.log": ("failed", "restore", "mount-root-needed"),
    "incremental/host-kernel-attempts/attempt-pre-dump-FAILED.log": ("failed", "pre-dump",
                                                                     "mem-tracking-unavailable"),
    "incremental/host-kernel-attempts/attempt-dump-track-mem-FAILED.log": ("failed", None,
                                                                           "mem-tracking-unavailable"),
    "incremental/host-kernel-attempts/dump-1-FAILED.log": ("failed", "dump", "parent-not-tracked"),
    "criu-check-all-v4.log": ("ok", "check", "none"),
    "podman/extracted/ctr.log": ("unknown", None, "no-verdict"),  # the container's stdout, not a CRIU log
}


def _operation_from_name(name: str) -> str:
    for operation in ("pre-dump", "dump", "restore"):
        if name.startswith(operation):
            return operation
    raise AssertionError(f"no expectation for {name}: add it to CORPUS_SPECIAL")


def _expected(relative: str) -> tuple[str, str | None, str]:
    if relative in CORPUS_SPECIAL:
        return CORPUS_SPECIAL[relative]
    return "ok", _operation_from_name(Path(relative).name), "none"


def _logs(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.log")) if root.is_dir() else []


def test_samples_have_logs() -> None:
    assert len(_logs(SAMPLES)) >= 10  # dump + restore of five scenarios and the failed fds dump


@pytest.mark.parametrize("relative", _logs(SAMPLES))
def test_sample_log(relative: str) -> None:
    verdict, operation, cause = _expected(relative)
    explanation = explain_file(SAMPLES / relative)
    assert (explanation.verdict, explanation.operation, explanation.cause) == (verdict, operation, cause)


@needs_corpus
@pytest.mark.parametrize("relative", _logs(CORPUS) or ["(corpus absent)"])
def test_corpus_log(relative: str) -> None:
    verdict, operation, cause = _expected(relative)
    explanation = explain_file(CORPUS / relative)
    assert (explanation.verdict, explanation.operation, explanation.cause) == (verdict, operation, cause)
    if verdict == "ok":
        assert explanation.first_error is None and explanation.fix == "Nothing to do."


@needs_corpus
def test_corpus_has_every_expected_log() -> None:
    assert set(CORPUS_SPECIAL) <= set(_logs(CORPUS))


@pytest.mark.parametrize("root", [SAMPLES, pytest.param(CORPUS, marks=needs_corpus)], ids=["samples", "corpus"])
def test_file_locks_failure(root: Path) -> None:
    explanation = explain_file(root / "fds/dump-without-file-locks-FAILED.log")
    assert explanation.first_error_line == 728  # not the RLIMIT line 68, not "Dumping FAILED." at 732
    assert "Some file locks are hold" in explanation.first_error
    assert "--file-locks" in explanation.fix
    assert explanation.details["verdict_line"] == 732


@needs_corpus
def test_corpus_ns_restore_without_root() -> None:
    explanation = explain_file(CORPUS / "ns/restore-attempt1-FAILED-no-root.log")
    # the pid-prefixed BUG line, not iproute2's "Error: ipv4: Address already assigned." at 180
    # nor the "killed by signal 11" that follows it
    assert explanation.first_error_line == 300
    assert explanation.details["log_pid"] == 1
    assert "--root" in explanation.fix


@needs_corpus
def test_corpus_host_kernel_attempts() -> None:
    attempts = CORPUS / "incremental/host-kernel-attempts"
    pre_dump = explain_file(attempts / "attempt-pre-dump-FAILED.log")
    assert pre_dump.first_error_line == 774 and "BUG at criu/mem.c" in pre_dump.first_error
    assert "CONFIG_MEM_SOFT_DIRTY" in pre_dump.summary
    track_mem = explain_file(attempts / "attempt-dump-track-mem-FAILED.log")
    assert track_mem.first_error_line == 65 and "--track-mem" in track_mem.fix
    second_dump = explain_file(attempts / "dump-1-FAILED.log")
    assert second_dump.first_error_line == 475  # Pid-reuse, not the later "Can't dump page with parasite"
    assert "no uptime" in second_dump.details["previous_warning"]
    assert "pre-dump" in second_dump.fix


@needs_corpus
def test_corpus_nonfatal_page_xfer_error_is_not_a_failure() -> None:
    explanation = explain_file(CORPUS / "incremental/dump.log")  # logs "No parent image found" yet succeeds
    assert explanation.verdict == "ok" and "nonfatal_errors" not in explanation.details


# -- one synthetic log per rule ----------------------------------------------------------------------------

OPERATION_LINES = {
    "dump": ["(00.018630) Dumping processes (pid: 4242 comm: app)"],
    "pre-dump": ["(00.029299) Enforcing memory tracking for pre-dump.",
                 "(00.064875) Pre-dumping task (pid: 4242 comm: app)"],
    "restore": ["(00.026038) Reading image tree"],
}
CASCADE_LINES = {
    "dump": ["(00.031092) Error (criu/cr-dump.c:1584): Dump core (pid: 4242) failed with -1",
             "(00.031310) Error (criu/cr-dump.c:1975): Dumping FAILED."],
    "pre-dump": ["(00.031310) Error (criu/cr-dump.c:1769): Pre-dumping FAILED."],
    "restore": ["(00.089446) Error (criu/cr-restore.c:1269): 4243 killed by signal 9: Killed",
                "(00.089643) Error (criu/cr-restore.c:2331): Restoring FAILED."],
}


@dataclass(frozen=True)
class Case:
    code: str
    error: str  # the line as CRIU prints it
    fix_mentions: str
    operation: str = "restore"
    before: tuple[str, ...] = ()  # context lines between the header and the error
    after: tuple[str, ...] = ()  # continuation lines CRIU prints right after the error
    version: str = "4.2.1"  # of the CRIU that wrote the log (its "Version:" line)


CASES = [
    Case("file-bad-size", "(00.031080) Error (criu/files-reg.c:2175): File srv/data.bin has bad size 12 (expect 200)",
         "same files"),
    Case("file-bad-build-id", "(00.031080) Error (criu/files-reg.c:2153): File usr/lib/libapp.so.1 has bad build-ID",
         "--file-validation filesize"),
    Case("file-bad-build-id", "(00.031080) Error (criu/files-reg.c:2146): File usr/bin/app has bad build-ID length 24 "
         "(expect 20)", "same binaries"),
    Case("file-bad-mode", "(00.031080) Error (criu/files-reg.c:2294): File srv/run.sh has bad mode 0100755 "
         "(expect 0100644)", "--skip-file-rwx-check",
         after=("File r/w/x checks can be skipped with the --skip-file-rwx-check option",)),
    Case("file-missing", "(00.031080)   4242: Error (criu/files-reg.c:2353): Can't open file srv/data.bin on restore: "
         "No such file or directory", "srv/data.bin",
         after=("(00.031081)   4242: Error (criu/files-reg.c:2267): Can't open file srv/data.bin: No such file or "
                "directory",)),
    Case("pid-in-use", "(00.040001) Error (criu/cr-restore.c:1237): Can't fork for 4242: File exists",
         "pid namespace"),
    Case("pid-in-use", "(00.040001)   4242: Error (criu/cr-restore.c:1546): Pid 4250 do not match expected 4242",
         "Free PID 4242"),
    Case("tcp-established", "(00.060001)   4242: Error (criu/sk-inet.c:912): inet: Connected TCP socket in image",
         "--tcp-established"),
    Case("tcp-established", "(00.030001) Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using "
         "--tcp-established option.", "--tcp-established", operation="dump"),
    Case("ext-unix-sk", "(00.060001)   4242: Error (criu/sk-unix.c:1912): unix: External socket found in image. "
         "Consider using the --ext-unix-sk option to allow restoring it.", "--ext-unix-sk"),
    Case("ext-unix-sk", "(00.030001) Error (criu/sk-unix.c:874): unix: External socket is used. Consider using "
         "--ext-unix-sk option.", "--ext-unix-sk", operation="dump"),
    Case("file-locks", "(00.030108) Error (criu/file-lock.c:110): Some file locks are hold by dumping tasks! You can "
         "try --file-locks to dump them.", "--file-locks", operation="dump"),
    Case("mount-no-root", "(00.030001) Error (criu/mount.c:753): mnt: 1024:./data doesn't have a proper root mount",
         "--external 'mnt[/data]:KEY'", operation="dump"),
    # the form of older CRIU (no mount id, no "mnt: " prefix), as the issue quotes it
    Case("mount-no-root", "(00.030001) Error (criu/mount.c:740): ./dev/console doesn't have a proper root mount",
         "--external 'mnt[/dev/console]:KEY'", operation="dump"),
    Case("ghost-limit", "(00.095436) Error (criu/files-reg.c:1031): Can't dump ghost file /var/tmp/big.tmp of "
         "1052672 size, increase limit", "--ghost-limit 2M", operation="dump"),
    Case("ghost-limit", "(00.095436) Error (criu/files-reg.c:1031): Can't dump ghost file /var/tmp/small.tmp of "
         "8192 size, increase limit", "--ghost-limit 8K", operation="dump"),
    Case("nested-pidns", "(00.098190) Error (criu/namespaces.c:460): Can't dump nested pid namespace for 4250",
         "criu dump -t <host PID of its init>", operation="dump",
         after=("(00.098192) Error (criu/namespaces.c:700): Can't make pidns id",)),
    Case("nested-namespace", "(00.098190) Error (criu/namespaces.c:460): Can't dump nested uts namespace for 4250",
         "root task's uts namespace", operation="dump"),
    Case("unsupported-fd", "(00.063611) Error (criu/files-ext.c:94): Can't dump file 5 of that type [600] (anon "
         "anon_inode:[io_uring])", "close fd 5", operation="dump"),
    Case("pidfd-outside", "(00.077626) Error (criu/pidfd.c:97): pidfd: pidfd pid 4100 is not a part of process "
         "tree..", "contains process 4100", operation="dump"),
    Case("unix-half-stream", "(00.055921) Error (criu/sk-unix.c:881): unix: Can't dump half of stream unix "
         "connection. name: (null); peer name: /run/app.sock", "--external 'unix[81233]'", operation="dump",
         before=("(00.055920) unix: \tExt stream not supported: ino 81234 peer_ino 81233 family    1 type    1 "
                 "state  1 name /run/app.sock",)),
    Case("shell-job", "(00.054486) Error (criu/tty.c:410): tty: Found slave peer index 3 without correspond master "
         "peer", "--shell-job", operation="dump"),
    Case("mount-root-needed", "(00.088795)      1: Error (criu/mount.c:48): mnt: BUG at criu/mount.c:48", "--root"),
    Case("ext-mount-auto", "(00.050001)      1: Error (criu/mount.c:3120): mnt: Mount 345:/srv is autodetected "
         'external mount. Try "--ext-mount-map auto" to allow them.', "--ext-mount-map auto"),
    Case("ext-mount-map", "(00.050001)      1: Error (criu/mount.c:3141): mnt: No mapping for 345:/srv mountpoint",
         "--ext-mount-map KEY:HOST_PATH"),
    Case("external-netns", "(00.050001) Error (criu/net.c:2942): net: Unable to find an external netns: extNetNs",
         "--inherit-fd fd[N]:extNetNs"),
    Case("shell-job", "(00.050001)   4242: Error (criu/tty.c:1010): tty: Don't have tty to inherit session from, "
         "aborting", "--shell-job"),
    Case("tcp-close", "(00.026001) Error (criu/image.c:94): Need to set the --tcp-close options.", "--tcp-close"),
    Case("allow-uprobes", "(00.026001) Error (criu/image.c:99): Dumped with --allow-uprobes. Need to set it on "
         "restore as well.", "--allow-uprobes"),
    Case("allow-uprobes", "(00.023001) Error (criu/proc_parse.c:614): PID 4242 has uprobes vma. Consider using "
         "--allow-uprobes.", "--allow-uprobes", operation="dump"),
    Case("missing-plugin", "(00.026001) Error (criu/image.c:198): Missing required plugin: amdgpu_plugin",
         "--libdir"),
    Case("image-too-old", "(00.026001) Error (criu/image.c:52): Too old image, no longer supported", "older CRIU"),
    Case("image-version", "(00.026001) Error (criu/image.c:89): Not supported images version 3",
         "crit show inventory.img"),
    Case("image-corrupt", "(00.026001) Error (criu/image.c:563): Magic doesn't match for core-4242.img",
         "imgtool info core-4242.img"),
    Case("image-corrupt", "(00.026001) Error (criu/image.c:554): Head magic doesn't match for pstree.img",
         "imgtool info pstree.img"),
    Case("image-corrupt", "(00.026001) Error (criu/protobuf.c:101): Failed unpacking object 0x55d0c8 from "
         "mm-4242.img", "imgtool info mm-4242.img"),
    Case("pages-truncated", "(00.045001)   4242: Error (criu/pagemap.c:426): Reached EOF unexpectedly while reading "
         "page from image", "pages-*.img"),
    Case("pages-truncated", "(00.045001)   4242: Error (criu/pagemap.c:256): Can't read mapping page 0: Success",
         "pages-*.img"),
    Case("version-mismatch", "(00.045001)   4242: Error (criu/pagemap.c:256): Can't read mapping page 0: Success",
         "CRIU 4.2 or newer", version="4.1"),
    Case("version-mismatch", "(00.045001)   4242: Error (criu/pagemap.c:426): Reached EOF unexpectedly while "
         "reading page from image", "dump again with CRIU 3.19", version="3.19"),
    Case("image-truncated", "(00.026001) Error (criu/protobuf.c:72): Unexpected EOF on core-4242.img",
         "dump again"),
    Case("image-truncated", "(00.026001) Error (criu/image.c:887): Unexpected EOF", "dump again"),
    Case("image-truncated", "(00.026001) Error (criu/protobuf.c:93): Read 12 bytes while 200 expected from "
         "mm-4242.img: Success", "imgtool info"),
    # seen in tests/test_faults.py with the real criu
    Case("image-missing", "(00.026001) Error (criu/protobuf.c:72): Unexpected EOF on (empty-image)", "imgtool check"),
    Case("pages-misplaced", "(00.120001) pie: 4242: Error (criu/pie/util-vdso.c:107): Invalid ELF magic",
         "imgtool check"),
    Case("pages-eof", "(00.120001) pie: 4242: Error (criu/pie/restorer.c:1801): Unexpected EOF reading pages data "
         "at offset 2228224 (1 iovs remaining)", "imgtool check"),
    Case("unix-peer-unresolved", "(00.031001) Error (criu/sk-unix.c:2285): FATAL: Peer 81234 unresolved for 81233",
         "peer has accepted"),
    Case("unix-connect-failed", "(00.031001) Error (criu/sk-unix.c:1406): Can't connect 81233 socket: No such file "
         "or directory", "--ext-unix-sk"),
    Case("parent-pages-missing", "(00.031001) Error (criu/page-xfer.c:344): page-xfer: Hole 0x7f0000000000 - "
         "0x7f0000010000 not found in parent", "--prev-images-dir", operation="dump"),
    Case("parent-pages-missing", "(00.045001)   4242: Error (criu/pagemap.c:203): Missing 7f0000000000 in parent "
         "pagemap", "--prev-images-dir"),
    Case("parent-missing", "(00.045001)   4242: Error (criu/pagemap.c:185): No parent for snapshot pagemap",
         "--prev-images-dir"),
    Case("cpu-mismatch", "(00.026001) Error (criu/arch/x86/cpu.c:297): cpu: CPU capabilities do not match run time",
         "--cpu-cap=none"),
    Case("cpu-mismatch", "(00.026001) Error (criu/arch/x86/cpu.c:223): cpu: CPU instruction capabilities do not "
         "match run time", "--cpu-cap=none"),
    Case("cpu-mismatch", "(00.026001) Error (criu/arch/x86/cpu.c:274): cpu: CPU xsave size mismatch (2696/832)",
         "same CPU"),
    Case("cpu-mismatch", "(00.026001) Error (criu/arch/x86/cpu.c:262): cpu: CPU xfeatures has unsupported bits "
         "(0x200)", "--cpu-cap=none"),
    Case("cpu-mismatch", "(00.026001) Error (criu/arch/x86/cpu.c:247): cpu: FPU feature required by image is not "
         "supported on host (fpu:0 fxsr:0 osxsave:1 xsaves:0)", "--cpu-cap=none"),
    Case("cpuinfo-missing", "(00.026001) Error (criu/arch/x86/cpu.c:411): cpu: No cpuinfo image", "--cpu-cap"),
    Case("arch-mismatch", "(00.040001)   4242: Error (criu/cr-restore.c:861): Core march mismatch 3", "architecture"),
    Case("lsm-mismatch", "(00.040001) Error (criu/lsm.c:360): mismatched lsm types and lsm profile specified",
         "--lsm-profile"),
    Case("mem-tracking-unavailable", "(00.045454) Error (criu/config.c:1130): Tracking memory is not available. "
         "Consider omitting --track-mem option.", "--track-mem", operation="dump"),
    Case("mem-tracking-unavailable", "(00.031831) Error (criu/mem.c:46): BUG at criu/mem.c:46", "CONFIG_MEM_SOFT_DIRTY",
         operation="pre-dump", before=("(00.003229) Dirty tracking support is OFF",)),
    Case("parent-not-tracked", "(00.031080) Error (criu/mem.c:386): Pid-reuse detection failed: no parent inventory, "
         "check warnings in get_parent_inventory", "criu pre-dump", operation="dump",
         before=("(00.023632) Warn  (criu/image.c:344): Parent pre-dump inventory has no uptime",)),
    Case("seccomp-dump", "(00.025001) Error (criu/seccomp.c:162): seccomp: Can't fetch seccomp metadata on tid_real "
         "4242 pos 0: Operation not permitted", "CAP_SYS_ADMIN", operation="dump"),
    Case("seccomp-dump", "(00.025001) Error (criu/seccomp.c:149): seccomp: Can't fetch filter on tid_real 4242 i 0: "
         "Operation not permitted", "CAP_SYS_ADMIN", operation="dump"),
    Case("ptrace-denied", "(00.020001) Error (compel/src/lib/infect.c:262): Unseizable non-zombie 4242 found, state "
         "S, err -1/1", "ptrace_scope", operation="dump",
         before=("(00.020000) Warn  (compel/src/lib/infect.c:132): Unable to interrupt task: 4242 (Operation not "
                 "permitted)",)),
    Case("ptrace-denied", "(00.070001) Error (criu/cr-restore.c:1743): Can't attach to 4242: Operation not permitted",
         "CAP_SYS_PTRACE"),
    Case("criu-bug", "(00.040001)   4242: Error (criu/files.c:1234): BUG at criu/files.c:1234", "report"),
    Case("criu-bug", "(00.031831) Error (criu/mem.c:46): BUG at criu/mem.c:46", "report", operation="pre-dump"),
]


def synthetic_log(case: Case) -> tuple[str, int]:
    """A log as CRIU writes it around the error: header, RLIMIT noise, context, error, cascade. And its line."""
    lines = ["(00.000000) CRIU run id = 0f2c47bd-4308-4507-9c6e-83efdc2e8207",
             f"(00.000062) Version: {case.version} (gitid 0)",
             RLIMIT_NOISE, *OPERATION_LINES[case.operation], *case.before]
    error_line = len(lines) + 1
    lines += [case.error, *case.after, *CASCADE_LINES[case.operation]]
    return "\n".join(lines) + "\n", error_line


def test_every_rule_has_a_synthetic_case() -> None:
    assert {rule.code for rule in RULES} == {case.code for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.code}-{i}" for i, c in enumerate(CASES)])
def test_synthetic_rule(case: Case) -> None:
    text, error_line = synthetic_log(case)
    explanation = explain_text(text)
    assert explanation.verdict == "failed"
    assert explanation.cause == case.code
    assert explanation.operation == case.operation
    assert explanation.first_error_line == error_line
    assert case.error.strip() in explanation.first_error
    assert case.fix_mentions in explanation.fix
    assert "?" not in explanation.summary and "?" not in explanation.fix  # every template value was captured


def test_synthetic_details_carry_values() -> None:
    explanation = explain_text(synthetic_log(CASES[0])[0])
    assert explanation.details["path"] == "srv/data.bin"
    assert (explanation.details["size"], explanation.details["expected"]) == ("12", "200")
    assert explanation.details["criu_source"] == "criu/files-reg.c:2175"
    assert "srv/data.bin is 12 bytes now but was 200 bytes" in explanation.summary


def test_every_pattern_is_exercised() -> None:
    """Each alternative pattern of each rule matches at least one synthetic case."""
    messages = [case.error for case in CASES]
    for rule in RULES:
        for pattern in rule.patterns:
            assert any(pattern.search(m) for m in messages), (rule.code, pattern.pattern)


# -- line formats, noise, cascade, verdicts ----------------------------------------------------------------

def test_lines_without_timestamps() -> None:
    text = ("Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n"
            "Error (criu/tty.c:1010): tty: Don't have tty to inherit session from, aborting\n"
            "Error (criu/cr-restore.c:2331): Restoring FAILED.\n")
    explanation = explain_text(text)
    assert (explanation.cause, explanation.first_error_line, explanation.operation) == ("shell-job", 2, "restore")


def test_pie_prefixed_line() -> None:
    text = "pie: 4242: Error (criu/pie/restorer.c:1700): BUG at criu/pie/restorer.c:1700\n"
    explanation = explain_text(text)
    assert (explanation.verdict, explanation.cause) == ("failed", "criu-bug")
    assert explanation.details["log_pid"] == 4242


def test_iproute_errors_and_warnings_are_not_criu_errors() -> None:
    text = "\n".join([RLIMIT_NOISE, "Error: ipv4: Address already assigned.",
                      "(00.1) Warn  (compel/arch/x86/src/lib/infect.c:418): Will restore 1 with interrupted "
                      "system call",
                      "(00.2) Restore finished successfully. Tasks resumed."])
    explanation = explain_text(text)
    assert (explanation.verdict, explanation.cause, explanation.first_error) == ("ok", "none", None)
    assert "warnings" not in explanation.details


def test_unknown_error() -> None:
    text = "\n".join([RLIMIT_NOISE, "(00.1) Dumping processes (pid: 1 comm: x)",
                      "(00.2) Error (criu/files.c:999): Something new went wrong: Invalid argument",
                      "(00.3) Error (criu/cr-dump.c:1975): Dumping FAILED."])
    explanation = explain_text(text)
    assert (explanation.verdict, explanation.cause, explanation.first_error_line) == ("failed", "unknown", 3)
    assert "Something new went wrong" in explanation.summary
    assert "lines before it (line 3)" in explanation.fix


def test_only_the_verdict_line() -> None:
    explanation = explain_text("(00.3) Error (criu/cr-restore.c:2331): Restoring FAILED.\n")
    assert (explanation.verdict, explanation.cause, explanation.first_error_line) == ("failed", "unknown", 1)


def test_cascade_before_cause_is_skipped() -> None:
    text = "\n".join(["(00.1) Reading image tree",
                      "(00.2) Error (criu/cr-restore.c:1269): 12 killed by signal 11: Segmentation fault",
                      "(00.3) Error (criu/image.c:89): Not supported images version 7",
                      "(00.4) Error (criu/cr-restore.c:2331): Restoring FAILED."])
    explanation = explain_text(text)
    assert (explanation.cause, explanation.first_error_line) == ("image-version", 3)
    assert explanation.details["version"] == "7"


def test_first_known_error_wins_over_later_known_error() -> None:
    text = "\n".join(["(00.1) Error (criu/image.c:94): Need to set the --tcp-close options.",
                      "(00.2) Error (criu/sk-inet.c:912): inet: Connected TCP socket in image"])
    assert explain_text(text).cause == "tcp-close"


def test_success_line_wins_over_nonfatal_errors() -> None:
    text = "\n".join(["(00.1) Error (criu/files.c:1): odd but harmless", "(00.2) Dumping finished successfully"])
    explanation = explain_text(text)
    assert (explanation.verdict, explanation.operation) == ("ok", "dump")
    assert explanation.details["nonfatal_errors"] == ["(00.1) Error (criu/files.c:1): odd but harmless"]


def test_noise_only_log_without_verdict_is_unknown() -> None:
    explanation = explain_text(RLIMIT_NOISE + "\n(00.1) Dumping processes (pid: 1 comm: x)\n")
    assert (explanation.verdict, explanation.operation, explanation.cause) == ("unknown", "dump", "no-verdict")


# The tails of two real restore logs of tests/test_faults.py (CRIU 4.2.1), which end without a verdict.
SPINNING_RESTORER = [
    "(00.029511) pie: 4242: Preadv 0x7ffe169f5000:8192... (1 iovs)",
    "(00.029513) pie: 4242: `- returned 8192",
    *["(10.007158) pie: 4242: Preadv 0x7ffe169f7000:8192... (1 iovs)", "(10.007159) pie: 4242: `- returned 0"] * 3,
]
NO_PSTREE = ["(00.013459) Reading image tree", "(00.013463) No pstree.img image", "(00.013464) pstree pid_max=0",
             "(00.013470) NS mask to use 0"]


@pytest.mark.parametrize(("tail", "cause", "says"), [(SPINNING_RESTORER, "pages-eof", "retries such a read forever"),
                                                     (NO_PSTREE, "image-missing", "crashes (SIGSEGV)")])
def test_last_words_of_a_log_without_verdict(tail: list[str], cause: str, says: str) -> None:
    """A restore that hung or crashed writes no verdict: its last lines still tell why."""
    explanation = explain_text("\n".join([RLIMIT_NOISE, "(00.026038) Reading image tree", *tail]) + "\n")
    assert (explanation.verdict, explanation.operation, explanation.cause) == ("unknown", "restore", cause)
    assert says in explanation.summary and "imgtool check" in explanation.fix


def test_a_successful_page_read_is_not_a_last_word() -> None:
    explanation = explain_text("\n".join([RLIMIT_NOISE, *SPINNING_RESTORER[:2]]) + "\n")
    assert explanation.cause == "no-verdict"


# -- hostile input -----------------------------------------------------------------------------------------

def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    explanation = explain_file(path)
    assert (explanation.verdict, explanation.operation, explanation.cause) == ("unknown", None, "no-verdict")


def test_binary_junk(tmp_path: Path) -> None:
    path = tmp_path / "junk.log"
    junk = bytes(range(256)) * 4096 + b"\xff\xfe Error (\x00\n Warn  (:\n\r\r\n" + bytes(range(255, -1, -1)) * 4096
    path.write_bytes(junk)
    assert explain_file(path).verdict == "unknown"


def test_invalid_utf8_in_an_error_line() -> None:
    stream = io.BytesIO(b"(00.1) Error (criu/files-reg.c:2175): File srv/\xff\xfe.bin has bad size 1 (expect 2)\n")
    explanation = explain_stream(stream)
    assert explanation.cause == "file-bad-size"
    assert explanation.details["path"] == "srv/\ufffd\ufffd.bin"


def test_read_lines_numbers_match_naive_split() -> None:
    """Block reading gives the same line numbers as splitting, across blocks, CRLF, long lines, no final newline."""
    lines = [f"({i:02d}.0) {'Error' if i % 7 == 0 else 'info'} line {i}" for i in range(5000)]
    lines[100] = "x" * 300_000 + " Error at the end of a long line"  # longer than MAX_LINE_BYTES: head only
    lines[101] = "Warn  (a.c:1): after the long line"
    data = ("\r\n".join(lines[:3000]) + "\n" + "\n".join(lines[3000:])).encode()  # no final newline
    found = dict(read_lines(io.BytesIO(data)))
    expected = {n: line for n, line in enumerate(lines, start=1)
                if ("Error" in line or "Warn" in line) and n != 101}
    assert set(found) == set(expected)
    for number, line in expected.items():
        assert found[number].decode().rstrip("\r") == line


def test_long_line_without_newline_keeps_memory_bounded(tmp_path: Path) -> None:
    path = tmp_path / "one-line.log"
    with open(path, "wb") as f:
        for _ in range(50):  # 50 MiB, not one newline
            f.write(b"Error (x" * (1 << 17))
    tracemalloc.start()
    try:
        explanation = explain_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert explanation.verdict == "unknown"
    assert peak < 8 << 20  # a few MiB of blocks, never the 50 MiB line


def test_50_mb_log_is_fast_and_bounded(tmp_path: Path) -> None:
    filler = "".join(f"({i // 1000:02d}.{i % 1000:06d}) Dumping pages (type: 59 pid: 4242) vma {i:x} ok\n"
                     for i in range(10_000)).encode()
    path = tmp_path / "big.log"
    with open(path, "wb") as f:
        f.write(b"(00.000001) Dumping processes (pid: 4242 comm: app)\n" + RLIMIT_NOISE.encode() + b"\n")
        while f.tell() < 50 << 20:
            f.write(filler)
        lines_before = 2 + (f.tell() // len(filler)) * 10_000
        f.write(b"(99.000001) Error (criu/file-lock.c:110): Some file locks are hold by dumping tasks! "
                b"You can try --file-locks to dump them.\n(99.000002) Error (criu/cr-dump.c:1975): Dumping FAILED.\n")
    tracemalloc.start()
    started = time.monotonic()
    try:
        explanation = explain_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 30
    assert peak < 8 << 20
    assert (explanation.cause, explanation.first_error_line) == ("file-locks", lines_before + 1)
    assert explanation.details["verdict_line"] == lines_before + 2


# -- the command -------------------------------------------------------------------------------------------

def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_cli_json_for_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = next(c for c in CASES if c.code == "pid-in-use")
    log = _write(tmp_path, "restore.log", synthetic_log(case)[0])
    assert cli.main(["explain", log, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["log"], out["verdict"], out["operation"], out["cause"]) == (log, "failed", "restore", "pid-in-use")
    assert out["details"]["pid"] == "4242" and out["first_error_line"] == synthetic_log(case)[1]


def test_cli_rich_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = next(c for c in CASES if c.code == "ext-mount-map")  # "[KEY]" must not be eaten as rich markup
    log = _write(tmp_path, "restore.log", synthetic_log(case)[0])
    assert cli.main(["explain", log]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("FAILED criu restore")
    assert f"line {synthetic_log(case)[1]}:" in out
    assert "ext-mount-map" in out and "--external 'mnt[KEY]:HOST_PATH'" in out


def test_cli_exit_zero_on_success(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", str(SAMPLES / "tcp/dump.log"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "ok"


def test_cli_exit_one_without_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", _write(tmp_path, "empty.log", "")]) == 1
    assert "UNKNOWN" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["missing.log", "."])
def test_cli_exit_two_when_unreadable(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", str(tmp_path / name)]) == 2
    assert capsys.readouterr().err.startswith("imgtool: error:")

