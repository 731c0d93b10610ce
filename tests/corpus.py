"""Where the real CRIU dumps are: bundled samples/ and the team corpus beside the repo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
CORPUS = ROOT.parent / "shared" / "corpus"


def scenario_dirs() -> list[Path]:
    """Every scenario with crit's golden output: samples first, then the corpus if present."""
    roots = [SAMPLES] + ([CORPUS] if CORPUS.is_dir() else [])
    return [d for root in roots for d in sorted(root.iterdir()) if (d / "crit-json-raw").is_dir()]


@dataclass(frozen=True)
class Golden:
    image: Path          # the image file
    json: Path           # crit's output for it
    pretty: bool         # crit decode --pretty (crit-json/) or plain decode (crit-json-raw/)

    @property
    def id(self) -> str:
        parts = self.json.parts
        scenario = parts[max(i for i, p in enumerate(parts) if p.startswith("crit-json")) - 1]
        origin = "samples" if SAMPLES in self.json.parents else "corpus"
        mode = "pretty" if self.pretty else "raw"
        return f"{origin}/{scenario}/{self.json.parent.name}/{self.image.name}/{mode}"


def _find_image(scenario: Path, rel: Path, stem: str) -> Path | None:
    for folder in (scenario / rel, scenario / "extracted" / rel, scenario / "images",
                   scenario / "extracted" / "checkpoint"):
        for name in (stem + ".img", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def golden_files() -> list[Golden]:
    """Each (image, crit output) pair: crit-json-raw/ and crit-json/ of every scenario."""
    out = []
    for scenario in scenario_dirs():
        for folder, pretty in (("crit-json-raw", False), ("crit-json", True)):
            root = scenario / folder
            for golden in sorted(root.rglob("*.json")):
                rel = golden.parent.relative_to(root)
                image = _find_image(scenario, rel, golden.stem)
                if image is None:
                    raise FileNotFoundError(f"no image for golden file {golden}")
                out.append(Golden(image, golden, pretty))
    return out


def image_files() -> list[Path]:
    """Every file in every image directory (raw ones included)."""
    files = []
    for scenario in scenario_dirs():
        folders = [*sorted(scenario.glob("images*")), scenario / "extracted" / "checkpoint"]
        for folder in (f for f in folders if f.is_dir()):
            files += sorted(f for f in folder.iterdir() if f.is_file() and f.name != "parent")
    return files
