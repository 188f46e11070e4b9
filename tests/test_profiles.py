"""The test suite's own settings: HYPOTHESIS_PROFILE=thorough must reach tests that set their own count."""

from hypothesis import settings

from conftest import examples


def test_examples_scale_with_the_active_profile():
    active = settings.get_current_profile_name()
    try:
        settings.load_profile("ci")
        assert examples(20) == 20 and examples(1) == 1
        settings.load_profile("thorough")
        assert examples(20) == 100 and examples(150) == 750
    finally:
        settings.load_profile(active)
