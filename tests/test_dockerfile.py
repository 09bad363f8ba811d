"""The Dockerfile: its rules held by parsing it, its build steps run without a container engine.

No container engine runs here, so the test does what the two stages do, with
the commands the Dockerfile itself names: a build context holding only what
the builder copies, the builder's ``pip wheel`` in it, then the runtime's
``pip install`` of that wheel into a fresh virtual environment, and the
entry point. A COPY that misses a file the wheel needs, a wheel that does
not install, or an entry point that is not the package's script fails here.

The parser is ours, a few lines: the file is ours and simple (no heredocs, no
parser directives beyond ``syntax``), and the rules need only instructions
and their arguments.
"""

from __future__ import annotations

import glob
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
#: A base pinned to an exact release (python:3.11.14-slim-bookworm) or a digest.
PINNED = re.compile(
    r"^[\w./-]+:(\d+\.\d+\.\d+-slim(-\w+)?)(@sha256:[0-9a-f]{64})?$|@sha256:[0-9a-f]{64}$"
)


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def parse(text: str) -> list[Stage]:
    """The stages of a Dockerfile: each FROM and the instructions after it."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "a continued instruction runs off the end of the file"
    stages: list[Stage] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{instruction} before any FROM"
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not the exec form: {args}"
    return [str(word) for word in value]


def without_mounts(run: str) -> list[str]:
    """A RUN's command as words, its ``--mount=`` options dropped."""
    return [word for word in shlex.split(run) if not word.startswith("--mount=")]


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def main_scripts() -> set[str]:
    """pyproject's console scripts that run the CLI (``remstate``; a plugin alias may join it)."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    return {name for name, target in scripts.items() if target == "remstate.cli:main"}


class TestRules:
    def test_multi_stage_builder_then_runtime(self, stages: list[Stage]) -> None:
        """Two stages: a named builder, then the runtime that takes only the wheels from it."""
        assert [stage.name for stage in stages] == ["builder", "runtime"]
        runtime = stages[-1]
        mounts = [run for run in runtime.all("RUN") if "--mount=" in run]
        assert mounts, "the runtime takes the wheel from the builder"
        assert all("from=builder" in run and "source=/wheels" in run for run in mounts)

    def test_every_base_is_pinned_and_slim(self, stages: list[Stage]) -> None:
        """Each FROM names an exact Python release of a slim image, or a digest; both the same."""
        for stage in stages:
            assert PINNED.search(stage.base), f"not pinned: {stage.base}"
            assert stage.base.startswith("python:")
        assert len({stage.base for stage in stages}) == 1

    def test_the_runtime_runs_as_a_numeric_non_root_user(self, stages: list[Stage]) -> None:
        """The last USER is numeric (uid[:gid]) and not 0, as runAsNonRoot needs to check it."""
        users = stages[-1].all("USER")
        assert users, "the runtime sets a USER"
        match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
        assert match, f"USER {users[-1]} is not numeric"
        assert int(match.group(1)) != 0
        assert match.group(2) is None or int(match.group(2)) != 0

    def test_the_user_is_the_deployments(self, stages: list[Stage]) -> None:
        """deploy/base runs the pod as the same uid and gid as the image's USER."""
        deployment = (REPO / "deploy" / "base" / "deployment.yaml").read_text()
        uid, gid = stages[-1].all("USER")[-1].split(":")
        assert f"runAsUser: {uid}\n" in deployment
        assert f"runAsGroup: {gid}\n" in deployment

    def test_entrypoint_is_the_package_script_and_serve_the_command(
        self, stages: list[Stage], main_scripts: set[str]
    ) -> None:
        """ENTRYPOINT is pyproject's console script for ``remstate.cli:main``; CMD is ``serve``."""
        runtime = stages[-1]
        [entrypoint] = exec_form(runtime.all("ENTRYPOINT")[-1])
        assert entrypoint in main_scripts
        assert exec_form(runtime.all("CMD")[-1]) == ["serve"]

    def test_the_runtime_copies_nothing_from_the_context(self, stages: list[Stage]) -> None:
        """No COPY or ADD in the runtime: the source tree never reaches the image."""
        runtime = stages[-1]
        assert runtime.all("COPY") == []
        assert runtime.all("ADD") == []

    def test_the_builder_makes_one_wheel_without_dependencies(self, stages: list[Stage]) -> None:
        """The builder's last RUN is ``pip wheel --no-deps`` of the context into /wheels."""
        assert without_mounts(stages[0].all("RUN")[-1]) == [
            "pip", "wheel", "--no-deps", "--wheel-dir", "/wheels", ".",
        ]  # fmt: skip

    def test_the_runtime_installs_only_the_wheel(self, stages: list[Stage]) -> None:
        """The runtime's one ``pip install`` names the remstate wheel and nothing else."""
        installs = [without_mounts(run) for run in stages[-1].all("RUN") if "pip install" in run]
        assert installs == [["pip", "install", "/wheels/remstate-*.whl"]]


def _build_context(builder: Stage, into: Path) -> Path:
    """The builder's WORKDIR after its COPY lines: only the files it copies from the context."""
    workdir = into / "src"
    workdir.mkdir(parents=True)
    for copy in builder.all("COPY"):
        *sources, dest = shlex.split(copy)
        assert not any(word.startswith("--") for word in sources), copy
        target = workdir / dest
        for source in sources:
            path = REPO / source
            if path.is_dir():
                shutil.copytree(
                    path, target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )  # fmt: skip
            else:
                destination = target / path.name if dest.endswith("/") else target
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)
    return workdir


@pytest.fixture(scope="module")
def venv(stages: list[Stage], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two stages' commands, run here: the wheel built, then installed in a fresh venv."""
    root = tmp_path_factory.mktemp("image")
    wheels = root / "wheels"
    context = _build_context(stages[0], root / "builder")
    build = without_mounts(stages[0].all("RUN")[-1])
    argv = [str(wheels) if word == "/wheels" else word for word in build]
    assert argv[0] == "pip"
    subprocess.run([sys.executable, "-m", *argv], cwd=context, check=True)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    [install] = [without_mounts(run) for run in stages[-1].all("RUN") if "pip install" in run]
    argv = [
        found
        for word in install
        for found in (
            sorted(glob.glob(str(wheels) + word.removeprefix("/wheels")))
            if word.startswith("/wheels/")
            else [word]
        )
    ]
    assert argv[0] == "pip"
    subprocess.run([str(venv / "bin" / "python"), "-m", *argv], check=True)
    return venv


class TestBuildSteps:
    def test_one_wheel_is_built_and_installed(self, venv: Path) -> None:
        """The builder makes exactly one wheel, and the venv has remstate from it (not the tree)."""
        wheels = list((venv.parent / "wheels").iterdir())
        assert [w.name.split("-")[0] for w in wheels] == ["remstate"]
        where = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import remstate; print(remstate.__file__)"],
            capture_output=True, text=True, check=True, cwd=venv,
        ).stdout  # fmt: skip
        assert Path(where).is_relative_to(venv)

    def test_the_wheel_carries_the_control_plane_script(self, venv: Path) -> None:
        """The COPY lines include hack/: the wheel carries build-controlplane.sh."""
        found = list(venv.glob("lib/python*/site-packages/remstate/testing/build-controlplane.sh"))
        assert len(found) == 1

    def test_the_entry_point_runs(self, venv: Path, stages: list[Stage]) -> None:
        """The image's ENTRYPOINT, from the venv's bin, answers ``--help``."""
        [entrypoint] = exec_form(stages[-1].all("ENTRYPOINT")[-1])
        proc = subprocess.run(
            [str(venv / "bin" / entrypoint), "--help"], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert "Usage:" in proc.stdout

    def test_the_default_command_runs(self, venv: Path, stages: list[Stage]) -> None:
        """ENTRYPOINT plus CMD (``remstate serve``) answers ``--help``."""
        command = exec_form(stages[-1].all("ENTRYPOINT")[-1]) + exec_form(stages[-1].all("CMD")[-1])
        proc = subprocess.run(
            [str(venv / "bin" / command[0]), *command[1:], "--help"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
