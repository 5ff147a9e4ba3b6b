"""Tests for lth_keras.analysis.styles: how figures draw each arm, and their axis labels.

Styles come from the arms registry when they are asked for, so an arm
registered later is drawn in its own style; an arm with none gets a stable
fallback chosen from its name (the same in every process and every figure).
"""

import os
import subprocess
import sys

import pytest

from lth_keras.analysis import styles
from lth_keras.arms import registry
from tests.helpers import REPO


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """Arms registered by a test are gone after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_axis_labels_are_the_papers():
    assert styles.METRIC_LABELS["early_stop_iteration"] == "Early-stop iteration"
    assert styles.METRIC_LABELS["early_stop_test_accuracy"] == "Test accuracy at early stop"
    assert styles.METRIC_LABELS["early_stop_train_accuracy"] == "Train accuracy at early stop"


def test_the_papers_arms_keep_their_colours_lines_and_names():
    assert [styles.arm_color(a) for a in ("ticket", "reinit", "random_mask")] == [
        styles.ARM_COLORS[a] for a in ("ticket", "reinit", "random_mask")]
    assert styles.arm_color("ticket") == "#1f77b4"
    assert [styles.arm_linestyle(a) for a in ("ticket", "reinit", "random_mask")] == ["-", "--", ":"]
    assert [styles.arm_label(a) for a in ("ticket", "reinit", "random_mask")] == [
        "Winning ticket", "Random reinit", "Random mask"]
    assert styles.default_arms()[:3] == ("ticket", "reinit", "random_mask")
    assert styles.PAPER_METRICS == ("early_stop_iteration", "early_stop_test_accuracy",
                                    "early_stop_train_accuracy", "final_test_accuracy")
    assert set(styles.PAPER_METRICS) <= set(styles.METRIC_LABELS)


def test_an_unstyled_arm_gets_the_same_fallback_in_every_process():
    names = ["zz_new", "my_arm", "magnitude_after_training"]
    here = [styles.arm_color(n) for n in names]
    assert all(c in styles.FALLBACK_ARM_COLORS for c in here)
    assert [styles.arm_linestyle(n) for n in names] == [styles.FALLBACK_ARM_LINESTYLE] * 3
    assert [styles.arm_marker(n) for n in names] == ["v"] * 3
    assert [styles.arm_label(n) for n in names] == names
    # A hash of the name, not Python's salted hash(): another process agrees.
    code = f"from lth_keras.analysis import styles; print([styles.arm_color(n) for n in {names!r}])"
    other = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, PYTHONHASHSEED="123"), check=True)
    assert other.stdout.strip() == repr(here)


def test_a_registered_style_wins_over_the_fallback_field_by_field():
    registry.register(registry.Arm("styled", lambda trial, round_: None, color="#123456", label="Styled"))
    assert styles.arm_color("styled") == "#123456" and styles.arm_label("styled") == "Styled"
    assert styles.arm_linestyle("styled") == styles.FALLBACK_ARM_LINESTYLE  # not declared
    assert styles.registered_styles("color")["styled"] == "#123456"
    assert "styled" not in styles.registered_styles("marker")
    assert "styled" in styles.default_arms()


def test_the_old_module_level_names_are_computed_when_read():
    before = styles.DEFAULT_ARMS
    registry.register(registry.Arm("later", lambda trial, round_: None, marker="x", plotted_by_default=False))
    assert styles.DEFAULT_ARMS == before  # not plotted by default
    assert styles.ARM_MARKERS["later"] == "x"
    assert set(styles.LIVE_NAMES) == {"DEFAULT_ARMS", "ARM_COLORS", "ARM_LINESTYLES", "ARM_MARKERS", "ARM_LABELS"}
    with pytest.raises(AttributeError, match="NO_SUCH_NAME"):
        styles.NO_SUCH_NAME


@pytest.mark.parametrize("value, text", [(51.2, "51.2"), (100.0, "100"), (3.6049, "3.6"), (0.04, "0")])
def test_format_pm_rounds_to_a_tenth_without_trailing_zeros(value, text):
    assert styles.format_pm(value) == text
