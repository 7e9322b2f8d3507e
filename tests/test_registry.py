from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from harness import registry
from harness.registry import METHODS, Registry, UnknownNameError


def test_duplicate_name_raises() -> None:
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="Duplicate thing name 'a'"):
        reg.add("a", 2)


def test_unknown_name_suggests_close_matches_and_lists_known() -> None:
    reg: Registry[int] = Registry("method")
    for name in ("mmin", "vanilla_fusion", "modality_dropout"):
        reg.add(name, 0)
    with pytest.raises(UnknownNameError) as info:
        reg.get("mmim")
    msg = str(info.value)
    assert msg.startswith("Unknown method 'mmim'. Did you mean 'mmin'?")
    assert "Known methods: mmin, modality_dropout, vanilla_fusion." in msg


def test_unknown_without_close_match_still_lists_known() -> None:
    reg: Registry[int] = Registry("dataset")
    reg.add("synth-mosi", 0)
    msg = reg.unknown_message("zzz")
    assert "Did you mean" not in msg and "Known datasets: synth-mosi." in msg


def test_resolve_all_glob_and_hidden() -> None:
    reg: Registry[int] = Registry("method")
    reg.add("modal_immune", 0)
    reg.add("modal_immune-no_collapse", 0, hidden=True)
    reg.add("vanilla_fusion", 0)
    assert reg.resolve(["all"]) == ["modal_immune", "vanilla_fusion"]
    assert reg.resolve(["modal_immune*"]) == ["modal_immune", "modal_immune-no_collapse"]
    assert reg.resolve(["vanilla_fusion", "all"]) == ["vanilla_fusion", "modal_immune"]
    with pytest.raises(UnknownNameError, match="Unknown method 'nothing\\*'"):
        reg.resolve(["nothing*"])


@pytest.mark.parametrize("bad", ["", " x", "a,b", "a=b"])
def test_invalid_names_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="Invalid"):
        Registry("x").add(bad, 0)


def test_entry_point_plugins_are_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    import plugin_method

    METHODS.remove(plugin_method.NAME)
    ep = EntryPoint(name="mean", value="plugin_method", group="mibench.methods")

    def fake_entry_points(group: str) -> list[EntryPoint]:
        return [ep] if group == "mibench.methods" else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    monkeypatch.delitem(__import__("sys").modules, "plugin_method")
    assert registry.load_plugins() == ["plugin_method"]
    assert plugin_method.NAME in METHODS


def test_import_plugin_error_names_module() -> None:
    with pytest.raises(ImportError, match="Could not import plugin module 'no_such_module_xyz'"):
        registry.import_plugin("no_such_module_xyz")


def test_a_broken_entry_point_plugin_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(name="broken", value="no_such_plugin_module_xyz", group="mibench.methods")
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == "mibench.methods" else [])
    with pytest.raises(ImportError, match="The plugin 'no_such_plugin_module_xyz' \\(entry point 'broken' in group "
                                          "mibench.methods"):
        registry.load_plugins()


def test_origin_is_the_module_whose_import_registered_the_entry() -> None:
    import plugin_method

    assert METHODS.origin("vanilla_fusion") == "baselines.vanilla_fusion"
    assert METHODS.origin(plugin_method.NAME) == "plugin_method"
    reg: Registry[int] = Registry("thing")
    reg.add("inside_a_function", 0)  # a fresh process cannot repeat this registration by importing a module
    assert reg.origin("inside_a_function") is None
