"""The README's "Python" example runs as written: its ```python blocks that
start with ``# <file>.py`` are written to a scratch directory and run.py is
run against a real server, printing what its ``# →`` comments say. The
reference block after them runs too, against the table the example filled,
so every call it shows exists and takes those arguments."""

from __future__ import annotations

import re

from conftest import REPO, run_script, script_env


def readme_blocks() -> dict[str, str]:
    """The ```python blocks of README's "## Python" section, by their first line's file name ("" for the others)."""
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^## Python\n(.*?)^## ", readme, re.S | re.M)
    assert match, 'README.md has no "## Python" section'
    blocks: dict[str, str] = {}
    for block in re.findall(r"^```python\n(.*?)^```", match.group(1), re.S | re.M):
        first = block.splitlines()[0]
        name = first[2:].strip() if re.fullmatch(r"# \w+\.py", first) else ""
        blocks[name] = block
    return blocks


def test_the_python_example_runs_and_prints_what_it_says(server, workdir, calls_dir):
    blocks = readme_blocks()
    assert set(blocks) == {"pipeline.py", "run.py", ""}
    scratch = calls_dir / "readme"
    scratch.mkdir()
    for name in ("pipeline.py", "run.py"):
        (scratch / name).write_text(blocks[name])
    expected = [m.group(1) for m in re.finditer(r"# → (.*)$", blocks["run.py"], re.M)]
    assert len(expected) == 4
    env = script_env(server, calls_dir)
    out = run_script([str(scratch / "run.py")], {**env, "PYTHONPATH": env["PYTHONPATH"] + f":{scratch}"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == expected

    # The reference block, as a script over the same table.
    reference = "from pipeline import Mean\n" + blocks[""]
    (scratch / "reference.py").write_text(reference)
    out = run_script([str(scratch / "reference.py")], {**env, "PYTHONPATH": env["PYTHONPATH"] + f":{scratch}"})
    assert out.returncode == 0, out.stderr
