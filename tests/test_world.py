"""The lab's world: what the demo, the benchmarks and this suite start from."""

from __future__ import annotations

from firmware import config
from lab.world import World


def test_a_section_keyword_replaces_the_sections_own_keys_and_adds_the_others(world, tmp_path):
    text = world.config_toml(tmp_path / "state", tmp_path / "frames", camera="fps = 15.0\nloop = true",
                             policy='accept = ["DCC"]')
    assert text.count("fps =") == 1  # a duplicate key would be a TOML error
    path = tmp_path / "qrgate.toml"
    path.write_text(text)
    cfg = config.load(path)
    assert (cfg.camera.fps, cfg.camera.loop, cfg.policy.accept) == (15.0, True, ["DCC"])


def test_a_world_read_back_in_another_process_holds_the_same_keys(world):
    again = World.load(world.dir)
    assert {n: i.kid for n, i in again.issuers.items()} == {n: i.kid for n, i in world.issuers.items()}
    assert (again.rogue.kid, again.dsc.kid) == (world.rogue.kid, world.dsc.kid)
