"""Protobuf classes generated from schemas/ by scripts/gen_pb.py. Do not edit."""

from importlib import import_module

from google.protobuf.message import Message

MODULES = ['apparmor_pb2', 'autofs_pb2', 'binfmt_misc_pb2', 'bpfmap_data_pb2', 'bpfmap_file_pb2', 'cgroup_pb2', 'core_aarch64_pb2', 'core_arm_pb2', 'core_loongarch64_pb2', 'core_mips_pb2', 'core_pb2', 'core_ppc64_pb2', 'core_riscv64_pb2', 'core_s390_pb2', 'core_x86_pb2', 'cpuinfo_pb2', 'creds_pb2', 'eventfd_pb2', 'eventpoll_pb2', 'ext_file_pb2', 'fdinfo_pb2', 'fh_pb2', 'fifo_pb2', 'file_lock_pb2', 'fown_pb2', 'fs_pb2', 'fsnotify_pb2', 'ghost_file_pb2', 'imgtool_columns_pb2', 'inventory_pb2', 'ipc_desc_pb2', 'ipc_msg_pb2', 'ipc_sem_pb2', 'ipc_shm_pb2', 'ipc_var_pb2', 'macvlan_pb2', 'memfd_pb2', 'mm_pb2', 'mnt_pb2', 'netdev_pb2', 'ns_pb2', 'opts_pb2', 'packet_sock_pb2', 'pagemap_pb2', 'pidfd_pb2', 'pidns_pb2', 'pipe_data_pb2', 'pipe_pb2', 'pstree_pb2', 'regfile_pb2', 'remap_file_path_pb2', 'rlimit_pb2', 'rseq_pb2', 'sa_pb2', 'seccomp_pb2', 'siginfo_pb2', 'signalfd_pb2', 'sit_pb2', 'sk_inet_pb2', 'sk_netlink_pb2', 'sk_opts_pb2', 'sk_packet_pb2', 'sk_unix_pb2', 'stats_pb2', 'sysctl_pb2', 'tcp_stream_pb2', 'time_pb2', 'timens_pb2', 'timer_pb2', 'timerfd_pb2', 'tty_pb2', 'tun_pb2', 'userns_pb2', 'utsns_pb2', 'vma_pb2']

_classes: dict[str, type[Message]] = {}
for _name in MODULES:
    _module = import_module(f"{__name__}.{_name}")
    for _msg in _module.DESCRIPTOR.message_types_by_name:
        _classes[_msg] = getattr(_module, _msg)


def message_class(name: str) -> type[Message]:
    """The generated class of a CRIU message, by its schema name (e.g. "pstree_entry")."""
    return _classes[name]
