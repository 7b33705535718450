"""The relay plot says which bars are missing or stand for a partial run."""

from __future__ import annotations

import matplotlib.pyplot as plt

from bench.plots import _mark_short_deliveries


def test_relay_plot_marks_failed_and_partial_runs() -> None:
    cell = {
        ("S3", "draftsync"): {"delivered_pct": 100.0, "p50_ms": 0.7},
        ("S3", "pycrdt-websocket"): {"delivered_pct": 3.495, "p50_ms": 30.3},
        ("S4", "draftsync"): {"delivered_pct": 100.0, "p50_ms": 4.2},
        ("S4", "pycrdt-websocket"): {"delivered_pct": 0.0, "p50_ms": None},
    }
    fig, ax = plt.subplots()
    try:
        _mark_short_deliveries(
            ax, ["S3", "S4"], ["draftsync", "pycrdt-websocket"], cell, height=0.4
        )
        marks = sorted((text.get_position()[1], text.get_text()) for text in ax.texts)
    finally:
        plt.close(fig)
    # pycrdt-websocket is the second of two bars: 0.2 below each scenario's centre.
    assert marks == [
        (0.2, "pycrdt-websocket: 3.5 % delivered"),
        (1.2, "pycrdt-websocket: failed"),
    ]
