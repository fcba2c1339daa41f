"""Device profiles: the shipped YAMLs load into the agreed schema; unknown names list the known ones."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kdtool.cli import main
from kdtool.errors import InputError
from kdtool.profiles import DeviceProfile, TrtShapes, get_profile, list_profiles

REQUIRED = {"x86-avx512-vnni", "arm64-cpu", "nvidia-t4", "nvidia-ampere", "jetson-orin", "nvidia-h100"}


def test_required_profiles_ship_and_are_consistent():
    profiles = {p.name: p for p in list_profiles()}
    assert REQUIRED <= set(profiles)
    for p in profiles.values():
        assert p.precision in ("fp32", "fp16", "int8") and p.providers[-1] == "CPUExecutionProvider"
        assert p.batch_sizes and p.seq_lengths and (p.threads is None or p.threads > 0)
        if p.device == "cpu":
            assert p.tensorrt is None and p.providers == ("CPUExecutionProvider",)
        else:
            t = p.tensorrt
            assert isinstance(t, TrtShapes) and p.providers[0] == "TensorrtExecutionProvider"
            assert all(a <= b <= c for a, b, c in zip(t.min_shape, t.opt_shape, t.max_shape, strict=True))
            assert t.max_shape[0] >= max(p.batch_sizes) and t.max_shape[1] >= max(p.seq_lengths)
            assert t.workspace_mb > 0


def test_round_trip_through_dict():
    p = get_profile("nvidia-ampere")
    assert DeviceProfile.from_dict(p.to_dict()) == p
    assert p.tensorrt.hardware_compatibility_level == "ampere_plus"


def test_unknown_name_lists_known_ones():
    with pytest.raises(InputError) as err:
        get_profile("tpu-v5")
    assert all(name in str(err.value) for name in REQUIRED)


@pytest.mark.parametrize("bad", [
    {"precision": "int4"},
    {"device": "npu"},
    {"tensorrt": {"min_shape": [1, 384], "opt_shape": [1, 128], "max_shape": [8, 384]}},
    {"tensorrt": {"min_shape": [1, 16], "opt_shape": [1, 128], "max_shape": [8, 384],
                  "hardware_compatibility_level": "everything"}},
])
def test_malformed_profiles_are_refused(bad):
    raw = {**get_profile("nvidia-t4").to_dict(), **bad}
    with pytest.raises(InputError, match="malformed"):
        DeviceProfile.from_dict(raw, "bad.yaml")


def test_cli_lists_and_shows():
    out = CliRunner().invoke(main, ["profiles"])
    assert out.exit_code == 0 and all(name in out.stdout for name in REQUIRED)
    one = CliRunner().invoke(main, ["profiles", "jetson-orin"])
    assert one.exit_code == 0 and "workspace_mb: 1024" in one.stdout
    bad = CliRunner().invoke(main, ["profiles", "nope"])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and "arm64-cpu" in bad.stderr
