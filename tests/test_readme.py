"""The docs stay true: docs/config.md's reference matches the code, README.md's test command matches CI."""

import os

from configs.reference import reference_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name: str) -> str:
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def test_config_reference_is_generated_from_the_code():
    assert reference_table() in _read("docs/config.md"), (
        "run `python -m configs.reference` and paste it into docs/config.md"
    )


def test_ci_runs_the_readme_test_command():
    readme = _read("README.md")
    block = readme.split("Run the tests:", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].strip()
    assert block.endswith("pytest -n auto") and block.startswith("pip install -e '.[test")
    assert block in _read(".ci/run")


def test_methods_table_names_the_implementations_each_config_supports():
    import importlib
    import re

    from losses.contrastive import ALL_IMPLEMENTATIONS, IMPLEMENTATIONS
    from losses.objectives import objective_implementations

    rows = [line for line in _read("README.md").splitlines() if line.startswith("| `configs/")]
    assert len(rows) >= 14
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        configs = re.findall(r"`configs/(\w+)\.py`", cells[0])
        expected = {}
        for name in configs:
            config = importlib.import_module(f"configs.{name}").get_config()
            supported, _ = objective_implementations(config.objective, config)
            named = {IMPLEMENTATIONS: "all five", ALL_IMPLEMENTATIONS: "all five, fused"}
            expected[name] = named.get(tuple(supported), ", ".join(supported))
        cell = cells[-1]
        if len(set(expected.values())) == 1:
            assert cell == next(iter(expected.values())), row
        else:
            assert cell == "; ".join(f"{name}: {value}" for name, value in expected.items()), row
