"""The tool chain of ``make pi-check``: qemu-user, a Debian arm64 Python, CPU views, the wheel, pip targets.

Everything is downloaded into a cache folder (``build/pi-check`` by default, ignored by git):

- ``qemu-aarch64-static`` from Debian's ``qemu-user-static``: the system's if installed; else
  ``apt-get install`` when running as root; else the package is downloaded and unpacked into the
  cache (no root needed);
- a Debian bookworm arm64 ``python3.11`` (the release Raspberry Pi OS bookworm is built on), from
  a private apt state in the cache (its own ``sources.list``, ``arm64`` only), unpacked with
  ``dpkg -x``: the host's dpkg database and architectures are never changed;
- CPU views: hard-linked copies of that root with a Raspberry Pi-like ``/proc/cpuinfo`` and
  ``/sys/devices/system/cpu`` inside. ``qemu-aarch64 -L ROOT`` opens ``ROOT/<path>`` instead of
  ``<path>`` when it exists, so the emulated program reads these instead of the x86 host's;
- the edgebot wheel (``pip wheel``) and ``pip install --target`` folders for x86-64 and, with
  pip's ``--platform`` flags, for aarch64.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Debian bookworm arm64 packages for a python3.11 that runs numpy, XGBoost and LiteRT wheels.
ARM64_PACKAGES = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "python3.11",
    "libc6", "libgcc-s1", "libstdc++6", "libgomp1", "zlib1g", "libexpat1", "libffi8", "libssl3",
    "libsqlite3-0", "liblzma5", "libbz2-1.0", "libzstd1", "libcrypt1", "libuuid1", "libncursesw6",
    "libtinfo6", "libreadline8", "libnsl2", "libtirpc3", "libdb5.3", "libgdbm6", "libmd0",
)
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: glibc of Debian bookworm / Raspberry Pi OS bookworm; pip accepts a manylinux tag only when named.
GLIBC_MINOR = 36


class SetupError(Exception):
    """The tool chain could not be set up (message says what to do); exit code 2."""


def run(cmd: list[str], *, what: str, env: dict | None = None, cwd: Path | None = None) -> str:
    """Run a host command; its output is shown only when it fails."""
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-15:])
        raise SetupError(f"{what} failed (exit {res.returncode}): {' '.join(cmd[:6])} ...\n{tail}")
    return res.stdout


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# ------------------------------------------------------------------------------------ qemu
def ensure_qemu(cache: Path) -> Path:
    """Path of ``qemu-aarch64-static`` (system, apt-get installed as root, or unpacked into the cache)."""
    found = shutil.which("qemu-aarch64-static")
    if found:
        return Path(found)
    local = cache / "qemu" / "usr" / "bin" / "qemu-aarch64-static"
    if local.exists():
        return local
    if shutil.which("apt-get") is None:
        raise SetupError("qemu-aarch64-static not found and no apt-get: install QEMU user-mode emulation "
                         "(Debian/Ubuntu package qemu-user-static)")
    if is_root():
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            run(["apt-get", "install", "-y", "-qq", "qemu-user-static"], what="apt-get install", env=env)
        except SetupError:
            run(["apt-get", "update", "-qq"], what="apt-get update", env=env)
            run(["apt-get", "install", "-y", "-qq", "qemu-user-static"], what="apt-get install", env=env)
        found = shutil.which("qemu-aarch64-static")
        if found:
            return Path(found)
    debs = cache / "qemu-deb"
    debs.mkdir(parents=True, exist_ok=True)
    run(["apt-get", "download", "qemu-user-static"], what="apt-get download qemu-user-static", cwd=debs)
    for deb in sorted(debs.glob("qemu-user-static_*.deb")):
        run(["dpkg", "-x", str(deb), str(cache / "qemu")], what=f"dpkg -x {deb.name}")
    if not local.exists():
        raise SetupError(f"qemu-user-static unpacked into {cache / 'qemu'} has no usr/bin/qemu-aarch64-static")
    return local


def qemu_version(qemu: Path) -> str:
    out = run([str(qemu), "--version"], what="qemu --version")
    return out.splitlines()[0].strip() if out else "unknown"


# ------------------------------------------------------------------------------ arm64 root
def _apt_options(apt: Path) -> list[str]:
    opts = {
        "Dir::State": apt / "state", "Dir::State::Lists": apt / "lists", "Dir::State::status": "/dev/null",
        "Dir::Cache": apt / "cache", "Dir::Etc::SourceList": apt / "sources.list",
        "Dir::Etc::SourceParts": apt / "sources.list.d", "Dir::Etc::Preferences": "/dev/null",
        "Dir::Etc::PreferencesParts": apt / "preferences.d", "APT::Architecture": "arm64",
        "APT::Architectures": "arm64",
    }
    out: list[str] = []
    for key, value in opts.items():
        out += ["-o", f"{key}={value}"]
    return out


def ensure_arm64_root(cache: Path, mirror: str) -> Path:
    """A Debian bookworm arm64 tree with python3.11 (``<cache>/root-arm64``), built once."""
    root = cache / "root-arm64"
    stamp = root / ".pi-check-complete"
    if stamp.exists():
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise SetupError("apt-get and dpkg are needed to fetch Debian's arm64 python3.11")
    if not DEBIAN_KEYRING.exists():
        raise SetupError(f"{DEBIAN_KEYRING} is missing: install the debian-archive-keyring package "
                         "(it verifies the arm64 packages)")
    apt = cache / "apt"
    for sub in ("state", "lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    signed = f"[arch=arm64 signed-by={DEBIAN_KEYRING}]"
    security = mirror.rstrip("/") + "-security" if mirror.rstrip("/").endswith("/debian") else mirror
    (apt / "sources.list").write_text(
        f"deb {signed} {mirror} bookworm main\n"
        f"deb {signed} {mirror} bookworm-updates main\n"
        f"deb {signed} {security} bookworm-security main\n"
    )
    opts = _apt_options(apt)
    run(["apt-get", *opts, "-qq", "update"], what="apt-get update (arm64, private state)")
    debs = cache / "debs-arm64"
    if debs.exists():
        shutil.rmtree(debs)
    debs.mkdir(parents=True)
    run(["apt-get", *opts, "-qq", "download", *ARM64_PACKAGES], what="apt-get download (arm64)", cwd=debs)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg", "-x", str(deb), str(root)], what=f"dpkg -x {deb.name}")
    if not (root / "usr/bin/python3.11").exists():
        raise SetupError(f"{root} has no usr/bin/python3.11 after unpacking {len(list(debs.glob('*.deb')))} packages")
    versions = {deb.name.split("_")[0]: deb.name.split("_")[1] for deb in debs.glob("*.deb")}
    (root / ".pi-check-packages.json").write_text(json.dumps(versions, indent=1, sort_keys=True))
    stamp.write_text("ok\n")
    return root


# ------------------------------------------------------------------------------- CPU views
@dataclass(frozen=True)
class CpuView:
    """What a board's kernel shows about its CPUs, written into a copy of the arm64 root."""

    name: str
    model: str
    qemu_cpu: str          # the QEMU CPU model with the same MIDR and features
    part: str              # MIDR fields as /proc/cpuinfo prints them
    variant: str
    revision: int
    features: str
    max_khz: int
    caches: tuple[tuple[int, str, str, str], ...]   # (level, type, size, "core" or "cluster")
    cores: int = 4


#: Raspberry Pi 4 (BCM2711): 4x Cortex-A72 r0p3, 32 KB L1d + 48 KB L1i per core, 1 MB shared L2.
PI4 = CpuView("pi4", "Raspberry Pi 4 Model B Rev 1.4", "cortex-a72", "0xd08", "0x0", 3,
              "fp asimd evtstrm crc32 cpuid", 1_800_000,
              ((1, "Data", "32K", "core"), (1, "Instruction", "48K", "core"), (2, "Unified", "1024K", "cluster")))
#: Raspberry Pi 5 (BCM2712): 4x Cortex-A76 r4p1, 64 KB L1d/L1i and 512 KB L2 per core, 2 MB shared L3.
PI5 = CpuView("pi5", "Raspberry Pi 5 Model B Rev 1.0", "cortex-a76", "0xd0b", "0x4", 1,
              "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
              2_400_000,
              ((1, "Data", "64K", "core"), (1, "Instruction", "64K", "core"), (2, "Unified", "512K", "core"),
               (3, "Unified", "2048K", "cluster")))
VIEWS = {v.name: v for v in (PI4, PI5)}


def _cpuinfo_text(view: CpuView) -> str:
    blocks = [
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {view.features}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: {view.variant}\nCPU part\t: {view.part}\nCPU revision\t: {view.revision}\n"
        for i in range(view.cores)
    ]
    return "\n".join(blocks) + f"\nModel\t\t: {view.model}\n"


def _write_sysfs(base: Path, view: CpuView) -> None:
    last = view.cores - 1
    all_cpus = f"0-{last}"
    mask_all = format((1 << view.cores) - 1, "x")
    files = {"possible": all_cpus, "present": all_cpus, "online": all_cpus, "offline": "", "kernel_max": str(last)}
    for name, text in files.items():
        (base / name).write_text(text + "\n")
    for cpu in range(view.cores):
        d = base / f"cpu{cpu}"
        topo = {"physical_package_id": "0", "core_id": str(cpu), "cluster_id": "0", "cluster_cpus_list": all_cpus,
                "core_siblings_list": all_cpus, "package_cpus_list": all_cpus, "thread_siblings_list": str(cpu),
                "core_cpus_list": str(cpu)}
        freq = {"cpuinfo_max_freq": str(view.max_khz), "cpuinfo_min_freq": "600000"}
        for sub, entries in (("topology", topo), ("cpufreq", freq)):
            (d / sub).mkdir(parents=True, exist_ok=True)
            for name, text in entries.items():
                (d / sub / name).write_text(text + "\n")
        (d / "online").write_text("1\n")
        for index, (level, kind, size, shared) in enumerate(view.caches):
            c = d / "cache" / f"index{index}"
            c.mkdir(parents=True, exist_ok=True)
            cpus, mask = (str(cpu), format(1 << cpu, "x")) if shared == "core" else (all_cpus, mask_all)
            for name, text in {"level": str(level), "type": kind, "size": size, "shared_cpu_list": cpus,
                               "shared_cpu_map": mask, "coherency_line_size": "64"}.items():
                (c / name).write_text(text + "\n")


def ensure_view(cache: Path, root: Path, view: CpuView) -> Path:
    """``<cache>/view-<name>``: the arm64 root (hard links) plus the board's CPU files."""
    dest = cache / f"view-{view.name}"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(root, dest, symlinks=True, copy_function=os.link)
    (dest / "proc").mkdir(exist_ok=True)
    (dest / "proc" / "cpuinfo").write_text(_cpuinfo_text(view))
    sysfs = dest / "sys" / "devices" / "system" / "cpu"
    sysfs.mkdir(parents=True, exist_ok=True)
    _write_sysfs(sysfs, view)
    return dest


# ------------------------------------------------------------------------------ wheel, pip
def build_wheel(cache: Path) -> Path:
    """Build the edgebot wheel from the working tree into ``<cache>/dist``."""
    dist = cache / "dist"
    if dist.exists():
        shutil.rmtree(dist)
    dist.mkdir(parents=True)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(REPO)],
        what="pip wheel")
    wheels = sorted(dist.glob("edgebot-*.whl"))
    if len(wheels) != 1:
        raise SetupError(f"pip wheel wrote {len(wheels)} edgebot wheels into {dist}")
    return wheels[0]


def aarch64_platform_flags() -> list[str]:
    """pip flags for every manylinux tag a glibc-2.36 aarch64 system accepts (pip takes only named ones)."""
    flags: list[str] = []
    for minor in range(GLIBC_MINOR, 16, -1):
        flags += ["--platform", f"manylinux_2_{minor}_aarch64"]
    return flags + ["--platform", "manylinux2014_aarch64", "--platform", "linux_aarch64"]


def install_target(cache: Path, name: str, wheel: Path, extra_reqs: tuple[str, ...], aarch64: bool) -> Path:
    """``pip install --target <cache>/site-<name> WHEEL[edge] EXTRA...`` (reused while inputs are unchanged)."""
    from edgebot.bundle import sha256_file

    site = cache / f"site-{name}"
    key = {"wheel_sha256": sha256_file(wheel), "reqs": list(extra_reqs),
           "aarch64": aarch64, "python": sys.version_info[:2] if not aarch64 else (3, 11)}
    stamp = cache / f"site-{name}.json"
    if site.exists() and stamp.exists() and json.loads(stamp.read_text()) == json.loads(json.dumps(key)):
        return site
    if site.exists():
        shutil.rmtree(site)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
           "--target", str(site), "--only-binary=:all:"]
    if aarch64:
        cmd += [*aarch64_platform_flags(), "--python-version", "3.11", "--implementation", "cp"]
    run(cmd + [f"{wheel}[edge]", *extra_reqs], what=f"pip install --target site-{name}")
    stamp.write_text(json.dumps(key))
    return site


def site_versions(site: Path) -> dict[str, str]:
    """``{distribution: version}`` of the dist-info folders in a pip target."""
    out = {}
    for info in site.glob("*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].rpartition("-")
        out[name.lower().replace("_", "-")] = version
    return dict(sorted(out.items()))
