"""Bad input to the real `gradtui` console script: one line naming it, exit 2, nothing lost.

Every case runs the installed console script in a subprocess, as a user
would, and checks stderr is exactly one line that names the field (or flag)
and gives a reason, with no traceback, and that a file already under --out
is left exactly as it was.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import FIELD_TYPES

GRADTUI = str(Path(sys.executable).with_name("gradtui"))
OLD = '{"step": 0, "note": "a file the user already had"}\n'


def gradtui(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the console script; stdin is closed so a dashboard could never wait on it."""
    return subprocess.run(
        [GRADTUI, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 2 and one stderr line naming every one of `names`, with a reason after it."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "Traceback" not in result.stderr
    assert line.startswith("gradtui: error: "), line
    for name in names:
        assert name in line, (name, line)
    assert len(line.split(":", 3)[-1].strip()) > 3, f"no reason given: {line}"
    return line


# Every field, each with values that are of the wrong type, out of range,
# negative or zero where that is invalid. The preset is `exploding` (regression,
# shallow model, 1000 samples); cross-field rules are listed separately.
BAD_VALUES: dict[str, list[str]] = {
    "dataset": ["mnist", "", "1"],
    "n_samples": ["many", "1.5", "0", "-5", "1", "1000001"],
    "n_features": ["x", "0", "-1", "2.0"],
    "standardize_target": ["maybe", "2", ""],
    "seq_len": ["long", "0", "1", "-3"],
    "model": ["cnn", ""],
    "n_layers": ["deep", "0", "-1", "65"],
    "hidden_units": ["wide", "0", "-100", "8193"],
    "activation": ["swish", "RELU "],
    "batch_norm": ["perhaps", "-1"],
    "init": ["he", "zeros"],
    "init_std": ["big", "0", "-0.1", "nan", "inf"],
    "seed": ["lucky", "-1", "1.5"],
    "init_seed": ["x", "-1", "2.5"],
    "optimizer": ["rmsprop", ""],
    "lr": ["fast", "0", "-1", "nan", "inf", "-inf", "1e400"],
    "momentum": ["heavy", "-0.1", "1", "1.5", "nan"],
    "batch_size": ["all", "0", "-32", "1001"],
    "shuffle": ["sometimes"],
    "epochs": ["ten", "0", "-1", "1.5"],
    "clip": ["always", "Value"],
    "clip_value": ["one", "0", "-1", "nan"],
    "max_norm": ["one", "0", "-1", "inf"],
    "norm_type": ["1", "l2", "2.0"],
    "on_nonfinite": ["explode", ""],
    "capture_every": ["often", "0", "-2"],
    "activation_every": ["often", "0", "-2"],
    "device": ["tpu", "gpu", "CUDA"],
    "sampling": ["fast", "Exact", ""],
}
CASES = [(field, value) for field, values in BAD_VALUES.items() for value in values]


def test_every_field_has_bad_values():
    assert set(BAD_VALUES) == set(FIELD_TYPES)


@pytest.mark.parametrize(("field", "value"), CASES, ids=[f"{f}={v}" for f, v in CASES])
def test_bad_value_for_a_field_is_one_line_naming_it(field, value, tmp_path):
    out = tmp_path / "run.jsonl"
    out.write_text(OLD)
    result = gradtui(
        "run", "--preset", "exploding", "--epochs", "1", "--set", f"{field}={value}",
        "--out", str(out),
    )  # fmt: skip
    assert_one_line_error(result, field)
    assert out.read_text() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.jsonl"]


@pytest.mark.parametrize(
    ("assignments", "field"),
    [
        (["dataset=ball", "standardize_target=true"], "standardize_target"),
        (["clip=timestep"], "clip"),
        (["model=rnn"], "model"),
        (["dataset=sequence"], "model"),
        (["model=block", "batch_norm=true", "batch_size=1"], "batch_size"),
        (["model=block", "batch_norm=true", "batch_size=3"], "batch_size"),  # 1000 % 3 == 1
        (["n_samples=10"], "batch_size"),  # the preset's batch of 32 no longer fits
    ],
)
def test_fields_that_contradict_each_other_are_named(assignments, field):
    args = ["run", "--preset", "exploding", "--epochs", "1"]
    for assignment in assignments:
        args += ["--set", assignment]
    assert_one_line_error(gradtui(*args), field)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--set", "lr0.1"], ["lr0.1", "KEY=VALUE"]),
        (["--set", "=3"], ["--set", "empty key"]),
        (["--set", ""], ["--set"]),
        (["--set", "  =3"], ["--set"]),
        (["--set", "learning_rate=0.1"], ["learning_rate", "unknown key"]),
        (["--set", "LR=0.1"], ["LR", "unknown key"]),
        (["--set"], ["--set"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--epochs", "-1"], ["--epochs"]),
        (["--epochs", "many"], ["--epochs"]),
        (["--bogus"], ["--bogus"]),
        (["extra-positional"], ["extra-positional"]),
    ],
)
def test_malformed_flags_are_one_line(args, names):
    assert_one_line_error(gradtui("run", "--preset", "exploding", *args), *names)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["run", "--preset", "no-such-preset"], ["preset", "no-such-preset"]),
        (["run", "--preset", ""], ["run needs --preset"]),
        (["run"], ["--preset"]),
        (["--preset", "no-such-preset"], ["no-such-preset"]),
        (["--set", "lr=-1"], ["lr"]),
        (["--preset", "exploding", "--set", "n_layers=0"], ["n_layers"]),
        (["--fps", "0"], ["--fps"]),
        (["--fps", "fast"], ["--fps"]),
        (["presets", "--bogus"], ["--bogus"]),
    ],
)
def test_unknown_presets_and_dashboard_flags_exit_before_any_screen(args, names):
    assert_one_line_error(gradtui(*args), *names)


# -- TOML configuration files ----------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('lr = "abc"\n', ["lr"]),
        ("lr = [\n", ["config", "TOML"]),
        ("bogus = 1\n", ["bogus", "unknown key"]),
        ("n_layers = 2.5\n", ["n_layers"]),
        ("lr = -1.0\n", ["lr"]),
        ('preset = "nope"\n', ["nope"]),
        (b"\xff\xfe".decode("latin-1"), ["config"]),
    ],
)
def test_bad_config_files_are_one_line(text, names, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(text.encode("latin-1"))
    assert_one_line_error(gradtui("run", "--config", str(path)), *names)


def test_missing_config_file_is_one_line(tmp_path):
    assert_one_line_error(gradtui("run", "--config", str(tmp_path / "none.toml")), "config")


# -- --out -------------------------------------------------------------------------------
def test_out_in_a_missing_directory(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "run.jsonl"
    line = assert_one_line_error(
        gradtui("run", "--preset", "exploding", "--out", str(target)), "--out"
    )
    assert "does not exist" in line
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("name", ["run.txt", "run", "run.json", "run.jsonl.gz", ".jsonl.bak"])
def test_out_with_an_unknown_extension(name, tmp_path):
    result = gradtui("run", "--preset", "exploding", "--out", str(tmp_path / name))
    line = assert_one_line_error(result, "--out")
    assert ".jsonl" in line and ".csv" in line
    assert list(tmp_path.iterdir()) == []


def test_out_naming_a_directory(tmp_path):
    (tmp_path / "run.jsonl").mkdir()
    result = gradtui("run", "--preset", "exploding", "--out", str(tmp_path / "run.jsonl"))
    assert_one_line_error(result, "--out", "directory")
    assert (tmp_path / "run.jsonl").is_dir()


@pytest.fixture
def unwritable_dir(tmp_path):
    """A directory this process cannot create files in, even as root (then: immutable)."""
    directory = tmp_path / "locked"
    directory.mkdir()
    (directory / "run.jsonl").write_text(OLD)
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
        return
    # Root ignores permission bits; the immutable attribute still stops it.
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(directory)]).returncode != 0:
        pytest.skip("running as root and cannot make a directory immutable (chattr +i)")
    try:
        yield directory
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)


def test_out_without_write_permission(unwritable_dir):
    assert not os.access(unwritable_dir, os.W_OK)
    target = unwritable_dir / "run.jsonl"
    result = gradtui("run", "--preset", "exploding", "--epochs", "1", "--out", str(target))
    assert_one_line_error(result, "--out", "not writable")
    assert target.read_text() == OLD


def test_out_permission_check_uses_os_access(tmp_path, monkeypatch):
    """The check itself, in process: a directory os.access calls unwritable is refused."""
    from engine.config import ConfigError
    from engine.export import check_output_path

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError) as caught:
        check_output_path(str(tmp_path / "run.csv"))
    assert caught.value.field == "--out" and "not writable" in caught.value.reason


def test_an_existing_out_file_survives_every_kind_of_refusal(tmp_path):
    out = tmp_path / "keep.csv"
    out.write_text(OLD)
    for args in (
        ["--set", "lr=abc"],
        ["--set", "nope=1"],
        ["--set", "lr"],
        ["--epochs", "0"],
        ["--preset", "nope"],
    ):
        result = gradtui("run", "--preset", "exploding", *args, "--out", str(out))
        assert result.returncode == 2, result.stderr
        assert out.read_text() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["keep.csv"]


# -- devices ---------------------------------------------------------------------------
def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif("_has_cuda()", reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("command", [["run", "--preset", "exploding"], ["--preset", "exploding"]])
def test_cuda_without_a_gpu_is_refused(command, tmp_path):
    out = tmp_path / "run.jsonl"
    out.write_text(OLD)
    extra = ["--out", str(out)] if command[0] == "run" else []
    result = gradtui(*command, "--set", "device=cuda", *extra)
    line = assert_one_line_error(result, "device")
    assert "cuda" in line.lower()
    assert out.read_text() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["run.jsonl"]


def test_auto_falls_back_to_the_cpu(tmp_path):
    from engine.trainer import resolve_device

    expected = "cuda" if _has_cuda() else "cpu"
    assert resolve_device("auto").type == expected
    out = tmp_path / "run.jsonl"
    result = gradtui(
        "run", "--preset", "clip-value", "--epochs", "1", "--set", "device=auto", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert len(out.read_text().splitlines()) == 32  # 1000 samples in batches of 32
