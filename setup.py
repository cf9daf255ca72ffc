"""Build hook: the wheel carries the repository's models/ folder as vepcli/models/.

The bundled default model lives once, in models/ at the top of the repository, where
`make pretrain-default` writes it. Building a wheel copies that folder into the package, where an
installed vepcli finds it with importlib.resources (vepcli/nn/hub.py: bundled_model_dir); an editable
install has no copy and reads the checkout's models/ instead. MANIFEST.in puts models/ into the sdist,
so a wheel built from the sdist carries it too. All other metadata is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MODELS = Path(__file__).resolve().parent / "models"
MODEL_FILES = ("config.json", "model.safetensors")  # a model folder without them is not shippable


class BuildPyWithModels(build_py):
    """build_py, then models/ copied to <build_lib>/vepcli/models (not in editable mode)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        folders = sorted(p for p in MODELS.iterdir() if p.is_dir()) if MODELS.is_dir() else []
        if not folders:
            raise SystemExit(f"error: no model folders in {MODELS}: the wheel would ship without its default model")
        for folder in folders:
            missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
            if missing:
                raise SystemExit(f"error: {folder} lacks {', '.join(missing)}")
            for src in sorted(folder.rglob("*")):
                if src.is_file():
                    dest = Path(self.build_lib) / "vepcli" / "models" / src.relative_to(MODELS)
                    self.mkpath(str(dest.parent))
                    self.copy_file(str(src), str(dest))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if not self.editable_mode and MODELS.is_dir():
            outputs += [
                str(Path(self.build_lib) / "vepcli" / "models" / p.relative_to(MODELS))
                for p in sorted(MODELS.rglob("*"))
                if p.is_file()
            ]
        return outputs


setup(cmdclass={"build_py": BuildPyWithModels})
