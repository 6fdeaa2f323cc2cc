"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

BLOCKS = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / "README.md").read_text(), re.S)


def block(marker: str) -> str:
    [code] = [b for b in BLOCKS if marker in b]
    return code


def test_plain_torch_example_runs(capsys):
    exec(compile(block("torch.nn.Linear(3, 1)"), "README-torch", "exec"), {})
    assert "[" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_example_runs(capsys, monkeypatch, tmp_path):
    exec(compile(block('ModelSpec("demo")'), "README-demo", "exec"), {})
    assert "±" in capsys.readouterr().out
