"""The package's layers: lower ones import nothing of the ones above them."""

import json
import subprocess
import sys

import pytest

ABOVE_THE_DATA_FORMATS = ("adept.agents", "adept.train", "adept.methods", "adept.online")


def loaded_by(module: str) -> list[str]:
    """The adept modules a fresh interpreter has loaded after importing ``module``."""
    code = (
        f"import importlib, json, sys; importlib.import_module({module!r}); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('adept'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


DATA_FORMATS = [f"adept.data.{m}" for m in ("transitions", "buffer", "hdf5", "minari_io")]


@pytest.mark.parametrize("module", DATA_FORMATS)
def test_the_data_formats_import_nothing_of_agents_or_training(module):
    above = [m for m in loaded_by(module) if m.startswith(ABOVE_THE_DATA_FORMATS)]
    assert above == [], f"{module} pulls in {above}"


def test_online_sac_does_not_import_the_training_loop():
    """Dataset making (online SAC) sits below the training loop, which loads datasets: the old
    cycle generate → online → train → registry → generate."""
    assert "adept.train" not in loaded_by("adept.online")
