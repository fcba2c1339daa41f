"""kdtool.profiles: target-device profiles (YAML) and the latency profiler."""

from kdtool.profiles.registry import DeviceProfile, TrtShapes, get_profile, list_profiles

__all__ = ["DeviceProfile", "TrtShapes", "get_profile", "list_profiles"]
