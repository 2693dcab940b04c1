"""Named random streams: each is a fixed function of the run's seed and its number."""

import importlib
import pkgutil

import numpy as np

import adept
from adept.base.rng import Stream


def test_a_stream_derives_its_seeds_from_the_runs_seed_and_its_number():
    stream = Stream("x", 3)
    assert stream.offset(10) == 13
    assert stream.mixed(7) == int(np.random.SeedSequence([7, 3]).generate_state(1)[0])
    assert stream.mixed(7, 2) == int(np.random.SeedSequence([7, 3, 2]).generate_state(1)[0])
    assert stream.mixed(7) != Stream("y", 4).mixed(7) != stream.mixed(8)
    np.testing.assert_array_equal(
        stream.numpy(5).random(4), np.random.default_rng([5, 3]).random(4)
    )


def test_every_module_names_its_streams_apart():
    """A module's streams have distinct names (what a reader tells them by)."""
    found = 0
    for info in pkgutil.walk_packages(adept.__path__, "adept."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        names = [v.name for v in vars(module).values() if isinstance(v, Stream)]
        assert len(names) == len(set(names)), (info.name, names)
        found += len(names)
    assert found >= 10, "the methods' and pre-training's streams are named"
